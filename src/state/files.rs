//! Files a task names (`sources`, `outputs`, a stdin file): found by their patterns, and
//! hashed by content (BLAKE3) with a cache keyed by what `stat` says (path, size, mtime,
//! inode, ctime), so that a file whose `stat` did not change is not read again.
//!
//! A stat is trusted only when the file's mtime and ctime were at least [`RACY`] older than the
//! moment it was hashed: a file changed again within the file system's timestamp
//! granularity, at the same size, would otherwise keep its old hash (git's "racily
//! clean" entries). An untrusted one is simply hashed again next time.
//!
//! A search follows the pattern's literal folders, walks only as deep as the pattern can
//! match, and never enters `.git` or the runner's own state folder. Symbolic links count
//! as the file they point to; one that points nowhere, or a folder named as a file, is a
//! problem (said in the task's reason), never a silent skip.

use crate::pattern::{self, Pattern};
use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How much older than its hashing a file's mtime must be for its stat to be trusted.
pub const RACY: Duration = Duration::from_secs(2);

/// What `stat` says of a file: the cache's key (with the path). Besides the size, mtime
/// and inode the contract names, the ctime: it cannot be set back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stat {
    #[serde(rename = "n")]
    pub size: u64,
    /// Nanoseconds since the epoch.
    #[serde(rename = "m")]
    pub mtime: i64,
    #[serde(rename = "i")]
    pub ino: u64,
    /// The inode's change time, nanoseconds: a rewrite that puts the old mtime back
    /// (`touch -r`, `cp -p`) still changes it.
    #[serde(rename = "c")]
    pub ctime: i64,
}

impl Stat {
    pub fn of(m: &std::fs::Metadata) -> Stat {
        Stat {
            size: m.size(),
            mtime: m
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(m.mtime_nsec()),
            ino: m.ino(),
            ctime: m
                .ctime()
                .saturating_mul(1_000_000_000)
                .saturating_add(m.ctime_nsec()),
        }
    }

    /// Whether the file was last changed long enough before `now` to trust this stat.
    pub fn settled(&self, now: SystemTime) -> bool {
        let now = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        self.mtime.max(self.ctime) < now - RACY.as_nanos() as i64
    }
}

/// One file a search found (at `cwd.join(&rel)`).
#[derive(Debug, Clone)]
pub struct Found {
    /// As the reasons name it: relative to the task's cwd (or absolute, as the pattern
    /// was), `/`-separated, control characters and bytes that are not UTF-8 written
    /// `\xNN`. For display only: two files may show the same.
    pub name: String,
    pub stat: Stat,
    /// The path itself, byte for byte, relative to the cwd (or absolute): what is
    /// opened, compared and recorded.
    pub rel: PathBuf,
}

impl Found {
    /// Where the file is, for a search in `cwd`.
    pub fn path(&self, cwd: &Path) -> PathBuf {
        cwd.join(&self.rel)
    }
}

/// A path's bytes: the order and identity of found files and of a stamp's records.
pub fn bytes(path: &Path) -> &[u8] {
    path.as_os_str().as_encoded_bytes()
}

/// Folders a search never enters, by device and inode (however their path is spelt):
/// the state's.
pub type Skip = [(u64, u64)];

/// The (device, inode) of the folder `path`, if it exists.
pub fn folder_id(path: &Path) -> Option<(u64, u64)> {
    let m = std::fs::metadata(path).ok()?;
    m.is_dir().then(|| (m.dev(), m.ino()))
}

/// An I/O error in a few words of its own (never Rust's).
pub fn why(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        NotFound => "no such file".into(),
        PermissionDenied => "permission denied".into(),
        IsADirectory => "a folder, not a file".into(),
        Interrupted => "the run was stopped".into(),
        _ if e.raw_os_error() == Some(libc::ELOOP) => LOOP.into(),
        _ => {
            let text = e.to_string();
            match text.find(" (os error") {
                Some(at) => text[..at].to_lowercase(),
                None => text,
            }
        }
    }
}

/// What a search of some patterns found: the files (sorted by name, each once), the
/// patterns that matched nothing, and what could not be looked at.
#[derive(Debug, Default)]
pub struct Matched {
    pub files: Vec<Found>,
    /// The patterns that matched nothing, in order.
    pub unmatched: Vec<String>,
    pub problems: Vec<String>,
}

