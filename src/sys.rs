//! The few system calls std does not offer: `poll`, `pidfd_open`, signalling a process
//! group, non-blocking pipes. Each wrapper is safe and returns `io::Result`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

pub fn set_nonblocking(fd: &impl AsRawFd) -> io::Result<()> {
    let fd = fd.as_raw_fd();
    // SAFETY: fcntl on a file descriptor the caller owns; no memory is passed.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A file descriptor that becomes readable when the process exits (Linux ≥ 5.3).
/// `None` where the kernel has no pidfd; callers then check the child periodically.
pub fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel just returned this descriptor to us; nobody else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Sends `signal` to every process of the group `pgid`. A group that no longer exists is
/// not an error.
pub fn kill_group(pgid: u32, signal: i32) {
    if pgid <= 1 {
        return; // Never signal "every process" or init by accident.
    }
    // SAFETY: kill with a negative pid signals a process group; no memory is passed.
    unsafe {
        libc::kill(-(pgid as libc::pid_t), signal);
    }
}

/// Whether any process of the group `pgid` is still alive (or a zombie).
pub fn group_exists(pgid: u32) -> bool {
    if pgid <= 1 {
        return false;
    }
    // SAFETY: signal 0 only checks that the group exists and may be signalled.
    unsafe { libc::kill(-(pgid as libc::pid_t), 0) == 0 }
}

/// Waits for events on `fds` for at most `timeout_ms` (-1: no limit). EINTR is a
/// normal return with no events.
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> io::Result<usize> {
    // SAFETY: `fds` is a valid, exclusively borrowed slice of pollfd for the call.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if n < 0 {
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(err);
    }
    Ok(n as usize)
}

pub fn pollfd(fd: RawFd, events: i16) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// A pipe whose both ends close on exec.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 writes two descriptors into the array we pass.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created for us.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The conventional name of a signal ("SIGKILL"), or its number.
pub fn signal_name(signal: i32) -> String {
    let name = match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        _ => return format!("signal {signal}"),
    };
    name.to_string()
}

/// This machine's host name, for reports.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into our buffer.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
        return "localhost".to_string();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
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
    // SAFETY: getrusage fills the struct we pass; zeroed is a valid initial value.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return 0;
        }
        usage.ru_maxrss.max(0) as u64
    }
}

/// Turns off the echo of control characters (`^C`) on the terminal `fd`, so that typing
/// Ctrl-C does not shift the progress bars; returns what to restore.
pub fn echoctl_off(fd: RawFd) -> Option<libc::termios> {
    // SAFETY: tcgetattr/tcsetattr read and write a termios struct we own.
    unsafe {
        let mut saved: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd, &mut saved) != 0 {
            return None;
        }
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHOCTL;
        if libc::tcsetattr(fd, libc::TCSANOW, &quiet) != 0 {
            return None;
        }
        Some(saved)
    }
}

pub fn restore_terminal(fd: RawFd, saved: &libc::termios) {
    // SAFETY: writes back the settings tcgetattr gave us.
    unsafe {
        libc::tcsetattr(fd, libc::TCSANOW, saved);
    }
}

/// CPU time (user + system) of this process and of its reaped children, in seconds.
pub fn cpu_seconds() -> (f64, f64) {
    let read = |who| {
        // SAFETY: getrusage fills the struct we pass; zeroed is a valid initial value.
        unsafe {
            let mut u: libc::rusage = std::mem::zeroed();
            if libc::getrusage(who, &mut u) != 0 {
                return 0.0;
            }
            let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
            secs(u.ru_utime) + secs(u.ru_stime)
        }
    };
    (read(libc::RUSAGE_SELF), read(libc::RUSAGE_CHILDREN))
}

/// The number of CPUs this process may use (the default pool size); 1 if unknown.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
