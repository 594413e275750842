//! The watchdog: a helper process that stops the tasks of a runner that died without
//! stopping them itself (SIGKILL from the OOM killer or a CI timeout, a crash).
//!
//! It is the runner's own binary, started again with a hidden first argument
//! ([`ARG`]) and the grace period, in a process group of its own: a kill of the
//! runner's whole group (a CI timeout's `kill -KILL -PGID`, Ctrl-C in a terminal) does
//! not reach it. Its stdin is the read end of a pipe whose only write end the runner
//! holds; the runner writes a 5-byte record as each task's process group starts (`+`)
//! and ends (`-`), small enough that concurrent writes never interleave. When the pipe
//! reads end-of-file — the runner is gone, however it went — the watchdog sends TERM to
//! every group still listed, KILL after the grace period, and exits. A runner that
//! ended normally lists no group, so its watchdog just exits.
//!
//! It reads every 20 ms rather than on every record, so that a run of thousands of
//! tasks a second wakes it 50 times a second, not thousands.
//!
//! Not covered: processes that left their task's group (`setsid`) while the runner was
//! killed — the runner stops those itself when their task ends (`escapees.rs`), and
//! the watchdog knows only groups.

use crate::error::{Error, Outcome};
use crate::sys::{self, Signal};
use std::collections::HashSet;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The hidden first argument that makes the binary a watchdog.
pub const ARG: &str = "__runner-watchdog";

const RECORD: usize = 5;

/// The runner's side: the write end of the pipe, and the watchdog's pid.
pub struct Watchdog {
    pipe: OwnedFd,
    pid: u32,
}

impl Watchdog {
    /// Starts the watchdog of this runner, which stops what is listed, with `grace`
    /// between TERM and KILL, once this process is gone.
    pub fn start(grace: Duration) -> std::io::Result<Watchdog> {
        let (read, write) = sys::pipe()?;
        // A watchdog that stalls must not stall the tasks: a full pipe drops the record.
        sys::set_nonblocking(&write)?;
        let child = Command::new(sys::this_executable()?)
            .arg(ARG)
            .arg(grace.as_millis().to_string())
            .stdin(Stdio::from(read))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()?;
        Ok(Watchdog {
            pipe: write,
            pid: child.id(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The group `pgid` (a task's) is to be stopped if the runner dies.
    pub fn watch(&self, pgid: u32) {
        self.send(b'+', pgid);
    }

    /// The group `pgid` is gone: forget it.
    pub fn forget(&self, pgid: u32) {
        self.send(b'-', pgid);
    }

    fn send(&self, op: u8, pgid: u32) {
        let mut record = [op; RECORD];
        record[1..].copy_from_slice(&pgid.to_le_bytes());
        // Under PIPE_BUF bytes: written whole or not at all. A watchdog that is gone
        // (EPIPE) or stalled (EAGAIN) can do nothing with it anyway.
        let _ = rustix::io::write(&self.pipe, &record);
    }
}

/// `runner __runner-watchdog GRACE_MS`: reads records from stdin until end-of-file,
/// then stops every group still listed.
pub fn serve(args: &[std::ffi::OsString]) -> Result<Outcome, Error> {
    let grace = args
        .first()
        .and_then(|a| a.to_str())
        .and_then(|a| a.parse::<u64>().ok())
        .map_or(Duration::from_secs(5), Duration::from_millis);
    let groups = listen(std::io::stdin().lock());
    stop(&groups, grace);
    Ok(Outcome::Success)
}

/// Keeps the list of groups until the pipe ends.
fn listen(mut input: impl std::io::Read) -> HashSet<u32> {
    let mut groups = HashSet::new();
    let mut buf = [0u8; RECORD * 800];
    let mut have = 0;
    loop {
        match input.read(&mut buf[have..]) {
            Ok(0) => return groups,
            Ok(n) => have += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return groups,
        }
        let whole = have - have % RECORD;
        for record in buf[..whole].chunks_exact(RECORD) {
            let pgid = u32::from_le_bytes([record[1], record[2], record[3], record[4]]);
            match record[0] {
                b'+' => groups.insert(pgid),
                _ => groups.remove(&pgid),
            };
        }
        buf.copy_within(whole..have, 0);
        have -= whole;
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// TERM (and CONT) to every group, KILL after `grace` to those still there.
fn stop(groups: &HashSet<u32>, grace: Duration) {
    for &pgid in groups {
        sys::kill_group(pgid, Signal::TERM);
        sys::kill_group(pgid, Signal::CONT);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && groups.iter().any(|&g| sys::group_exists(g)) {
        std::thread::sleep(Duration::from_millis(20));
    }
    for &pgid in groups {
        sys::kill_group(pgid, Signal::KILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(op: u8, pgid: u32) -> Vec<u8> {
        let mut r = vec![op];
        r.extend_from_slice(&pgid.to_le_bytes());
        r
    }

    #[test]
    fn groups_that_ended_are_forgotten() {
        let mut input = Vec::new();
        for (op, pgid) in [(b'+', 10), (b'+', 70_000), (b'+', 12), (b'-', 10)] {
            input.extend(record(op, pgid));
        }
        let groups = listen(&input[..]);
        assert_eq!(groups, HashSet::from([70_000, 12]));
    }
}
