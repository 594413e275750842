//! The few system calls std does not offer: `poll`, watching a child's exit, signalling a
//! process group, non-blocking pipes, the terminal's echo of control characters, reaping
//! one child by pid, the child-subreaper flag, the limit on open files. Each wrapper is
//! safe and returns `io::Result` (or a plain value where failure has an obvious default).
//!
//! The one place that knows the platform: what is the same on Linux and macOS is here,
//! what differs is `linux.rs` and `macos.rs`, each with the same functions (the table
//! of differences is docs/platforms.md). No other module has a `cfg(target_os)`.
//!
//! `RUNNER_PORTABLE=1`, read once ([`portable`]), makes Linux take the paths macOS
//! takes where they are not macOS-only: no pidfd (a child's exit found by polling
//! `waitpid`), no subreaper (so no escaped processes found), no `/proc` for the
//! executable, the open-file count, the peak memory; `pipe` then `FD_CLOEXEC`. The
//! integration suite runs once through them (scripts/test).
//!
//! They go through `rustix`, which has safe bindings for all of them but `getrusage`,
//! `getloadavg` and `pthread_sigmask`: those are hand-written libc calls.

use rustix::event::{Nsecs, Secs, Timespec};
use rustix::process::Pid;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux as platform;
#[cfg(target_os = "macos")]
mod macos;
#[cfg(target_os = "macos")]
use macos as platform;
#[cfg(not(any(target_os = "linux", target_os = "macos")))]
compile_error!("runner runs on Linux and macOS only (see docs/platforms.md)");

pub use platform::{make_undumpable, punch_hole};

/// Whether `RUNNER_PORTABLE=1` asks for the portable paths (read once, at first use).
pub fn portable() -> bool {
    static PORTABLE: OnceLock<bool> = OnceLock::new();
    *PORTABLE.get_or_init(|| std::env::var_os("RUNNER_PORTABLE").is_some_and(|v| v == "1"))
}

/// A file descriptor that becomes readable when the process `pid` exits (Linux: a
/// pidfd, ≥ 5.3; macOS: a kqueue watching it for `EVFILT_PROC`/`NOTE_EXIT`). `None`
/// where the kernel has none, the process already exited, or under
/// `RUNNER_PORTABLE=1`; callers then check the child periodically.
pub fn exit_watch(pid: u32) -> Option<OwnedFd> {
    if portable() {
        return None;
    }
    platform::exit_watch(pid)
}

/// The runner's own executable, to start it again (the watchdog). Linux:
/// `/proc/self/exe`, which stays this very file even if its path was replaced or
/// removed since; macOS and `RUNNER_PORTABLE=1`: the path `std::env::current_exe`
/// gives.
pub fn this_executable() -> io::Result<std::path::PathBuf> {
    if portable() {
        return std::env::current_exe();
    }
    platform::this_executable()
}

pub use rustix::event::{PollFd, PollFlags};
pub use rustix::process::Signal;
pub use rustix::termios::Termios;

