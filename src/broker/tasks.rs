//! What the runner asks of Redis about tasks, one typed method of [`Broker`] each:
//! issuing a task, taking new or abandoned ones, renewing leases, completing tasks.
//!
//! Each method builds its command here from the run id (the key layout is in `mod.rs`)
//! and runs it through [`Broker::call`], so each one reconnects with backoff. The Lua
//! scripts are here because each is one step that no other client's command may split:
//! completing a task, giving tasks back, a rate's turn. Publishing and renewing are in
//! `batch.rs`, many at a time.

use super::reply::{entries, entry_list, pending_rows};
use super::wire::Message;
use super::{key, run_key, Broker, BrokerError, GROUP};
use redis::{Script, Value};
use std::time::Duration;

/// Records a task's first completion: result, queue lines and ack in one atomic step
/// (nothing when Redis no longer knows the run).
/// KEYS: done, results, tasks, run hash. ARGV: task key, group, entry id, then
/// field/value pairs.
const COMPLETE: &str = r"
if redis.call('EXISTS', KEYS[4]) == 0 then return 0 end
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[3]) == 0 then
  redis.call('XACK', KEYS[3], ARGV[2], ARGV[3])
  return 0
end
redis.call('XADD', KEYS[2], '*', unpack(ARGV, 4))
redis.call('XACK', KEYS[3], ARGV[2], ARGV[3])
return 1
";

/// Gives back every entry a consumer holds, for a consumer that stops serving a run
/// which may go on: each is made idle for a whole lease, so that the next worker to look
/// takes it over at once, Redis's delivery count unchanged (JUSTID; they still count
/// against `--max-deliveries` as before, IDLE). In one step, so that no
/// entry another worker took over meanwhile is taken back.
/// KEYS: tasks. ARGV: group, consumer, idle ms.
const RELEASE: &str = r"
local rows = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 10000, ARGV[2])
for _, row in ipairs(rows) do
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, row[1], 'IDLE', ARGV[3], 'JUSTID')
end
return #rows
";

/// The run's `deliveries` hash lasts as long as the run's hash: no expiry while the run
/// is on (a count must not vanish under a task that runs for days), the run's own once
/// it ended, a day if the run is gone. KEYS[1] deliveries, KEYS[2] the run's hash;
/// ARGV[n] the seconds for a run that is gone.
const KEEP_AS_RUN: &str = r"
local function keep_as_run(n)
  local ttl = redis.call('TTL', KEYS[2])
  if ttl == -2 then ttl = tonumber(ARGV[n]) end
  if ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
end
";

/// A takeover about to run: counted once per consumer and entry. KEYS: deliveries,
/// run hash. ARGV: entry id, consumer, seconds kept if the run is gone.
static COUNT_RUN: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "{KEEP_AS_RUN}
if redis.call('HSETNX', KEYS[1], ARGV[1] .. ' ' .. ARGV[2], 1) == 1 then
  redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
end
keep_as_run(3)
return 1
"
    )
});

/// Entries pending for at least an idle time, with their deliveries as counted
/// against `--max-deliveries`: 1 (the first delivery) plus what the run's `deliveries`
/// hash holds for the entry (+1 for each takeover recorded as about to run, −1 when the
/// first delivery was given back unstarted, GIVE_BACK). Rows as XPENDING's: id, consumer, idle ms,
/// deliveries counted. KEYS: tasks, deliveries. ARGV: group, idle ms, count.
const IDLE: &str = r"
local rows = redis.call('XPENDING', KEYS[1], ARGV[1], 'IDLE', ARGV[2], '-', '+', ARGV[3])
for _, row in ipairs(rows) do
  row[4] = 1 + tonumber(redis.call('HGET', KEYS[2], row[1]) or '0')
end
return rows
";

