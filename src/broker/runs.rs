//! What the runner asks of Redis about runs, one typed method of [`Broker`] each:
//! creating and announcing a run, finding runs and their settings, ending a run, and
//! what workers report back to the coordinator.
//!
//! Each method builds its command here from the run id (the key layout is in `mod.rs`)
//! and runs it through [`Broker::call`], so each one reconnects with backoff; replies
//! come back as messages and plain Rust types. Tasks are in `tasks.rs`.

use super::reply::{entries, entry_list};
use super::wire::Message;
use super::{key, run_key, Broker, BrokerError, Lease, GROUP, RUNS};
use redis::{FromRedisValue, Value};
use std::time::Duration;

/// A run's keys expire this long (a day) after the run ended or its coordinator died.
pub(super) const KEEP_ENDED_RUN_SECS: u64 = 86_400;

/// Announcements kept in `runner:runs` (about: the stream is trimmed, not exactly).
const KEEP_ANNOUNCEMENTS: usize = 1000;

/// How often a coordinator refreshes its run's heartbeat key, and how long the key
/// lives without that: a run whose key is gone has no coordinator any more.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
const HEARTBEAT_TTL: Duration = Duration::from_secs(5);

/// Refreshes the heartbeat, unless the run's hash is gone (Redis lost it): 0 then.
/// KEYS: run hash, alive.
const HEARTBEAT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
return 1
";

/// Where a run stands, as workers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Running,
    /// Its coordinator is stopping it (fail-fast, a signal): stop its tasks, report them.
    Stopping,
    /// It ended, or Redis no longer knows it.
    Over,
    /// Its state says running, but its coordinator's heartbeat is gone.
    Orphaned,
}

/// Where the coordinator has read up to in a run's result and event streams.
#[derive(Debug, Clone)]
pub struct ReportCursor {
    results: String,
    events: String,
    output: String,
}

impl Default for ReportCursor {
    /// From the start of both streams.
    fn default() -> ReportCursor {
        ReportCursor {
            results: "0-0".to_string(),
            events: "0-0".to_string(),
            output: "0-0".to_string(),
        }
    }
}

/// What a worker sent back to the coordinator.
#[derive(Debug, Clone)]
pub enum Report {
    /// A task's result, with its entry id in the result stream.
    Result(String, Message),
    /// A note from a worker: a refusal, a rejected message.
    Event(Message),
    /// A piece of a remote task's printed output, or its start, with its entry id in
    /// the output stream (deleted once read, `Broker::drop_output`).
    Output(String, Message),
}

/// Announcing, finding and ending runs.
impl Broker {
    /// Creates the run's task stream and consumer group and its hash, with state running.
    pub fn create_run(&mut self, run: &str, digest: &str, lease: Lease) -> Result<(), BrokerError> {
        self.call(|c| {
            redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(key(run, "tasks"))
                .arg(GROUP)
                .arg("0")
                .arg("MKSTREAM")
                .query::<()>(c)?;
            redis::cmd("SET")
                .arg(key(run, "alive"))
                .arg("1")
                .arg("PX")
                .arg(HEARTBEAT_TTL.as_millis() as u64)
                .query::<()>(c)?;
            redis::cmd("HSET")
                .arg(run_key(run))
                .arg("state")
                .arg("running")
                .arg("digest")
                .arg(digest)
                .arg("lease_ms")
                .arg(lease.duration.as_millis() as u64)
                .arg("max_deliveries")
                .arg(lease.max_deliveries)
                .query::<()>(c)
        })
    }

    /// Adds a run's announcement to the stream workers watch (trimmed to about the
    /// newest thousand).
    pub fn announce(&mut self, announcement: &Message) -> Result<(), BrokerError> {
        self.call(|c| {
            let mut cmd = redis::cmd("XADD");
            cmd.arg(RUNS)
                .arg("MAXLEN")
                .arg("~")
                .arg(KEEP_ANNOUNCEMENTS)
                .arg("*");
            for (name, value) in &announcement.fields {
                cmd.arg(name).arg(value.as_slice());
            }
            cmd.query::<String>(c)
        })
        .map(drop)
    }

    /// The coordinator's heartbeat (every [`HEARTBEAT_EVERY`]): false if Redis no longer
    /// knows the run (restarted without persistence), which is then not recreated.
    pub fn heartbeat(&mut self, run: &str) -> Result<bool, BrokerError> {
        let script = redis::Script::new(HEARTBEAT);
        self.call(|c| {
            script
                .key(run_key(run))
                .key(key(run, "alive"))
                .arg(HEARTBEAT_TTL.as_millis() as u64)
                .invoke::<i64>(c)
        })
        .map(|alive| alive == 1)
    }

