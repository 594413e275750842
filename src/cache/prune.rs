//! `runner cache stats DIR` and `runner cache prune DIR --max-size SIZE`: what a folder
//! store holds, and keeping it under a size (cache.md, Local folder store).
//!
//! The folder's layout is the folder store's (`folder.rs`): `ac/KK/KEY` entries,
//! `cas/KK/SHA256` blobs, `tmp/` files being written. Anything else in the folder is
//! not the cache's: counted, never removed.
//!
//! Pruning is safe while runs use the store:
//! - a blob is removed only when no entry left in the store names it, and the entries
//!   written while the prune ran are read again before any blob goes;
//! - nothing modified since the prune started is removed: not an entry a lookup touched
//!   (the folder store sets an entry's mtime when it finds it), not a blob a writer just
//!   stored (a writer stores blobs before the entry that names them, and touches a blob
//!   it finds already there), not a temporary file younger than an hour. "Since the
//!   start" is judged on the store's own clock (a file created in `tmp/` at the start)
//!   and the runner's, whichever is earlier, less a second of slack;
//! - every file is looked at again right before it is removed.
//!
//! A reader that found an entry just before the prune removed it may still miss a blob:
//! the run then says so and runs the task (a missing blob is a miss, never a wrong file).

use super::entry::ActionResult;
use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Temporary files older than this were left by a writer that died: removed.
pub const STALE_TEMPORARY: Duration = Duration::from_secs(3600);

/// Files modified this long before the prune started count as modified since.
const SLACK: Duration = Duration::from_secs(1);

/// Why a folder cannot be looked at or pruned: exit 2, nothing (more) removed.
#[derive(Debug, thiserror::Error)]
pub enum CacheDirError {
    #[error("{}: no such folder", .0.display())]
    Missing(PathBuf),
    #[error("{} is not a folder", .0.display())]
    NotAFolder(PathBuf),
    #[error("{} is not a cache folder: it holds none of ac/, cas/ and tmp/ (a folder store, as `runner run --cache DIR` writes it)", .0.display())]
    NotACache(PathBuf),
    #[error("cannot {what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_error(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CacheDirError {
    let path = path.to_path_buf();
    move |source| CacheDirError::Io { what, path, source }
}

/// A number of files and their bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count {
    pub files: u64,
    pub bytes: u64,
}

impl Count {
    fn add(&mut self, bytes: u64) {
        self.files += 1;
        self.bytes += bytes;
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({ "files": self.files, "bytes": self.bytes })
    }
}

/// What `runner cache stats` prints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Every entry (`ac/`), damaged and broken ones included.
    pub entries: Count,
    /// Entries that are not an `ActionResult` (removed by a prune).
    pub damaged: Count,
    /// Entries that name a blob the store does not have (removed by a prune).
    pub broken: Count,
    /// Every blob (`cas/`).
    pub blobs: Count,
    /// Blobs no entry names (removed by a prune, unless just written).
    pub unreferenced: Count,
    /// Files being written, or left by a writer that died (`tmp/`).
    pub temporary: Count,
    /// Of those, the ones older than an hour (removed by a prune).
    pub stale_temporary: Count,
    /// Files that are not the cache's (left alone, not counted in the total).
    pub other: Count,
    /// When the least and the most recently used entries were last used (stored or
    /// found).
    pub oldest_use: Option<SystemTime>,
    pub newest_use: Option<SystemTime>,
}

impl Stats {
    /// The store's size: entries, blobs and temporary files.
    pub fn total(&self) -> u64 {
        self.entries.bytes + self.blobs.bytes + self.temporary.bytes
    }
}

/// An entry file as found.
struct EntryFile {
    path: PathBuf,
    bytes: u64,
    used: SystemTime,
    /// The blobs it names, by hex name (each once); `None`: it does not decode.
    blobs: Option<Vec<String>>,
}

/// A blob file as found.
struct BlobFile {
    path: PathBuf,
    bytes: u64,
    modified: SystemTime,
}

/// A file of `tmp/` as found.
struct TempFile {
    path: PathBuf,
    bytes: u64,
    modified: SystemTime,
}

