//! Running tasks: the one module that spawns processes. [`start_guarded`] takes a task
//! the scheduler started, renders its command and runs its first attempt; a failure to
//! retry comes back as a [`Retry`] that waits (holding no slot) until [`resume_guarded`]
//! runs the next attempt. [`run_task`] (workers) runs every attempt in its slot, sleeping
//! the delays. The end is a [`TaskRecord`]. Everything it prints goes to the terminal writer as
//! `task::Event`s; it never writes to the terminal itself.

pub mod control;
mod log;
pub mod process;
pub mod sink;

use crate::jobfile::{Job, JobFile, StdinSpec};
use crate::queue::Queue;
use crate::render::Stdin;
use crate::state::decision::TaskId;
use crate::state::journal::Entry;
use crate::task::{label, End, Status, TaskRecord};
use crate::task::{Event, Stream};
use control::{Control, Level};
use log::Log;
pub use process::{Prepared, StdinSource};
use sink::Sink;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The longest string Linux passes in argv or the environment, its NUL included
/// (`MAX_ARG_STRLEN`, 32 pages): a longer one makes `execve` fail with E2BIG.
const ARG_STRING_MAX: usize = 128 * 1024;

/// Who runs a task, and so where its output and its news go: one value for what would
/// otherwise be three switches that must agree.
#[cfg_attr(not(feature = "distributed"), allow(dead_code))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `runner run`: output to the terminal (held back until the task's end with
    /// `--quiet`), starts and ends shown.
    Local { quiet: bool },
    /// `runner worker`: a producer's lines are collected into the record, to be sent with
    /// its result; starts and ends shown on the worker's terminal.
    Worker,
    /// The coordinator's own share of a distributed run: collected like a worker's, and
    /// its ends are shown when its results come back through the broker, like any other.
    Share { quiet: bool },
}

impl Mode {
    pub fn quiet(self) -> bool {
        matches!(
            self,
            Mode::Local { quiet: true } | Mode::Share { quiet: true }
        )
    }

    /// Queue lines are collected into the record instead of pushed.
    pub fn collect(self) -> bool {
        !matches!(self, Mode::Local { .. })
    }

    /// `Spawned`/`Ended` events are sent as the task runs.
    pub fn progress(self) -> bool {
        !matches!(self, Mode::Share { .. })
    }
}

/// What every task of a run shares.
pub struct Context {
    pub file: Arc<JobFile>,
    pub queues: Vec<Arc<Queue>>,
    pub control: Arc<Control>,
    pub events: crossbeam_channel::Sender<Event>,
    pub mode: Mode,
    pub logs: Option<PathBuf>,
    pub run_id: String,
    pub host: String,
    /// Where a log file that cannot be written is recorded.
    pub lost: Arc<crate::lost::LostWrites>,
    /// The run's journal (`Mode::Local`): each task's end is appended before the
    /// terminal hears of it.
    pub journal: Option<Arc<crate::state::journal::Journal>>,
    /// What the run knows of earlier runs (`Mode::Local`): the stamps of tasks with
    /// `sources` are written through it as they end.
    pub memory: Option<Arc<crate::state::Memory>>,
    /// `--cache URL`: the results cache, looked up before a task's first attempt and
    /// given its success.
    pub cache: Option<Arc<crate::cache::run::Cache>>,
    /// The run's services (`Mode::Local`): readiness told to the run loop, releases.
    pub services: Option<Arc<crate::service::Services>>,
    /// A worker (`runner worker`): where its tasks' printed output and starts go on to
    /// the coordinator (`broker::forward`), besides this terminal.
    pub remote: Option<crossbeam_channel::Sender<sink::Remote>>,
}

/// One task, as its attempts see it.
struct Task<'a> {
    id: usize,
    job: &'a Job,
    index: u64,
    item: &'a str,
    slot: usize,
    label: Arc<str>,
}

impl<'a> Task<'a> {
    fn new(id: usize, job: &'a Job, index: u64, item: &'a str, slot: usize) -> Task<'a> {
        Task {
            id,
            job,
            index,
            item,
            slot,
            label: label(job, item).into(),
        }
    }
}

/// What a task's attempt leaves: the task ended, or it fails and tries again after a
/// delay (its record so far, and what the next attempt needs, in [`Retry`]).
pub enum Step {
    Ended(TaskRecord),
    Retry(Retry, Duration),
}

