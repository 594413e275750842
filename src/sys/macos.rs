//! macOS: a child's exit watched with kqueue (`EVFILT_PROC`), `pipe` then
//! `FD_CLOEXEC`, hole punching with `F_PUNCHHOLE`, the executable from
//! `std::env::current_exe` (`_NSGetExecutablePath`). No child subreaper, no
//! `PR_SET_DUMPABLE`, no `/proc`: what the runner does instead is in docs/platforms.md.

use super::ProcessInfo;
use rustix::event::kqueue::{kevent, kqueue, Event, EventFilter, EventFlags, ProcessEvents};
use rustix::process::Pid;
use std::fs::File;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

/// Nothing to ask: macOS pipes grow by themselves (up to 64 KiB) and have no
/// `F_SETPIPE_SZ`.
pub fn grow_pipe(_fd: BorrowedFd<'_>, _size: usize) -> io::Result<()> {
    Ok(())
}

/// A kqueue watching the process `pid` for its exit (`EVFILT_PROC`, `NOTE_EXIT`): the
/// kqueue's descriptor polls readable once the process exited. `None` if the kqueue
/// cannot be made or the process already exited (`ESRCH`); callers then check the
/// child periodically.
pub fn exit_watch(pid: u32) -> Option<OwnedFd> {
    let pid = Pid::from_raw(i32::try_from(pid).ok()?)?;
    let queue = kqueue().ok()?;
    let change = Event::new(
        EventFilter::Proc {
            pid,
            flags: ProcessEvents::EXIT,
        },
        EventFlags::ADD,
        std::ptr::null_mut(),
    );
    let mut none: [MaybeUninit<Event>; 0] = [];
    // SAFETY: the event names a process, not a file descriptor, so no descriptor has
    // to outlive the kqueue.
    unsafe { kevent(&queue, &[change], &mut none[..], None) }.ok()?;
    Some(queue)
}

/// macOS has no child subreaper: an orphan goes to launchd.
pub fn become_subreaper() -> io::Result<bool> {
    Ok(false)
}

/// macOS has no `PR_SET_DUMPABLE`; another process of the same user cannot read the
/// runner's environment there anyway (`KERN_PROCARGS2` shows it to its owner and root).
pub fn make_undumpable() {}

pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    super::pipe_then_cloexec()
}

/// Gives the disk space of `len` bytes at `start` of `file` back (`F_PUNCHHOLE`, APFS;
/// a file system without it keeps the space until the file is emptied).
pub fn punch_hole(file: &File, start: u64, len: u64) {
    let (Ok(offset), Ok(length)) = (libc::off_t::try_from(start), libc::off_t::try_from(len))
    else {
        return;
    };
    let hole = libc::fpunchhole_t {
        fp_flags: 0,
        reserved: 0,
        fp_offset: offset,
        fp_length: length,
    };
    // SAFETY: F_PUNCHHOLE reads the fpunchhole_t we pass, which outlives the call.
    let _ = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_PUNCHHOLE, &hole) };
}

pub fn this_executable() -> io::Result<PathBuf> {
    std::env::current_exe()
}

/// `ru_maxrss`, which macOS counts in bytes.
pub fn peak_rss_kib() -> u64 {
    super::max_rss() / 1024
}

/// macOS has no figure like Linux's `MemAvailable`.
pub fn mem_available() -> Option<u64> {
    None
}

/// No subreaper, so no adopted children to list.
pub fn adopted_children() -> Vec<u32> {
    Vec::new()
}

pub fn process_info(_pid: u32) -> Option<ProcessInfo> {
    None
}

pub fn process_environ(_pid: u32) -> Vec<u8> {
    Vec::new()
}

/// macOS does not say where the blocks are; they are not overwritten there.
pub fn argument_blocks() -> Option<((usize, usize), (usize, usize))> {
    None
}
