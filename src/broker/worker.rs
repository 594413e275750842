//! Taking tasks from a run's stream and running them: `runner worker`, and the
//! coordinator's own share of a distributed run (unless `--no-local`).
//!
//! A task is taken with XREADGROUP (or, once its holder's lease ran out, XCLAIM), held
//! under a lease that a renewer thread refreshes while it runs, run exactly as the local
//! mode would (`exec::run_task`), and completed by the COMPLETE script (or, without
//! `uses`, SEND in batches: `batch.rs`, `forward.rs`). Nothing from the
//! broker is run as a command: an entry names a job of the worker's own file, an index
//! and an item, and is refused unless it authenticates, names a job that may run
//! remotely, and is the entry the coordinator issued for that task. A watcher thread
//! follows the run's state: a run its coordinator stops has its tasks here stopped and
//! reported stopped; a run that ended or whose coordinator died is left. No task starts
//! once the coordinator's heartbeat expired (the START script checks it): its result
//! would never be journaled; the entries held are kept unstarted until the watcher
//! leaves the run (and gives them back) or sees the coordinator back.
//!
//! Resources are per machine (`ServeOptions::capacity`: the file's `[resources]`, or a
//! worker's `--resource`). While a job of the run has `uses`, the consumers read from
//! the broker one at a time (`Serve::reading`), one entry at a time, and only when every
//! such job's `uses` fit what is free here (`Serve::room_for_all`; jobs that never fit
//! this machine are left out). So an entry read can start at once: what its job uses is
//! taken as it is read (`Serve::hold`) and given back when it is over here, after its
//! retries (a worker retries in its slot). No worker sits on a task it cannot run while
//! another has room; the price is that a worker holding a resource reads nothing else
//! meanwhile. One stream per `uses` signature would lift that, at the cost of a stream
//! (and its pending list, takeover and renewal) per signature. An entry whose job never
//! fits here is given back at once (GIVE_BACK, delivery count unchanged), reported once
//! per job, and skipped by this worker's takeovers.
//!
//! Rates hold for the whole run: the coordinator paces what it publishes, and every
//! attempt of a job with a `rate` here, retries included, first takes a turn from the
//! run's bucket in Redis (`run_paced`, the RATE script), shared by all workers.
//!
//! Over 400 lines: the consumer, the renewer, the watcher and the result messages they
//! exchange with the coordinator are one protocol and read best side by side.

use super::batch::{Completion, Outbound};
use super::tasks::TaskState;
use super::wire::Message;
use super::{Broker, Lease, RunState, WorkerInfo, HEARTBEAT_EVERY, PRESENCE_EVERY};
use crate::error::Error;
use crate::exec::{self, Context, Mode};
use crate::jobfile::Items;
use crate::jobfile::ResourceId;
use crate::task::{printable, End, Status, TaskRecord};
use crossbeam_channel::{Receiver, Sender};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Which run a process serves, as whom, and how: given whole to [`Serve::new`].
pub struct ServeOptions {
    pub url: String,
    pub run_id: String,
    pub key: Option<Vec<u8>>,
    /// Unique per process: host and pid.
    pub consumer: String,
    /// Consumer threads, so tasks this process runs at once.
    pub pool: usize,
    pub lease: Lease,
    /// The jobs of the run (it may run a selection of the file's jobs).
    pub jobs: Vec<String>,
    /// What this machine has of each of the file's `[resources]` (in file order): the
    /// file's values, or the worker's `--resource`.
    pub capacity: Vec<u64>,
    /// This worker's labels (`--label`): it serves only jobs whose `runs_on` it has all
    /// of. The coordinator's own share has none.
    pub labels: Vec<String>,
    /// Where what tasks hold is counted: `None`, this process's own count of
    /// `capacity` (a worker); the coordinator's own share counts with its scheduler, so
    /// that the tasks it runs and those the scheduler starts here share one count.
    pub ledger: Option<Arc<dyn Ledger>>,
    /// A worker: what its tasks print, sent on to the coordinator by the `forward`
    /// thread (the other end is the context's `remote`).
    pub output: Option<crossbeam_channel::Receiver<exec::sink::Remote>>,
}

/// A count of what tasks hold of each resource on this machine.
pub trait Ledger: Send + Sync {
    /// Whether `uses` fits what is free now.
    fn fits(&self, uses: &[(ResourceId, u64)]) -> bool;
    /// Takes `uses` if it fits now; false if not.
    fn take(&self, uses: &[(ResourceId, u64)]) -> bool;
    /// Gives back what [`Ledger::take`] took.
    fn give(&self, uses: &[(ResourceId, u64)]);
}

/// A worker's own count.
struct Own {
    capacity: Vec<u64>,
    in_use: Mutex<Vec<u64>>,
}

impl Own {
    fn free(&self, in_use: &[u64], uses: &[(ResourceId, u64)]) -> bool {
        uses.iter()
            .all(|&(r, n)| in_use[r] + n <= self.capacity.get(r).copied().unwrap_or(0))
    }
}

impl Ledger for Own {
    fn fits(&self, uses: &[(ResourceId, u64)]) -> bool {
        let in_use = self.in_use.lock().unwrap_or_else(|e| e.into_inner());
        self.free(&in_use, uses)
    }

    fn take(&self, uses: &[(ResourceId, u64)]) -> bool {
        let mut in_use = self.in_use.lock().unwrap_or_else(|e| e.into_inner());
        if !self.free(&in_use, uses) {
            return false;
        }
        for &(r, n) in uses {
            in_use[r] += n;
        }
        true
    }

    fn give(&self, uses: &[(ResourceId, u64)]) {
        let mut in_use = self.in_use.lock().unwrap_or_else(|e| e.into_inner());
        for &(r, n) in uses {
            in_use[r] = in_use[r].saturating_sub(n);
        }
    }
}

/// Everything a consumer of one run needs.
pub struct Serve {
    pub(super) options: ServeOptions,
    /// Tasks run in this context; it collects queue lines instead of pushing them.
    ctx: Arc<Context>,
    /// Set when the run is over (or this process is stopping).
    stop: Arc<AtomicBool>,
    /// Set when the coordinator stops the run: tasks stopped here are reported stopped
    /// rather than left for another worker.
    stopping: AtomicBool,
    /// Set while the run's coordinator seems gone (its heartbeat expired): no consumer
    /// takes or starts a task until the watcher sees the heartbeat again, or leaves.
    orphaned: AtomicBool,
    /// Entries this process holds, for the renewer.
    held: Mutex<HashSet<String>>,
    /// Entries read and not yet started, for whichever consumer thread is free first.
    prefetched: Mutex<VecDeque<(String, Message)>>,
    /// Told when `prefetched` gains an entry (a consumer may take it) or loses one (the
    /// `take` thread may read more).
    ready: Condvar,
    /// Entries in `prefetched` already checked and recorded as started (START_MANY, by
    /// the `take` thread).
    prestarted: Mutex<HashSet<String>>,
    /// Tasks recorded as started here and never run (the run stopped first): no longer
    /// started once this process stops serving the run (`Broker::unstart`).
    unrun: Mutex<Vec<String>>,
    /// Results (and starts of tasks taken ahead) waiting for the `complete` thread,
    /// which sends them in batches.
    completions: (Sender<Outbound>, Receiver<Outbound>),
    /// A round trip to Redis and a task here, in µs (moving averages, 0 until measured):
    /// how many entries to keep in hand (`ahead_bound`).
    round_trip_us: AtomicU64,
    task_us: AtomicU64,
    /// The `take` thread reads more once no more than this many are in hand: a
    /// consumer wakes it only then.
    ahead_low: AtomicUsize,
    /// With a cache to store in (`--cache`): what tasks read is hashed here, with no
    /// state (no stamps: every task runs), so that a task's cache key is of this
    /// machine's files.
    memory: Option<crate::state::Memory>,
    /// What tasks running (or about to) here hold of each resource.
    ledger: Arc<dyn Ledger>,
    /// Entries taken with what they hold here (given back when the entry is over).
    holding: Mutex<HashMap<String, Vec<(ResourceId, u64)>>>,
    /// Whether a job of the run that may run here has `uses`: then one consumer reads
    /// at a time, one entry, and only when every such job fits what is free.
    uses: bool,
    /// Whether a job of the run has `runs_on`: then takeovers skip entries of jobs this
    /// process lacks labels for.
    routes: bool,
    /// Held by the consumer that reads from the broker while `uses`.
    reading: Mutex<()>,
    /// Jobs whose `uses` never fit this machine, said once each.
    said_never: Mutex<HashSet<String>>,
    /// Entries taken over and not yet started: counted as delivered once they are
    /// about to run (`Broker::count_run`), not while held.
    taken_over: Mutex<HashSet<String>>,
    /// The server's ids of this process's connections that wait in blocking reads (the
    /// `take` thread's, the consumers' with `uses`, the watcher's), by thread: leaving
    /// the run ends their waits at once (`wake_readers`).
    blocking: Mutex<HashMap<(&'static str, usize), u64>>,
}

impl Serve {
    pub fn new(options: ServeOptions, ctx: Arc<Context>, stop: Arc<AtomicBool>) -> Serve {
        let memory = ctx.cache.as_ref().filter(|c| c.writes()).map(|_| {
            let mut memory = crate::state::Memory::new(
                &ctx.file,
                &crate::state::Options::default(),
                None,
                false,
            );
            memory.stamps = None;
            memory
        });
        let uses = ctx
            .file
            .jobs
            .iter()
            .any(|j| serves(&options, j) && !j.uses.is_empty());
        let routes = ctx
            .file
            .jobs
            .iter()
            .any(|j| options.jobs.contains(&j.name) && !j.runs_on.is_empty());
        let ledger = options.ledger.clone().unwrap_or_else(|| {
            Arc::new(Own {
                capacity: options.capacity.clone(),
                in_use: Mutex::new(vec![0; options.capacity.len()]),
            })
        });
        Serve {
            memory,
            ledger,
            holding: Mutex::new(HashMap::new()),
            uses,
            routes,
            reading: Mutex::new(()),
            said_never: Mutex::new(HashSet::new()),
            taken_over: Mutex::new(HashSet::new()),
            blocking: Mutex::new(HashMap::new()),
            options,
            ctx,
            stop,
            stopping: AtomicBool::new(false),
            orphaned: AtomicBool::new(false),
            held: Mutex::new(HashSet::new()),
            prefetched: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
            prestarted: Mutex::new(HashSet::new()),
            unrun: Mutex::new(Vec::new()),
            completions: crossbeam_channel::unbounded(),
            round_trip_us: AtomicU64::new(0),
            task_us: AtomicU64::new(0),
            ahead_low: AtomicUsize::new(0),
        }
    }