/// A task between two attempts: it holds no slot and no process. [`resume`] runs its
/// next attempt (in any slot); [`give_up`] ends it when the run stops during the delay.
pub struct Retry {
    record: TaskRecord,
    /// The number of the next attempt (`RUNNER_ATTEMPT`).
    attempt: u32,
    /// The delay before the attempt after that one, should it fail too.
    delay: Duration,
    /// Its cache key, when its success is to be stored.
    cache: Option<crate::cache::Key>,
}

impl Retry {
    pub fn job(&self) -> usize {
        self.record.job
    }

    pub fn index(&self) -> u64 {
        self.record.index
    }
}

/// Runs `run`, catching a panic (a bug) of the thread running it. The task's processes
/// were then killed and reaped as the thread unwound (`process::Drive`'s `Drop`), and
/// the record says "internal error: …", failed whatever `allow_failure` says; the second
/// value is then true, and the caller stops what it must.
fn guarded(
    ctx: &Context,
    of: (usize, u64, &str, usize, Option<&TaskId>),
    run: impl FnOnce() -> Step,
) -> (Step, bool) {
    let payload = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
        Ok(step) => return (step, false),
        Err(payload) => payload,
    };
    let (job_id, index, item, slot, id) = of;
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_string());
    let job = &ctx.file.jobs[job_id];
    let mut record = TaskRecord::new(job_id, index, item.to_string(), slot, &ctx.host, false);
    record.set_id(id);
    record.status = Status::Failed;
    record.end = Some(End::Internal {
        message: format!("internal error: {what}; this is a bug in runner, please report it"),
    });
    // The terminal hears of its end like any other's (progress, the heartbeat).
    let task = Task::new(job_id, job, index, item, slot);
    ended(ctx, &task, &record, false, Duration::ZERO);
    (Step::Ended(record), true)
}

/// Runs one task to its end like [`run_task`], catching a panic (see [`guarded`]).
/// Used where a task keeps its slot through its retry delays: on a worker (and the
/// coordinator's own share), whose slots are its own.
#[cfg_attr(not(feature = "distributed"), allow(dead_code))]
pub fn run_task_guarded(
    ctx: &Context,
    job_id: usize,
    index: u64,
    item: &[u8],
    slot: usize,
    id: Option<&TaskId>,
) -> (TaskRecord, bool) {
    let text = String::from_utf8_lossy(item).into_owned();
    let of = (job_id, index, text.as_str(), slot, id);
    let (step, bug) = guarded(ctx, of, || {
        Step::Ended(run_task(ctx, job_id, index, item, slot, id))
    });
    match step {
        Step::Ended(record) => (record, bug),
        Step::Retry(..) => unreachable!("run_task ends its task"),
    }
}

/// The first attempt of a task, catching a panic (see [`guarded`]). A failure to be
/// retried comes back as [`Step::Retry`]: the caller frees the slot for the delay.
pub fn start_guarded(
    ctx: &Context,
    job_id: usize,
    index: u64,
    item: &[u8],
    slot: usize,
    id: Option<&TaskId>,
) -> (Step, bool) {
    let text = String::from_utf8_lossy(item).into_owned();
    let of = (job_id, index, text.as_str(), slot, id);
    guarded(ctx, of, || start(ctx, job_id, index, item, slot, id))
}

/// The next attempt of a task whose retry delay is over, in `slot`, catching a panic.
pub fn resume_guarded(ctx: &Context, retry: Retry, slot: usize) -> (Step, bool) {
    let r = &retry.record;
    let (job_id, index, item, id) = (r.job, r.index, r.item.clone(), r.id.clone());
    let of = (job_id, index, item.as_str(), slot, id.as_ref());
    guarded(ctx, of, || resume(ctx, retry, slot))
}

/// Runs one task to its end: every attempt, with the delays between them (slept in
/// its slot). `id`: what the run knows of the task (its identity, why it runs),
/// journaled with its end.
#[cfg_attr(not(feature = "distributed"), allow(dead_code))]
pub fn run_task(
    ctx: &Context,
    job_id: usize,
    index: u64,
    item: &[u8],
    slot: usize,
    id: Option<&TaskId>,
) -> TaskRecord {
    let mut step = start(ctx, job_id, index, item, slot, id);
    loop {
        match step {
            Step::Ended(record) => return record,
            Step::Retry(retry, delay) => {
                if !ctx.control.sleep(delay) {
                    return give_up(ctx, retry);
                }
                step = resume(ctx, retry, slot);
            }
        }
    }
}

