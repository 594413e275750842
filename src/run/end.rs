//! The end of a run: the records of tasks that never ran, the exit outcome, the summary
//! and the reports.

use super::{Options, Shared};
use crate::error::Outcome;
use crate::jobfile::items_file::ItemReader;
use crate::jobfile::{Items, JobFile};
use crate::lost::{Kind, LostWrites};
use crate::report::tally::{Recorder, Records, Tally};
use crate::report::{self, RunInfo};
use crate::scheduler::{JobState, Phase, Start};
use crate::signals::Interrupt;
use crate::task::{Event, TaskRecord};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// What the run loop knows when it is over.
pub(super) struct Ended {
    pub run_id: String,
    pub pool: usize,
    /// When the run started, by the wall clock and by the monotonic one.
    pub started: (SystemTime, Instant),
    pub interrupted: Option<Interrupt>,
    /// Tasks still on workers when a stopped distributed run ended.
    pub unfinished: Vec<Start>,
    /// Tasks of a stopped distributed run that no worker took: skipped.
    pub withdrawn: Vec<Start>,
}

/// Completes the records (and waits for the cache's uploads), decides the outcome, writes
/// the reports; returns the outcome and the summary to print last (what the cache did
/// on its first line).
pub(super) fn finish(shared: &Arc<Shared>, ended: Ended, options: &Options) -> (Outcome, String) {
    let file = &shared.ctx.file;
    let host = &shared.ctx.host;
    let (mut recorder, scheduler_jobs) = {
        let mut core = shared.lock();
        // Dropping the channels ends the idle slot threads.
        core.slots.clear();
        let recorder = std::mem::replace(&mut core.recorder, Recorder::new(file, false));
        (recorder, core.scheduler.jobs.clone())
    };
    drain(shared);
    let stop = stop_reason(file, ended.interrupted, options, &recorder);
    let unlisted = skipped_records(file, &scheduler_jobs, host, &stop, &mut recorder);
    remote_records(
        file,
        ended.unfinished,
        ended.withdrawn,
        &stop,
        &mut recorder,
    );
    let trace_error = finish_trace(&mut recorder, &shared.ctx.lost);
    let failed = recorder.tally.failed();
    let outcome = match ended.interrupted {
        Some(signal) => Outcome::Interrupted(signal),
        None if failed => Outcome::Failed,
        None => Outcome::Success,
    };
    // Output or logs lost during the run already decide the exit status the reports
    // state; a report that then cannot be written can only say so on stderr.
    let lost = &shared.ctx.lost;
    let before_losses = outcome;
    let outcome = with_lost_writes(outcome, lost);
    let info = RunInfo {
        id: ended.run_id,
        host: host.clone(),
        file: file.path.display().to_string(),
        started: ended.started.0,
        duration: ended.started.1.elapsed(),
        exit: i32::from(crate::error::exit_status(&Ok(outcome))),
        pool: ended.pool,
        interrupted: ended.interrupted.map(|s| s.describe().to_string()),
        stopped_by: match ended.interrupted {
            Some(Interrupt::Int) => Some("SIGINT"),
            Some(Interrupt::Term) => Some("SIGTERM"),
            Some(Interrupt::Hup) => Some("SIGHUP"),
            None if options.fail_fast || file.fail_fast => Some("fail-fast"),
            None => None,
        },
        queues: shared
            .ctx
            .queues
            .iter()
            .map(|q| (q.name.clone(), q.stats()))
            .collect(),
        selection: file.selection.clone(),
        set: report::set_vars(file),
        cache: shared.ctx.cache.as_ref().map(|c| c.finish()),
    };
    let color = crate::display::Options::detect(false).color;
    let mut summary = info.cache.map(|c| c.line() + "\n").unwrap_or_default();
    summary.push_str(&report::summary(file, &recorder.tally, &info, color));
    if unlisted > 0 {
        summary.push_str(&format!(
            "(and {} further skipped, counted but not listed in the summary or reports)\n",
            crate::task::plural(unlisted, "task")
        ));
    }

    if let Some(message) = trace_error {
        summary.push_str(&format!("[runner] {message}\n"));
    }
    let written = write_reports(&mut recorder, file, &info, options);
    for (path, result) in written.into_iter().flatten() {
        if let Err(e) = result {
            // Each report is named: there are at most three.
            let message = format!("cannot write {}: {e}", path.display());
            lost.record(Kind::Report, || message.clone());
            summary.push_str(&format!("[runner] {message}\n"));
        }
    }
    // The job summary states the exit status as the writes so far have left it.
    let exit = i32::from(crate::error::exit_status(&Ok(with_lost_writes(
        outcome, lost,
    ))));
    write_step_summary(
        file,
        &recorder,
        &RunInfo { exit, ..info },
        lost,
        &mut summary,
    );
    summary.push_str(&lost.summary());
    let kept = with_lost_writes(outcome, lost);
    if kept != before_losses {
        summary.push_str("[runner] exit status 1: not everything asked for was written\n");
    }
    // The journal is complete; a run that did not finish says how to go on from it.
    if let Some(journal) = &shared.ctx.journal {
        let warning = std::cell::RefCell::new(None);
        journal.flush(&|message| *warning.borrow_mut() = Some(message));
        if let Some(message) = warning.into_inner() {
            summary.push_str(&format!("[runner] warning: {message}\n"));
        }
        if matches!(outcome, Outcome::Failed | Outcome::Interrupted(_)) {
            summary.push_str(&format!("to resume: {}\n", options.resume_hint));
        }
    }
    (kept, summary)
}

