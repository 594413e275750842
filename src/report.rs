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
    let mut out = String::new();
    job_table(&mut out, file, &job_totals(file, records), color);
    queue_lines(&mut out, info);
    let mut failed = 0;
    for r in records.iter().filter(|r| r.status == Status::Failed) {
        failure(&mut out, file, r, &info.host, color);
        failed += 1;
    }
    verdict(&mut out, records, failed, info);
    out
}

/// Each job's counts, span of time and slowest task.
fn job_totals(file: &JobFile, records: &[TaskRecord]) -> Vec<JobTotals> {
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
    totals
}

/// The table: a header, then a row per job (red when it has failures and `color`).
fn job_table(out: &mut String, file: &JobFile, totals: &[JobTotals], color: bool) {
    let width = file
        .jobs
        .iter()
        .map(|j| j.name.len())
        .max()
        .unwrap_or(3)
        .max(3);
    let _ = writeln!(
        out,
        "\n{:<width$}  {:>6}  {:>6}  {:>6}  {:>7}  {:>9}  slowest",
        "job", "tasks", "ok", "failed", "skipped", "time"
    );
    for (job, t) in file.jobs.iter().zip(totals) {
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
}

/// A line per queue that dropped items because their consumer was gone.
fn queue_lines(out: &mut String, info: &RunInfo) {
    for (name, stats) in &info.queues {
        if stats.dropped > 0 {
            let _ = writeln!(
                out,
                "queue `{name}`: {} items passed, {} dropped (their consumer was gone)",
                stats.taken, stats.dropped
            );
        }
    }
}

/// A failed task: how it ended, then its stderr tail (or its stdout tail when it printed
/// nothing on stderr). `host` is the coordinator's; another one is named.
fn failure(out: &mut String, file: &JobFile, r: &TaskRecord, host: &str, color: bool) {
    let label = label(&file.jobs[r.job], &r.item);
    let end = r.end.as_ref().map(describe_end).unwrap_or_default();
    let pid = r.pid.map(|p| format!(", pid {p}")).unwrap_or_default();
    let pid = if r.host.is_empty() || r.host == host {
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

/// The last line: counts, the run's time, and why it ended as it did.
fn verdict(out: &mut String, records: &[TaskRecord], failed: usize, info: &RunInfo) {
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
        "\n{} tasks: {ok} succeeded, {failed} failed, {skipped} skipped in {} — {verdict}",
        records.len(),
        duration(info.duration)
    );
}

fn time(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

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
pub fn junit(
    file: &JobFile,
    records: &[TaskRecord],
    info: &RunInfo,
) -> Result<String, quick_junit::SerializeError> {
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
    report.to_string()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::QueueStats;
    use crate::task::TaskRecord;

    const JOBS: &str = "[jobs.build]\ncommand = 'make'\n[jobs.test]\ncommand = 'check {item}'\nitems = ['a', 'b', 'c']\n[jobs.lint]\ncommand = 'lint'\nallow_failure = true\n[jobs.deploy]\ncommand = 'ship'\n";

    fn file() -> JobFile {
        crate::jobfile::parse(Path::new("x.toml"), JOBS.to_string())
            .unwrap_or_else(|_| panic!("the test's job file parses"))
    }

    /// A task of `job` that ran from `start_ms` (after a fixed epoch) for `ms`.
    fn ran(job: usize, index: u64, item: &str, start_ms: u64, ms: u64, end: End) -> TaskRecord {
        let mut r = TaskRecord::new(job, index, item.to_string(), 0, "here", false);
        r.status = match end {
            End::Exited(0) => Status::Succeeded,
            _ => Status::Failed,
        };
        r.end = Some(end);
        r.attempts = 1;
        r.pid = Some(100 + index as u32);
        r.started = Some(SystemTime::UNIX_EPOCH + Duration::from_millis(1_000_000 + start_ms));
        r.duration = Duration::from_millis(ms);
        r
    }

    fn records() -> Vec<TaskRecord> {
        let build = ran(0, 0, "", 0, 1500, End::Exited(0));
        let a = ran(1, 0, "a", 100, 200, End::Exited(0));
        let mut b = ran(1, 1, "b", 100, 300, End::Exited(2));
        b.attempts = 2;
        b.stderr_tail = vec!["oops".into(), "bad".into()];
        b.tail_cut = true;
        let mut c = ran(1, 2, "c", 200, 50, End::Signaled(libc::SIGKILL));
        c.host = "elsewhere".into();
        c.stdout_tail = vec!["out1".into(), "out2".into()];
        let mut lint = ran(2, 0, "", 0, 5, End::Exited(1));
        lint.allowed_failure = true;
        lint.pid = None;
        lint.stderr_tail = vec!["warn".into()];
        let deploy = TaskRecord::new(3, 0, String::new(), 0, "here", false);
        vec![build, a, b, c, lint, deploy]
    }

    fn info(exit: i32, interrupted: Option<&str>) -> RunInfo {
        let dropped = QueueStats {
            taken: 5,
            dropped: 3,
            ..QueueStats::default()
        };
        RunInfo {
            id: "run".into(),
            host: "here".into(),
            file: "x.toml".into(),
            started: SystemTime::UNIX_EPOCH,
            duration: Duration::from_secs(2),
            exit,
            pool: 2,
            interrupted: interrupted.map(String::from),
            queues: vec![
                ("fine".into(), QueueStats::default()),
                ("lossy".into(), dropped),
            ],
        }
    }

    #[test]
    fn the_summary_in_full() {
        let text = summary(&file(), &records(), &info(1, None), false);
        let want = "
job      tasks      ok  failed  skipped       time  slowest
build        1       1       0        0      1.50s  build 1.50s
test         3       1       2        0      300ms  test:b 300ms
lint         1       0       1        0        5ms  lint 5ms
deploy       1       0       0        1          -  -
queue `lossy`: 5 items passed, 3 dropped (their consumer was gone)

FAILED test:b: exit 2, pid 101, 2 attempt(s), 300ms
  … (earlier stderr cut; --logs DIR keeps all of it)
  | oops
  | bad

FAILED test:c: killed by SIGKILL, pid 102 on elsewhere, 1 attempt(s), 50ms
  (no stderr; the last lines of stdout:)
  | out1
  | out2

FAILED lint: exit 1, 1 attempt(s), 5ms (allowed to fail)
  | warn

6 tasks: 2 succeeded, 3 failed, 1 skipped in 2.00s — exit status 1
";
        assert_eq!(text, want);
    }

    #[test]
    fn the_verdict_says_why_the_run_ended() {
        let ok: Vec<TaskRecord> = records()
            .into_iter()
            .filter(|r| r.status == Status::Succeeded)
            .collect();
        let text = summary(&file(), &ok, &info(0, None), false);
        assert!(
            text.ends_with(
                "\n2 tasks: 2 succeeded, 0 failed, 0 skipped in 2.00s — all tasks succeeded\n"
            ),
            "{text}"
        );
        assert!(!text.contains("FAILED"), "{text}");
        let text = summary(
            &file(),
            &ok,
            &info(130, Some("interrupted (SIGINT)")),
            false,
        );
        assert!(
            text.ends_with("— interrupted (SIGINT); exit status 130\n"),
            "{text}"
        );
    }

    #[test]
    fn color_marks_failed_jobs_and_failures_only() {
        let text = summary(&file(), &records(), &info(1, None), true);
        let red = |needle: &str| {
            text.lines()
                .find(|l| l.contains(needle))
                .is_some_and(|l| l.contains("\u{1b}["))
        };
        assert!(red("test         3"), "{text}");
        assert!(red("FAILED test:b"), "{text}");
        assert!(!red("build        1"), "{text}");
        assert!(!red("deploy"), "{text}");
        assert!(!red("  | oops"), "{text}");
    }
}