/// The record of a task about to start in this process, with what the run knows of it.
fn new_record(ctx: &Context, task: &Task<'_>, id: Option<&TaskId>) -> TaskRecord {
    let mut record = TaskRecord::new(
        task.id,
        task.index,
        task.item.to_string(),
        task.slot,
        &ctx.host,
        task.job.allow_failure,
    );
    record.set_id(id);
    record
}

/// Runs a task's first attempt; see [`Step`].
fn start(
    ctx: &Context,
    job_id: usize,
    index: u64,
    item: &[u8],
    slot: usize,
    id: Option<&TaskId>,
) -> Step {
    let job = &ctx.file.jobs[job_id];
    let item = String::from_utf8_lossy(item).into_owned();
    let task = Task::new(job_id, job, index, &item, slot);
    let mut record = new_record(ctx, &task, id);
    record.status = Status::Failed;
    if item.contains('\0') {
        record.end = Some(End::SpawnFailed {
            message: "the item holds a NUL byte, which no process can be given".to_string(),
            retryable: false,
        });
        ended(ctx, &task, &record, false, Duration::ZERO);
        return Step::Ended(record);
    }
    if item.len() + "RUNNER_ITEM=".len() >= ARG_STRING_MAX {
        record.end = Some(End::SpawnFailed {
            message: format!(
                "the item is {} bytes, more than Linux takes in one argument or environment \
                 variable (128 KiB; every task gets its item in RUNNER_ITEM); a streaming \
                 consumer (`stdin = {{ queue = \"…\" }}`) reads items of up to {} MiB",
                item.len(),
                sink::ITEM_LIMIT >> 20
            ),
            retryable: false,
        });
        ended(ctx, &task, &record, false, Duration::ZERO);
        return Step::Ended(record);
    }
    let key = cache_key(ctx, job, &item, index, id);
    // A task a worker (or the coordinator's own share) runs was looked up by the
    // coordinator before it was published: it only stores.
    if let (Some(key), Mode::Local { .. }) = (&key, ctx.mode) {
        if let Some(record) = restore(ctx, &task, key, &record) {
            return Step::Ended(finish(ctx, record));
        }
    }
    let retry = Retry {
        record,
        attempt: 1,
        delay: job.retry_delay,
        cache: key.filter(|_| ctx.cache.as_ref().is_some_and(|c| c.writes())),
    };
    resume(ctx, retry, slot)
}

/// The cache key of a task the run decided to run, when the run has a cache and the
/// task may be cached (not with `--force`, which runs every task: its success is still
/// stored).
fn cache_key(
    ctx: &Context,
    job: &Job,
    item: &str,
    index: u64,
    id: Option<&TaskId>,
) -> Option<crate::cache::Key> {
    let cache = ctx.cache.as_ref()?;
    let id = id.filter(|id| id.action == crate::state::Action::Run)?;
    if !crate::cache::run::cacheable(job) || !(cache.reads() || cache.writes()) {
        return None;
    }
    let rendered = crate::render::task(&ctx.file, job, item, index);
    crate::cache::run::key_of(job, &rendered, id)
}

/// A task of a distributed run, looked up by the coordinator before it is published
/// (`run::distributed`): restored here when its entry is there and whole (and then
/// never published), `None` otherwise. Its record is ended (journaled, told to the
/// terminal) like a local task's; the caller hands it to the scheduler.
#[cfg(feature = "distributed")]
pub fn restore_remote(
    ctx: &Context,
    job_id: usize,
    index: u64,
    item: &[u8],
    slot: usize,
    id: Option<&TaskId>,
) -> Option<TaskRecord> {
    let job = &ctx.file.jobs[job_id];
    let item = String::from_utf8_lossy(item).into_owned();
    let key = cache_key(ctx, job, &item, index, id)?;
    let task = Task::new(job_id, job, index, &item, slot);
    let record = new_record(ctx, &task, id);
    let record = restore(ctx, &task, &key, &record)?;
    Some(finish(ctx, record))
}

