//! The run-wide stop switch every running task listens to: "stop" (TERM to each task's
//! process group, then KILL after the grace period) and "kill" (KILL at once).
//!
//! It is a level plus a pipe that is written once per escalation and never read: a
//! readable pipe wakes every task's `poll` at once, however many there are.
//!
//! A run's control also holds what outlives a stop: the watchdog, which stops the
//! tasks if the runner dies without doing so (`watchdog.rs`), and the runner's role as
//! the reaper of its orphaned descendants (`escapees.rs`).

use crate::sys;
use crate::watchdog::Watchdog;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Run = 0,
    Stop = 1,
    Kill = 2,
}

pub struct Control {
    level: AtomicU8,
    read: OwnedFd,
    write: OwnedFd,
    pub grace: Duration,
    watchdog: Option<Watchdog>,
}

impl Control {
    pub fn new(grace: Duration) -> std::io::Result<Control> {
        let (read, write) = sys::pipe()?;
        sys::set_nonblocking(&write)?;
        // Read only by `resume`, which must not block.
        sys::set_nonblocking(&read)?;
        Ok(Control {
            level: AtomicU8::new(Level::Run as u8),
            read,
            write,
            grace,
            watchdog: None,
        })
    }

    /// The control of a run: with a watchdog, and this process made the reaper of its
    /// orphaned descendants. Either failing is said on stderr (the terminal writer has
    /// not started yet) and the run goes on without it.
    pub fn start(grace: Duration) -> std::io::Result<Control> {
        let mut control = Control::new(grace)?;
        // Where there is none (macOS, RUNNER_PORTABLE=1), nothing to say: docs/platforms.md.
        if let Err(e) = sys::become_subreaper() {
            eprintln!(
                "[runner] warning: cannot become the reaper of orphaned processes ({e}): \
                 processes that leave their task's group will not be stopped"
            );
        }
        match Watchdog::start(grace) {
            Ok(watchdog) => control.watchdog = Some(watchdog),
            Err(e) => eprintln!(
                "[runner] warning: cannot start the watchdog ({e}): tasks would outlive \
                 a runner killed with SIGKILL"
            ),
        }
        Ok(control)
    }

    /// A task's process group started: the watchdog stops it if the runner dies.
    pub fn started(&self, pgid: u32) {
        if let Some(watchdog) = &self.watchdog {
            watchdog.watch(pgid);
        }
    }

    /// A task's process group is gone.
    pub fn ended(&self, pgid: u32) {
        if let Some(watchdog) = &self.watchdog {
            watchdog.forget(pgid);
        }
    }

    pub fn watchdog_pid(&self) -> Option<u32> {
        self.watchdog.as_ref().map(Watchdog::pid)
    }

    pub fn level(&self) -> Level {
        match self.level.load(Ordering::SeqCst) {
            0 => Level::Run,
            1 => Level::Stop,
            _ => Level::Kill,
        }
    }

    pub fn stop(&self) {
        self.raise(Level::Stop);
    }

    pub fn kill(&self) {
        self.raise(Level::Kill);
    }

    /// Back to running, after fail-fast stopped every task (none runs now): the jobs
    /// that run after a stop (`when`) start. The pipe is emptied, so that their `poll`
    /// loops do not wake at once.
    pub fn resume(&self) {
        sys::drain(&self.read);
        self.level.store(Level::Run as u8, Ordering::SeqCst);
    }

    fn raise(&self, level: Level) {
        if self.level.fetch_max(level as u8, Ordering::SeqCst) < level as u8 {
            sys::poke(&self.write);
        }
    }

    /// Readable once anything was raised.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }

    /// Sleeps for `duration`, or less if a stop is raised. True if it slept in full.
    /// (A worker's retry delays; a local run's tasks wait for theirs in the scheduler.)
    #[cfg_attr(not(feature = "distributed"), allow(dead_code))]
    pub fn sleep(&self, duration: Duration) -> bool {
        let deadline = std::time::Instant::now() + duration;
        loop {
            if self.level() != Level::Run {
                return false;
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return true;
            }
            let mut fds = [sys::pollfd(self.fd(), sys::PollFlags::IN)];
            let ms = (deadline - now).as_millis().min(i32::MAX as u128) as i32;
            let _ = sys::poll(&mut fds, ms.max(1));
        }
    }
}
