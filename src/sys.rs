//! The few system calls std does not offer: `poll`, `pidfd_open`, signalling a process
//! group, non-blocking pipes, the terminal's echo of control characters, reaping one
//! child by pid, the child-subreaper flag, the limit on open files. Each wrapper is
//! safe and returns `io::Result` (or a plain value where failure has an obvious default).
//!
//! They go through `rustix`, which has safe bindings for all of them but `getrusage`:
//! that one alone is still a hand-written libc call.

use rustix::event::{Nsecs, Secs, Timespec};
use rustix::process::{Pid, PidfdFlags};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

pub use rustix::event::{PollFd, PollFlags};
pub use rustix::process::Signal;
pub use rustix::termios::Termios;

/// Asks for a pipe of `size` bytes (Linux: `F_SETPIPE_SZ`, up to
/// `/proc/sys/fs/pipe-max-size`, 1 MiB by default). Kernel memory, not the runner's.
pub fn grow_pipe(fd: impl AsFd, size: usize) -> io::Result<()> {
    rustix::pipe::fcntl_setpipe_size(fd, size)?;
    Ok(())
}

pub fn set_nonblocking(fd: impl AsFd) -> io::Result<()> {
    let flags = rustix::fs::fcntl_getfl(&fd)?;
    rustix::fs::fcntl_setfl(&fd, flags | rustix::fs::OFlags::NONBLOCK)?;
    Ok(())
}

/// Opens `path` for reading as a task's stdin without ever waiting: a FIFO with no
/// writer would block `open` (and the thread doing it) until one came. The file is
/// opened non-blocking, then made blocking again for the task. A folder is refused.
pub fn open_stdin_file(path: &std::path::Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if file.metadata()?.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::IsADirectory,
            "it is a folder",
        ));
    }
    let flags = rustix::fs::fcntl_getfl(&file)?;
    rustix::fs::fcntl_setfl(&file, flags - rustix::fs::OFlags::NONBLOCK)?;
    Ok(file)
}

/// A file descriptor that becomes readable when the process exits (Linux ≥ 5.3).
/// `None` where the kernel has no pidfd; callers then check the child periodically.
pub fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    let pid = Pid::from_raw(i32::try_from(pid).ok()?)?;
    rustix::process::pidfd_open(pid, PidfdFlags::empty()).ok()
}

/// The group `pgid` as a `Pid`; `None` for 0 and 1 ("every process" and init), which we
/// never signal by accident.
fn group(pgid: u32) -> Option<Pid> {
    if pgid <= 1 {
        return None;
    }
    Pid::from_raw(i32::try_from(pgid).ok()?)
}

/// Sends `signal` to every process of the group `pgid`. A group that no longer exists is
/// not an error.
pub fn kill_group(pgid: u32, signal: Signal) {
    if let Some(pgid) = group(pgid) {
        let _ = rustix::process::kill_process_group(pgid, signal);
    }
}

/// Whether any process of the group `pgid` is still alive (or a zombie).
pub fn group_exists(pgid: u32) -> bool {
    // Signal 0 only checks that the group exists and may be signalled.
    group(pgid).is_some_and(|pgid| rustix::process::test_kill_process_group(pgid).is_ok())
}