/// Asks for a pipe of `size` bytes (Linux: `F_SETPIPE_SZ`, up to
/// `/proc/sys/fs/pipe-max-size`, 1 MiB by default; macOS: nothing, its pipes grow by
/// themselves up to 64 KiB). Kernel memory, not the runner's.
pub fn grow_pipe(fd: impl AsFd, size: usize) -> io::Result<()> {
    platform::grow_pipe(fd.as_fd(), size)
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

static SUBREAPER: AtomicBool = AtomicBool::new(false);

/// Makes this process the reaper of its orphaned descendants: a process whose parent
/// dies becomes our child instead of init's (Linux: `PR_SET_CHILD_SUBREAPER`). False
/// where the platform has none (macOS, or `RUNNER_PORTABLE=1`).
pub fn become_subreaper() -> io::Result<bool> {
    let done = !portable() && platform::become_subreaper()?;
    SUBREAPER.store(done, Ordering::Relaxed);
    Ok(done)
}

/// Whether [`become_subreaper`] made this process the reaper of its orphans.
pub fn is_subreaper() -> bool {
    SUBREAPER.load(Ordering::Relaxed)
}

/// The pids of this process's children that its main thread adopted as their reaper
/// (and the children it spawned itself); empty where the platform cannot say or this
/// process is no subreaper.
pub fn adopted_children() -> Vec<u32> {
    if !is_subreaper() {
        return Vec::new();
    }
    platform::adopted_children()
}

/// What a process is: its state letter (`Z` a zombie), its process group and its name.
pub struct ProcessInfo {
    pub state: char,
    pub group: u32,
    pub name: String,
}

/// The state, group and name of the process `pid` (Linux: `/proc/PID/stat`).
pub fn process_info(pid: u32) -> Option<ProcessInfo> {
    platform::process_info(pid)
}

/// The environment block of the process `pid`, `NAME=value` entries separated by NULs
/// (Linux: `/proc/PID/environ`); empty where it cannot be read.
pub fn process_environ(pid: u32) -> Vec<u8> {
    platform::process_environ(pid)
}

/// Where this process's argument and environment blocks are in its memory, as
/// `(start, end)` addresses (Linux: fields 48–51 of `/proc/self/stat`); `None` where
/// the platform does not say (macOS).
pub fn argument_blocks() -> Option<((usize, usize), (usize, usize))> {
    platform::argument_blocks()
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

/// How many file descriptors this process has open now: the entries of `/dev/fd`
/// (Linux and macOS alike), less the one reading it.
pub fn open_files() -> usize {
    std::fs::read_dir("/dev/fd").map_or(3, |dir| dir.count().saturating_sub(1))
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

/// A pipe whose both ends close on exec (Linux: `pipe2`; macOS: `pipe`, then
/// `FD_CLOEXEC` on each end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    if portable() {
        return pipe_then_cloexec();
    }
    platform::pipe()
}

/// `pipe`, then `FD_CLOEXEC` on each end: for a platform without `pipe2`. A process
/// spawned by another thread between the two calls could inherit the ends; the runner's
/// pipes are made before its tasks start or by the thread that spawns with them.
fn pipe_then_cloexec() -> io::Result<(OwnedFd, OwnedFd)> {
    let (read, write) = rustix::pipe::pipe()?;
    for end in [&read, &write] {
        rustix::io::fcntl_setfd(end, rustix::io::FdFlags::CLOEXEC)?;
    }
    Ok((read, write))
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
    // On Linux and macOS alike, gethostname(3) is the node name of uname(3).
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// This process's peak resident memory so far, in KiB. Linux: `VmHWM`, which starts
/// afresh at exec (`ru_maxrss` would carry over the size of a parent that forked us);
/// macOS: `ru_maxrss`, which it counts in bytes.
pub fn peak_rss_kib() -> u64 {
    platform::peak_rss_kib()
}

/// `ru_maxrss` of this process, as the platform counts it (KiB on Linux, bytes on macOS).
fn max_rss() -> u64 {
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

/// Blocks SIGCHLD in the calling thread, and so in every thread it starts afterwards;
/// called first thing, before any thread starts. The runner never handles SIGCHLD (a
/// child's exit is watched with a pidfd, or `waitpid`), but a SIGCHLD delivered to a
/// thread blocked reading a socket that has a read timeout (every Redis connection)
/// makes that read fail with EINTR even though the signal is ignored: with thousands of
/// children a second it happened to a worker's XREADGROUP every few hundred tasks, and
/// the entries that read took were left unseen until their lease ran out. Blocked in
/// every thread, the signal stays pending and interrupts nothing. Children start with
/// an empty signal mask (std's spawn resets it).
pub fn block_child_signal() {
    // SAFETY: the set is initialised by sigemptyset before it is read; the old mask is
    // not asked for (null).
    unsafe {
        let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        libc::sigemptyset(set.as_mut_ptr());
        libc::sigaddset(set.as_mut_ptr(), libc::SIGCHLD);
        libc::pthread_sigmask(libc::SIG_BLOCK, set.as_ptr(), std::ptr::null_mut());
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

/// The memory the kernel says is available for new work, in bytes (Linux:
/// `MemAvailable` of `/proc/meminfo`); `None` where it cannot be read (macOS has no such
/// figure: `--memfree` then never closes).
pub fn mem_available() -> Option<u64> {
    platform::mem_available()
}

/// The one-minute load average (`getloadavg`, on Linux the first field of
/// `/proc/loadavg`).
pub fn load_average() -> Option<f64> {
    let mut loads = [0f64; 1];
    // SAFETY: getloadavg writes at most `nelem` (1) doubles into the array we pass.
    let n = unsafe { libc::getloadavg(loads.as_mut_ptr(), 1) };
    (n == 1).then_some(loads[0])
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
    fn the_host_name_is_what_hostname_prints() {
        let out = std::process::Command::new("hostname").output().unwrap();
        assert_eq!(hostname(), String::from_utf8_lossy(&out.stdout).trim_end());
    }

    #[test]
    fn the_open_files_are_counted() {
        let before = open_files();
        let (_read, _write) = pipe().unwrap();
        assert_eq!(open_files(), before + 2);
    }

    #[test]
    fn both_ends_of_a_pipe_close_on_exec() {
        for (read, write) in [pipe().unwrap(), pipe_then_cloexec().unwrap()] {
            for end in [&read, &write] {
                let flags = rustix::io::fcntl_getfd(end).unwrap();
                assert!(flags.contains(rustix::io::FdFlags::CLOEXEC));
            }
        }
    }

    #[test]
    fn an_exit_watch_is_readable_once_the_child_exits() {
        let mut child = std::process::Command::new("sleep")
            .arg("0.2")
            .spawn()
            .unwrap();
        let Some(watch) = exit_watch(child.id()) else {
            assert!(portable(), "no exit watch on this platform");
            child.wait().unwrap();
            return;
        };
        let mut fds = [pollfd(watch.as_fd(), PollFlags::IN)];
        assert_eq!(poll(&mut fds, 0).unwrap(), 0, "readable before the exit");
        let mut fds = [pollfd(watch.as_fd(), PollFlags::IN)];
        assert_eq!(poll(&mut fds, 10_000).unwrap(), 1);
        assert!(child.try_wait().unwrap().is_some());
    }

    #[test]
    fn the_load_average_is_read() {
        assert!(load_average().is_some_and(|l| l >= 0.0));
    }

    #[test]
    fn this_process_has_a_peak_memory() {
        assert!(peak_rss_kib() > 100, "{}", peak_rss_kib());
    }

    #[test]
    fn the_executable_is_this_test_binary() {
        let exe = this_executable().unwrap();
        assert_eq!(
            exe.canonicalize().unwrap(),
            std::env::current_exe().unwrap().canonicalize().unwrap()
        );
    }
}
