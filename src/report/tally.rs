//! Where ended tasks go, so that the runner's memory does not grow with their number:
//! a [`Tally`] keeps what the summary needs (per-job counts, times and slowest task,
//! and the first failures and stopped tasks whole, the rest counted), and a [`Spool`]
//! (a temporary file, only when a report was asked for) keeps every record for the JSON
//! and JUnit reports, written from it at the end. [`Records`] is how a report reads
//! them back, job by job.

use crate::jobfile::JobFile;
use crate::task::{label, Outcome, TaskRecord};
use std::io::{self, BufRead, BufReader, Seek, Write};
use std::time::{Duration, SystemTime};

/// How many failed (and how many stopped) tasks the summary shows whole; the rest are
/// counted.
pub const SHOWN: usize = 50;

/// One job's (or the whole run's) counts.
#[derive(Debug, Default, Clone)]
pub struct Totals {
    pub tasks: u64,
    /// By outcome, in the order of [`Outcome`]'s variants.
    pub by: [u64; 9],
    pub first: Option<SystemTime>,
    pub last: Option<SystemTime>,
    pub slowest: Option<(Duration, String)>,
}

impl Totals {
    pub fn of(&self, outcome: Option<Outcome>) -> u64 {
        outcome.map_or(self.tasks, |o| self.by[o as usize])
    }

    /// Counts `r`; `label` names it, asked for only when it is the slowest so far.
    pub(super) fn add(&mut self, r: &TaskRecord, label: impl FnOnce() -> String) {
        self.tasks += 1;
        self.by[r.outcome() as usize] += 1;
        if let Some(start) = r.started {
            let end = start + r.duration;
            self.first = Some(self.first.map_or(start, |f| f.min(start)));
            self.last = Some(self.last.map_or(end, |l| l.max(end)));
            if self.slowest.as_ref().is_none_or(|(d, _)| r.duration > *d) {
                self.slowest = Some((r.duration, label()));
            }
        }
    }

    /// When its first task started, and the time from then to its last one's end.
    pub fn span(&self) -> Option<(SystemTime, Duration)> {
        let (first, last) = (self.first?, self.last?);
        Some((first, last.duration_since(first).unwrap_or_default()))
    }
}

/// Why the tasks of a job with `sources` ran, grouped by kind of reason (`source
/// changed`, `never ran`, …), each with the first few files it named: bounded, however
/// many tasks ran.
#[derive(Debug, Default, Clone)]
pub struct Reasons {
    /// (kind, the first files named, how many tasks, how many names in all).
    pub kinds: Vec<(String, Vec<String>, u64, u64)>,
    /// Tasks whose reason was of a kind past the first [`Reasons::KINDS`].
    pub others: u64,
}

impl Reasons {
    pub const KINDS: usize = 6;
    /// The reasons that list file names.
    const LISTS: [&'static str; 6] = [
        "source changed",
        "sources added",
        "source removed",
        "no file matches",
        "output missing",
        "output changed",
    ];
    pub const NAMES: usize = 3;

    fn add(&mut self, reason: &str) {
        for part in reason.split("; ") {
            // Only these name files ("a, b and 3 more"); any other reason is a kind of
            // its own, whole.
            let (kind, names) = match part.split_once(": ") {
                Some((kind, names)) if Self::LISTS.contains(&kind) => (kind, names),
                _ => (part, ""),
            };
            let at = match self.kinds.iter().position(|k| k.0 == kind) {
                Some(at) => at,
                None if self.kinds.len() < Self::KINDS => {
                    self.kinds.push((kind.to_string(), Vec::new(), 0, 0));
                    self.kinds.len() - 1
                }
                None => {
                    self.others += 1;
                    continue;
                }
            };
            let entry = &mut self.kinds[at];
            entry.2 += 1;
            if !names.is_empty() {
                // A reason names a few files and counts the rest: "a, b and 3 more".
                let (listed, more) = match names.rsplit_once(" and ") {
                    Some((listed, more)) if more.ends_with(" more") => (
                        listed,
                        more.trim_end_matches(" more").parse::<u64>().unwrap_or(0),
                    ),
                    _ => (names, 0),
                };
                for name in listed.split(", ") {
                    entry.3 += 1;
                    if entry.1.len() < Self::NAMES && !entry.1.iter().any(|n| n == name) {
                        entry.1.push(name.to_string());
                    }
                }
                entry.3 += more;
            }
        }
    }
}

/// What the summary needs of every ended task, in bounded memory.
#[derive(Debug, Default)]
pub struct Tally {
    pub jobs: Vec<Totals>,
    /// Per job with `sources`: why its tasks ran.
    pub reasons: Vec<Reasons>,
    pub all: Totals,
    /// The first [`SHOWN`] failed tasks (allowed or not), whole, in the order they ended.
    pub failures: Vec<TaskRecord>,
    pub failures_unshown: u64,
    /// The first [`SHOWN`] tasks the run stopped.
    pub stopped: Vec<TaskRecord>,
    pub stopped_unshown: u64,
    /// Skipped tasks by job and reason, the first [`SHOWN`] kinds: what the summary
    /// says of why tasks were skipped.
    pub skips: Vec<Skip>,
    pub skips_unshown: u64,
    /// The first [`SHOWN`] service tasks that ran: a line each (its start, when it was
    /// ready, how it stopped).
    pub services: Vec<String>,
    pub services_unshown: u64,
}

