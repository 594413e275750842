//! A JSON report (`run --report FILE`) read back, for `runner report`: its run as a
//! [`RunInfo`], its job names, and its tasks as [`TaskRecord`]s with their attempts,
//! from which the other reports are written as they are at the end of a run.
//!
//! Typed serde structs of only the keys the reports need, read from a buffered stream
//! (never a whole `serde_json::Value`), each task made a record as it is read (when
//! `run`, which names the jobs, came first, as the runner writes it): a report of
//! 100,000 tasks takes about as much memory as its records. A file that is not JSON, or not a report, is said in words
//! that name what is missing and where (the run, or which task).
//!
//! Longer than 400 lines because of its unit tests.

use super::RunInfo;
use crate::queue::QueueStats;
use crate::task::{End, Status, TaskRecord, Try};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// A report read back: what the reports are written from.
pub struct Report {
    pub jobs: Vec<String>,
    pub info: RunInfo,
    pub records: Vec<TaskRecord>,
}

/// Why a file is not a report that can be read back.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file cannot be opened.
    #[error("cannot read {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Reading it failed part way.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{} is not valid JSON: {place}{source}", path.display())]
    NotJson {
        path: PathBuf,
        place: Place,
        #[source]
        source: serde_json::Error,
    },
    /// JSON, but not of a report's shape.
    #[error("{} {}: {place}{source}", path.display(), NOT_REPORT)]
    NotReport {
        path: PathBuf,
        place: Place,
        #[source]
        source: serde_json::Error,
    },
    /// A task that cannot be a record (read before `run`, so found after the parse).
    #[error("{} {}: {place}{problem}", path.display(), NOT_REPORT)]
    BadTask {
        path: PathBuf,
        place: Place,
        problem: TaskProblem,
    },
}

/// Why a task of a report cannot be made a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskProblem {
    #[error("its job {0:?} is not one of `run.jobs`")]
    UnknownJob(String),
    /// `attempt` counts from 1.
    #[error(
        "its attempt {attempt} has no end (one of `exit_code`, `signal`, `timed_out` or `error`)"
    )]
    NoEnd { attempt: usize },
}

/// Reads the JSON report at `path`. The error is the whole message for the user.
pub fn read_json(path: &Path) -> Result<Report, ReadError> {
    let file = std::fs::File::open(path).map_err(|source| ReadError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let at = Cell::new(Place::Top);
    let mut de =
        serde_json::Deserializer::from_reader(std::io::BufReader::with_capacity(1 << 16, file));
    let json = ReportSeed(&at)
        .deserialize(&mut de)
        .and_then(|json| de.end().map(|()| json))
        .map_err(|source| {
            let (path, place) = (path.to_path_buf(), at.get());
            match source.classify() {
                serde_json::error::Category::Io => ReadError::Read { path, source },
                serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                    ReadError::NotJson {
                        path,
                        place,
                        source,
                    }
                }
                serde_json::error::Category::Data => ReadError::NotReport {
                    path,
                    place,
                    source,
                },
            }
        })?;
    json.into_report()
        .map_err(|(place, problem)| ReadError::BadTask {
            path: path.to_path_buf(),
            place,
            problem,
        })
}

const NOT_REPORT: &str = "is not a runner report (one written by `runner run --report FILE`)";

/// Where the reading was when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Top,
    Run,
    Task(usize),
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Top => Ok(()),
            Place::Run => f.write_str("in `run`: "),
            Place::Task(n) => write!(f, "in task {n} of `tasks` (counting from 0): "),
        }
    }
}

struct Json {
    run: RunJson,
    tasks: Tasks,
    queues: Vec<QueueJson>,
}

/// The tasks: records, or, in a report whose `tasks` came before `run`, tasks still to
/// be made records.
enum Tasks {
    Records(Vec<TaskRecord>),
    Read(Vec<TaskJson>),
}

