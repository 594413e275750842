//! A task as every layer sees it: the record of what it did ([`TaskRecord`], its
//! [`Status`] and [`End`]), the [`Event`]s it sends to the terminal writer while it runs,
//! and the few words and numbers that the display, the reports and the broker all print
//! about it (labels, ends, durations). Owns no behaviour; depends on nothing but the
//! job-file model and `sys`'s signal names.

use crate::jobfile::Job;
use crate::state::decision::TaskId;
use crate::sys;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How an attempt ended.
#[cfg_attr(not(feature = "distributed"), allow(dead_code))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum End {
    Exited(i32),
    Signaled(i32),
    TimedOut,
    /// It could not start; the message names the program.
    SpawnFailed {
        message: String,
        retryable: bool,
    },
    /// It printed a line past the limit (see `exec::sink`): it was stopped.
    OutputRefused {
        message: String,
    },
    /// A bug in the runner (a panic) ended it; its processes were killed and reaped.
    Internal {
        message: String,
    },
    /// Distributed runs: delivered this many times to workers that never reported back.
    Lost {
        deliveries: u32,
    },
    /// A service not ready within its `ready_timeout`: it was stopped. The message
    /// names the check and its last answer.
    NotReady {
        message: String,
    },
}

/// What a task came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    Succeeded,
    Failed,
    /// Never started: a job it needs failed, or the run stopped first.
    Skipped,
    /// Not run: it succeeded in the run this one resumes (`--resume`). Counts as a
    /// success.
    DoneEarlier,
    /// Not run: its sources and outputs are as its last success left them. Counts as a
    /// success.
    UpToDate,
    /// Not run: `--changed-since REF` and no source of it changed since REF. Counts as
    /// a success.
    Unchanged,
    /// Not run: restored from the results cache (`--cache`). Counts as a success.
    Cached,
}

impl Status {
    /// A success for `needs`: it ran and succeeded, or it did not need to run.
    pub fn is_success(self) -> bool {
        !matches!(self, Status::Failed | Status::Skipped)
    }
}

/// What a task came to, as the summary and the reports tell it: its [`Status`], with a
/// failure that was allowed and a task stopped by the run told apart from a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    /// Failed by itself: it fails the run.
    Failed,
    /// Failed in a job with `allow_failure`: reported, but the run goes on green.
    AllowedFailure,
    /// Stopped by the run (Ctrl-C, SIGTERM, fail-fast) before it could end by itself.
    Stopped,
    /// Never started.
    Skipped,
    /// Not run again: it succeeded in the run this one resumes.
    DoneEarlier,
    /// Not run: up to date.
    UpToDate,
    /// Not run: no source changed since `--changed-since REF`.
    Unchanged,
    /// Not run: restored from the results cache.
    Cached,
}

impl Outcome {
    /// The words for it, the same in every report that names it.
    pub fn words(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::AllowedFailure => "failed (allowed)",
            Outcome::Stopped => "stopped",
            Outcome::Skipped => "skipped",
            Outcome::DoneEarlier => "done earlier",
            Outcome::UpToDate => "up to date",
            Outcome::Unchanged => "unchanged",
            Outcome::Cached => "cached",
        }
    }
}

