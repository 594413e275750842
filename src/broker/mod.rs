//! Distributed runs through Redis: the one module that talks to Redis.
//!
//! Layout of a run `ID` in Redis (all keys expire a day after the run ends):
//! - `runner:runs` — a stream of run announcements (run id, job-file digest, MAC);
//! - `runner:run:ID` — a hash: `state` (running | done), `digest`, `lease_ms`,
//!   `max_deliveries`;
//! - `runner:ID:tasks` — the task stream, consumer group `workers`; an entry is a task's
//!   job, index and item (data only, never a command);
//! - `runner:ID:issued` — task key → the entry id it was published as (replays have
//!   another id and are refused);
//! - `runner:ID:done` — task key → entry id of its first completion;
//! - `runner:ID:results` — the result stream the coordinator reads;
//! - `runner:ID:events` — what workers report: refusals, rejected messages.
//!
//! Invariant: a task's result, its queue lines and its acknowledgement are committed by
//! one server-side script, and only the first completion of a task is kept.

pub mod command;
pub mod coordinator;
pub mod wire;
pub mod worker;

use crate::error::Error;
use redis::{Connection, RedisError, Value};
use std::time::{Duration, Instant};
use wire::Message;

pub const GROUP: &str = "workers";
pub const RUNS: &str = "runner:runs";
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_DELIVERIES: u32 = 3;

/// Records a task's first completion: result, queue lines and ack in one atomic step.
/// KEYS: done, results, tasks. ARGV: task key, group, entry id, then field/value pairs.
const COMPLETE: &str = r"
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[3]) == 0 then
  redis.call('XACK', KEYS[3], ARGV[2], ARGV[3])
  return 0
end
redis.call('XADD', KEYS[2], '*', unpack(ARGV, 4))
redis.call('XACK', KEYS[3], ARGV[2], ARGV[3])
return 1
";

/// Renews a lease only while this consumer still holds the entry, so a worker that was
/// paused past its lease never takes a task back from the one that took it over.
/// KEYS: tasks. ARGV: group, entry id, consumer.
const RENEW: &str = r"
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if p[1] and p[1][2] == ARGV[3] then
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], 'JUSTID')
  return 1
end
return 0
";

pub fn key(run: &str, what: &str) -> String {
    format!("runner:{run}:{what}")
}

pub fn run_key(run: &str) -> String {
    format!("runner:run:{run}")
}

/// The broker URL with any password removed, for messages.
pub fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => url.to_string(),
        },
        None => "the broker".to_string(),
    }
}

/// A connection that reconnects with backoff when Redis goes away, and says so.
pub struct Broker {
    client: redis::Client,
    conn: Option<Connection>,
    url: String,
    read_timeout: Duration,
    /// Told when the broker is unreachable and when it is back.
    say: Box<dyn Fn(String) + Send>,
    /// Asked between reconnect attempts: true to give up.
    give_up: Box<dyn Fn() -> bool + Send>,
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// Cannot work with this broker at all: wrong password, TLS, unknown host, down at start.
    #[error("{0}")]
    Fatal(String),
    /// Gave up reconnecting because the run is stopping.
    #[error("stopped")]
    Stopped,
}

fn describe(url: &str, e: &RedisError) -> String {
    let text = e.to_string().replace(url, &redact(url));
    let tls = url.starts_with("rediss://");
    let hint = if e.is_io_error() && tls {
        " (does the server speak TLS on that port?)"
    } else if e.is_io_error() && text.contains("reset by peer") {
        " (if the server expects TLS, use rediss://)"
    } else {
        ""
    };
    format!("broker {}: {text}{hint}", redact(url))
}

impl Broker {
    /// Connects now, failing within seconds if the broker is unreachable or refuses us.
    pub fn connect(url: &str, read_timeout: Duration) -> Result<Broker, BrokerError> {
        // rediss:// needs a TLS crypto provider chosen once per process; a second
        // install (another connection) is refused, and that is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = redis::Client::open(url).map_err(|e| BrokerError::Fatal(describe(url, &e)))?;
        let conn = client
            .get_connection_with_timeout(Duration::from_secs(5))
            .map_err(|e| BrokerError::Fatal(describe(url, &e)))?;
        conn.set_read_timeout(Some(read_timeout))
            .map_err(|e| BrokerError::Fatal(describe(url, &e)))?;
        let mut broker = Broker {
            client,
            conn: Some(conn),
            url: url.to_string(),
            read_timeout,
            say: Box::new(|_| {}),
            give_up: Box::new(|| false),
        };
        // A wrong password may only show on the first command.
        broker
            .conn
            .as_mut()
            .map(|c| redis::cmd("PING").query::<String>(c))
            .transpose()
            .map_err(|e| BrokerError::Fatal(describe(url, &e)))?;
        Ok(broker)
    }

    pub fn on_trouble(
        mut self,
        say: impl Fn(String) + Send + 'static,
        give_up: impl Fn() -> bool + Send + 'static,
    ) -> Broker {
        self.say = Box::new(say);
        self.give_up = Box::new(give_up);
        self
    }