/// Everything found in a store.
#[derive(Default)]
struct Scan {
    entries: Vec<EntryFile>,
    blobs: HashMap<String, BlobFile>,
    temps: Vec<TempFile>,
    other: Count,
}

/// The folder, checked to be a cache folder: it exists, is a folder, and is empty or
/// holds `ac/`, `cas/` or `tmp/`.
fn check(root: &Path) -> Result<(), CacheDirError> {
    let meta = match fs::metadata(root) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(CacheDirError::Missing(root.into()))
        }
        other => other.map_err(io_error("read", root))?,
    };
    if !meta.is_dir() {
        return Err(CacheDirError::NotAFolder(root.into()));
    }
    let mut empty = true;
    for item in fs::read_dir(root).map_err(io_error("read", root))? {
        let item = item.map_err(io_error("read", root))?;
        if ["ac", "cas", "tmp"].iter().any(|n| item.file_name() == *n) {
            return Ok(());
        }
        empty = false;
    }
    if empty {
        Ok(())
    } else {
        Err(CacheDirError::NotACache(root.into()))
    }
}

/// Whether `name` is 64 lowercase hex digits starting with `fan` (a fanned-out name).
fn is_name(name: &str, fan: &str) -> bool {
    name.len() == 64
        && name.starts_with(fan)
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The files of `dir/KK/NAME` whose names are the store's, with their metadata, in no
/// particular order; other files counted into `other`. A missing `dir` holds nothing.
fn fanned(
    dir: &Path,
    other: &mut Count,
) -> Result<Vec<(String, PathBuf, fs::Metadata)>, CacheDirError> {
    let mut found = Vec::new();
    let outer = match fs::read_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(found),
        other => other.map_err(io_error("read", dir))?,
    };
    for fan in outer {
        let fan = fan.map_err(io_error("read", dir))?;
        let fan_name = fan.file_name().to_string_lossy().into_owned();
        let fan_path = fan.path();
        let is_fan = fan_name.len() == 2 && is_name(&format!("{fan_name:0<64}"), &fan_name);
        if !is_fan || !fan.file_type().is_ok_and(|t| t.is_dir()) {
            if let Ok(meta) = fs::symlink_metadata(&fan_path) {
                other.add(meta.len());
            }
            continue;
        }
        let inner = match fs::read_dir(&fan_path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            other => other.map_err(io_error("read", &fan_path))?,
        };
        for file in inner {
            let file = file.map_err(io_error("read", &fan_path))?;
            let path = file.path();
            let meta = match fs::symlink_metadata(&path) {
                // Removed meanwhile (another prune): gone.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                other => other.map_err(io_error("read", &path))?,
            };
            let name = file.file_name().to_string_lossy().into_owned();
            if meta.is_file() && is_name(&name, &fan_name) {
                found.push((name, path, meta));
            } else {
                other.add(meta.len());
            }
        }
    }
    Ok(found)
}

/// The blobs an entry names (output files, stdout, stderr), each once; `None` when it
/// is not an `ActionResult` or a digest is not a SHA-256 with a size.
fn named_blobs(bytes: &[u8]) -> Option<Vec<String>> {
    use prost::Message as _;
    let message = ActionResult::decode(bytes).ok()?;
    let digests = message
        .output_files
        .iter()
        .map(|f| f.digest.as_ref())
        .chain([
            message.stdout_digest.as_ref(),
            message.stderr_digest.as_ref(),
        ]);
    let mut names = Vec::new();
    for (i, digest) in digests.enumerate() {
        let Some(digest) = digest else {
            // An output file must have one; stdout and stderr may not.
            if i < message.output_files.len() {
                return None;
            }
            continue;
        };
        if digest.size_bytes < 0 || !is_name(&digest.hash, "") {
            return None;
        }
        // The empty blob need not be stored: a reader knows its content.
        if digest.size_bytes > 0 && !names.contains(&digest.hash) {
            names.push(digest.hash.clone());
        }
    }
    Some(names)
}