/// Skipped tasks of one job for one reason: the first one's name, and how many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    pub job: usize,
    pub reason: String,
    pub first: String,
    pub count: u64,
}

/// A service's task in a line: `redis: started 21:19:45.237, ready after 212ms (tcp
/// 127.0.0.1:6379), released after 1.20s`.
fn service_line(
    name: &str,
    service: &crate::task::ServiceLife,
    started: std::time::SystemTime,
    r: &TaskRecord,
) -> String {
    let at = humantime::format_rfc3339_millis(started).to_string();
    let clock = at.get(11..23).unwrap_or(&at);
    let check = service
        .check
        .as_ref()
        .map(|c| format!(" ({c})"))
        .unwrap_or_default();
    let ready = match service.ready_after {
        Some(after) => format!("ready after {}{check}", crate::task::duration(after)),
        None => format!("never ready{check}"),
    };
    let end = match (service.released, r.outcome()) {
        (true, _) => "released".to_string(),
        (false, Outcome::Stopped) => "stopped by the run".to_string(),
        (false, _) => "failed".to_string(),
    };
    format!(
        "{name}: started {clock}, {ready}, {end} after {}",
        crate::task::duration(r.duration)
    )
}

impl Tally {
    pub fn new(file: &JobFile) -> Tally {
        Tally {
            jobs: vec![Totals::default(); file.jobs.len()],
            reasons: vec![Reasons::default(); file.jobs.len()],
            ..Tally::default()
        }
    }

    /// A tally of `records` (the reports' unit tests).
    #[cfg(test)]
    pub fn of(file: &JobFile, records: &[TaskRecord]) -> Tally {
        let mut tally = Tally::new(file);
        for r in records {
            tally.add(file, r);
        }
        tally
    }

    pub fn add(&mut self, file: &JobFile, r: &TaskRecord) {
        let name = || label(&file.jobs[r.job], &r.item);
        self.jobs[r.job].add(r, name);
        self.all.add(r, name);
        let ran = !matches!(
            r.outcome(),
            Outcome::Skipped
                | Outcome::UpToDate
                | Outcome::DoneEarlier
                | Outcome::Unchanged
                | Outcome::Cached
        );
        if ran && !file.jobs[r.job].sources.is_empty() && !r.reason.is_empty() {
            self.reasons[r.job].add(&r.reason);
        }
        if r.outcome() == Outcome::Skipped && !r.reason.is_empty() {
            self.skipped(file, r);
        }
        if let (Some(service), Some(started)) = (&r.service, r.started) {
            if self.services.len() < SHOWN {
                self.services
                    .push(service_line(&name(), service, started, r));
            } else {
                self.services_unshown += 1;
            }
        }
        let (list, unshown) = match r.outcome() {
            Outcome::Failed | Outcome::AllowedFailure => {
                (&mut self.failures, &mut self.failures_unshown)
            }
            Outcome::Stopped => (&mut self.stopped, &mut self.stopped_unshown),
            _ => return,
        };
        if list.len() < SHOWN {
            let mut kept = r.clone();
            kept.queue_lines = Vec::new();
            list.push(kept);
        } else {
            *unshown += 1;
        }
    }

    fn skipped(&mut self, file: &JobFile, r: &TaskRecord) {
        let same = |s: &&mut Skip| s.job == r.job && s.reason == r.reason;
        if let Some(skip) = self.skips.iter_mut().find(same) {
            skip.count += 1;
        } else if self.skips.len() < SHOWN {
            self.skips.push(Skip {
                job: r.job,
                reason: r.reason.clone(),
                first: crate::task::name(&file.jobs[r.job], &r.item),
                count: 1,
            });
        } else {
            self.skips_unshown += 1;
        }
    }

    /// Whether a task failed (not allowed to).
    pub fn failed(&self) -> bool {
        self.all.of(Some(Outcome::Failed)) > 0
    }
}

/// The records of a run, read job by job by the reports.
pub trait Records {
    /// Calls `each` with every record of job `job`, in the order they ended.
    fn each(
        &self,
        job: usize,
        each: &mut dyn FnMut(&TaskRecord) -> io::Result<()>,
    ) -> io::Result<()>;
}

impl Records for Vec<TaskRecord> {
    fn each(
        &self,
        job: usize,
        each: &mut dyn FnMut(&TaskRecord) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut mine: Vec<&TaskRecord> = self.iter().filter(|r| r.job == job).collect();
        mine.sort_by_key(|r| r.index);
        mine.into_iter().try_for_each(each)
    }
}