/// Restores a task from the cache, if its entry is there and whole: its outputs
/// written, what it printed replayed as a run's would be, its record `cached` (journaled
/// and stamped like a clean success). `None`: a miss, and the task runs.
fn restore(
    ctx: &Context,
    task: &Task<'_>,
    key: &crate::cache::Key,
    record: &TaskRecord,
) -> Option<TaskRecord> {
    let cache = ctx.cache.as_ref()?;
    if ctx.memory.as_ref().is_some_and(|m| m.force) {
        return None;
    }
    let started = std::time::SystemTime::now();
    let clock = std::time::Instant::now();
    let entry = cache.find(key, &task.label)?;
    let rendered = crate::render::task(&ctx.file, task.job, task.item, task.index);
    let restored = cache.restore(&entry, &rendered.cwd, &rendered.outputs, &task.label)?;
    let mut record = record.clone();
    let reason = crate::cache::run::reason(&entry);
    if let Some(id) = &mut record.id {
        id.action = crate::state::Action::Cached;
        id.reason.clone_from(&reason);
    }
    record.reason = reason;
    record.status = Status::Cached;
    record.end = None;
    record.started = Some(started);
    let (mut out, mut err) = sinks(ctx, task.job, task.index, &task.label, &record);
    out.open_log();
    err.open_log();
    for (file, sink) in [(restored.stdout, &mut out), (restored.stderr, &mut err)] {
        if let Some(mut file) = file {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = std::io::Read::read(&mut file, &mut buf) {
                if n == 0 {
                    break;
                }
                sink.write(&buf[..n]);
            }
        }
        sink.finish();
    }
    if let Some(path) = out.log_path() {
        record.stdout_log = Some(path.to_path_buf());
    }
    if let Some(path) = err.log_path() {
        record.stderr_log = Some(path.to_path_buf());
    }
    (record.stderr_tail, record.tail_cut) = err.tail();
    record.stdout_tail = out.tail().0;
    record.duration = clock.elapsed();
    deliver(ctx, task, out, err, true, (started, record.duration));
    record.outputs = outputs(ctx, task);
    ended(ctx, task, &record, false, record.duration);
    Some(record)
}

/// Runs attempt number `retry.attempt` of a task in `slot`; see [`Step`].
fn resume(ctx: &Context, retry: Retry, slot: usize) -> Step {
    let Retry {
        mut record,
        attempt,
        delay,
        cache,
    } = retry;
    let job = &ctx.file.jobs[record.job];
    let item = record.item.clone();
    let task = Task::new(record.job, job, record.index, &item, slot);
    record.slot = slot;
    let (result, printed) = run_attempt(ctx, &task, attempt, &mut record, cache.is_some());
    let retryable = match &result.end {
        End::SpawnFailed { retryable, .. } => *retryable,
        End::OutputRefused { .. } => false,
        _ => true,
    };
    let retrying = record.status == Status::Failed
        && retryable
        && !result.stopped
        && attempt <= job.retries
        && ctx.control.level() == Level::Run;
    if !retrying && record.status == Status::Succeeded {
        record.outputs = outputs(ctx, &task);
        if let (Some(key), Some(printed), Some(store)) = (&cache, printed, &ctx.cache) {
            if !record.stopped {
                let rendered = crate::render::task(&ctx.file, job, &item, record.index);
                store.store(
                    key.clone(),
                    &task.label,
                    &rendered.cwd,
                    &rendered.outputs,
                    printed,
                );
            }
        }
    }
    ended(ctx, &task, &record, retrying, result.duration);
    if retrying {
        // Doubled for the next one, but never past the ceiling every duration keeps (a
        // clock reading plus it must not overflow).
        let next = Retry {
            record,
            cache,
            attempt: attempt + 1,
            delay: delay
                .saturating_mul(2)
                .min(crate::jobfile::duration::CEILING),
        };
        return Step::Retry(next, delay);
    }
    Step::Ended(finish(ctx, record))
}

/// A task waiting to retry when the run stopped: it ends with what its last attempt
/// left (its end, its tries), the retry never made.
pub fn give_up(ctx: &Context, retry: Retry) -> TaskRecord {
    finish(ctx, retry.record)
}

