//! Up to date: a task of a job with `sources` need not run when an earlier success of
//! the same task (the same identity) recorded, before it ran, the same set of source
//! files with the same contents, and, after it ran, outputs that are all still there,
//! unchanged. Content, never modification times: a fresh clone with a restored state
//! folder is up to date.
//!
//! Each task (job and label: its key) has one *stamp* in the state folder,
//! `stamps/KK/KEY` (KK: the key's first two hex digits): a header line, then one line per
//! source and per output file (its name, BLAKE3 hash and, when settled, its stat, which
//! lets the next run skip reading it). A success writes the stamp; a failure replaces it
//! with a "failed" one (so a failed task never passes for up to date on the strength of
//! an older success); a stopped task leaves it alone. Written whole (a temporary file
//! renamed), so a reader never sees half of one; one that does not read is no stamp.

use super::files::{self, Found, Hash, Hashes, Stat};
use super::identity::Identity;
use crate::render::Rendered;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub const FORMAT: u32 = 1;

/// The reason of a task that need not run.
pub const UP_TO_DATE: &str = "up to date";

/// How many file names a reason lists before it counts the rest.
const NAMED: usize = 3;

/// One file as a stamp records it: its path byte for byte (a name is never taken for
/// another that shows the same), its hash and stat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "Wire", try_from = "Wire")]
pub struct FileRecord {
    pub path: PathBuf,
    pub hash: Hash,
    /// Its stat when it was hashed, if the file had settled by then.
    pub stat: Option<Stat>,
}

/// A [`FileRecord`] as written: `p` the name itself when it is UTF-8 (JSON escapes a
/// tab or a line feed); otherwise `p` shows it (`\xFF`) and `x` holds its bytes in hex.
#[derive(Serialize, Deserialize)]
struct Wire {
    p: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    x: Option<String>,
    #[serde(with = "hex")]
    h: Hash,
    s: Option<Stat>,
}

impl From<FileRecord> for Wire {
    fn from(r: FileRecord) -> Wire {
        let (p, x) = match r.path.to_str() {
            Some(text) => (text.to_string(), None),
            None => (
                crate::pattern::shown(&r.path),
                Some(
                    files::bytes(&r.path)
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect(),
                ),
            ),
        };
        Wire {
            p,
            x,
            h: r.hash,
            s: r.stat,
        }
    }
}

/// A stamp's name whose bytes are not hex (the stamp does not read, so its task runs).
#[derive(Debug, thiserror::Error)]
#[error("a name's bytes are not hex")]
pub struct NotHex;

impl TryFrom<Wire> for FileRecord {
    /// A name's bytes that are not hex: the stamp is unreadable, so the task runs.
    type Error = NotHex;

    fn try_from(w: Wire) -> Result<FileRecord, NotHex> {
        use std::os::unix::ffi::OsStringExt;
        let path = match &w.x {
            None => PathBuf::from(w.p),
            Some(x) => {
                let bytes = (0..x.len())
                    .step_by(2)
                    .map(|i| x.get(i..i + 2).and_then(|d| u8::from_str_radix(d, 16).ok()))
                    .collect::<Option<Vec<u8>>>()
                    .ok_or(NotHex)?;
                PathBuf::from(std::ffi::OsString::from_vec(bytes))
            }
        };
        Ok(FileRecord {
            path,
            hash: w.h,
            stat: w.s,
        })
    }
}

impl FileRecord {
    fn new(found: &Found, hash: Hash, now: SystemTime) -> FileRecord {
        FileRecord::from(found.clone(), hash, now)
    }

    fn from(found: Found, hash: Hash, now: SystemTime) -> FileRecord {
        FileRecord {
            stat: found.stat.settled(now).then_some(found.stat),
            path: found.rel,
            hash,
        }
    }

    /// The name as reasons show it.
    pub fn name(&self) -> String {
        crate::pattern::shown(&self.path)
    }
}

/// A task's outputs as hashed after it succeeded, and where, when not here (a worker's
/// `HOST:CWD`): outputs written elsewhere cannot be looked at, only trusted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outputs {
    pub files: Vec<FileRecord>,
    pub elsewhere: Option<String>,
    /// The `outputs` patterns they were found with: another list runs the task again.
    #[serde(default)]
    pub patterns: Vec<String>,
}

