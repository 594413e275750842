//! The driver of a run: it owns the scheduler, the pool's slot threads, the queues, the
//! terminal writer and the signal listener, and turns their events into the next starts.
//! Signals become events in this loop; nothing exits from inside a handler.
//!
//! Invariant: the run ends only when no task is running, so every process the run
//! started has been reaped (and its group stopped) before the summary is printed.
//!
//! Longer than 400 lines: the local and the distributed dispatch paths share the one
//! lock, the core and the end of a run, and read best together.

use crate::broker::{coordinator, worker};
use crate::display::{self, Event};
use crate::exec::control::Control;
use crate::exec::{self, Context, Status, TaskRecord};
use crate::jobfile::{Items, JobFile};
use crate::queue::{Queue, Take, Waker};
use crate::report::{self, RunInfo};
use crate::scheduler::{Effect, JobState, Phase, Queues, Scheduler, Start, REMOTE};
use crossbeam_channel::{select, unbounded, Receiver, Sender};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

#[derive(Debug, Clone)]
pub struct Options {
    pub pool: Option<usize>,
    pub fail_fast: bool,
    pub quiet: bool,
    pub logs: Option<PathBuf>,
    pub report: Option<PathBuf>,
    pub junit: Option<PathBuf>,
    pub grace: Duration,
    /// A distributed run: tasks of fan-out jobs go through this broker.
    pub broker: Option<coordinator::Options>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            pool: None,
            fail_fast: false,
            quiet: false,
            logs: None,
            report: None,
            junit: None,
            grace: Duration::from_secs(5),
            broker: None,
        }
    }
}

/// Why the run ended early, if it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    Int,
    Term,
    Hup,
}

impl Interrupt {
    pub fn exit_code(self) -> i32 {
        match self {
            Interrupt::Int => 130,
            Interrupt::Term => 143,
            Interrupt::Hup => 129,
        }
    }
}

enum Note {
    /// The run may have ended; look again.
    Changed,
    /// A queue the scheduler waits on got items or closed.
    QueueReady,
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
    fn blocked_producers(&self, q: usize) -> usize {
        self.0[q].blocked_producers()
    }
}

/// What the slot threads and the run loop share, under one lock.
struct Core {
    scheduler: Scheduler,
    records: Vec<TaskRecord>,
    /// A channel to each slot's thread, created on first use.
    slots: Vec<Option<Sender<Start>>>,
}

