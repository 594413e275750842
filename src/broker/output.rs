//! What the coordinator asks of Redis about a run's printed output: deleting what it
//! has read of the run's capped output stream (`runner:ID:output`), making room for
//! more. Workers add to it with the SEND script (`batch.rs`), only while it holds fewer
//! entries than the cap, so a worker whose coordinator reads slowly waits (and its tasks
//! with it, their pipes full) rather than growing Redis or dropping lines. The
//! coordinator reads it with the results (`runs.rs`).

use super::{key, Broker, BrokerError};

impl Broker {
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