/// What the last run of a task left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    pub identity: Identity,
    pub failed: bool,
    pub sources: Vec<FileRecord>,
    pub outputs: Outputs,
}

/// A stamp's parts, borrowed: what is written.
#[derive(Debug, Clone, Copy)]
pub struct StampRef<'a> {
    pub identity: Identity,
    pub failed: bool,
    pub sources: &'a [FileRecord],
    pub outputs: &'a Outputs,
}

impl Stamp {
    pub fn parts(&self) -> StampRef<'_> {
        StampRef {
            identity: self.identity,
            failed: self.failed,
            sources: &self.sources,
            outputs: &self.outputs,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Head {
    runner_stamp: u32,
    identity: String,
    job: String,
    label: String,
    failed: bool,
    sources: u64,
    outputs: u64,
    elsewhere: Option<String>,
    #[serde(default)]
    output_patterns: Vec<String>,
    /// `true`: names are recorded byte for byte. Older stamps wrote them as shown
    /// (`\x09` for a tab); one of those holding such a name is no stamp.
    #[serde(default)]
    exact_names: bool,
}

/// The stamps of one job file's tasks.
#[derive(Debug, Clone)]
pub struct Stamps {
    dir: PathBuf,
}

impl Stamps {
    /// The stamps in the state folder `state`.
    pub fn new(state: &Path) -> Stamps {
        Stamps {
            dir: state.join("stamps"),
        }
    }

    fn path(&self, key: u64) -> PathBuf {
        let hex = format!("{key:016x}");
        self.dir.join(&hex[..2]).join(hex)
    }

    /// The stamp of the task `key`, if there is one that reads.
    pub fn read(&self, key: u64) -> Option<Stamp> {
        let file = std::fs::File::open(self.path(key)).ok()?;
        let mut lines = BufReader::new(file).lines();
        let head: Head = serde_json::from_str(&lines.next()?.ok()?).ok()?;
        if head.runner_stamp != FORMAT {
            return None;
        }
        let mut records = |n: u64| -> Option<Vec<FileRecord>> {
            // Sized by the header (bounded, should a stamp lie), not grown by doubling.
            let mut records = Vec::with_capacity(n.min(1 << 20) as usize);
            for _ in 0..n {
                let line = lines.next()?.ok()?;
                if !head.exact_names && line.contains(r"\\x") {
                    // A name written as shown: which file it was cannot be known.
                    return None;
                }
                records.push(serde_json::from_str(&line).ok()?);
            }
            Some(records)
        };
        let sources = records(head.sources)?;
        let outputs = records(head.outputs)?;
        Some(Stamp {
            identity: u128::from_str_radix(&head.identity, 16).ok()?,
            failed: head.failed,
            sources,
            outputs: Outputs {
                files: outputs,
                elsewhere: head.elsewhere,
                patterns: head.output_patterns,
            },
        })
    }

    /// Forgets the task `key`: it runs next time (a stamp that cannot be removed is
    /// one that was never there, or a folder the run cannot write, said elsewhere).
    pub fn remove(&self, key: u64) {
        let _ = std::fs::remove_file(self.path(key));
    }

    /// Writes the stamp of the task `key` (`job`, `label`: for a person reading it).
    pub fn write(
        &self,
        key: u64,
        job: &str,
        label: &str,
        stamp: StampRef<'_>,
    ) -> std::io::Result<()> {
        let path = self.path(key);
        let folder = path.parent().expect("a stamp is in a folder");
        std::fs::create_dir_all(folder)?;
        let mut tmp = tempfile::NamedTempFile::new_in(folder)?;
        {
            let mut out = BufWriter::new(tmp.as_file_mut());
            let head = Head {
                runner_stamp: FORMAT,
                identity: format!("{:032x}", stamp.identity),
                job: job.to_string(),
                label: label.to_string(),
                failed: stamp.failed,
                sources: stamp.sources.len() as u64,
                outputs: stamp.outputs.files.len() as u64,
                elsewhere: stamp.outputs.elsewhere.clone(),
                output_patterns: stamp.outputs.patterns.clone(),
                exact_names: true,
            };
            serde_json::to_writer(&mut out, &head)?;
            out.write_all(b"\n")?;
            for record in stamp.sources.iter().chain(&stamp.outputs.files) {
                serde_json::to_writer(&mut out, record)?;
                out.write_all(b"\n")?;
            }
            out.flush()?;
        }
        tmp.persist(&path).map_err(|e| e.error)?;
        Ok(())
    }
}

/// What looking at a task's sources and outputs found.
#[derive(Debug, Default)]
pub struct Look {
    /// Why the task runs; `None`: it is up to date.
    pub reason: Option<String>,
    /// The sources as they are now, hashed, to be recorded if the task succeeds; `None`
    /// when they cannot be (a file could not be read).
    pub sources: Option<Vec<FileRecord>>,
    /// Up to date, but some file's stat changed (touched, copied): the stamp to write
    /// back, so that the next run need not read them again.
    pub refreshed: Option<Stamp>,
    /// A source or output that could not be read: said on stderr.
    pub problem: Option<String>,
}

/// Where a look happens, and with what it compares.
pub struct Seen<'a> {
    pub stamps: Option<&'a Stamps>,
    pub hashes: &'a Hashes,
    /// Folders never searched (the state).
    pub skip: &'a files::Skip,
    /// `--trust-remote-outputs`: outputs written on another machine, absent here, are
    /// taken as there.
    pub trust_remote: bool,
}

/// Looks at the task `rendered` (identity `identity`, key `key`): whether it is up to
/// date, and if not, why. `force`: it runs whatever. `no_stamp`: the reason when it has
/// no stamp (from the journal: `never ran`, `command changed`, `failed earlier`).
pub fn look(
    seen: &Seen<'_>,
    rendered: &Rendered,
    identity: Identity,
    key: u64,
    force: bool,
    no_stamp: &str,
) -> Look {
    let found = files::find(&rendered.cwd, &rendered.sources, seen.skip);
    if let Some(problem) = found.problems.first() {
        return unreadable(format!("cannot read source {problem}"));
    }
    let stamp = seen.stamps.and_then(|s| s.read(key));
    let before = stamp.as_ref().map_or(&[][..], |s| &s.sources[..]);
    let now = SystemTime::now();
    let mut diff = Diff::default();
    let mut sources = Vec::with_capacity(found.files.len());
    let mut old = before.iter().peekable();
    for file in found.files {
        let name = files::bytes(&file.rel);
        while let Some(gone) = old.next_if(|o| files::bytes(&o.path) < name) {
            diff.removed.push(&gone.name());
        }
        let earlier = old.next_if(|o| files::bytes(&o.path) == name);
        let hash = match earlier {
            Some(e) if e.stat == Some(file.stat) => e.hash,
            _ => match seen.hashes.hash(&file.path(&rendered.cwd), &file.stat) {
                Ok(hash) => hash,
                Err(e) => {
                    return unreadable(format!(
                        "cannot read source {}: {}",
                        file.name,
                        files::why(&e)
                    ))
                }
            },
        };
        match earlier {
            Some(e) if e.hash != hash => diff.changed.push(&file.name),
            Some(_) => {}
            None => diff.added.push(&file.name),
        }
        sources.push(FileRecord::from(file, hash, now));
    }
    for gone in old {
        diff.removed.push(&gone.name());
    }
    let mut look = Look::default();
    let mut refreshed_outputs = None;
    let reason = match &stamp {
        _ if force => Some("forced".to_string()),
        // Recorded all the same: when a file comes, the reason names it.
        _ if !found.unmatched.is_empty() => {
            Some(format!("no file matches: {}", found.unmatched.join(", ")))
        }
        None => Some(no_stamp.to_string()),
        Some(s) if s.identity != identity => Some("command changed".to_string()),
        Some(s) if s.failed => Some("failed earlier".to_string()),
        Some(s) => diff.reason().or_else(|| {
            let (reason, outputs) = look_at_outputs(seen, rendered, &s.outputs, now);
            if reason.is_none() && (sources != s.sources || outputs != s.outputs) {
                refreshed_outputs = Some(outputs);
            }
            reason
        }),
    };
    // Up to date: the sources are not needed again, unless their stats changed.
    if reason.is_none() {
        look.refreshed = refreshed_outputs.map(|outputs| Stamp {
            identity,
            failed: false,
            sources,
            outputs,
        });
        return look;
    }
    look.problem = reason
        .as_ref()
        .filter(|r| r.starts_with("cannot read"))
        .cloned();
    look.reason = reason;
    look.sources = Some(sources);
    look
}

fn unreadable(reason: String) -> Look {
    Look {
        problem: Some(reason.clone()),
        reason: Some(reason),
        ..Look::default()
    }
}

/// Whether the outputs `before` recorded are still there, unchanged, and every output
/// pattern still matches: the reason if not, and the outputs with their stats as now.
fn look_at_outputs(
    seen: &Seen<'_>,
    rendered: &Rendered,
    before: &Outputs,
    now: SystemTime,
) -> (Option<String>, Outputs) {
    // Written on this machine, in another folder (a worker started elsewhere): looked at
    // there. Written on another machine: looked at here (a shared folder), and what is
    // not here counts as there only with `--trust-remote-outputs`.
    let (cwd, remote) = match before.elsewhere.as_deref().and_then(|p| p.split_once(':')) {
        Some((host, dir)) if host == crate::sys::hostname() => (PathBuf::from(dir), None),
        Some(_) => (rendered.cwd.clone(), before.elsewhere.as_deref()),
        None => (rendered.cwd.clone(), None),
    };
    let found = files::find(&cwd, &rendered.outputs, seen.skip);
    let mut now_outputs = Outputs {
        files: Vec::with_capacity(before.files.len()),
        elsewhere: before.elsewhere.clone(),
        patterns: before.patterns.clone(),
    };
    if before.patterns != rendered.outputs {
        return (Some("outputs list changed".to_string()), now_outputs);
    }
    if let Some(problem) = found.problems.first() {
        return (Some(format!("cannot read output {problem}")), now_outputs);
    }
    let trusted = remote.is_some() && seen.trust_remote;
    // Where an output missing here was written, when not on this machine.
    let written = |name: &str| match remote {
        Some(place) => {
            format!("output missing: {name} (written on {place}; --trust-remote-outputs trusts it)")
        }
        None => format!("output missing: {name}"),
    };
    if let (Some(pattern), false) = (found.unmatched.first(), trusted) {
        return (Some(written(pattern)), now_outputs);
    }
    for record in &before.files {
        let name = files::bytes(&record.path);
        let Ok(i) = found
            .files
            .binary_search_by(|f| files::bytes(&f.rel).cmp(name))
        else {
            if !trusted {
                return (Some(written(&record.name())), now_outputs);
            }
            now_outputs.files.push(record.clone());
            continue;
        };
        let file = &found.files[i];
        let hash = if record.stat == Some(file.stat) {
            record.hash
        } else {
            match seen.hashes.hash(&file.path(&cwd), &file.stat) {
                Ok(hash) => hash,
                Err(e) => {
                    let reason = format!("cannot read output {}: {}", file.name, files::why(&e));
                    return (Some(reason), now_outputs);
                }
            }
        };
        if hash != record.hash {
            return (
                Some(format!("output changed: {}", record.name())),
                now_outputs,
            );
        }
        now_outputs.files.push(FileRecord::new(file, hash, now));
    }
    (None, now_outputs)
}

/// The outputs of a task that just succeeded in `rendered.cwd`, hashed, and the patterns
/// that matched nothing (or could not be read), to be said.
pub fn outputs(rendered: &Rendered, hashes: &Hashes, skip: &files::Skip) -> (Outputs, Vec<String>) {
    let found = files::find(&rendered.cwd, &rendered.outputs, skip);
    let mut missing: Vec<String> = found
        .unmatched
        .iter()
        .map(|pattern| format!("no file matches its output {pattern}"))
        .chain(found.problems.iter().map(|p| format!("its output {p}")))
        .collect();
    let now = SystemTime::now();
    let mut files = Vec::with_capacity(found.files.len());
    for file in &found.files {
        match hashes.hash(&file.path(&rendered.cwd), &file.stat) {
            Ok(hash) => files.push(FileRecord::new(file, hash, now)),
            Err(e) => missing.push(format!("its output {}: {}", file.name, files::why(&e))),
        }
    }
    (
        Outputs {
            files,
            elsewhere: None,
            patterns: rendered.outputs.clone(),
        },
        missing,
    )
}

/// Where outputs were written: `HOST:CWD` (the cwd canonical).
pub fn place(host: &str, cwd: &Path) -> String {
    // Canonical, so that one folder spelt two ways (a link, `..`) is one place.
    let cwd = std::fs::canonicalize(cwd)
        .or_else(|_| std::path::absolute(cwd))
        .unwrap_or_else(|_| cwd.to_path_buf());
    format!("{host}:{}", cwd.display())
}

/// How the sources differ from the stamp's: the first few names of each kind, and how
/// many in all (never every name: a first run "adds" every source).
#[derive(Debug, Default)]
struct Diff {
    changed: Named,
    added: Named,
    removed: Named,
}

/// The first [`NAMED`] names of a list, and its length.
#[derive(Debug, Default)]
struct Named {
    names: Vec<String>,
    count: usize,
}

impl Named {
    fn push(&mut self, name: &str) {
        if self.names.len() < NAMED {
            self.names.push(name.to_string());
        }
        self.count += 1;
    }

