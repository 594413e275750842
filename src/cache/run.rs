//! The cache as one run uses it (cache.md): which tasks, their keys, looking an entry up,
//! restoring it (every blob verified as read, to temporary files renamed into place only
//! when all are whole), and storing a success in the background (each blob before the
//! entry that names it) while the run goes on. [`Cache::finish`] waits for the uploads
//! at the end of the run.
//!
//! A store that fails is said once and left alone for the rest of the run: the tasks
//! run, and the exit status never changes because of the cache.

use super::entry::{self, Entry, EntryError, OutputFile};
use super::verify::{self, Verifying};
use super::{Digest, Key, Mode, Store, StoreError};
use crate::jobfile::{Items, Job};
use crate::pattern::Pattern;
use crate::render::Rendered;
use crate::state::decision::TaskId;
use crate::task::Event;
use crossbeam_channel::{Receiver, Sender};
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::SystemTime;

/// The default of `--cache-max-entry`: 1 GiB.
pub const MAX_ENTRY: u64 = 1 << 30;

/// How long an upload thread that emptied its queue waits before it looks again (cut
/// short at the run's end). A run of short tasks then wakes it once per pause, not once
/// per task, and its uploads are done together instead of between every two tasks: on
/// 2 cores, 1,000 tasks storing one 10 KiB output each cost 0.77 of the time without a
/// cache with a wake per task, 0.89–1.02 with a pause of 20–50 ms (docs/benchmarks.md).
const PAUSE: std::time::Duration = std::time::Duration::from_millis(25);

/// How a run uses the cache: from the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    pub mode: Mode,
    /// `--cache-max-entry`: an entry (its files and printed output) larger is not stored.
    pub max_entry: u64,
    /// `RUNNER_CACHE_KEY`: entries are signed, and only signed ones restored.
    pub secret: Option<Vec<u8>>,
}

/// A run's cache as the command line opened it: the store and how it is used.
#[derive(Clone)]
pub struct Opened {
    pub store: Arc<dyn Store>,
    pub settings: Settings,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("store", &self.store.describe())
            .field("mode", &self.settings.mode)
            .field("max_entry", &self.settings.max_entry)
            .field("signed", &self.settings.secret.is_some())
            .finish()
    }
}

/// What the cache did in a run: the summary line and the JSON report's `cache`.
#[derive(Debug, Default)]
pub struct Counts {
    pub restored: AtomicU64,
    pub restored_bytes: AtomicU64,
    pub stored: AtomicU64,
    pub stored_bytes: AtomicU64,
    /// Looked up and not found, or found and not usable (damaged, a blob missing).
    pub missed: AtomicU64,
    /// Entries not restored because unsigned or wrongly signed (`RUNNER_CACHE_KEY`).
    pub ignored: AtomicU64,
    /// Successes not stored: too large, an output that is not a regular file, a file
    /// that changed while it was stored.
    pub not_stored: AtomicU64,
}

/// [`Counts`] read at the end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Totals {
    pub restored: u64,
    pub restored_bytes: u64,
    pub stored: u64,
    pub stored_bytes: u64,
    pub missed: u64,
    pub ignored: u64,
    pub not_stored: u64,
}

impl Totals {
    /// `cache: 12 restored (3.4 MiB), 5 stored (1.2 MiB)`, with misses, ignored and not
    /// stored entries when there were any.
    pub fn line(&self) -> String {
        let mut line = format!(
            "cache: {} restored ({}), {} stored ({})",
            self.restored,
            crate::size::human(self.restored_bytes),
            self.stored,
            crate::size::human(self.stored_bytes)
        );
        if self.missed > 0 {
            line.push_str(&format!(", {} missed", self.missed));
        }
        if self.ignored > 0 {
            line.push_str(&format!(
                ", {} ignored (unsigned or wrongly signed)",
                self.ignored
            ));
        }
        if self.not_stored > 0 {
            line.push_str(&format!(", {} not stored", self.not_stored));
        }
        line
    }
}

/// Whether a job's tasks may be cached: `cache` not false, both `sources` and
/// `outputs`, neither feeding a queue nor fed by one.
pub fn cacheable(job: &Job) -> bool {
    job.cache
        && !job.sources.is_empty()
        && !job.outputs.is_empty()
        && job.to.is_none()
        && !job.is_streaming()
        && !matches!(job.items, Items::Queue(_))
}

