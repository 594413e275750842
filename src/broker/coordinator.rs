//! The coordinator's side of a distributed run: announce the run, publish tasks, read
//! results and workers' reports back, and declare tasks lost after `max_deliveries`.
//!
//! The scheduler does not know where a task runs: `run` hands the tasks of remote jobs
//! to [`Coordinator::publish`] instead of a slot, and results come back through the
//! `on_result` callback, as records like any local task's.

use super::wire::Message;
use super::worker::{self, record_from};
use super::{digest, entries, key, run_key, Broker, GROUP, RUNS};
use crate::error::Error;
use crate::jobfile::JobFile;
use crate::scheduler::Start;
use crate::task::TaskRecord;
use crossbeam_channel::Receiver;
use redis::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Publishes a task: the entry and the record of which entry was issued, atomically.
/// KEYS: tasks, issued. ARGV: task key, then field/value pairs.
const ISSUE: &str = r"
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
redis.call('HSET', KEYS[2], ARGV[1], id)
return id
";

#[derive(Debug, Clone)]
pub struct Options {
    pub url: String,
    pub no_local: bool,
    pub lease: Duration,
    pub max_deliveries: u32,
    pub key: Option<Vec<u8>>,
}

pub struct Coordinator {
    in_flight: InFlight,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    broker: Broker,
    run_id: String,
}

type OnResult = Box<dyn Fn(TaskRecord, Vec<u8>) + Send>;
/// Tasks published and not yet completed, by task key (`job/index`).
type InFlight = Arc<Mutex<HashMap<String, Start>>>;
type Say = Arc<dyn Fn(String) + Send + Sync>;

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
        let stop = Arc::new(AtomicBool::new(false));
        let connect = || -> Result<Broker, Error> {
            let say = say.clone();
            let stop = stop.clone();
            Broker::connect(&options.url, Duration::from_secs(10))
                .map(|b| b.on_trouble(move |t| say(t), move || stop.load(Ordering::SeqCst)))
                .map_err(Error::from)
        };
        let mut broker = connect()?;
        let run = run_id.to_string();
        let digest = digest(&file.source);
        broker.call(|c| {
            redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(key(&run, "tasks"))
                .arg(GROUP)
                .arg("0")
                .arg("MKSTREAM")
                .query::<()>(c)?;
            redis::cmd("HSET")
                .arg(run_key(&run))
                .arg("state")
                .arg("running")
                .arg("digest")
                .arg(&digest)
                .arg("lease_ms")
                .arg(options.lease.as_millis() as u64)
                .arg("max_deliveries")
                .arg(options.max_deliveries)
                .query::<()>(c)
        })?;
        let file_name = file
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let announcement = Message::new()
            .with("run", &run)
            .with("digest", &digest)
            .with("file", &file_name)
            .sign(options.key.as_deref(), &run);
        broker.add(RUNS, &announcement)?;

        let mut threads = Vec::new();
        let in_flight: InFlight = Arc::default();
        {
            let mut broker = connect()?;
            let (file, run, key_, stop) =
                (file.clone(), run.clone(), options.key.clone(), stop.clone());
            let in_flight = in_flight.clone();
            threads.push(spawn("publish", move || {
                publisher(
                    &mut broker,
                    &file,
                    &run,
                    key_.as_deref(),
                    tasks,
                    &stop,
                    &in_flight,
                )
            })?);
        }
        {
            let mut broker = connect()?;
            let (file, run, key_, stop, say) = (
                file.clone(),
                run.clone(),
                options.key.clone(),
                stop.clone(),
                say.clone(),
            );
            let in_flight = in_flight.clone();
            threads.push(spawn("results", move || {
                reader(
                    &mut broker,
                    &file,
                    &run,
                    key_.as_deref(),
                    &stop,
                    on_result,
                    say,
                    &in_flight,
                )
            })?);
        }
        {
            let mut broker = connect()?;
            let (run, options, stop) = (run.clone(), options.clone(), stop.clone());
            threads.push(spawn("reclaim", move || {
                reclaimer(&mut broker, &run, &options, &stop)
            })?);
        }
        Ok(Coordinator {
            in_flight,
            stop,
            threads,
            broker,
            run_id: run,
        })
    }

    /// The run is over: tell the workers, stop the threads, let the keys expire in a day.
    /// Returns the tasks still on workers (a run that was stopped does not wait for them).
    pub fn finish(mut self) -> Vec<Start> {
        self.stop.store(true, Ordering::SeqCst);
        let run = self.run_id.clone();
        let _ = self.broker.call(|c| {
            redis::cmd("HSET")
                .arg(run_key(&run))
                .arg("state")
                .arg("done")
                .query::<()>(c)?;
            for k in [
                run_key(&run),
                key(&run, "tasks"),
                key(&run, "issued"),
                key(&run, "done"),
                key(&run, "results"),
                key(&run, "events"),
            ] {
                redis::cmd("EXPIRE").arg(k).arg(86_400).query::<()>(c)?;
            }
            Ok(())
        });
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        let mut left: Vec<Start> = self
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, s)| s)
            .collect();
        left.sort_by_key(|s| (s.job, s.index));
        left
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, Error> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(Error::system("start a thread"))
}

