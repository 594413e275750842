//! What the runner asks of Redis about many tasks at once, one round trip each: the
//! coordinator publishing a batch of tasks, a worker checking a batch of entries it took
//! (START for each), completing a batch of tasks, renewing every lease it holds, and
//! giving back what it took and did not run. Each script does per task exactly what the
//! one-task script of `tasks.rs` does, so the delivery rules are those of one task: a
//! task's result, queue lines and acknowledgement are committed together, and only its
//! first completion is kept.
//!
//! So that round trips do not set the pace (distributed.md, "Speed across machines"):
//! a worker with 2 ms to Redis and 1 ms tasks would otherwise spend most of its time
//! waiting for replies.

use super::tasks::TaskState;
use super::wire::Message;
use super::{key, run_key, Broker, BrokerError, GROUP};
use redis::Script;

/// ISSUE for each task. KEYS: tasks, issued, run hash. ARGV: per task its key, its
/// number of field/value arguments, and those. Returns how many were published (0 when
/// Redis no longer knows the run).
const ISSUE_MANY: &str = r"
if redis.call('EXISTS', KEYS[3]) == 0 then return 0 end
local i = 1
local n = 0
while i <= #ARGV do
  local task = ARGV[i]
  local count = tonumber(ARGV[i + 1])
  local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, i + 2, i + 1 + count))
  redis.call('HSET', KEYS[2], task, id)
  i = i + 2 + count
  n = n + 1
end
return n
";

