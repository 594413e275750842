//! The JSON report (`--report FILE`), written a task per line as it goes.

use super::tally::Records;
use super::{time, RunInfo};
use crate::jobfile::JobFile;
use crate::sys;
use crate::task::{describe_end, End, Status, TaskRecord, Try};
use serde_json::{json, Value};
use std::path::Path;

/// How an attempt ended, as the JSON report spells it: `exit_code`, `signal`,
/// `timed_out` and `error`, at most one of them set (none for a task that never ended).
/// `runner report` reads them back (`report::read`), and the HTML page words an end
/// from the same parts, so that the page of a run and the page of its report agree.
pub(super) struct EndFields {
    pub exit_code: Option<i32>,
    pub signal: Option<String>,
    pub timed_out: bool,
    pub error: Option<String>,
}

impl EndFields {
    pub fn of(end: Option<&End>) -> EndFields {
        let (exit_code, signal, timed_out, error) = match end {
            Some(End::Exited(code)) => (Some(*code), None, false, None),
            Some(End::Signaled(s)) => (None, Some(sys::signal_name(*s)), false, None),
            Some(End::TimedOut) => (None, None, true, None),
            Some(
                End::SpawnFailed { message, .. }
                | End::OutputRefused { message }
                | End::Internal { message }
                | End::NotReady { message },
            ) => (None, None, false, Some(message.clone())),
            Some(end @ End::Lost { .. }) => (None, None, false, Some(describe_end(end))),
            None => (None, None, false, None),
        };
        EndFields {
            exit_code,
            signal,
            timed_out,
            error,
        }
    }
}

/// One attempt of a task, in the JSON report.
fn try_json(t: &Try) -> Value {
    let end = EndFields::of(Some(&t.end));
    json!({
        "start": time(t.started),
        "duration_s": t.duration.as_secs_f64(),
        "pid": t.pid,
        "exit_code": end.exit_code,
        "signal": end.signal,
        "timed_out": end.timed_out,
        "error": end.error,
    })
}

/// One task of the JSON report. `slot` and `host` are null for a task that never ran.
fn task_json(file: &JobFile, r: &TaskRecord) -> Value {
    let EndFields {
        exit_code,
        signal,
        timed_out,
        error,
    } = EndFields::of(r.end.as_ref());
    let ran = r.started.is_some();
    let mut task = json!({
        "job": file.jobs[r.job].name,
        "item": crate::secrets::redact(&r.item),
        "index": r.index,
        "status": match r.status {
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
            Status::DoneEarlier => "done_earlier",
            Status::UpToDate => "up_to_date",
            Status::Unchanged => "unchanged",
            Status::Cached => "cached",
        },
        "reason": r.reason,
        "pid": r.pid,
        "host": ran.then_some(&r.host),
        "worker": r.worker,
        "worker_labels": r.worker.is_some().then_some(&r.worker_labels),
        "slot": ran.then_some(r.slot),
        "exit_code": exit_code,
        "signal": signal,
        "timed_out": timed_out,
        "error": error,
        "stopped": r.stopped,
        "allowed_failure": r.allowed_failure,
        "attempts": r.attempts,
        "start": r.started.map(time),
        "duration_s": r.duration.as_secs_f64(),
        "waited_s": r.waited.as_secs_f64(),
        "stderr_tail": r.stderr_tail,
        "stdout_tail": shown_stdout_tail(r),
        "stdout_log": r.stdout_log.as_ref().map(|p| p.display().to_string()),
        "stderr_log": r.stderr_log.as_ref().map(|p| p.display().to_string()),
        "tries": r.tries.iter().map(try_json).collect::<Vec<_>>(),
    });
    // A service's task: its check, when it was ready and when it stopped.
    if let (Some(service), Value::Object(task)) = (&r.service, &mut task) {
        let stopped_at = r.tries.last().map(|t| time(t.started + t.duration));
        task.insert(
            "service".to_string(),
            json!({
                "check": service.check.as_deref().map(crate::secrets::redact),
                "ready_at": service.ready_at.map(time),
                "ready_after_s": service.ready_after.map(|d| d.as_secs_f64()),
                "stopped_at": stopped_at,
                "released": service.released,
                "problem": service.problem,
            }),
        );
    }
    // Items with fields: each field by its key, after `item` (the label).
    let fields = file.jobs[r.job].items.fields(r.index);
    if let (false, Value::Object(task)) = (fields.is_empty(), &mut task) {
        let fields: serde_json::Map<String, Value> = fields
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        task.shift_insert(2, "fields".to_string(), Value::Object(fields));
    }
    task
}

/// The last lines of stdout, kept only where they stand in for stderr: a failed task
/// that printed nothing on stderr (the summary and the HTML page show them then).
pub(super) fn shown_stdout_tail(r: &TaskRecord) -> &[String] {
    if r.status == Status::Failed && r.stderr_tail.is_empty() {
        &r.stdout_tail
    } else {
        &[]
    }
}

