//! What the runner asks of Redis about tasks, one typed method of [`Broker`] each:
//! issuing a task, taking new or abandoned ones, renewing leases, completing tasks.
//!
//! Each method builds its command here from the run id (the key layout is in `mod.rs`)
//! and runs it through [`Broker::call`], so each one reconnects with backoff. The Lua
//! scripts are here because each is one step that no other client's command may split:
//! publishing a task, renewing a lease, completing a task.

use super::reply::{entries, entry_list, pending_rows};
use super::wire::Message;
use super::{key, Broker, BrokerError, GROUP};
use redis::{Script, Value};
use std::time::Duration;

/// Publishes a task: the entry and the record of which entry was issued, atomically.
/// KEYS: tasks, issued. ARGV: task key, then field/value pairs.
const ISSUE: &str = r"
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
redis.call('HSET', KEYS[2], ARGV[1], id)
return id
";

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

/// What Redis knows of a task before a worker runs it.
#[derive(Debug, Clone, Default)]
pub struct TaskState {
    /// The entry id the task was published as, if it was.
    pub issued_as: Option<String>,
    /// Whether a result was already recorded.
    pub done: bool,
}

/// Issuing, taking, renewing and completing tasks.
impl Broker {
    /// Publishes a task (the ISSUE script) and returns its entry id.
    pub fn issue(
        &mut self,
        run: &str,
        task: &str,
        message: &Message,
    ) -> Result<String, BrokerError> {
        let script = Script::new(ISSUE);
        self.call(|c| {
            let mut invocation = script.prepare_invoke();
            invocation
                .key(key(run, "tasks"))
                .key(key(run, "issued"))
                .arg(task);
            for (name, value) in &message.fields {
                invocation.arg(name).arg(value.as_slice());
            }
            invocation.invoke::<String>(c)
        })
    }

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
    /// (entry id, deliveries so far).
    pub fn idle_tasks(
        &mut self,
        run: &str,
        idle: Duration,
        count: usize,
    ) -> Result<Vec<(String, u32)>, BrokerError> {
        let reply = self.call(|c| {
            redis::cmd("XPENDING")
                .arg(key(run, "tasks"))
                .arg(GROUP)
                .arg("IDLE")
                .arg(idle.as_millis() as u64)
                .arg("-")
                .arg("+")
                .arg(count)
                .query::<Value>(c)
        })?;
        Ok(pending_rows(&reply))
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

    /// Which entry the task was issued as and whether it is done, in one round trip.
    pub fn task_state(&mut self, run: &str, task: &str) -> Result<TaskState, BrokerError> {
        let (issued_as, done) = self.call(|c| {
            redis::pipe()
                .cmd("HGET")
                .arg(key(run, "issued"))
                .arg(task)
                .cmd("HEXISTS")
                .arg(key(run, "done"))
                .arg(task)
                .query::<(Option<String>, bool)>(c)
        })?;
        Ok(TaskState { issued_as, done })
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

    /// Renews `consumer`'s lease on the entry `id` (the RENEW script); false if another
    /// consumer holds it now.
    pub fn renew(&mut self, run: &str, id: &str, consumer: &str) -> Result<bool, BrokerError> {
        let script = Script::new(RENEW);
        self.call(|c| {
            script
                .key(key(run, "tasks"))
                .arg(GROUP)
                .arg(id)
                .arg(consumer)
                .invoke::<i64>(c)
        })
        .map(|renewed| renewed == 1)
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