/// The cache key of a task decided to run: `None` when it cannot have one (its sources
/// could not be read, or a pattern names an absolute path, which never enters a key).
pub fn key_of(job: &Job, rendered: &Rendered, id: &TaskId) -> Option<Key> {
    let sources = id.inputs.as_ref()?.sources.as_ref()?;
    let absolute = |p: &String| p.starts_with('/');
    if rendered.sources.iter().any(absolute) || rendered.outputs.iter().any(absolute) {
        return None;
    }
    let sources: Vec<(&[u8], [u8; 32])> = sources
        .iter()
        .map(|r| (crate::state::files::bytes(&r.path), r.hash))
        .collect();
    let env: Vec<(String, Option<String>)> = job
        .cache_env
        .iter()
        .map(|name| (name.clone(), std::env::var(name).ok()))
        .collect();
    Some(super::key::of(&super::key::Inputs {
        identity: id.identity,
        sources: &sources,
        outputs: &rendered.outputs,
        env: &env,
    }))
}

/// What looking an entry up found.
pub enum Looked {
    Hit(Entry),
    Absent,
    /// An entry that is not to be used (damaged, unsigned, wrongly signed).
    Unusable(EntryError),
    /// The store failed.
    Failed(StoreError),
}

/// Looks `key` up in `store` and reads the entry (its MAC checked with `secret`): no
/// blob is fetched. For `runner plan` and the run alike.
pub fn look_up(store: &dyn Store, key: &Key, secret: Option<&[u8]>) -> Looked {
    match store.lookup(key) {
        Err(e) => Looked::Failed(e),
        Ok(None) => Looked::Absent,
        Ok(Some(bytes)) => match Entry::decode(&bytes, key, secret) {
            Ok(entry) => Looked::Hit(entry),
            Err(e) => Looked::Unusable(e),
        },
    }
}

/// The reason of a restored task: `restored from cache (stored by HOST at TIME)`.
pub fn reason(entry: &Entry) -> String {
    format!(
        "restored from cache (stored by {} at {})",
        crate::diagnostic::printable(&entry.host, 200),
        humantime::format_rfc3339_millis(entry.stored)
    )
}

/// What a restore leaves for the task: what it printed, to be replayed (each a file
/// read from its start), and how many bytes came from the store.
pub struct Restored {
    pub stdout: Option<File>,
    pub stderr: Option<File>,
    pub bytes: u64,
}

/// Why an entry found was not restored: a miss (the task runs).
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("it names `{0}`, which the job's `outputs` do not match")]
    Outside(String),
    #[error("its blob {digest} (for {what}) is not in the store")]
    Missing { digest: String, what: String },
    #[error("its blob for {what} is damaged: {source}")]
    Damaged {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Store(StoreError),
}

/// The per-run cache: the store, how it is used, what it did, and the uploads under way.
pub struct Cache {
    store: Arc<dyn Store>,
    settings: Settings,
    /// Set by the first failure of the store: nothing more is asked of it.
    disabled: AtomicBool,
    pub counts: Counts,
    /// The run's messages (warnings), to the terminal writer.
    events: Sender<Event>,
    uploads: Mutex<Option<Queue>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    host: String,
}

impl Cache {
    pub fn new(
        store: Arc<dyn Store>,
        settings: Settings,
        events: Sender<Event>,
        host: &str,
    ) -> Arc<Cache> {
        Arc::new(Cache {
            store,
            settings,
            disabled: AtomicBool::new(false),
            counts: Counts::default(),
            events,
            uploads: Mutex::new(None),
            threads: Mutex::new(Vec::new()),
            host: host.to_string(),
        })
    }

    pub fn describe(&self) -> String {
        self.store.describe()
    }

    fn live(&self) -> bool {
        !self.disabled.load(Ordering::SeqCst)
    }

    /// Whether hits are restored now.
    pub fn reads(&self) -> bool {
        self.settings.mode.reads() && self.live()
    }

    /// Whether successes are stored now.
    pub fn writes(&self) -> bool {
        self.settings.mode.writes() && self.live()
    }

    fn say(&self, text: String) {
        let _ = self.events.send(Event::Note(text));
    }

    /// The store failed: said once, and the cache is left alone from now on.
    fn failed(&self, e: &StoreError) {
        if !self.disabled.swap(true, Ordering::SeqCst) {
            // The error names the store (its URL, or the path in the folder).
            self.say(format!(
                "warning: cache: {e}; cache disabled for the rest of this run"
            ));
        }
    }