/// The files `patterns` match in `cwd`. Never entered: `.git`, `.runner` and `skip`.
pub fn find(cwd: &Path, patterns: &[String], skip: &Skip) -> Matched {
    let mut matched = Matched::default();
    for text in patterns {
        let before = matched.files.len() + matched.problems.len();
        match pattern::parse(text) {
            Ok(p) => search(cwd, &p, skip, &mut matched),
            // Checked at load; rendered values are escaped, so this cannot happen.
            Err(why) => matched
                .problems
                .push(format!("the pattern {text:?} is not a glob pattern: {why}")),
        }
        if matched.files.len() + matched.problems.len() == before {
            matched.unmatched.push(text.clone());
        }
    }
    // By the names' bytes, never by how they show: `a\tb` and a file literally named
    // `a\x09b` are two files.
    matched
        .files
        .sort_by(|a, b| bytes(&a.rel).cmp(bytes(&b.rel)));
    matched.files.dedup_by(|a, b| a.rel == b.rel);
    matched
}

fn search(cwd: &Path, p: &Pattern, skip: &Skip, matched: &mut Matched) {
    let base = cwd.join(&p.base);
    let base = std::path::absolute(&base).unwrap_or(base);
    let name_of = |rel: &Path| pattern::shown(&p.base.join(rel));
    let found = |rel: &Path, stat: Stat| {
        // `join("")` would add a `/`.
        let path = if rel.as_os_str().is_empty() {
            p.base.clone()
        } else {
            p.base.join(rel)
        };
        Found {
            name: pattern::shown(&path),
            stat,
            rel: path,
        }
    };
    let Some(glob) = &p.glob else {
        // A plain path: one stat.
        match file_at(&base) {
            Ok(Some(stat)) => matched.files.push(found(Path::new(""), stat)),
            Ok(None) => {}
            Err(why) => matched
                .problems
                .push(format!("{}: {why}", name_of(Path::new("")))),
        }
        return;
    };
    if !base.is_dir() {
        return;
    }
    let mut walk = walkdir::WalkDir::new(&base)
        .min_depth(1)
        .follow_links(false);
    if let Some(depth) = p.depth {
        walk = walk.max_depth(depth);
    }
    let walk = walk.into_iter().filter_entry(|e| {
        if !e.file_type().is_dir() {
            return true;
        }
        if e.file_name() == ".git" || e.file_name() == ".runner" {
            return false;
        }
        skip.is_empty()
            || e.metadata()
                .is_ok_and(|m| !skip.contains(&(m.dev(), m.ino())))
    });
    for entry in walk {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                let at = e
                    .path()
                    .and_then(|p| p.strip_prefix(&base).ok())
                    .map(name_of)
                    .unwrap_or_else(|| name_of(Path::new("")));
                let why = e.io_error().map_or_else(|| e.to_string(), why);
                matched.problems.push(format!("{at}: {why}"));
                continue;
            }
        };
        if entry.file_type().is_dir() {
            continue;
        }
        let rel = entry.path().strip_prefix(&base).unwrap_or(entry.path());
        if !glob.is_match(rel) {
            continue;
        }
        let metadata = if entry.file_type().is_symlink() {
            match std::fs::metadata(entry.path()) {
                Ok(m) if m.is_dir() => continue,
                Ok(m) => Ok(m),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Unusable::DanglingLink),
                Err(e) => Err(Unusable::Io(e)),
            }
        } else {
            entry.metadata().map_err(Unusable::Walk)
        };
        match metadata {
            Ok(m) if m.is_file() => matched.files.push(found(rel, Stat::of(&m))),
            Ok(_) => matched
                .problems
                .push(format!("{}: {NOT_REGULAR}", name_of(rel))),
            Err(why) => matched.problems.push(format!("{}: {why}", name_of(rel))),
        }
    }
}

/// A plain path's stat: `None` when nothing is there; an error for a folder or a link
/// to nothing.
fn file_at(path: &Path) -> Result<Option<Stat>, Unusable> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Err(Unusable::Folder),
        Ok(m) if !m.is_file() => Err(Unusable::NotRegular),
        Ok(m) => Ok(Some(Stat::of(&m))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if std::fs::symlink_metadata(path).is_ok() {
                Err(Unusable::DanglingLink)
            } else {
                Ok(None)
            }
        }
        Err(e) => Err(Unusable::Io(e)),
    }
}

