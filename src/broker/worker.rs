//! Taking tasks from a run's stream and running them: `runner worker`, and the
//! coordinator's own share of a distributed run (unless `--no-local`).
//!
//! A task is taken with XREADGROUP (or, once its holder's lease ran out, XCLAIM), held
//! under a lease that a renewer thread refreshes while it runs, run exactly as the local
//! mode would (`exec::run_task`), and completed by the COMPLETE script. Nothing from the
//! broker is run as a command: an entry names a job of the worker's own file, an index
//! and an item, and is refused unless it authenticates, names a job that may run
//! remotely, and is the entry the coordinator issued for that task.
//!
//! Longer than 400 lines: taking, checking, running and completing a task are one
//! sequence with one set of failure cases; the result's wire form sits next to it.

use super::wire::Message;
use super::{key, run_key, Broker, BrokerError, COMPLETE, GROUP, RENEW};
use crate::error::Error;
use crate::exec::{self, Context};
use crate::task::{End, Status, TaskRecord};
use redis::Value;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Everything a consumer of one run needs.
pub struct Serve {
    pub url: String,
    pub run_id: String,
    pub key: Option<Vec<u8>>,
    /// Unique per process: host and pid.
    pub consumer: String,
    pub pool: usize,
    pub lease: Duration,
    pub max_deliveries: u32,
    /// Tasks run in this context; it collects queue lines instead of pushing them.
    pub ctx: Arc<Context>,
    /// Set when the run is over (or this process is stopping).
    pub stop: Arc<AtomicBool>,
    /// Entries this process holds, for the renewer.
    held: Mutex<HashSet<String>>,
    /// Entries read and not yet started, for whichever consumer thread is free first.
    prefetched: Mutex<std::collections::VecDeque<(String, Message)>>,
}

impl Serve {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        url: &str,
        run_id: &str,
        key: Option<Vec<u8>>,
        consumer: String,
        pool: usize,
        lease: Duration,
        max_deliveries: u32,
        ctx: Arc<Context>,
        stop: Arc<AtomicBool>,
    ) -> Serve {
        Serve {
            url: url.to_string(),
            run_id: run_id.to_string(),
            key,
            consumer,
            pool,
            lease,
            max_deliveries,
            ctx,
            stop,
            held: Mutex::new(HashSet::new()),
            prefetched: Mutex::new(std::collections::VecDeque::new()),
        }
    }

    fn say(&self, text: String) {
        let _ = self.ctx.events.send(crate::task::Event::Note(text));
    }

    /// Reports a refused message to the coordinator and on this terminal.
    fn report(&self, broker: &mut Broker, text: String) {
        self.say(text.clone());
        let event = Message::new()
            .with("host", &self.ctx.host)
            .with("message", &text)
            .sign(self.key.as_deref(), &self.run_id);
        let _ = broker.add(&key(&self.run_id, "events"), &event);
    }
}

/// Serves a run until it ends: `pool` consumer threads and a lease renewer.
pub fn serve(serve: Arc<Serve>) -> Result<(), Error> {
    let mut threads = Vec::new();
    for slot in 0..serve.pool {
        let s = serve.clone();
        let mut broker = connect(&s)?;
        threads.push(
            std::thread::Builder::new()
                .name(format!("consume-{slot}"))
                .spawn(move || consume(&s, &mut broker, slot)),
        );
    }
    let s = serve.clone();
    let mut broker = connect(&s)?;
    let renewer = std::thread::Builder::new()
        .name("renew".into())
        .spawn(move || renew(&s, &mut broker));
    for thread in threads.into_iter().flatten() {
        let _ = thread.join();
    }
    serve.stop.store(true, Ordering::SeqCst);
    if let Ok(renewer) = renewer {
        let _ = renewer.join();
    }
    Ok(())
}