    /// `a, b, c and 4 more`.
    fn listed(&self) -> String {
        let shown = self.names.join(", ");
        match self.count - self.names.len() {
            0 => shown,
            more => format!("{shown} and {more} more"),
        }
    }
}

impl Diff {
    fn reason(&self) -> Option<String> {
        let parts: Vec<String> = [
            ("source changed", &self.changed),
            ("sources added", &self.added),
            ("source removed", &self.removed),
        ]
        .into_iter()
        .filter(|(_, names)| names.count > 0)
        .map(|(what, names)| format!("{what}: {}", names.listed()))
        .collect();
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

/// A hash as 64 hex digits.
mod hex {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(hash: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&blake3::Hash::from_bytes(*hash).to_hex())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        blake3::Hash::from_hex(text.as_bytes())
            .map(|h| *h.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_is_read_back_as_written_and_a_torn_one_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let stamps = Stamps::new(dir.path());
        let record = |name: &str| FileRecord {
            path: name.into(),
            hash: *blake3::hash(name.as_bytes()).as_bytes(),
            stat: Some(Stat {
                size: 1,
                mtime: 2,
                ino: 3,
                ctime: 4,
            }),
        };
        let stamp = Stamp {
            identity: 0xabc,
            failed: false,
            sources: vec![record("a"), record("b \"quoted\"\n"), {
                use std::os::unix::ffi::OsStrExt;
                FileRecord {
                    path: std::ffi::OsStr::from_bytes(b"c\xff\\xFF").into(),
                    ..record("c")
                }
            }],
            outputs: Outputs {
                files: vec![FileRecord {
                    stat: None,
                    ..record("out")
                }],
                elsewhere: Some("host:/w".into()),
                patterns: vec!["out".into()],
            },
        };
        stamps.write(7, "j", "l", stamp.parts()).unwrap();
        assert_eq!(stamps.read(7), Some(stamp));
        assert_eq!(stamps.read(8), None);
        let path = stamps.path(7);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, &text[..text.len() - 10]).unwrap();
        assert_eq!(stamps.read(7), None);
    }

    #[test]
    fn an_older_stamp_with_an_escaped_name_is_no_stamp() {
        let dir = tempfile::tempdir().unwrap();
        let stamps = Stamps::new(dir.path());
        let hash = "0".repeat(64);
        let older = |name: &str| {
            let path = stamps.path(9);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let head = r#"{"runner_stamp":1,"identity":"abc","job":"j","label":"l","failed":false,"sources":1,"outputs":0,"elsewhere":null}"#;
            let line = format!(r#"{{"p":{name:?},"h":"{hash}","s":null}}"#);
            std::fs::write(&path, format!("{head}\n{line}\n")).unwrap();
            stamps.read(9)
        };
        assert_eq!(
            older("in/a.txt").unwrap().sources[0].path,
            PathBuf::from("in/a.txt")
        );
        // Written as shown: a tab, or a file literally named so? Unknown: no stamp.
        assert_eq!(older("in/a\\x09b"), None);
    }

    #[test]
    fn one_folder_spelt_two_ways_is_one_place() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("w")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("w"), dir.path().join("link")).unwrap();
        let here = place("h", &dir.path().join("w"));
        assert_eq!(place("h", &dir.path().join("link")), here);
        assert_eq!(place("h", &dir.path().join("w/../w")), here);
        assert_ne!(place("other", &dir.path().join("w")), here);
    }

    #[test]
    fn reasons_name_a_few_files_and_count_the_rest() {
        let mut diff = Diff::default();
        diff.changed.push("f1");
        for i in 1..=5 {
            diff.added.push(&format!("f{i}"));
        }
        assert_eq!(
            diff.reason().unwrap(),
            "source changed: f1; sources added: f1, f2, f3 and 2 more"
        );
        assert_eq!(Diff::default().reason(), None);
    }
}
