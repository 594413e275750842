//! The coordinator's side of a distributed run: announce the run, publish tasks, read
//! results and workers' reports back, and declare tasks lost after `max_deliveries`.
//!
//! The scheduler does not know where a task runs: `run` hands the tasks of remote jobs
//! to the channel the publish thread reads instead of a slot, and results come back
//! through the `on_result` callback, as records like any local task's.

use super::wire::Message;
use super::worker::record_from;
use super::{digest, Broker, Lease, Report, ReportCursor};
use crate::error::Error;
use crate::jobfile::JobFile;
use crate::scheduler::Start;
use crate::task::TaskRecord;
use crossbeam_channel::Receiver;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

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
type Say = Arc<dyn Fn(String) + Send + Sync>;

/// What the coordinator and its three threads (publish, results, reclaim) share.
struct Run {
    file: Arc<JobFile>,
    id: String,
    options: Options,
    /// Set when the run is over: the threads end, and a broker that is down is not
    /// waited for any more.
    stop: Arc<AtomicBool>,
    /// Tasks published and not yet completed, by task key (`job/index`).
    in_flight: Mutex<HashMap<String, Start>>,
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

    fn in_flight(&self) -> std::sync::MutexGuard<'_, HashMap<String, Start>> {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
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
        let announcement = Message::new()
            .with("run", &self.id)
            .with("digest", &digest)
            .with("file", &file_name)
            .sign(self.key(), &self.id);
        broker.announce(&announcement)?;
        Ok(())
    }
}

impl Coordinator {
    /// Announces the run and starts the publisher, the result reader and the reclaimer.
    pub fn start(
        file: Arc<JobFile>,
        run_id: &str,
        options: &Options,
        tasks: Receiver<Start>,
        on_result: OnResult,
        say: Say,
    ) -> Result<Coordinator, Error> {
        let run = Arc::new(Run {
            file,
            id: run_id.to_string(),
            options: options.clone(),
            stop: Arc::new(AtomicBool::new(false)),
            in_flight: Mutex::default(),
            say,
        });
        let mut broker = run.connect()?;
        run.announce(&mut broker)?;
        let threads = vec![
            spawn("publish", &run, move |run, broker| {
                publisher(run, broker, &tasks);
            })?,
            spawn("results", &run, move |run, broker| {
                reader(run, broker, &on_result);
            })?,
            spawn("reclaim", &run, reclaimer)?,
        ];
        Ok(Coordinator {
            run,
            threads,
            broker,
        })
    }

    /// The run is over: tell the workers, stop the threads, let the keys expire in a day.
    /// Returns the tasks still on workers (a run that was stopped does not wait for them).
    pub fn finish(mut self) -> Vec<Start> {
        self.run.stop.store(true, Ordering::SeqCst);
        let _ = self.broker.end_run(&self.run.id);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        let mut left: Vec<Start> = self.run.in_flight().drain().map(|(_, s)| s).collect();
        left.sort_by_key(|s| (s.job, s.index));
        left
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

/// Publishes the tasks the scheduler hands over, each signed and recorded as in flight
/// before it is on the broker (a result can come back before `issue` returns).
fn publisher(run: &Run, broker: &mut Broker, tasks: &Receiver<Start>) {
    while !run.stopped() {
        let Ok(start) = tasks.recv_timeout(Duration::from_millis(100)) else {
            continue;
        };
        let job = &run.file.jobs[start.job].name;
        let message = Message::new()
            .with("job", job)
            .with("index", start.index.to_string())
            .with("item", &start.item)
            .sign(run.key(), &run.id);
        let task = format!("{job}/{}", start.index);
        run.in_flight().insert(task.clone(), start.clone());
        let _ = broker.issue(&run.id, &task, &message);
    }
}

/// Reads results and workers' reports until the run is over.
fn reader(run: &Run, broker: &mut Broker, on_result: &OnResult) {
    let mut cursor = ReportCursor::default();
    while !run.stopped() {
        let Ok(reports) =
            broker.read_reports(&run.id, &mut cursor, 500, Duration::from_millis(100))
        else {
            continue;
        };
        for report in reports {
            match report {
                Report::Event(message) => event_came(run, &message),
                Report::Result(id, message) => result_came(run, &id, &message, on_result),
            }
        }
    }
}

/// Shows a worker's report, saying so when it does not authenticate.
fn event_came(run: &Run, message: &Message) {
    let host = message.text("host").unwrap_or_default();
    let text = message.text("message").unwrap_or_default();
    if message.verify(run.key(), &run.id) {
        (run.say)(format!("worker {host}: {text}"));
    } else {
        (run.say)(format!(
            "a report that does not authenticate, from \"{host}\": {text}"
        ));
    }
}

/// Hands a result to `on_result` unless it is forged, unknown, or not awaited.
fn result_came(run: &Run, id: &str, message: &Message, on_result: &OnResult) {
    if !message.verify(run.key(), &run.id) {
        (run.say)(format!(
            "refused result entry {id}: its MAC does not match (forged or tampered)"
        ));
        return;
    }
    let job_name = message.text("job").unwrap_or_default();
    let Some(job) = run.file.jobs.iter().find(|j| j.name == job_name) else {
        (run.say)(format!(
            "refused result entry {id}: unknown job `{job_name}`"
        ));
        return;
    };
    let index: u64 = message.number("index").unwrap_or(u64::MAX);
    let task = format!("{job_name}/{index}");
    // Only a task that was published and has no result yet can end: a replayed
    // or invented result is refused rather than counted.
    if run.in_flight().remove(&task).is_none() {
        (run.say)(format!(
            "refused result entry {id}: task {task} is not waiting for a result (a replay, or never published)"
        ));
        return;
    }
    let lines = message.get("lines").map(<[u8]>::to_vec).unwrap_or_default();
    on_result(record_from(message, job.id, job.allow_failure), lines);
}

/// Declares tasks lost that were delivered `max_deliveries` times without a result.
fn reclaimer(run: &Run, broker: &mut Broker) {
    let lease = run.options.lease();
    let every = (lease.duration / 2).clamp(Duration::from_millis(100), Duration::from_secs(5));
    while !run.stopped() {
        let deadline = std::time::Instant::now() + every;
        while std::time::Instant::now() < deadline && !run.stopped() {
            std::thread::sleep(Duration::from_millis(50));
        }
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
