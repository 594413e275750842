//! A run's journal: one JSON line per ended task, appended as each task ends (before
//! the run reports it done), and read back, by the next run, into an [`Index`] of what
//! succeeded there.
//!
//! Writes go to the file with one `write` each, not fsynced: a runner killed by SIGKILL
//! loses nothing the kernel took, and a power cut may lose the last second (those tasks
//! run again: at least once). A torn last line (the runner died while writing it) is
//! ignored when reading; so is any other line that does not read as a record (counted).
//! A write that fails (a full disk) is said once, and the run goes on unjournaled.

use super::identity::Identity;
use crate::task::{End, Status, TaskRecord};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The first line of a journal.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Header {
    /// Always [`FORMAT`]: a file without it is not a runner journal.
    pub runner_journal: u32,
    pub run: String,
    /// The job file, as the user named it.
    pub file: String,
    pub started: String,
    /// The run this one resumed, if any.
    pub resumes: Option<String>,
}

pub const FORMAT: u32 = 1;

/// The status of a task's start record.
const STARTED: &str = "started";

/// One ended task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    /// The identity, 32 hex digits.
    pub id: String,
    /// The key (job and label), 16 hex digits.
    pub key: String,
    pub job: String,
    pub index: u64,
    /// `succeeded`, `failed`, `stopped`, `done_earlier`, `up_to_date` or `cached` for a task that
    /// ended; `started` as it starts (a task with only that was running when the run
    /// stopped).
    pub status: String,
    pub exit: Option<i32>,
    pub signal: Option<i32>,
    pub attempts: u32,
    pub ms: u64,
}

impl Entry {
    pub fn of(record: &TaskRecord, job: &str, id: Identity, key: u64) -> Entry {
        let (exit, signal) = match &record.end {
            Some(End::Exited(code)) => (Some(*code), None),
            Some(End::Signaled(s)) => (None, Some(*s)),
            _ => (None, None),
        };
        let status = match record.status {
            Status::Succeeded => "succeeded",
            Status::DoneEarlier => "done_earlier",
            Status::UpToDate => "up_to_date",
            Status::Unchanged => "unchanged",
            Status::Cached => "cached",
            _ if record.stopped => "stopped",
            _ => "failed",
        };
        Entry {
            exit,
            signal,
            attempts: record.attempts,
            ms: record.duration.as_millis() as u64,
            ..Entry::started(job, record.index, id, key)
        }
        .with_status(status)
    }

    /// The record of a task that starts.
    pub fn started(job: &str, index: u64, id: Identity, key: u64) -> Entry {
        Entry {
            id: format!("{id:032x}"),
            key: format!("{key:016x}"),
            job: job.to_string(),
            index,
            status: STARTED.to_string(),
            exit: None,
            signal: None,
            attempts: 0,
            ms: 0,
        }
    }

    fn with_status(mut self, status: &str) -> Entry {
        self.status = status.to_string();
        self
    }

    fn succeeded(&self) -> bool {
        matches!(
            self.status.as_str(),
            "succeeded" | "done_earlier" | "up_to_date" | "cached"
        )
    }
}

/// The journal a run writes.
pub struct Journal {
    pub path: PathBuf,
    inner: Mutex<Writer>,
}

struct Writer {
    /// `None` once a write failed: the run goes on unjournaled.
    file: Option<File>,
    /// Lines not written yet (tasks done earlier, carried over in bulk).
    pending: Vec<u8>,
}

/// What a failed write of the journal says, once.
pub type Warn<'a> = &'a dyn Fn(String);

impl Journal {
    /// Creates the journal at `path` and writes its header, then every record of the
    /// journal `carried` (the run this one resumes, which carried those before it): a
    /// resumed run forgets nothing it was given, whatever it selects or runs. Lines that
    /// do not read as records (a torn last one) are left behind.
    pub fn create(
        path: &Path,
        header: &Header,
        carried: Option<&Path>,
    ) -> std::io::Result<Journal> {
        let mut file = std::fs::OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(path)?;
        let mut line = serde_json::to_vec(header)?;
        line.push(b'\n');
        file.write_all(&line)?;
        if let Some(earlier) = carried {
            carry(earlier, &mut file)?;
        }
        Ok(Journal {
            path: path.to_path_buf(),
            inner: Mutex::new(Writer {
                file: Some(file),
                pending: Vec::new(),
            }),
        })
    }

    /// Appends a task's end. `bulk`: it may wait in memory for the next write (a task
    /// up to date, which its stamp also tells; the run flushes once it decided a batch).
    /// A task done earlier is not written: the journal carried its success over when it
    /// was created. Nor is an unchanged one (`--changed-since`): nothing happened to it,
    /// and the next run must not take it as tried.
    pub fn append(&self, entry: &Entry, bulk: bool, warn: Warn<'_>) {
        if entry.status == "done_earlier" || entry.status == "unchanged" {
            return;
        }
        let mut w = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if w.file.is_none() {
            return;
        }
        if serde_json::to_writer(&mut w.pending, entry).is_err() {
            return;
        }
        w.pending.push(b'\n');
        if !bulk || w.pending.len() >= 64 * 1024 {
            w.flush(&self.path, warn);
        }
    }

