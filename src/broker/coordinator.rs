//! The coordinator's side of a distributed run: announce the run, publish tasks, read
//! results and workers' reports back, declare tasks lost after `max_deliveries`, keep
//! the run's heartbeat, and stop the run's tasks on workers when the run stops.
//!
//! The scheduler does not know where a task runs: `run` hands the tasks of remote jobs
//! to the channel the publish thread reads instead of a slot, and results come back
//! through the `on_result` callback, as records like any local task's. When Redis lost
//! the run (restarted without persistence), `on_lost` gets the tasks it never heard of.
//!
//! Everything read from the broker that is printed is made printable first (control
//! characters shown as `?`): anyone who can write to Redis can write there. With an
//! authkey, a worker's report that does not authenticate is dropped and counted.

use super::wire::Message;
use super::worker::record_from;
use super::{check_url, digest, redact, Broker, Lease, Report, ReportCursor, HEARTBEAT_EVERY};
use crate::error::Error;
use crate::jobfile::JobFile;
use crate::scheduler::Start;
use crate::signals::Interrupt;
use crate::task::{plural, printable, TaskRecord};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Options {
    pub url: String,
    pub no_local: bool,
    pub lease: Duration,
    pub max_deliveries: u32,
    pub key: Option<Vec<u8>>,
}

impl Options {
    pub fn lease(&self) -> Lease {
        Lease {
            duration: self.lease,
            max_deliveries: self.max_deliveries,
        }
    }
}

pub struct Coordinator {
    run: Arc<Run>,
    threads: Vec<JoinHandle<()>>,
    broker: Broker,
}

type OnResult = Box<dyn Fn(TaskRecord, Vec<u8>) + Send>;
type OnOutput = Box<dyn Fn(&Start, Piece<'_>) + Send>;

/// What a worker sent of a remote task as it runs.
pub enum Piece<'a> {
    /// An attempt's process started on the worker `worker` (`host:pid`).
    Started {
        worker: String,
        pid: u32,
        attempt: u32,
    },
    /// Bytes the task printed, as they came (not cut at lines).
    Bytes {
        stream: crate::task::Stream,
        data: &'a [u8],
    },
}
type OnLost = Box<dyn Fn(Vec<Start>) + Send>;
type Say = Arc<dyn Fn(String) + Send + Sync>;

/// Tasks of a run that ended without their results.
#[derive(Debug, Default)]
pub struct Unfinished {
    /// Started on a worker, no result came back.
    pub stopped: Vec<Start>,
    /// Never started on a worker: withdrawn when the run stopped.
    pub withdrawn: Vec<Start>,
}

/// What the coordinator and its threads (publish, results, reclaim, heartbeat) share.
struct Run {
    file: Arc<JobFile>,
    id: String,
    options: Options,
    /// Set when the run is over: the threads end, and a broker that is down is not
    /// waited for any more.
    stop: Arc<AtomicBool>,
    /// Dropped when the run is over ([`Run::end`]), which ends the threads' waits at
    /// once: the run's end does not wait out a pause of theirs.
    ending: Mutex<Option<Sender<()>>>,
    /// Disconnected once the run is over: what the threads wait on.
    ended: Receiver<()>,
    /// Set when the run stops: tasks not yet published are withdrawn, not published.
    closing: AtomicBool,
    /// Set when Redis no longer knows the run.
    lost: AtomicBool,
    /// Tasks published and not yet completed, by task key (`job/index`).
    in_flight: Mutex<HashMap<String, Start>>,
    /// Tasks the scheduler handed over that were never published.
    withdrawn: Mutex<Vec<Start>>,
    /// Workers' reports dropped because they did not authenticate.
    dropped: AtomicU64,
    /// Workers that refused the run for want of the authkey (their report unsigned).
    keyless: AtomicU64,
    say: Say,
}

impl Run {
    /// A connection of its own for each thread, since a blocking read holds one.
    fn connect(&self) -> Result<Broker, Error> {
        let say = self.say.clone();
        let stop = self.stop.clone();
        Broker::connect(&self.options.url, Duration::from_secs(10))
            .map(|b| b.on_trouble(move |t| say(t), move || stop.load(Ordering::SeqCst)))
            .map_err(Error::from)
    }