#[derive(Deserialize)]
struct RunJson {
    id: String,
    file: String,
    jobs: Vec<String>,
    start: Time,
    duration_s: Seconds,
    exit_status: i32,
    pool: usize,
    #[serde(default)]
    interrupted: Option<String>,
    #[serde(default)]
    host: String,
    /// Since issue 26; older reports lack them.
    #[serde(default)]
    selection: Vec<String>,
    #[serde(default)]
    set: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum StatusJson {
    Succeeded,
    Failed,
    Skipped,
    DoneEarlier,
    UpToDate,
    Unchanged,
    Cached,
}

/// A task; keys a report of an older runner lacks (`tries`, `stdout_tail`) are empty.
#[derive(Deserialize)]
struct TaskJson {
    job: String,
    item: String,
    index: u64,
    status: StatusJson,
    #[serde(default)]
    reason: String,
    pid: Option<u32>,
    host: Option<String>,
    #[serde(default)]
    worker: Option<String>,
    #[serde(default)]
    worker_labels: Option<Vec<String>>,
    slot: Option<usize>,
    exit_code: Option<i32>,
    signal: Option<String>,
    #[serde(default)]
    timed_out: bool,
    error: Option<String>,
    #[serde(default)]
    stopped: bool,
    #[serde(default)]
    allowed_failure: bool,
    #[serde(default)]
    attempts: u32,
    start: Option<Time>,
    #[serde(default)]
    duration_s: Seconds,
    #[serde(default)]
    waited_s: Seconds,
    #[serde(default)]
    stderr_tail: Vec<String>,
    #[serde(default)]
    stdout_tail: Vec<String>,
    #[serde(default)]
    tries: Vec<TryJson>,
    /// Only on a service's task.
    #[serde(default)]
    service: Option<ServiceJson>,
}

#[derive(Deserialize)]
struct ServiceJson {
    check: Option<String>,
    ready_at: Option<Time>,
    ready_after_s: Option<Seconds>,
    #[serde(default)]
    released: bool,
    problem: Option<String>,
}

#[derive(Deserialize)]
struct TryJson {
    start: Time,
    duration_s: Seconds,
    pid: Option<u32>,
    exit_code: Option<i32>,
    signal: Option<String>,
    #[serde(default)]
    timed_out: bool,
    error: Option<String>,
}

#[derive(Deserialize)]
struct QueueJson {
    name: String,
    #[serde(default)]
    pushed: u64,
    #[serde(default)]
    taken: u64,
    #[serde(default)]
    dropped: u64,
}

/// An RFC 3339 time, as the report writes it.
struct Time(SystemTime);

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Time, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_rfc3339(&text)
            .map(Time)
            .map_err(|e| de::Error::custom(format!("{text:?} is not an RFC 3339 time ({e})")))
    }
}

/// A duration in seconds (`duration_s`), at most [`Seconds::MAX`]: a time plus it
/// cannot overflow.
#[derive(Default)]
struct Seconds(Duration);

impl Seconds {
    /// A hundred years.
    const MAX: f64 = 100.0 * 365.25 * 86_400.0;
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Seconds, D::Error> {
        let secs = f64::deserialize(d)?;
        match Duration::try_from_secs_f64(secs) {
            Ok(duration) if secs <= Seconds::MAX => Ok(Seconds(duration)),
            _ => Err(de::Error::custom(format!(
                "{secs:?} is not a duration in seconds (0 to 100 years)"
            ))),
        }
    }
}

/// The report's top object, read key by key so that `at` always says where the
/// reading is (serde's own messages say what is wrong, not in which task).
struct ReportSeed<'a>(&'a Cell<Place>);

impl<'de> DeserializeSeed<'de> for ReportSeed<'_> {
    type Value = Json;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Json, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ReportSeed<'_> {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a runner report: an object with `run` and `tasks`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let (mut run, mut tasks, mut queues) = (None, None, Vec::new());
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "run" => {
                    self.0.set(Place::Run);
                    run = Some(map.next_value()?);
                }
                "tasks" => {
                    let jobs = run.as_ref().map(|run: &RunJson| run.job_numbers());
                    let seed = TasksSeed {
                        at: self.0,
                        jobs: jobs.as_ref(),
                    };
                    tasks = Some(map.next_value_seed(seed)?);
                }
                "queues" => queues = map.next_value()?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            self.0.set(Place::Top);
        }
        Ok(Json {
            run: run.ok_or_else(|| de::Error::missing_field("run"))?,
            tasks: tasks.ok_or_else(|| de::Error::missing_field("tasks"))?,
            queues,
        })
    }
}

/// The `tasks` list, counted as it is read; each task made a record at once when the
/// jobs are known.
struct TasksSeed<'a> {
    at: &'a Cell<Place>,
    jobs: Option<&'a HashMap<&'a str, usize>>,
}

impl<'de> DeserializeSeed<'de> for TasksSeed<'_> {
    type Value = Tasks;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Tasks, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for TasksSeed<'_> {
    type Value = Tasks;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of tasks")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Tasks, A::Error> {
        let Some(jobs) = self.jobs else {
            let mut tasks = Vec::new();
            loop {
                self.at.set(Place::Task(tasks.len()));
                match seq.next_element()? {
                    Some(task) => tasks.push(task),
                    None => return Ok(Tasks::Read(tasks)),
                }
            }
        };
        let mut records = Vec::new();
        loop {
            self.at.set(Place::Task(records.len()));
            match seq.next_element::<TaskJson>()? {
                Some(task) => records.push(task.into_record(jobs).map_err(de::Error::custom)?),
                None => return Ok(Tasks::Records(records)),
            }
        }
    }
}