fn read_entry(path: PathBuf, meta: &fs::Metadata) -> Result<Option<EntryFile>, CacheDirError> {
    let bytes = match fs::read(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        other => other.map_err(io_error("read", &path))?,
    };
    Ok(Some(EntryFile {
        blobs: named_blobs(&bytes),
        bytes: meta.len(),
        used: meta.modified().map_err(io_error("read", &path))?,
        path,
    }))
}

/// Reads the whole store: every entry (decoded), every blob, every temporary file.
fn scan(root: &Path) -> Result<Scan, CacheDirError> {
    let mut scan = Scan::default();
    for (_, path, meta) in fanned(&root.join("ac"), &mut scan.other)? {
        if let Some(entry) = read_entry(path, &meta)? {
            scan.entries.push(entry);
        }
    }
    for (name, path, meta) in fanned(&root.join("cas"), &mut scan.other)? {
        let modified = meta.modified().map_err(io_error("read", &path))?;
        scan.blobs.insert(
            name,
            BlobFile {
                path,
                bytes: meta.len(),
                modified,
            },
        );
    }
    let tmp = root.join("tmp");
    match fs::read_dir(&tmp) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error("read", &tmp)(e)),
        Ok(items) => {
            for item in items {
                let item = item.map_err(io_error("read", &tmp))?;
                let path = item.path();
                let meta = match fs::symlink_metadata(&path) {
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    other => other.map_err(io_error("read", &path))?,
                };
                if !meta.is_file() {
                    scan.other.add(meta.len());
                    continue;
                }
                scan.temps.push(TempFile {
                    bytes: meta.len(),
                    modified: meta.modified().map_err(io_error("read", &path))?,
                    path,
                });
            }
        }
    }
    // Whatever else is at the top: not the cache's.
    for item in fs::read_dir(root).map_err(io_error("read", root))? {
        let item = item.map_err(io_error("read", root))?;
        let is_ours = ["ac", "cas", "tmp"].iter().any(|n| item.file_name() == *n)
            && item.file_type().is_ok_and(|t| t.is_dir());
        if !is_ours {
            if let Ok(meta) = fs::symlink_metadata(item.path()) {
                scan.other.add(meta.len());
            }
        }
    }
    Ok(scan)
}

/// `runner cache stats DIR`.
pub fn stats(root: &Path) -> Result<Stats, CacheDirError> {
    check(root)?;
    let scan = scan(root)?;
    let now = SystemTime::now();
    let mut stats = Stats {
        other: scan.other,
        ..Stats::default()
    };
    let mut named: HashMap<&str, ()> = HashMap::new();
    for entry in &scan.entries {
        stats.entries.add(entry.bytes);
        stats.oldest_use = Some(stats.oldest_use.map_or(entry.used, |t| t.min(entry.used)));
        stats.newest_use = Some(stats.newest_use.map_or(entry.used, |t| t.max(entry.used)));
        match &entry.blobs {
            None => stats.damaged.add(entry.bytes),
            Some(blobs) => {
                if blobs.iter().any(|b| !scan.blobs.contains_key(b)) {
                    stats.broken.add(entry.bytes);
                }
                for blob in blobs {
                    named.insert(blob, ());
                }
            }
        }
    }
    for (name, blob) in &scan.blobs {
        stats.blobs.add(blob.bytes);
        if !named.contains_key(name.as_str()) {
            stats.unreferenced.add(blob.bytes);
        }
    }
    for temp in &scan.temps {
        stats.temporary.add(temp.bytes);
        if now.duration_since(temp.modified).unwrap_or_default() > STALE_TEMPORARY {
            stats.stale_temporary.add(temp.bytes);
        }
    }
    Ok(stats)
}

/// What `runner cache prune` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruned {
    /// The store's size before.
    pub before: u64,
    /// Entries removed as least recently used, and the last use of the newest of them.
    pub entries: Count,
    pub last_removed_use: Option<SystemTime>,
    /// Entries removed because they do not decode, or name a blob the store lacks.
    pub damaged: Count,
    pub broken: Count,
    /// Blobs removed because no entry left names them.
    pub blobs: Count,
    /// Temporary files older than an hour, removed.
    pub temporary: Count,
    /// What the store holds after.
    pub left: Stats,
    /// Entries used since the prune started, kept whatever the size.
    pub in_use: Count,
}