fn publisher(
    broker: &mut Broker,
    file: &JobFile,
    run: &str,
    key_: Option<&[u8]>,
    tasks: Receiver<Start>,
    stop: &AtomicBool,
    in_flight: &InFlight,
) {
    let script = redis::Script::new(ISSUE);
    while !stop.load(Ordering::SeqCst) {
        let Ok(start) = tasks.recv_timeout(Duration::from_millis(100)) else {
            continue;
        };
        let job = &file.jobs[start.job].name;
        let message = Message::new()
            .with("job", job)
            .with("index", start.index.to_string())
            .with("item", &start.item)
            .sign(key_, run);
        let task = format!("{job}/{}", start.index);
        in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(task.clone(), start.clone());
        let _ = broker.call(|c| {
            let mut invocation = script.prepare_invoke();
            invocation
                .key(key(run, "tasks"))
                .key(key(run, "issued"))
                .arg(&task);
            for (name, value) in &message.fields {
                invocation.arg(name).arg(value.as_slice());
            }
            invocation.invoke::<String>(c)
        });
    }
}

#[allow(clippy::too_many_arguments)]
fn reader(
    broker: &mut Broker,
    file: &JobFile,
    run: &str,
    key_: Option<&[u8]>,
    stop: &AtomicBool,
    on_result: OnResult,
    say: Say,
    in_flight: &InFlight,
) {
    let results = key(run, "results");
    let events = key(run, "events");
    let mut last = ("0-0".to_string(), "0-0".to_string());
    while !stop.load(Ordering::SeqCst) {
        let reply = broker.call(|c| {
            redis::cmd("XREAD")
                .arg("COUNT")
                .arg(500)
                .arg("BLOCK")
                .arg(100)
                .arg("STREAMS")
                .arg(&results)
                .arg(&events)
                .arg(&last.0)
                .arg(&last.1)
                .query::<Value>(c)
        });
        let Ok(reply) = reply else { continue };
        for (stream, id, message) in entries(&reply) {
            if stream == events {
                last.1 = id;
                let host = message.text("host").unwrap_or_default();
                let text = message.text("message").unwrap_or_default();
                if message.verify(key_, run) {
                    say(format!("worker {host}: {text}"));
                } else {
                    say(format!(
                        "a report that does not authenticate, from \"{host}\": {text}"
                    ));
                }
                continue;
            }
            last.0 = id.clone();
            if !message.verify(key_, run) {
                say(format!(
                    "refused result entry {id}: its MAC does not match (forged or tampered)"
                ));
                continue;
            }
            let job_name = message.text("job").unwrap_or_default();
            let Some(job) = file.jobs.iter().find(|j| j.name == job_name) else {
                say(format!(
                    "refused result entry {id}: unknown job `{job_name}`"
                ));
                continue;
            };
            let index: u64 = message.number("index").unwrap_or(u64::MAX);
            let task = format!("{job_name}/{index}");
            // Only a task that was published and has no result yet can end: a replayed
            // or invented result is refused rather than counted.
            if in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&task)
                .is_none()
            {
                say(format!(
                    "refused result entry {id}: task {task} is not waiting for a result (a replay, or never published)"
                ));
                continue;
            }
            let lines = message.get("lines").map(<[u8]>::to_vec).unwrap_or_default();
            on_result(record_from(&message, job.id, job.allow_failure), lines);
        }
    }
}

/// Declares tasks lost that were delivered `max_deliveries` times without a result.
fn reclaimer(broker: &mut Broker, run: &str, options: &Options, stop: &AtomicBool) {
    let tasks = key(run, "tasks");
    let lease_ms = options.lease.as_millis() as u64;
    let every = (options.lease / 2).clamp(Duration::from_millis(100), Duration::from_secs(5));
    while !stop.load(Ordering::SeqCst) {
        let deadline = std::time::Instant::now() + every;
        while std::time::Instant::now() < deadline && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
        for (id, deliveries) in super::idle_entries(broker, &tasks, lease_ms, 100) {
            if deliveries < options.max_deliveries {
                continue;
            }
            let Ok(entry) = broker.call(|c| {
                redis::cmd("XRANGE")
                    .arg(&tasks)
                    .arg(&id)
                    .arg(&id)
                    .query::<Value>(c)
            }) else {
                continue;
            };
            let Some((_, message)) = super::entry_list(&entry).into_iter().next() else {
                continue;
            };
            let job = message.text("job").unwrap_or_default();
            let index = message.text("index").unwrap_or_default();
            let result = Message::new()
                .with("job", &job)
                .with("index", &index)
                .with("item", message.get("item").unwrap_or_default())
                .with("status", "failed")
                .with("end", "lost")
                .with("value", deliveries.to_string())
                .with("host", "")
                .with("attempts", deliveries.to_string())
                .sign(options.key.as_deref(), run);
            let _ = worker::complete(broker, run, &tasks, &format!("{job}/{index}"), &id, &result);
        }
    }
}