/// Sends `signal` to the process `pid` alone (never 0 or 1).
pub fn kill_pid(pid: u32, signal: Signal) {
    if let Some(pid) = group(pid) {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

/// Reaps the child `pid` if it has ended, and only that child (never `waitpid(-1)`, which
/// would take the statuses of tasks from their threads). True once it is gone: reaped
/// now, or not a child of ours (any more).
pub fn reap(pid: u32) -> bool {
    let Some(pid) = group(pid) else { return true };
    match rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::NOHANG) {
        Ok(Some(_)) => true,
        Ok(None) => false,
        Err(rustix::io::Errno::INTR) => false,
        Err(_) => true,
    }
}

/// Makes this process the reaper of its orphaned descendants: a process whose parent
/// dies becomes our child instead of init's (`PR_SET_CHILD_SUBREAPER`).
pub fn become_subreaper() -> io::Result<()> {
    Ok(rustix::process::set_child_subreaper(Some(
        rustix::process::getpid(),
    ))?)
}

/// The soft and hard limits on open files (`None`: unlimited).
pub fn open_files_limit() -> (Option<u64>, Option<u64>) {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    (limit.current, limit.maximum)
}

/// Sets the soft limit on open files to `soft` (at most the hard limit).
pub fn set_open_files_limit(soft: u64) -> io::Result<()> {
    let (_, hard) = open_files_limit();
    let limit = rustix::process::Rlimit {
        current: Some(soft),
        maximum: hard,
    };
    Ok(rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        limit,
    )?)
}

/// How many file descriptors this process has open now.
pub fn open_files() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(3, |dir| dir.count().saturating_sub(1))
}

/// Waits for events on `fds` for at most `timeout_ms` (-1: no limit). EINTR is a
/// normal return with no events.
pub fn poll(fds: &mut [PollFd<'_>], timeout_ms: i32) -> io::Result<usize> {
    let timeout = (timeout_ms >= 0).then(|| Timespec {
        tv_sec: Secs::from(timeout_ms / 1000),
        tv_nsec: Nsecs::from(timeout_ms % 1000) * 1_000_000,
    });
    match rustix::event::poll(fds, timeout.as_ref()) {
        Ok(n) => Ok(n),
        Err(rustix::io::Errno::INTR) => Ok(0),
        Err(err) => Err(err.into()),
    }
}

pub fn pollfd(fd: BorrowedFd<'_>, events: PollFlags) -> PollFd<'_> {
    PollFd::from_borrowed_fd(fd, events)
}

/// A pipe whose both ends close on exec.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?)
}

/// Writes one byte to the pipe `fd` (non-blocking), to wake whoever polls its other end.
/// A full pipe is already readable, so a failed write needs nothing more.
pub fn poke(fd: impl AsFd) {
    let _ = rustix::io::write(fd, &[1u8]);
}

/// Reads the non-blocking pipe `fd` until it is empty: what [`poke`] wrote is gone.
pub fn drain(fd: impl AsFd) {
    let mut buffer = [0u8; 64];
    while matches!(rustix::io::read(&fd, &mut buffer), Ok(n) if n > 0) {}
}

/// The signals [`signal_name`] knows by name.
const NAMED: [(Signal, &str); 17] = [
    (Signal::HUP, "SIGHUP"),
    (Signal::INT, "SIGINT"),
    (Signal::QUIT, "SIGQUIT"),
    (Signal::ILL, "SIGILL"),
    (Signal::TRAP, "SIGTRAP"),
    (Signal::ABORT, "SIGABRT"),
    (Signal::BUS, "SIGBUS"),
    (Signal::FPE, "SIGFPE"),
    (Signal::KILL, "SIGKILL"),
    (Signal::USR1, "SIGUSR1"),
    (Signal::SEGV, "SIGSEGV"),
    (Signal::USR2, "SIGUSR2"),
    (Signal::PIPE, "SIGPIPE"),
    (Signal::ALARM, "SIGALRM"),
    (Signal::TERM, "SIGTERM"),
    (Signal::XCPU, "SIGXCPU"),
    (Signal::XFSZ, "SIGXFSZ"),
];

/// The conventional name of a signal ("SIGKILL"), or its number.
pub fn signal_name(signal: i32) -> String {
    match NAMED.iter().find(|(s, _)| s.as_raw() == signal) {
        Some((_, name)) => (*name).to_string(),
        None => format!("signal {signal}"),
    }
}

/// The number of the signal [`signal_name`] calls `name` ("SIGKILL", or "signal 42"):
/// a JSON report's signal read back.
pub fn signal_number(name: &str) -> Option<i32> {
    match NAMED.iter().find(|(_, n)| *n == name) {
        Some((signal, _)) => Some(signal.as_raw()),
        None => name.strip_prefix("signal ")?.parse().ok(),
    }
}

/// This machine's host name, for reports.
pub fn hostname() -> String {
    // On Linux, gethostname(2) is the node name of uname(2).
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// This process's peak resident memory so far, in KiB: `VmHWM`, which starts afresh at
/// exec (`ru_maxrss` would carry over the size of a parent that forked us).
pub fn peak_rss_kib() -> u64 {
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        let hwm = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok());
        if let Some(kib) = hwm {
            return kib;
        }
    }
    rusage(libc::RUSAGE_SELF).map_or(0, |u| u.ru_maxrss.max(0) as u64)
}