/// Every task is over, but its output may still be on its way to the terminal (grouped
/// output is sent as an attempt ends): waits until the writer has written it, since a
/// write that failed decides the exit status the summary and the reports state.
fn drain(shared: &Arc<Shared>) {
    let (drained, written) = crossbeam_channel::bounded(1);
    if shared.ctx.events.send(Event::Drain(drained)).is_ok() {
        let _ = written.recv();
    }
}

/// Ends the trace; a write that failed is lost, like a report's, and said.
fn finish_trace(recorder: &mut Recorder, lost: &LostWrites) -> Option<String> {
    let trace = recorder.trace.take()?;
    let path = trace.path().to_path_buf();
    let e = trace.finish().err()?;
    let message = format!("cannot write {}: {e}", path.display());
    lost.record(Kind::Report, || message.clone());
    Some(message)
}

/// Writes the JSON report, the JUnit XML and the HTML page asked for, from the spooled
/// records; returns each one's path and how its writing went.
fn write_reports<'o>(
    recorder: &mut Recorder,
    file: &JobFile,
    info: &RunInfo,
    options: &'o Options,
) -> [Option<(&'o std::path::PathBuf, std::io::Result<()>)>; 3] {
    if let Some(spool) = &mut recorder.spool {
        if let Err(e) = spool.finish() {
            recorder.spool_error = Some(format!("cannot write the records' temporary file: {e}"));
        }
    }
    let records = || match (&recorder.spool, &recorder.spool_error) {
        (Some(spool), None) => Ok(spool as &dyn Records),
        (_, error) => Err(std::io::Error::other(
            error
                .clone()
                .unwrap_or_else(|| "no records were kept".into()),
        )),
    };
    [
        options.report.as_ref().map(|path| {
            let result = records().and_then(|r| report::write_json(path, file, r, info));
            (path, result)
        }),
        options.junit.as_ref().map(|path| {
            let result =
                records().and_then(|r| report::write_junit(path, file, &recorder.tally, r, info));
            (path, result)
        }),
        options.html.as_ref().map(|path| {
            let jobs: Vec<String> = file.jobs.iter().map(|j| j.name.clone()).collect();
            let result = records().and_then(|r| report::write_html(path, &jobs, r, info));
            (path, result)
        }),
    ]
}

/// GitHub Actions: the job summary page gets the table too, in Markdown. A write that
/// fails is lost, said in the summary.
fn write_step_summary(
    file: &JobFile,
    recorder: &Recorder,
    info: &RunInfo,
    lost: &LostWrites,
    summary: &mut String,
) {
    let Some(path) = step_summary() else { return };
    let text = report::markdown(file, &recorder.tally, info);
    let appended = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()));
    if let Err(e) = appended {
        let message = format!("cannot write the job summary to {}: {e}", path.display());
        lost.record(Kind::Report, || message.clone());
        summary.push_str(&format!("[runner] {message}\n"));
    }
}

