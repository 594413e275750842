//! Running tasks: the one module that spawns processes. [`run_task`] takes a task the
//! scheduler started, renders its command, runs its attempts (retries, delays) and
//! returns its [`TaskRecord`]. Everything it prints goes to the terminal writer through
//! `display::Event`s; it never writes to the terminal itself.

pub mod control;
pub mod process;
pub mod sink;
pub mod sys;

use crate::display::{Event, Stream};
use crate::jobfile::{CommandSpec, Job, JobFile, StdinSpec};
use crate::queue::Queue;
use crate::template::{Quoting, Values};
use control::{Control, Level};
pub use process::{Attempt, End, Prepared, StdinSource};
use sink::Sink;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// What a task came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Succeeded,
    Failed,
    /// Never started: a job it needs failed, or the run stopped first.
    Skipped,
}

/// One task, as reported.
#[derive(Debug, Clone)]
pub struct TaskRecord {
    pub job: usize,
    pub index: u64,
    pub item: String,
    pub slot: usize,
    pub host: String,
    pub status: Status,
    /// The last attempt's end; `None` when skipped.
    pub end: Option<End>,
    pub pid: Option<u32>,
    pub attempts: u32,
    pub started: Option<SystemTime>,
    pub duration: Duration,
    /// Stopped by the run (Ctrl-C, SIGTERM, fail-fast) rather than by itself.
    pub stopped: bool,
    pub allowed_failure: bool,
    pub stderr_tail: Vec<String>,
    pub tail_cut: bool,
    /// The last lines of stdout, shown for a failed task that printed nothing on stderr.
    pub stdout_tail: Vec<String>,
    /// On a worker: the stdout lines bound for the job's queue, sent with the result.
    pub queue_lines: Vec<u8>,
    pub stdout_log: Option<PathBuf>,
    pub stderr_log: Option<PathBuf>,
}

impl TaskRecord {
    /// A task that has not run (yet): no attempts, no end.
    pub fn new(
        job: usize,
        index: u64,
        item: String,
        slot: usize,
        host: &str,
        allowed_failure: bool,
    ) -> TaskRecord {
        TaskRecord {
            job,
            index,
            item,
            slot,
            host: host.to_string(),
            status: Status::Skipped,
            end: None,
            pid: None,
            attempts: 0,
            started: None,
            duration: Duration::ZERO,
            stopped: false,
            allowed_failure,
            stderr_tail: Vec::new(),
            tail_cut: false,
            stdout_tail: Vec::new(),
            queue_lines: Vec::new(),
            stdout_log: None,
            stderr_log: None,
        }
    }
}

/// What every task of a run shares.
pub struct Context {
    pub file: Arc<JobFile>,
    pub queues: Vec<Arc<Queue>>,
    pub control: Arc<Control>,
    pub events: crossbeam_channel::Sender<Event>,
    pub quiet: bool,
    pub logs: Option<PathBuf>,
    pub run_id: String,
    pub host: String,
    /// On a worker: queue lines are collected into the record instead of pushed.
    pub collect: bool,
    /// Send `Spawned`/`Ended` events (off for the coordinator's own share of a
    /// distributed run, whose ends are reported when their results come back).
    pub progress: bool,
}

/// Runs one task to its end: every attempt, with the delays between them.
pub fn run_task(ctx: &Context, job_id: usize, index: u64, item: &[u8], slot: usize) -> TaskRecord {
    let job = &ctx.file.jobs[job_id];
    let item = String::from_utf8_lossy(item).into_owned();
    let label: Arc<str> = label(job, &item).into();
    let mut record = TaskRecord::new(
        job_id,
        index,
        item.clone(),
        slot,
        &ctx.host,
        job.allow_failure,
    );
    record.status = Status::Failed;
    if item.contains('\0') {
        let message = "the item holds a NUL byte, which no process can be given".to_string();
        record.end = Some(End::SpawnFailed {
            message,
            retryable: false,
        });
        if ctx.progress {
            let _ = ctx.events.send(Event::Ended {
                job: job_id,
                label,
                record: Box::new(record.clone()),
                retrying: false,
            });
        }
        return record;
    }
    let mut delay = job.retry_delay;
    for attempt in 1..=job.retries + 1 {
        let prepared = prepare(ctx, job, &item, index, slot, attempt);
        let (mut out, mut err) = sinks(ctx, job, index, &label, attempt, &mut record);
        let events = &ctx.events;
        let mut on_spawn = |pid| {
            if ctx.progress {
                let _ = events.send(Event::Spawned {
                    job: job_id,
                    label: label.clone(),
                    pid,
                    attempt,
                });
            }
        };
        let result = process::run(
            &prepared,
            &mut out,
            &mut err,
            job.timeout,
            &ctx.control,
            &mut on_spawn,
        );
        record.attempts = attempt;
        record.pid = result.pid;
        record.started.get_or_insert(result.started);
        record.duration = result
            .started
            .duration_since(record.started.unwrap_or(result.started))
            .unwrap_or_default()
            + result.duration;
        record.stopped = result.stopped;
        let ok = matches!(result.end, End::Exited(code) if job.success_codes.contains(&code));
        (record.stderr_tail, record.tail_cut) = err.tail();
        record.stdout_tail = out.tail().0;
        record.queue_lines = out.take_collected();
        out.release(!ok);
        err.release(!ok);
        record.status = if ok {
            Status::Succeeded
        } else {
            Status::Failed
        };
        record.end = Some(result.end.clone());
        let retryable = match &result.end {
            End::SpawnFailed { retryable, .. } => *retryable,
            _ => true,
        };
        let retrying = !ok
            && retryable
            && !result.stopped
            && attempt <= job.retries
            && ctx.control.level() == Level::Run;
        if ctx.progress {
            let _ = ctx.events.send(Event::Ended {
                job: job_id,
                label: label.clone(),
                record: Box::new(record.clone()),
                retrying,
            });
        }
        if !retrying {
            break;
        }
        if !ctx.control.sleep(delay) {
            break;
        }
        delay = delay.saturating_mul(2);
    }
    record
}

