//! What the runner asks of Redis about a run's printed output, one typed method of
//! [`Broker`] each: a worker adding its tasks' output to the run's capped output stream
//! (`runner:ID:output`), the coordinator deleting what it has read (it reads the stream
//! with the results, `runs.rs`).
//!
//! The stream is bounded by the OUTPUT script: an entry is added only while the stream
//! holds fewer than the cap, so a worker whose coordinator reads slowly waits (and its
//! tasks with it, their pipes full) rather than growing Redis or dropping lines.

use super::wire::Message;
use super::{key, run_key, Broker, BrokerError};
use redis::Script;

/// Adds entries while the stream holds fewer than the cap; returns how many were added
/// (the first ones), or -1 when the run is over or Redis no longer knows it (nobody
/// would read them). KEYS: output, run hash. ARGV: cap, then per entry its number of
/// arguments and its field/value pairs.
const OUTPUT: &str = r"
local state = redis.call('HGET', KEYS[2], 'state')
if not state or state == 'done' then return -1 end
local cap = tonumber(ARGV[1])
local n = redis.call('XLEN', KEYS[1])
local i = 2
local added = 0
while i <= #ARGV and n < cap do
  local count = tonumber(ARGV[i])
  redis.call('XADD', KEYS[1], '*', unpack(ARGV, i + 1, i + count))
  i = i + count + 1
  n = n + 1
  added = added + 1
end
return added
";

/// What became of output entries a worker sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// The first N were added (fewer than given: the stream is full).
    Added(usize),
    /// The run is over, or Redis no longer knows it: nobody reads them.
    RunGone,
}

impl Broker {
    /// Adds output entries to the run's stream, as many as fit under `cap` (the OUTPUT
    /// script), in one round trip.
    pub fn send_output(
        &mut self,
        run: &str,
        entries: &[Message],
        cap: usize,
    ) -> Result<Sent, BrokerError> {
        let script = Script::new(OUTPUT);
        let added = self.call(|c| {
            let mut invocation = script.prepare_invoke();
            invocation
                .key(key(run, "output"))
                .key(run_key(run))
                .arg(cap);
            for entry in entries {
                invocation.arg(entry.fields.len() * 2);
                for (name, value) in &entry.fields {
                    invocation.arg(name).arg(value.as_slice());
                }
            }
            invocation.invoke::<i64>(c)
        })?;
        Ok(usize::try_from(added).map_or(Sent::RunGone, Sent::Added))
    }

    /// Deletes output entries the coordinator has read, making room for more.
    pub fn drop_output(&mut self, run: &str, ids: &[String]) -> Result<(), BrokerError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.call(|c| {
            redis::cmd("XDEL")
                .arg(key(run, "output"))
                .arg(ids)
                .query::<i64>(c)
        })
        .map(drop)
    }
}