/// A task is over for good.
fn finish(ctx: &Context, record: TaskRecord) -> TaskRecord {
    if let StdinSpec::Queue(q) = ctx.file.jobs[record.job].stdin {
        // A streaming consumer is gone for good only now (a retry reads on where the
        // failed attempt stopped): what is left is dropped, so producers never hang.
        ctx.queues[q].discard();
    }
    record
}

/// The outputs of a task of a job with `sources` that just succeeded, hashed, when they
/// will be recorded (a local run holding the state) or sent with the result (a worker,
/// which says where it wrote them). An output not found is said: the task will run again
/// next time.
fn outputs(ctx: &Context, task: &Task<'_>) -> Option<crate::state::uptodate::Outputs> {
    let job = task.job;
    let recorded = ctx.memory.as_ref().is_some_and(|m| m.writes);
    if job.sources.is_empty() || !(recorded || ctx.mode.collect()) {
        return None;
    }
    let rendered = crate::render::task(&ctx.file, job, task.item, task.index);
    let fresh = crate::state::files::Hashes::default();
    let (hashes, skip) = match &ctx.memory {
        Some(memory) => (&memory.hashes, &memory.skip[..]),
        None => (&fresh, &[][..]),
    };
    let (mut outputs, missing) = crate::state::uptodate::outputs(&rendered, hashes, skip);
    if !missing.is_empty() {
        let _ = ctx.events.send(Event::Note(format!(
            "{}: succeeded, but {}: it will run again next time",
            task.label,
            missing.join("; ")
        )));
        // Not a clean success: nothing of it is recorded as up to date.
        return None;
    }
    if ctx.mode.collect() {
        outputs.elsewhere = Some(crate::state::uptodate::place(&ctx.host, &rendered.cwd));
    }
    Some(outputs)
}

/// Tells the terminal an attempt ended (unless its ends are shown elsewhere); the last
/// one is journaled first.
fn ended(ctx: &Context, task: &Task<'_>, record: &TaskRecord, retrying: bool, took: Duration) {
    if !retrying && matches!(ctx.mode, Mode::Local { .. }) {
        journal(ctx, record);
    }
    if ctx.mode.progress() {
        let _ = ctx.events.send(Event::Ended {
            job: task.id,
            label: task.label.clone(),
            record: Box::new(record.clone()),
            retrying,
            took,
        });
    }
}

/// Appends a task's end to the run's journal, if it has one and the task an identity,
/// and records what a task with `sources` read and wrote (its stamp). A write that
/// fails is said once (and the journal stops).
pub fn journal(ctx: &Context, record: &TaskRecord) {
    let job = &ctx.file.jobs[record.job];
    if let Some(memory) = &ctx.memory {
        if let Some(warning) = memory.record(job, record) {
            let _ = ctx.events.send(Event::Note(warning));
        }
    }
    let (Some(journal), Some(id)) = (&ctx.journal, &record.id) else {
        return;
    };
    let entry = Entry::of(record, &job.name, id.identity, id.key);
    let bulk = matches!(
        record.status,
        Status::DoneEarlier | Status::UpToDate | Status::Unchanged
    );
    journal.append(&entry, bulk, &|message| {
        let _ = ctx.events.send(Event::Note(message));
    });
}