    /// Writes what waits in memory.
    pub fn flush(&self, warn: Warn<'_>) {
        let mut w = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        w.flush(&self.path, warn);
    }
}

/// Copies the records of the journal at `from` (not its header, nor lines that do not
/// read as records) to `to`.
fn carry(from: &Path, to: &mut File) -> std::io::Result<()> {
    let mut reader = BufReader::new(File::open(from)?);
    let mut out = std::io::BufWriter::with_capacity(256 * 1024, to);
    let mut line = Vec::new();
    let mut first = true;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 || line.last() != Some(&b'\n') {
            break;
        }
        if std::mem::take(&mut first) {
            continue;
        }
        if serde_json::from_slice::<Entry>(&line).is_ok() {
            out.write_all(&line)?;
        }
    }
    out.flush()
}

impl Writer {
    fn flush(&mut self, path: &Path, warn: Warn<'_>) {
        let pending = std::mem::take(&mut self.pending);
        let Some(file) = &mut self.file else { return };
        if pending.is_empty() {
            return;
        }
        if let Err(e) = file.write_all(&pending) {
            warn(format!(
                "cannot write the journal {}: {e}; the run goes on, but what ends from now on is not journaled (a --resume would run it again)",
                path.display()
            ));
            self.file = None;
        }
    }
}

/// What an earlier run did, by identity: the tasks it (and the runs it resumed)
/// succeeded, and the keys of every task it ended (with the first 64 bits of their
/// identity), for the reasons a task runs again.
#[derive(Debug, Default)]
pub struct Index {
    pub header: Option<Header>,
    /// The journal read.
    pub path: Option<PathBuf>,
    /// Identities that succeeded, sorted.
    done: Vec<u128>,
    /// (key << 64) | the identity's high 64 bits, of every task ended, sorted.
    tried: Vec<u128>,
    /// The same, of every task started (a task started and never ended was running
    /// when its run stopped).
    started: Vec<u128>,
    /// Lines that did not read as records (a torn last one included).
    pub unreadable: u64,
}

/// Why a task runs, or that it need not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It succeeded in the earlier run.
    Done,
    NeverRan,
    /// The same job and item ran, as another task.
    Changed,
    /// It ran and did not succeed.
    FailedEarlier,
    /// It started and never ended: its run died (or was killed) while it ran.
    WasRunning,
}

impl Verdict {
    pub fn reason(self) -> &'static str {
        match self {
            Verdict::Done => "done earlier",
            Verdict::NeverRan => "never ran",
            Verdict::Changed => "command changed",
            Verdict::FailedEarlier => "failed earlier",
            Verdict::WasRunning => "was running when the run stopped",
        }
    }
}

/// Why the state of an earlier run cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a runner journal (its first line is not a journal header)", .0.display())]
    NotAJournal(PathBuf),
    #[error("{} is empty", .0.display())]
    Empty(PathBuf),
    #[error("{} is a folder, not the pointer to the latest run (remove it: runner writes a file there)", .0.display())]
    LatestIsFolder(PathBuf),
    #[error("{} does not name a run (is this folder runner's state?)", .0.display())]
    NotARun(PathBuf),
}