/// One task, as reported.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskRecord {
    pub job: usize,
    pub index: u64,
    pub item: String,
    pub slot: usize,
    pub host: String,
    pub status: Status,
    /// The last attempt's end; `None` when skipped.
    pub end: Option<End>,
    pub pid: Option<u32>,
    pub attempts: u32,
    pub started: Option<SystemTime>,
    pub duration: Duration,
    /// Stopped by the run (Ctrl-C, SIGTERM, fail-fast) rather than by itself.
    pub stopped: bool,
    pub allowed_failure: bool,
    pub stderr_tail: Vec<String>,
    pub tail_cut: bool,
    /// The last lines of stdout, shown for a failed task that printed nothing on stderr.
    pub stdout_tail: Vec<String>,
    /// On a worker: the stdout lines bound for the job's queue, sent with the result.
    #[serde(skip)]
    pub queue_lines: Vec<u8>,
    pub stdout_log: Option<PathBuf>,
    pub stderr_log: Option<PathBuf>,
    /// What the task is (its identity) and why it ran, when the run knows (a worker's
    /// own records do not).
    pub id: Option<TaskId>,
    /// Why it ran or did not, in words (`never ran`, `done earlier`, …).
    pub reason: String,
    /// A task of a job with `sources` that succeeded: its outputs, hashed where it ran.
    #[serde(skip)]
    pub outputs: Option<crate::state::uptodate::Outputs>,
    /// Each attempt's process, in order (at most `retries` + 1: 1,001). Empty for a
    /// task that never had a process, and for a worker's task whose result did not
    /// list them (see [`TaskRecord::each_try`]).
    #[serde(default)]
    pub tries: Vec<Try>,
    /// A task a worker ran: that worker (`host:pid`), as the trace names it.
    #[serde(default)]
    pub worker: Option<String>,
    /// The labels of that worker (`runner worker --label`), as it reported them.
    #[serde(default)]
    pub worker_labels: Vec<String>,
    /// How long it could have started but for a resource or a rate (its attempts'
    /// waits added up).
    #[serde(default)]
    pub waited: Duration,
    /// A service's task: its readiness check, when it was ready, and whether it was
    /// released (stopped because nothing needing it was left: a success).
    #[serde(default)]
    pub service: Option<ServiceLife>,
}

/// What became of a service's task, for the summary and the reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceLife {
    /// The readiness check in words (`tcp 127.0.0.1:6379`); `None`: ready once started.
    pub check: Option<String>,
    /// When it became ready, and how long after its process started.
    pub ready_at: Option<SystemTime>,
    pub ready_after: Option<Duration>,
    /// Stopped because nothing needing it was left.
    pub released: bool,
    /// Why it failed as a service (not ready in time, or ended before its release).
    pub problem: Option<String>,
}

/// One attempt of a task: when its process started, how long it ran, how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Try {
    pub started: SystemTime,
    pub duration: Duration,
    pub pid: Option<u32>,
    pub end: End,
}

impl TaskRecord {
    /// A task that has not run (yet): no attempts, no end.
    pub fn new(
        job: usize,
        index: u64,
        item: String,
        slot: usize,
        host: &str,
        allowed_failure: bool,
    ) -> TaskRecord {
        TaskRecord {
            job,
            index,
            item,
            slot,
            host: host.to_string(),
            status: Status::Skipped,
            end: None,
            pid: None,
            attempts: 0,
            started: None,
            duration: Duration::ZERO,
            stopped: false,
            allowed_failure,
            stderr_tail: Vec::new(),
            tail_cut: false,
            stdout_tail: Vec::new(),
            queue_lines: Vec::new(),
            stdout_log: None,
            stderr_log: None,
            id: None,
            reason: String::new(),
            outputs: None,
            tries: Vec::new(),
            worker: None,
            worker_labels: Vec::new(),
            waited: Duration::ZERO,
            service: None,
        }
    }

    /// Where it ran: the worker (`host:pid`) for a worker's task, else its host. Two
    /// workers on one machine are two places, each with its own slots.
    pub fn ran_on(&self) -> &str {
        self.worker.as_deref().unwrap_or(&self.host)
    }

    /// Its last line of output worth quoting: the last non-blank line of its stderr,
    /// else of its stdout (a producer keeps no stdout tail: those lines are items).
    pub fn last_line(&self) -> Option<&str> {
        fn last(tail: &[String]) -> Option<&str> {
            tail.iter()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(String::as_str)
        }
        last(&self.stderr_tail).or_else(|| last(&self.stdout_tail))
    }