    /// Records the id of `who`'s connection, about to wait in a blocking read, so that
    /// leaving the run ends that wait at once ([`Serve::wake_readers`]).
    fn may_block(&self, who: (&'static str, usize), broker: &mut Broker) {
        if let Some(id) = broker.client_id() {
            self.blocking
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(who, id);
        }
    }

    /// Ends the blocking reads of this process's connections, but `except`'s (the one
    /// asking): a thread that waited for entries, or for the run's events, sees at once
    /// that it serves the run no more. A wait this misses ends by itself.
    fn wake_readers(&self, broker: &mut Broker, except: (&'static str, usize)) {
        let ids: Vec<u64> = self
            .blocking
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(who, _)| **who != except)
            .map(|(_, id)| *id)
            .collect();
        for id in ids {
            broker.unblock(id);
        }
    }

    /// Tasks recorded as started here and never run: those a consumer left when the run
    /// stopped, and those still taken ahead.
    fn unrun_tasks(&self) -> Vec<String> {
        let mut tasks = std::mem::take(&mut *self.unrun.lock().unwrap_or_else(|e| e.into_inner()));
        let prestarted = self.prestarted.lock().unwrap_or_else(|e| e.into_inner());
        let prefetched = self.prefetched.lock().unwrap_or_else(|e| e.into_inner());
        tasks.extend(
            prefetched
                .iter()
                .filter(|(id, _)| prestarted.contains(id))
                .map(|(_, m)| task_key(m)),
        );
        tasks
    }

    pub(super) fn run(&self) -> &str {
        &self.options.run_id
    }

    /// Whether `uses` fits this machine's capacity at all.
    fn fits_here(&self, uses: &[(ResourceId, u64)]) -> bool {
        uses.iter()
            .all(|&(r, n)| self.options.capacity.get(r).is_some_and(|&c| n <= c))
    }

    /// Whether every job of the run that may run here, and has `uses` that fit here,
    /// fits what is free now: only then does a consumer read an entry (so that no
    /// entry is taken that could not start at once).
    fn room_for_all(&self) -> bool {
        self.ctx
            .file
            .jobs
            .iter()
            .filter(|j| serves(&self.options, j))
            .filter(|j| !j.uses.is_empty() && self.fits_here(&j.uses))
            .all(|j| self.ledger.fits(&j.uses))
    }

    /// The entry `id` of a job with `uses` takes them, if they are free here.
    fn hold(&self, id: &str, message: &Message) {
        let name = message.text("job").unwrap_or_default();
        let Some(job) = self.ctx.file.jobs.iter().find(|j| j.name == name) else {
            return;
        };
        if job.uses.is_empty() {
            return;
        }
        if self.ledger.take(&job.uses) {
            self.holding
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id.to_string(), job.uses.clone());
        }
    }

    /// The entry `id`, whose task gave back what it uses during a retry delay, takes it
    /// again: as soon as it is free here (false if the run stops first).
    fn hold_again(&self, id: &str, job: &crate::jobfile::Job) -> bool {
        loop {
            if self.ledger.take(&job.uses) {
                self.holding
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(id.to_string(), job.uses.clone());
                return true;
            }
            if !self.ctx.control.sleep(Duration::from_millis(20)) || run_over(self) {
                return false;
            }
        }
    }

    /// The entry `id` is over here: what it held is free again.
    fn give_back(&self, id: &str) {
        let held = self
            .holding
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        if let Some(uses) = held {
            self.ledger.give(&uses);
        }
    }

    /// Entries whose results are on the broker, or were given up: no longer held (nor
    /// renewed).
    pub(super) fn sent<'a>(&self, ids: impl Iterator<Item = &'a str>) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        for id in ids {
            held.remove(id);
        }
    }

    fn holds(&self, id: &str) -> bool {
        self.holding
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(id)
    }

    pub(super) fn key(&self) -> Option<&[u8]> {
        self.options.key.as_deref()
    }

    pub(super) fn say(&self, text: String) {
        let _ = self.ctx.events.send(crate::task::Event::Note(text));
    }

    /// Reports a refused message to the coordinator and on this terminal.
    fn report(&self, broker: &mut Broker, text: String) {
        self.say(text.clone());
        let event = Message::new()
            .with("host", &self.ctx.host)
            .with("message", &text)
            .sign(self.key(), self.run());
        let _ = broker.report(self.run(), &event);
    }

    /// Refuses a task entry: reported, and acknowledged so that no worker takes it again.
    fn refuse(&self, broker: &mut Broker, id: &str, text: String) {
        self.report(broker, text);
        let _ = broker.acknowledge(self.run(), id);
    }
}

