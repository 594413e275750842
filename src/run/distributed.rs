//! `run --broker`: the coordinator. Tasks the scheduler gives the `REMOTE` slot are
//! published to the broker; results come back into the same `task_ended` path as local
//! ones; the coordinator's own pool takes a share of the tasks unless `--no-local`.
//!
//! With `--cache`, every task is looked up before it is published, on a thread of its
//! own (`cache-lookup`, between the run loop and the publisher; never under the run's
//! lock): a hit is restored here and ended through `task_ended` like a worker's result,
//! and is never published; a miss goes on to the publisher. The own share stores what
//! it runs with the run's cache, as a worker given `--cache` does.

use super::{slurm, task_ended, Note, Shared};
use crate::broker::{coordinator, worker};
use crate::error::Error;
use crate::exec::control::Level;
use crate::exec::sink::Sink;
use crate::exec::Mode;
use crate::scheduler::{Start, REMOTE};
use crate::session::Session;
use crate::signals::Interrupt;
use crate::task::{self, End, Event, Status, TaskRecord};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub(super) use coordinator::Unfinished;

/// The most tasks of a distributed run published and not yet finished.
const REMOTE_WINDOW: usize = 4096;

pub(super) struct Distributed {
    coordinator: coordinator::Coordinator,
    /// The coordinator's own share: its stop flag and its thread.
    local: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
    /// `--cache`: the lookups before publishing, their stop flag and their thread.
    lookups: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
    /// `--slurm`: the workers' job array, cancelled once the run ended.
    array: Option<slurm::Array>,
}

impl Distributed {
    /// Ends the run on the broker; a stopped run first has its tasks on workers stopped,
    /// waiting up to `grace` and 5 s for them (less on a further signal). Returns the
    /// tasks that ended without a result.
    pub(super) fn finish(self, grace: Duration, signals: &Receiver<Interrupt>) -> Unfinished {
        // No worker that has not started yet will be needed: none starts while the
        // run's end is told to those that serve it.
        if let Some(array) = &self.array {
            array.cancel_pending();
        }
        // First: what waits for its lookup goes on to the publisher, which withdraws it.
        if let Some((stop, thread)) = self.lookups {
            stop.store(true, Ordering::SeqCst);
            let _ = thread.join();
        }
        let unfinished = self
            .coordinator
            .finish(grace + Duration::from_secs(5), signals);
        if let Some((stop, thread)) = self.local {
            stop.store(true, Ordering::SeqCst);
            let _ = thread.join();
        }
        if let Some(mut array) = self.array {
            array.cancel();
        }
        unfinished
    }
}

/// With `--broker`: announces the run on the broker, wires results back into the
/// scheduler, and starts the coordinator's own share of the tasks (unless
/// `--no-local`); with `--slurm`, submits the workers first.
pub(super) fn start(
    shared: &Arc<Shared>,
    run: &super::Options,
    session: &Session,
    tasks: Receiver<Start>,
    pool: usize,
) -> Result<Option<Distributed>, Error> {
    let Some(options) = &run.broker else {
        return Ok(None);
    };
    {
        let remote = shared
            .ctx
            .file
            .jobs
            .iter()
            .map(worker::may_run_remotely)
            .collect();
        shared.lock().scheduler.set_remote(remote, REMOTE_WINDOW);
    }
    let ctx = &shared.ctx;
    let printing = Printing::default();
    let on_result = {
        let (shared, printing) = (shared.clone(), printing.clone());
        Box::new(move |record: TaskRecord, lines: Vec<u8>| {
            result_came(&shared, record, &lines, &printing);
        })
    };
    let on_output = {
        let (shared, printing) = (shared.clone(), printing.clone());
        Box::new(move |start: &Start, piece: coordinator::Piece<'_>| {
            output_came(&shared, start, piece, &printing);
        })
    };
    let on_lost = {
        let shared = shared.clone();
        Box::new(move |starts: Vec<Start>| run_lost(&shared, starts, &printing))
    };
    let say = {
        let events = ctx.events.clone();
        Arc::new(move |text: String| {
            let _ = events.send(Event::Note(text));
        })
    };
    // Submitted before the run is announced: a refusal leaves nothing on the broker.
    // Cancelled on drop, so also when the run cannot start below.
    let array = match &run.slurm {
        Some(slurm) => Some(slurm::submit(
            &ctx.file.path,
            &ctx.run_id,
            &options.url,
            options.key.as_deref(),
            slurm,
            say.clone(),
            {
                let events = ctx.events.clone();
                Arc::new(move |text: String| {
                    let _ = events.send(Event::Cluster(text));
                })
            },
        )?),
        None => None,
    };
    let (tasks, lookups) = match ctx.cache.as_ref().filter(|c| c.reads()) {
        Some(_) => {
            let (publish, to_publish) = crossbeam_channel::unbounded::<Start>();
            let stop = Arc::new(AtomicBool::new(false));
            let thread = {
                let (shared, stop) = (shared.clone(), stop.clone());
                std::thread::Builder::new()
                    .name("cache-lookup".into())
                    .spawn(move || look_up_first(&shared, &tasks, &publish, &stop))
                    .map_err(Error::system("start a thread"))?
            };
            (to_publish, Some((stop, thread)))
        }
        None => (tasks, None),
    };
    let coordinator = coordinator::Coordinator::start(
        ctx.file.clone(),
        &ctx.run_id,
        options,
        tasks,
        (on_result, on_output, on_lost),
        say,
    )?;
    let local = if options.no_local {
        None
    } else {
        Some(start_share(session, shared, options, pool)?)
    };
    Ok(Some(Distributed {
        coordinator,
        local,
        lookups,
        array,
    }))
}

