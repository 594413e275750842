//! What the runner asks of Redis about many tasks at once, one round trip each: the
//! coordinator publishing a batch of tasks, a worker checking a batch of entries it took
//! (START for each), sending what its tasks printed, which of them run and their
//! results (SEND), renewing every lease it holds, and giving back what it took and did
//! not run. Each script does per task exactly what the
//! one-task script of `tasks.rs` does, so the delivery rules are those of one task: a
//! task's result, queue lines and acknowledgement are committed together, and only its
//! first completion is kept.
//!
//! So that round trips do not set the pace (distributed.md, "Speed across machines"):
//! a worker with 2 ms to Redis and 1 ms tasks would otherwise spend most of its time
//! waiting for replies.

use super::reply::entry_list;
use super::tasks::{start_keys, TaskState};
use super::wire::Message;
use super::{key, run_key, Broker, BrokerError, GROUP};
use redis::{Script, Value};

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

/// New entries read and START for each, in one step: XREADGROUP (not blocking: a
/// script may not wait) of up to `count` entries, then for each what START_MANY
/// answers, with the task key taken from the entry's `job` and `index` as the worker
/// makes it. So that a worker far from Redis refills its hand in one round trip, not
/// two. Returns {entries, codes} (both empty when there is nothing new).
/// KEYS: tasks, issued, done, started, run hash, alive. ARGV: group, consumer, count.
const TAKE_START: &str = r"
local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3], 'STREAMS', KEYS[1], '>')
if not r or not r[1] then return {{}, {}} end
local list = r[1][2]
local state = redis.call('HGET', KEYS[5], 'state')
local alive = redis.call('EXISTS', KEYS[6])
local codes = {}
for i, e in ipairs(list) do
  local id, f = e[1], e[2]
  local job, index = '', ''
  for j = 1, #f - 1, 2 do
    if f[j] == 'job' then job = f[j + 1] elseif f[j] == 'index' then index = f[j + 1] end
  end
  local task = job .. '/' .. index
  if state ~= 'running' then codes[i] = 3
  elseif alive == 0 then codes[i] = 4
  elseif redis.call('HGET', KEYS[2], task) ~= id then codes[i] = 0
  elseif redis.call('HEXISTS', KEYS[3], task) == 1 then codes[i] = 1
  else
    redis.call('HSET', KEYS[4], task, 'ahead:' .. ARGV[2])
    codes[i] = 2
  end
end
return {list, codes}
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

/// What a worker sends after its tasks ran, in the order it happened, one round trip
/// for the lot: its tasks' printed output (added to the run's capped output stream,
/// only while it holds fewer than the cap: the first entry that does not fit ends the
/// step, and everything after it waits for the next), the tasks taken ahead that now
/// run (as RUNNING: recorded as started by this consumer, for a coordinator that stops
/// the run), and results (as COMPLETE: only a task's first result is kept, with its
/// acknowledgement). A result sent after its task's output is never committed before
/// that output: the step stops at the first entry that does not fit. When the run is
/// over or Redis no longer knows it, output is dropped (nobody reads it) and the rest
/// is done as the one-task scripts would.
/// A step run again with the same token (its reply was lost, and `Broker::call` sent
/// it again) does nothing and answers what it answered: the last token of each
/// consumer and its answer are kept in the run's `replies` hash while the run is on
/// (expiring a day after the last step, as the run's keys do after its end: a run a
/// worker found orphaned may still get steps from another).
/// KEYS: output, run hash, done, results, tasks, started, replies. ARGV: cap, group,
/// consumer, token, then items: `o` count fields… (output), `r` task (runs), `c` task
/// id count fields… (a result). Returns {items done, 1 if output is dropped}.
const SEND: &str = r"
local last = redis.call('HGET', KEYS[7], ARGV[3])
if last then
  local token, d, g = string.match(last, '^(%S+) (%d+) (%d+)$')
  if token == ARGV[4] then return {tonumber(d), tonumber(g)} end
end
local state = redis.call('HGET', KEYS[2], 'state')
local gone = (not state) or state == 'done'
local cap = tonumber(ARGV[1])
local n = redis.call('XLEN', KEYS[1])
local i = 5
local done = 0
while i <= #ARGV do
  local kind = ARGV[i]
  if kind == 'o' then
    local count = tonumber(ARGV[i + 1])
    if not gone then
      if n >= cap then break end
      redis.call('XADD', KEYS[1], '*', unpack(ARGV, i + 2, i + 1 + count))
      n = n + 1
    end
    i = i + 2 + count
  elseif kind == 'r' then
    if redis.call('HGET', KEYS[6], ARGV[i + 1]) == 'ahead:' .. ARGV[3] then
      redis.call('HSET', KEYS[6], ARGV[i + 1], ARGV[3])
    end
    i = i + 2
  else
    local task, id, count = ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
    if state then
      if redis.call('HSETNX', KEYS[3], task, id) == 1 then
        redis.call('XADD', KEYS[4], '*', unpack(ARGV, i + 4, i + 3 + count))
      end
      redis.call('XACK', KEYS[5], ARGV[2], id)
    end
    i = i + 4 + count
  end
  done = done + 1