/// Serves a run until it ends: `pool` consumer threads, a lease renewer, and a watcher
/// of the run's state. Every connection is made before any thread starts, so that one
/// that cannot be made fails the run here, before a consumer took tasks. The entries
/// this process still holds when it stops serving are given back (released), for
/// another worker, or this one serving the run again, to take over at once: a run this
/// process leaves may go on, and no other worker may be there to wait out the lease.
pub fn serve(serve: Arc<Serve>) -> Result<(), Error> {
    let consumers = (0..serve.options.pool)
        .map(|_| connect(&serve))
        .collect::<Result<Vec<_>, _>>()?;
    let mut renewer_broker = connect(&serve)?;
    let mut watcher_broker = connect(&serve)?;
    let ahead_brokers = match serve.uses {
        true => None,
        false => Some((connect(&serve)?, connect(&serve)?)),
    };
    let forward_broker = match serve.options.output {
        Some(_) => Some(connect(&serve)?),
        None => None,
    };
    let mut threads = Vec::new();
    // Set once every consumer thread ended: the forwarder and the `complete` thread send
    // what is left, and end.
    let consumed = Arc::new(AtomicBool::new(false));
    for (slot, mut broker) in consumers.into_iter().enumerate() {
        let s = serve.clone();
        threads.push(
            std::thread::Builder::new()
                .name(format!("consume-{slot}"))
                .spawn(move || {
                    if s.uses {
                        consume(&s, &mut broker, slot);
                    } else {
                        consume_ahead(&s, &mut broker, slot);
                    }
                }),
        );
    }
    // Without `uses`: one thread takes tasks ahead for every consumer, another sends
    // their results in batches (on a worker, the `forward` thread sends them, after
    // their output; the `complete` thread is then idle).
    let ahead = ahead_brokers.map(|(mut taker, mut completer)| {
        let s = serve.clone();
        let take = std::thread::Builder::new()
            .name("take".into())
            .spawn(move || take_ahead(&s, &mut taker))
            .ok();
        let (s, consumed) = (serve.clone(), consumed.clone());
        let complete = std::thread::Builder::new()
            .name("complete".into())
            .spawn(move || complete_batches(&s, &mut completer, &consumed))
            .ok();
        (take, complete)
    });
    let forwarder = forward_broker.and_then(|mut broker| {
        let (s, consumed) = (serve.clone(), consumed.clone());
        std::thread::Builder::new()
            .name("forward".into())
            .spawn(move || {
                if let Some(from) = &s.options.output {
                    super::forward::forward(&*s, &mut broker, from, &consumed);
                }
            })
            .ok()
    });
    let s = serve.clone();
    let renewer = std::thread::Builder::new()
        .name("renew".into())
        .spawn(move || {
            renew(&s, &mut renewer_broker);
            renewer_broker
        });
    let s = serve.clone();
    let watcher = std::thread::Builder::new()
        .name("watch-run".into())
        .spawn(move || {
            watch(&s, &mut watcher_broker);
            watcher_broker
        });
    for thread in threads.into_iter().flatten() {
        let _ = thread.join();
    }
    consumed.store(true, Ordering::SeqCst);
    if let Some(forwarder) = forwarder {
        let _ = forwarder.join();
    }
    serve.stop.store(true, Ordering::SeqCst);
    serve.ready.notify_all();
    if let Some((take, complete)) = ahead {
        for thread in [take, complete].into_iter().flatten() {
            let _ = thread.join();
        }
    }
    if let Ok(Ok(mut broker)) = renewer.map(|r| r.join()) {
        // Stopped by a signal here, not by the watcher: its wait ends now.
        serve.wake_readers(&mut broker, ("renew", 0));
    }
    if let Ok(Ok(mut broker)) = watcher.map(|w| w.join()) {
        let o = &serve.options;
        let _ = broker.unstart(&o.run_id, &o.consumer, &serve.unrun_tasks());
        let _ = broker.release(&o.run_id, &o.consumer, o.lease.duration);
    }
    Ok(())
}

fn connect(s: &Arc<Serve>) -> Result<Broker, Error> {
    let events = s.ctx.events.clone();
    let stop = s.stop.clone();
    let control = s.ctx.control.clone();
    Broker::connect(&s.options.url, Duration::from_secs(10))
        .map(|b| {
            b.on_trouble(
                move |text| {
                    let _ = events.send(crate::task::Event::Note(text));
                },
                move || stop.load(Ordering::SeqCst) || control.level() != exec::control::Level::Run,
            )
        })
        .map_err(Error::from)
}

/// Whether this process serves the run no more (the watcher or a signal said so).
fn run_over(s: &Serve) -> bool {
    s.stop.load(Ordering::SeqCst) || s.ctx.control.level() != exec::control::Level::Run
}

/// How long a run's heartbeat must stay missing before its coordinator counts as dead
/// (more than a refresh, so that a coordinator that just reconnected is not left).
const ORPHANED_AFTER: Duration = Duration::from_secs(2);

/// Watches the run's state until this process stops serving it. A run its coordinator
/// stops has its tasks here stopped (TERM, grace, KILL) and reported; a run that ended,
/// that Redis lost, or whose coordinator died (no heartbeat) is left, its tasks
/// stopped. The keys of a dead coordinator's run are set to expire.
fn watch(s: &Serve, broker: &mut Broker) {
    let mut orphaned_since: Option<Instant> = None;
    let run = printable(s.run(), 80);
    let mut present: Option<Instant> = None;
    // Read before the run's state: a change after it comes with an entry after this.
    let mut cursor = broker.newest_event(s.run()).ok();
    while !s.stop.load(Ordering::SeqCst) {
        say_serving(s, broker, &mut present);
        match broker.run_state(s.run()) {
            Ok(RunState::Running) => {
                orphaned_since = None;
                s.orphaned.store(false, Ordering::SeqCst);
            }
            Ok(RunState::Stopping) => {
                s.stopping.store(true, Ordering::SeqCst);
                give_back_ahead(s, broker);
                s.say(format!(
                    "run {run} is stopping (fail-fast or a signal on its coordinator): stopping its tasks here"
                ));
                return leave(s, broker);
            }
            Ok(RunState::Over) => return leave(s, broker),
            Ok(RunState::Orphaned) => {
                s.orphaned.store(true, Ordering::SeqCst);
                let since = *orphaned_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= ORPHANED_AFTER {
                    s.say(format!(
                        "run {run}: its coordinator is gone (its heartbeat expired over {} ago); leaving the run",
                        crate::task::duration(since.elapsed())
                    ));
                    let _ = broker.expire_run(s.run());
                    return leave(s, broker);
                }
            }
            Err(_) => {}
        }
        wait_for_change(s, broker, &mut cursor);
    }
}

/// Waits until the run's state may have changed: a wake-up entry of its event stream
/// came after `cursor` (the coordinator adds one as it stops or ends the run; workers'
/// reports are passed over), or a quarter of [`HEARTBEAT_EVERY`] passed (a coordinator
/// that died says nothing). Without a cursor (the broker could not say), sleeps, then
/// asks for one.
fn wait_for_change(s: &Serve, broker: &mut Broker, cursor: &mut Option<String>) {
    let most = HEARTBEAT_EVERY / 4;
    let wake = Instant::now() + most;
    if let Some(at) = cursor {
        loop {
            let left = wake.saturating_duration_since(Instant::now());
            if left.is_zero() || s.stop.load(Ordering::SeqCst) {
                return;
            }
            s.may_block(("watch", 0), broker);
            match broker.wait_for_event(s.run(), at, left) {
                Ok(true) => return,
                Ok(false) => {}
                Err(_) => break,
            }
        }
    }
    while Instant::now() < wake && !s.stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50));
    }
    *cursor = broker.newest_event(s.run()).ok();
}

/// Says in Redis that this process serves the run (every [`PRESENCE_EVERY`]), with its
/// labels and pool, for the coordinator to tell who serves it.
fn say_serving(s: &Serve, broker: &mut Broker, last: &mut Option<Instant>) {
    if last.is_some_and(|t| t.elapsed() < PRESENCE_EVERY) {
        return;
    }
    *last = Some(Instant::now());
    let info = WorkerInfo {
        name: s.options.consumer.clone(),
        labels: s.options.labels.clone(),
        pool: s.options.pool,
    };
    let _ = broker.serving(s.run(), &info);
}

/// The run stops: the entries taken ahead and not started are no longer recorded as
/// started, at once, for the coordinator to withdraw them rather than wait (they stay
/// held, and are released when this process stops serving the run).
fn give_back_ahead(s: &Serve, broker: &mut Broker) {
    let tasks: Vec<String> = {
        let mut prestarted = s.prestarted.lock().unwrap_or_else(|e| e.into_inner());
        let mut prefetched = s.prefetched.lock().unwrap_or_else(|e| e.into_inner());
        let (ahead, rest): (VecDeque<_>, VecDeque<_>) = prefetched
            .drain(..)
            .partition(|(id, _)| prestarted.contains(id));
        *prefetched = rest;
        ahead
            .iter()
            .map(|(id, m)| {
                prestarted.remove(id);
                task_key(m)
            })
            .collect()
    };
    let _ = broker.unstart(s.run(), &s.options.consumer, &tasks);
}

/// Stops serving the run; on a worker, its running tasks are stopped too (the
/// coordinator's own share is stopped by the coordinator).
fn leave(s: &Serve, broker: &mut Broker) {
    s.stop.store(true, Ordering::SeqCst);
    if s.ctx.mode == Mode::Worker {
        s.ctx.control.stop();
    }
    s.ready.notify_all();
    s.wake_readers(broker, ("watch", 0));
}

/// Tasks a consumer reads at once: fewer round trips per task, at the price of a few
/// tasks waiting until a consumer thread of this process is free (they wait in
/// `Serve::prefetched`, shared by all, and are renewed like running ones).
const PREFETCH: usize = 4;