/// Runs attempt number `attempt` of `task` and folds what happened into `record`.
/// With `capture`, what the attempt printed is kept for the cache (`None` when it
/// could not be kept whole).
fn run_attempt(
    ctx: &Context,
    task: &Task<'_>,
    attempt: u32,
    record: &mut TaskRecord,
    capture: bool,
) -> (process::Attempt, Option<Printed>) {
    let job = task.job;
    let prepared = prepare(ctx, job, task.item, task.index, task.slot, attempt);
    let (mut out, mut err) = sinks(ctx, job, task.index, &task.label, record);
    if capture {
        (out, err) = (out.capture(), err.capture());
    }
    let watch = service_watch(ctx, task);
    if let (Some(watch), Some(services)) = (&watch, &ctx.services) {
        if watch.watches_lines() {
            out = out.watch_lines(watch.clone(), services.clone());
            err = err.watch_lines(watch.clone(), services.clone());
        }
    }
    let mut checker = None;
    let mut on_spawn = |pid| {
        if let (Some(watch), Some(services)) = (&watch, &ctx.services) {
            checker = watch.started(services);
        }
        if let Some(remote) = &ctx.remote {
            let _ = remote.send(sink::Remote::Started {
                task: format!("{}/{}", job.name, task.index).into(),
                pid,
                attempt,
            });
        }
        if ctx.mode.progress() {
            let _ = ctx.events.send(Event::Spawned {
                job: task.id,
                label: task.label.clone(),
                pid,
                attempt,
                worker: None,
            });
        }
    };
    let result = process::run(
        &prepared,
        &mut out,
        &mut err,
        job.timeout,
        &ctx.control,
        watch.as_ref().map(|w| &w.release),
        &mut on_spawn,
    );
    let mut result = result;
    let life = watch
        .as_ref()
        .and_then(|w| service_over(ctx, task, w, checker, &mut result, &mut err));
    record.attempts = attempt;
    record.pid = result.pid;
    record.started.get_or_insert(result.started);
    record.duration = result
        .started
        .duration_since(record.started.unwrap_or(result.started))
        .unwrap_or_default()
        + result.duration;
    record.stopped = result.stopped;
    if let Some(path) = out.log_path() {
        record.stdout_log = Some(path.to_path_buf());
    }
    if let Some(path) = err.log_path() {
        record.stderr_log = Some(path.to_path_buf());
    }
    if let Some(message) = out.refused().or(err.refused()) {
        result.end = End::OutputRefused {
            message: message.to_string(),
        };
    }
    let mut ok = matches!(result.end, End::Exited(code) if job.success_codes.contains(&code));
    if let Some((life, check)) = life {
        ok = service_record(ctx, record, &result, life, check);
    }
    record.tries.push(crate::task::Try {
        started: result.started,
        duration: result.duration,
        pid: result.pid,
        end: result.end.clone(),
    });
    (record.stderr_tail, record.tail_cut) = err.tail();
    // A producer's stdout went to its queue: those lines are items, not its news.
    if job.to.is_none() {
        record.stdout_tail = out.tail().0;
    }
    record.queue_lines = out.take_collected();
    let printed = match (out.take_capture(), err.take_capture()) {
        (Some(o), Some(e)) => match (o.finish(), e.finish()) {
            (Some(o), Some(e)) => Some((o, e)),
            _ => None,
        },
        _ => None,
    };
    deliver(ctx, task, out, err, ok, (result.started, result.duration));
    record.status = if ok {
        Status::Succeeded
    } else {
        Status::Failed
    };
    record.end = Some(result.end.clone());
    (result, printed)
}

/// A service task's attempt is over: its check stopped, and what failed it as a
/// service said on its stderr (not ready in time: its end is `NotReady`).
fn service_over(
    ctx: &Context,
    task: &Task<'_>,
    watch: &Arc<crate::service::Watch>,
    checker: Option<std::thread::JoinHandle<()>>,
    result: &mut process::Attempt,
    err: &mut Sink,
) -> Option<(crate::service::Life, Option<String>)> {
    let services = ctx.services.as_ref()?;
    let life = watch.finish(checker);
    services.forget(task.id, task.index);
    if let Some(problem) = &life.problem {
        // Said on its stderr, so that the summary's tail and the logs show it.
        err.write(format!("runner: {problem}\n").as_bytes());
        err.finish();
        if problem.starts_with("not ready after") && ctx.control.level() == Level::Run {
            result.end = End::NotReady {
                message: problem.clone(),
            };
        }
    }
    Some((life, watch.describe()))
}

/// A service task's record: done when released; ending by itself before is a failure,
/// and one the run stopped (Ctrl-C, fail-fast) is stopped, whatever released it.
/// Returns whether it succeeded.
fn service_record(
    ctx: &Context,
    record: &mut TaskRecord,
    result: &process::Attempt,
    life: crate::service::Life,
    check: Option<String>,
) -> bool {
    let run_stopped = result.stopped && ctx.control.level() != Level::Run;
    record.stopped = run_stopped;
    record.service = Some(crate::task::ServiceLife {
        check,
        ready_at: life.ready.map(|r| r.0),
        ready_after: life.ready.map(|r| r.1),
        released: life.released && !run_stopped,
        problem: life.problem,
    });
    life.released && !run_stopped
}