/// A job with at most this many records is read back in item order (sorted in memory,
/// one job at a time, at the end); a larger one in the order its tasks ended.
pub const SORTED_UP_TO: u64 = 10_000;

/// Every record, one JSON line each, in an unnamed temporary file.
pub struct Spool {
    file: std::fs::File,
    out: io::BufWriter<std::fs::File>,
    /// Records per job.
    counts: Vec<u64>,
}

impl Spool {
    pub fn new() -> io::Result<Spool> {
        let file = tempfile::tempfile()?;
        let out = io::BufWriter::new(file.try_clone()?);
        Ok(Spool {
            file,
            out,
            counts: Vec::new(),
        })
    }

    pub fn add(&mut self, r: &TaskRecord) -> io::Result<()> {
        if self.counts.len() <= r.job {
            self.counts.resize(r.job + 1, 0);
        }
        self.counts[r.job] += 1;
        serde_json::to_writer(&mut self.out, r)?;
        self.out.write_all(b"\n")
    }

    /// Writes what is buffered; then the records can be read.
    pub fn finish(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl Spool {
    /// Calls `each` with every line of the spool whose record's job `keep` accepts
    /// (lines of other jobs are skipped without being parsed: a record starts with its
    /// job, `{"job":N,`).
    fn scan(
        &self,
        keep: &dyn Fn(usize) -> bool,
        each: &mut dyn FnMut(TaskRecord) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut file = self.file.try_clone()?;
        file.rewind()?;
        let mut reader = BufReader::new(file);
        let mut line = Vec::new();
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line)? == 0 {
                return Ok(());
            }
            if job_of(&line).is_some_and(|j| !keep(j)) {
                continue;
            }
            each(serde_json::from_slice(&line)?)?;
        }
    }
}

/// The job of a spooled record, read from the start of its line.
fn job_of(line: &[u8]) -> Option<usize> {
    let rest = line.strip_prefix(b"{\"job\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

impl Records for Spool {
    fn each(
        &self,
        job: usize,
        each: &mut dyn FnMut(&TaskRecord) -> io::Result<()>,
    ) -> io::Result<()> {
        let count = self.counts.get(job).copied().unwrap_or(0);
        if count == 0 {
            return Ok(());
        }
        if count > SORTED_UP_TO {
            return self.scan(&|j| j == job, &mut |r| each(&r));
        }
        let mut sorted = Vec::new();
        self.scan(&|j| j == job, &mut |r| {
            sorted.push(r);
            Ok(())
        })?;
        sorted.sort_by_key(|r| r.index);
        sorted.iter().try_for_each(each)
    }
}

/// Where the run puts each ended task: the tally, and the spool when reports are asked
/// for.
pub struct Recorder {
    pub tally: Tally,
    pub spool: Option<Spool>,
    /// `--trace`: each task's attempts written as it ends.
    pub trace: Option<super::trace::Trace>,
    /// Why the spool could not be made or written (the reports then say so).
    pub spool_error: Option<String>,
}

impl Recorder {
    pub fn new(file: &JobFile, reports: bool) -> Recorder {
        let (spool, spool_error) = match reports.then(Spool::new) {
            None => (None, None),
            Some(Ok(spool)) => (Some(spool), None),
            Some(Err(e)) => (
                None,
                Some(format!("cannot make a temporary file for the records: {e}")),
            ),
        };
        Recorder {
            tally: Tally::new(file),
            spool,
            spool_error,
            trace: None,
        }
    }

    pub fn add(&mut self, file: &JobFile, r: &TaskRecord) {
        self.tally.add(file, r);
        if let Some(trace) = &mut self.trace {
            let job = &file.jobs[r.job];
            trace.add(&job.name, &crate::task::name(job, &r.item), r);
        }
        if let Some(spool) = &mut self.spool {
            if let Err(e) = spool.add(r) {
                self.spool_error = Some(format!("cannot write the records' temporary file: {e}"));
                self.spool = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::TaskRecord;

    #[test]
    fn the_spool_gives_each_job_its_records_in_item_order() {
        let mut spool = Spool::new().unwrap();
        for (job, index) in [(1, 2), (0, 1), (1, 0), (12, 5), (0, 0), (1, 1)] {
            let r = TaskRecord::new(job, index, format!("i{index}"), 0, "h", false);
            spool.add(&r).unwrap();
        }
        spool.finish().unwrap();
        let read = |job| {
            let mut got = Vec::new();
            spool
                .each(job, &mut |r| {
                    got.push((r.job, r.index));
                    Ok(())
                })
                .unwrap();
            got
        };
        assert_eq!(read(0), [(0, 0), (0, 1)]);
        assert_eq!(read(1), [(1, 0), (1, 1), (1, 2)]);
        assert_eq!(read(12), [(12, 5)]);
        assert_eq!(read(3), []);
        assert_eq!(job_of(b"{\"job\":12,\"index\":5}"), Some(12));
    }
}