    /// Where the run stands: its state, and whether its coordinator is alive.
    pub fn run_state(&mut self, run: &str) -> Result<RunState, BrokerError> {
        let (state, alive) = self.call(|c| {
            redis::pipe()
                .cmd("HGET")
                .arg(run_key(run))
                .arg("state")
                .cmd("EXISTS")
                .arg(key(run, "alive"))
                .query::<(Option<String>, bool)>(c)
        })?;
        Ok(match state.as_deref() {
            Some("running") if alive => RunState::Running,
            Some("running") => RunState::Orphaned,
            Some("stopping") => RunState::Stopping,
            _ => RunState::Over,
        })
    }

    /// Asks the workers to stop the run's tasks and report them (their watchers, woken,
    /// see it at once).
    pub fn stop_run(&mut self, run: &str) -> Result<(), BrokerError> {
        self.call(|c| {
            let mut pipe = redis::pipe();
            pipe.cmd("HSET")
                .arg(run_key(run))
                .arg("state")
                .arg("stopping")
                .ignore();
            wake(&mut pipe, run);
            pipe.query::<()>(c)
        })
    }

    /// The id of the newest entry of the run's event stream (`0-0` if it has none):
    /// where a watcher starts to wait ([`wait_for_event`](Broker::wait_for_event)).
    /// Asked before the run's state, so that a change of state after that read is
    /// followed by a wake-up entry the wait sees.
    pub fn newest_event(&mut self, run: &str) -> Result<String, BrokerError> {
        let reply = self.call(|c| {
            redis::cmd("XREVRANGE")
                .arg(key(run, "events"))
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1)
                .query::<Value>(c)
        })?;
        Ok(entry_list(&reply)
            .into_iter()
            .next()
            .map(|(id, _)| id)
            .unwrap_or_else(|| "0-0".into()))
    }

    /// Waits up to `block` for entries of the run's event stream after `cursor` (a
    /// worker's report, or the coordinator's wake-up when the run stops or ends), and
    /// moves `cursor` past those that came; true if a wake-up came.
    pub fn wait_for_event(
        &mut self,
        run: &str,
        cursor: &mut String,
        block: Duration,
    ) -> Result<bool, BrokerError> {
        let events = key(run, "events");
        let reply = self.call(|c| {
            redis::cmd("XREAD")
                .arg("COUNT")
                .arg(100)
                .arg("BLOCK")
                .arg(block.as_millis().max(1) as u64)
                .arg("STREAMS")
                .arg(&events)
                .arg(cursor.as_str())
                .query::<Value>(c)
        })?;
        let came = entries(&reply);
        let woken = came.iter().any(|(_, _, m)| super::is_wake(m));
        if let Some((_, id, _)) = came.last() {
            cursor.clone_from(id);
        }
        Ok(woken)
    }

    /// The task keys (`job/index`) among `tasks` that a worker has started.
    pub fn started(&mut self, run: &str, tasks: &[String]) -> Result<Vec<String>, BrokerError> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let found = self.call(|c| {
            redis::cmd("HMGET")
                .arg(key(run, "started"))
                .arg(tasks)
                .query::<Vec<Option<String>>>(c)
        })?;
        Ok(tasks
            .iter()
            .zip(found)
            .filter(|(_, f)| f.is_some())
            .map(|(t, _)| t.clone())
            .collect())
    }

    /// The newest `count` announcements, newest first: (entry id, announcement).
    pub fn newest_runs(&mut self, count: usize) -> Result<Vec<(String, Message)>, BrokerError> {
        let reply = self.call(|c| {
            redis::cmd("XREVRANGE")
                .arg(RUNS)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(count)
                .query::<Value>(c)
        })?;
        Ok(entry_list(&reply))
    }

    /// Waits up to `block` for an announcement newer than the entry `after`.
    pub fn wait_for_run_after(&mut self, after: &str, block: Duration) -> Result<(), BrokerError> {
        self.call(|c| {
            redis::cmd("XREAD")
                .arg("BLOCK")
                .arg(block.as_millis() as u64)
                .arg("STREAMS")
                .arg(RUNS)
                .arg(after)
                .query::<Value>(c)
        })
        .map(drop)
    }

    /// A field of the run's hash, if it is set.
    fn run_field<T: FromRedisValue>(
        &mut self,
        run: &str,
        field: &str,
    ) -> Result<Option<T>, BrokerError> {
        self.call(|c| {
            redis::cmd("HGET")
                .arg(run_key(run))
                .arg(field)
                .query::<Option<T>>(c)
        })
    }

    /// The run's lease settings; each one the run's hash does not give is the default.
    pub fn run_lease(&mut self, run: &str) -> Lease {
        let default = Lease::default();
        let duration = self
            .run_field::<u64>(run, "lease_ms")
            .ok()
            .flatten()
            .map_or(default.duration, Duration::from_millis);
        let max_deliveries = self
            .run_field::<u32>(run, "max_deliveries")
            .ok()
            .flatten()
            .unwrap_or(default.max_deliveries);
        Lease {
            duration,
            max_deliveries,
        }
    }

    /// Marks the run done (workers stop serving it), wakes whoever waits on its event
    /// stream (the coordinator's results thread, every worker's watcher: [`wake`]), and
    /// lets all its keys expire; one round trip, in that order.
    pub fn end_run(&mut self, run: &str) -> Result<(), BrokerError> {
        self.call(|c| {
            let mut pipe = redis::pipe();
            pipe.cmd("HSET")
                .arg(run_key(run))
                .arg("state")
                .arg("done")
                .ignore();
            wake(&mut pipe, run);
            expire(&mut pipe, run);
            pipe.query::<()>(c)
        })
    }

    /// Lets all the run's keys expire in a day (it ended, or its coordinator died).
    pub fn expire_run(&mut self, run: &str) -> Result<(), BrokerError> {
        self.call(|c| {
            // One round trip: at a run's end, nothing waits on more than it must.
            let mut pipe = redis::pipe();
            expire(&mut pipe, run);
            pipe.query::<()>(c)
        })
    }
}