/// The time the prune started, as the store's files will show it: the earlier of the
/// store's clock (a file created under `tmp/` now) and ours, less [`SLACK`].
fn start_time(root: &Path) -> Result<SystemTime, CacheDirError> {
    let ours = SystemTime::now();
    let tmp = root.join("tmp");
    fs::create_dir_all(&tmp).map_err(io_error("write", &tmp))?;
    let marker = tmp.join(format!(
        "prune.{}.{}",
        std::process::id(),
        crate::sys::hostname()
    ));
    let store = fs::File::create(&marker)
        .and_then(|f| f.metadata())
        .and_then(|m| m.modified())
        .map_err(io_error("write", &marker));
    let _ = fs::remove_file(&marker);
    Ok(store?.min(ours) - SLACK)
}

/// What became of a file a prune meant to remove.
enum Removal {
    /// Removed: it held these bytes.
    Removed(u64),
    /// Modified since the prune started: kept.
    Fresh,
    /// Gone already (another prune).
    Gone,
}

/// Removes `path` unless it was modified since `start` (or is gone already).
fn remove_unless_fresh(path: &Path, start: SystemTime) -> Result<Removal, CacheDirError> {
    let meta = match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Removal::Gone),
        other => other.map_err(io_error("read", path))?,
    };
    if meta.modified().map_err(io_error("read", path))? >= start {
        return Ok(Removal::Fresh);
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(Removal::Removed(meta.len())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Removal::Gone),
        Err(e) => Err(io_error("remove", path)(e)),
    }
}

/// `runner cache prune DIR --max-size SIZE`: temporary files older than an hour, then
/// damaged and broken entries, then the least recently used entries until the store's
/// size is at most `max_size`, then every blob no entry left names.
pub fn prune(root: &Path, max_size: u64) -> Result<Pruned, CacheDirError> {
    check(root)?;
    let start = start_time(root)?;
    let fresh = |t: SystemTime| t >= start;
    let scan = scan(root)?;
    let mut pruned = Pruned::default();

    let mut total: u64 = 0;
    for temp in &scan.temps {
        total += temp.bytes;
        if start.duration_since(temp.modified).unwrap_or_default() > STALE_TEMPORARY {
            match remove_unless_fresh(&temp.path, start)? {
                Removal::Removed(bytes) => {
                    pruned.temporary.add(bytes);
                    total -= temp.bytes;
                }
                Removal::Gone => total -= temp.bytes,
                Removal::Fresh => {}
            }
        }
    }

    // Damaged and broken entries go first, whatever the size.
    let mut kept: Vec<&EntryFile> = Vec::new();
    for entry in &scan.entries {
        total += entry.bytes;
        let broken = match &entry.blobs {
            None => Some(&mut pruned.damaged),
            Some(blobs) if blobs.iter().any(|b| !scan.blobs.contains_key(b)) => {
                Some(&mut pruned.broken)
            }
            Some(_) => None,
        };
        match broken {
            Some(count) if !fresh(entry.used) => match remove_unless_fresh(&entry.path, start)? {
                Removal::Removed(bytes) => {
                    count.add(bytes);
                    total -= entry.bytes;
                }
                Removal::Gone => total -= entry.bytes,
                Removal::Fresh => kept.push(entry),
            },
            _ => kept.push(entry),
        }
    }

    // How many kept entries name each blob; a blob no kept entry names is as good as
    // gone, unless it is fresh (its entry may be on its way).
    let mut names: HashMap<&str, u32> = HashMap::new();
    for entry in &kept {
        for blob in entry.blobs.iter().flatten() {
            *names.entry(blob.as_str()).or_default() += 1;
        }
    }
    let counts = |name: &str, blob: &BlobFile, names: &HashMap<&str, u32>| {
        names.get(name).copied().unwrap_or(0) > 0 || fresh(blob.modified)
    };
    for (name, blob) in &scan.blobs {
        if counts(name, blob, &names) {
            total += blob.bytes;
        }
    }

    // The least recently used first, while the store is too big.
    kept.sort_by(|a, b| a.used.cmp(&b.used).then_with(|| a.path.cmp(&b.path)));
    for entry in &kept {
        if fresh(entry.used) {
            pruned.in_use.add(entry.bytes);
            continue;
        }
        if total <= max_size {
            break;
        }
        match remove_unless_fresh(&entry.path, start)? {
            Removal::Removed(bytes) => {
                pruned.entries.add(bytes);
                pruned.last_removed_use = Some(entry.used);
            }
            Removal::Gone => {}
            Removal::Fresh => {
                pruned.in_use.add(entry.bytes);
                continue;
            }
        }
        total = total.saturating_sub(entry.bytes);
        for blob in entry.blobs.iter().flatten() {
            let left = names.get_mut(blob.as_str()).expect("counted above");
            *left -= 1;
            if let Some(file) = scan.blobs.get(blob) {
                if *left == 0 && !fresh(file.modified) {
                    total = total.saturating_sub(file.bytes);
                }
            }
        }
    }

    remove_unnamed_blobs(root, &scan, start, &mut pruned)?;
    pruned.before = scan.entries.iter().map(|e| e.bytes).sum::<u64>()
        + scan.blobs.values().map(|b| b.bytes).sum::<u64>()
        + scan.temps.iter().map(|t| t.bytes).sum::<u64>();
    pruned.left = stats(root)?;
    Ok(pruned)
}