fn consume(s: &Serve, broker: &mut Broker, slot: usize) {
    let mut checked = Instant::now();
    let mut last_takeover: Option<Instant> = None;
    let takeover_every =
        (s.options.lease.duration / 4).clamp(Duration::from_millis(100), Duration::from_secs(2));
    let pop = || {
        s.prefetched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
    };
    // Set once the connection was replaced, until no entry is left unseen (`unseen`,
    // one per read as every read here).
    let mut generation = broker.generation();
    let mut taking_back = false;
    loop {
        if checked.elapsed() > Duration::from_millis(500) || s.stop.load(Ordering::SeqCst) {
            if run_over(s) {
                return;
            }
            checked = Instant::now();
        }
        if s.orphaned.load(Ordering::SeqCst) {
            // Its coordinator seems gone: nothing is taken or started until the watcher
            // sees it back, or leaves the run (and gives back what this process holds).
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        let next = pop().or_else(|| {
            // With `uses`: one reader at a time, one entry, and only when it can start
            // here at once, whatever job it is of.
            let _reading = s
                .uses
                .then(|| s.reading.lock().unwrap_or_else(|e| e.into_inner()));
            if s.uses && !s.room_for_all() {
                std::thread::sleep(Duration::from_millis(10));
                return None;
            }
            let count = if s.uses { 1 } else { PREFETCH };
            let mut fetched = Vec::new();
            if broker.generation() != generation {
                generation = broker.generation();
                taking_back = true;
            }
            if taking_back {
                fetched = unseen(s, broker).into_iter().take(count).collect();
                taking_back = !fetched.is_empty();
                let back = fetched.iter().map(|(id, _)| id.clone()).collect();
                say_taken_back(s, &back, &fetched);
            }
            if fetched.is_empty() && last_takeover.is_none_or(|t| t.elapsed() >= takeover_every) {
                last_takeover = Some(Instant::now());
                fetched.extend(take_over(s, broker));
                if !fetched.is_empty() {
                    // There may be more to take over (entries given back): look again
                    // at once.
                    last_takeover = None;
                }
            }
            if fetched.is_empty() {
                s.may_block(("consume", slot), broker);
                if run_over(s) {
                    return None;
                }
                fetched = broker
                    .take_new(
                        s.run(),
                        &s.options.consumer,
                        count,
                        Duration::from_millis(250),
                    )
                    .unwrap_or_default();
            }
            if s.routes {
                fetched = keep_labelled(s, broker, fetched);
            }
            for (id, message) in &fetched {
                s.hold(id, message);
            }
            s.held
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(fetched.iter().map(|(id, _)| id.clone()));
            s.prefetched
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(fetched);
            pop()
        });
        let Some((id, message)) = next else {
            continue;
        };
        if handle(s, broker, slot, &id, &message) == Handled::Kept {
            // Still held (and renewed): started once the coordinator is back, or given
            // back when this process leaves the run.
            s.prefetched
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push_front((id, message));
            continue;
        }
        s.give_back(&id);
        s.held.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    }
}

/// Entries a worker keeps in hand per slot of its pool: taken, checked and recorded as
/// started ahead (one round trip for many), so that a slot that finishes a task starts
/// the next at once. They are delivered: a worker that dies with them leaves them to be
/// taken over when their lease runs out, like a running task. Against
/// `--max-deliveries`, a first read counts (it may have started), a takeover only once
/// it is about to start (`Broker::idle_tasks`).
const AHEAD_PER_SLOT: usize = 16;
/// The most entries a worker keeps in hand, whatever its pool.
const AHEAD_MAX: usize = 256;

/// A consumer without `uses`: runs the entries the `take` thread keeps in hand.
fn consume_ahead(s: &Serve, broker: &mut Broker, slot: usize) {
    let mut checked = Instant::now();
    loop {
        if checked.elapsed() > Duration::from_millis(500) || s.stop.load(Ordering::SeqCst) {
            if run_over(s) {
                s.ready.notify_all();
                return;
            }
            checked = Instant::now();
        }
        if s.orphaned.load(Ordering::SeqCst) {
            // As `consume`: nothing starts until the coordinator is back, or left.
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        let (next, left) = {
            let mut prefetched = s.prefetched.lock().unwrap_or_else(|e| e.into_inner());
            if prefetched.is_empty() {
                prefetched = s
                    .ready
                    .wait_timeout(prefetched, Duration::from_millis(50))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            let next = prefetched.pop_front();
            (next, prefetched.len())
        };
        let Some((id, message)) = next else {
            continue;
        };
        if left <= s.ahead_low.load(Ordering::Relaxed) {
            // Time for the `take` thread to read more.
            s.ready.notify_all();
        }
        let began = Instant::now();
        let handled = handle(s, broker, slot, &id, &message);
        if handled == Handled::Queued {
            average(&s.task_us, began.elapsed());
        }
        match handled {
            Handled::Kept => {
                s.prefetched
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push_front((id, message));
            }
            Handled::Over => {
                s.held.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
            }
            Handled::Queued => {}
        }
    }
}

/// The `take` thread (without `uses`): keeps up to `AHEAD_PER_SLOT` entries per slot
/// in hand, reading new ones (or taking over abandoned ones), checking them, and
/// recording those that may run as started, each batch in one round trip.
fn take_ahead(s: &Serve, broker: &mut Broker) {
    let mut last_takeover: Option<Instant> = None;
    let takeover_every =
        (s.options.lease.duration / 4).clamp(Duration::from_millis(100), Duration::from_secs(2));
    let mut generation = broker.generation();
    while !run_over(s) {
        if s.orphaned.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        let mut fetched = Vec::new();
        let mut back = HashSet::new();
        if broker.generation() != generation {
            generation = broker.generation();
            fetched = unseen(s, broker);
            back = fetched.iter().map(|(id, _)| id.clone()).collect();
        }
        let (low, high) = ahead_bounds(s);
        s.ahead_low.store(low, Ordering::Relaxed);
        let room = {
            let mut prefetched = s.prefetched.lock().unwrap_or_else(|e| e.into_inner());
            // Entries found unseen are taken into hand now, whatever it holds.
            let full = |p: &VecDeque<_>| fetched.is_empty() && p.len() > low;
            if full(&prefetched) {
                prefetched = s
                    .ready
                    .wait_timeout(prefetched, Duration::from_millis(50))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            if full(&prefetched) {
                continue;
            }
            high.saturating_sub(prefetched.len())
        };
        if room == 0 && fetched.is_empty() {
            continue;
        }
        if fetched.is_empty() && last_takeover.is_none_or(|t| t.elapsed() >= takeover_every) {
            last_takeover = Some(Instant::now());
            while fetched.len() < room {
                let Some(entry) = take_over(s, broker) else {
                    break;
                };
                fetched.push(entry);
            }
        }
        if !fetched.is_empty() {
            // There may be more to take over (entries given back): look again at once.
            last_takeover = None;
        }
        if fetched.is_empty() && !s.routes {
            // New entries read and recorded as started in one round trip, while there
            // are some; a read that waits for them when there are none (below).
            let asked_at = Instant::now();
            let taken = broker
                .take_started(s.run(), &s.options.consumer, room)
                .unwrap_or_default();
            if !taken.is_empty() {
                average(&s.round_trip_us, asked_at.elapsed());
                s.held
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend(taken.iter().map(|(id, _, _)| id.clone()));
                let ready = settle_taken(s, broker, taken);
                s.prefetched
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend(ready);
                s.ready.notify_all();
                continue;
            }
        }
        if fetched.is_empty() {
            s.may_block(("take", 0), broker);
            if run_over(s) {
                continue;
            }
            fetched = broker
                .take_new(
                    s.run(),
                    &s.options.consumer,
                    room,
                    Duration::from_millis(250),
                )
                .unwrap_or_default();
        }
        if s.routes {
            // Every batch read, takeovers included: nothing this process lacks labels
            // for is held, taken ahead or recorded as started.
            fetched = keep_labelled(s, broker, fetched);
        }
        if fetched.is_empty() {
            continue;
        }
        s.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(fetched.iter().map(|(id, _)| id.clone()));
        let ready = check_ahead(s, broker, fetched);
        say_taken_back(s, &back, &ready);
        s.prefetched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(ready);
        s.ready.notify_all();
    }
}

/// After the `take` thread's connection was replaced: the entries pending for this
/// process that it does not hold. A read whose reply was lost (Redis ran it, the answer
/// never came, and `Broker::call` asked again, taking other entries) left them read,
/// perhaps recorded as started ahead, and unseen here; they are taken into hand as if
/// just read (checked, and START asked again, which answers as it did), rather than
/// left until their lease runs out, and waited for by a run that stops meanwhile.
/// An entry delivered before (a takeover whose reply was lost: `claim`, asked again,
/// found it no longer idle) is marked taken over, to be counted as it starts.
fn unseen(s: &Serve, broker: &mut Broker) -> Vec<(String, Message)> {
    // Page by page, the newest last: those a lost read took are the newest, and this
    // process may hold more than a page (in hand, running, results not yet sent).
    let mut pending: Vec<(String, u32)> = Vec::new();
    loop {
        let after = pending.last().map(|(id, _)| id.as_str());
        let Ok(page) = broker.pending_for(s.run(), &s.options.consumer, after, AHEAD_MAX) else {
            return Vec::new();
        };
        let last = page.len() < AHEAD_MAX;
        pending.extend(page);
        if last {
            break;
        }
    }
    let held = s.held.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let unseen: Vec<(String, u32)> = pending
        .into_iter()
        .filter(|(id, _)| !held.contains(id))
        .collect();
    s.taken_over
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .extend(
            unseen
                .iter()
                .filter(|(_, deliveries)| *deliveries >= 2)
                .map(|(id, _)| id.clone()),
        );
    let ids: Vec<String> = unseen.into_iter().map(|(id, _)| id).collect();
    broker.task_entries(s.run(), &ids).unwrap_or_default()
}

/// Says how many of the entries taken back (`unseen`) are kept in hand to run: those
/// START let go (done meanwhile, the run stopping) are not counted.
fn say_taken_back(s: &Serve, back: &HashSet<String>, kept: &[(String, Message)]) {
    let count = kept.iter().filter(|(id, _)| back.contains(id)).count();
    if count > 0 {
        s.say(format!(
            "took back {} read before the broker's connection dropped",
            crate::task::plural(count as u64, "task")
        ));
    }
}

/// Whether an entry read passes `vet`; one that does not is refused and let go.
fn vetted(s: &Serve, broker: &mut Broker, id: &str, message: &Message) -> bool {
    let ok = vet(s, broker, id, message).is_some();
    if !ok {
        s.held.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }
    ok
}

/// Entries the `take` thread read: checked (`vet`), then asked START for all at once and
/// recorded as taken ahead; returns those to keep in hand. Refused, done or stopped
/// ones are let go, as `handle` would.
fn check_ahead(
    s: &Serve,
    broker: &mut Broker,
    fetched: Vec<(String, Message)>,
) -> Vec<(String, Message)> {
    let vetted: Vec<(String, Message)> = fetched
        .into_iter()
        .filter(|(id, message)| vetted(s, broker, id, message))
        .collect();
    let asked: Vec<(String, String)> = vetted
        .iter()
        .map(|(id, message)| (task_key(message), id.clone()))
        .collect();
    // Not answered (the broker away, the run left): each is asked again when run.
    let asked_at = Instant::now();
    let states = broker
        .start_many(s.run(), &s.options.consumer, &asked)
        .unwrap_or_default();
    if !states.is_empty() {
        average(&s.round_trip_us, asked_at.elapsed());
    }
    let answered = vetted
        .into_iter()
        .enumerate()
        .map(|(i, (id, message))| (id, message, states.get(i).copied()))
        .collect();
    settle(s, broker, answered)
}

/// Entries read and asked START in one step (TAKE_START): checked (`vet`) after START,
/// so one refused that START recorded as taken ahead is no longer recorded as started;
/// then kept in hand or let go as `check_ahead` does.
fn settle_taken(
    s: &Serve,
    broker: &mut Broker,
    taken: Vec<(String, Message, Option<TaskState>)>,
) -> Vec<(String, Message)> {
    let mut refused_started = Vec::new();
    let kept = taken
        .into_iter()
        .filter(|(id, message, state)| {
            let ok = vetted(s, broker, id, message);
            if !ok && *state == Some(TaskState::Start) {
                refused_started.push(task_key(message));
            }
            ok
        })
        .collect();
    let _ = broker.unstart(s.run(), &s.options.consumer, &refused_started);
    settle(s, broker, kept)
}

/// Entries checked, with what START answered for each (`None`: not answered, asked
/// again when run): those to keep in hand. Refused, done or stopped ones are let go,
/// as `handle` would.
fn settle(
    s: &Serve,
    broker: &mut Broker,
    answered: Vec<(String, Message, Option<TaskState>)>,
) -> Vec<(String, Message)> {
    let mut ready = Vec::new();
    for (id, message, state) in answered {
        match state {
            Some(TaskState::Start) => {
                s.prestarted
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(id.clone());
                ready.push((id, message));
            }
            Some(TaskState::NotIssued) => {
                let task = task_key(&message);
                s.refuse(broker, &id, format!("refused task entry {id}: task {task} was not issued as this entry (a replayed message)"));
                s.held.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
            }
            Some(TaskState::Done) => {
                let _ = broker.acknowledge(s.run(), &id);
                s.held.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
            }
            Some(TaskState::RunStopped) => {
                // Left pending, unstarted, as `handle` leaves it.
                s.held.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
            }
            Some(TaskState::Orphaned) => {
                s.orphaned.store(true, Ordering::SeqCst);
                ready.push((id, message));
            }
            None => ready.push((id, message)),
        }
    }
    ready
}

impl super::forward::Serving for Serve {
    fn run(&self) -> &str {
        Serve::run(self)
    }

    fn key(&self) -> Option<&[u8]> {
        Serve::key(self)
    }

    fn consumer(&self) -> &str {
        &self.options.consumer
    }

    fn say(&self, text: String) {
        Serve::say(self, text);
    }

    fn sent(&self, ids: &mut dyn Iterator<Item = &str>) {
        Serve::sent(self, ids);
    }
}

/// The `complete` thread (without `uses`, on the coordinator's own share, whose tasks'
/// output is printed where they run): sends the results the consumers queued and the
/// tasks taken ahead that now run, all that waited in one round trip (SEND), until
/// every consumer ended and none is left. Each entry is held (its lease renewed) until
/// its result is sent: a process that dies before leaves it to be taken over. (A
/// worker's consumers send these down the `forward` thread's channel instead, after
/// their tasks' output.)
fn complete_batches(s: &Serve, broker: &mut Broker, consumed: &AtomicBool) {
    let (_, results) = &s.completions;
    loop {
        let first = match results.recv_timeout(Duration::from_millis(50)) {
            Ok(first) => first,
            Err(_) if consumed.load(Ordering::SeqCst) => return,
            Err(_) => continue,
        };
        let batch: Vec<Outbound> = std::iter::once(first)
            .chain(results.try_iter().take(COMPLETE_BATCH - 1))
            .collect();
        let sent = broker.send(s.run(), &s.options.consumer, &batch, 0);
        if let Err(e) = &sent {
            s.say(format!(
                "could not record the results of {}: {e}",
                crate::task::plural(
                    batch
                        .iter()
                        .filter(|i| matches!(i, Outbound::Done(_)))
                        .count() as u64,
                    "task"
                )
            ));
        }
        // Sent, or not recorded (an error Redis answered: out of memory, read-only…):
        // either way no longer renewed, so an entry not recorded runs out its lease and
        // is taken over, rather than renewed for as long as this process serves.
        s.sent(batch.iter().filter_map(|item| match item {
            Outbound::Done(d) => Some(d.id.as_str()),
            _ => None,
        }));
    }
}

/// The most results sent in one round trip.
const COMPLETE_BATCH: usize = 256;

/// How many entries to keep in hand, not started, as (low, high): once no more than
/// `low` are left, the `take` thread reads up to `high`. Per slot, `low` is what tasks
/// use up while more are read (two round trips, a read and its START_MANY, at the pace
/// tasks end here), at least one; `high` adds what makes a read worth its round trip
/// ([`AHEAD_BATCH_TIME`] of tasks); both at most `AHEAD_PER_SLOT`. When a refill uses
/// up more than that bound, `low` is 0: refilling an empty hand whole brings the most
/// per round trip (16 tasks per refill rather than the few used up since the last).
/// Until both are measured, one per slot. So a worker whose tasks are long, or whose
/// job has a rate, holds little that another worker could run; one far from Redis
/// holds enough not to wait for it; and one near Redis with short tasks reads them a
/// few at a time rather than one by one.
fn ahead_bounds(s: &Serve) -> (usize, usize) {
    let trip = s.round_trip_us.load(Ordering::Relaxed);
    let task = s.task_us.load(Ordering::Relaxed);
    let (low, high) = if trip == 0 || task == 0 {
        (0, 1)
    } else {
        let cap = AHEAD_PER_SLOT as u64;
        let need = (2 * trip).div_ceil(task).clamp(1, cap);
        let batch = (AHEAD_BATCH_TIME.as_micros() as u64).div_ceil(task);
        let high = need.max(batch).clamp(1, cap);
        // What a refill uses up is more than may be held (far from Redis): then only an
        // empty hand is refilled, whole, so that each round trip brings the most.
        let low = if need >= high { 0 } else { need };
        (low, high)
    };
    let pool = s.options.pool;
    (
        (low as usize * pool).min(AHEAD_MAX),
        (high as usize * pool).clamp(1, AHEAD_MAX),
    )
}

/// How much of this worker's tasks a read of entries ahead is worth, at least.
const AHEAD_BATCH_TIME: Duration = Duration::from_millis(16);

/// Folds a measurement into a moving average (an eighth of the new one).
fn average(into: &AtomicU64, sample: Duration) {
    let sample = sample.as_micros().max(1) as u64;
    let old = into.load(Ordering::Relaxed);
    let new = if old == 0 {
        sample
    } else {
        (old * 7 + sample) / 8
    };
    into.store(new, Ordering::Relaxed);
}

/// A task whose holder's lease ran out, delivered fewer than `max_deliveries` times.
fn take_over(s: &Serve, broker: &mut Broker) -> Option<(String, Message)> {
    let lease = s.options.lease;
    let idle = broker
        .idle_tasks(s.run(), lease.duration, 10)
        .unwrap_or_default();
    for (id, deliveries) in idle {
        if deliveries >= lease.max_deliveries {
            continue; // The coordinator reports it as lost.
        }
        if (s.uses || s.routes) && !fits_entry(s, broker, &id) {
            continue; // Given back by a worker like this one: left to one with room.
        }
        let claimed = broker
            .claim(s.run(), &s.options.consumer, lease.duration, &id)
            .ok()?;
        if let Some((id, message)) = claimed {
            s.say(format!(
                "taking over task entry {id} (its worker's lease ran out)"
            ));
            s.taken_over
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id.clone());
            return Some((id, message));
        }
    }
    None
}

/// Whether the task of entry `id` could ever run here (its job's `uses` fit this
/// machine); an entry not found or unknown is taken over, to be refused as usual.
fn fits_entry(s: &Serve, broker: &mut Broker, id: &str) -> bool {
    let Ok(Some(message)) = broker.task_entry(s.run(), id) else {
        return true;
    };
    let name = message.text("job").unwrap_or_default();
    s.ctx
        .file
        .jobs
        .iter()
        .find(|j| j.name == name)
        .is_none_or(|j| s.fits_here(&j.uses) && has_labels(&s.options, j))
}

/// Whether this process has every label the job's `runs_on` names.
fn has_labels(options: &ServeOptions, job: &crate::jobfile::Job) -> bool {
    crate::jobfile::labels::missing(&job.runs_on, &options.labels).is_empty()
}

/// Whether this process serves tasks of `job` at all: one of the run's, that may run on
/// workers, with every label of its `runs_on` here.
fn serves(options: &ServeOptions, job: &crate::jobfile::Job) -> bool {
    options.jobs.contains(&job.name) && may_run_remotely(job) && has_labels(options, job)
}

/// Entries just read, less those of jobs whose `runs_on` this process lacks a label
/// of: those are given back at once (never held, never prefetched), for a worker
/// with the labels to take over.
fn keep_labelled(
    s: &Serve,
    broker: &mut Broker,
    fetched: Vec<(String, Message)>,
) -> Vec<(String, Message)> {
    let file = s.ctx.file.clone();
    fetched
        .into_iter()
        .filter(|(id, message)| {
            let name = message.text("job").unwrap_or_default();
            match file.jobs.iter().find(|j| j.name == name) {
                Some(job) if !has_labels(&s.options, job) => {
                    give_back_unlabelled(s, broker, id, job);
                    false
                }
                _ => true,
            }
        })
        .collect()
}

/// An entry this process cannot run now: given back (`give_back_unlabelled`,
/// `give_back_unfit`).
fn give_back_unserved(s: &Serve, broker: &mut Broker, id: &str, job: &crate::jobfile::Job) {
    if has_labels(&s.options, job) {
        give_back_unfit(s, broker, id, job);
    } else {
        give_back_unlabelled(s, broker, id, job);
    }
}

/// An entry of a job whose `runs_on` this process lacks a label of: given back at
/// once, unstarted, its delivery count unchanged; said once per job on a worker (the
/// coordinator says which tasks wait for which labels).
fn give_back_unlabelled(s: &Serve, broker: &mut Broker, id: &str, job: &crate::jobfile::Job) {
    if s.ctx.mode == Mode::Worker
        && s.said_never
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(job.name.clone())
    {
        let missing = crate::jobfile::labels::missing(&job.runs_on, &s.options.labels);
        s.say(format!(
            "job `{}` runs on workers with {}; this worker lacks {}: its tasks are left to other workers",
            job.name,
            crate::jobfile::labels::words(&job.runs_on),
            missing.join(", ")
        ));
    }
    let _ = broker.give_back(s.run(), &s.options.consumer, id, s.options.lease.duration);
}

/// What became of an entry a consumer handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handled {
    /// Run, refused, or left pending for another worker: no longer this consumer's.
    Over,
    /// Not started because the run's coordinator is gone: kept, to start if it comes
    /// back.
    Kept,
    /// Run; its result waits for the `complete` thread, which lets the entry go.
    Queued,
}

/// `job/index` of a task entry, as the START script keys it.
fn task_key(message: &Message) -> String {
    format!(
        "{}/{}",
        message.text("job").unwrap_or_default(),
        message.text("index").unwrap_or_default()
    )
}

fn handle(s: &Serve, broker: &mut Broker, slot: usize, id: &str, message: &Message) -> Handled {
    let run = s.run();
    let Some(job) = vet(s, broker, id, message) else {
        return Handled::Over;
    };
    let file = s.ctx.file.clone();
    let job = &file.jobs[job];
    let index: u64 = message.number("index").unwrap_or_default();
    let item = message.get("item").unwrap_or_default();
    let task = format!("{}/{index}", job.name);
    let prestarted = s
        .prestarted
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(id);
    if run_over(s) {
        if prestarted {
            s.unrun.lock().unwrap_or_else(|e| e.into_inner()).push(task);
        }
        return Handled::Over; // Not started: left pending.
    }
    if !has_labels(&s.options, job) || !job.uses.is_empty() && !s.holds(id) {
        // (An entry taken ahead was checked for labels before it was: never here.)
        if prestarted {
            let _ = broker.unstart(run, &s.options.consumer, std::slice::from_ref(&task));
        }
        give_back_unserved(s, broker, id, job);
        return Handled::Over;
    }
    if prestarted {
        // Taken ahead: now it runs (said in the next round trip of the `forward` thread,
        // on a worker, or of the `complete` thread).
        match &s.ctx.remote {
            Some(remote) => {
                let _ = remote.send(exec::sink::Remote::Running(task.clone()));
            }
            None => {
                let _ = s.completions.0.send(Outbound::Running(task.clone()));
            }
        }
    }
    // Was this entry the one issued for the task, and is the task still undone? (Asked
    // already, with others, for an entry taken ahead.)
    let state = if prestarted {
        Ok(TaskState::Start)
    } else {
        broker.start_task(run, &task, id, &s.options.consumer)
    };
    match state {
        Ok(TaskState::Start) => {}
        Ok(TaskState::NotIssued) => {
            s.refuse(broker, id, format!("refused task entry {id}: task {task} was not issued as this entry (a replayed message)"));
            return Handled::Over;
        }
        Ok(TaskState::Done) => {
            let _ = broker.acknowledge(run, id);
            return Handled::Over;
        }
        Ok(TaskState::Orphaned) => {
            s.orphaned.store(true, Ordering::SeqCst);
            return Handled::Kept;
        }
        Ok(TaskState::RunStopped) | Err(_) => return Handled::Over,
    }
    let known = cache_id(s, job, index, item);
    let (record, bug) = run_paced(s, broker, (id, job), index, item, slot, known.as_ref());
    if bug {
        // The task's processes are gone; it is reported failed, saying so.
        if let Some(end) = &record.end {
            s.say(format!("{task}: {}", crate::task::describe_end(end)));
        }
    }
    let stopped = record.stopped || s.ctx.control.level() != exec::control::Level::Run;
    // Stopped with its worker: left pending, so that another worker takes it over.
    // Stopped with its run (or the coordinator's own share): reported stopped.
    if stopped && !s.stopping.load(Ordering::SeqCst) && s.ctx.mode == Mode::Worker {
        return Handled::Over;
    }
    let mut record = record;
    record.worker = Some(s.options.consumer.clone());
    record.worker_labels.clone_from(&s.options.labels);
    let result = result_message(&record, &job.name).sign(s.key(), run);
    if !s.uses {
        return queue_result(s, task, id, result);
    }
    if let Some(remote) = &s.ctx.remote {
        // One task at a time (`uses`): its output reaches the coordinator before the
        // result this consumer sends itself.
        super::forward::flush(remote);
    }
    if let Err(e) = broker.complete(run, &task, id, &result) {
        s.say(format!("could not record the result of {task}: {e}"));
    }
    Handled::Over
}

/// Without `uses`: a task's result is sent with others, and the entry held (renewed)
/// until then; nobody waits for it. On a worker, by the `forward` thread, after the
/// task's output (sent before, on the same channel): output before result, without a
/// round trip per task in the consumer.
fn queue_result(s: &Serve, task: String, id: &str, result: Message) -> Handled {
    let sent = match &s.ctx.remote {
        Some(remote) => remote
            .send(exec::sink::Remote::Result {
                task,
                id: id.to_string(),
                fields: result.fields,
            })
            .is_ok(),
        None => s
            .completions
            .0
            .send(Outbound::Done(Completion {
                task,
                id: id.to_string(),
                result,
            }))
            .is_ok(),
    };
    if sent {
        Handled::Queued
    } else {
        Handled::Over
    }
}

/// Checks a task entry before anything is asked of Redis about it: it authenticates,
/// names a job of this file that is one of the run's and may run remotely, has an index
/// and item, and its item is the file's. Refuses it otherwise (reported, acknowledged).
/// Returns its job.
fn vet(s: &Serve, broker: &mut Broker, id: &str, message: &Message) -> Option<usize> {
    let run = s.run();
    if !message.verify(s.key(), run) {
        s.refuse(broker, id, format!("refused task entry {id}: its MAC does not match (forged, tampered, or another authkey)"));
        return None;
    }
    let file = s.ctx.file.clone();
    let job_name = message.text("job").unwrap_or_default();
    let Some(job) = file.jobs.iter().find(|j| j.name == job_name) else {
        s.refuse(
            broker,
            id,
            format!(
                "refused task entry {id}: job `{}` is not in this worker's job file",
                printable(&job_name, 80)
            ),
        );
        return None;
    };
    if !s.options.jobs.contains(&job.name) {
        s.refuse(
            broker,
            id,
            format!("refused task entry {id}: job `{job_name}` is not one of the run's jobs"),
        );
        return None;
    }
    if !may_run_remotely(job) {
        s.refuse(
            broker,
            id,
            format!("refused task entry {id}: job `{job_name}` does not run on workers"),
        );
        return None;
    }
    let (Some(index), Some(item)) = (message.number::<u64>("index"), message.get("item")) else {
        s.refuse(
            broker,
            id,
            format!("refused task entry {id}: no index or item"),
        );
        return None;
    };
    // An item this worker's file knows must be the one the entry names.
    let known = !matches!(job.items, Items::File { .. } | Items::Queue(_));
    if known
        && job
            .items
            .in_memory(index)
            .is_none_or(|e| e.as_bytes() != item)
    {
        s.refuse(
            broker,
            id,
            format!("refused task entry {id}: its item is not item {index} of job `{job_name}` in this worker's file"),
        );
        return None;
    }
    Some(job.id)
}

/// Runs a task as `exec::run_task_guarded` does (retries in its slot), but for a job
/// with a `rate`, every attempt (the first and each retry) first takes a turn of the
/// rate from Redis (the RATE script), shared by every worker of the run: the
/// coordinator paces what it publishes, and this holds the rate for retries too. For
/// a job with `uses`, what the entry `id` holds is given back during each retry delay
/// (another task may use it meanwhile) and taken again before the next attempt.
fn run_paced(
    s: &Serve,
    broker: &mut Broker,
    (id, job): (&str, &crate::jobfile::Job),
    index: u64,
    item: &[u8],
    slot: usize,
    known: Option<&crate::state::TaskId>,
) -> (TaskRecord, bool) {
    // A takeover about to start: from now on, a death of this worker counts against
    // the task's `--max-deliveries` (`Broker::idle_tasks`). Not while it was only held
    // (or waited for its rate's turn): a worker killed by another task leaves it
    // uncounted. One round trip, on the rare path of a takeover.
    let taken_over = s
        .taken_over
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(id);
    let count = |broker: &mut Broker| {
        if taken_over {
            if let Err(e) = broker.count_run(s.run(), id, &s.options.consumer) {
                s.say(format!(
                    "could not count a delivery of task entry {id}: {e}"
                ));
            }
        }
    };
    let rate = job.rate.map(|r| s.ctx.file.rates[r].clone());
    if rate.is_none() && job.uses.is_empty() {
        count(broker);
        return exec::run_task_guarded(&s.ctx, job.id, index, item, slot, known);
    }
    let turn = |broker: &mut Broker| match &rate {
        None => true,
        Some(rate) => match broker.rate_turn(s.run(), &rate.name, rate.interval()) {
            Ok(wait) => s.ctx.control.sleep(wait),
            Err(_) => true, // Redis away: the coordinator's pacing of what it publishes holds.
        },
    };
    turn(broker);
    count(broker);
    let (mut step, mut bug) = exec::start_guarded(&s.ctx, job.id, index, item, slot, known);
    loop {
        match step {
            exec::Step::Ended(record) => return (record, bug),
            exec::Step::Retry(retry, delay) => {
                let held = s.holds(id);
                s.give_back(id);
                let waited = s.ctx.control.sleep(delay) && (!held || s.hold_again(id, job));
                if !waited || !turn(broker) {
                    return (exec::give_up(&s.ctx, retry), bug);
                }
                let (next, b) = exec::resume_guarded(&s.ctx, retry, slot);
                step = next;
                bug |= b;
            }
        }
    }
}

/// With a cache to store in, what the task is and what it reads, its sources hashed
/// here, from which its cache key is computed (`exec`). The coordinator's key is not
/// taken: a worker whose files differ stores under the key of what it read.
fn cache_id(
    s: &Serve,
    job: &crate::jobfile::Job,
    index: u64,
    item: &[u8],
) -> Option<crate::state::TaskId> {
    let memory = s.memory.as_ref()?;
    if !crate::cache::run::cacheable(job) {
        return None;
    }
    let item = String::from_utf8_lossy(item);
    let rendered = crate::render::task(&s.ctx.file, job, &item, index);
    Some(crate::state::decide(
        &s.ctx.file,
        job,
        index,
        &item,
        &rendered,
        memory,
    ))
}

/// An entry whose job's `uses` are not free here (they never are, or the entry was
/// taken over while a task held them): given back at once, unstarted, for a worker
/// with room; a job that never fits is reported once.
fn give_back_unfit(s: &Serve, broker: &mut Broker, id: &str, job: &crate::jobfile::Job) {
    let run = s.run();
    if !s.fits_here(&job.uses)
        && s.said_never
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(job.name.clone())
    {
        s.report(
            broker,
            format!(
                "job `{}` uses more than this worker has ({}): its tasks are left to other workers",
                job.name,
                uses_text(&s.ctx.file, &job.uses, &s.options.capacity)
            ),
        );
    }
    let _ = broker.give_back(run, &s.options.consumer, id, s.options.lease.duration);
}

/// What a job uses against what this machine has, in words: `gpu 2 of 1`.
fn uses_text(
    file: &crate::jobfile::JobFile,
    uses: &[(ResourceId, u64)],
    capacity: &[u64],
) -> String {
    uses.iter()
        .map(|&(r, n)| {
            let res = &file.resources[r];
            format!(
                "{} {} of {}",
                res.name,
                res.amount(n),
                res.amount(capacity.get(r).copied().unwrap_or(0))
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether tasks of `job` may run on workers.
pub fn may_run_remotely(job: &crate::jobfile::Job) -> bool {
    job.items.is_fan_out() && !job.local && !job.is_streaming()
}

/// Renews the lease of every entry this process holds, a few times per lease, until the
/// run is over.
fn renew(s: &Serve, broker: &mut Broker) {
    let every = (s.options.lease.duration / 3).max(Duration::from_millis(100));
    while !s.stop.load(Ordering::SeqCst) {
        let held: Vec<String> = s
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect();
        // One round trip for every lease held.
        let _ = broker.renew_many(s.run(), &s.options.consumer, &held);
        let deadline = Instant::now() + every;
        while Instant::now() < deadline && !s.stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn millis(t: Option<SystemTime>) -> u64 {
    t.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
}

/// A task's record as a result message (without its MAC).
pub fn result_message(r: &TaskRecord, job: &str) -> Message {
    let (kind, value) = match &r.end {
        Some(End::Exited(code)) => ("exit", code.to_string()),
        Some(End::Signaled(signal)) => ("signal", signal.to_string()),
        Some(End::TimedOut) => ("timeout", String::new()),
        Some(End::SpawnFailed { message, .. }) => ("spawn", message.clone()),
        Some(End::OutputRefused { message }) => ("refused", message.clone()),
        Some(End::Internal { message }) => ("internal", message.clone()),
        Some(End::Lost { deliveries }) => ("lost", deliveries.to_string()),
        // (Services run on the coordinator only: never a worker's end.)
        Some(End::NotReady { message }) => ("internal", message.clone()),
        None => ("none", String::new()),
    };
    Message::new()
        .with("job", job)
        .with("index", r.index.to_string())
        .with("item", &r.item)
        .with(
            "status",
            if r.status == Status::Succeeded {
                "succeeded"
            } else {
                "failed"
            },
        )
        .with("end", kind)
        .with("value", value)
        .with("pid", r.pid.map(|p| p.to_string()).unwrap_or_default())
        .with("host", &r.host)
        .with("worker", r.worker.as_deref().unwrap_or_default())
        .with("labels", r.worker_labels.join(" "))
        .with("slot", r.slot.to_string())
        .with("tries", serde_json::to_string(&r.tries).unwrap_or_default())
        .with("attempts", r.attempts.to_string())
        .with("started_ms", millis(r.started).to_string())
        .with("duration_ms", (r.duration.as_millis() as u64).to_string())
        .with("stderr_tail", r.stderr_tail.join("\n"))
        .with("tail_cut", if r.tail_cut { "1" } else { "0" })
        .with("stopped", if r.stopped { "1" } else { "0" })
        .with("lines", &r.queue_lines)
        .with(
            "outputs",
            r.outputs
                .as_ref()
                .and_then(|o| serde_json::to_string(o).ok())
                .unwrap_or_default(),
        )
}

/// A result message back into a record (for the coordinator). Text that reaches the
/// terminal (the host, the stderr tail) is made printable: anyone who can write to the
/// broker could put escape sequences there.
pub fn record_from(m: &Message, job: usize, allowed_failure: bool) -> TaskRecord {
    // An end's message is shown on the terminal like the tail.
    let value = printable(&m.text("value").unwrap_or_default(), 4096);
    let end = match m.text("end").as_deref() {
        Some("exit") => Some(End::Exited(value.parse().unwrap_or(-1))),
        Some("signal") => Some(End::Signaled(value.parse().unwrap_or(0))),
        Some("timeout") => Some(End::TimedOut),
        Some("spawn") => Some(End::SpawnFailed {
            message: value,
            retryable: false,
        }),
        Some("refused") => Some(End::OutputRefused { message: value }),
        Some("internal") => Some(End::Internal { message: value }),
        Some("lost") => Some(End::Lost {
            deliveries: value.parse().unwrap_or(0),
        }),
        _ => None,
    };
    let started = m
        .number::<u64>("started_ms")
        .filter(|ms| *ms > 0 && *ms < LATEST_MS)
        .map(|ms| UNIX_EPOCH + Duration::from_millis(ms));
    let mut r = TaskRecord::new(
        job,
        m.number("index").unwrap_or(0),
        m.text("item").unwrap_or_default(),
        usize::MAX,
        &printable(&m.text("host").unwrap_or_default(), 100),
        allowed_failure,
    );
    r.status = if m.text("status").as_deref() == Some("succeeded") {
        Status::Succeeded
    } else {
        Status::Failed
    };
    r.end = end;
    r.pid = m.number("pid");
    r.attempts = m.number("attempts").unwrap_or(0);
    r.started = started;
    r.duration = Duration::from_millis(m.number("duration_ms").unwrap_or(0)).min(LONGEST);
    r.stderr_tail = m
        .text("stderr_tail")
        .filter(|t| !t.is_empty())
        .map(|t| t.lines().map(|l| printable(l, 4096)).collect())
        .unwrap_or_default();
    r.tail_cut = m.text("tail_cut").as_deref() == Some("1");
    r.stopped = m.text("stopped").as_deref() == Some("1");
    // A task with `sources`: its outputs' hashes, where it wrote them.
    r.outputs = m
        .get("outputs")
        .filter(|o| !o.is_empty())
        .and_then(|o| serde_json::from_slice(o).ok());
    // Where and when each attempt ran (the trace and the HTML timeline draw them).
    r.worker = m
        .text("worker")
        .filter(|w| !w.is_empty())
        .map(|w| printable(&w, 100));
    // Labels are names (`jobfile::labels`): anything else a broker holds is dropped.
    r.worker_labels = m
        .text("labels")
        .map(|t| {
            t.split(' ')
                .filter(|l| crate::jobfile::labels::check(l).is_ok())
                .take(64)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    // A worker of an older runner sends no slot: its tasks share lane 0 of it.
    r.slot = m.number("slot").unwrap_or(0);
    r.tries = m
        .get("tries")
        .and_then(|t| serde_json::from_slice::<Vec<crate::task::Try>>(t).ok())
        .filter(|t| t.len() <= MAX_TRIES && t.iter().all(plausible))
        .unwrap_or_default();
    r
}

/// The most attempts a result may list: `retries` is at most 1,000.
const MAX_TRIES: usize = 1001;

/// Times a report can write (before the year 10000) and durations it can add to them.
const LATEST_MS: u64 = 253_402_300_799_000;
const LONGEST: Duration = Duration::from_secs(100 * 366 * 24 * 3600);

/// An attempt as a worker reported it, within what the reports can write: a start
/// after 1970 and before the year 10000, at most a century long. Anything else (a
/// broken clock, a hostile broker) is dropped rather than crash the reports.
fn plausible(t: &crate::task::Try) -> bool {
    let ms = t
        .started
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    ms > 0 && ms + t.duration.as_millis() < u128::from(LATEST_MS) && t.duration <= LONGEST
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::Try;

    /// A result whose attempts are `tries`, as a worker (or whoever writes to the
    /// broker) might send it.
    fn result_with(tries: &[Try], value: &str) -> Message {
        let mut r = TaskRecord::new(0, 3, "x".into(), 1, "h", false);
        r.status = Status::Failed;
        r.end = Some(End::Internal {
            message: value.into(),
        });
        r.tries = tries.to_vec();
        r.worker = Some("h:42".into());
        result_message(&r, "job")
    }

    fn at(secs: u64, duration: Duration) -> Try {
        Try {
            started: UNIX_EPOCH + Duration::from_secs(secs),
            duration,
            pid: Some(1),
            end: End::Exited(1),
        }
    }

    #[test]
    fn a_results_attempts_slot_and_worker_come_back() {
        let tries = vec![
            at(1_800_000_000, Duration::from_secs(2)),
            at(1_800_000_003, Duration::from_secs(1)),
        ];
        let r = record_from(&result_with(&tries, "boom"), 0, false);
        assert_eq!(r.tries, tries);
        assert_eq!((r.slot, r.worker.as_deref()), (1, Some("h:42")));
    }

    #[test]
    fn implausible_attempts_and_raw_messages_from_the_broker_are_not_kept() {
        for tries in [
            vec![at(300_000_000_000, Duration::ZERO)],
            vec![at(1_800_000_000, Duration::MAX)],
            vec![at(0, Duration::ZERO)],
        ] {
            let r = record_from(&result_with(&tries, "ok"), 0, false);
            assert!(r.tries.is_empty(), "{tries:?}");
        }
        let r = record_from(&result_with(&[], "line\n::error::x\x1b[31m"), 0, false);
        let Some(End::Internal { message }) = &r.end else {
            panic!("{:?}", r.end)
        };
        assert!(
            !message.contains('\n') && !message.contains('\x1b'),
            "{message:?}"
        );
    }
}