/// In GitHub Actions, the file the step's job summary is appended to.
fn step_summary() -> Option<std::path::PathBuf> {
    if crate::display::Ci::detect() != crate::display::Ci::GitHub {
        return None;
    }
    std::env::var_os("GITHUB_STEP_SUMMARY")
        .filter(|p| !p.is_empty())
        .map(Into::into)
}

/// A run that lost writes the user asked for did not do all it was asked: it exits 1
/// even if every task succeeded.
pub(super) fn with_lost_writes(outcome: Outcome, lost: &LostWrites) -> Outcome {
    match outcome {
        Outcome::Success if lost.any() => Outcome::Failed,
        other => other,
    }
}

/// Records for tasks that never started: their job was skipped, or the run stopped.
/// At most this many skipped tasks of one job get a record each; the rest are counted
/// (a skipped `range` of a billion items must not take a billion records).
const MAX_SKIPPED_RECORDS: u64 = 100_000;

/// Why tasks that could have started did not, when the run stopped before them: a
/// signal, fail-fast (naming the job whose failure stopped it), or another stop (a bug,
/// a broker that lost the run).
fn stop_reason(
    file: &JobFile,
    interrupted: Option<Interrupt>,
    options: &Options,
    recorder: &Recorder,
) -> String {
    let tally = &recorder.tally;
    let first_failed = tally
        .failures
        .iter()
        .find(|r| r.outcome() == crate::task::Outcome::Failed);
    match (interrupted, first_failed) {
        (Some(signal), _) => {
            let name = match signal {
                Interrupt::Int => "SIGINT",
                Interrupt::Term => "SIGTERM",
                Interrupt::Hup => "SIGHUP",
            };
            format!("the run was interrupted ({name})")
        }
        (None, Some(r)) if options.fail_fast || file.fail_fast => {
            format!("fail-fast: a task of `{}` failed", file.jobs[r.job].name)
        }
        (None, _) => "the run was stopped".to_string(),
    }
}

/// Why a task needing another item by item was skipped: the task it needs (`because`,
/// job and index) failed, or was itself skipped.
pub(super) fn task_skipped_reason(file: &JobFile, because: (usize, u64), failed: bool) -> String {
    let (dep, index) = because;
    let job = &file.jobs[dep];
    let item = job.items.in_memory(index).unwrap_or_default();
    let name = crate::task::name(job, &item);
    if failed {
        format!("`{name}` failed")
    } else {
        format!("`{name}` was skipped")
    }
}

/// Why job `j`, skipped, never ran: its `when = "failure"` found nothing failed, or the
/// first job it needs that failed, was stopped, or was itself skipped (then what that
/// one waited for, to the job that failed).
pub(super) fn blocked_reason(file: &JobFile, jobs: &[JobState], j: usize, tally: &Tally) -> String {
    if file.jobs[j].when == crate::jobfile::When::Failure {
        return "its needs succeeded".to_string();
    }
    let blocker = |j: usize| {
        file.jobs[j].needs.iter().copied().find(|&dep| {
            matches!(
                jobs[dep].phase,
                Phase::Done { ok: false } | Phase::Skipped | Phase::Stopped
            )
        })
    };
    let Some(dep) = blocker(j) else {
        return "a needed job did not succeed".to_string();
    };
    let name = &file.jobs[dep].name;
    if jobs[dep].phase == Phase::Skipped {
        // Down the chain of skipped jobs to the one that did not succeed.
        let mut root = dep;
        while let Some(next) = blocker(root) {
            root = next;
            if jobs[root].phase != Phase::Skipped {
                break;
            }
        }
        return format!(
            "a needed job was skipped: `{name}` (`{}` did not succeed)",
            file.jobs[root].name
        );
    }
    let t = &tally.jobs[dep];
    let (stopped, failed) = (
        t.of(Some(crate::task::Outcome::Stopped)),
        t.of(Some(crate::task::Outcome::Failed)),
    );
    let stopped = stopped > 0 && failed == 0;
    if failed == 0 && jobs[dep].skipped > 0 {
        // Needed item by item by others, some of its tasks were skipped.
        return format!(
            "a needed job did not succeed: `{name}` ({} skipped)",
            crate::task::plural(jobs[dep].skipped, "task")
        );
    }
    if stopped || jobs[dep].phase == Phase::Stopped {
        format!("a needed job was stopped by the run: `{name}`")
    } else {
        format!("a needed job failed: `{name}`")
    }
}