/// How an attempt ended, from the parts the report keeps (see `json::EndFields`). An
/// error becomes `Internal`, whose words are its message, as the error's were; a
/// signal with a name this runner does not know keeps its name the same way.
fn end_of(
    exit_code: Option<i32>,
    signal: Option<String>,
    timed_out: bool,
    error: Option<String>,
) -> Option<End> {
    match (exit_code, signal, timed_out, error) {
        (Some(code), ..) => Some(End::Exited(code)),
        (_, Some(name), ..) => Some(match crate::sys::signal_number(&name) {
            Some(signal) => End::Signaled(signal),
            None => End::Internal {
                message: format!("killed by {name}"),
            },
        }),
        (_, _, true, _) => Some(End::TimedOut),
        (.., Some(message)) => Some(End::Internal { message }),
        (.., None) => None,
    }
}

impl RunJson {
    /// Each job's number, by name.
    fn job_numbers(&self) -> HashMap<&str, usize> {
        self.jobs
            .iter()
            .enumerate()
            .map(|(i, name)| (name.as_str(), i))
            .collect()
    }
}

impl Json {
    /// The report; the error says which task cannot be a record, and why.
    fn into_report(self) -> Result<Report, (Place, TaskProblem)> {
        let run = self.run;
        let records = match self.tasks {
            Tasks::Records(records) => records,
            Tasks::Read(tasks) => {
                let jobs = run.job_numbers();
                tasks
                    .into_iter()
                    .enumerate()
                    .map(|(n, task)| {
                        task.into_record(&jobs)
                            .map_err(|problem| (Place::Task(n), problem))
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }
        };
        let info = RunInfo {
            id: run.id,
            host: run.host,
            file: run.file,
            started: run.start.0,
            duration: run.duration_s.0,
            exit: run.exit_status,
            pool: run.pool,
            interrupted: run.interrupted,
            // Not in the report: the HTML page does not say it.
            stopped_by: None,
            selection: run.selection,
            set: run.set.into_iter().collect(),
            // Not read back: the HTML page does not say it.
            cache: None,
            queues: self
                .queues
                .into_iter()
                .map(|q| {
                    let stats = QueueStats {
                        pushed: q.pushed,
                        taken: q.taken,
                        dropped: q.dropped,
                        ..QueueStats::default()
                    };
                    (q.name, stats)
                })
                .collect(),
        };
        Ok(Report {
            jobs: run.jobs,
            info,
            records,
        })
    }
}

impl TaskJson {
    /// The task's record; its job must be one of `jobs`.
    fn into_record(self, jobs: &HashMap<&str, usize>) -> Result<TaskRecord, TaskProblem> {
        let Some(&job) = jobs.get(self.job.as_str()) else {
            return Err(TaskProblem::UnknownJob(self.job));
        };
        let host = self.host.unwrap_or_default();
        let mut r = TaskRecord::new(
            job,
            self.index,
            self.item,
            self.slot.unwrap_or(0),
            &host,
            self.allowed_failure,
        );
        r.status = match self.status {
            StatusJson::Succeeded => Status::Succeeded,
            StatusJson::Failed => Status::Failed,
            StatusJson::Skipped => Status::Skipped,
            StatusJson::DoneEarlier => Status::DoneEarlier,
            StatusJson::UpToDate => Status::UpToDate,
            StatusJson::Unchanged => Status::Unchanged,
            StatusJson::Cached => Status::Cached,
        };
        r.reason = self.reason;
        r.worker = self.worker;
        r.worker_labels = self.worker_labels.unwrap_or_default();
        r.pid = self.pid;
        r.end = end_of(self.exit_code, self.signal, self.timed_out, self.error);
        r.attempts = self.attempts;
        r.started = self.start.map(|t| t.0);
        r.duration = self.duration_s.0;
        r.waited = self.waited_s.0;
        r.service = self.service.map(|s| crate::task::ServiceLife {
            check: s.check,
            ready_at: s.ready_at.map(|t| t.0),
            ready_after: s.ready_after_s.map(|d| d.0),
            released: s.released,
            problem: s.problem,
        });
        r.stopped = self.stopped;
        r.stderr_tail = self.stderr_tail;
        r.stdout_tail = self.stdout_tail;
        r.tries = Vec::with_capacity(self.tries.len());
        for (a, t) in self.tries.into_iter().enumerate() {
            let Some(end) = end_of(t.exit_code, t.signal, t.timed_out, t.error) else {
                return Err(TaskProblem::NoEnd { attempt: a + 1 });
            };
            r.tries.push(Try {
                started: t.start.0,
                duration: t.duration_s.0,
                pid: t.pid,
                end,
            });
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{file, info, records};
    use super::*;

    fn read(text: &str) -> Result<Report, ReadError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.json");
        std::fs::write(&path, text).unwrap();
        read_json(&path).map_err(|mut e| {
            let (ReadError::Open { path, .. }
            | ReadError::Read { path, .. }
            | ReadError::NotJson { path, .. }
            | ReadError::NotReport { path, .. }
            | ReadError::BadTask { path, .. }) = &mut e;
            *path = PathBuf::from("run.json");
            e
        })
    }

    #[test]
    fn a_report_reads_back_as_its_records() {
        let mut written = records();
        let b = &mut written[2];
        b.tries = vec![
            Try {
                started: b.started.unwrap(),
                duration: Duration::from_millis(100),
                pid: Some(7),
                end: End::Exited(2),
            },
            Try {
                started: b.started.unwrap() + Duration::from_millis(200),
                duration: Duration::from_millis(100),
                pid: None,
                end: End::Signaled(libc::SIGTERM),
            },
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.json");
        super::super::write_json(&path, &file(), &written, &info(1, None)).unwrap();
        let report = read_json(&path).unwrap();
        assert_eq!(report.jobs, ["build", "test", "lint", "deploy"]);
        assert_eq!((report.info.exit, report.info.pool), (1, 2));
        assert_eq!(report.info.started, SystemTime::UNIX_EPOCH);
        assert_eq!(report.info.queues[1].1.dropped, 3);
        for (read, written) in report.records.iter().zip(&written) {
            assert_eq!(
                (read.job, read.index, &read.item, read.status, read.attempts),
                (
                    written.job,
                    written.index,
                    &written.item,
                    written.status,
                    written.attempts
                )
            );
            assert_eq!((&read.end, read.started), (&written.end, written.started));
            assert_eq!(read.tries, written.tries);
        }
        assert_eq!(report.records[3].stdout_tail, ["out1", "out2"]);
    }

    #[test]
    fn what_is_not_a_report_is_said() {
        assert_eq!(
            read("<html>").err().unwrap().to_string(),
            "run.json is not valid JSON: expected value at line 1 column 1"
        );
        assert_eq!(
            read("{\"tasks\": []}").err().unwrap().to_string(),
            "run.json is not a runner report (one written by `runner run --report FILE`): missing field `run` at line 1 column 13"
        );
        let run = r#""run": {"id": "x", "file": "f", "jobs": ["a"], "start": "2026-11-27T10:00:00.000Z", "duration_s": 1, "exit_status": 0, "pool": 2}"#;
        let err = read(&format!("{{{}}}", run.replace("\"pool\": 2", "\"pol\": 2")))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.ends_with("report FILE`): in `run`: missing field `pool` at line 1 column 129"),
            "{err}"
        );
        let task = r#"{"job": "a", "item": "", "index": 0, "status": "succeeded"}"#;
        let err = read(&format!(
            "{{{run}, \"tasks\": [{task}, {{\"job\": \"a\"}}]}}"
        ))
        .err()
        .unwrap()
        .to_string();
        assert!(
            err.contains("FILE`): in task 1 of `tasks` (counting from 0): missing field `item`"),
            "{err}"
        );
        let err = read(&format!(
            "{{{run}, \"tasks\": [{}]}}",
            task.replace("\"a\"", "\"b\"")
        ))
        .err()
        .unwrap()
        .to_string();
        assert!(
            err.contains("FILE`): in task 0 of `tasks` (counting from 0): its job \"b\" is not one of `run.jobs` at line 1 column"),
            "{err}"
        );
        assert!(read(&format!("{{{run}, \"tasks\": [{task}]}}")).is_ok());
        let err = read(&format!(
            "{{{}}}",
            run.replace("\"duration_s\": 1", "\"duration_s\": 1e300")
        ))
        .err()
        .unwrap()
        .to_string();
        assert!(
            err.contains("in `run`: 1e300 is not a duration in seconds (0 to 100 years)"),
            "{err}"
        );
        // Tasks before the run (a report rewritten by a tool): read all the same.
        let report = read(&format!("{{\"tasks\": [{task}], {run}}}")).unwrap();
        assert_eq!(report.records[0].status, Status::Succeeded);
        let err = read(&format!(
            "{{\"tasks\": [{}], {run}}}",
            task.replace("\"a\"", "\"b\"")
        ))
        .err()
        .unwrap()
        .to_string();
        assert!(
            err.ends_with("FILE`): in task 0 of `tasks` (counting from 0): its job \"b\" is not one of `run.jobs`"),
            "{err}"
        );
        let err = read_json(Path::new("/no/such/run.json"))
            .err()
            .unwrap()
            .to_string();
        assert_eq!(
            err,
            "cannot read /no/such/run.json: No such file or directory (os error 2)"
        );
    }
}
