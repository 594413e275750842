//! File descriptors: the runner needs a few per running task (pipes, a pidfd, log files,
//! spools). At start, [`fit_pool`] raises the soft limit on open files as far as the
//! pool needs (at most to the hard limit) and lowers the pool to what the limit allows,
//! with a note. A spawn that still runs out waits for another task to end
//! (`exec/process.rs`).
//!
//! The soft limit is raised only as far as needed, not to the hard limit: tasks inherit
//! it, and some programs still use `select` (which cannot see a descriptor past 1024)
//! or close every descriptor up to the limit when they start.

use crate::sys;
use std::io;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// The most descriptors one task holds: while spawning, three pipes (six ends); once
/// running, three pipe ends, a pidfd, two log files and two spools.
pub const PER_TASK: u64 = 8;

/// Kept for the runner itself: the terminal, the stop switch, signals, the watchdog,
/// reports, queue feeders, streaming consumers, the broker's connections; and grouped
/// output on its way to the terminal (at most `held::FLIGHT` files, and the file
/// `keep-order` output waits in).
pub const RESERVE: u64 = 32 + crate::held::FLIGHT as u64 + 1;

/// The pool that fits the limit on open files, after raising the soft limit as far as
/// `pool` tasks need; prints a note on stderr when the pool is lowered. Call it before
/// the terminal writer starts.
pub fn fit_pool(pool: usize) -> usize {
    let base = sys::open_files() as u64 + RESERVE;
    let need = base + PER_TASK * pool as u64;
    let (soft, hard) = sys::open_files_limit();
    let Some(soft) = soft else { return pool };
    let mut limit = soft;
    if soft < need {
        let target = hard.map_or(need, |hard| hard.min(need));
        if target > soft && sys::set_open_files_limit(target).is_ok() {
            limit = target;
        }
    }
    let fits = (limit.saturating_sub(base) / PER_TASK).max(1);
    if fits >= pool as u64 {
        return pool;
    }
    eprintln!(
        "[runner] note: the pool is lowered from {pool} to {fits}: the limit on open files is \
         {limit} (`ulimit -n`; hard limit {}) and each task needs up to {PER_TASK}; raise \
         the hard limit (`ulimit -Hn`) to run {pool} tasks at once",
        hard.map_or("unlimited".to_string(), |h| h.to_string())
    );
    fits as usize
}

/// Spawns `command`; out of file descriptors, waits for another task to end and free
/// some, and tries again (see [`Running`]), unless `stopping`.
pub fn spawn(command: &mut Command, stopping: &dyn Fn() -> bool) -> io::Result<Child> {
    let waited = Instant::now();
    loop {
        match command.spawn() {
            Err(e) if out_of(&e) && Running::wait_for_an_end(stopping, waited) => {}
            result => return result,
        }
    }
}

/// The error says the process or the system is out of file descriptors.
pub fn out_of(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// What to say when a spawn ran out of file descriptors for good.
pub fn message(e: &io::Error) -> String {
    if e.raw_os_error() == Some(libc::ENFILE) {
        return "the system is out of file descriptors (ENFILE)".to_string();
    }
    let limit = sys::open_files_limit()
        .0
        .map_or("unlimited".to_string(), |n| n.to_string());
    format!(
        "too many open files (the limit is {limit}, `ulimit -n`), and no other task was \
         there to end and free some; lower `pool` or raise the limit"
    )
}

/// How many attempts are spawning or running in this process (the one waiting too), and a wake-up when one ends: a spawn
/// that ran out of file descriptors waits for it rather than failing its task.
static RUNNING: AtomicUsize = AtomicUsize::new(0);
static WAITING: AtomicUsize = AtomicUsize::new(0);
static ENDED: (Mutex<()>, Condvar) = (Mutex::new(()), Condvar::new());

/// The longest a spawn waits for file descriptors before its attempt fails.
const FDS_WAIT: Duration = Duration::from_secs(60);

/// One running attempt, counted in [`RUNNING`] until dropped.
pub struct Running;

impl Running {
    pub fn start() -> Running {
        RUNNING.fetch_add(1, Ordering::SeqCst);
        Running
    }

    /// Waits (a little) for another attempt to end; false if there is none to wait
    /// for, the run is stopping, or the wait since `since` was too long.
    fn wait_for_an_end(stopping: &dyn Fn() -> bool, since: Instant) -> bool {
        if RUNNING.load(Ordering::SeqCst) <= 1 || stopping() || since.elapsed() > FDS_WAIT {
            return false;
        }
        WAITING.fetch_add(1, Ordering::SeqCst);
        let guard = ENDED.0.lock().unwrap_or_else(|e| e.into_inner());
        // A missed wake-up costs at most this timeout.
        let _ = ENDED.1.wait_timeout(guard, Duration::from_millis(50));
        WAITING.fetch_sub(1, Ordering::SeqCst);
        true
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.fetch_sub(1, Ordering::SeqCst);
        if WAITING.load(Ordering::SeqCst) > 0 {
            let _guard = ENDED.0.lock().unwrap_or_else(|e| e.into_inner());
            ENDED.1.notify_all();
        }
    }
}