    /// Runs `f` on the connection, reconnecting with backoff after a connection error.
    /// Server errors (a bad command, a script error) are returned at once.
    pub fn call<T>(
        &mut self,
        mut f: impl FnMut(&mut Connection) -> redis::RedisResult<T>,
    ) -> Result<T, BrokerError> {
        let mut delay = Duration::from_millis(100);
        let mut down_since: Option<Instant> = None;
        loop {
            if self.conn.is_none() {
                match self
                    .client
                    .get_connection_with_timeout(Duration::from_secs(2))
                {
                    Ok(conn) => {
                        let _ = conn.set_read_timeout(Some(self.read_timeout));
                        self.conn = Some(conn);
                    }
                    Err(e) if is_fatal(&e) => {
                        return Err(BrokerError::Fatal(describe(&self.url, &e)))
                    }
                    Err(_) => {}
                }
            }
            if let Some(conn) = &mut self.conn {
                match f(conn) {
                    Ok(v) => {
                        if let Some(since) = down_since {
                            (self.say)(format!(
                                "broker {} is back after {}",
                                redact(&self.url),
                                crate::task::duration(since.elapsed())
                            ));
                        }
                        return Ok(v);
                    }
                    Err(e) if is_connection_error(&e) => {
                        self.conn = None;
                        if down_since.is_none() {
                            (self.say)(format!("{}; reconnecting", describe(&self.url, &e)));
                        }
                    }
                    Err(e) if is_loading(&e) => {}
                    Err(e) => return Err(BrokerError::Fatal(describe(&self.url, &e))),
                }
            }
            down_since.get_or_insert_with(Instant::now);
            if (self.give_up)() {
                return Err(BrokerError::Stopped);
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }

    pub fn add(&mut self, stream: &str, message: &Message) -> Result<String, BrokerError> {
        self.call(|c| {
            let mut cmd = redis::cmd("XADD");
            cmd.arg(stream).arg("*");
            for (name, value) in &message.fields {
                cmd.arg(name).arg(value.as_slice());
            }
            cmd.query::<String>(c)
        })
    }
}

fn is_connection_error(e: &RedisError) -> bool {
    e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped() || e.is_timeout()
}

fn is_loading(e: &RedisError) -> bool {
    e.to_string().contains("LOADING")
}

fn is_fatal(e: &RedisError) -> bool {
    let text = e.to_string().to_lowercase();
    text.contains("auth")
        || text.contains("password")
        || text.contains("tls")
        || text.contains("certificate")
}

/// Entries of `stream` idle for at least `idle_ms`: (entry id, deliveries so far).
pub fn idle_entries(
    broker: &mut Broker,
    stream: &str,
    idle_ms: u64,
    count: usize,
) -> Vec<(String, u32)> {
    let reply = broker.call(|c| {
        redis::cmd("XPENDING")
            .arg(stream)
            .arg(GROUP)
            .arg("IDLE")
            .arg(idle_ms)
            .arg("-")
            .arg("+")
            .arg(count)
            .query::<Value>(c)
    });
    let Ok(Value::Array(rows)) = reply else {
        return Vec::new();
    };
    rows.iter()
        .filter_map(|row| match row {
            Value::Array(fields) if fields.len() >= 4 => {
                Some((text(&fields[0]), text(&fields[3]).parse().unwrap_or(0)))
            }
            _ => None,
        })
        .collect()
}

/// Entries of an XREAD/XREADGROUP/XCLAIM reply: (stream, entry id, message).
pub fn entries(value: &Value) -> Vec<(String, String, Message)> {
    let mut out = Vec::new();
    let streams: Vec<(&Value, &Value)> = match value {
        Value::Array(items) => items
            .iter()
            .filter_map(|s| match s {
                Value::Array(pair) if pair.len() == 2 => Some((&pair[0], &pair[1])),
                _ => None,
            })
            .collect(),
        Value::Map(pairs) => pairs.iter().map(|(k, v)| (k, v)).collect(),
        _ => Vec::new(),
    };
    for (name, list) in streams {
        let stream = text(name);
        out.extend(
            entry_list(list)
                .into_iter()
                .map(|(id, m)| (stream.clone(), id, m)),
        );
    }
    out
}

/// A list of `[id, [field, value, …]]` entries.
pub fn entry_list(value: &Value) -> Vec<(String, Message)> {
    let Value::Array(list) = value else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|entry| match entry {
            Value::Array(pair) if pair.len() == 2 => {
                let id = text(&pair[0]);
                let mut message = Message::new();
                if let Value::Array(kv) = &pair[1] {
                    for chunk in kv.chunks(2) {
                        if let [k, v] = chunk {
                            message.fields.push((text(k), bytes(v)));
                        }
                    }
                }
                Some((id, message))
            }
            _ => None,
        })
        .collect()
}

pub fn text(value: &Value) -> String {
    String::from_utf8_lossy(&bytes(value)).into_owned()
}

pub fn bytes(value: &Value) -> Vec<u8> {
    match value {
        Value::BulkString(b) => b.clone(),
        Value::SimpleString(s) => s.as_bytes().to_vec(),
        Value::Int(i) => i.to_string().into_bytes(),
        Value::Okay => b"OK".to_vec(),
        _ => Vec::new(),
    }
}

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
    Ok(std::env::var_os("RUNNER_AUTHKEY")
        .filter(|k| !k.is_empty())
        .map(|k| k.into_encoded_bytes()))
}

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
    }
}
