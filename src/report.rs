//! What a run leaves behind: the summary printed at the end, the JSON report
//! (`--report`) and the JUnit XML (`--junit`). Pure functions of the task records, but
//! for the two `write_*` functions that put a report in its file.
//!
//! The JSON schema is documented in `docs/reports.md`; a field changes only with it.

use crate::jobfile::JobFile;
use crate::queue::QueueStats;
use crate::sys;
use crate::task::{describe_end, duration, label, End, Status, TaskRecord};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime};

pub struct RunInfo {
    pub id: String,
    /// The machine the run (the coordinator) ran on.
    pub host: String,
    pub file: String,
    pub started: SystemTime,
    pub duration: Duration,
    pub exit: i32,
    pub pool: usize,
    pub interrupted: Option<String>,
    pub queues: Vec<(String, QueueStats)>,
}

#[derive(Default)]
struct JobTotals {
    tasks: u64,
    succeeded: u64,
    failed: u64,
    skipped: u64,
    first: Option<SystemTime>,
    last: Option<SystemTime>,
    slowest: Option<(Duration, String)>,
}

/// The end-of-run summary: a table per job, then every failed task with its stderr tail.
pub fn summary(file: &JobFile, records: &[TaskRecord], info: &RunInfo, color: bool) -> String {
    let mut totals: Vec<JobTotals> = file.jobs.iter().map(|_| JobTotals::default()).collect();
    for r in records {
        let t = &mut totals[r.job];
        t.tasks += 1;
        match r.status {
            Status::Succeeded => t.succeeded += 1,
            Status::Failed => t.failed += 1,
            Status::Skipped => t.skipped += 1,
        }
        if let Some(start) = r.started {
            let end = start + r.duration;
            t.first = Some(t.first.map_or(start, |f| f.min(start)));
            t.last = Some(t.last.map_or(end, |l| l.max(end)));
            if t.slowest.as_ref().is_none_or(|(d, _)| r.duration > *d) {
                t.slowest = Some((r.duration, label(&file.jobs[r.job], &r.item)));
            }
        }
    }
    let width = file
        .jobs
        .iter()
        .map(|j| j.name.len())
        .max()
        .unwrap_or(3)
        .max(3);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{:<width$}  {:>6}  {:>6}  {:>6}  {:>7}  {:>9}  slowest",
        "job", "tasks", "ok", "failed", "skipped", "time"
    );
    for (job, t) in file.jobs.iter().zip(&totals) {
        let time = match (t.first, t.last) {
            (Some(f), Some(l)) => duration(l.duration_since(f).unwrap_or_default()),
            _ => "-".to_string(),
        };
        let slowest = t
            .slowest
            .as_ref()
            .map(|(d, label)| format!("{label} {}", duration(*d)))
            .unwrap_or_else(|| "-".into());
        let line = format!(
            "{:<width$}  {:>6}  {:>6}  {:>6}  {:>7}  {:>9}  {slowest}",
            job.name, t.tasks, t.succeeded, t.failed, t.skipped, time
        );
        let line = if t.failed > 0 && color {
            console::style(line).red().force_styling(true).to_string()
        } else {
            line
        };
        let _ = writeln!(out, "{line}");
    }
    for (name, stats) in &info.queues {
        if stats.dropped > 0 {
            let _ = writeln!(
                out,
                "queue `{name}`: {} items passed, {} dropped (their consumer was gone)",
                stats.taken, stats.dropped
            );
        }
    }
    let failed: Vec<&TaskRecord> = records
        .iter()
        .filter(|r| r.status == Status::Failed)
        .collect();
    for r in &failed {
        let label = label(&file.jobs[r.job], &r.item);
        let end = r.end.as_ref().map(describe_end).unwrap_or_default();
        let pid = r.pid.map(|p| format!(", pid {p}")).unwrap_or_default();
        let pid = if r.host.is_empty() || r.host == info.host {
            pid
        } else {
            format!("{pid} on {}", r.host)
        };
        let allowed = if r.allowed_failure {
            " (allowed to fail)"
        } else {
            ""
        };
        let header = format!(
            "\nFAILED {label}: {end}{pid}, {} attempt(s), {}{allowed}",
            r.attempts,
            duration(r.duration)
        );
        let header = if color {
            console::style(header)
                .red()
                .bold()
                .force_styling(true)
                .to_string()
        } else {
            header
        };
        let _ = writeln!(out, "{header}");
        if r.tail_cut {
            let _ = writeln!(out, "  … (earlier stderr cut; --logs DIR keeps all of it)");
        }
        for line in &r.stderr_tail {
            let _ = writeln!(out, "  | {line}");
        }
        if r.stderr_tail.is_empty() && !r.stdout_tail.is_empty() {
            let _ = writeln!(out, "  (no stderr; the last lines of stdout:)");
            for line in &r.stdout_tail {
                let _ = writeln!(out, "  | {line}");
            }
        }
    }
    let ok = records
        .iter()
        .filter(|r| r.status == Status::Succeeded)
        .count();
    let skipped = records
        .iter()
        .filter(|r| r.status == Status::Skipped)
        .count();
    let verdict = match (&info.interrupted, info.exit) {
        (Some(why), _) => format!("{why}; exit status {}", info.exit),
        (None, 0) => "all tasks succeeded".to_string(),
        (None, code) => format!("exit status {code}"),
    };
    let _ = writeln!(
        out,
        "\n{} tasks: {ok} succeeded, {} failed, {skipped} skipped in {} — {verdict}",
        records.len(),
        failed.len(),
        duration(info.duration)
    );
    out
}