    /// Looks the entry of `key` up for the task `label`: the entry when there is a
    /// usable one; a miss otherwise (counted, and said when the entry was not usable).
    pub fn find(&self, key: &Key, label: &str) -> Option<Entry> {
        if !self.reads() {
            return None;
        }
        match look_up(&*self.store, key, self.settings.secret.as_deref()) {
            Looked::Hit(entry) => Some(entry),
            Looked::Absent => {
                self.counts.missed.fetch_add(1, Ordering::Relaxed);
                None
            }
            Looked::Unusable(e) => {
                let counter = match e {
                    EntryError::Damaged(_) => &self.counts.missed,
                    EntryError::Unsigned | EntryError::WrongSignature => &self.counts.ignored,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                self.say(format!(
                    "warning: {label}: not restored from the cache: {e}; it runs"
                ));
                None
            }
            Looked::Failed(e) => {
                self.failed(&e);
                None
            }
        }
    }

    /// Restores `entry` for a task in `cwd` whose `outputs` are `patterns`: every blob
    /// fetched to a temporary file beside its destination and verified as read; only
    /// when all are whole are they given their mode and renamed into place. Anything
    /// wrong is a miss: counted, said (a failure of the store disables the cache), and
    /// no temporary file and no output is left.
    pub fn restore(
        &self,
        entry: &Entry,
        cwd: &Path,
        patterns: &[String],
        label: &str,
    ) -> Option<Restored> {
        match self.try_restore(entry, cwd, patterns) {
            Ok(restored) => {
                self.counts.restored.fetch_add(1, Ordering::Relaxed);
                self.counts
                    .restored_bytes
                    .fetch_add(restored.bytes, Ordering::Relaxed);
                Some(restored)
            }
            Err(RestoreError::Store(e)) => {
                self.failed(&e);
                None
            }
            Err(e) => {
                self.counts.missed.fetch_add(1, Ordering::Relaxed);
                self.say(format!(
                    "warning: {label}: not restored from the cache: {e}; it runs"
                ));
                None
            }
        }
    }

    fn try_restore(
        &self,
        entry: &Entry,
        cwd: &Path,
        patterns: &[String],
    ) -> Result<Restored, RestoreError> {
        let patterns: Vec<Pattern> = patterns
            .iter()
            .filter_map(|p| crate::pattern::parse(p).ok())
            .collect();
        for file in &entry.files {
            if !entry::relative_inside(&file.path) || !matches_any(&patterns, &file.path) {
                return Err(RestoreError::Outside(file.path.display().to_string()));
            }
        }
        let mut bytes = 0;
        // Every file whole and verified before the first is renamed into place.
        let mut ready: Vec<(tempfile::NamedTempFile, &OutputFile, PathBuf)> = Vec::new();
        for file in &entry.files {
            let dest = cwd.join(&file.path);
            let folder = dest.parent().unwrap_or(cwd).to_path_buf();
            let write = |source| RestoreError::Write {
                path: dest.clone(),
                source,
            };
            std::fs::create_dir_all(&folder).map_err(write)?;
            let mut temp = tempfile::Builder::new()
                .prefix(".runner-cache-")
                .tempfile_in(&folder)
                .map_err(write)?;
            let what = format!("output {}", file.path.display());
            self.fetch_into(&file.digest, &what, temp.as_file_mut())?;
            bytes += file.digest.size;
            ready.push((temp, file, dest));
        }
        let mut printed =
            |digest: &Option<Digest>, what: &str| -> Result<Option<File>, RestoreError> {
                let Some(digest) = digest else {
                    return Ok(None);
                };
                let mut file = tempfile::tempfile().map_err(|source| RestoreError::Write {
                    path: std::env::temp_dir(),
                    source,
                })?;
                self.fetch_into(digest, what, &mut file)?;
                file.rewind().map_err(|source| RestoreError::Write {
                    path: std::env::temp_dir(),
                    source,
                })?;
                bytes += digest.size;
                Ok(Some(file))
            };
        let stdout = printed(&entry.stdout, "what it printed on stdout")?;
        let stderr = printed(&entry.stderr, "what it printed on stderr")?;
        for (temp, file, dest) in ready {
            use std::os::unix::fs::PermissionsExt;
            let mode = if file.executable { 0o755 } else { 0o644 };
            let write = |source| RestoreError::Write {
                path: dest.clone(),
                source,
            };
            temp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(mode))
                .map_err(write)?;
            temp.persist(&dest).map_err(|e| write(e.error))?;
        }
        Ok(Restored {
            stdout,
            stderr,
            bytes,
        })
    }

