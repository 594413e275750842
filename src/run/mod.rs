//! The driver of a run: it owns the scheduler, the pool's slot threads and the queues,
//! and turns task ends, queue wake-ups and signals into the next starts. The session
//! (`session.rs`) gives it the terminal writer, the signal listener and the stop switch;
//! `end.rs` turns the records into the summary and the reports; `distributed.rs` adds
//! the broker for `--broker`.
//!
//! Invariant: the run ends only when no task is running, so every process the run
//! started has been reaped (and its group stopped) before the summary is printed.
//!
//! Locking: `Shared::core` (scheduler + records + slot channels) is the one lock. It is
//! held while the scheduler decides and while starts are sent to slot threads and
//! events to the terminal writer (which never takes it, so a full display channel only
//! slows the holder down); it is never held while a process is spawned or waited for,
//! nor while the broker is called.

#[cfg(feature = "distributed")]
mod distributed;
mod end;
pub mod gate;
#[cfg(feature = "distributed")]
pub mod slurm;

use crate::display;
use crate::error::{Error, Outcome};
use crate::exec::{self, Mode};
use crate::jobfile::{Items, JobFile};
use crate::queue::{Queue, Take, Waker};
use crate::report::tally::Recorder;
use crate::scheduler::{Effect, Queues, Scheduler, Start, REMOTE};
use crate::session::Session;
use crate::signals::Interrupt;
use crate::state::decision::{Action, TaskId};
use crate::task::{self, End, Event, Status, TaskRecord};
use crossbeam_channel::{select, unbounded, Receiver, Sender};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

#[derive(Debug, Clone)]
pub struct Options {
    pub pool: Option<usize>,
    pub fail_fast: bool,
    pub quiet: bool,
    /// Task lines start with `[job:label] ` (not with `--no-label`).
    pub label: bool,
    /// `--trace FILE`: the run's timeline, written as tasks end.
    pub trace: Option<PathBuf>,
    pub logs: Option<PathBuf>,
    pub report: Option<PathBuf>,
    pub junit: Option<PathBuf>,
    pub html: Option<PathBuf>,
    pub grace: Duration,
    /// Where the run's state is, and whether it resumes the latest run.
    pub state: crate::state::Options,
    /// The command that resumes this run, shown when it fails or is interrupted.
    pub resume_hint: String,
    /// `--cache URL`: the store and how the run uses it.
    pub cache: Option<crate::cache::run::Opened>,
    /// `--memfree`, `--load`: no task starts while the machine is below / above them.
    pub gates: gate::Gates,
    /// A distributed run: tasks of fan-out jobs go through this broker.
    #[cfg(feature = "distributed")]
    pub broker: Option<crate::broker::coordinator::Options>,
    /// `--slurm N`: the run's workers, submitted as a Slurm job array.
    #[cfg(feature = "distributed")]
    pub slurm: Option<slurm::Options>,
}

enum Note {
    /// The run may have ended; look again.
    Changed,
    /// A queue the scheduler waits on got items or closed.
    QueueReady,
    /// A service's task (job, index) is ready.
    ServiceReady(usize, u64, String),
}

struct Wake(Sender<Note>);

impl Waker for Wake {
    fn wake(&self, _: usize) {
        let _ = self.0.send(Note::QueueReady);
    }
}

struct LiveQueues<'a>(&'a [Arc<Queue>]);

impl Queues for LiveQueues<'_> {
    fn try_take(&self, q: usize) -> Take {
        self.0[q].try_take()
    }
    fn is_full(&self, q: usize) -> bool {
        self.0[q].is_full()
    }
    fn is_empty(&self, q: usize) -> bool {
        self.0[q].is_empty()
    }
    fn blocked_producers(&self, q: usize) -> usize {
        self.0[q].blocked_producers()
    }
}