/// The blob phase of a prune: every blob of `scan` that no entry in the folder names
/// now (the entries are read again: those written since the scan name blobs too) and
/// that is not fresh.
fn remove_unnamed_blobs(
    root: &Path,
    scan: &Scan,
    start: SystemTime,
    pruned: &mut Pruned,
) -> Result<(), CacheDirError> {
    // Entries written since the scan name blobs too: read the entries again, and keep
    // whatever any entry there now names.
    let mut other = Count::default();
    let mut named: HashMap<String, ()> = HashMap::new();
    for (_, path, meta) in fanned(&root.join("ac"), &mut other)? {
        if let Some(entry) = read_entry(path, &meta)? {
            for blob in entry.blobs.into_iter().flatten() {
                named.insert(blob, ());
            }
        }
    }
    for (name, blob) in &scan.blobs {
        if named.contains_key(name) || blob.modified >= start {
            continue;
        }
        if let Removal::Removed(bytes) = remove_unless_fresh(&blob.path, start)? {
            pruned.blobs.add(bytes);
        }
    }

    Ok(())
}

/// A size in words: "1.5 MiB (1,572,864 bytes)".
pub fn size(bytes: u64) -> String {
    format!(
        "{} ({} bytes)",
        crate::size::human(bytes),
        crate::task::thousands(bytes)
    )
}

fn time(t: Option<SystemTime>) -> String {
    t.map_or("-".to_string(), |t| {
        humantime::format_rfc3339_seconds(t).to_string()
    })
}

fn count_line(name: &str, count: &Count, note: &str) -> String {
    format!(
        "{name:<22} {:>9}  {}{note}\n",
        crate::task::thousands(count.files),
        size(count.bytes)
    )
}

/// The stats as printed.
pub fn render_stats(root: &Path, stats: &Stats) -> String {
    let mut out = format!("{}\n", root.display());
    out += &count_line("entries", &stats.entries, "");
    if stats.damaged.files > 0 {
        out += &count_line("  damaged", &stats.damaged, "  (not an ActionResult)");
    }
    if stats.broken.files > 0 {
        out += &count_line("  broken", &stats.broken, "  (naming a missing blob)");
    }
    out += &count_line("blobs", &stats.blobs, "");
    out += &count_line(
        "  unreferenced",
        &stats.unreferenced,
        "  (no entry names them)",
    );
    out += &count_line("temporary files", &stats.temporary, "");
    if stats.stale_temporary.files > 0 {
        out += &count_line("  older than an hour", &stats.stale_temporary, "");
    }
    if stats.other.files > 0 {
        out += &count_line(
            "other files",
            &stats.other,
            "  (not the cache's, left alone)",
        );
    }
    out += &format!("{:<22} {:>9}  {}\n", "total", "", size(stats.total()));
    if stats.entries.files > 0 {
        out += &format!(
            "entries last used from {} to {}\n",
            time(stats.oldest_use),
            time(stats.newest_use)
        );
    }
    out
}