/// Adds a record for each task that never started to `recorder`, with why (`stop`, or
/// the job it needs that failed); returns how many more were only counted.
fn skipped_records(
    file: &JobFile,
    jobs: &[JobState],
    host: &str,
    stop: &str,
    recorder: &mut Recorder,
) -> u64 {
    let mut unlisted = 0;
    for (j, state) in jobs.iter().enumerate() {
        let job = &file.jobs[j];
        if matches!(state.phase, Phase::Done { .. }) {
            continue;
        }
        let reason = match state.phase {
            Phase::Skipped => blocked_reason(file, jobs, j, &recorder.tally),
            _ => stop.to_string(),
        };
        if let Some(gates) = &state.gates {
            // Item by item: the tasks neither started nor skipped one by one.
            for index in gates.unsettled().take(MAX_SKIPPED_RECORDS as usize) {
                let item = job.items.in_memory(index).unwrap_or_default();
                let mut record = skipped_record(file, j, index, item, host);
                record.reason.clone_from(&reason);
                recorder.add(file, &record);
            }
            unlisted += (gates.unsettled().count() as u64).saturating_sub(MAX_SKIPPED_RECORDS);
            continue;
        }
        let Some(total) = state.total else { continue };
        let listed_end = total.min(state.next.saturating_add(MAX_SKIPPED_RECORDS));
        unlisted += total - listed_end;
        let mut reader = match &job.items {
            Items::File { path, .. } => Some(ItemReader::new(path)),
            _ => None,
        };
        for index in state.next..listed_end {
            let item = match &job.items {
                // A file that cannot give the item any more: the record says so by its
                // index; the item stays empty.
                Items::File { .. } => reader
                    .as_mut()
                    .and_then(|r| r.item(index).ok())
                    .unwrap_or_default(),
                items => items.in_memory(index).unwrap_or_default(),
            };
            let mut record = skipped_record(file, j, index, item, host);
            record.reason.clone_from(&reason);
            recorder.add(file, &record);
        }
    }
    unlisted
}

/// Records for the tasks of a stopped distributed run that had no result: those still on
/// workers (stopped) and those no worker took (skipped).
fn remote_records(
    file: &JobFile,
    unfinished: Vec<Start>,
    withdrawn: Vec<Start>,
    stop: &str,
    recorder: &mut Recorder,
) {
    let stopped = unfinished.into_iter().map(|s| (s, true));
    for (start, stopped) in stopped.chain(withdrawn.into_iter().map(|s| (s, false))) {
        let item = String::from_utf8_lossy(&start.item).into_owned();
        let mut record = skipped_record(file, start.job, start.index, item, "");
        record.stopped = stopped;
        if !stopped {
            // Never taken by a worker: it never started, and says why. (One still on a
            // worker is stopped, and may have started: it has no reason of its own.)
            record.reason = stop.to_string();
        }
        recorder.add(file, &record);
    }
}

/// The record of a task that never ran (or whose result never came back).
fn skipped_record(file: &JobFile, job: usize, index: u64, item: String, host: &str) -> TaskRecord {
    TaskRecord::new(job, index, item, 0, host, file.jobs[job].allow_failure)
}