impl Index {
    /// Reads the journal at `path`. An error only when it cannot be opened or its first
    /// line is not a journal header.
    pub fn read(path: &Path) -> Result<Index, ReadError> {
        let cannot = |source| ReadError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(cannot)?;
        let mut reader = BufReader::new(file);
        let mut index = Index {
            path: Some(path.to_path_buf()),
            ..Index::default()
        };
        let mut line = Vec::new();
        let mut first = true;
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return Err(cannot(e)),
            }
            // A last line without its newline was torn by a death mid-write.
            if line.last() != Some(&b'\n') {
                index.unreadable += 1;
                break;
            }
            if std::mem::take(&mut first) {
                match serde_json::from_slice::<Header>(&line) {
                    Ok(h) if h.runner_journal == FORMAT => index.header = Some(h),
                    _ => return Err(ReadError::NotAJournal(path.to_path_buf())),
                }
                continue;
            }
            match serde_json::from_slice::<Entry>(&line) {
                Ok(entry) => index.add(&entry),
                Err(_) => index.unreadable += 1,
            }
        }
        if index.header.is_none() {
            return Err(ReadError::Empty(path.to_path_buf()));
        }
        index.done.sort_unstable();
        index.done.dedup();
        index.tried.sort_unstable();
        index.tried.dedup();
        index.started.sort_unstable();
        index.started.dedup();
        index.started.shrink_to_fit();
        index.done.shrink_to_fit();
        index.tried.shrink_to_fit();
        Ok(index)
    }

    fn add(&mut self, entry: &Entry) {
        let (Ok(id), Ok(key)) = (
            u128::from_str_radix(&entry.id, 16),
            u64::from_str_radix(&entry.key, 16),
        ) else {
            self.unreadable += 1;
            return;
        };
        let tried = (u128::from(key) << 64) | (id >> 64);
        if entry.status == STARTED {
            self.started.push(tried);
            return;
        }
        if entry.succeeded() {
            self.done.push(id);
        }
        self.tried.push(tried);
    }

    /// How many tasks succeeded there.
    pub fn done_count(&self) -> usize {
        self.done.len()
    }

    /// What the earlier run says of the task `id` with key `key`.
    pub fn verdict(&self, id: Identity, key: u64) -> Verdict {
        if self.done.binary_search(&id).is_ok() {
            return Verdict::Done;
        }
        let this = (u128::from(key) << 64) | (id >> 64);
        if self.tried.binary_search(&this).is_ok() {
            return Verdict::FailedEarlier;
        }
        if self.started.binary_search(&this).is_ok() {
            return Verdict::WasRunning;
        }
        let any_of_key = |list: &[u128]| {
            let low = u128::from(key) << 64;
            let start = list.partition_point(|t| *t < low);
            list.get(start).is_some_and(|t| (*t >> 64) as u64 == key)
        };
        if any_of_key(&self.tried) || any_of_key(&self.started) {
            Verdict::Changed
        } else {
            Verdict::NeverRan
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u128, key: u64, status: &str) -> Entry {
        Entry {
            id: format!("{id:032x}"),
            key: format!("{key:016x}"),
            job: "j".into(),
            index: 0,
            status: status.into(),
            exit: Some(0),
            signal: None,
            attempts: 1,
            ms: 1,
        }
    }

    fn header() -> Header {
        Header {
            runner_journal: FORMAT,
            run: "r1".into(),
            file: "x.toml".into(),
            started: "now".into(),
            resumes: None,
        }
    }

    #[test]
    fn what_was_written_is_read_back_and_a_torn_last_line_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r1.journal");
        let journal = Journal::create(&path, &header(), None).unwrap();
        let no_warning = |m: String| panic!("{m}");
        let a = (7u128 << 64) | 1;
        let b = (8u128 << 64) | 2;
        journal.append(&entry(a, 1, "succeeded"), false, &no_warning);
        journal.append(&entry(b, 2, "failed"), true, &no_warning);
        journal.flush(&no_warning);
        // A record torn by a death mid-write.
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(b"{\"id\":\"0000").unwrap();
        let index = Index::read(&path).unwrap();
        assert_eq!(index.unreadable, 1);
        assert_eq!(index.verdict(a, 1), Verdict::Done);
        assert_eq!(index.verdict(b, 2), Verdict::FailedEarlier);
        assert_eq!(index.verdict((9u128 << 64) | 2, 2), Verdict::Changed);
        assert_eq!(index.verdict(3, 3), Verdict::NeverRan);
    }

    #[test]
    fn a_resumed_journal_carries_every_record_and_starts_tell_a_killed_task() {
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("r1.journal");
        let journal = Journal::create(&first, &header(), None).unwrap();
        let no_warning = |m: String| panic!("{m}");
        let (a, b, c) = ((7u128 << 64) | 1, (8u128 << 64) | 2, (9u128 << 64) | 3);
        journal.append(&entry(a, 1, "succeeded"), false, &no_warning);
        journal.append(&entry(b, 2, "failed"), false, &no_warning);
        journal.append(&Entry::started("j", 0, c, 3), false, &no_warning);
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&first)
            .unwrap();
        file.write_all(b"{\"id\":\"0000").unwrap();
        // The resumed run's journal holds it all before it writes anything of its own;
        // a task done earlier is not written again.
        let second = dir.path().join("r2.journal");
        let resumed = Journal::create(&second, &header(), Some(&first)).unwrap();
        resumed.append(&entry(a, 1, "done_earlier"), true, &no_warning);
        resumed.flush(&no_warning);
        let index = Index::read(&second).unwrap();
        assert_eq!(index.unreadable, 0, "the torn line is left behind");
        assert_eq!(index.done_count(), 1);
        assert_eq!(index.verdict(a, 1), Verdict::Done);
        assert_eq!(index.verdict(b, 2), Verdict::FailedEarlier);
        assert_eq!(index.verdict(c, 3), Verdict::WasRunning);
        assert_eq!(index.verdict((5u128 << 64) | 3, 3), Verdict::Changed);
        assert_eq!(std::fs::read_to_string(&second).unwrap().lines().count(), 4);
    }

    #[test]
    fn a_file_that_is_not_a_journal_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.journal");
        std::fs::write(&path, "hello\n").unwrap();
        assert!(Index::read(&path)
            .unwrap_err()
            .to_string()
            .contains("is not a runner journal"));
        std::fs::write(&path, b"\xff\xfe\x00garbage").unwrap();
        assert!(Index::read(&path).is_err());
        std::fs::write(&path, "").unwrap();
        assert!(Index::read(&path)
            .unwrap_err()
            .to_string()
            .contains("is empty"));
    }
}