struct Shared {
    core: Mutex<Core>,
    ctx: Arc<Context>,
    notes: Sender<Note>,
    /// Distributed runs: where tasks of remote jobs go.
    remote: Option<Sender<Start>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs a checked job file; returns the exit status.
pub fn run(file: JobFile, options: Options) -> Result<i32, String> {
    let file = Arc::new(file);
    let pool = options
        .pool
        .or(file.pool)
        .unwrap_or_else(num_cpus::get)
        .max(1);
    let fail_fast = options.fail_fast || file.fail_fast;
    let mut options = options;
    if let Some(dir) = &options.logs {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create logs folder {}: {e}", dir.display()))?;
        // Reports name log files by absolute path, wherever they are read from.
        options.logs = Some(dir.canonicalize().unwrap_or_else(|_| dir.clone()));
    }
    let run_id = run_id();
    let started = SystemTime::now();
    let clock = Instant::now();
    let signals = listen_for_signals()?;
    let control =
        Arc::new(Control::new(options.grace).map_err(|e| format!("cannot set up the run: {e}"))?);
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
    let (events, events_rx) = crossbeam_channel::bounded::<Event>(64);
    let writer = display::Writer::new(file.clone(), display::Options::detect(options.quiet));
    let writer = std::thread::Builder::new()
        .name("terminal".into())
        .spawn(move || writer.run(events_rx))
        .map_err(|e| format!("cannot start the terminal writer: {e}"))?;
    let ctx = Arc::new(Context {
        file: file.clone(),
        queues: queues.clone(),
        control: control.clone(),
        events: events.clone(),
        quiet: options.quiet,
        logs: options.logs.clone(),
        run_id: run_id.clone(),
        host: exec::sys::hostname(),
        collect: false,
        progress: true,
    });
    let mut scheduler = Scheduler::new(file.clone(), pool, fail_fast);
    let (remote_tx, remote_rx) = unbounded::<Start>();
    if options.broker.is_some() {
        let remote = file.jobs.iter().map(worker::may_run_remotely).collect();
        scheduler.set_remote(remote, REMOTE_WINDOW);
    }
    let shared = Arc::new(Shared {
        core: Mutex::new(Core {
            scheduler,
            records: Vec::new(),
            slots: Vec::new(),
        }),
        ctx: ctx.clone(),
        notes: notes_tx.clone(),
        remote: options.broker.as_ref().map(|_| remote_tx),
    });
    drop(notes_tx);
    let distributed = match &options.broker {
        Some(broker) => match start_distributed(&shared, broker, &run_id, remote_rx, pool) {
            Ok(d) => Some(d),
            Err(e) => {
                let _ = events.send(Event::Finish(String::new()));
                drop(events);
                let _ = writer.join();
                return Err(e);
            }
        },
        None => None,
    };

    let mut interrupted: Option<Interrupt> = None;
    dispatch(&shared, &mut shared.lock(), None);
    loop {
        if shared.lock().scheduler.is_done() {
            break;
        }
        select! {
            recv(notes) -> note => match note {
                Ok(Note::QueueReady) => {
                    dispatch(&shared, &mut shared.lock(), None);
                }
                Ok(Note::Changed) => {}
                Err(_) => break,
            },
            recv(signals) -> signal => {
                if let Ok(signal) = signal {
                    let first = interrupted.is_none();
                    interrupted.get_or_insert(signal);
                    let mut core = shared.lock();
                    core.scheduler.stop();
                    // The note goes first, so that it is printed before the ends it causes.
                    if first {
                        let running = core.scheduler.running();
                        let _ = events.send(Event::Note(format!(
                            "{}: stopping {running} running task(s) (TERM, then KILL after {}); again to kill at once",
                            signal_label(signal),
                            display::duration(options.grace)
                        )));
                        control.stop();
                    } else {
                        let _ = events.send(Event::Note("killing every running task now".into()));
                        control.kill();
                    }
                }
            },
        }
    }
    let mut unfinished = Vec::new();
    if let Some((coordinator, local)) = distributed {
        unfinished = coordinator.finish();
        if let Some((stop, thread)) = local {
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
            let _ = thread.join();
        }
    }
    let (mut records, scheduler_jobs) = {
        let mut core = shared.lock();
        // Dropping the channels ends the idle slot threads.
        core.slots.clear();
        (
            std::mem::take(&mut core.records),
            core.scheduler.jobs.clone(),
        )
    };
    let (skipped, unlisted) = skipped_records(&file, &scheduler_jobs, &ctx.host);
    records.extend(skipped);
    // Tasks still on workers when a stopped run ended: no result came back for them.
    for start in unfinished {
        let mut record = skipped_record(
            &file,
            start.job,
            start.index,
            String::from_utf8_lossy(&start.item).into_owned(),
            "",
        );
        record.stopped = true;
        records.push(record);
    }
    records.sort_by_key(|r| (r.job, r.index));
    let failed = records
        .iter()
        .any(|r| r.status == Status::Failed && !r.allowed_failure);
    let exit = match interrupted {
        Some(signal) => signal.exit_code(),
        None if failed => 1,
        None => 0,
    };
    let info = RunInfo {
        id: run_id,
        host: ctx.host.clone(),
        file: file.path.display().to_string(),
        started,
        duration: clock.elapsed(),
        exit,
        pool,
        interrupted: interrupted.map(signal_label),
        queues: queues.iter().map(|q| (q.name.clone(), q.stats())).collect(),
    };
    let color = display::Options::detect(false).color;
    let mut summary = report::summary(&file, &records, &info, color);
    if unlisted > 0 {
        summary.push_str(&format!(
            "(and {unlisted} further skipped tasks, counted but not listed in the summary or reports)\n"
        ));
    }
    for (path, result) in [
        (
            &options.report,
            options
                .report
                .as_ref()
                .map(|p| report::write_json(p, &file, &records, &info)),
        ),
        (
            &options.junit,
            options
                .junit
                .as_ref()
                .map(|p| report::write_junit(p, &file, &records, &info)),
        ),
    ] {
        if let (Some(path), Some(Err(e))) = (path, result) {
            summary.push_str(&format!("[runner] cannot write {}: {e}\n", path.display()));
        }
    }
    let _ = events.send(Event::Finish(summary));
    drop(events);
    drop(ctx);
    drop(shared);
    let _ = writer.join();
    Ok(exit)
}

/// The most tasks of a distributed run published and not yet finished.
const REMOTE_WINDOW: usize = 4096;

type LocalShare = Option<(
    Arc<std::sync::atomic::AtomicBool>,
    std::thread::JoinHandle<()>,
)>;

/// Announces the run on the broker, wires results back into the scheduler, and starts
/// the coordinator's own share of the tasks (unless `--no-local`).
fn start_distributed(
    shared: &Arc<Shared>,
    options: &coordinator::Options,
    run_id: &str,
    tasks: Receiver<Start>,
    pool: usize,
) -> Result<(coordinator::Coordinator, LocalShare), String> {
    let ctx = shared.ctx.clone();
    let on_result = {
        let shared = shared.clone();
        Box::new(move |record: TaskRecord, lines: Vec<u8>| {
            let ctx = &shared.ctx;
            let job = &ctx.file.jobs[record.job];
            if let (Some(q), false) = (job.to, lines.is_empty()) {
                let control = ctx.control.clone();
                let _ = ctx.queues[q].push(&lines, &|| {
                    control.level() == crate::exec::control::Level::Kill
                });
            }
            let _ = ctx.events.send(Event::Ended {
                job: record.job,
                label: exec::label(job, &record.item).into(),
                record: Box::new(record.clone()),
                retrying: false,
            });
            let done = {
                let mut core = shared.lock();
                let ok = record.status == Status::Succeeded;
                core.scheduler
                    .finished(record.job, REMOTE, ok, record.allowed_failure);
                core.records.push(record);
                dispatch(&shared, &mut core, None);
                core.scheduler.is_done()
            };
            if done {
                let _ = shared.notes.send(Note::Changed);
            }
        })
    };
    let say = {
        let events = ctx.events.clone();
        Arc::new(move |text: String| {
            let _ = events.send(Event::Note(text));
        })
    };
    let coordinator =
        coordinator::Coordinator::start(ctx.file.clone(), run_id, options, tasks, on_result, say)?;
    let local = if options.no_local {
        None
    } else {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let local_ctx = Arc::new(Context {
            file: ctx.file.clone(),
            queues: ctx.queues.clone(),
            control: ctx.control.clone(),
            events: ctx.events.clone(),
            quiet: ctx.quiet,
            logs: ctx.logs.clone(),
            run_id: run_id.to_string(),
            host: ctx.host.clone(),
            collect: true,
            progress: false,
        });
        let serve = Arc::new(worker::Serve::new(
            &options.url,
            run_id,
            options.key.clone(),
            format!("coordinator@{}:{}", ctx.host, std::process::id()),
            pool,
            options.lease,
            options.max_deliveries,
            local_ctx,
            stop.clone(),
        ));
        let events = ctx.events.clone();
        let thread = std::thread::Builder::new()
            .name("local-share".into())
            .spawn(move || {
                if let Err(e) = worker::serve(serve) {
                    let _ = events.send(Event::Note(format!(
                        "the coordinator's own share stopped: {e}"
                    )));
                }
            })
            .map_err(|e| format!("cannot start a thread: {e}"))?;
        Some((stop, thread))
    };
    Ok((coordinator, local))
}

/// Starts every task that can start now. A task for `own_slot` is not sent but
/// returned, so that the slot thread that just freed it runs it without a hand-off.
fn dispatch(shared: &Arc<Shared>, core: &mut Core, own_slot: Option<usize>) -> Option<Start> {
    let ctx = &shared.ctx;
    let mut mine = None;
    loop {
        let effects = core.scheduler.take_effects();
        apply(&effects, core, ctx);
        let Some(start) = core.scheduler.next_start(&LiveQueues(&ctx.queues)) else {
            if core.scheduler.take_effects().is_empty() {
                break;
            }
            continue;
        };
        if matches!(ctx.file.jobs[start.job].items, Items::Queue(_)) {
            let _ = ctx.events.send(Event::Taken { job: start.job });
        }
        if start.slot == REMOTE {
            if let Some(remote) = &shared.remote {
                let _ = remote.send(start);
            }
            continue;
        }
        if own_slot == Some(start.slot) && mine.is_none() {
            mine = Some(start);
            continue;
        }
        let slot = start.slot;
        if core.slots.len() <= slot {
            core.slots.resize(slot + 1, None);
        }
        let sender = core.slots[slot].get_or_insert_with(|| spawn_slot(shared.clone(), slot));
        let _ = sender.send(start);
    }
    mine
}

fn apply(effects: &[Effect], core: &mut Core, ctx: &Context) {
    for effect in effects {
        match effect {
            Effect::Close(q) => ctx.queues[*q].close(),
            Effect::Discard(q) => ctx.queues[*q].discard(),
            Effect::Skipped(job) => {
                let count = core.scheduler.jobs[*job].total.unwrap_or(0);
                let _ = ctx.events.send(Event::Skipped { job: *job, count });
            }
            Effect::StopRun => {
                core.scheduler.stop();
                let running = core.scheduler.running();
                let _ = ctx.events.send(Event::Note(format!(
                    "fail-fast: a task of `{}` failed; stopping {running} running task(s), starting nothing new",
                    failing_job(&ctx.file, &core.scheduler)
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
fn spawn_slot(shared: Arc<Shared>, slot: usize) -> Sender<Start> {
    let (tx, rx) = unbounded::<Start>();
    let spawned = std::thread::Builder::new()
        .name(format!("slot-{slot}"))
        .spawn(move || {
            let mut next = rx.recv().ok();
            while let Some(start) = next {
                let record =
                    exec::run_task(&shared.ctx, start.job, start.index, &start.item, start.slot);
                let (mine, done) = {
                    let mut core = shared.lock();
                    let ok = record.status == Status::Succeeded;
                    core.scheduler
                        .finished(record.job, record.slot, ok, record.allowed_failure);
                    core.records.push(record);
                    let mine = dispatch(&shared, &mut core, Some(slot));
                    (mine, core.scheduler.is_done())
                };
                if done {
                    let _ = shared.notes.send(Note::Changed);
                }
                next = mine.or_else(|| rx.recv().ok());
            }
        });
    if let Err(e) = spawned {
        // Without a thread the slot's tasks cannot run; the run would wait forever.
        eprintln!("[runner] cannot start a pool thread: {e}");
        std::process::exit(1);
    }
    tx
}

/// Records for tasks that never started: their job was skipped, or the run stopped.
/// At most this many skipped tasks of one job get a record each; the rest are counted
/// (a skipped `range` of a billion items must not take a billion records).
const MAX_SKIPPED_RECORDS: u64 = 100_000;

fn skipped_records(file: &JobFile, jobs: &[JobState], host: &str) -> (Vec<TaskRecord>, u64) {
    let mut out = Vec::new();
    let mut unlisted = 0;
    for (j, state) in jobs.iter().enumerate() {
        let job = &file.jobs[j];
        if matches!(state.phase, Phase::Done { .. }) {
            continue;
        }
        let Some(total) = state.total else { continue };
        let listed_end = total.min(state.next.saturating_add(MAX_SKIPPED_RECORDS));
        unlisted += total - listed_end;
        for index in state.next..listed_end {
            let item = match &job.items {
                Items::List(list) => list[index as usize].clone(),
                Items::Range(a, _) => (a + index as i64).to_string(),
                _ => String::new(),
            };
            out.push(skipped_record(file, j, index, item, host));
        }
    }
    (out, unlisted)
}

/// The record of a task that never ran (or whose result never came back).
fn skipped_record(file: &JobFile, job: usize, index: u64, item: String, host: &str) -> TaskRecord {
    TaskRecord::new(job, index, item, 0, host, file.jobs[job].allow_failure)
}

fn signal_label(signal: Interrupt) -> String {
    match signal {
        Interrupt::Int => "interrupted (SIGINT)",
        Interrupt::Term => "terminated (SIGTERM)",
        Interrupt::Hup => "hung up (SIGHUP)",
    }
    .to_string()
}

/// SIGINT, SIGTERM and SIGHUP as events of the run loop.
fn listen_for_signals() -> Result<Receiver<Interrupt>, String> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(|e| format!("cannot listen for signals: {e}"))?;
    let (tx, rx) = unbounded();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                let event = match signal {
                    SIGINT => Interrupt::Int,
                    SIGTERM => Interrupt::Term,
                    _ => Interrupt::Hup,
                };
                if tx.send(event).is_err() {
                    return;
                }
            }
        })
        .map_err(|e| format!("cannot listen for signals: {e}"))?;
    Ok(rx)
}

fn run_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("{:x}-{:x}", nanos as u64, std::process::id())
}