/// The `cache-lookup` thread: each task the run publishes is looked up first; a hit is
/// restored here and ended, a miss (or anything once the run stops) goes on to the
/// publisher. A panic while restoring publishes the task instead (it runs on a worker).
fn look_up_first(
    shared: &Arc<Shared>,
    tasks: &Receiver<Start>,
    publish: &Sender<Start>,
    stop: &AtomicBool,
) {
    let ctx = &shared.ctx;
    while !stop.load(Ordering::SeqCst) {
        let start = match tasks.recv_timeout(Duration::from_millis(100)) {
            Ok(start) => start,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        if ctx.control.level() == Level::Run {
            let restored = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                crate::exec::restore_remote(
                    ctx,
                    start.job,
                    start.index,
                    &start.item,
                    REMOTE,
                    start.id.as_ref(),
                )
            }));
            if let Ok(Some(record)) = restored {
                let _ = task_ended(shared, REMOTE, record, None);
                continue;
            }
        }
        let _ = publish.send(start);
    }
    for start in tasks.try_iter() {
        let _ = publish.send(start);
    }
}

/// Where the output of each remote task that printed goes, as a local task's would
/// (`exec::remote_sinks`): from its first piece until its result came.
type Printing = Arc<Mutex<HashMap<(usize, u64), (Sink, Sink)>>>;

/// A piece of a remote task's output, or an attempt's start on its worker.
fn output_came(
    shared: &Arc<Shared>,
    start: &Start,
    piece: coordinator::Piece<'_>,
    printing: &Printing,
) {
    let ctx = &shared.ctx;
    let item = String::from_utf8_lossy(&start.item);
    let mut printing = printing.lock().unwrap_or_else(|e| e.into_inner());
    let sinks = printing
        .entry((start.job, start.index))
        .or_insert_with(|| crate::exec::remote_sinks(ctx, start.job, start.index, &item));
    match piece {
        coordinator::Piece::Bytes { stream, data } => match stream {
            task::Stream::Stdout => sinks.0.write(data),
            task::Stream::Stderr => sinks.1.write(data),
        },
        coordinator::Piece::Started {
            worker,
            pid,
            attempt,
        } => {
            let _ = ctx.events.send(Event::Spawned {
                job: start.job,
                label: task::label(&ctx.file.jobs[start.job], &item).into(),
                pid,
                attempt,
                worker: Some(worker.into()),
            });
        }
    }
}

