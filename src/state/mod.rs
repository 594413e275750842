//! The state a run leaves for the next: where it lives, who may write it, and what the
//! latest run did. By default `.runner/` in the job file's folder (`--state DIR` for a
//! CI cache), one folder per job file in it:
//!
//! ```text
//! .runner/
//!   .gitignore            "*": git leaves the folder alone
//!   ci.toml/              one job file's state
//!     lock                held (flock) by the run writing here; holds its pid
//!     latest              the id of the latest run
//!     runs/ID.journal     each kept run's journal (the newest few)
//! ```
//!
//! A state that cannot be created, read or written never stops a plain run: it goes on
//! unjournaled and says so once. Only `--resume` needs it, and fails (exit 2) without.
//! Identity is in `identity`, the journal format and its index in `journal`.

pub mod decision;
pub mod files;
pub mod identity;
pub mod journal;
pub mod uptodate;

use crate::jobfile::{Items, Job, JobFile};
use crate::render::Rendered;
use crate::task::{Status, TaskRecord};
pub use decision::{Action, Inputs, TaskId};
use files::Hashes;
pub use journal::ReadError;
use journal::{Header, Index, Journal, Verdict};
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use uptodate::{Outputs, Seen, StampRef, Stamps};

/// The reason of a task that succeeded in the run this one resumes.
pub const DONE_EARLIER: &str = "done earlier";

/// What a run (or a plan) knows of the runs before it, and what it learns of files.
#[derive(Debug, Default)]
pub struct Memory {
    /// The latest earlier run, by task identity.
    pub index: Option<Index>,
    /// `--resume`: tasks that succeeded there are done.
    pub resume: bool,
    /// `--force`: every task runs.
    pub force: bool,
    /// `--trust-remote-outputs`: outputs written on another machine count as there.
    pub trust_remote_outputs: bool,
    /// The tasks' stamps (sources and outputs), read; and written when `writes` (a run
    /// that holds the state's lock).
    pub stamps: Option<Stamps>,
    pub writes: bool,
    pub hashes: Hashes,
    /// Folders never searched for sources or outputs: the state's.
    pub skip: Vec<(u64, u64)>,
    /// `--changed-since REF`: the files changed, and the jobs they make run.
    pub changed: Option<Arc<crate::changed::Filter>>,
    /// A stamp could not be written: said once.
    said: AtomicBool,
    /// Per job (by name) with items held in memory: the occurrence of each item among
    /// equal ones before it (empty when no two are equal).
    occurrences: Mutex<HashMap<String, Arc<Vec<u32>>>>,
}

impl Memory {
    /// The memory of `file`'s state (`options`), with the earlier run `index`; `writes`
    /// when this process holds the state.
    pub fn new(file: &JobFile, options: &Options, index: Option<Index>, writes: bool) -> Memory {
        let folder = folder(file, options);
        let base = folder.parent().map(Path::to_path_buf).unwrap_or_default();
        Memory {
            index,
            resume: options.resume,
            force: options.force,
            trust_remote_outputs: options.trust_remote_outputs,
            stamps: Some(Stamps::new(&folder)),
            writes,
            skip: files::folder_id(&base).into_iter().collect(),
            changed: options.changed.clone(),
            ..Memory::default()
        }
    }

    /// How many items of `job` before `index` are equal to its own: two equal items are
    /// two tasks. Items read from a file (never held whole) and ranges count as 0.
    pub fn occurrence(&self, job: &Job, index: u64) -> u32 {
        let items = &job.items;
        let Some(count) = items.count() else { return 0 };
        if !matches!(items, Items::List(_) | Items::Fields(_)) || count < 2 {
            return 0;
        }
        let found = {
            let mut map = self.occurrences.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(job.name.clone())
                .or_insert_with(|| Arc::new(occurrences(items, count)))
                .clone()
        };
        found.get(index as usize).copied().unwrap_or(0)
    }

