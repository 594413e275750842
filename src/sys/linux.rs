//! Linux: pidfds, the child subreaper, `PR_SET_DUMPABLE`, `F_SETPIPE_SZ`, `pipe2`,
//! hole punching with `fallocate`, and `/proc`. `RUNNER_PORTABLE=1` is applied by
//! `mod.rs` but for the peak memory, read here.

use super::{portable, ProcessInfo};
use rustix::process::{Pid, PidfdFlags};
use std::fs::File;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::OnceLock;

pub fn grow_pipe(fd: BorrowedFd<'_>, size: usize) -> io::Result<()> {
    rustix::pipe::fcntl_setpipe_size(fd, size)?;
    Ok(())
}

/// A pidfd (Linux ≥ 5.3).
pub fn exit_watch(pid: u32) -> Option<OwnedFd> {
    let pid = Pid::from_raw(i32::try_from(pid).ok()?)?;
    rustix::process::pidfd_open(pid, PidfdFlags::empty()).ok()
}

pub fn become_subreaper() -> io::Result<bool> {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))?;
    Ok(true)
}

/// Makes this process non-dumpable (`PR_SET_DUMPABLE` 0): its `/proc/PID` files
/// (`environ`, `cmdline`'s memory, `mem`) become root's, so another process of the same
/// user cannot read them. Failure leaves only the overwrite of the blocks to protect.
pub fn make_undumpable() {
    let _ = rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable);
}

pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?)
}

/// Gives the disk space of `len` bytes at `start` of `file` back (a hole that reads as
/// zeros; the size stays). Failure keeps the space until the file is emptied.
pub fn punch_hole(file: &File, start: u64, len: u64) {
    use rustix::fs::{fallocate, FallocateFlags};
    let flags = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
    let _ = fallocate(file, flags, start, len);
}

pub fn this_executable() -> io::Result<PathBuf> {
    Ok(PathBuf::from("/proc/self/exe"))
}

pub fn peak_rss_kib() -> u64 {
    if !portable() {
        if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
            let hwm = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok());
            if let Some(kib) = hwm {
                return kib;
            }
        }
    }
    super::max_rss()
}

pub fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The main thread's children (`/proc/self/task/PID/children`, read with one `pread`
/// in the common case). Empty where `/proc` does not say.
pub fn adopted_children() -> Vec<u32> {
    static CHILDREN: OnceLock<Option<File>> = OnceLock::new();
    let file = CHILDREN.get_or_init(|| {
        let pid = std::process::id();
        File::open(format!("/proc/{pid}/task/{pid}/children")).ok()
    });
    let Some(file) = file else { return Vec::new() };
    let mut text = Vec::with_capacity(64);
    let mut buf = [0u8; 4096];
    loop {
        match file.read_at(&mut buf, text.len() as u64) {
            Ok(0) | Err(_) => break,
            Ok(n) => text.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&text)
        .split_ascii_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// From `/proc/PID/stat`.
pub fn process_info(pid: u32) -> Option<ProcessInfo> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let name = text[open + 1..close].to_string();
    let mut fields = text[close + 1..].split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    let group = fields.nth(1)?.parse().ok()?;
    Some(ProcessInfo { state, group, name })
}

pub fn process_environ(pid: u32) -> Vec<u8> {
    std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default()
}

/// Fields 48–51 of `/proc/self/stat`: `arg_start`, `arg_end`, `env_start`, `env_end`.
pub fn argument_blocks() -> Option<((usize, usize), (usize, usize))> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces), from field 3 on.
    let fields: Vec<usize> = stat
        .rsplit_once(')')?
        .1
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let field = |n: usize| fields.get(n - 3).copied().filter(|v| *v != 0);
    Some(((field(48)?, field(49)?), (field(50)?, field(51)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_info_reads_the_state_and_group_of_a_process() {
        let info = process_info(std::process::id()).unwrap();
        assert!("RS".contains(info.state));
        assert_eq!(
            info.group,
            rustix::process::getpgrp().as_raw_nonzero().get() as u32
        );
    }

    #[test]
    fn the_host_name_matches_the_kernel() {
        let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert_eq!(super::super::hostname(), name.trim_end());
    }
}