    /// Copies the blob `digest` into `out`, verified as it is read.
    fn fetch_into(&self, digest: &Digest, what: &str, out: &mut File) -> Result<(), RestoreError> {
        let reader = self
            .store
            .fetch_blob(digest)
            .map_err(RestoreError::Store)?
            .ok_or_else(|| RestoreError::Missing {
                digest: digest.hex(),
                what: what.to_string(),
            })?;
        let mut verified = Verifying::new(reader, *digest);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match verified.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(RestoreError::Damaged {
                        what: what.to_string(),
                        source,
                    })
                }
            };
            out.write_all(&buf[..n])
                .map_err(|source| RestoreError::Write {
                    path: std::env::temp_dir(),
                    source,
                })?;
        }
        Ok(())
    }

    /// Stores the success of the task `label` (key `key`) in the background: its
    /// outputs in `cwd` as `patterns` find them, and what it printed. An output that is
    /// not a regular file, or an entry larger than `--cache-max-entry`, is not stored,
    /// and said.
    pub fn store(
        self: &Arc<Cache>,
        key: Key,
        label: &str,
        cwd: &Path,
        patterns: &[String],
        printed: (Option<Captured>, Option<Captured>),
    ) {
        if !self.writes() {
            return;
        }
        let found = crate::state::files::find(cwd, patterns, &[]);
        if !found.unmatched.is_empty() || !found.problems.is_empty() {
            // Not a clean success: said already, by the stamp's side.
            return;
        }
        let mut files = Vec::with_capacity(found.files.len());
        let mut total = 0u64;
        for file in &found.files {
            let path = file.path(cwd);
            let why = match std::fs::symlink_metadata(&path) {
                Ok(m) if m.file_type().is_symlink() => Some("a symbolic link".to_string()),
                Ok(m) if !m.is_file() => Some("not a regular file".to_string()),
                Ok(m) => {
                    use std::os::unix::fs::PermissionsExt;
                    total += m.len();
                    let executable = m.permissions().mode() & 0o111 != 0;
                    files.push((file.rel.clone(), executable, Seen::of(&m)));
                    None
                }
                Err(e) => Some(crate::state::files::why(&e)),
            };
            if let Some(why) = why {
                self.counts.not_stored.fetch_add(1, Ordering::Relaxed);
                self.say(format!(
                    "{label}: not stored in the cache: its output {} is {why} (only regular files are stored)",
                    file.name
                ));
                return;
            }
        }
        let (stdout, stderr) = printed;
        total += stdout.as_ref().map_or(0, |c| c.digest.size)
            + stderr.as_ref().map_or(0, |c| c.digest.size);
        if total > self.settings.max_entry {
            self.counts.not_stored.fetch_add(1, Ordering::Relaxed);
            self.say(format!(
                "{label}: not stored in the cache: its entry would be {}, more than --cache-max-entry {}",
                crate::size::human(total),
                crate::size::human(self.settings.max_entry)
            ));
            return;
        }
        let upload = Upload {
            key,
            label: label.to_string(),
            cwd: cwd.to_path_buf(),
            files,
            stdout,
            stderr,
        };
        let mut uploads = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
        if uploads.is_none() {
            let (tx, rx) = crossbeam_channel::unbounded::<Upload>();
            let (wake, woken) = crossbeam_channel::bounded::<()>(0);
            let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
            for n in 0..self.store.uploaders().max(1) {
                let (cache, rx, woken) = (self.clone(), rx.clone(), woken.clone());
                match std::thread::Builder::new()
                    .name(format!("cache-upload-{n}"))
                    .spawn(move || cache.upload_all(&rx, &woken))
                {
                    Ok(thread) => threads.push(thread),
                    Err(_) => break,
                }
            }
            if threads.is_empty() {
                // No thread for it: stored here, now.
                drop(threads);
                drop(uploads);
                self.upload(upload);
                return;
            }
            *uploads = Some(Queue { tx, _wake: wake });
        }
        if let Some(queue) = uploads.as_ref() {
            let _ = queue.tx.send(upload);
        }
    }

    /// An upload thread: waits for the first upload of a burst, then stores what is
    /// queued and pauses ([`PAUSE`]), until a pause ends with nothing queued. `woken`
    /// never carries anything: [`Cache::finish`] drops its sender, which ends a pause
    /// at once.
    fn upload_all(&self, uploads: &Receiver<Upload>, woken: &Receiver<()>) {
        while let Ok(first) = uploads.recv() {
            self.upload(first);
            loop {
                while let Ok(upload) = uploads.try_recv() {
                    self.upload(upload);
                }
                if let Err(crossbeam_channel::RecvTimeoutError::Disconnected) =
                    woken.recv_timeout(PAUSE)
                {
                    // The run's end: what is left, then done.
                    for upload in uploads.iter() {
                        self.upload(upload);
                    }
                    return;
                }
                if uploads.is_empty() {
                    break;
                }
            }
        }
    }

    /// Stores one entry: every blob, then the entry that names them.
    fn upload(&self, upload: Upload) {
        if !self.writes() {
            return;
        }
        match self.try_upload(&upload) {
            Ok(bytes) => {
                self.counts.stored.fetch_add(1, Ordering::Relaxed);
                self.counts.stored_bytes.fetch_add(bytes, Ordering::Relaxed);
            }
            Err(UploadError::Store(e)) => self.failed(&e),
            Err(UploadError::Changed(what)) => {
                self.counts.not_stored.fetch_add(1, Ordering::Relaxed);
                self.say(format!(
                    "{}: not stored in the cache: {what} changed while it was stored",
                    upload.label
                ));
            }
            Err(UploadError::Unreadable(what, e)) => {
                self.counts.not_stored.fetch_add(1, Ordering::Relaxed);
                self.say(format!(
                    "{}: not stored in the cache: cannot read {what}: {}",
                    upload.label,
                    crate::state::files::why(&e)
                ));
            }
        }
    }

    fn try_upload(&self, upload: &Upload) -> Result<u64, UploadError> {
        let mut files = Vec::with_capacity(upload.files.len());
        let mut total = 0;
        for (rel, executable, seen) in &upload.files {
            let path = upload.cwd.join(rel);
            let what = || format!("its output {}", crate::pattern::shown(rel));
            let unreadable = |e| UploadError::Unreadable(what(), e);
            let mut first = File::open(&path).map_err(unreadable)?;
            // Named by what it holds now: only if it is still as the task left it.
            let as_left = |file: &File| file.metadata().map(|m| Seen::of(&m)).ok() == Some(*seen);
            if !as_left(&first) {
                return Err(UploadError::Changed(what()));
            }
            // Read once where the store can name a blob by what it read (a folder);
            // otherwise hashed, then stored and checked against its hash as it goes.
            let mut hashing = verify::Hashing::new(&mut first);
            let digest = match self.store.store_read(&mut hashing) {
                Ok(Some(digest)) => digest,
                Ok(None) => {
                    let digest = verify::digest_of(&mut first).map_err(unreadable)?;
                    let file = File::open(&path).map_err(unreadable)?;
                    self.put_blob(&digest, file, &what)?;
                    digest
                }
                Err(StoreError::Io { source, .. }) if hashing.failed() => {
                    return Err(unreadable(source));
                }
                Err(e) => return Err(UploadError::Store(e)),
            };
            // Written to while it was read: the blob stored is whole (named by what
            // was read), but not what the task left, so no entry names it.
            if !as_left(&first) {
                return Err(UploadError::Changed(what()));
            }
            total += digest.size;
            files.push(OutputFile {
                path: rel.clone(),
                digest,
                executable: *executable,
            });
        }
        let mut printed = |captured: &Option<Captured>, what: &str| {
            let Some(captured) = captured else {
                return Ok(None);
            };
            let file = captured
                .reader()
                .map_err(|e| UploadError::Unreadable(what.to_string(), e))?;
            self.put_blob(&captured.digest, file, &|| what.to_string())?;
            total += captured.digest.size;
            Ok(Some(captured.digest))
        };
        let stdout = printed(&upload.stdout, "what it printed on stdout")?;
        let stderr = printed(&upload.stderr, "what it printed on stderr")?;
        let entry = Entry {
            files,
            stdout,
            stderr,
            host: self.host.clone(),
            stored: SystemTime::now(),
        };
        let bytes = entry.encode(&upload.key, self.settings.secret.as_deref());
        self.store
            .store_entry(&upload.key, &bytes)
            .map_err(UploadError::Store)?;
        Ok(total)
    }

    /// Stores one blob, read from `file` and checked against `digest` as it goes.
    fn put_blob(
        &self,
        digest: &Digest,
        file: impl Read,
        what: &dyn Fn() -> String,
    ) -> Result<(), UploadError> {
        let mut verified = Tracked {
            inner: Verifying::new(file, *digest),
            mismatch: false,
        };
        match self.store.store_blob(digest, &mut verified) {
            Ok(()) if !verified.mismatch => Ok(()),
            // The store took it but it was not what was named: the entry is not stored.
            Ok(()) => Err(UploadError::Changed(what())),
            Err(_) if verified.mismatch => Err(UploadError::Changed(what())),
            Err(e) => Err(UploadError::Store(e)),
        }
    }

    /// Waits for the uploads under way (after a signal, only for the one each thread is
    /// storing: the rest are dropped); returns what the cache did.
    pub fn finish(&self, interrupted: bool) -> Totals {
        if interrupted {
            self.disabled.store(true, Ordering::SeqCst);
        }
        drop(
            self.uploads
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for thread in threads {
            let _ = thread.join();
        }
        let c = &self.counts;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Totals {
            restored: get(&c.restored),
            restored_bytes: get(&c.restored_bytes),
            stored: get(&c.stored),
            stored_bytes: get(&c.stored_bytes),
            missed: get(&c.missed),
            ignored: get(&c.ignored),
            not_stored: get(&c.not_stored),
        }
    }
}