/// What the slot threads and the run loop share, under one lock.
struct Core {
    scheduler: Scheduler,
    /// Every ended task goes here (counted, and spooled for the reports): never kept
    /// in a list, so memory does not grow with the number of tasks.
    recorder: Recorder,
    /// A channel to each slot's thread, created on first use.
    slots: Vec<Option<Sender<Work>>>,
    /// Tasks waiting to retry (holding no slot), by the number the scheduler knows them by.
    retries: HashMap<u64, exec::Retry>,
    /// `--memfree`, `--load`, when asked for.
    gate: Option<gate::Gate>,
    /// What holds tasks back, as last told to the terminal.
    said: Option<String>,
    /// Per running task (job, index): how long it waited for resources and rates.
    waited: HashMap<(usize, u64), Duration>,
}

impl Core {
    fn new(scheduler: Scheduler, recorder: Recorder) -> Core {
        Core {
            scheduler,
            recorder,
            slots: Vec::new(),
            retries: HashMap::new(),
            gate: None,
            said: None,
            waited: HashMap::new(),
        }
    }
}

/// What a slot's thread is given: a task to start, or the next attempt of one whose
/// retry delay is over.
struct Work {
    start: Start,
    retry: Option<exec::Retry>,
}

struct Shared {
    core: Mutex<Core>,
    ctx: Arc<exec::Context>,
    notes: Sender<Note>,
    /// Distributed runs: where tasks of remote jobs go.
    remote: Option<Sender<Start>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs a checked job file to its end.
pub fn run(file: JobFile, options: Options) -> Result<Outcome, Error> {
    let file = Arc::new(file);
    let pool = options
        .pool
        .or(file.pool)
        .unwrap_or_else(crate::sys::cpus)
        .max(1);
    let logs = logs_folder(options.logs.as_ref())?;
    let run_id = run_id();
    let started = (SystemTime::now(), Instant::now());
    let started_text = humantime::format_rfc3339_millis(started.0).to_string();
    // The trace is written as tasks end: a file that cannot be made stops the run here,
    // before the state is touched.
    let trace = open_trace(options.trace.as_ref(), started.0)?;
    // Before anything runs: `--resume` without a usable earlier run is an error. The
    // new journal becomes the latest run only once nothing can refuse the run (below).
    let mut run_state = crate::state::open(&file, &options.state, &run_id, &started_text)?;
    let display = display::Options {
        label: options.label,
        keep_order: true,
        ..display::Options::detect(options.quiet)
    };
    let session = Session::start(file.clone(), display, options.grace)?;
    let (notes_tx, notes) = unbounded::<Note>();
    let queues: Vec<Arc<Queue>> = file
        .queues
        .iter()
        .enumerate()
        .map(|(i, q)| {
            Arc::new(Queue::new(
                i,
                &q.name,
                q.capacity,
                Box::new(Wake(notes_tx.clone())),
            ))
        })
        .collect();
    let mut ctx = session.context(
        &run_id,
        queues,
        Mode::Local {
            quiet: options.quiet,
        },
        logs,
    );
    let earlier = run_state.earlier.take();
    ctx.journal = run_state.journal.take().map(Arc::new);
    // Stamps are written only by the run that holds the state.
    let memory =
        crate::state::Memory::new(&file, &options.state, earlier, run_state.lock.is_some());
    ctx.memory = Some(Arc::new(memory));
    ctx.cache = options.cache.clone().map(|o| {
        crate::cache::run::Cache::new(o.store, o.settings, session.events.clone(), &session.host)
    });
    ctx.services = services(&file, options.grace, &notes_tx);
    let ctx = Arc::new(ctx);
    let scheduler = Scheduler::new(file.clone(), pool, options.fail_fast || file.fail_fast);
    let (remote_tx, remote_rx) = unbounded::<Start>();
    let mut recorder = Recorder::new(
        &file,
        options.report.is_some() || options.junit.is_some() || options.html.is_some(),
    );
    recorder.trace = trace;
    let mut core = Core::new(scheduler, recorder);
    core.gate = options.gates.any().then(|| gate::Gate::new(options.gates));
    let shared = Arc::new(Shared {
        core: Mutex::new(core),
        ctx: ctx.clone(),
        notes: notes_tx,
        remote: distributed_remote(&options).then_some(remote_tx),
    });
    #[cfg(feature = "distributed")]
    let distributed = distributed::start(&shared, &options, &session, remote_rx, pool)?;
    #[cfg(not(feature = "distributed"))]
    drop(remote_rx);
    // Nothing can refuse the run any more: its journal becomes the latest run.
    announce_state(&mut run_state, &shared.ctx, &session, options.state.resume);
    let interrupted = wait_for_end(&shared, &session, &notes, options.grace);
    #[cfg(feature = "distributed")]
    let distributed::Unfinished { stopped, withdrawn } = distributed
        .map(|d| d.finish(options.grace, &session.signals))
        .unwrap_or_default();
    #[cfg(not(feature = "distributed"))]
    let (stopped, withdrawn) = (Vec::new(), Vec::new());
    let ended = end::Ended {
        run_id,
        pool,
        started,
        interrupted,
        unfinished: stopped,
        withdrawn,
    };
    let (outcome, summary) = end::finish(&shared, ended, &options);
    drop(run_state);
    drop(ctx);
    drop(shared);
    let lost = session.lost.clone();
    session.finish(summary);
    // The last of the tasks' output is written while the session finishes.
    Ok(end::with_lost_writes(outcome, &lost))
}

/// The run's services, if it has any: their readiness goes to the run loop.
fn services(
    file: &JobFile,
    grace: Duration,
    notes: &Sender<Note>,
) -> Option<Arc<crate::service::Services>> {
    if !file.jobs.iter().any(|j| j.service) {
        return None;
    }
    let notes = notes.clone();
    Some(Arc::new(crate::service::Services::new(
        grace,
        Box::new(move |job, index, said| {
            let _ = notes.send(Note::ServiceReady(job, index, said));
        }),
    )))
}

/// The `--trace` file, created.
fn open_trace(
    path: Option<&PathBuf>,
    started: SystemTime,
) -> Result<Option<crate::report::trace::Trace>, Error> {
    let Some(path) = path else { return Ok(None) };
    crate::report::trace::Trace::create(path, started, &crate::sys::hostname())
        .map(Some)
        .map_err(Error::path("write", path))
}

/// Makes the run's journal the latest run, and says what the state told (warnings, the
/// run resumed).
fn announce_state(
    state: &mut crate::state::RunState,
    ctx: &exec::Context,
    session: &Session,
    resume: bool,
) {
    let committed = state.commit();
    for warning in state.warnings.iter().chain(&committed) {
        session.say(format!("warning: {warning}"));
    }
    if let (true, Some(index)) = (resume, ctx.memory.as_ref().and_then(|m| m.index.as_ref())) {
        let run = index.header.as_ref().map_or("?", |h| h.run.as_str());
        session.say(format!(
            "resuming run {run}: {} done there, not run again",
            task::plural(index.done_count() as u64, "task")
        ));
    }
}

#[cfg(feature = "distributed")]
fn distributed_remote(options: &Options) -> bool {
    options.broker.is_some()
}

#[cfg(not(feature = "distributed"))]
fn distributed_remote(_: &Options) -> bool {
    false
}

/// Creates the `--logs` folder; reports name log files by absolute path.
fn logs_folder(dir: Option<&PathBuf>) -> Result<Option<PathBuf>, Error> {
    let Some(dir) = dir else { return Ok(None) };
    std::fs::create_dir_all(dir).map_err(Error::system(format!(
        "create the logs folder {}",
        dir.display()
    )))?;
    Ok(Some(dir.canonicalize().unwrap_or_else(|_| dir.clone())))
}

/// Starts the first tasks and waits until the scheduler says the run is over; signals
/// stop it (the first: TERM, grace, KILL; the second: KILL at once). Returns the first
/// signal, if one came.
fn wait_for_end(
    shared: &Arc<Shared>,
    session: &Session,
    notes: &Receiver<Note>,
    grace: Duration,
) -> Option<Interrupt> {
    let mut interrupted: Option<Interrupt> = None;
    dispatch(shared, &mut shared.lock(), None);
    loop {
        if shared.lock().scheduler.is_done() {
            // A signal that came while this thread was deciding (hashing sources) is
            // still in the channel: the run was interrupted all the same.
            if interrupted.is_none() {
                // (The listener stops hashing just before it sends the signal.)
                let signal = if crate::state::files::hashing_stopped() {
                    session.signals.recv_timeout(Duration::from_secs(1)).ok()
                } else {
                    session.signals.try_recv().ok()
                };
                if let Some(signal) = signal {
                    session.say(format!("{}: stopping", signal.describe()));
                    interrupted = Some(signal);
                }
            }
            return interrupted;
        }
        // A task waiting to retry, or held by a rate, may start then; a closed gate is
        // read again.
        let wake = {
            let core = shared.lock();
            let gate = core.gate.as_ref().filter(|g| g.is_closed());
            let recheck = gate.map(|_| Instant::now() + gate::RECHECK);
            match (core.scheduler.next_wake(), recheck) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        };
        let timer = match wake {
            Some(at) => crossbeam_channel::at(at),
            None => crossbeam_channel::never(),
        };
        select! {
            recv(timer) -> _ => {
                dispatch(shared, &mut shared.lock(), None);
            },
            recv(notes) -> note => match note {
                Ok(Note::QueueReady) => {
                    dispatch(shared, &mut shared.lock(), None);
                }
                Ok(Note::Changed) => {}
                Ok(Note::ServiceReady(job, index, said)) => {
                    let mut core = shared.lock();
                    let _ = shared.ctx.events.send(Event::Note(said));
                    core.scheduler.service_ready(job, index);
                    dispatch(shared, &mut core, None);
                }
                Err(_) => return interrupted,
            },
            recv(session.signals) -> signal => {
                let Ok(signal) = signal else { continue };
                let first = interrupted.is_none();
                interrupted.get_or_insert(signal);
                let mut core = shared.lock();
                core.scheduler.stop();
                // The note goes first, so that it is printed before the ends it causes.
                if first {
                    session.say(format!(
                        "{}: stopping {} (TERM, then KILL after {}); again to kill at once",
                        signal.describe(),
                        task::plural(core.scheduler.running_here() as u64, "running task"),
                        task::duration(grace)
                    ));
                    session.control.stop();
                    // Tasks waiting to retry end now, without another attempt.
                    dispatch(shared, &mut core, None);
                } else {
                    session.say("killing every running task now");
                    session.control.kill();
                }
            },
        }
    }
}

/// Records a task's end and starts what can start now: the one path for every task that
/// ended, in a slot thread or on a worker. `slot` is the slot it held (`REMOTE` for a
/// worker's). Returns the task to run next in `own_slot`, if there is one for it.
fn task_ended(
    shared: &Arc<Shared>,
    slot: usize,
    mut record: TaskRecord,
    own_slot: Option<usize>,
) -> Option<Work> {
    let (mine, done) = {
        let mut core = shared.lock();
        if let Some(waited) = core.waited.remove(&(record.job, record.index)) {
            record.waited = waited;
        }
        let ok = record.status.is_success();
        core.scheduler
            .finished(record.job, record.index, slot, ok, record.allowed_failure);
        recorded(&mut core.recorder, &shared.ctx, &record);
        let mine = dispatch(shared, &mut core, own_slot);
        (mine, core.scheduler.is_done() || must_wake(&core))
    };
    // The run loop looks again: the run may be over, or a task held by a rate (or a
    // closed gate) waits for a time only the run loop's timer brings.
    if done {
        let _ = shared.notes.send(Note::Changed);
    }
    mine
}

/// Whether the run loop must set its timer anew after a look outside it: a task waits
/// for a rate's next start or a gate to open (a look from a slot thread that left one
/// waiting, with no task left to end, would otherwise wait for ever).
fn must_wake(core: &Core) -> bool {
    core.scheduler.next_wake().is_some() || core.gate.as_ref().is_some_and(|g| g.is_closed())
}

/// A task failed and retries after `delay`: its slot is free meanwhile (the pool counts
/// processes), and the scheduler starts it again, in any free slot, once the delay is
/// over. Returns the task to run next in `own_slot`, like [`task_ended`].
fn task_waits(
    shared: &Arc<Shared>,
    slot: usize,
    retry: exec::Retry,
    delay: Duration,
    own_slot: Option<usize>,
) -> Option<Work> {
    let mine = {
        let mut core = shared.lock();
        let ready_at = Instant::now() + delay;
        let number = core
            .scheduler
            .retry_later(retry.job(), retry.index(), slot, ready_at);
        core.retries.insert(number, retry);
        dispatch(shared, &mut core, own_slot)
    };
    // The run loop wakes at the earliest end of a delay: it has a new one to wait for.
    let _ = shared.notes.send(Note::Changed);
    mine
}

/// The run stops: tasks waiting to retry end with what their last attempt left (the
/// task is not started again), recorded like any ended task.
fn give_up_waiting(core: &mut Core, ctx: &exec::Context) {
    for abandoned in core.scheduler.abandon_waiting() {
        if let Some(retry) = core.retries.remove(&abandoned.retry) {
            let mut record = exec::give_up(ctx, retry);
            let task = (abandoned.job, abandoned.index);
            if let Some(waited) = core.waited.remove(&task) {
                record.waited = waited;
            }
            recorded(&mut core.recorder, ctx, &record);
        }
    }
}

/// Starts every task that can start now. A task for `own_slot` is not sent but
/// returned, so that the slot thread that just freed it runs it without a hand-off.
fn dispatch(shared: &Arc<Shared>, core: &mut Core, own_slot: Option<usize>) -> Option<Work> {
    let ctx = &shared.ctx;
    let mut mine = None;
    // Tasks done earlier or up to date, per job, told to the terminal once at the end.
    let mut not_run_count: std::collections::BTreeMap<usize, u64> = Default::default();
    let now = Instant::now();
    core.scheduler.wake(now);
    if let Some(gate) = &mut core.gate {
        let closed = gate.check(now).is_some();
        core.scheduler.set_gate(closed);
    }
    loop {
        let effects = core.scheduler.take_effects();
        apply(&effects, core, ctx);
        if core.scheduler.is_stopping() {
            give_up_waiting(core, ctx);
        }
        let Some(start) = core.scheduler.next_start(&LiveQueues(&ctx.queues)) else {
            if !core.scheduler.has_effects() {
                break;
            }
            continue;
        };
        if !start.waited.is_zero() {
            *core.waited.entry((start.job, start.index)).or_default() += start.waited;
        }
        if let Some(number) = start.retry {
            // Another attempt of a task that waited: decided and counted already.
            let Some(retry) = core.retries.remove(&number) else {
                // (Never: every number the scheduler gives back was kept.)
                core.scheduler
                    .finished(start.job, start.index, start.slot, false, false);
                continue;
            };
            let work = Work {
                start,
                retry: Some(retry),
            };
            if own_slot == Some(work.start.slot) && mine.is_none() {
                mine = Some(work);
            } else {
                send_to_slot(shared, core, work);
            }
            continue;
        }
        if matches!(ctx.file.jobs[start.job].items, Items::Queue(_)) {
            let _ = ctx.events.send(Event::Taken { job: start.job });
        }
        if let Some(problem) = &start.problem {
            let message = problem.clone();
            fail_unstarted(core, ctx, &start, message);
            continue;
        }
        let mut start = start;
        start.id = task_id(ctx, &start);
        // Interrupted while deciding: nothing more starts.
        if crate::state::files::hashing_stopped() {
            stopped_unstarted(core, ctx, &start);
            continue;
        }
        if let Some(id) = &start.id {
            if let Some(problem) = id.inputs.as_ref().and_then(|i| i.problem.as_ref()) {
                let job = &ctx.file.jobs[start.job];
                let label = task::label(job, &String::from_utf8_lossy(&start.item));
                let _ = ctx
                    .events
                    .send(Event::Note(format!("{label}: {problem}; it runs")));
            }
            if id.action != Action::Run {
                not_run(core, ctx, &start);
                *not_run_count.entry(start.job).or_insert(0) += 1;
                continue;
            }
        }
        journal_start(ctx, &start);
        if start.slot == REMOTE {
            if let Some(remote) = &shared.remote {
                let _ = remote.send(start);
            }
            continue;
        }
        let work = Work { start, retry: None };
        if own_slot == Some(work.start.slot) && mine.is_none() {
            mine = Some(work);
            continue;
        }
        send_to_slot(shared, core, work);
    }
    tell_waiting(core, ctx);
    if !not_run_count.is_empty() {
        // Tasks up to date wait in memory as they are decided: on disk once the batch is.
        if let Some(journal) = &ctx.journal {
            journal.flush(&|message| {
                let _ = ctx.events.send(Event::Note(message));
            });
        }
    }
    for (job, count) in not_run_count {
        let _ = ctx.events.send(Event::NotRun { job, count });
    }
    mine
}

/// Tells the terminal what holds tasks back, when that changed: a closed gate, a
/// resource, a rate (the heartbeat and the bars say it).
fn tell_waiting(core: &mut Core, ctx: &exec::Context) {
    let held = match &mut core.gate {
        Some(gate) if core.scheduler.gate_holds() => gate.check(Instant::now()).map(str::to_string),
        _ => core.scheduler.holding(),
    };
    if held != core.said {
        core.said = held.clone();
        let _ = ctx.events.send(Event::Waiting(held));
    }
}

/// Journals that a task starts: one killed with the run is told apart, next time, from
/// one that never ran.
fn journal_start(ctx: &exec::Context, start: &Start) {
    let (Some(journal), Some(id)) = (&ctx.journal, &start.id) else {
        return;
    };
    let job = &ctx.file.jobs[start.job].name;
    let entry = crate::state::journal::Entry::started(job, start.index, id.identity, id.key);
    journal.append(&entry, false, &|message| {
        let _ = ctx.events.send(Event::Note(message));
    });
}

/// What the task is (its identity), what happens to it and why.
fn task_id(ctx: &exec::Context, start: &Start) -> Option<TaskId> {
    let memory = ctx.memory.as_ref()?;
    let file = &ctx.file;
    let job = &file.jobs[start.job];
    // A service always runs: never done earlier, up to date or unchanged.
    if job.service {
        return None;
    }
    // Nothing to journal, compare with or look at: the identity is not needed.
    if ctx.journal.is_none()
        && memory.index.is_none()
        && job.sources.is_empty()
        && memory.changed.is_none()
    {
        return None;
    }
    let item = String::from_utf8_lossy(&start.item);
    let rendered = crate::render::task(file, job, &item, start.index);
    Some(crate::state::decide(
        file,
        job,
        start.index,
        &item,
        &rendered,
        memory,
    ))
}

/// A task that need not run (done earlier, up to date): journaled and recorded so, a
/// success for the jobs that need it. An up-to-date task whose files' stats changed has
/// its stamp written back.
fn not_run(core: &mut Core, ctx: &exec::Context, start: &Start) {
    let job = &ctx.file.jobs[start.job];
    let mut record = unstarted(ctx, start);
    let id = start.id.as_ref().expect("decided");
    record.status = match id.action {
        Action::UpToDate => Status::UpToDate,
        Action::Unchanged => Status::Unchanged,
        _ => Status::DoneEarlier,
    };
    record.set_id(Some(id));
    if let Some(memory) = &ctx.memory {
        if let Some(warning) = memory.refresh(job, &record.item, id) {
            let _ = ctx.events.send(Event::Note(warning));
        }
    }
    exec::journal(ctx, &record);
    settle(core, ctx, start, &record, true);
}

/// A task the run was stopped before it could start (a signal came while its sources
/// were hashed): skipped, like every task the stop kept from starting.
fn stopped_unstarted(core: &mut Core, ctx: &exec::Context, start: &Start) {
    let record = unstarted(ctx, start);
    settle(core, ctx, start, &record, false);
}

/// The record of a task that ends without a process of its own (skipped until filled in).
fn unstarted(ctx: &exec::Context, start: &Start) -> TaskRecord {
    let item = String::from_utf8_lossy(&start.item).into_owned();
    let allowed = ctx.file.jobs[start.job].allow_failure;
    TaskRecord::new(start.job, start.index, item, start.slot, &ctx.host, allowed)
}

/// Ends a task that had no process: its slot freed (a success for `needs` when `ok`),
/// its record counted.
fn settle(core: &mut Core, ctx: &exec::Context, start: &Start, record: &TaskRecord, ok: bool) {
    let mut record = std::borrow::Cow::Borrowed(record);
    if let Some(waited) = core.waited.remove(&(start.job, start.index)) {
        record.to_mut().waited = waited;
    }
    let record = record.as_ref();
    core.scheduler.finished(
        start.job,
        start.index,
        start.slot,
        ok,
        record.allowed_failure,
    );
    recorded(&mut core.recorder, ctx, record);
}

/// Every task's end, when it is over: counted and spooled, and for a `keep-order` job
/// the terminal told that the tasks after it may print.
fn recorded(recorder: &mut Recorder, ctx: &exec::Context, record: &TaskRecord) {
    recorder.add(&ctx.file, record);
    let job = &ctx.file.jobs[record.job];
    if ctx.file.output_of(job) == crate::jobfile::OutputMode::KeepOrder {
        let _ = ctx.events.send(Event::Settled {
            job: record.job,
            index: record.index,
        });
    }
}

/// Hands a start to its slot's thread, creating the thread on first use. A thread that
/// cannot be created fails its task and stops the run (it would otherwise wait forever).
fn send_to_slot(shared: &Arc<Shared>, core: &mut Core, work: Work) {
    let slot = work.start.slot;
    if core.slots.len() <= slot {
        core.slots.resize(slot + 1, None);
    }
    if core.slots[slot].is_none() {
        match spawn_slot(shared.clone(), slot) {
            Ok(sender) => core.slots[slot] = Some(sender),
            Err(e) => {
                let ctx = &shared.ctx;
                let message = format!("cannot start a pool thread: {e}");
                match work.retry {
                    // A retry's record keeps its tries; its end says why it stops here.
                    Some(retry) => {
                        let mut record = exec::give_up(ctx, retry);
                        record.end = Some(End::SpawnFailed {
                            message,
                            retryable: false,
                        });
                        let job = &ctx.file.jobs[work.start.job];
                        let _ = ctx.events.send(Event::Ended {
                            job: work.start.job,
                            label: task::label(job, &record.item).into(),
                            record: Box::new(record.clone()),
                            retrying: false,
                            took: Duration::ZERO,
                        });
                        settle(core, ctx, &work.start, &record, false);
                    }
                    None => fail_unstarted(core, ctx, &work.start, message),
                }
                core.scheduler.stop();
                ctx.control.stop();
                let _ = ctx.events.send(Event::Note(format!(
                    "cannot start a pool thread ({e}); stopping the run"
                )));
                return;
            }
        }
    }
    if let Some(sender) = &core.slots[slot] {
        let _ = sender.send(work);
    }
}

/// Ends a task that could not start (no thread for its slot, an item that could not be
/// read): a failed record, the scheduler told, its slot freed.
fn fail_unstarted(core: &mut Core, ctx: &exec::Context, start: &Start, message: String) {
    let mut record = unstarted(ctx, start);
    record.status = Status::Failed;
    record.end = Some(End::SpawnFailed {
        message,
        retryable: false,
    });
    // The terminal hears of it like of any failed task (its FAIL line, the counts, a
    // GitHub annotation).
    let job = &ctx.file.jobs[start.job];
    let _ = ctx.events.send(Event::Ended {
        job: start.job,
        label: task::label(job, &record.item).into(),
        record: Box::new(record.clone()),
        retrying: false,
        took: Duration::ZERO,
    });
    settle(core, ctx, start, &record, false);
}

fn apply(effects: &[Effect], core: &mut Core, ctx: &exec::Context) {
    for effect in effects {
        match effect {
            Effect::Close(q) => ctx.queues[*q].close(),
            Effect::Release(job) => {
                if let Some(services) = &ctx.services {
                    services.release(*job);
                }
            }
            Effect::Discard(q) => ctx.queues[*q].discard(),
            Effect::Skipped(job) => {
                let state = &core.scheduler.jobs[*job];
                let count = state.total.unwrap_or(0).saturating_sub(state.skipped);
                let _ = ctx.events.send(Event::Skipped { job: *job, count });
                let reason = end::blocked_reason(
                    &ctx.file,
                    &core.scheduler.jobs,
                    *job,
                    &core.recorder.tally,
                );
                let _ = ctx.events.send(Event::Note(format!(
                    "skipped `{}` ({}): {reason}",
                    ctx.file.jobs[*job].name,
                    task::plural(count, "task")
                )));
            }
            Effect::TaskSkipped {
                job,
                index,
                because,
                failed,
            } => {
                let file = &ctx.file;
                let item = file.jobs[*job].items.in_memory(*index).unwrap_or_default();
                let mut record = TaskRecord::new(*job, *index, item, 0, &ctx.host, false);
                record.allowed_failure = file.jobs[*job].allow_failure;
                record.reason = end::task_skipped_reason(file, *because, *failed);
                let _ = ctx.events.send(Event::Skipped {
                    job: *job,
                    count: 1,
                });
                let _ = ctx.events.send(Event::Note(format!(
                    "skipped {}: {}",
                    task::name(&file.jobs[*job], &record.item),
                    record.reason
                )));
                recorded(&mut core.recorder, ctx, &record);
            }
            Effect::Resume => {
                ctx.control.resume();
                let after: Vec<String> = ctx
                    .file
                    .jobs
                    .iter()
                    .filter(|j| j.when != crate::jobfile::When::Success)
                    .map(|j| format!("`{}`", j.name))
                    .collect();
                let _ = ctx.events.send(Event::Note(format!(
                    "fail-fast: every task stopped; the jobs with `when` may run now: {}",
                    after.join(", ")
                )));
            }
            Effect::StopRun => {
                let running = core.scheduler.running_here();
                let _ = ctx.events.send(Event::Note(format!(
                    "fail-fast: a task of `{}` failed; stopping {}, starting nothing new",
                    failing_job(&ctx.file, &core.scheduler),
                    task::plural(running as u64, "running task")
                )));
                ctx.control.stop();
            }
        }
    }
}

fn failing_job(file: &JobFile, scheduler: &Scheduler) -> String {
    scheduler
        .jobs
        .iter()
        .position(|j| j.failed > 0)
        .map(|j| file.jobs[j].name.clone())
        .unwrap_or_default()
}

/// A pool slot's thread: runs the tasks sent to it, and after each one records its end
/// and starts what can start (the next task of its own slot directly).
fn spawn_slot(shared: Arc<Shared>, slot: usize) -> std::io::Result<Sender<Work>> {
    let (tx, rx) = unbounded::<Work>();
    std::thread::Builder::new()
        .name(format!("slot-{slot}"))
        .spawn(move || {
            let mut next = rx.recv().ok();
            while let Some(Work { start, retry }) = next {
                let ctx = &shared.ctx;
                let (step, bug) = match retry {
                    Some(retry) => exec::resume_guarded(ctx, retry, start.slot),
                    None => exec::start_guarded(
                        ctx,
                        start.job,
                        start.index,
                        &start.item,
                        start.slot,
                        start.id.as_ref(),
                    ),
                };
                let mine = match step {
                    exec::Step::Ended(record) => {
                        if bug {
                            stop_for_bug(&shared, &record);
                        }
                        task_ended(&shared, start.slot, record, Some(slot))
                    }
                    exec::Step::Retry(retry, delay) => {
                        task_waits(&shared, start.slot, retry, delay, Some(slot))
                    }
                };
                next = mine.or_else(|| rx.recv().ok());
            }
        })?;
    Ok(tx)
}

/// A bug (a panic) ended a slot thread's task (`exec::run_task_guarded`): the run stops
/// — every other task gets TERM, the grace period, KILL — so that it ends (exit 1)
/// instead of waiting forever for a task nobody runs.
fn stop_for_bug(shared: &Arc<Shared>, record: &TaskRecord) {
    let ctx = &shared.ctx;
    shared.lock().scheduler.stop();
    ctx.control.stop();
    if let Some(end) = &record.end {
        let _ = ctx.events.send(Event::Note(format!(
            "{}; stopping the run",
            task::describe_end(end)
        )));
    }
}

fn run_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("{:x}-{:x}", nanos as u64, std::process::id())
}