fn time(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// The JSON report as a value.
/// One task of the JSON report.
fn task_json(file: &JobFile, r: &TaskRecord) -> Value {
    let (exit_code, signal, timed_out, error) = match &r.end {
        Some(End::Exited(code)) => (Some(*code), None, false, None),
        Some(End::Signaled(s)) => (None, Some(sys::signal_name(*s)), false, None),
        Some(End::TimedOut) => (None, None, true, None),
        Some(End::SpawnFailed { message, .. }) => (None, None, false, Some(message.clone())),
        Some(end @ End::Lost { .. }) => (None, None, false, Some(describe_end(end))),
        None => (None, None, false, None),
    };
    json!({
        "job": file.jobs[r.job].name,
        "item": r.item,
        "index": r.index,
        "status": match r.status {
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
        },
        "pid": r.pid,
        "host": r.host,
        "slot": r.slot,
        "exit_code": exit_code,
        "signal": signal,
        "timed_out": timed_out,
        "error": error,
        "stopped": r.stopped,
        "allowed_failure": r.allowed_failure,
        "attempts": r.attempts,
        "start": r.started.map(time),
        "duration_s": r.duration.as_secs_f64(),
        "stderr_tail": r.stderr_tail,
        "stdout_log": r.stdout_log.as_ref().map(|p| p.display().to_string()),
        "stderr_log": r.stderr_log.as_ref().map(|p| p.display().to_string()),
    })
}

fn run_json(info: &RunInfo) -> Value {
    let (cpu, children_cpu) = sys::cpu_seconds();
    json!({
        "id": info.id,
        "file": info.file,
        "start": time(info.started),
        "duration_s": info.duration.as_secs_f64(),
        "exit_status": info.exit,
        "pool": info.pool,
        "interrupted": info.interrupted,
        "host": sys::hostname(),
        "peak_rss_kib": sys::peak_rss_kib(),
        "cpu_s": cpu,
        "children_cpu_s": children_cpu,
    })
}

/// Writes the JSON report, one task per line, without holding it whole in memory (a
/// run of 100,000 tasks would otherwise double the runner's peak memory at its end).
pub fn write_json(
    path: &Path,
    file: &JobFile,
    records: &[TaskRecord],
    info: &RunInfo,
) -> std::io::Result<()> {
    use std::io::Write;
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    write!(w, "{{\n  \"run\": ")?;
    serde_json::to_writer(&mut w, &run_json(info))?;
    write!(w, ",\n  \"tasks\": [")?;
    for (i, r) in records.iter().enumerate() {
        w.write_all(if i == 0 { b"\n    " } else { b",\n    " })?;
        serde_json::to_writer(&mut w, &task_json(file, r))?;
    }
    let queues: Vec<Value> = info
        .queues
        .iter()
        .map(|(name, s)| json!({"name": name, "pushed": s.pushed, "taken": s.taken, "dropped": s.dropped}))
        .collect();
    write!(w, "\n  ],\n  \"queues\": ")?;
    serde_json::to_writer(&mut w, &queues)?;
    write!(w, "\n}}\n")?;
    w.flush()
}

/// JUnit XML: a testsuite per job, a testcase per task.
pub fn junit(file: &JobFile, records: &[TaskRecord], info: &RunInfo) -> Result<String, String> {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
    let mut report = Report::new("runner");
    report.set_time(info.duration);
    for job in &file.jobs {
        let mut suite = TestSuite::new(job.name.as_str());
        for r in records.iter().filter(|r| r.job == job.id) {
            let status = match r.status {
                Status::Succeeded => TestCaseStatus::success(),
                Status::Skipped => TestCaseStatus::skipped(),
                Status::Failed => {
                    let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    let end = r.end.as_ref().map(describe_end).unwrap_or_default();
                    status.set_message(end.clone());
                    status.set_type(match &r.end {
                        Some(End::TimedOut) => "timeout",
                        Some(End::Signaled(_)) => "signal",
                        Some(End::SpawnFailed { .. }) => "spawn",
                        Some(End::Lost { .. }) => "lost",
                        _ => "exit",
                    });
                    status.set_description(r.stderr_tail.join("\n"));
                    status
                }
            };
            let mut case = TestCase::new(label(job, &r.item), status);
            case.set_classname(job.name.as_str());
            case.set_time(r.duration);
            if !r.stderr_tail.is_empty() {
                case.set_system_err(r.stderr_tail.join("\n"));
            }
            suite.add_test_case(case);
        }
        report.add_test_suite(suite);
    }
    report.to_string().map_err(|e| e.to_string())
}

pub fn write_junit(
    path: &Path,
    file: &JobFile,
    records: &[TaskRecord],
    info: &RunInfo,
) -> std::io::Result<()> {
    let text = junit(file, records, info).map_err(std::io::Error::other)?;
    std::fs::write(path, text)
}