/// Why a path a pattern names cannot be a source (said after its name, in the reason a
/// task runs).
#[derive(Debug, thiserror::Error)]
enum Unusable {
    #[error("a folder (name its files: DIR/**)")]
    Folder,
    /// A device, a FIFO or a socket is never a source: it may never end, or block, or
    /// be another reader's data.
    #[error("{}", NOT_REGULAR)]
    NotRegular,
    #[error("{}", DANGLING)]
    DanglingLink,
    /// A stat that failed, in a few words of our own.
    #[error("{}", why(.0))]
    Io(#[source] std::io::Error),
    /// A stat of an entry of a walk that failed (walkdir's words).
    #[error("{0}")]
    Walk(#[source] walkdir::Error),
}

/// A symbolic link whose target does not exist.
const DANGLING: &str = "a symbolic link to nothing";

/// A symbolic link that leads back to itself, through others or not (`ELOOP`).
const LOOP: &str = "a loop of symbolic links";

/// Why a device, a FIFO or a socket is never a source: it may never end, or block, or
/// be another reader's data.
const NOT_REGULAR: &str = "not a regular file (a device, FIFO or socket is never read)";

/// A 32-byte BLAKE3 hash.
pub type Hash = [u8; 32];

/// Set when the run is interrupted (by the signal listener, which never waits for the
/// run loop): every hashing from then on gives up.
static STOPPED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes every hashing from now on fail as interrupted ("the run was stopped").
pub fn stop_hashing() {
    STOPPED.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Whether the run was interrupted while it hashed.
pub fn hashing_stopped() -> bool {
    STOPPED.load(std::sync::atomic::Ordering::SeqCst)
}

/// Content hashes learnt during one run, by path and stat: a file several tasks read is
/// read once. Bounded: past [`Hashes::LIMIT`] files it stops learning.
#[derive(Debug, Default)]
pub struct Hashes {
    known: Mutex<HashMap<PathBuf, (Stat, Hash)>>,
}

impl Hashes {
    pub const LIMIT: usize = 20_000;

    /// The content hash of the file at `path`, whose stat is `stat`.
    pub fn hash(&self, path: &Path, stat: &Stat) -> std::io::Result<Hash> {
        let lock = || self.known.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((known, hash)) = lock().get(path) {
            if known == stat {
                return Ok(*hash);
            }
        }
        // Settled before it was read: a change during the read is caught next time.
        let settled = stat.settled(SystemTime::now());
        let hash = *content_hash(path, &STOPPED)?.as_bytes();
        if settled {
            let mut known = lock();
            if known.len() < Self::LIMIT {
                known.insert(path.to_path_buf(), (*stat, hash));
            }
        }
        Ok(hash)
    }

    /// The content hash of the file at `path`, stat'ed first.
    #[cfg(test)]
    pub fn hash_file(&self, path: &Path) -> std::io::Result<Hash> {
        let stat = Stat::of(&std::fs::metadata(path)?);
        self.hash(path, &stat)
    }
}

/// A file's content hash, read in blocks (never whole in memory). Opened without
/// waiting (a FIFO swapped in would otherwise block).
pub fn content_hash(
    path: &Path,
    stopped: &std::sync::atomic::AtomicBool,
) -> std::io::Result<blake3::Hash> {
    let mut file = crate::sys::open_stdin_file(path)?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if stopped.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(std::io::ErrorKind::Interrupted.into());
        }
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(h.finalize());
        }
        h.update(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(m: &Matched) -> Vec<&str> {
        m.files.iter().map(|f| f.name.as_str()).collect()
    }

    #[test]
    fn patterns_find_files_each_once_sorted_and_say_which_matched_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("src/deep/er")).unwrap();
        std::fs::create_dir_all(d.join(".git")).unwrap();
        std::fs::create_dir_all(d.join(".runner")).unwrap();
        for f in [
            "src/b.rs",
            "src/a.rs",
            "src/deep/er/c.rs",
            "src/x.txt",
            ".git/a.rs",
            ".runner/a.rs",
            "top.rs",
        ] {
            std::fs::write(d.join(f), f).unwrap();
        }
        let pats = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let skip = [];
        let m = find(d, &pats(&["src/*.rs", "src/**/*.rs", "./top.rs"]), &skip);
        assert_eq!(
            names(&m),
            ["src/a.rs", "src/b.rs", "src/deep/er/c.rs", "top.rs"]
        );
        assert!(m.unmatched.is_empty() && m.problems.is_empty());
        let m = find(d, &pats(&["**/*.rs"]), &skip);
        assert_eq!(
            names(&m),
            ["src/a.rs", "src/b.rs", "src/deep/er/c.rs", "top.rs"]
        );
        let m = find(d, &pats(&["src/*.rs", "data/*.csv", "nope.txt"]), &skip);
        assert_eq!(m.unmatched, ["data/*.csv", "nope.txt"]);
    }

