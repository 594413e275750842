//! Processes that left their task's process group (`setsid`, a daemon's double fork),
//! which a signal to the group no longer reaches.
//!
//! The runner is a child subreaper (`sys::become_subreaper`), so a task's descendant
//! whose parent died becomes a child of the runner — of its main thread, which spawns
//! no task — instead of init's. When an attempt ends (its group stopped), [`stop`]
//! reads the main thread's list of children, reaps the ones that ended (by pid, never
//! `waitpid(-1)`, which would take the statuses of tasks from their threads), and stops
//! those whose environment carries the task's marker (`RUNNER_RUN_ID`, `RUNNER_JOB`,
//! `RUNNER_INDEX`: the attempts of a task run one after another, so these name the
//! attempt): TERM to the process's own group, KILL after the grace period. A process
//! that left the task's group is named on the task's stderr; one that stayed in it is a
//! leftover, stopped as before, silently.
//!
//! The common case costs one `pread` of `/proc/self/task/PID/children` per attempt.
//! Where the runner is no subreaper (macOS, `RUNNER_PORTABLE=1`; docs/platforms.md),
//! nothing is adopted and this finds nothing.
//!
//! Not covered: a process that cleared its environment or cannot be read (not
//! dumpable) is reaped when it ends but not stopped; and a runner that is SIGKILLed
//! leaves its escaped processes to init (the watchdog knows only groups).

use crate::sys::{self, Signal};
use std::time::{Duration, Instant};

/// What identifies the processes of one task: `NAME=value` entries of its environment.
pub struct Marker {
    entries: Vec<Vec<u8>>,
}

const MARKER_VARS: [&str; 3] = ["RUNNER_RUN_ID", "RUNNER_JOB", "RUNNER_INDEX"];

impl Marker {
    /// The marker of a task whose environment adds `env`; empty (matches nothing) if
    /// one of the marker variables is missing.
    pub fn new(env: &[(String, String)]) -> Marker {
        let entries: Vec<Vec<u8>> = MARKER_VARS
            .iter()
            .filter_map(|var| {
                let (k, v) = env.iter().rev().find(|(k, _)| k == var)?;
                Some(format!("{k}={v}").into_bytes())
            })
            .collect();
        Marker {
            entries: if entries.len() == MARKER_VARS.len() {
                entries
            } else {
                Vec::new()
            },
        }
    }

    fn matches(&self, environ: &[u8]) -> bool {
        !self.entries.is_empty()
            && self
                .entries
                .iter()
                .all(|want| environ.split(|b| *b == 0).any(|e| e == want.as_slice()))
    }
}

/// What is stopped, and how: the task's group, the grace period, a kill switch.
pub struct Stop<'a> {
    pub marker: &'a Marker,
    pub task_group: u32,
    pub grace: Duration,
    /// The watchdog, which is a child of the main thread but no escapee.
    pub watchdog: Option<u32>,
    /// True once the run asks to kill at once.
    pub kill_now: &'a dyn Fn() -> bool,
}

/// Stops the task's processes that are children of the runner now, and those that
/// become its children as these end (a few rounds). Calls `say` for each one that
/// left the task's group.
pub fn stop(how: &Stop<'_>, say: &mut dyn FnMut(String)) {
    for _ in 0..4 {
        let found = of_task(how);
        if found.is_empty() {
            return;
        }
        for process in &found {
            if process.group != how.task_group {
                say(format!(
                    "a process left the task's group: pid {} ({}), still running; stopping it (TERM, then KILL after {})",
                    process.pid,
                    process.name,
                    crate::task::duration(how.grace)
                ));
            }
            process.signal(Signal::TERM);
            process.signal(Signal::CONT);
        }
        let deadline = Instant::now() + how.grace;
        let mut left: Vec<&Process> = found.iter().collect();
        while !left.is_empty() && Instant::now() < deadline && !(how.kill_now)() {
            std::thread::sleep(Duration::from_millis(10));
            left.retain(|p| !sys::reap(p.pid));
        }
        for process in &left {
            process.signal(Signal::KILL);
        }
        let deadline = Instant::now() + Duration::from_secs(1);
        while !left.is_empty() && Instant::now() < deadline {
            left.retain(|p| !sys::reap(p.pid));
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

struct Process {
    pid: u32,
    group: u32,
    name: String,
}

impl Process {
    /// A process that leads its own group is signalled with its group (its children
    /// went there too); the group id is safe, the leader being our unreaped child.
    fn signal(&self, signal: Signal) {
        if self.group == self.pid {
            sys::kill_group(self.pid, signal);
        } else {
            sys::kill_pid(self.pid, signal);
        }
    }
}

/// The children of the main thread that belong to the task; the ended ones, whoever's,
/// are reaped on the way.
fn of_task(how: &Stop<'_>) -> Vec<Process> {
    let mut found = Vec::new();
    for pid in sys::adopted_children() {
        if Some(pid) == how.watchdog {
            continue;
        }
        let Some(info) = sys::process_info(pid) else {
            continue;
        };
        if info.state == 'Z' {
            sys::reap(pid);
            continue;
        }
        if how.marker.matches(&sys::process_environ(pid)) {
            found.push(Process {
                pid,
                group: info.group,
                name: info.name,
            });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_marker_matches_whole_entries_of_the_environment() {
        let marker = Marker::new(&env(&[
            ("RUNNER_JOB", "build"),
            ("RUNNER_INDEX", "3"),
            ("RUNNER_RUN_ID", "r1"),
        ]));
        assert!(marker.matches(b"A=1\0RUNNER_RUN_ID=r1\0RUNNER_JOB=build\0RUNNER_INDEX=3\0"));
        assert!(!marker.matches(b"RUNNER_RUN_ID=r1\0RUNNER_JOB=build\0RUNNER_INDEX=31\0"));
        assert!(!marker.matches(b"RUNNER_RUN_ID=r1\0RUNNER_JOB=build\0"));
    }

    #[test]
    fn a_marker_without_its_variables_matches_nothing() {
        let marker = Marker::new(&env(&[("RUNNER_JOB", "build")]));
        assert!(!marker.matches(b"RUNNER_JOB=build\0"));
    }
}