    /// Its attempts: those it listed, or else, for a task that ran, one spanning
    /// them all (its first start, its whole duration, its last end).
    pub fn each_try(&self) -> Vec<Try> {
        if !self.tries.is_empty() {
            return self.tries.clone();
        }
        match (self.started, &self.end) {
            (Some(started), Some(end)) => vec![Try {
                started,
                duration: self.duration,
                pid: self.pid,
                end: end.clone(),
            }],
            _ => Vec::new(),
        }
    }

    /// Takes what the run knows of the task: its identity and the reason it runs.
    pub fn set_id(&mut self, id: Option<&TaskId>) {
        if let Some(id) = id {
            self.reason = id.reason.clone();
            self.id = Some(id.clone());
        }
    }

    /// How it ended, in words: [`describe_end`], or for a service `released` and when
    /// it was ready, or what failed it as a service.
    pub fn end_words(&self) -> Option<String> {
        let end = self.end.as_ref().map(describe_end);
        let Some(service) = &self.service else {
            return end;
        };
        if service.released {
            return Some(match service.ready_after {
                Some(after) => format!("released (ready after {})", duration(after)),
                None => "released".to_string(),
            });
        }
        match (&self.end, &service.problem, end) {
            (Some(End::NotReady { .. }), _, end) => end,
            (_, Some(problem), Some(end)) => Some(format!("{end}: {problem}")),
            (_, problem, end) => end.or(problem.clone()),
        }
    }