/// The uploads waiting for a thread, and what ends the threads' pauses when dropped.
struct Queue {
    tx: Sender<Upload>,
    _wake: Sender<()>,
}

/// A reader that remembers whether its blob failed verification.
struct Tracked<R> {
    inner: Verifying<R>,
    mismatch: bool,
}

impl<R: Read> Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let result = self.inner.read(buf);
        if let Err(e) = &result {
            if e.kind() == io::ErrorKind::InvalidData {
                self.mismatch = true;
            }
        }
        result
    }
}

enum UploadError {
    Store(StoreError),
    Changed(String),
    Unreadable(String, io::Error),
}

/// One success to store.
struct Upload {
    key: Key,
    label: String,
    cwd: PathBuf,
    /// Each output (relative to `cwd`), its executable bit, and its stat as the task
    /// left it.
    files: Vec<(PathBuf, bool, Seen)>,
    stdout: Option<Captured>,
    stderr: Option<Captured>,
}

/// What `stat` says of an output when its task ended: a file changed since (by a later
/// task) is not stored under this task's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    size: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

impl Seen {
    fn of(m: &std::fs::Metadata) -> Seen {
        use std::os::unix::fs::MetadataExt;
        Seen {
            size: m.len(),
            modified: m.modified().ok(),
            inode: m.ino(),
        }
    }
}