/// Adds to `pipe` an entry of the run's event stream that says nothing else
/// ([`is_wake`](super::is_wake)): it ends the wait of whoever reads the stream, to look
/// at the run's state, which was changed before it.
fn wake(pipe: &mut redis::Pipeline, run: &str) {
    pipe.cmd("XADD")
        .arg(key(run, "events"))
        .arg("*")
        .arg(super::WAKE)
        .arg("")
        .ignore();
}

/// Adds to `pipe` an expiry in a day for every key of the run.
fn expire(pipe: &mut redis::Pipeline, run: &str) {
    for k in [
        run_key(run),
        key(run, "tasks"),
        key(run, "issued"),
        key(run, "started"),
        key(run, "done"),
        key(run, "results"),
        key(run, "events"),
        key(run, "output"),
        key(run, "replies"),
        key(run, "deliveries"),
    ]
    .into_iter()
    .chain(super::route::run_keys(run))
    {
        pipe.cmd("EXPIRE").arg(k).arg(KEEP_ENDED_RUN_SECS).ignore();
    }
}

/// What workers report back.
impl Broker {
    /// Adds a worker's note (a refusal, a rejected message) to the run's event stream.
    pub fn report(&mut self, run: &str, event: &Message) -> Result<(), BrokerError> {
        self.add(&key(run, "events"), event)
    }

    /// Reads up to `count` results, output entries and events after `cursor`, waiting
    /// up to `block` for one, and moves `cursor` past them; first deletes the output
    /// entries `read` before (in the same round trip), making room for more.
    pub fn read_reports(
        &mut self,
        run: &str,
        cursor: &mut ReportCursor,
        read: &[String],
        count: usize,
        block: Duration,
    ) -> Result<Vec<Report>, BrokerError> {
        let events = key(run, "events");
        let output = key(run, "output");
        // Output first: a task's output is on the broker before its result, and is read
        // whole with it (the stream holds fewer entries than `count`).
        let reply = self.call(|c| {
            let mut pipe = redis::pipe();
            if !read.is_empty() {
                pipe.cmd("XDEL").arg(&output).arg(read).ignore();
            }
            pipe.cmd("XREAD")
                .arg("COUNT")
                .arg(count)
                .arg("BLOCK")
                .arg(block.as_millis() as u64)
                .arg("STREAMS")
                .arg(&output)
                .arg(key(run, "results"))
                .arg(&events)
                .arg(&cursor.output)
                .arg(&cursor.results)
                .arg(&cursor.events);
            pipe.query::<(Value,)>(c).map(|(v,)| v)
        })?;
        let mut reports = Vec::new();
        for (stream, id, message) in entries(&reply) {
            if stream == events {
                cursor.events = id;
                if !super::is_wake(&message) {
                    reports.push(Report::Event(message));
                }
            } else if stream == output {
                cursor.output.clone_from(&id);
                reports.push(Report::Output(id, message));
            } else {
                cursor.results.clone_from(&id);
                reports.push(Report::Result(id, message));
            }
        }
        Ok(reports)
    }

    fn add(&mut self, stream: &str, message: &Message) -> Result<(), BrokerError> {
        self.call(|c| {
            let mut cmd = redis::cmd("XADD");
            cmd.arg(stream).arg("*");
            for (name, value) in &message.fields {
                cmd.arg(name).arg(value.as_slice());
            }
            cmd.query::<String>(c)
        })
        .map(drop)
    }
}