    /// Its outcome: a stopped task is stopped whatever its exit (unless it succeeded).
    pub fn outcome(&self) -> Outcome {
        match self.status {
            Status::Succeeded => Outcome::Succeeded,
            Status::DoneEarlier => Outcome::DoneEarlier,
            Status::UpToDate => Outcome::UpToDate,
            Status::Unchanged => Outcome::Unchanged,
            Status::Cached => Outcome::Cached,
            _ if self.stopped => Outcome::Stopped,
            Status::Skipped => Outcome::Skipped,
            Status::Failed if self.allowed_failure => Outcome::AllowedFailure,
            Status::Failed => Outcome::Failed,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

pub enum Event {
    /// Whole lines of a task's output.
    Output {
        stream: Stream,
        label: Arc<str>,
        data: Vec<u8>,
    },
    /// One line too long to be sent in memory (see `exec::sink`): `len` bytes, without
    /// the newline, in `file` (written, not rewound).
    LongLine {
        stream: Stream,
        label: Arc<str>,
        file: std::fs::File,
        len: u64,
    },
    /// An attempt's process is running.
    Spawned {
        job: usize,
        label: Arc<str>,
        pid: u32,
        attempt: u32,
        /// The worker that runs it (`host:pid`), for a task of a distributed run that
        /// runs elsewhere.
        worker: Option<Arc<str>>,
    },
    /// An attempt ended; `retrying`: another one follows.
    Ended {
        job: usize,
        label: Arc<str>,
        record: Box<TaskRecord>,
        retrying: bool,
        /// How long this attempt took (the record's duration spans every attempt).
        took: Duration,
    },
    /// A task's output held back until its attempt ended (grouped output): printed in
    /// one piece, stdout's then stderr's.
    Group {
        job: usize,
        index: u64,
        label: Arc<str>,
        /// The task's whole name ([`name`]): the title of its group in a CI log.
        name: Arc<str>,
        /// When the attempt started and ended, in seconds since the epoch (GitLab's
        /// sections show the time between).
        span: (u64, u64),
        out: Option<crate::held::Held>,
        err: Option<crate::held::Held>,
        /// Its temporary files, counted until the event is done with.
        flight: crate::held::Flight,
    },
    /// A task of a `keep-order` job is over (run, or not): the tasks after it may print.
    Settled { job: usize, index: u64 },
    /// Tasks that will not run.
    Skipped { job: usize, count: u64 },
    /// Tasks not run: done earlier, or up to date.
    NotRun { job: usize, count: u64 },
    /// Items a queue-fed job has taken so far.
    Taken { job: usize },
    /// A message of the runner's own, printed on stderr as is.
    Note(String),
    /// What holds tasks back now (`db 2/2 in use`, `rate dns 5/s`, `memory 1.2 GiB free
    /// < 2 GiB`), or nothing: said by the heartbeat and the bars.
    Waiting(Option<String>),
    /// What the workers a cluster started are doing (`Slurm job 12: 1 pending, 1
    /// running`): said by the heartbeat line from then on.
    #[cfg_attr(not(feature = "distributed"), allow(dead_code))]
    Cluster(String),
    /// Print everything received so far (output waiting for its turn too), flush, and
    /// answer: the run then knows whether every write of task output succeeded.
    Drain(crossbeam_channel::Sender<()>),
    /// The run is over: print this (the summary) and end.
    Finish(String),
}

/// The worker name of a coordinator's own share of a distributed run (its consumer in
/// Redis, and the `worker` of the tasks it ran): `coordinator@HOST:PID`, this process.
pub fn own_share(host: &str) -> String {
    format!("coordinator@{host}:{}", std::process::id())
}

/// "job" for a single task, "job:item" for a fan-out (the item shortened and made
/// printable).
pub fn label(job: &Job, item: &str) -> String {
    if !job.items.is_fan_out() {
        return job.name.clone();
    }
    // A secret's value in an item (one fed by a queue was redacted as it was read) is
    // never in a label.
    let item = crate::secrets::redact(item);
    format!("{}:{}", job.name, printable(&item, 40))
}

/// "job" for a single task, "job:item" for a fan-out, the item whole and as it is: the
/// name a task is known by where a name is a key (JUnit test cases, which GitLab and
/// others key by name) or the only way to tell tasks apart (CI titles, the trace, the
/// job summary's failures). Each caller makes it fit its format (XML escaping,
/// [`titled`]); equal items give equal names, which a caller that needs a key makes
/// unique (the JUnit report adds the index).
pub fn name(job: &Job, item: &str) -> String {
    if !job.items.is_fan_out() {
        return job.name.clone();
    }
    format!("{}:{}", job.name, crate::secrets::redact(item))
}

/// A name on one line of a log: control characters written as escapes (`\t`, `\n`,
/// `\r`, `\u{1b}`), so that none of them acts and different names stay different
/// (`tab\there` is not `tab?here`); nothing is cut.
pub fn titled(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.extend(c.escape_unicode()),
            c => out.push(c),
        }
    }
    out
}

pub use crate::diagnostic::printable;

/// `n` with thousands separated: "100,000".
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `count` and `word`, with an "s" unless the count is 1: "1 attempt", "2 attempts".
pub fn plural(count: impl Into<u64>, word: &str) -> String {
    let count = count.into();
    if count == 1 {
        format!("{count} {word}")
    } else {
        format!("{count} {word}s")
    }
}

/// "exit 1", "killed by SIGKILL", "timed out", or why it did not start.
pub fn describe_end(end: &End) -> String {
    match end {
        End::Exited(code) => format!("exit {code}"),
        End::Signaled(signal) => format!("killed by {}", sys::signal_name(*signal)),
        End::TimedOut => "timed out".to_string(),
        End::SpawnFailed { message, .. } => format!("did not start: {message}"),
        End::Lost { deliveries: 0 } => {
            "lost: the broker lost the run's state (Redis restarted without persistence?)"
                .to_string()
        }
        End::OutputRefused { message } | End::Internal { message } => message.clone(),
        End::NotReady { message } => message.clone(),
        End::Lost { deliveries } => {
            format!("lost after {deliveries} deliveries (its workers died or stopped)")
        }
    }
}

/// A short human duration: "12ms", "1.24s", "3m05s".
pub fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.2}s", d.as_secs_f64())
    } else {
        let s = d.as_secs();
        format!("{}m{:02}s", s / 60, s % 60)
    }
}