    /// Records a task that ended. For a job with `sources`, in the run that holds the
    /// state: a clean success writes its stamp (its sources as hashed before it ran, its
    /// outputs as after), a failure a failed one. Anywhere else, a failure or a success
    /// that is not clean (stopped by the run, outputs not all hashed) removes the stamp,
    /// so that no older success stands for it. A failure the run caused (stopped) leaves
    /// the stamp alone: its outputs' hashes tell. A write that fails is returned, to be
    /// said once.
    pub fn record(&self, job: &Job, r: &TaskRecord) -> Option<String> {
        let (Some(stamps), Some(id)) = (&self.stamps, &r.id) else {
            return None;
        };
        let none = Outputs::default();
        // A clean success: not one the run had asked to stop, every output hashed.
        // (A task restored from the cache is one: its outputs are as the run that
        // stored it left them.)
        let clean = matches!(r.status, Status::Succeeded | Status::Cached)
            && !r.stopped
            && (job.outputs.is_empty() || r.outputs.is_some());
        let recorded = !job.sources.is_empty() && self.writes;
        match r.status {
            // A failure of its own never leaves an older success behind: even for a
            // job without `sources` now, or in a run that does not hold the state.
            Status::Failed if !r.stopped && !recorded => stamps.remove(id.key),
            Status::Failed if !r.stopped => {
                let failed = StampRef {
                    identity: id.identity,
                    failed: true,
                    sources: &[],
                    outputs: &none,
                };
                return self.write(stamps, id.key, &job.name, &r.item, failed);
            }
            Status::Succeeded | Status::Cached if !clean => stamps.remove(id.key),
            Status::Succeeded | Status::Cached if recorded => {
                let sources = id.inputs.as_ref()?.sources.as_deref()?;
                let stamp = StampRef {
                    identity: id.identity,
                    failed: false,
                    sources,
                    outputs: r.outputs.as_ref().unwrap_or(&none),
                };
                return self.write(stamps, id.key, &job.name, &r.item, stamp);
            }
            // Stopped by the run: what it left is checked by its outputs' hashes.
            _ => {}
        }
        None
    }

    /// Writes back the stamp of an up-to-date task whose files' stats changed.
    pub fn refresh(&self, job: &Job, item: &str, id: &TaskId) -> Option<String> {
        let (Some(stamps), true) = (&self.stamps, self.writes) else {
            return None;
        };
        let stamp = id.inputs.as_ref()?.refreshed.as_ref()?;
        self.write(stamps, id.key, &job.name, item, stamp.parts())
    }

    fn write(
        &self,
        stamps: &Stamps,
        key: u64,
        job: &str,
        item: &str,
        stamp: StampRef<'_>,
    ) -> Option<String> {
        let written = stamps.write(key, job, item, stamp);
        if written.is_err() && stamp.failed {
            // A failure not written: at least no older success may stand for it.
            stamps.remove(key);
        }
        match written {
            Ok(()) => None,
            Err(e) if !self.said.swap(true, Ordering::SeqCst) => Some(format!(
                "cannot record what the tasks of `{job}` read and wrote in the state: {e}; they will run again next time"
            )),
            Err(_) => None,
        }
    }
}

/// The occurrence of each of `count` items among the equal ones before it; empty when
/// all differ.
fn occurrences(items: &Items, count: u64) -> Vec<u32> {
    let mut seen: HashMap<String, u32> = HashMap::new();
    let mut found = Vec::with_capacity(count as usize);
    let mut any = false;
    for index in 0..count {
        let n = seen
            .entry(items.in_memory(index).unwrap_or_default())
            .or_insert(0);
        found.push(*n);
        any |= *n > 0;
        *n += 1;
    }
    if !any {
        found = Vec::new();
    }
    found
}

/// What a task is, what happens to it and why, given what `memory` holds: unchanged
/// (`--changed-since`: no source of it changed), done earlier (`--resume`), up to date
/// (its `sources` and `outputs`), or run, with the reason. `item` is the label.
///
/// With `--changed-since`, the change filter comes first: a task it leaves out is
/// `unchanged`; one it lets through is then decided as without it (it may still be up
/// to date, or done earlier), and when it runs, the reason is the change (the file that
/// made it run) or, for a job without `sources`, that nothing can tell.
pub fn decide(
    file: &JobFile,
    job: &Job,
    index: u64,
    item: &str,
    rendered: &Rendered,
    memory: &Memory,
) -> TaskId {
    use crate::changed::Judged;
    let why = match memory.changed.as_deref().map(|f| f.judge(job, rendered)) {
        None => None,
        Some(Judged::Touched(reason)) => Some(reason),
        Some(Judged::CannotTell) => Some(crate::changed::CANNOT_TELL.to_string()),
        Some(Judged::Unchanged(reason)) => {
            let (identity, key) = identify(file, job, index, item, rendered, memory);
            return TaskId {
                identity,
                key,
                action: Action::Unchanged,
                reason,
                inputs: None,
            };
        }
    };
    let mut id = decide_locally(file, job, index, item, rendered, memory);
    if let (Some(why), Action::Run) = (why, id.action) {
        id.reason = why;
    }
    id
}