/// A path matched by one of `patterns` (relative to the same folder).
fn matches_any(patterns: &[Pattern], path: &Path) -> bool {
    let path: PathBuf = path
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect();
    patterns.iter().any(|p| match &p.glob {
        None => path == p.base,
        Some(glob) => path
            .strip_prefix(&p.base)
            .is_ok_and(|rest| glob.is_match(rest)),
    })
}

/// A capture is kept in memory up to this many bytes; past it, in a temporary file.
pub const CAPTURE_MEMORY: usize = 1 << 20;

/// The most bytes every capture of the process may hold in memory at once (captures
/// waiting in the upload queue included): past it, a capture spills to its file, so
/// that a queue of uploads behind a slow store costs disk, not memory.
const CAPTURES_IN_MEMORY: u64 = 16 << 20;

static IN_MEMORY: AtomicU64 = AtomicU64::new(0);

/// Bytes of a capture held in memory, counted in [`IN_MEMORY`] until dropped.
struct Counted(Vec<u8>);

impl Counted {
    /// Room for `more` bytes: within this capture's share and the process's.
    fn take(&mut self, data: &[u8]) -> bool {
        let more = data.len() as u64;
        if self.0.len() + data.len() > CAPTURE_MEMORY {
            return false;
        }
        let held = IN_MEMORY.fetch_add(more, Ordering::Relaxed);
        if held + more > CAPTURES_IN_MEMORY {
            IN_MEMORY.fetch_sub(more, Ordering::Relaxed);
            return false;
        }
        self.0.extend_from_slice(data);
        true
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        IN_MEMORY.fetch_sub(self.0.len() as u64, Ordering::Relaxed);
    }
}