/// "job" for a single task, "job:item" for a fan-out (the item shortened and made
/// printable).
pub fn label(job: &Job, item: &str) -> String {
    if !job.items.is_fan_out() {
        return job.name.clone();
    }
    let mut shown: String = item
        .chars()
        .take(40)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if item.chars().count() > 40 {
        shown.push('…');
    }
    format!("{}:{}", job.name, shown)
}

fn sinks(
    ctx: &Context,
    job: &Job,
    index: u64,
    label: &Arc<str>,
    attempt: u32,
    record: &mut TaskRecord,
) -> (Sink, Sink) {
    let mut out = match job.to {
        Some(_) if ctx.collect => Sink::collect(label.clone()),
        Some(q) => {
            let control = ctx.control.clone();
            Sink::queue(
                label.clone(),
                ctx.queues[q].clone(),
                Arc::new(move || control.level() != Level::Run),
            )
        }
        None if ctx.quiet => Sink::held(Stream::Stdout, label.clone(), ctx.events.clone()),
        None => Sink::display(Stream::Stdout, label.clone(), ctx.events.clone()),
    }
    .keep_tail();
    let mut err = if ctx.quiet {
        Sink::held(Stream::Stderr, label.clone(), ctx.events.clone())
    } else {
        Sink::display(Stream::Stderr, label.clone(), ctx.events.clone())
    }
    .keep_tail();
    if let Some(dir) = &ctx.logs {
        let open = |stream: &str| {
            let path = dir.join(format!("{}.{}.{}", job.name, index, stream));
            let file = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .append(attempt > 1)
                .truncate(attempt == 1)
                .open(&path);
            file.ok().map(|f| (f, path))
        };
        if let Some((file, path)) = open("stdout") {
            out = out.log_to(file);
            record.stdout_log = Some(path);
        }
        if let Some((file, path)) = open("stderr") {
            err = err.log_to(file);
            record.stderr_log = Some(path);
        }
    }
    (out, err)
}

/// Renders a task's command, environment, working directory and stdin.
pub fn prepare(
    ctx: &Context,
    job: &Job,
    item: &str,
    index: u64,
    slot: usize,
    attempt: u32,
) -> Prepared {
    let values = Values {
        item,
        index,
        job: &job.name,
    };
    let (program, args): (OsString, Vec<OsString>) = match &job.command {
        CommandSpec::Argv(argv) => {
            let mut rendered = argv
                .iter()
                .map(|t| OsString::from(t.render(&values, Quoting::Raw)));
            let program = rendered.next().unwrap_or_default();
            (program, rendered.collect())
        }
        CommandSpec::Shell { shell, script } => {
            let mut args: Vec<OsString> = shell[1..].iter().map(OsString::from).collect();
            args.push(script.render(&values, Quoting::Shell).into());
            (shell[0].clone().into(), args)
        }
    };
    let mut env: Vec<(String, String)> = Vec::new();
    for (name, value) in ctx.file.env.iter().chain(job.env.iter()) {
        env.push((name.clone(), value.render(&values, Quoting::Raw)));
    }
    env.extend([
        ("RUNNER_JOB".to_string(), job.name.clone()),
        ("RUNNER_ITEM".to_string(), item.to_string()),
        ("RUNNER_INDEX".to_string(), index.to_string()),
        ("RUNNER_ATTEMPT".to_string(), attempt.to_string()),
        ("RUNNER_SLOT".to_string(), slot.to_string()),
        ("RUNNER_RUN_ID".to_string(), ctx.run_id.clone()),
    ]);
    let cwd = match &job.cwd {
        Some(cwd) => ctx.file.dir.join(cwd.render(&values, Quoting::Raw)),
        None => ctx.file.dir.clone(),
    };
    let stdin = match &job.stdin {
        StdinSpec::Empty => StdinSource::Null,
        StdinSpec::Text(text) => {
            StdinSource::Bytes(text.render(&values, Quoting::Raw).into_bytes().into())
        }
        StdinSpec::File(path) => StdinSource::File(path.clone()),
        StdinSpec::Queue(q) => StdinSource::Queue(ctx.queues[*q].clone()),
    };
    Prepared {
        program,
        args,
        env,
        cwd,
        stdin,
    }
}
