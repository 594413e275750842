//! What a run leaves behind: the summary printed at the end ([`summary`]), the JSON
//! report (`--report`, [`json`]), the JUnit XML (`--junit`, [`junit`]) and the HTML
//! page (`--html`, [`html`]); and the JSON report read back ([`read`], for `runner
//! report`). Pure functions of the task records, but for the `write_*` functions that
//! put a report in its file and `read_json`.
//!
//! Every one of them tells a task by its [`Outcome`](crate::task::Outcome): a failure
//! that was allowed and a task stopped by the run are not failures. The JSON schema and
//! the JUnit layout are documented in `docs/reports.md`; they change only with it.

mod html;
mod json;
mod junit;
mod read;
mod summary;
pub mod tally;
pub mod trace;

pub use html::write_html;
pub use json::write_json;
pub use junit::write_junit;
pub use read::{read_json, ReadError};
pub use summary::{markdown, summary};

use crate::queue::QueueStats;
use std::time::{Duration, SystemTime};

pub struct RunInfo {
    pub id: String,
    /// The machine the run (the coordinator) ran on.
    pub host: String,
    pub file: String,
    pub started: SystemTime,
    pub duration: Duration,
    pub exit: i32,
    pub pool: usize,
    pub interrupted: Option<String>,
    /// What stopped the tasks that were stopped: "SIGINT", "SIGTERM", "SIGHUP",
    /// "fail-fast"; `None` when not known.
    pub stopped_by: Option<&'static str>,
    pub queues: Vec<(String, QueueStats)>,
    /// The jobs named on the command line; empty when every job ran.
    pub selection: Vec<String>,
    /// The vars `--set` gave: (name, value).
    pub set: Vec<(String, String)>,
    /// `--cache`: what the results cache did.
    pub cache: Option<crate::cache::run::Totals>,
}

/// The vars `--set` gave, (name, value) in file order, for the reports' header.
pub fn set_vars(file: &crate::jobfile::JobFile) -> Vec<(String, String)> {
    file.vars
        .iter()
        .filter(|v| v.set)
        .map(|v| (v.name.clone(), v.value.clone()))
        .collect()
}

/// How the run ended, in the words of the summary's last line, the job summary's heading
/// and the HTML page's header alike: "all tasks succeeded" only when none failed,
/// allowed or not; "succeeded with 1 allowed failure"; "exit status 1"; or what
/// interrupted it ("terminated (SIGTERM); exit status 143").
fn verdict(info: &RunInfo, all: &tally::Totals) -> String {
    let allowed = all.of(Some(crate::task::Outcome::AllowedFailure));
    match (&info.interrupted, info.exit) {
        (Some(why), _) => format!("{why}; exit status {}", info.exit),
        (None, 0) if allowed == 0 => "all tasks succeeded".to_string(),
        (None, 0) => format!(
            "succeeded with {}",
            crate::task::plural(allowed, "allowed failure")
        ),
        (None, code) => format!("exit status {code}"),
    }
}

fn time(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Records and a run for the unit tests of every report.
#[cfg(test)]
mod fixtures {
    use super::RunInfo;
    use crate::jobfile::JobFile;
    use crate::queue::QueueStats;
    use crate::task::{End, Status, TaskRecord};
    use std::path::Path;
    use std::time::{Duration, SystemTime};

    const JOBS: &str = "[jobs.build]\ncommand = 'make'\n[jobs.test]\ncommand = 'check {item}'\nitems = ['a', 'b', 'c']\n[jobs.lint]\ncommand = 'lint'\nallow_failure = true\n[jobs.deploy]\ncommand = 'ship'\n";

    pub fn file() -> JobFile {
        crate::jobfile::parse(Path::new("x.toml"), JOBS.to_string())
            .unwrap_or_else(|_| panic!("the test's job file parses"))
    }

    /// A task of `job` that ran from `start_ms` (after a fixed epoch) for `ms`.
    pub fn ran(job: usize, index: u64, item: &str, start_ms: u64, ms: u64, end: End) -> TaskRecord {
        let mut r = TaskRecord::new(job, index, item.to_string(), 0, "here", false);
        r.status = match end {
            End::Exited(0) => Status::Succeeded,
            _ => Status::Failed,
        };
        r.end = Some(end);
        r.attempts = 1;
        r.pid = Some(100 + index as u32);
        r.started = Some(SystemTime::UNIX_EPOCH + Duration::from_millis(1_000_000 + start_ms));
        r.duration = Duration::from_millis(ms);
        r
    }

    /// build succeeded; test:a succeeded, test:b failed (2 attempts, a cut tail), test:c
    /// was killed elsewhere; lint failed, allowed; deploy was skipped.
    pub fn records() -> Vec<TaskRecord> {
        let build = ran(0, 0, "", 0, 1500, End::Exited(0));
        let a = ran(1, 0, "a", 100, 200, End::Exited(0));
        let mut b = ran(1, 1, "b", 100, 300, End::Exited(2));
        b.attempts = 2;
        b.stderr_tail = vec!["oops".into(), "bad".into()];
        b.tail_cut = true;
        let mut c = ran(1, 2, "c", 200, 50, End::Signaled(libc::SIGKILL));
        c.host = "elsewhere".into();
        c.stdout_tail = vec!["out1".into(), "out2".into()];
        let mut lint = ran(2, 0, "", 0, 5, End::Exited(1));
        lint.allowed_failure = true;
        lint.pid = None;
        lint.stderr_tail = vec!["warn".into()];
        let deploy = TaskRecord::new(3, 0, String::new(), 0, "here", false);
        vec![build, a, b, c, lint, deploy]
    }

    /// `records()` after a SIGTERM: test:c was stopped by it rather than failing.
    pub fn stopped_records() -> Vec<TaskRecord> {
        let mut records = records();
        records[3].end = Some(End::Signaled(libc::SIGTERM));
        records[3].stopped = true;
        records
    }

    pub fn info(exit: i32, interrupted: Option<&str>) -> RunInfo {
        let dropped = QueueStats {
            taken: 5,
            dropped: 3,
            ..QueueStats::default()
        };
        RunInfo {
            id: "run".into(),
            host: "here".into(),
            file: "x.toml".into(),
            started: SystemTime::UNIX_EPOCH,
            duration: Duration::from_secs(2),
            exit,
            pool: 2,
            interrupted: interrupted.map(String::from),
            stopped_by: interrupted.map(|_| "SIGTERM"),
            queues: vec![
                ("fine".into(), QueueStats::default()),
                ("lossy".into(), dropped),
            ],
            selection: Vec::new(),
            set: Vec::new(),
            cache: None,
        }
    }
}