/// A worker's result: its queue lines go into the queue, what it printed is shown as a
/// local task's would be, its end is shown, and it is recorded like a local task's.
fn result_came(shared: &Arc<Shared>, mut record: TaskRecord, lines: &[u8], printing: &Printing) {
    let ctx = &shared.ctx;
    let job = &ctx.file.jobs[record.job];
    let printed = printing
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&(record.job, record.index));
    if let Some(sinks) = printed {
        crate::exec::remote_delivered(ctx, &mut record, sinks);
    }
    // Outputs written here (the coordinator's own share, or a worker in this very
    // folder) are looked at next time; others can only be trusted.
    if let Some(outputs) = &mut record.outputs {
        let rendered = crate::render::task(&ctx.file, job, &record.item, record.index);
        let here = crate::state::uptodate::place(&ctx.host, &rendered.cwd);
        if outputs.elsewhere.as_deref() == Some(here.as_str()) {
            outputs.elsewhere = None;
        }
    }
    if let (Some(q), false) = (job.to, lines.is_empty()) {
        let control = ctx.control.clone();
        let _ = ctx.queues[q].push(lines, &|| control.level() == Level::Kill);
    }
    // Journaled before the run says it ended.
    crate::exec::journal(ctx, &record);
    let _ = ctx.events.send(Event::Ended {
        job: record.job,
        label: task::label(job, &record.item).into(),
        record: Box::new(record.clone()),
        retrying: false,
        took: record.duration,
    });
    let _ = task_ended(shared, REMOTE, record, None);
}

/// Redis lost the run's state: nothing more starts, local tasks are stopped, and the
/// tasks sent to workers without a result fail as lost (the run exits 1).
fn run_lost(shared: &Arc<Shared>, starts: Vec<Start>, printing: &Printing) {
    shared.lock().scheduler.stop();
    shared.ctx.control.stop();
    for start in starts {
        let item = String::from_utf8_lossy(&start.item).into_owned();
        let mut record = TaskRecord::new(start.job, start.index, item, REMOTE, "", false);
        record.set_id(start.id.as_ref());
        record.status = Status::Failed;
        record.end = Some(End::Lost { deliveries: 0 });
        result_came(shared, record, &[], printing);
    }
    let _ = shared.notes.send(Note::Changed);
}

/// The coordinator's own share counts what its tasks use with the scheduler's count of
/// the tasks it starts here: one count for the machine.
struct MachineCount(Arc<Shared>);

impl worker::Ledger for MachineCount {
    fn fits(&self, uses: &[(crate::jobfile::ResourceId, u64)]) -> bool {
        self.0.lock().scheduler.fits(uses)
    }

    fn take(&self, uses: &[(crate::jobfile::ResourceId, u64)]) -> bool {
        self.0.lock().scheduler.lend(uses)
    }

    fn give(&self, uses: &[(crate::jobfile::ResourceId, u64)]) {
        self.0.lock().scheduler.lent_back(uses);
        // A task held back for what was given back may start now.
        let _ = self.0.notes.send(Note::Changed);
    }
}

/// The coordinator's own pool, serving the run like a worker.
fn start_share(
    session: &Session,
    shared: &Arc<Shared>,
    options: &coordinator::Options,
    pool: usize,
) -> Result<(Arc<AtomicBool>, JoinHandle<()>), Error> {
    let ctx = &shared.ctx;
    let stop = Arc::new(AtomicBool::new(false));
    let quiet = ctx.mode.quiet();
    let mut share_ctx = session.context(
        &ctx.run_id,
        ctx.queues.clone(),
        Mode::Share { quiet },
        ctx.logs.clone(),
    );
    // It stores what it runs, like a worker given --cache (uploads waited for with the
    // run's).
    share_ctx.cache = ctx.cache.clone();
    let share_ctx = Arc::new(share_ctx);
    let serve_options = worker::ServeOptions {
        url: options.url.clone(),
        run_id: ctx.run_id.clone(),
        key: options.key.clone(),
        consumer: task::own_share(&ctx.host),
        pool,
        lease: options.lease(),
        jobs: ctx.file.jobs.iter().map(|j| j.name.clone()).collect(),
        // Its own machine's `[resources]`, as a local run has them.
        capacity: ctx.file.resources.iter().map(|r| r.capacity).collect(),
        // No labels: jobs with `runs_on` run on workers only.
        labels: Vec::new(),
        // One count of this machine's resources with the tasks run here.
        ledger: Some(Arc::new(MachineCount(shared.clone()))),
        // Its tasks print here already.
        output: None,
    };
    let serve = Arc::new(worker::Serve::new(serve_options, share_ctx, stop.clone()));
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
        .map_err(Error::system("start a thread"))?;
    Ok((stop, thread))
}