/// A task's identity and its key (state.md, Task identity).
fn identify(
    file: &JobFile,
    job: &Job,
    index: u64,
    item: &str,
    rendered: &Rendered,
    memory: &Memory,
) -> (identity::Identity, u64) {
    let task = identity::Task {
        job: &job.name,
        label: item,
        occurrence: memory.occurrence(job, index),
    };
    (
        identity::of(&file.dir, &task, rendered, &memory.hashes),
        identity::key(&task),
    )
}

/// [`decide`] as without `--changed-since`.
fn decide_locally(
    file: &JobFile,
    job: &Job,
    index: u64,
    item: &str,
    rendered: &Rendered,
    memory: &Memory,
) -> TaskId {
    let (identity, key) = identify(file, job, index, item, rendered, memory);
    let verdict = memory
        .index
        .as_ref()
        .map_or(Verdict::NeverRan, |index| index.verdict(identity, key));
    let id = |action, reason: &str, inputs| TaskId {
        identity,
        key,
        action,
        reason: reason.to_string(),
        inputs,
    };
    // Its output is a stream, not a stored result: it runs again.
    let streams = if job.to.is_some() {
        Some("its stdout feeds a queue: it runs again")
    } else if job.is_streaming() {
        Some("it reads a queue on stdin: it runs again")
    } else {
        None
    };
    if let Some(why) = streams {
        if verdict == Verdict::Done || !job.sources.is_empty() {
            // The stream is the reason only where another would not be true.
            let why = match verdict {
                _ if memory.force => "forced",
                Verdict::Done => why,
                other => other.reason(),
            };
            return id(Action::Run, why, None);
        }
    }
    if job.sources.is_empty() {
        return match verdict {
            _ if memory.force => id(Action::Run, "forced", None),
            Verdict::Done if memory.resume => id(Action::DoneEarlier, DONE_EARLIER, None),
            Verdict::Done => id(
                Action::Run,
                "succeeded earlier; runs again without --resume",
                None,
            ),
            other => id(Action::Run, other.reason(), None),
        };
    }
    let no_stamp = match verdict {
        Verdict::Done => "its sources were not recorded",
        other => other.reason(),
    };
    let seen = Seen {
        stamps: memory.stamps.as_ref(),
        hashes: &memory.hashes,
        skip: &memory.skip,
        trust_remote: memory.trust_remote_outputs,
    };
    let look = uptodate::look(&seen, rendered, identity, key, memory.force, no_stamp);
    let inputs = Some(Arc::new(Inputs {
        sources: look.sources,
        refreshed: look.refreshed,
        problem: look.problem,
    }));
    match look.reason {
        None if memory.resume && verdict == Verdict::Done => {
            id(Action::DoneEarlier, DONE_EARLIER, inputs)
        }
        None => id(Action::UpToDate, uptodate::UP_TO_DATE, inputs),
        Some(reason) => id(Action::Run, &reason, inputs),
    }
}

/// Runs kept per job file; older journals are deleted when a run starts.
pub const KEPT_RUNS: usize = 5;

/// How a command uses the state.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--state DIR`.
    pub dir: Option<PathBuf>,
    /// `--resume`.
    pub resume: bool,
    /// `--force`.
    pub force: bool,
    /// `--trust-remote-outputs`.
    pub trust_remote_outputs: bool,
    /// `--changed-since REF`, answered (git run) before the state is touched.
    pub changed: Option<Arc<crate::changed::Filter>>,
}

/// A run's state: the journal it writes (none when the state cannot be used), the
/// index of the run before it, and what to tell the user about either.
///
/// The journal is created (with what it carries over from the run it resumes) but not
/// yet the latest run: [`RunState::commit`] makes it so once nothing can refuse the run
/// any more. A state dropped uncommitted (the run refused to start) removes its journal
/// and leaves `latest` and the older journals as they were.
#[derive(Default)]
pub struct RunState {
    pub journal: Option<Journal>,
    pub earlier: Option<Index>,
    /// Said once, on stderr, before the run: why the run is not journaled, or what of
    /// the earlier journal could not be read.
    pub warnings: Vec<String>,
    /// Held for the run: the lock of the job file's state.
    pub lock: Option<File>,
    /// The journal not yet made the latest run: the state folder and the run's id.
    uncommitted: Option<(PathBuf, String)>,
}

impl RunState {
    /// The run starts for good: its journal becomes the latest run (`latest` moves to
    /// it, whose carried records are on disk already) and older journals are pruned.
    /// Returns a warning when `latest` cannot be written (the run goes on; a `--resume`
    /// would then continue the run before it).
    pub fn commit(&mut self) -> Option<String> {
        let (dir, run) = self.uncommitted.take()?;
        let pointer = dir.join("latest");
        if let Err(e) = write_atomically(&pointer, run.as_bytes()) {
            return Some(format!(
                "cannot write {}: {e}; the run goes on, but a --resume would not continue it",
                pointer.display()
            ));
        }
        prune(&dir.join("runs"), &run);
        None
    }
}