/// The watch of a service's task about to start (`None` for any other task, or where
/// services do not run: workers).
fn service_watch(ctx: &Context, task: &Task<'_>) -> Option<Arc<crate::service::Watch>> {
    let services = ctx.services.as_ref()?;
    let job = task.job;
    if !job.service {
        return None;
    }
    let check = crate::render::ready(job, task.item, task.index).map(|check| {
        let regex = match &job.ready {
            Some(crate::jobfile::Ready::Line(pattern)) => Some(pattern.regex.clone()),
            _ => None,
        };
        (check, regex)
    });
    match services.watch(
        job.id,
        task.index,
        task.label.clone(),
        check,
        job.ready_timeout,
    ) {
        Ok(watch) => Some(watch),
        Err(e) => {
            let _ = ctx.events.send(Event::Note(format!(
                "{}: cannot watch the service ({e}): it counts as ready once started",
                task.label
            )));
            None
        }
    }
}

/// What an attempt printed, kept for the cache: stdout's and stderr's.
type Printed = (
    Option<crate::cache::run::Captured>,
    Option<crate::cache::run::Captured>,
);

/// An attempt's output, held back until its end (grouped, `--quiet`), goes to the
/// terminal: in one event when grouped, so that no other task's line falls inside it
/// (with --quiet, only a failure's). `span`: when the attempt started, and how long.
fn deliver(
    ctx: &Context,
    task: &Task<'_>,
    mut out: Sink,
    mut err: Sink,
    ok: bool,
    span: (std::time::SystemTime, Duration),
) {
    if ctx.file.output_of(task.job).grouped() {
        let (out, err) = (out.take_held(), err.take_held());
        if (out.is_some() || err.is_some()) && (!ok || !ctx.mode.quiet()) {
            let files = [&out, &err]
                .into_iter()
                .flatten()
                .filter(|h| h.has_file())
                .count();
            let flight = crate::held::Flight::board(files);
            let seconds = |t: std::time::SystemTime| {
                t.duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
            };
            let _ = ctx.events.send(Event::Group {
                job: task.id,
                index: task.index,
                label: task.label.clone(),
                name: crate::task::name(task.job, task.item).into(),
                span: (seconds(span.0), seconds(span.0 + span.1)),
                out,
                err,
                flight,
            });
        }
    } else {
        out.release(!ok);
        err.release(!ok);
    }
}

/// Where an attempt's output goes. `record` says which log files an earlier attempt of
/// the task opened: a retry appends to those, and starts afresh otherwise (a file of the
/// same name may be left from an earlier run).
fn sinks(
    ctx: &Context,
    job: &Job,
    index: u64,
    label: &Arc<str>,
    record: &TaskRecord,
) -> (Sink, Sink) {
    // Held back until the attempt ends: with --quiet (shown if it fails) or grouped.
    // A service's output is shown as it arrives (it ends only when released).
    let held = ctx.mode.quiet() || (ctx.file.output_of(job).grouped() && !job.service);
    let mut out = match job.to {
        Some(_) if ctx.mode.collect() => Sink::collect(label.clone()),
        Some(q) => {
            let control = ctx.control.clone();
            Sink::queue(
                label.clone(),
                ctx.queues[q].clone(),
                Arc::new(move || control.level() != Level::Run),
            )
        }
        None if held => Sink::held(Stream::Stdout, label.clone(), ctx.events.clone()),
        None => Sink::display(Stream::Stdout, label.clone(), ctx.events.clone()),
    }
    .keep_tail();
    let mut err = if held {
        Sink::held(Stream::Stderr, label.clone(), ctx.events.clone())
    } else {
        Sink::display(Stream::Stderr, label.clone(), ctx.events.clone())
    }
    .keep_tail();
    if let Some(remote) = &ctx.remote {
        // What a task prints (not a producer's lines: they are items) also goes to the
        // coordinator, which prints it as its own task's.
        let task: Arc<str> = format!("{}/{index}", job.name).into();
        let give_up = {
            let control = ctx.control.clone();
            Arc::new(move || control.level() != Level::Run)
        };
        if job.to.is_none() {
            out = out.remote(remote.clone(), task.clone(), give_up.clone(), job.timeout);
        }
        err = err.remote(remote.clone(), task, give_up, job.timeout);
    }
    if let Some(dir) = &ctx.logs {
        // Opened when the process has started: a task that never started has no files.
        let log = |stream: &str, append: bool| {
            let path = dir.join(format!("{}.{}.{}", job.name, index, stream));
            Log::new(path, append, ctx.lost.clone(), ctx.events.clone())
        };
        out = out.log_to(log("stdout", record.stdout_log.is_some()));
        err = err.log_to(log("stderr", record.stderr_log.is_some()));
    }
    (out, err)
}