/// What a task printed on one stream, as shown, kept for the cache: in memory up to
/// [`CAPTURE_MEMORY`], then spilled to an unnamed temporary file (never whole in
/// memory), hashed on the way. A stream that printed nothing creates nothing.
pub struct Capture {
    memory: Counted,
    file: Option<File>,
    /// A temporary file failed: nothing of it is stored.
    broken: bool,
    hasher: sha2::Sha256,
    size: u64,
}

/// A stream captured whole: its bytes and its digest.
pub struct Captured {
    held: Held,
    pub digest: Digest,
}

enum Held {
    Memory(Counted),
    File(File),
}

impl Captured {
    /// Its bytes, from the start.
    fn reader(&self) -> io::Result<Box<dyn Read + Send + '_>> {
        match &self.held {
            Held::Memory(bytes) => Ok(Box::new(&bytes.0[..])),
            Held::File(file) => {
                let mut file = file.try_clone()?;
                file.rewind()?;
                Ok(Box::new(file))
            }
        }
    }
}

impl Capture {
    pub fn new() -> Capture {
        use sha2::Digest as _;
        Capture {
            memory: Counted(Vec::new()),
            file: None,
            broken: false,
            hasher: sha2::Sha256::new(),
            size: 0,
        }
    }

    pub fn write(&mut self, data: &[u8]) {
        use sha2::Digest as _;
        if self.broken || data.is_empty() {
            return;
        }
        if self.file.is_none() && !self.memory.take(data) {
            // Past what memory may hold: what was held, and the rest, go to a file.
            let spilled = tempfile::tempfile().and_then(|mut file| {
                file.write_all(&self.memory.0)?;
                Ok(file)
            });
            self.memory = Counted(Vec::new());
            match spilled {
                Ok(file) => self.file = Some(file),
                Err(_) => {
                    self.broken = true;
                    return;
                }
            }
        }
        if let Some(file) = &mut self.file {
            if file.write_all(data).is_err() {
                // Not whole: nothing of it is stored.
                self.broken = true;
                self.file = None;
                return;
            }
        }
        self.hasher.update(data);
        self.size += data.len() as u64;
    }

    /// What was captured: `Some(None)` when nothing was printed, `None` when it could
    /// not be kept whole (a temporary file that could not be written: the task is then
    /// not stored).
    pub fn finish(self) -> Option<Option<Captured>> {
        use sha2::Digest as _;
        if self.broken {
            return None;
        }
        if self.size == 0 {
            return Some(None);
        }
        let held = match self.file {
            Some(file) => Held::File(file),
            None => Held::Memory(self.memory),
        };
        Some(Some(Captured {
            held,
            digest: Digest {
                sha256: self.hasher.finalize().into(),
                size: self.size,
            },
        }))
    }
}