end
if gone then return {done, 1} end
redis.call('HSET', KEYS[7], ARGV[3], ARGV[4] .. ' ' .. done .. ' 0')
redis.call('EXPIRE', KEYS[7], 86400)
return {done, 0}
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

/// The scripts a worker runs for every batch, their SHA-1 computed once.
static SEND_SCRIPT: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| Script::new(SEND));
static START_MANY_SCRIPT: std::sync::LazyLock<Script> =
    std::sync::LazyLock::new(|| Script::new(START_MANY));
static TAKE_START_SCRIPT: std::sync::LazyLock<Script> =
    std::sync::LazyLock::new(|| Script::new(TAKE_START));

/// Steps of SEND this process began: each one's token, with when it began.
static SENDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static PROCESS_BEGAN: std::sync::LazyLock<u128> = std::sync::LazyLock::new(|| {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
});

/// A task's result, for [`Broker::send`].
pub struct Completion {
    pub task: String,
    pub id: String,
    pub result: Message,
}

/// What a worker sends after its tasks ran ([`Broker::send`]), in order.
pub enum Outbound {
    /// An entry of the run's output stream: a piece of a task's printed output, or an
    /// attempt's start.
    Output(Message),
    /// A task taken ahead now runs.
    Running(String),
    /// A task's result.
    Done(Completion),
}

/// What came of [`Broker::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// How many items were done: the first ones (fewer than given: the output stream
    /// is full, and the rest waits).
    pub done: usize,
    /// The run is over, or Redis no longer knows it: its output was dropped, as all
    /// output from now on should be.
    pub output_gone: bool,
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
        let script = &*START_MANY_SCRIPT;
        let states = self.call(|c| {
            let mut invocation = script.prepare_invoke();
            start_keys(&mut invocation, run).arg(consumer);
            for (task, id) in entries {
                invocation.arg(task).arg(id);
            }
            invocation.invoke::<Vec<i64>>(c)
        })?;
        Ok(states.into_iter().map(TaskState::from_code).collect())
    }

    /// Takes up to `count` new entries and asks START for each (TAKE_START), in one
    /// round trip, without waiting: none when the stream holds nothing new.
    pub fn take_started(
        &mut self,
        run: &str,
        consumer: &str,
        count: usize,
    ) -> Result<Vec<(String, Message, Option<TaskState>)>, BrokerError> {
        let script = &*TAKE_START_SCRIPT;
        let (list, codes) = self.call(|c| {
            let mut invocation = script.key(key(run, "tasks"));
            start_keys(&mut invocation, run)
                .arg(GROUP)
                .arg(consumer)
                .arg(count)
                .invoke::<(Value, Vec<i64>)>(c)
        })?;
        // An entry without an answer (a reply not as written here) is asked START
        // again when it is run.
        Ok(entry_list(&list)
            .into_iter()
            .enumerate()
            .map(|(i, (id, message))| (id, message, codes.get(i).map(|&c| TaskState::from_code(c))))
            .collect())
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

    /// Sends `items` in order (the SEND script), as many as can go now, in one round
    /// trip: all of them unless the output stream is full.
    pub fn send(
        &mut self,
        run: &str,
        consumer: &str,
        items: &[Outbound],
        cap: usize,
    ) -> Result<Sent, BrokerError> {
        if items.is_empty() {
            return Ok(Sent {
                done: 0,
                output_gone: false,
            });
        }
        // The same for every try of this step, and never the same for two steps of
        // this process, nor of another process with its consumer name (a worker
        // restarted in a container, with the same host name and pid).
        let token = format!(
            "{:x}.{}",
            *PROCESS_BEGAN,
            SENDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        self.send_step(run, consumer, items, cap, &token)
    }

    /// One step of [`send`](Broker::send) under `token`: a step with the consumer's
    /// last token is answered, not done again.
    pub(super) fn send_step(
        &mut self,
        run: &str,
        consumer: &str,
        items: &[Outbound],
        cap: usize,
        token: &str,
    ) -> Result<Sent, BrokerError> {
        let script = &*SEND_SCRIPT;
        let (done, gone) = self.call(|c| {
            let mut invocation = script.prepare_invoke();
            invocation
                .key(key(run, "output"))
                .key(run_key(run))
                .key(key(run, "done"))
                .key(key(run, "results"))
                .key(key(run, "tasks"))
                .key(key(run, "started"))
                .key(key(run, "replies"))
                .arg(cap)
                .arg(GROUP)
                .arg(consumer)
                .arg(token);
            for item in items {
                match item {
                    Outbound::Output(entry) => {
                        invocation.arg("o").arg(entry.fields.len() * 2);
                        for (name, value) in &entry.fields {
                            invocation.arg(name).arg(value.as_slice());
                        }
                    }
                    Outbound::Running(task) => {
                        invocation.arg("r").arg(task);
                    }
                    Outbound::Done(d) => {
                        invocation
                            .arg("c")
                            .arg(&d.task)
                            .arg(&d.id)
                            .arg(d.result.fields.len() * 2);
                        for (name, value) in &d.result.fields {
                            invocation.arg(name).arg(value.as_slice());
                        }
                    }
                }
            }
            invocation.invoke::<(usize, i64)>(c)
        })?;
        Ok(Sent {
            done,
            output_gone: gone == 1,
        })
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
