//! Distributed runs through Redis: the layout of a run in Redis, and what the rest of the
//! broker shares (settings, errors, the job file's digest, the authkey).
//!
//! Only the Redis layer talks to Redis: `connection.rs` (the connection, which
//! reconnects with backoff), `runs.rs` and `tasks.rs` (one typed method of [`Broker`] per
//! thing the runner asks of Redis, and the Lua scripts), and `reply.rs` (replies as
//! messages). It is split from this file, and by subject, so that each part reads on its
//! own and none passes 400 lines; `coordinator`, `worker` and `command` see only
//! `Broker`'s typed methods, messages and plain Rust types.
//!
//! Layout of a run `ID` in Redis (all keys expire a day after the run ends, or after a
//! worker found its coordinator dead):
//! - `runner:runs` — a stream of run announcements (run id, job-file digest, MAC),
//!   trimmed to about the newest thousand;
//! - `runner:run:ID` — a hash: `state` (running | stopping | done), `digest`,
//!   `lease_ms`, `max_deliveries`;
//! - `runner:ID:alive` — the coordinator's heartbeat: refreshed every second, it
//!   expires 5 s after its coordinator died; a run without it is served by no worker;
//! - `runner:ID:started` — task key → the worker that started it (the coordinator
//!   tells running tasks from those no worker took yet);
//! - `runner:ID:tasks` — the task stream, consumer group `workers`; an entry is a task's
//!   job, index and item (data only, never a command);
//! - `runner:ID:issued` — task key → the entry id it was published as (replays have
//!   another id and are refused);
//! - `runner:ID:done` — task key → entry id of its first completion;
//! - `runner:ID:results` — the result stream the coordinator reads;
//! - `runner:ID:events` — what workers report: refusals, rejected messages (and the
//!   coordinator's own wake-up of its reader when the run ends, a `wake` field alone);
//! - `runner:workers`, `runner:ID:serving`, `runner:ID:refused` — who is connected,
//!   who serves the run, who refused it and why (`route.rs`);
//! - `runner:ID:output` — remote tasks' printed output and starts, for the coordinator
//!   to print; capped (the OUTPUT script: a worker waits while it is full), each entry
//!   deleted once the coordinator read it;
//! - `runner:ID:rate:NAME` — a rate's next turn (µs, Redis's clock), taken by workers
//!   before each attempt of a job with that rate (the RATE script).
//!
//! Invariant: a task's result, its queue lines and its acknowledgement are committed by
//! one server-side script, and only the first completion of a task is kept.

mod batch;
pub mod command;
mod connection;
pub mod coordinator;
mod forward;
mod output;
mod reply;
mod route;
mod runs;
mod tasks;
mod waiting;
pub mod wire;
pub mod worker;

pub use connection::Broker;
pub use route::{WorkerInfo, PRESENCE_EVERY};
pub use runs::{Report, ReportCursor, RunState, HEARTBEAT_EVERY};

use crate::error::Error;
use std::time::Duration;

const GROUP: &str = "workers";
const RUNS: &str = "runner:runs";
const DEFAULT_LEASE: Duration = Duration::from_secs(30);
const DEFAULT_MAX_DELIVERIES: u32 = 3;

/// How long a worker holds a task before another may take it over, and how many
/// deliveries a task gets before the coordinator declares it lost. The coordinator writes
/// them into the run's hash; workers read them from there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub duration: Duration,
    pub max_deliveries: u32,
}

impl Default for Lease {
    /// What a worker assumes when the run's hash does not say.
    fn default() -> Lease {
        Lease {
            duration: DEFAULT_LEASE,
            max_deliveries: DEFAULT_MAX_DELIVERIES,
        }
    }
}

fn key(run: &str, what: &str) -> String {
    format!("runner:{run}:{what}")
}

fn run_key(run: &str) -> String {
    format!("runner:run:{run}")
}

/// The field of the event the coordinator adds when its run ends, to wake its own
/// results thread (blocked reading the run's streams) at once.
const WAKE: &str = "wake";

/// Whether an event is such a wake-up: it says nothing (anyone may add one, and it
/// only ends a wait), and it is never taken for a worker's report.
fn is_wake(message: &wire::Message) -> bool {
    message.get(WAKE).is_some() && message.fields.len() == 1
}

/// The broker URL with any password removed, for messages.
pub fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => url.to_string(),
        },
        None => match url.rsplit_once('@') {
            Some((_, host)) => format!("***@{host}"),
            None => url.to_string(),
        },
    }
}

/// Refuses a broker URL that is not a Redis URL at all, saying what to write.
pub fn check_url(url: &str) -> Result<(), Error> {
    let shown = redact(url);
    match url.split_once("://") {
        None => Err(Error::Usage(format!(
            "--broker {shown}: not a Redis URL (no scheme); write redis://{shown} \
             (rediss:// for TLS)"
        ))),
        Some(("redis" | "rediss" | "unix" | "redis+unix", _)) => Ok(()),
        Some((scheme, _)) => Err(Error::Usage(format!(
            "--broker {shown}: `{scheme}://` is not a Redis URL; write \
             redis://[:PASSWORD@]HOST[:PORT][/DB] (rediss:// for TLS)"
        ))),
    }
}

/// Defined with the other errors, so that `error` needs nothing from this module.
pub use crate::error::BrokerError;

/// The SHA-256 of the job file's bytes, in hex.
pub fn digest(source: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(source.as_bytes()))
}

/// The authkey from `RUNNER_AUTHKEY` or `--authkey-file` (trailing newline removed).
pub fn authkey(file: Option<&std::path::Path>) -> Result<Option<Vec<u8>>, Error> {
    if let Some(path) = file {
        let mut key = std::fs::read(path).map_err(Error::path("read authkey file", path))?;
        while key.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            key.pop();
        }
        if key.is_empty() {
            return Err(Error::Usage(format!(
                "authkey file {} is empty",
                path.display()
            )));
        }
        return Ok(Some(key));
    }
    // Read at start, before the variable was removed (`scrub.rs`).
    Ok(crate::scrub::authkey())
}

#[cfg(test)]
mod live_tests;

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            super::redact("redis://:hunter2@db:6379/0"),
            "redis://***@db:6379/0"
        );
        assert_eq!(super::redact("rediss://user:pw@h"), "rediss://***@h");
        assert_eq!(
            super::redact("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(super::redact(":pw@db:6379"), "***@db:6379");
    }
}