fn run_json(file: &JobFile, info: &RunInfo) -> Value {
    let (cpu, children_cpu) = sys::cpu_seconds();
    let vars: serde_json::Map<String, Value> = file
        .vars
        .iter()
        .map(|v| (v.name.clone(), Value::String(v.value.clone())))
        .collect();
    let jobs: Vec<&str> = file.jobs.iter().map(|j| j.name.as_str()).collect();
    json!({
        "id": info.id,
        "file": info.file,
        "jobs": jobs,
        "vars": vars,
        "selection": info.selection,
        "set": info
            .set
            .iter()
            .map(|(name, value)| (name.clone(), Value::String(value.clone())))
            .collect::<serde_json::Map<String, Value>>(),
        "start": time(info.started),
        "duration_s": info.duration.as_secs_f64(),
        "exit_status": info.exit,
        "pool": info.pool,
        "interrupted": info.interrupted,
        "host": info.host,
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
    records: &dyn Records,
    info: &RunInfo,
) -> std::io::Result<()> {
    use std::io::Write;
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    write!(w, "{{\n  \"run\": ")?;
    serde_json::to_writer(&mut w, &run_json(file, info))?;
    write!(w, ",\n  \"tasks\": [")?;
    let mut first = true;
    // Per job: its tasks, and their time held back by resources and rates.
    let mut waits: Vec<(u64, std::time::Duration)> = vec![Default::default(); file.jobs.len()];
    for (job, wait) in waits.iter_mut().enumerate() {
        records.each(job, &mut |r| {
            wait.0 += 1;
            wait.1 += r.waited;
            w.write_all(if std::mem::take(&mut first) {
                b"\n    "
            } else {
                b",\n    "
            })?;
            serde_json::to_writer(&mut w, &task_json(file, r))?;
            Ok(())
        })?;
    }
    let queues: Vec<Value> = info
        .queues
        .iter()
        .map(|(name, s)| json!({"name": name, "pushed": s.pushed, "taken": s.taken, "dropped": s.dropped}))
        .collect();
    write!(w, "\n  ],\n  \"queues\": ")?;
    serde_json::to_writer(&mut w, &queues)?;
    if let Some(cache) = &info.cache {
        write!(w, ",\n  \"cache\": ")?;
        serde_json::to_writer(&mut w, cache)?;
    }
    let jobs: Vec<Value> = file
        .jobs
        .iter()
        .zip(&waits)
        .map(|(job, (tasks, waited))| {
            json!({"name": job.name, "tasks": tasks, "waited_s": waited.as_secs_f64()})
        })
        .collect();
    write!(w, ",\n  \"jobs\": ")?;
    serde_json::to_writer(&mut w, &jobs)?;
    write!(w, "\n}}\n")?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{file, records, stopped_records};
    use super::*;

    #[test]
    fn a_task_that_never_ran_has_no_slot_and_no_host() {
        let records = records();
        let deploy = task_json(&file(), &records[5]);
        assert_eq!(deploy["status"], "skipped");
        assert!(
            deploy["slot"].is_null() && deploy["host"].is_null(),
            "{deploy}"
        );
        let build = task_json(&file(), &records[0]);
        assert_eq!(
            (&build["slot"], &build["host"]),
            (&json!(0), &json!("here"))
        );
    }

    #[test]
    fn a_stopped_task_keeps_its_status_and_says_it_was_stopped() {
        let c = task_json(&file(), &stopped_records()[3]);
        assert_eq!(
            (&c["status"], &c["stopped"], &c["signal"]),
            (&json!("failed"), &json!(true), &json!("SIGTERM"))
        );
        let lint = task_json(&file(), &records()[4]);
        assert_eq!(
            (
                &lint["status"],
                &lint["allowed_failure"],
                &lint["exit_code"]
            ),
            (&json!("failed"), &json!(true), &json!(1))
        );
    }

    #[test]
    fn each_attempt_is_listed_with_its_end() {
        let mut b = records()[2].clone();
        let started = b.started.unwrap();
        b.tries = vec![
            Try {
                started,
                duration: std::time::Duration::from_millis(100),
                pid: Some(7),
                end: End::Exited(2),
            },
            Try {
                started: started + std::time::Duration::from_millis(250),
                duration: std::time::Duration::from_millis(50),
                pid: None,
                end: End::TimedOut,
            },
        ];
        let task = task_json(&file(), &b);
        assert_eq!(
            task["tries"],
            json!([
                {"start": "1970-01-01T00:16:40.100Z", "duration_s": 0.1, "pid": 7,
                 "exit_code": 2, "signal": null, "timed_out": false, "error": null},
                {"start": "1970-01-01T00:16:40.350Z", "duration_s": 0.05, "pid": null,
                 "exit_code": null, "signal": null, "timed_out": true, "error": null},
            ])
        );
        assert_eq!(task["stdout_tail"], json!([]), "it printed on stderr");
        assert_eq!(
            task_json(&file(), &records()[3])["stdout_tail"],
            json!(["out1", "out2"])
        );
    }
}