fn connect(s: &Arc<Serve>) -> Result<Broker, Error> {
    let events = s.ctx.events.clone();
    let stop = s.stop.clone();
    let control = s.ctx.control.clone();
    Broker::connect(&s.url, Duration::from_secs(10))
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

fn run_over(s: &Serve, broker: &mut Broker) -> bool {
    if s.stop.load(Ordering::SeqCst) || s.ctx.control.level() != exec::control::Level::Run {
        return true;
    }
    match broker.call(|c| {
        redis::cmd("HGET")
            .arg(run_key(&s.run_id))
            .arg("state")
            .query::<Option<String>>(c)
    }) {
        Ok(Some(state)) => state != "running",
        Ok(None) => true,
        Err(_) => true,
    }
}

/// Tasks a consumer reads at once: fewer round trips per task, at the price of a few
/// tasks waiting until a consumer thread of this process is free (they wait in
/// `Serve::prefetched`, shared by all, and are renewed like running ones).
const PREFETCH: usize = 4;

fn consume(s: &Serve, broker: &mut Broker, slot: usize) {
    let tasks = key(&s.run_id, "tasks");
    let mut checked = std::time::Instant::now();
    let mut last_takeover: Option<std::time::Instant> = None;
    let takeover_every = (s.lease / 4).clamp(Duration::from_millis(100), Duration::from_secs(2));
    let pop = || {
        s.prefetched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
    };
    loop {
        if checked.elapsed() > Duration::from_millis(500) || s.stop.load(Ordering::SeqCst) {
            if run_over(s, broker) {
                return;
            }
            checked = std::time::Instant::now();
        }
        let next = pop().or_else(|| {
            let mut fetched = Vec::new();
            if last_takeover.is_none_or(|t| t.elapsed() >= takeover_every) {
                last_takeover = Some(std::time::Instant::now());
                fetched.extend(take_over(s, broker, &tasks));
            }
            if fetched.is_empty() {
                fetched = read_new(s, broker, &tasks);
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
        handle(s, broker, slot, &tasks, &id, &message);
        s.held.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
    }
}

/// A task whose holder's lease ran out, delivered fewer than `max_deliveries` times.
fn take_over(s: &Serve, broker: &mut Broker, tasks: &str) -> Option<(String, Message)> {
    let lease_ms = s.lease.as_millis() as u64;
    for (id, deliveries) in super::idle_entries(broker, tasks, lease_ms, 10) {
        if deliveries >= s.max_deliveries {
            continue; // The coordinator reports it as lost.
        }
        let claimed = broker
            .call(|c| {
                redis::cmd("XCLAIM")
                    .arg(tasks)
                    .arg(GROUP)
                    .arg(&s.consumer)
                    .arg(lease_ms)
                    .arg(&id)
                    .query::<Value>(c)
            })
            .ok()?;
        if let Some((id, message)) = super::entry_list(&claimed).into_iter().next() {
            s.say(format!(
                "taking over task entry {id} (its worker's lease ran out)"
            ));
            return Some((id, message));
        }
    }
    None
}

fn read_new(s: &Serve, broker: &mut Broker, tasks: &str) -> Vec<(String, Message)> {
    let reply = broker.call(|c| {
        redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(&s.consumer)
            .arg("COUNT")
            .arg(PREFETCH)
            .arg("BLOCK")
            .arg(250)
            .arg("STREAMS")
            .arg(tasks)
            .arg(">")
            .query::<Value>(c)
    });
    match reply {
        Ok(reply) => super::entries(&reply)
            .into_iter()
            .map(|(_, id, m)| (id, m))
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn ack(broker: &mut Broker, tasks: &str, id: &str) {
    let _ = broker.call(|c| {
        redis::cmd("XACK")
            .arg(tasks)
            .arg(GROUP)
            .arg(id)
            .query::<i64>(c)
    });
}

fn handle(s: &Serve, broker: &mut Broker, slot: usize, tasks: &str, id: &str, message: &Message) {
    let run = &s.run_id;
    if !message.verify(s.key.as_deref(), run) {
        s.report(broker, format!("refused task entry {id}: its MAC does not match (forged, tampered, or another authkey)"));
        ack(broker, tasks, id);
        return;
    }
    let file = s.ctx.file.clone();
    let job_name = message.text("job").unwrap_or_default();
    let Some(job) = file.jobs.iter().find(|j| j.name == job_name) else {
        s.report(
            broker,
            format!("refused task entry {id}: job `{job_name}` is not in this worker's job file"),
        );
        ack(broker, tasks, id);
        return;
    };
    if !may_run_remotely(job) {
        s.report(
            broker,
            format!("refused task entry {id}: job `{job_name}` does not run on workers"),
        );
        ack(broker, tasks, id);
        return;
    }
    let (Some(index), Some(item)) = (message.number::<u64>("index"), message.get("item")) else {
        s.report(broker, format!("refused task entry {id}: no index or item"));
        ack(broker, tasks, id);
        return;
    };
    let task = format!("{}/{index}", job.name);
    // Was this entry the one issued for the task, and is the task still undone? One
    // round trip for both.
    let checked = broker.call(|c| {
        redis::pipe()
            .cmd("HGET")
            .arg(key(run, "issued"))
            .arg(&task)
            .cmd("HEXISTS")
            .arg(key(run, "done"))
            .arg(&task)
            .query::<(Option<String>, bool)>(c)
    });
    let (issued, done) = checked.unwrap_or((None, false));
    if issued.as_deref() != Some(id) {
        s.report(broker, format!("refused task entry {id}: task {task} was not issued as this entry (a replayed message)"));
        ack(broker, tasks, id);
        return;
    }
    if done {
        ack(broker, tasks, id);
        return;
    }
    let record = exec::run_task(&s.ctx, job.id, index, item, slot);
    if record.stopped || s.ctx.control.level() != exec::control::Level::Run {
        // Stopped with its worker: left pending, so that another worker takes it over.
        return;
    }
    let result = result_message(&record, &job.name).sign(s.key.as_deref(), run);
    let outcome = complete(broker, run, tasks, &task, id, &result);
    if let Err(e) = outcome {
        s.say(format!("could not record the result of {task}: {e}"));
    }
}

/// Whether tasks of `job` may run on workers.
pub fn may_run_remotely(job: &crate::jobfile::Job) -> bool {
    job.items.is_fan_out() && !job.local && !job.is_streaming()
}

pub fn complete(
    broker: &mut Broker,
    run: &str,
    tasks: &str,
    task: &str,
    id: &str,
    result: &Message,
) -> Result<i64, BrokerError> {
    let script = redis::Script::new(COMPLETE);
    broker.call(|c| {
        let mut invocation = script.prepare_invoke();
        invocation
            .key(key(run, "done"))
            .key(key(run, "results"))
            .key(tasks)
            .arg(task)
            .arg(GROUP)
            .arg(id);
        for (name, value) in &result.fields {
            invocation.arg(name).arg(value.as_slice());
        }
        invocation.invoke::<i64>(c)
    })
}

fn renew(s: &Serve, broker: &mut Broker) {
    let script = redis::Script::new(RENEW);
    let tasks = key(&s.run_id, "tasks");
    let every = (s.lease / 3).max(Duration::from_millis(100));
    while !s.stop.load(Ordering::SeqCst) {
        let held: Vec<String> = s
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect();
        for id in held {
            let _ = broker.call(|c| {
                script
                    .key(&tasks)
                    .arg(GROUP)
                    .arg(&id)
                    .arg(&s.consumer)
                    .invoke::<i64>(c)
            });
        }
        let deadline = std::time::Instant::now() + every;
        while std::time::Instant::now() < deadline && !s.stop.load(Ordering::SeqCst) {
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
        Some(End::Lost { deliveries }) => ("lost", deliveries.to_string()),
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
        .with("attempts", r.attempts.to_string())
        .with("started_ms", millis(r.started).to_string())
        .with("duration_ms", (r.duration.as_millis() as u64).to_string())
        .with("stderr_tail", r.stderr_tail.join("\n"))
        .with("tail_cut", if r.tail_cut { "1" } else { "0" })
        .with("lines", &r.queue_lines)
}

/// A result message back into a record (for the coordinator).
pub fn record_from(m: &Message, job: usize, allowed_failure: bool) -> TaskRecord {
    let value = m.text("value").unwrap_or_default();
    let end = match m.text("end").as_deref() {
        Some("exit") => Some(End::Exited(value.parse().unwrap_or(-1))),
        Some("signal") => Some(End::Signaled(value.parse().unwrap_or(0))),
        Some("timeout") => Some(End::TimedOut),
        Some("spawn") => Some(End::SpawnFailed {
            message: value,
            retryable: false,
        }),
        Some("lost") => Some(End::Lost {
            deliveries: value.parse().unwrap_or(0),
        }),
        _ => None,
    };
    let started = m
        .number::<u64>("started_ms")
        .filter(|ms| *ms > 0)
        .map(|ms| UNIX_EPOCH + Duration::from_millis(ms));
    let mut r = TaskRecord::new(
        job,
        m.number("index").unwrap_or(0),
        m.text("item").unwrap_or_default(),
        usize::MAX,
        &m.text("host").unwrap_or_default(),
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
    r.duration = Duration::from_millis(m.number("duration_ms").unwrap_or(0));
    r.stderr_tail = m
        .text("stderr_tail")
        .filter(|t| !t.is_empty())
        .map(|t| t.lines().map(String::from).collect())
        .unwrap_or_default();
    r.tail_cut = m.text("tail_cut").as_deref() == Some("1");
    r
}