    fn key(&self) -> Option<&[u8]> {
        self.options.key.as_deref()
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// The run is over: the threads end, those waiting at once.
    fn end(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.ending.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// Waits `duration`, or less if the run ends meanwhile; false once it ended.
    fn pause(&self, duration: Duration) -> bool {
        matches!(
            self.ended.recv_timeout(duration),
            Err(RecvTimeoutError::Timeout)
        ) && !self.stopped()
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, HashMap<String, Start>> {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn withdrawn(&self) -> std::sync::MutexGuard<'_, Vec<Start>> {
        self.withdrawn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates the run on the broker and announces it to workers.
    fn announce(&self, broker: &mut Broker) -> Result<(), Error> {
        let digest = digest(&self.file.source);
        broker.create_run(&self.id, &digest, self.options.lease())?;
        let file_name = self
            .file
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // The run's vars and jobs are data, like items: a worker renders its own file's
        // commands with them, and takes tasks of these jobs only.
        let vars: serde_json::Map<String, serde_json::Value> = self
            .file
            .vars
            .iter()
            .map(|v| (v.name.clone(), v.value.clone().into()))
            .collect();
        let jobs: Vec<&str> = self.file.jobs.iter().map(|j| j.name.as_str()).collect();
        let announcement = Message::new()
            .with("run", &self.id)
            .with("digest", &digest)
            .with("file", &file_name)
            .with("vars", serde_json::Value::Object(vars).to_string())
            .with("jobs", serde_json::json!(jobs).to_string())
            .sign(self.key(), &self.id);
        broker.announce(&announcement)?;
        Ok(())
    }
}

impl Coordinator {
    /// Announces the run and starts the publisher, the result reader, the reclaimer and
    /// the heartbeat.
    pub fn start(
        file: Arc<JobFile>,
        run_id: &str,
        options: &Options,
        tasks: Receiver<Start>,
        (on_result, on_output, on_lost): (OnResult, OnOutput, OnLost),
        say: Say,
    ) -> Result<Coordinator, Error> {
        check_url(&options.url)?;
        let (ending, ended) = crossbeam_channel::bounded(0);
        let run = Arc::new(Run {
            file,
            id: run_id.to_string(),
            options: options.clone(),
            stop: Arc::new(AtomicBool::new(false)),
            ending: Mutex::new(Some(ending)),
            ended,
            closing: AtomicBool::new(false),
            lost: AtomicBool::new(false),
            in_flight: Mutex::default(),
            withdrawn: Mutex::default(),
            dropped: AtomicU64::new(0),
            keyless: AtomicU64::new(0),
            say,
        });
        let mut broker = run.connect()?;
        run.announce(&mut broker)?;
        let threads = vec![
            spawn("publish", &run, move |run, broker| {
                publisher(run, broker, &tasks);
            })?,
            spawn("results", &run, move |run, broker| {
                reader(run, broker, &on_result, &on_output);
            })?,
            spawn("reclaim", &run, reclaimer)?,
            spawn("heartbeat", &run, move |run, broker| {
                heartbeat(run, broker, &on_lost);
            })?,
        ];
        Ok(Coordinator {
            run,
            threads,
            broker,
        })
    }

    /// The run is over: tell the workers, stop the threads, let the keys expire in a day.
    /// A run that stopped with tasks on workers asks the workers to stop them and waits
    /// up to `wait` for their results (less if a signal comes); tasks no worker started
    /// are withdrawn. Returns the tasks that ended without a result.
    pub fn finish(mut self, wait: Duration, signals: &Receiver<Interrupt>) -> Unfinished {
        let run = self.run.clone();
        run.closing.store(true, Ordering::SeqCst);
        let mut withdrawn = Vec::new();
        let tasks: Vec<String> = run.in_flight().keys().cloned().collect();
        if !tasks.is_empty() && !run.lost.load(Ordering::SeqCst) {
            // Stopping first: from then on no worker starts a task, so `started` is exact.
            let _ = self.broker.stop_run(&run.id);
            // Taken ahead by a worker and not started: given back by the worker, then
            // withdrawn (`withdraw_unstarted`), not waited for.
            let (started, ahead) = self
                .broker
                .started_or_ahead(&run.id, &tasks)
                .unwrap_or_default();
            {
                let mut in_flight = run.in_flight();
                for task in tasks
                    .iter()
                    .filter(|t| !started.contains(t) && !ahead.contains(t))
                {
                    withdrawn.extend(in_flight.remove(task));
                }
            }
            // A task taken ahead counts as not taken until its worker says it began,
            // which comes with the worker's next batch: one begun just now is stopped
            // with the others, and the message says that it may be so.
            let taken_ahead = match ahead.len() {
                0 => String::new(),
                n => format!(
                    " ({n} of them taken ahead by workers: given back unrun, or stopped as the running ones are if a worker began {} just now)",
                    if n == 1 { "it" } else { "one" }
                ),
            };
            (run.say)(format!(
                "stopping {} running on workers (TERM, then KILL after each worker's --grace); {} not yet taken are withdrawn{taken_ahead}",
                plural(started.len() as u64, "task"),
                withdrawn.len() + ahead.len()
            ));
            let deadline = Instant::now() + wait;
            let mut looked = Instant::now();
            while !run.in_flight().is_empty() && Instant::now() < deadline {
                if signals.try_recv().is_ok() {
                    (run.say)("not waiting for the workers' tasks any more".to_string());
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
                if looked.elapsed() >= Duration::from_millis(200) {
                    looked = Instant::now();
                    withdraw_unstarted(&run, &mut self.broker, &mut withdrawn);
                }
            }
        }
        run.end();
        if !run.lost.load(Ordering::SeqCst) {
            // The results thread waits on Redis: woken (as the workers are), it sees the
            // run is over.
            let _ = self.broker.end_run(&run.id);
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        let keyless = run.keyless.load(Ordering::SeqCst);
        if keyless > 1 {
            (run.say)(format!(
                "{} without the authkey refused this run",
                plural(keyless, "worker")
            ));
        }
        let dropped = run.dropped.load(Ordering::SeqCst);
        if dropped > 0 {
            (run.say)(format!(
                "{} that did not authenticate {} dropped",
                plural(dropped, "worker report"),
                if dropped == 1 { "was" } else { "were" }
            ));
        }
        let mut stopped: Vec<Start> = run.in_flight().drain().map(|(_, s)| s).collect();
        withdrawn.append(&mut run.withdrawn());
        stopped.sort_by_key(|s| (s.job, s.index));
        withdrawn.sort_by_key(|s| (s.job, s.index));
        Unfinished { stopped, withdrawn }
    }
}

/// Tasks a worker had taken ahead (recorded as started) and gave back unrun when the
/// run stopped: withdrawn, not waited for.
fn withdraw_unstarted(run: &Run, broker: &mut Broker, withdrawn: &mut Vec<Start>) {
    let tasks: Vec<String> = run.in_flight().keys().cloned().collect();
    let Ok(started) = broker.started(&run.id, &tasks) else {
        return;
    };
    let started: std::collections::HashSet<String> = started.into_iter().collect();
    let mut in_flight = run.in_flight();
    for task in tasks.iter().filter(|t| !started.contains(*t)) {
        withdrawn.extend(in_flight.remove(task));
    }
}

/// Starts a thread of the run with a connection of its own (connected before the thread
/// starts, so that a broker that cannot be used fails the start).
fn spawn(
    name: &str,
    run: &Arc<Run>,
    f: impl FnOnce(&Run, &mut Broker) + Send + 'static,
) -> Result<JoinHandle<()>, Error> {
    let mut broker = run.connect()?;
    let run = run.clone();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || f(&run, &mut broker))
        .map_err(Error::system("start a thread"))
}

/// The most tasks published in one round trip.
const PUBLISH_BATCH: usize = 256;

/// Publishes the tasks the scheduler hands over, in batches (what came while the last
/// batch was sent, one round trip each), each task signed and recorded as in flight
/// before it is on the broker (a result can come back before `issue_many` returns).
fn publisher(run: &Run, broker: &mut Broker, tasks: &Receiver<Start>) {
    while !run.stopped() {
        let first = crossbeam_channel::select! {
            recv(tasks) -> start => match start {
                Ok(start) => start,
                // Nothing more to publish: wait for the run's end.
                Err(_) => {
                    let _ = run.ended.recv();
                    continue;
                }
            },
            recv(run.ended) -> _ => continue,
        };
        let starts: Vec<Start> = std::iter::once(first)
            .chain(tasks.try_iter().take(PUBLISH_BATCH - 1))
            .collect();
        if run.closing.load(Ordering::SeqCst) {
            run.withdrawn().extend(starts);
            continue;
        }
        let mut batch = Vec::with_capacity(starts.len());
        {
            let mut in_flight = run.in_flight();
            for start in starts {
                let job = &run.file.jobs[start.job].name;
                let message = Message::new()
                    .with("job", job)
                    .with("index", start.index.to_string())
                    .with("item", &start.item)
                    .sign(run.key(), &run.id);
                let task = format!("{job}/{}", start.index);
                in_flight.insert(task.clone(), start);
                batch.push((task, message));
            }
        }
        let _ = broker.issue_many(&run.id, &batch);
    }
    run.withdrawn().extend(tasks.try_iter());
}

/// Reads results and workers' reports until the run is over.
fn reader(run: &Run, broker: &mut Broker, on_result: &OnResult, on_output: &OnOutput) {
    let mut cursor = ReportCursor::default();
    // Output entries read: deleted with the next read (room for more: workers wait
    // while the stream is full).
    let mut read = Vec::new();
    while !run.stopped() {
        let Ok(reports) =
            broker.read_reports(&run.id, &mut cursor, &read, 500, Duration::from_millis(100))
        else {
            continue;
        };
        read.clear();
        // A few at a time: let more come before the next read (fewer round trips and
        // wake-ups per result; a result waits a few milliseconds at most).
        let few = !reports.is_empty() && reports.len() < 64;
        for report in reports {
            match report {
                Report::Event(message) => event_came(run, &message),
                Report::Result(id, message) => result_came(run, &id, &message, on_result),
                Report::Output(id, message) => {
                    output_came(run, &message, on_output);
                    read.push(id);
                }
            }
        }
        if few && !run.stopped() {
            std::thread::sleep(super::forward::LINGER);
        }
    }
    let _ = broker.drop_output(&run.id, &read);
}

/// Hands a piece of a remote task's output (or its start) to `on_output`, if it
/// authenticates and its task waits for a result; anything else is dropped (output of a
/// task whose result came already, from a delivery that ran twice).
fn output_came(run: &Run, message: &Message, on_output: &OnOutput) {
    if !message.verify(run.key(), &run.id) {
        if run.dropped.fetch_add(1, Ordering::SeqCst) == 0 {
            (run.say)(
                "dropped a task's output that does not authenticate (a worker with another \
                 authkey, or written by someone else); further ones are only counted"
                    .to_string(),
            );
        }
        return;
    }
    let task = message.text("task").unwrap_or_default();
    let Some(start) = run.in_flight().get(&task).cloned() else {
        return;
    };
    let piece = match message.get("stream") {
        Some(b"out") => Piece::Bytes {
            stream: crate::task::Stream::Stdout,
            data: message.get("data").unwrap_or_default(),
        },
        Some(b"err") => Piece::Bytes {
            stream: crate::task::Stream::Stderr,
            data: message.get("data").unwrap_or_default(),
        },
        Some(b"start") => Piece::Started {
            worker: printable(&message.text("worker").unwrap_or_default(), 100),
            pid: message.number("pid").unwrap_or(0),
            attempt: message.number("attempt").unwrap_or(1),
        },
        _ => return,
    };
    on_output(&start, piece);
}

/// Shows a worker's report, made printable; with an authkey, one that does not
/// authenticate is dropped: said once, counted at the end.
fn event_came(run: &Run, message: &Message) {
    if !message.verify(run.key(), &run.id) && keyless(message) {
        // Unsigned, so unproven like any such report; its words are not shown, only
        // what a worker without the key means by it.
        if run.keyless.fetch_add(1, Ordering::SeqCst) == 0 {
            let who = if run.options.no_local {
                "workers that have the key"
            } else {
                "this runner's own slots and workers that have the key"
            };
            (run.say)(format!(
                "a worker without the authkey refused this run (its tasks are signed; give \
                 workers the key with --authkey-file or RUNNER_AUTHKEY): its tasks are run by \
                 {who}"
            ));
        }
        return;
    }
    if !message.verify(run.key(), &run.id) {
        if run.dropped.fetch_add(1, Ordering::SeqCst) == 0 {
            (run.say)(
                "dropped a worker report that does not authenticate (a worker with another \
                 authkey, or written by someone else); further ones are only counted"
                    .to_string(),
            );
        }
        return;
    }
    let host = printable(&message.text("host").unwrap_or_default(), 100);
    let text = printable(&message.text("message").unwrap_or_default(), 2000);
    (run.say)(format!("worker {host}: {text}"));
}

/// A report of a worker that refused a signed run for want of the authkey: unsigned,
/// and saying so.
fn keyless(message: &Message) -> bool {
    message.get("mac").is_none()
        && message.get("reason") == Some(super::command::NO_AUTHKEY.as_bytes())
}

/// Hands a result to `on_result` unless it is forged, unknown, or not awaited.
fn result_came(run: &Run, id: &str, message: &Message, on_result: &OnResult) {
    if !message.verify(run.key(), &run.id) {
        (run.say)(if message.get("mac").is_none() {
            format!(
                "refused result entry {id}: it is not signed (a worker without the authkey, \
                 or written by someone else)"
            )
        } else {
            format!("refused result entry {id}: its MAC does not match (forged or tampered)")
        });
        return;
    }
    let job_name = message.text("job").unwrap_or_default();
    let Some(job) = run.file.jobs.iter().find(|j| j.name == job_name) else {
        (run.say)(format!(
            "refused result entry {id}: unknown job `{}`",
            printable(&job_name, 80)
        ));
        return;
    };
    let index: u64 = message.number("index").unwrap_or(u64::MAX);
    let task = format!("{job_name}/{index}");
    // Only a task that was published and has no result yet can end: a replayed
    // or invented result is refused rather than counted.
    let Some(start) = run.in_flight().remove(&task) else {
        (run.say)(format!(
            "refused result entry {id}: task {task} is not waiting for a result (a replay, or never published)"
        ));
        return;
    };
    let lines = message.get("lines").map(<[u8]>::to_vec).unwrap_or_default();
    let mut record = record_from(message, job.id, job.allow_failure);
    // The task's identity and reason are the coordinator's, not the worker's word.
    record.set_id(start.id.as_ref());

    on_result(record, lines);
}

/// Declares tasks lost that were delivered `max_deliveries` times without a result.
fn reclaimer(run: &Run, broker: &mut Broker) {
    let lease = run.options.lease();
    let every = (lease.duration / 2).clamp(Duration::from_millis(100), Duration::from_secs(5));
    while run.pause(every) {
        let idle = broker
            .idle_tasks(&run.id, lease.duration, 100)
            .unwrap_or_default();
        for (id, deliveries) in idle {
            if deliveries < lease.max_deliveries {
                continue;
            }
            let Ok(Some(task)) = broker.task_entry(&run.id, &id) else {
                continue;
            };
            let job = task.text("job").unwrap_or_default();
            let index = task.text("index").unwrap_or_default();
            let result = Message::new()
                .with("job", &job)
                .with("index", &index)
                .with("item", task.get("item").unwrap_or_default())
                .with("status", "failed")
                .with("end", "lost")
                .with("value", deliveries.to_string())
                .with("host", "")
                .with("attempts", deliveries.to_string())
                .sign(run.key(), &run.id);
            let _ = broker.complete(&run.id, &format!("{job}/{index}"), &id, &result);
        }
    }
}

/// The tasks published that no worker started yet, counted by job.
fn unstarted(run: &Run, broker: &mut Broker) -> Vec<(crate::jobfile::JobId, u64)> {
    let tasks: Vec<(String, crate::jobfile::JobId)> = run
        .in_flight()
        .iter()
        .map(|(task, start)| (task.clone(), start.job))
        .collect();
    let keys: Vec<String> = tasks.iter().map(|(t, _)| t.clone()).collect();
    let Ok(started) = broker.started(&run.id, &keys) else {
        return Vec::new();
    };
    let started: std::collections::HashSet<String> = started.into_iter().collect();
    let mut counts = vec![0u64; run.file.jobs.len()];
    for (task, job) in &tasks {
        if !started.contains(task) {
            counts[*job] += 1;
        }
    }
    counts
        .into_iter()
        .enumerate()
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// Keeps the run alive for workers (its heartbeat key) until the run is over. If Redis
/// no longer knows the run (restarted without persistence), the run cannot go on: the
/// tasks published and not completed go to `on_lost`, and nothing more is published.
fn heartbeat(run: &Run, broker: &mut Broker, on_lost: &OnLost) {
    let mut watch = super::waiting::Watch::new();
    while !run.stopped() {
        if let Some(line) = watch.tick(&run.file, &run.id, broker, |b| unstarted(run, b)) {
            (run.say)(line);
        }
        if let Ok(false) = broker.heartbeat(&run.id) {
            run.closing.store(true, Ordering::SeqCst);
            run.lost.store(true, Ordering::SeqCst);
            let mut lost: Vec<Start> = run.in_flight().drain().map(|(_, s)| s).collect();
            lost.sort_by_key(|s| (s.job, s.index));
            (run.say)(format!(
                "error: the broker {} lost this run's state (Redis restarted without \
                 persistence, or the run's keys were deleted); stopping the run: {} sent to \
                 workers without a result are lost",
                redact(&run.options.url),
                plural(lost.len() as u64, "task")
            ));
            on_lost(lost);
            return;
        }
        run.pause(HEARTBEAT_EVERY);
    }
}