impl Drop for RunState {
    fn drop(&mut self) {
        // Never committed: the run did not start; its journal holds nothing of its own.
        if let Some((dir, run)) = self.uncommitted.take() {
            let _ = std::fs::remove_file(dir.join("runs").join(format!("{run}.journal")));
        }
    }
}

/// Where the state of `file` lives: the folder for it, under `--state DIR` or the
/// job file's `.runner/`.
pub fn folder(file: &JobFile, options: &Options) -> PathBuf {
    let base = options
        .dir
        .clone()
        .unwrap_or_else(|| file.dir.join(".runner"));
    base.join(key(file, options))
}

/// The name of a job file's folder in the state: its file name beside it; under
/// `--state DIR` (which several job files may share) its path as given, `/` made `_`.
fn key(file: &JobFile, options: &Options) -> String {
    let name = || {
        file.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "jobs".into())
    };
    if options.dir.is_none() {
        return name();
    }
    let parts: Vec<String> = file
        .path
        .components()
        .filter_map(|c| match c {
            Component::Normal(p) => Some(p.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    if parts.is_empty() {
        name()
    } else {
        parts.join("_")
    }
}

/// What the reader of a journal says of its lines that could not be read.
pub fn unreadable_warning(index: &Index, shown: &str) -> Option<String> {
    match index.unreadable {
        0 => None,
        1 => Some(format!(
            "1 record of the latest journal in {shown} could not be read and was ignored (a run that died mid-write leaves one)"
        )),
        n => Some(format!(
            "{n} records of the latest journal in {shown} could not be read and were ignored (a run that died mid-write leaves one)"
        )),
    }
}

/// The state for a new run `run` of `file`: the earlier run read, the lock taken, the
/// journal created, carrying over (with `--resume`) every record of the run it resumes.
/// Only `--resume` turns a problem into an error (said as the error's message, exit 2).
/// `latest` does not move and nothing is pruned until [`RunState::commit`].
pub fn open(
    file: &JobFile,
    options: &Options,
    run: &str,
    started: &str,
) -> Result<RunState, StateError> {
    let dir = folder(file, options);
    let mut state = RunState::default();
    let shown = dir.display().to_string();
    let earlier = latest(&dir);
    match (&earlier, options.resume) {
        (Ok(None), true) => {
            return Err(StateError::NothingToResume {
                file: file.path.clone(),
                dir,
            })
        }
        (Err(_), true) => return Err(StateError::Unreadable(earlier.unwrap_err())),
        (Err(e), false) => state.warnings.push(format!(
            "{e}; this run starts afresh (and is journaled anew)"
        )),
        _ => {}
    }
    state.earlier = earlier.ok().flatten();
    if let Some(warning) = state
        .earlier
        .as_ref()
        .and_then(|index| unreadable_warning(index, &shown))
    {
        state.warnings.push(warning);
    }
    match prepare(&dir) {
        Ok(()) => {}
        Err(source) if options.resume => return Err(StateError::CannotWrite { dir, source }),
        Err(e) => {
            state.warnings.push(format!(
                "cannot write the state in {shown}: {e}; the run goes on, but it cannot be resumed"
            ));
            return Ok(state);
        }
    }
    match lock(&dir) {
        Ok(lock) => state.lock = Some(lock),
        Err(holder) if options.resume => {
            return Err(StateError::Locked {
                file: file.path.clone(),
                holder,
                dir,
            })
        }
        Err(holder) => {
            state.warnings.push(format!(
                "another run of {} is running{holder} and holds its state in {shown}: this run is not journaled (it cannot be resumed)",
                file.path.display()
            ));
            return Ok(state);
        }
    }
    let resumed = state.earlier.as_ref().filter(|_| options.resume);
    let header = Header {
        runner_journal: journal::FORMAT,
        run: run.to_string(),
        file: file.path.display().to_string(),
        started: started.to_string(),
        resumes: resumed.and_then(|index| index.header.as_ref().map(|h| h.run.clone())),
    };
    let path = dir.join("runs").join(format!("{run}.journal"));
    // What the resumed run knew is on disk in the new journal before it can become
    // the latest: a run killed at any moment after leaves nothing forgotten.
    let carried = resumed.and_then(|index| index.path.as_deref());
    match Journal::create(&path, &header, carried) {
        Ok(journal) => {
            state.journal = Some(journal);
            state.uncommitted = Some((dir, run.to_string()));
        }
        Err(e) => {
            // Nothing half-written stays behind to be pruned for, or resumed from.
            let _ = std::fs::remove_file(&path);
            if options.resume {
                return Err(StateError::Journal { path, source: e });
            }
            state.warnings.push(format!(
                "cannot write the journal {}: {e}; the run goes on, but it cannot be resumed",
                path.display()
            ));
        }
    }
    Ok(state)
}

/// The latest run of `file`, read only (for `runner plan`): `--resume` without one is
/// an error; a state that cannot be read is a warning (returned) for a plain plan.
pub fn read_latest(
    file: &JobFile,
    options: &Options,
) -> Result<(Option<Index>, Option<String>), StateError> {
    let dir = folder(file, options);
    match latest(&dir) {
        Ok(None) if options.resume => Err(StateError::NothingToResume {
            file: file.path.clone(),
            dir,
        }),
        Ok(index) => {
            let shown = dir.display().to_string();
            let warning = index
                .as_ref()
                .and_then(|index| unreadable_warning(index, &shown));
            Ok((index, warning))
        }
        Err(e) if options.resume => Err(StateError::Unreadable(e)),
        Err(e) => Ok((None, Some(e.to_string()))),
    }
}

/// The index of the latest run in `dir`, if there is one.
pub fn latest(dir: &Path) -> Result<Option<Index>, ReadError> {
    let pointer = dir.join("latest");
    if pointer.is_dir() {
        return Err(ReadError::LatestIsFolder(pointer));
    }
    let id = match std::fs::read_to_string(&pointer) {
        Ok(id) => id.trim().to_string(),
        // No state there (yet), or its place is taken by a file (said when writing).
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(None)
        }
        Err(source) => {
            return Err(ReadError::Io {
                path: pointer,
                source,
            })
        }
    };
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(ReadError::NotARun(pointer));
    }
    Index::read(&dir.join("runs").join(format!("{id}.journal"))).map(Some)
}

