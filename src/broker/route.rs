//! Who serves a run: workers announce themselves (their labels, pool and resources) and
//! the runs they serve or refused, in small keys that expire, so that the coordinator
//! can say why tasks wait instead of waiting silently.
//!
//! Keys (see `mod.rs` for the rest of the layout):
//! - `runner:workers` — a sorted set: each `runner worker` process (`host:pid`) → when
//!   its presence expires (ms, Redis's clock), refreshed every second; `runner:workers:info`
//!   — a hash: `host:pid` → JSON `{labels, pool}`. Gone workers are dropped by whoever
//!   refreshes next; both keys expire a day after the last refresh.
//! - `runner:ID:serving` — a sorted set: each process serving run ID (workers and the
//!   coordinator's own share) → expiry, refreshed every second while it serves it.
//! - `runner:ID:refused` — a hash: `host:pid` → why it refused run ID (its words,
//!   unsigned: shown made printable, never trusted for anything else).

use super::{key, Broker, BrokerError};
use std::time::Duration;

/// How often a worker refreshes its presence, and how long it lasts without that.
pub const PRESENCE_EVERY: Duration = Duration::from_secs(1);
const PRESENCE_TTL: Duration = Duration::from_secs(5);

const WORKERS: &str = "runner:workers";
const WORKERS_INFO: &str = "runner:workers:info";

/// Refreshes one member of a presence set: ZADD with Redis's now + TTL, drops members
/// whose time passed (and their info), sets the info if given, and lets the keys
/// expire a day after. KEYS: set, info hash. ARGV: member, ttl ms, info ("" for none).
const PRESENT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
if #gone > 0 then
  redis.call('ZREM', KEYS[1], unpack(gone))
  redis.call('HDEL', KEYS[2], unpack(gone))
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[2], ARGV[1], ARGV[3]) end
redis.call('EXPIRE', KEYS[1], 86400)
redis.call('EXPIRE', KEYS[2], 86400)
return 1
";

/// The members of a presence set whose time has not passed, with their info.
/// KEYS: set, info hash. Returns member, info, member, info, …
const PRESENT_NOW: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local live = redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')
local out = {}
for _, m in ipairs(live) do
  out[#out + 1] = m
  out[#out + 1] = redis.call('HGET', KEYS[2], m) or ''
end
return out
";

/// A worker as it announced itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WorkerInfo {
    /// `host:pid`.
    #[serde(skip)]
    pub name: String,
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default)]
    pub pool: usize,
}

/// Who is connected and who serves a run, as the coordinator reads it.
#[derive(Debug, Clone, Default)]
pub struct Serving {
    /// Every `runner worker` connected to this broker now (whatever it serves).
    pub connected: Vec<WorkerInfo>,
    /// Those serving the run now (workers and the coordinator's own share), with
    /// their labels.
    pub serving: Vec<WorkerInfo>,
    /// Workers that refused the run, with why (their words).
    pub refused: Vec<(String, String)>,
}

impl Broker {
    /// A `runner worker` process says it is connected (every [`PRESENCE_EVERY`]).
    pub fn worker_present(&mut self, info: &WorkerInfo) -> Result<(), BrokerError> {
        let text = serde_json::to_string(info).unwrap_or_default();
        self.present(WORKERS, WORKERS_INFO, &info.name, &text)
    }

    /// A process says it serves the run (every [`PRESENCE_EVERY`] while it does).
    pub fn serving(&mut self, run: &str, info: &WorkerInfo) -> Result<(), BrokerError> {
        let text = serde_json::to_string(info).unwrap_or_default();
        self.present(
            &key(run, "serving"),
            &key(run, "serving:info"),
            &info.name,
            &text,
        )
    }

    fn present(
        &mut self,
        set: &str,
        info: &str,
        member: &str,
        text: &str,
    ) -> Result<(), BrokerError> {
        let script = redis::Script::new(PRESENT);
        self.call(|c| {
            script
                .key(set)
                .key(info)
                .arg(member)
                .arg(PRESENCE_TTL.as_millis() as u64)
                .arg(text)
                .invoke::<i64>(c)
        })
        .map(drop)
    }

    /// A worker refused the run: why, for the coordinator to say.
    pub fn refused(&mut self, run: &str, worker: &str, why: &str) -> Result<(), BrokerError> {
        self.call(|c| {
            redis::pipe()
                .cmd("HSET")
                .arg(key(run, "refused"))
                .arg(worker)
                .arg(why)
                .ignore()
                .cmd("EXPIRE")
                .arg(key(run, "refused"))
                .arg(86_400)
                .ignore()
                .query::<()>(c)
        })
    }

    /// Who is connected, who serves the run, and who refused it.
    pub fn who_serves(&mut self, run: &str) -> Result<Serving, BrokerError> {
        let connected = self.present_now(WORKERS, WORKERS_INFO)?;
        let serving = self.present_now(&key(run, "serving"), &key(run, "serving:info"))?;
        let refused = self.call(|c| {
            redis::cmd("HGETALL")
                .arg(key(run, "refused"))
                .query::<Vec<(String, String)>>(c)
        })?;
        Ok(Serving {
            connected,
            serving,
            refused,
        })
    }

    fn present_now(&mut self, set: &str, info: &str) -> Result<Vec<WorkerInfo>, BrokerError> {
        let script = redis::Script::new(PRESENT_NOW);
        let flat = self.call(|c| script.key(set).key(info).invoke::<Vec<String>>(c))?;
        Ok(flat
            .chunks(2)
            .map(|pair| {
                let mut info: WorkerInfo = pair
                    .get(1)
                    .and_then(|t| serde_json::from_str(t).ok())
                    .unwrap_or_default();
                info.name.clone_from(&pair[0]);
                info
            })
            .collect())
    }
}

/// The keys of a run this module writes, for `expire_run`.
pub fn run_keys(run: &str) -> [String; 3] {
    [
        key(run, "serving"),
        key(run, "serving:info"),
        key(run, "refused"),
    ]
}