/// START for each entry (see `tasks.rs`): 0 not issued as this entry, 1 done, 2 start
/// (recorded as taken ahead by this consumer, `ahead:CONSUMER`, until RUNNING says it
/// runs), 3 the run is stopping or over, 4 its
/// coordinator is gone. KEYS: issued, done, started, run hash, alive. ARGV: consumer,
/// then task key and entry id pairs.
const START_MANY: &str = r"
local state = redis.call('HGET', KEYS[4], 'state')
local alive = redis.call('EXISTS', KEYS[5])
local out = {}
for i = 2, #ARGV, 2 do
  local task, id = ARGV[i], ARGV[i + 1]
  if state ~= 'running' then out[#out + 1] = 3
  elseif alive == 0 then out[#out + 1] = 4
  elseif redis.call('HGET', KEYS[1], task) ~= id then out[#out + 1] = 0
  elseif redis.call('HEXISTS', KEYS[2], task) == 1 then out[#out + 1] = 1
  else
    redis.call('HSET', KEYS[3], task, 'ahead:' .. ARGV[1])
    out[#out + 1] = 2
  end
end
return out
";

/// COMPLETE for each task. KEYS: done, results, tasks, run hash. ARGV: group, then per
/// task its key, entry id, number of field/value arguments, and those.
const COMPLETE_MANY: &str = r"
if redis.call('EXISTS', KEYS[4]) == 0 then return 0 end
local i = 2
while i <= #ARGV do
  local task, id, count = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  if redis.call('HSETNX', KEYS[1], task, id) == 1 then
    redis.call('XADD', KEYS[2], '*', unpack(ARGV, i + 3, i + 2 + count))
  end
  redis.call('XACK', KEYS[3], ARGV[1], id)
  i = i + 3 + count
end
return 1
";

/// RENEW for each entry: only while this consumer still holds it. KEYS: tasks. ARGV:
/// group, consumer, entry ids.
const RENEW_MANY: &str = r"
local n = 0
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    n = n + 1
  end
end
return n
";

/// Tasks this consumer took ahead and now runs: recorded as started by it (the
/// coordinator of a run that stops waits for these, and withdraws those taken ahead
/// and given back). KEYS: started. ARGV: consumer, task keys.
const RUNNING: &str = r"
for i = 2, #ARGV do
  if redis.call('HGET', KEYS[1], ARGV[i]) == 'ahead:' .. ARGV[1] then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[1])
  end
end
return 1
";

/// Tasks this consumer recorded as started (START) and never ran: no longer started,
/// so that a stopping coordinator withdraws them rather than waits for them.
/// KEYS: started. ARGV: consumer, task keys.
const UNSTART: &str = r"
for i = 2, #ARGV do
  local v = redis.call('HGET', KEYS[1], ARGV[i])
  if v == ARGV[1] or v == 'ahead:' .. ARGV[1] then
    redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return 1
";

/// A task's result for [`Broker::complete_many`].
pub struct Completion {
    pub task: String,
    pub id: String,
    pub result: Message,
}

impl Broker {
    /// Publishes tasks (`(task key, message)`) in one step; how many were published
    /// (none if Redis no longer knows the run).
    pub fn issue_many(
        &mut self,
        run: &str,
        tasks: &[(String, Message)],
    ) -> Result<usize, BrokerError> {
        if tasks.is_empty() {
            return Ok(0);
        }
        let script = Script::new(ISSUE_MANY);
        self.call(|c| {
            let mut invocation = script.prepare_invoke();
            invocation
                .key(key(run, "tasks"))
                .key(key(run, "issued"))
                .key(run_key(run));
            for (task, message) in tasks {
                invocation.arg(task).arg(message.fields.len() * 2);
                for (name, value) in &message.fields {
                    invocation.arg(name).arg(value.as_slice());
                }
            }
            invocation.invoke::<usize>(c)
        })
    }

    /// START for each `(task key, entry id)`, in one step.
    pub fn start_many(
        &mut self,
        run: &str,
        consumer: &str,
        entries: &[(String, String)],
    ) -> Result<Vec<TaskState>, BrokerError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let script = Script::new(START_MANY);
        let states = self.call(|c| {
            let mut invocation = script.prepare_invoke();
            invocation
                .key(key(run, "issued"))
                .key(key(run, "done"))
                .key(key(run, "started"))
                .key(run_key(run))
                .key(key(run, "alive"))
                .arg(consumer);
            for (task, id) in entries {
                invocation.arg(task).arg(id);
            }
            invocation.invoke::<Vec<i64>>(c)
        })?;
        Ok(states.into_iter().map(TaskState::from_code).collect())
    }

    /// COMPLETE for each task, in one step.
    pub fn complete_many(&mut self, run: &str, done: &[Completion]) -> Result<(), BrokerError> {
        if done.is_empty() {
            return Ok(());
        }
        let script = Script::new(COMPLETE_MANY);
        self.call(|c| {
            let mut invocation = script.prepare_invoke();
            invocation
                .key(key(run, "done"))
                .key(key(run, "results"))
                .key(key(run, "tasks"))
                .key(run_key(run))
                .arg(GROUP);
            for d in done {
                invocation
                    .arg(&d.task)
                    .arg(&d.id)
                    .arg(d.result.fields.len() * 2);
                for (name, value) in &d.result.fields {
                    invocation.arg(name).arg(value.as_slice());
                }
            }
            invocation.invoke::<i64>(c)
        })
        .map(drop)
    }

    /// Renews `consumer`'s lease on each entry it still holds, in one step.
    pub fn renew_many(
        &mut self,
        run: &str,
        consumer: &str,
        ids: &[String],
    ) -> Result<(), BrokerError> {
        if ids.is_empty() {
            return Ok(());
        }
        let script = Script::new(RENEW_MANY);
        self.call(|c| {
            script
                .key(key(run, "tasks"))
                .arg(GROUP)
                .arg(consumer)
                .arg(ids)
                .invoke::<i64>(c)
        })
        .map(drop)
    }

    /// Tasks `consumer` took ahead that now run: recorded as started by it.
    pub fn running(
        &mut self,
        run: &str,
        consumer: &str,
        tasks: &[String],
    ) -> Result<(), BrokerError> {
        if tasks.is_empty() {
            return Ok(());
        }
        let script = Script::new(RUNNING);
        self.call(|c| {
            script
                .key(key(run, "started"))
                .arg(consumer)
                .arg(tasks)
                .invoke::<i64>(c)
        })
        .map(drop)
    }

    /// Of `tasks`, those a worker runs, and those a worker took ahead and has not
    /// started (either may still run).
    pub fn started_or_ahead(
        &mut self,
        run: &str,
        tasks: &[String],
    ) -> Result<(Vec<String>, Vec<String>), BrokerError> {
        if tasks.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let found = self.call(|c| {
            redis::cmd("HMGET")
                .arg(key(run, "started"))
                .arg(tasks)
                .query::<Vec<Option<String>>>(c)
        })?;
        let (mut running, mut ahead) = (Vec::new(), Vec::new());
        for (task, value) in tasks.iter().zip(found) {
            match value {
                Some(v) if v.starts_with("ahead:") => ahead.push(task.clone()),
                Some(_) => running.push(task.clone()),
                None => {}
            }
        }
        Ok((running, ahead))
    }

    /// Tasks `consumer` recorded as started and did not run: no longer started.
    pub fn unstart(
        &mut self,
        run: &str,
        consumer: &str,
        tasks: &[String],
    ) -> Result<(), BrokerError> {
        if tasks.is_empty() {
            return Ok(());
        }
        let script = Script::new(UNSTART);
        self.call(|c| {
            script
                .key(key(run, "started"))
                .arg(consumer)
                .arg(tasks)
                .invoke::<i64>(c)
        })
        .map(drop)
    }
}