/// Why a run cannot use the state it needs (only `--resume` makes these errors; a
/// plain run says them as warnings and goes on).
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("--resume: there is no earlier run of {} to resume (its state would be in {})", file.display(), dir.display())]
    NothingToResume { file: PathBuf, dir: PathBuf },
    #[error("--resume: {0}")]
    Unreadable(ReadError),
    #[error("--resume: cannot write the state in {}: {source}", dir.display())]
    CannotWrite {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--resume: another run of {} is running{holder} and holds its state in {}; wait for it to end", file.display(), dir.display())]
    Locked {
        file: PathBuf,
        holder: LockRefused,
        dir: PathBuf,
    },
    #[error("--resume: cannot write the journal {}: {source}", path.display())]
    Journal {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Why the state's lock was not taken, said after "another run … is running".
#[derive(Debug, thiserror::Error)]
pub enum LockRefused {
    /// Held by another run; its pid when it wrote one.
    #[error("{}", .0.map(|pid| format!(" (pid {pid})")).unwrap_or_default())]
    Held(Option<u32>),
    #[error(" (its lock {} cannot be opened: {source})", path.display())]
    Unopenable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Creates the state folders, and a `.gitignore` that keeps git out of them.
fn prepare(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir.join("runs"))?;
    if let Some(base) = dir.parent() {
        let ignore = base.join(".gitignore");
        if !ignore.exists() {
            std::fs::write(
                ignore,
                "# runner's state (see docs/state.md): not for git\n*\n",
            )?;
        }
    }
    Ok(())
}

/// Takes the lock of `dir` without waiting; on refusal, " (pid N)" naming the holder
/// when it wrote its pid.
fn lock(dir: &Path) -> Result<File, LockRefused> {
    let path = dir.join("lock");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|source| LockRefused::Unopenable {
            path: path.clone(),
            source,
        })?;
    if rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let holder = holder.trim();
        return Err(LockRefused::Held(holder.parse().ok()));
    }
    let _ = file.set_len(0);
    let _ = write!(file, "{}", std::process::id());
    Ok(file)
}

/// Writes `path` whole or not at all (a temporary file renamed over it).
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Deletes all but the newest [`KEPT_RUNS`] journals (never the current run's).
fn prune(runs: &Path, current: &str) {
    let Ok(entries) = std::fs::read_dir(runs) else {
        return;
    };
    let mut journals: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".journal"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    journals.sort_by_key(|j| std::cmp::Reverse(j.0));
    let current = format!("{current}.journal");
    for (_, path) in journals.into_iter().skip(KEPT_RUNS) {
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy() != current)
        {
            let _ = std::fs::remove_file(path);
        }
    }
}