/// Gives back one entry this consumer holds and cannot run (what its job uses does not
/// fit the worker, or it lacks a label): made idle for a whole lease, so that the next
/// worker to look takes it over at once, Redis's delivery count unchanged (JUSTID). Only
/// while this consumer still holds it. An entry given back on its first read never ran
/// anywhere: that delivery is taken off the count of `--max-deliveries` (IDLE), so that
/// routing costs a task none of its tries. KEYS: deliveries, run hash, tasks. ARGV:
/// group, entry id, consumer, idle ms, seconds the count is kept if the run is gone.
static GIVE_BACK: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "{KEEP_AS_RUN}
local p = redis.call('XPENDING', KEYS[3], ARGV[1], ARGV[2], ARGV[2], 1)
if p[1] and p[1][2] == ARGV[3] then
  redis.call('XCLAIM', KEYS[3], ARGV[1], ARGV[3], 0, ARGV[2], 'IDLE', ARGV[4], 'JUSTID')
  if tonumber(p[1][4]) == 1 then
    redis.call('HINCRBY', KEYS[1], ARGV[2], -1)
    keep_as_run(5)
  end
  return 1
end
return 0
"
    )
});

/// A turn of a rate shared by every worker of the run: when the next attempt of a job
/// with this rate may start, on Redis's clock, the same rule as the scheduler's (one
/// every interval; one that came late lets the next come sooner, but never sooner than
/// 3/4 of the interval after it). Returns the microseconds to wait. The key expires a
/// day after its last turn. KEYS: the rate's key. ARGV: interval in microseconds.
const RATE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local stored = tonumber(redis.call('GET', KEYS[1]))
local at = now
local after = now + interval
if stored then
  at = math.max(stored, now)
  after = math.max(stored + interval, at + math.floor(interval * 3 / 4))
end
redis.call('SET', KEYS[1], string.format('%.0f', after), 'PX', 86400000)
return string.format('%.0f', at - now)
";

/// Before a worker runs a task: is the entry the one issued for it, is the task still
/// undone? If so, the task is recorded as started by this consumer, in the same step.
/// Not while the run is stopping: then the coordinator knows which tasks started. Not
/// once the coordinator's heartbeat is gone: nobody would journal the result.
/// KEYS: issued, done, started, run hash, alive. ARGV: task key, entry id, consumer.
const START: &str = r"
if redis.call('HGET', KEYS[4], 'state') ~= 'running' then return 3 end
if redis.call('EXISTS', KEYS[5]) == 0 then return 4 end
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return 1 end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
return 2
";

/// What Redis knows of a task entry a worker is about to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    /// The task was not issued as this entry (a replayed or invented entry).
    NotIssued,
    /// A result is recorded already.
    Done,
    /// Run it: it is now recorded as started.
    Start,
    /// The run is stopping or over: do not start it.
    RunStopped,
    /// The run's coordinator is gone (its heartbeat expired): do not start it, and keep
    /// the entry, in case the coordinator comes back.
    Orphaned,
}

impl TaskState {
    /// What the START script (and START_MANY) answered.
    pub(super) fn from_code(code: i64) -> TaskState {
        match code {
            0 => TaskState::NotIssued,
            1 => TaskState::Done,
            2 => TaskState::Start,
            4 => TaskState::Orphaned,
            _ => TaskState::RunStopped,
        }
    }
}