impl Default for Capture {
    fn default() -> Capture {
        Capture::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store that keeps what it is given in memory and the order of the calls.
    #[derive(Default)]
    struct Recording {
        calls: Mutex<Vec<String>>,
        blobs: Mutex<std::collections::HashMap<String, Vec<u8>>>,
    }

    impl Store for Recording {
        fn lookup(&self, _: &Key) -> Result<Option<Vec<u8>>, StoreError> {
            Ok(None)
        }
        fn fetch_blob(&self, _: &Digest) -> Result<Option<super::super::BlobReader>, StoreError> {
            Ok(None)
        }
        fn store_blob(&self, digest: &Digest, data: &mut dyn Read) -> Result<(), StoreError> {
            let mut bytes = Vec::new();
            data.read_to_end(&mut bytes)
                .map_err(|source| StoreError::Io {
                    what: "read".into(),
                    source,
                })?;
            self.calls
                .lock()
                .unwrap()
                .push(format!("blob {}", bytes.len()));
            self.blobs.lock().unwrap().insert(digest.hex(), bytes);
            Ok(())
        }
        fn store_entry(&self, _: &Key, _: &[u8]) -> Result<(), StoreError> {
            self.calls.lock().unwrap().push("entry".into());
            Ok(())
        }
        fn describe(&self) -> String {
            "memory".into()
        }
    }

    fn cache(store: Arc<dyn Store>) -> Arc<Cache> {
        let (events, _) = crossbeam_channel::unbounded();
        let settings = Settings {
            mode: Mode::ReadWrite,
            max_entry: MAX_ENTRY,
            secret: None,
        };
        Cache::new(store, settings, events, "here")
    }

    fn upload_of(dir: &Path, name: &str) -> Upload {
        let m = std::fs::metadata(dir.join(name)).unwrap();
        let mut printed = Capture::new();
        printed.write(b"printed\n");
        Upload {
            key: Key("ab".repeat(32)),
            label: "job".into(),
            cwd: dir.to_path_buf(),
            files: vec![(PathBuf::from(name), false, Seen::of(&m))],
            stdout: printed.finish().unwrap(),
            stderr: None,
        }
    }

    #[test]
    fn every_blob_is_stored_before_the_entry_that_names_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("out.txt"), "output").unwrap();
        let store = Arc::new(Recording::default());
        let cache = cache(store.clone());
        assert_eq!(
            cache.try_upload(&upload_of(dir.path(), "out.txt")).ok(),
            Some(14)
        );
        assert_eq!(*store.calls.lock().unwrap(), ["blob 6", "blob 8", "entry"]);
    }

    #[test]
    fn an_output_changed_after_its_task_ended_is_not_stored() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("out.txt"), "output").unwrap();
        let store = Arc::new(Recording::default());
        let cache = cache(store.clone());
        let upload = upload_of(dir.path(), "out.txt");
        // A later task rewrote it before the upload got to it.
        std::fs::write(dir.path().join("out.txt"), "another output").unwrap();
        assert!(matches!(
            cache.try_upload(&upload),
            Err(UploadError::Changed(_))
        ));
        assert!(store.calls.lock().unwrap().is_empty());
    }

    #[test]
    fn uploads_queued_while_the_upload_thread_pauses_are_stored_before_the_run_ends() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("out.txt"), "output").unwrap();
        let store = Arc::new(Recording::default());
        let cache = cache(store.clone());
        let outputs = ["out.txt".to_string()];
        let entries = || {
            store
                .calls
                .lock()
                .unwrap()
                .iter()
                .filter(|c| *c == "entry")
                .count()
        };
        cache.store(
            Key("01".repeat(32)),
            "first",
            dir.path(),
            &outputs,
            (None, None),
        );
        // Stored: the thread now pauses before it looks for more.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while entries() < 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "the first upload was never stored"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        for n in 2..=6 {
            cache.store(
                Key(format!("{n:02}").repeat(32)),
                "more",
                dir.path(),
                &outputs,
                (None, None),
            );
        }
        let totals = cache.finish(false);
        assert_eq!(totals.stored, 6);
        assert_eq!(entries(), 6);
    }

    #[test]
    fn a_folder_store_reads_an_output_once_and_names_it_by_what_it_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("out.txt"), "output").unwrap();
        let folder =
            Arc::new(super::super::folder::Folder::open(store.path().to_str().unwrap()).unwrap());
        let cache = cache(folder.clone());
        let upload = upload_of(dir.path(), "out.txt");
        assert_eq!(cache.try_upload(&upload).ok(), Some(14));
        assert_eq!(
            std::fs::read(folder.blob_path(&Digest::of(b"output"))).unwrap(),
            b"output"
        );
        // Rewritten by a later task before its upload: not stored.
        std::fs::write(dir.path().join("out.txt"), "another output").unwrap();
        assert!(matches!(
            cache.try_upload(&upload),
            Err(UploadError::Changed(_))
        ));
    }

    #[test]
    fn only_paths_the_outputs_match_may_be_restored() {
        let patterns: Vec<Pattern> = ["out/*.txt", "bin/tool"]
            .iter()
            .map(|p| crate::pattern::parse(p).unwrap())
            .collect();
        assert!(matches_any(&patterns, Path::new("out/a.txt")));
        assert!(matches_any(&patterns, Path::new("./out/a.txt")));
        assert!(matches_any(&patterns, Path::new("bin/tool")));
        assert!(!matches_any(&patterns, Path::new("out/sub/a.txt")));
        assert!(!matches_any(&patterns, Path::new("src/main.rs")));
        assert!(!matches_any(&patterns, Path::new("bin/tool2")));
    }
}
