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

/// A run's keys expire this long (a day) after the run ended.
const KEEP_ENDED_RUN_SECS: u64 = 86_400;

/// Where the coordinator has read up to in a run's result and event streams.
#[derive(Debug, Clone)]
pub struct ReportCursor {
    results: String,
    events: String,
}

impl Default for ReportCursor {
    /// From the start of both streams.
    fn default() -> ReportCursor {
        ReportCursor {
            results: "0-0".to_string(),
            events: "0-0".to_string(),
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

    /// Adds a run's announcement to the stream workers watch.
    pub fn announce(&mut self, announcement: &Message) -> Result<(), BrokerError> {
        self.add(RUNS, announcement)
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

    /// Whether the run is still running (false once it ended, or if it never existed).
    pub fn is_running(&mut self, run: &str) -> Result<bool, BrokerError> {
        Ok(self.run_field::<String>(run, "state")?.as_deref() == Some("running"))
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

    /// Marks the run done (workers stop serving it) and lets all its keys expire.
    pub fn end_run(&mut self, run: &str) -> Result<(), BrokerError> {
        self.call(|c| {
            redis::cmd("HSET")
                .arg(run_key(run))
                .arg("state")
                .arg("done")
                .query::<()>(c)?;
            for k in [
                run_key(run),
                key(run, "tasks"),
                key(run, "issued"),
                key(run, "done"),
                key(run, "results"),
                key(run, "events"),
            ] {
                redis::cmd("EXPIRE")
                    .arg(k)
                    .arg(KEEP_ENDED_RUN_SECS)
                    .query::<()>(c)?;
            }
            Ok(())
        })
    }
}

/// What workers report back.
impl Broker {
    /// Adds a worker's note (a refusal, a rejected message) to the run's event stream.
    pub fn report(&mut self, run: &str, event: &Message) -> Result<(), BrokerError> {
        self.add(&key(run, "events"), event)
    }

    /// Reads up to `count` results and events after `cursor`, waiting up to `block` for
    /// one, and moves `cursor` past them.
    pub fn read_reports(
        &mut self,
        run: &str,
        cursor: &mut ReportCursor,
        count: usize,
        block: Duration,
    ) -> Result<Vec<Report>, BrokerError> {
        let events = key(run, "events");
        let reply = self.call(|c| {
            redis::cmd("XREAD")
                .arg("COUNT")
                .arg(count)
                .arg("BLOCK")
                .arg(block.as_millis() as u64)
                .arg("STREAMS")
                .arg(key(run, "results"))
                .arg(&events)
                .arg(&cursor.results)
                .arg(&cursor.events)
                .query::<Value>(c)
        })?;
        let mut reports = Vec::new();
        for (stream, id, message) in entries(&reply) {
            if stream == events {
                cursor.events = id;
                reports.push(Report::Event(message));
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