/// `getrusage`, which rustix does not wrap: the one libc call left here.
fn rusage(who: libc::c_int) -> Option<libc::rusage> {
    // SAFETY: getrusage fills the struct we pass; zeroed is a valid initial value.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        (libc::getrusage(who, &mut usage) == 0).then_some(usage)
    }
}

/// Turns off the echo of control characters (`^C`) on the terminal `fd`, so that typing
/// Ctrl-C does not shift the progress bars; returns what to restore.
pub fn echoctl_off(fd: impl AsFd) -> Option<Termios> {
    use rustix::termios::{tcgetattr, tcsetattr, LocalModes, OptionalActions};
    let saved = tcgetattr(&fd).ok()?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHOCTL);
    tcsetattr(&fd, OptionalActions::Now, &quiet).ok()?;
    Some(saved)
}

pub fn restore_terminal(fd: impl AsFd, saved: &Termios) {
    let _ = rustix::termios::tcsetattr(fd, rustix::termios::OptionalActions::Now, saved);
}

/// CPU time (user + system) of this process and of its reaped children, in seconds.
pub fn cpu_seconds() -> (f64, f64) {
    let read = |who| {
        rusage(who).map_or(0.0, |u| {
            let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
            secs(u.ru_utime) + secs(u.ru_stime)
        })
    };
    (read(libc::RUSAGE_SELF), read(libc::RUSAGE_CHILDREN))
}

/// The number of CPUs this process may use (the default pool size); 1 if unknown.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The memory the kernel says is available for new work (`MemAvailable` of
/// `/proc/meminfo`), in bytes; `None` where it cannot be read.
pub fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The one-minute load average (the first field of `/proc/loadavg`).
pub fn load_average() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_are_named_or_numbered() {
        assert_eq!(signal_name(libc::SIGKILL), "SIGKILL");
        assert_eq!(signal_name(libc::SIGALRM), "SIGALRM");
        assert_eq!(signal_name(libc::SIGABRT), "SIGABRT");
        assert_eq!(
            signal_name(libc::SIGCHLD),
            format!("signal {}", libc::SIGCHLD)
        );
        assert_eq!(signal_name(0), "signal 0");
    }

    #[test]
    fn the_first_groups_are_never_signalled() {
        assert!(group(0).is_none() && group(1).is_none());
        assert!(!group_exists(0) && !group_exists(1));
        assert!(group(u32::MAX).is_none());
    }

    #[test]
    fn an_empty_pipe_polls_idle_then_a_poke_makes_it_readable() {
        let (read, write) = pipe().unwrap();
        set_nonblocking(&write).unwrap();
        let mut fds = [pollfd(read.as_fd(), PollFlags::IN)];
        assert_eq!(poll(&mut fds, 0).unwrap(), 0);
        poke(&write);
        let mut fds = [pollfd(read.as_fd(), PollFlags::IN)];
        assert_eq!(poll(&mut fds, 1000).unwrap(), 1);
        assert!(fds[0].revents().contains(PollFlags::IN));
    }

    #[test]
    fn the_host_name_matches_the_kernel() {
        let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert_eq!(hostname(), name.trim_end());
    }
}