/// On the coordinator, where a remote task's output goes as it comes back from its
/// worker: the same sinks as a local task's (labelled lines, held back when grouped or
/// `--quiet`, `--logs` files, redaction), their log files opened at once. A producer's
/// stdout holds items, which come with its result: only its stderr comes here.
#[cfg(feature = "distributed")]
pub fn remote_sinks(ctx: &Context, job_id: usize, index: u64, item: &str) -> (Sink, Sink) {
    let job = &ctx.file.jobs[job_id];
    let label: Arc<str> = label(job, item).into();
    let record = TaskRecord::new(job_id, index, item.to_string(), 0, &ctx.host, false);
    let (mut out, mut err) = sinks(ctx, job, index, &label, &record);
    if job.to.is_none() {
        out.open_log();
    }
    err.open_log();
    (out, err)
}

/// On the coordinator, a remote task ended: what its sinks held is shown as a local
/// task's would be (grouped, or with `--quiet` only a failure's), and its log files are
/// recorded.
#[cfg(feature = "distributed")]
pub fn remote_delivered(ctx: &Context, record: &mut TaskRecord, sinks: (Sink, Sink)) {
    let (mut out, mut err) = sinks;
    out.finish();
    err.finish();
    if let Some(path) = out.log_path() {
        record.stdout_log = Some(path.to_path_buf());
    }
    if let Some(path) = err.log_path() {
        record.stderr_log = Some(path.to_path_buf());
    }
    let job = &ctx.file.jobs[record.job];
    let item = record.item.clone();
    let task = Task::new(record.job, job, record.index, &item, 0);
    let started = record.started.unwrap_or_else(std::time::SystemTime::now);
    let ok = record.status == Status::Succeeded;
    deliver(ctx, &task, out, err, ok, (started, record.duration));
}

/// Renders a task's command, environment, working directory and stdin (see
/// [`crate::render`]), and adds the `RUNNER_*` variables.
pub fn prepare(
    ctx: &Context,
    job: &Job,
    item: &str,
    index: u64,
    slot: usize,
    attempt: u32,
) -> Prepared {
    let rendered = crate::render::task(&ctx.file, job, item, index);
    let mut argv = rendered.command.argv().into_iter().map(OsString::from);
    let program = argv.next().unwrap_or_default();
    let args = argv.collect();
    // The vars first: a name the file's `env` sets explicitly wins (the loader refuses
    // one that is a var's own `RUNNER_VAR_<NAME>`).
    let mut env = rendered.vars;
    env.extend(rendered.env);
    // The job's secrets, by name; a value is never part of what identifies the task.
    if let Some(secrets) = crate::secrets::active() {
        env.extend(
            rendered
                .secrets
                .iter()
                .filter_map(|name| Some((name.clone(), secrets.value(name)?.to_string()))),
        );
    }
    env.extend([
        ("RUNNER_JOB".to_string(), job.name.clone()),
        ("RUNNER_ITEM".to_string(), item.to_string()),
        ("RUNNER_INDEX".to_string(), index.to_string()),
        ("RUNNER_ATTEMPT".to_string(), attempt.to_string()),
        ("RUNNER_SLOT".to_string(), slot.to_string()),
        ("RUNNER_RUN_ID".to_string(), ctx.run_id.clone()),
    ]);
    env.extend(
        rendered
            .fields
            .into_iter()
            .map(|(key, value)| (crate::jobfile::fields::env_name(&key), value)),
    );
    let cwd = rendered.cwd;
    let stdin = match rendered.stdin {
        Stdin::Null => StdinSource::Null,
        Stdin::Bytes(bytes) => StdinSource::Bytes(bytes.into()),
        Stdin::File(path) => StdinSource::File(path),
        Stdin::Queue(q) => StdinSource::Queue(ctx.queues[q].clone()),
    };
    Prepared {
        program,
        args,
        env,
        cwd,
        stdin,
    }
}