    #[test]
    fn a_folder_or_a_dangling_link_is_a_problem_not_a_skip() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("data")).unwrap();
        std::os::unix::fs::symlink(d.join("gone"), d.join("data/link.csv")).unwrap();
        let m = find(d, &["data".to_string()], &[]);
        std::fs::create_dir(d.join("state")).unwrap();
        std::fs::write(d.join("state/x"), "").unwrap();
        std::fs::write(d.join("y"), "").unwrap();
        let skip = [folder_id(&d.join("state")).unwrap()];
        let all = find(d, &["./*/*".to_string(), "./*".to_string()], &skip);
        assert_eq!(
            all.files
                .iter()
                .map(|f| f.name.as_str())
                .collect::<Vec<_>>(),
            ["y"]
        );
        assert_eq!(m.problems, ["data: a folder (name its files: DIR/**)"]);
        let m = find(d, &["data/*.csv".to_string()], &[]);
        assert_eq!(m.problems, ["data/link.csv: a symbolic link to nothing"]);
        let m = find(d, &["data/link.csv".to_string()], &[]);
        assert_eq!(m.problems, ["data/link.csv: a symbolic link to nothing"]);
        std::os::unix::fs::symlink("l2.csv", d.join("data/l1.csv")).unwrap();
        std::os::unix::fs::symlink("l1.csv", d.join("data/l2.csv")).unwrap();
        let mut m = find(d, &["data/l*.csv".to_string()], &[]);
        m.problems.sort();
        assert_eq!(
            m.problems,
            [
                "data/l1.csv: a loop of symbolic links",
                "data/l2.csv: a loop of symbolic links",
                "data/link.csv: a symbolic link to nothing"
            ]
        );
        let m = find(d, &["data/l1.csv".to_string()], &[]);
        assert_eq!(m.problems, ["data/l1.csv: a loop of symbolic links"]);
    }

    #[test]
    fn a_changed_ctime_is_a_changed_stat() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "one").unwrap();
        let hashes = Hashes::default();
        // Settled long ago, as far as this stat says: learnt.
        let old = Stat {
            mtime: 1_000_000_000,
            ctime: 1_000_000_000,
            ..Stat::of(&std::fs::metadata(&path).unwrap())
        };
        hashes.hash(&path, &old).unwrap();
        // Same size, mtime put back, same inode: only the ctime tells.
        std::fs::write(&path, "two").unwrap();
        let rewritten = Stat {
            ctime: 2_000_000_000,
            ..old
        };
        assert_eq!(
            hashes.hash(&path, &rewritten).unwrap(),
            *blake3::hash(b"two").as_bytes()
        );
    }

    #[test]
    fn a_hash_is_learnt_once_per_stat() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "one").unwrap();
        let hashes = Hashes::default();
        let first = hashes.hash_file(&path).unwrap();
        assert_eq!(first, *blake3::hash(b"one").as_bytes());
        // Too fresh to be trusted: not learnt, so a same-size change is still seen.
        std::fs::write(&path, "two").unwrap();
        assert_eq!(
            hashes.hash_file(&path).unwrap(),
            *blake3::hash(b"two").as_bytes()
        );
        // A settled file is learnt: a stat that did not change is not read again. (Its
        // ctime cannot be set back, so the stat says so.)
        let long_ago = 1_000_000_000;
        let stat = Stat {
            mtime: long_ago,
            ctime: long_ago,
            ..Stat::of(&std::fs::metadata(&path).unwrap())
        };
        hashes.hash(&path, &stat).unwrap();
        let fake = Stat { ..stat };
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            hashes.hash(&path, &fake).unwrap(),
            *blake3::hash(b"two").as_bytes()
        );
    }
}