pub fn stats_json(stats: &Stats) -> serde_json::Value {
    serde_json::json!({
        "entries": stats.entries.json(),
        "damaged_entries": stats.damaged.json(),
        "broken_entries": stats.broken.json(),
        "blobs": stats.blobs.json(),
        "unreferenced_blobs": stats.unreferenced.json(),
        "temporary_files": stats.temporary.json(),
        "stale_temporary_files": stats.stale_temporary.json(),
        "other_files": stats.other.json(),
        "total_bytes": stats.total(),
        "oldest_use": stats.oldest_use.map(|t| time(Some(t))),
        "newest_use": stats.newest_use.map(|t| time(Some(t))),
    })
}

/// What a prune did, as printed.
pub fn render_pruned(root: &Path, max_size: u64, pruned: &Pruned) -> String {
    let mut out = String::new();
    let mut said = |what: &str, count: &Count| {
        if count.files > 0 {
            out += &format!(
                "removed {} {what}: {}\n",
                crate::task::thousands(count.files),
                size(count.bytes)
            );
        }
    };
    said("temporary files older than an hour", &pruned.temporary);
    said("damaged entries (not an ActionResult)", &pruned.damaged);
    said("broken entries (naming a missing blob)", &pruned.broken);
    let lru = match pruned.last_removed_use {
        Some(t) => format!(
            "entries least recently used (last used {} or before)",
            time(Some(t))
        ),
        None => "entries".to_string(),
    };
    said(&lru, &pruned.entries);
    said("blobs no entry names", &pruned.blobs);
    let removed = [
        &pruned.temporary,
        &pruned.damaged,
        &pruned.broken,
        &pruned.entries,
        &pruned.blobs,
    ];
    if removed.iter().all(|c| c.files == 0) {
        out += "nothing to remove\n";
    }
    out += &format!(
        "{}: {} entries, {} blobs, {} (was {}; at most {})\n",
        root.display(),
        crate::task::thousands(pruned.left.entries.files),
        crate::task::thousands(pruned.left.blobs.files),
        size(pruned.left.total()),
        crate::size::human(pruned.before),
        crate::size::human(max_size),
    );
    out
}

/// Said on stderr when the store is still over the size.
pub fn over_size(root: &Path, max_size: u64, pruned: &Pruned) -> Option<String> {
    (pruned.left.total() > max_size).then(|| {
        format!(
            "warning: {} still holds {}, over {}: {} entries used since the prune started, blobs and temporary files written since, are kept\n",
            root.display(),
            crate::size::human(pruned.left.total()),
            crate::size::human(max_size),
            crate::task::thousands(pruned.in_use.files),
        )
    })
}

pub fn pruned_json(max_size: u64, pruned: &Pruned) -> serde_json::Value {
    serde_json::json!({
        "max_size": max_size,
        "before_bytes": pruned.before,
        "removed": {
            "entries": pruned.entries.json(),
            "damaged_entries": pruned.damaged.json(),
            "broken_entries": pruned.broken.json(),
            "blobs": pruned.blobs.json(),
            "temporary_files": pruned.temporary.json(),
        },
        "kept_in_use": pruned.in_use.json(),
        "left": stats_json(&pruned.left),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(size(1_234_567), "1.2 MiB (1,234,567 bytes)");
    }

    #[test]
    fn names_are_the_stores() {
        let key = "ab".to_string() + &"0".repeat(62);
        assert!(is_name(&key, "ab"));
        assert!(!is_name(&key, "cd"));
        assert!(!is_name(&key.to_uppercase(), "AB"));
        assert!(!is_name("ab", "ab"));
    }
}