/// Issuing, taking, renewing and completing tasks.
impl Broker {
    /// Takes up to `count` tasks no consumer was given yet, waiting up to `block` for one.
    pub fn take_new(
        &mut self,
        run: &str,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> Result<Vec<(String, Message)>, BrokerError> {
        let reply = self.call(|c| {
            redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(GROUP)
                .arg(consumer)
                .arg("COUNT")
                .arg(count)
                .arg("BLOCK")
                .arg(block.as_millis() as u64)
                .arg("STREAMS")
                .arg(key(run, "tasks"))
                .arg(">")
                .query::<Value>(c)
        })?;
        Ok(entries(&reply)
            .into_iter()
            .map(|(_, id, m)| (id, m))
            .collect())
    }

    /// Up to `count` task entries held for at least `idle` without being completed:
    /// (entry id, deliveries counted so far), oldest first (the IDLE script). A
    /// delivery counts when it may have run the task: the entry's first (its reader
    /// may have started it before dying, which nobody can tell) unless its reader gave
    /// it back ([`give_back`](Self::give_back)), and each takeover whose worker was
    /// about to start it ([`count_run`](Self::count_run)). Takeovers
    /// held in hand and lost with their worker before starting are not counted, so
    /// that tasks waiting behind one that kills its workers are not declared lost
    /// with it.
    pub fn idle_tasks(
        &mut self,
        run: &str,
        idle: Duration,
        count: usize,
    ) -> Result<Vec<(String, u32)>, BrokerError> {
        let script = Script::new(IDLE);
        let reply = self.call(|c| {
            script
                .key(key(run, "tasks"))
                .key(key(run, "deliveries"))
                .arg(GROUP)
                .arg(idle.as_millis() as u64)
                .arg(count)
                .invoke::<Value>(c)
        })?;
        Ok(pending_rows(&reply))
    }

    /// Records that the entry `id`, taken over by `consumer`, is about to run there:
    /// one more delivery counted against `--max-deliveries`
    /// ([`idle_tasks`](Self::idle_tasks)). Once per consumer and entry, so that a
    /// step sent again after a lost reply does not count twice (the COUNT_RUN script).
    pub fn count_run(&mut self, run: &str, id: &str, consumer: &str) -> Result<(), BrokerError> {
        let script = Script::new(&COUNT_RUN);
        self.call(|c| {
            script
                .key(key(run, "deliveries"))
                .key(run_key(run))
                .arg(id)
                .arg(consumer)
                .arg(super::runs::KEEP_ENDED_RUN_SECS)
                .invoke::<()>(c)
        })
    }

    /// Takes the entry `id` over for `consumer` if it is still idle for at least `idle`
    /// (another consumer may have been quicker): the entry, if this consumer got it.
    pub fn claim(
        &mut self,
        run: &str,
        consumer: &str,
        idle: Duration,
        id: &str,
    ) -> Result<Option<(String, Message)>, BrokerError> {
        let reply = self.call(|c| {
            redis::cmd("XCLAIM")
                .arg(key(run, "tasks"))
                .arg(GROUP)
                .arg(consumer)
                .arg(idle.as_millis() as u64)
                .arg(id)
                .query::<Value>(c)
        })?;
        Ok(entry_list(&reply).into_iter().next())
    }

    /// Up to `count` entries pending for `consumer` (read or taken over by it, not
    /// acknowledged), oldest first, after the entry `after` if given: (id, Redis's
    /// delivery count, 2 or more for one taken over). Asking counts no delivery.
    pub fn pending_for(
        &mut self,
        run: &str,
        consumer: &str,
        after: Option<&str>,
        count: usize,
    ) -> Result<Vec<(String, u32)>, BrokerError> {
        let start = after.map_or_else(|| "-".to_string(), |id| format!("({id}"));
        let reply = self.call(|c| {
            redis::cmd("XPENDING")
                .arg(key(run, "tasks"))
                .arg(GROUP)
                .arg(&start)
                .arg("+")
                .arg(count)
                .arg(consumer)
                .query::<Value>(c)
        })?;
        Ok(pending_rows(&reply))
    }

    /// The task entries `ids` that are still in the stream, in one round trip.
    pub fn task_entries(
        &mut self,
        run: &str,
        ids: &[String],
    ) -> Result<Vec<(String, Message)>, BrokerError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let replies = self.call(|c| {
            let mut pipe = redis::pipe();
            for id in ids {
                pipe.cmd("XRANGE").arg(key(run, "tasks")).arg(id).arg(id);
            }
            pipe.query::<Vec<Value>>(c)
        })?;
        Ok(replies
            .iter()
            .filter_map(|reply| entry_list(reply).into_iter().next())
            .collect())
    }

    /// The task entry `id`, if it is still in the stream.
    pub fn task_entry(&mut self, run: &str, id: &str) -> Result<Option<Message>, BrokerError> {
        let reply = self.call(|c| {
            redis::cmd("XRANGE")
                .arg(key(run, "tasks"))
                .arg(id)
                .arg(id)
                .query::<Value>(c)
        })?;
        Ok(entry_list(&reply).into_iter().next().map(|(_, m)| m))
    }

    /// Checks the entry `id` against the task it names and, if it may run, records it as
    /// started by `consumer` (the START script).
    pub fn start_task(
        &mut self,
        run: &str,
        task: &str,
        id: &str,
        consumer: &str,
    ) -> Result<TaskState, BrokerError> {
        let script = Script::new(START);
        let state = self.call(|c| {
            let mut invocation = script.prepare_invoke();
            start_keys(&mut invocation, run)
                .arg(task)
                .arg(id)
                .arg(consumer)
                .invoke::<i64>(c)
        })?;
        Ok(TaskState::from_code(state))
    }

    /// Takes the entry `id` off the pending list without a result (refused, or done by
    /// another worker already).
    pub fn acknowledge(&mut self, run: &str, id: &str) -> Result<(), BrokerError> {
        self.call(|c| {
            redis::cmd("XACK")
                .arg(key(run, "tasks"))
                .arg(GROUP)
                .arg(id)
                .query::<i64>(c)
        })
        .map(drop)
    }

    /// Gives back every task entry `consumer` holds (the RELEASE script), for another
    /// worker, or this one serving the run again, to take over at once. Returns how many.
    pub fn release(
        &mut self,
        run: &str,
        consumer: &str,
        lease: Duration,
    ) -> Result<usize, BrokerError> {
        let script = Script::new(RELEASE);
        self.call(|c| {
            script
                .key(key(run, "tasks"))
                .arg(GROUP)
                .arg(consumer)
                .arg(lease.as_millis() as u64)
                .invoke::<usize>(c)
        })
    }

    /// Gives back the entry `id` that `consumer` holds (the GIVE_BACK script), for
    /// another worker to take over at once.
    pub fn give_back(
        &mut self,
        run: &str,
        consumer: &str,
        id: &str,
        lease: Duration,
    ) -> Result<bool, BrokerError> {
        let script = Script::new(&GIVE_BACK);
        self.call(|c| {
            script
                .key(key(run, "deliveries"))
                .key(run_key(run))
                .key(key(run, "tasks"))
                .arg(GROUP)
                .arg(id)
                .arg(consumer)
                .arg(lease.as_millis() as u64)
                .arg(super::runs::KEEP_ENDED_RUN_SECS)
                .invoke::<i64>(c)
        })
        .map(|given| given == 1)
    }

    /// Takes a turn of the run's rate `name` (the RATE script): how long to wait before
    /// the attempt may start.
    pub fn rate_turn(
        &mut self,
        run: &str,
        name: &str,
        interval: Duration,
    ) -> Result<Duration, BrokerError> {
        let script = Script::new(RATE);
        let wait = self.call(|c| {
            script
                .key(key(run, &format!("rate:{name}")))
                .arg(interval.as_micros().max(1) as u64)
                .invoke::<String>(c)
        })?;
        Ok(Duration::from_micros(wait.parse().unwrap_or(0)))
    }

    /// Records the task's result and acknowledges its entry `id` (the COMPLETE script);
    /// false if the task already had a result, which is kept.
    pub fn complete(
        &mut self,
        run: &str,
        task: &str,
        id: &str,
        result: &Message,
    ) -> Result<bool, BrokerError> {
        let script = Script::new(COMPLETE);
        self.call(|c| {
            let mut invocation = script.prepare_invoke();
            invocation
                .key(key(run, "done"))
                .key(key(run, "results"))
                .key(key(run, "tasks"))
                .key(run_key(run))
                .arg(task)
                .arg(GROUP)
                .arg(id);
            for (name, value) in &result.fields {
                invocation.arg(name).arg(value.as_slice());
            }
            invocation.invoke::<i64>(c)
        })
        .map(|first| first == 1)
    }
}

/// The keys START reads and writes, in the order its scripts (START, START_MANY, and
/// TAKE_START after the task stream) name them: issued, done, started, run hash,
/// alive.
pub(super) fn start_keys<'a, 's>(
    invocation: &'a mut redis::ScriptInvocation<'s>,
    run: &str,
) -> &'a mut redis::ScriptInvocation<'s> {
    invocation
        .key(key(run, "issued"))
        .key(key(run, "done"))
        .key(key(run, "started"))
        .key(run_key(run))
        .key(key(run, "alive"))
}
