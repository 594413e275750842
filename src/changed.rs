//! `--changed-since REF`: which tasks a change touches. The one module that runs git.
//!
//! The changed files are those that differ between the merge base of REF and HEAD and
//! the working tree: `git diff --name-status -z --no-renames BASE` (committed, staged
//! and unstaged changes; a rename is its old name deleted and its new one added, so it
//! counts under both) and `git ls-files -z --others --exclude-standard` (untracked
//! files git does not ignore). Names are read as bytes and kept relative to the
//! repository's root, in a sorted set.
//!
//! A task is touched when one of its `sources` patterns matches a changed path (a
//! deleted one too): each pattern is made relative to the root (through the task's
//! cwd) and only the changed paths under its literal folder are matched against it, so
//! that deciding costs no file system access. Before the run, [`Filter::new`] looks at
//! every task it can know (not those fed by a queue, unless their sources do not depend
//! on the item) to find the jobs with a touched task; every job that needs one of them,
//! through any chain, and every job tied to one by a queue, runs whole.
//! `state::decide` asks [`Filter::judge`] of each task.

use crate::jobfile::items_file::ItemReader;
use crate::jobfile::{Items, Job, JobFile, JobId};
use crate::render::{self, Rendered};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ffi::OsStr;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

/// The reason of a task of a job without `sources`.
pub const CANNOT_TELL: &str = "no sources: cannot tell";

/// Why `--changed-since` cannot be answered; nothing ran (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum ChangedError {
    #[error("--changed-since needs git, which cannot be run: {source}; install git (or put it on PATH), or run without --changed-since")]
    GitMissing {
        #[source]
        source: std::io::Error,
    },
    #[error("--changed-since: {} is not in a git checkout ({}); run it in a clone of the repository, or run without --changed-since", dir.display(), said(stderr))]
    NotACheckout { dir: PathBuf, stderr: Vec<u8> },
    #[error("--changed-since: the checkout in {} has no commit yet; commit first, or run without --changed-since", dir.display())]
    NoCommit { dir: PathBuf },
    #[error("--changed-since: git knows no revision `{reference}`; fetch it first (`git fetch origin BRANCH`), or name a branch, tag or commit of this repository")]
    UnknownRevision { reference: String },
    #[error("--changed-since: `{reference}` and HEAD have no common ancestor in this shallow clone; fetch more history (`git fetch --unshallow`; in GitHub Actions `fetch-depth: 0` for actions/checkout, in GitLab CI `GIT_DEPTH: 0`)")]
    ShallowClone { reference: String },
    #[error("--changed-since: `{reference}` and HEAD have no common ancestor (unrelated histories); name a revision HEAD comes from")]
    NoMergeBase { reference: String },
    #[error("--changed-since: `git {command}` failed ({status}): {}", said(stderr))]
    Git {
        command: String,
        status: std::process::ExitStatus,
        stderr: Vec<u8>,
    },
}

/// What git said on stderr, on one line.
fn said(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        "git said nothing".to_string()
    } else {
        text
    }
}

/// `--changed-since auto`: the base CI gives, or why there is none (everything runs).
pub fn auto_base(var: impl Fn(&str) -> Option<String>) -> Result<String, &'static str> {
    let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
    if let Some(base) = set("GITHUB_BASE_REF") {
        return Ok(format!("origin/{}", base.trim()));
    }
    if let Some(sha) = set("CI_MERGE_REQUEST_DIFF_BASE_SHA") {
        return Ok(sha.trim().to_string());
    }
    Err("note: --changed-since auto: not a GitHub pull request nor a GitLab merge request (neither GITHUB_BASE_REF nor CI_MERGE_REQUEST_DIFF_BASE_SHA is set): every task is judged as without --changed-since")
}

/// What the change filter says of a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judged {
    /// It runs (unless up to date or done earlier), for this reason.
    Touched(String),
    /// Its job has no `sources`: it runs, [`CANNOT_TELL`].
    CannotTell,
    /// No source of it changed: it does not run.
    Unchanged(String),
}

/// The changed files, and the jobs that run whole because of them.
#[derive(Debug)]
pub struct Filter {
    /// REF as the user named it (or as `auto` found it), for the reasons.
    pub reference: String,
    /// The repository's root, as git names it.
    root: PathBuf,
    /// The job file's folder, as the file names it and canonical.
    dir: PathBuf,
    dir_canonical: PathBuf,
    /// Changed paths, relative to the root.
    changed: BTreeSet<PathBuf>,
    /// The same as a tree of names, walked a component at a time.
    tree: Node,
    /// Globs of one component (`*`, `v?.[ch]`), compiled once.
    globs: std::sync::Mutex<HashMap<String, Option<globset::GlobMatcher>>>,
    /// Per job (by id in the file given to `new`): why every task of it runs.
    whole: Vec<Option<String>>,
    /// The job names, by id, to find a job's entry in `whole`.
    names: Vec<String>,
}

impl Filter {
    /// The files changed since `reference` in the checkout holding `file`, and the jobs
    /// of `file` they make run. Runs git; an error says what to do.
    pub fn new(file: &JobFile, reference: &str) -> Result<Filter, ChangedError> {
        let dir = if file.dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            file.dir.clone()
        };
        let git = Git { dir: dir.clone() };
        let root = git.root()?;
        if reference.starts_with('-') {
            return Err(ChangedError::UnknownRevision {
                reference: reference.to_string(),
            });
        }
        git.verify("HEAD")
            .map_err(|_| ChangedError::NoCommit { dir: dir.clone() })?;
        git.verify(reference)?;
        let base = git.merge_base(reference)?;
        let root_git = Git { dir: root.clone() };
        let mut changed = BTreeSet::new();
        let diff = root_git.output(&[
            "diff",
            "--name-status",
            "-z",
            "--no-renames",
            "--no-ext-diff",
            "--no-textconv",
            "--ignore-submodules=none",
            &base,
            "--",
        ])?;
        read_name_status(&diff, &mut changed);
        let others = root_git.output(&["ls-files", "-z", "--others", "--exclude-standard"])?;
        changed.extend(
            others
                .split(|b| *b == 0)
                .filter(|n| !n.is_empty())
                .map(|n| PathBuf::from(OsStr::from_bytes(n))),
        );
        let dir_canonical = std::fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone());
        let mut tree = Node::default();
        for path in &changed {
            tree.insert(path);
        }
        let mut filter = Filter {
            tree,
            globs: Default::default(),
            reference: reference.to_string(),
            root,
            dir: file.dir.clone(),
            dir_canonical,
            changed,
            whole: vec![None; file.jobs.len()],
            names: file.jobs.iter().map(|j| j.name.clone()).collect(),
        };
        filter.whole = filter.spread(file);
        Ok(filter)
    }

    /// How many files changed.
    pub fn count(&self) -> usize {
        self.changed.len()
    }

    /// What becomes of a task of `job`, rendered as `rendered`.
    pub fn judge(&self, job: &Job, rendered: &Rendered) -> Judged {
        if job.sources.is_empty() {
            return Judged::CannotTell;
        }
        if let Some(path) = self.touched(rendered) {
            return Judged::Touched(format!(
                "source changed since {}: {}",
                self.reference,
                crate::pattern::shown(&path)
            ));
        }
        let whole = self
            .names
            .iter()
            .position(|n| *n == job.name)
            .and_then(|j| self.whole[j].clone());
        match whole {
            Some(reason) => Judged::Touched(reason),
            None => Judged::Unchanged(format!("no source changed since {}", self.reference)),
        }
    }

    /// The first changed path a source pattern of the task matches, as the pattern
    /// names it (relative to the task's cwd).
    fn touched(&self, rendered: &Rendered) -> Option<PathBuf> {
        // The cwd as the job file's folder names it, made canonical the same way.
        let cwd = match rendered.cwd.strip_prefix(&self.dir) {
            Ok(rest) => self.dir_canonical.join(rest),
            Err(_) => std::path::absolute(&rendered.cwd).unwrap_or(rendered.cwd.clone()),
        };
        for text in &rendered.sources {
            if let Some(found) = self.walk(&cwd, text) {
                match found {
                    Some(path) => return Some(path),
                    None => continue,
                }
            }
            let Ok(pattern) = crate::pattern::parse(text) else {
                continue;
            };
            let base = normal(&cwd.join(&pattern.base));
            let Ok(rel) = base.strip_prefix(&self.root) else {
                continue;
            };
            let Some(glob) = &pattern.glob else {
                if self.changed.contains(rel) {
                    return Some(pattern.base.clone());
                }
                continue;
            };
            // Paths under `rel` are one run of the set (paths sort by components).
            for path in self.changed.range(rel.to_path_buf()..) {
                let Ok(rest) = path.strip_prefix(rel) else {
                    break;
                };
                if !rest.as_os_str().is_empty() && glob.is_match(rest) {
                    return Some(pattern.base.join(rest));
                }
            }
        }
        None
    }

    /// The changed path `text` (a pattern relative to `cwd`) matches, found a component
    /// at a time through the tree: a literal name is one lookup, a glob of one component
    /// is matched against the names of one folder. `None` when the pattern is not of
    /// that kind (`**`, `{…}` alternatives, `..` after a glob): then the caller matches
    /// the whole pattern against every changed path under its literal folder.
    fn walk(&self, cwd: &Path, text: &str) -> Option<Option<PathBuf>> {
        let parts: Vec<&str> = text
            .split('/')
            .filter(|p| !p.is_empty() && *p != ".")
            .collect();
        let meta = |p: &str| p.contains(['*', '?', '[', ']', '{', '}']);
        let literal = parts.iter().position(|p| meta(p)).unwrap_or(parts.len());
        let rest = &parts[literal..];
        if rest
            .iter()
            .any(|p| p.contains("**") || p.contains(['{', '}']) || *p == "..")
        {
            return None;
        }
        let mut shown = PathBuf::from(if text.starts_with('/') { "/" } else { "" });
        shown.extend(&parts[..literal]);
        let base = normal(&cwd.join(&shown));
        let Ok(rel) = base.strip_prefix(&self.root) else {
            return Some(None);
        };
        let Some(node) = self.tree.find(rel) else {
            return Some(None);
        };
        Some(self.descend(node, rest, shown))
    }

    fn descend(&self, node: &Node, rest: &[&str], path: PathBuf) -> Option<PathBuf> {
        let Some((part, rest)) = rest.split_first() else {
            return node.end.then_some(path);
        };
        if !part.contains(['*', '?', '[', ']']) {
            let child = node.children.get(OsStr::new(part))?;
            return self.descend(child, rest, path.join(part));
        }
        let glob = {
            let mut globs = self.globs.lock().unwrap_or_else(|e| e.into_inner());
            globs
                .entry(part.to_string())
                .or_insert_with(|| {
                    globset::GlobBuilder::new(part)
                        .literal_separator(true)
                        .backslash_escape(false)
                        .build()
                        .ok()
                        .map(|g| g.compile_matcher())
                })
                .clone()?
        };
        node.children
            .iter()
            .filter(|(name, _)| glob.is_match(Path::new(name)))
            .find_map(|(name, child)| self.descend(child, rest, path.join(name)))
    }

    /// Per job: why all its tasks run (it needs, through any chain, a job with a
    /// touched task, or is tied by a queue to one that runs), or `None`.
    fn spread(&self, file: &JobFile) -> Vec<Option<String>> {
        let touched: Vec<JobId> = (0..file.jobs.len())
            .filter(|&j| self.any_touched(file, &file.jobs[j]))
            .collect();
        let mut whole: Vec<Option<String>> = vec![None; file.jobs.len()];
        let mut next: VecDeque<JobId> = touched.iter().copied().collect();
        let mut seen = vec![false; file.jobs.len()];
        for &j in &touched {
            seen[j] = true;
        }
        while let Some(j) = next.pop_front() {
            let name = &file.jobs[j].name;
            let mut reach = |k: JobId, why: String| {
                if whole[k].is_none() && k != j {
                    whole[k] = Some(why);
                    if !seen[k] {
                        seen[k] = true;
                        next.push_back(k);
                    }
                }
            };
            for (k, job) in file.jobs.iter().enumerate() {
                if job.needs.contains(&j) {
                    reach(
                        k,
                        format!(
                            "needs `{name}`, which runs for changes since {}",
                            self.reference
                        ),
                    );
                }
            }
            for queue in &file.queues {
                let tied: Vec<JobId> = queue
                    .producers
                    .iter()
                    .copied()
                    .chain(queue.consumer)
                    .collect();
                if !tied.contains(&j) {
                    continue;
                }
                for k in tied {
                    reach(
                        k,
                        format!(
                            "tied by queue `{}` to `{name}`, which runs for changes since {}",
                            queue.name, self.reference
                        ),
                    );
                }
            }
        }
        whole
    }

    /// Whether some task of `job` that can be known before the run is touched. Tasks
    /// fed by a queue are known only when their sources do not depend on the item.
    fn any_touched(&self, file: &JobFile, job: &Job) -> bool {
        if job.sources.is_empty() {
            return false;
        }
        if let Items::Queue(_) = job.items {
            let per_task = job.sources.iter().any(|t| t.per_task().is_some())
                || job.cwd.as_ref().is_some_and(|t| t.per_task().is_some());
            return !per_task && self.touched(&render::task(file, job, "", 0)).is_some();
        }
        let count = job.items.count().unwrap_or(0);
        let mut reader = match &job.items {
            Items::File { path, .. } => Some(ItemReader::new(path)),
            _ => None,
        };
        for index in 0..count {
            let item = match &mut reader {
                Some(reader) => match reader.item(index) {
                    Ok(item) => item,
                    // Said when the task would start.
                    Err(_) => return false,
                },
                None => job.items.in_memory(index).unwrap_or_default(),
            };
            if self
                .touched(&render::task(file, job, &item, index))
                .is_some()
            {
                return true;
            }
        }
        false
    }
}

/// Changed paths as a tree of names.
#[derive(Debug, Default)]
struct Node {
    /// A changed path ends here.
    end: bool,
    children: BTreeMap<OsString, Node>,
}

impl Node {
    fn insert(&mut self, path: &Path) {
        let mut node = self;
        for c in path.components() {
            node = node
                .children
                .entry(c.as_os_str().to_os_string())
                .or_default();
        }
        node.end = true;
    }

    fn find(&self, path: &Path) -> Option<&Node> {
        let mut node = self;
        for c in path.components() {
            node = node.children.get(c.as_os_str())?;
        }
        Some(node)
    }
}

/// `path` without `.` and with `..` taken back where it can be (no file system access).
fn normal(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// `git diff --name-status -z`: a status, then one path (two for a copy or a rename),
/// each ended by NUL. Every path named counts.
fn read_name_status(bytes: &[u8], changed: &mut BTreeSet<PathBuf>) {
    let mut fields = bytes.split(|b| *b == 0);
    while let Some(status) = fields.next() {
        if status.is_empty() {
            continue;
        }
        let paths = if matches!(status[0], b'R' | b'C') {
            2
        } else {
            1
        };
        for _ in 0..paths {
            if let Some(path) = fields.next().filter(|p| !p.is_empty()) {
                changed.insert(PathBuf::from(OsStr::from_bytes(path)));
            }
        }
    }
}

/// git, run in a folder.
struct Git {
    dir: PathBuf,
}

impl Git {
    fn run(&self, args: &[&str]) -> Result<std::process::Output, ChangedError> {
        Command::new("git")
            .arg("-C")
            .arg(&self.dir)
            .args(args)
            .stdin(Stdio::null())
            .env("GIT_TERMINAL_PROMPT", "0")
            .output()
            .map_err(|source| ChangedError::GitMissing { source })
    }

    /// Its stdout, or the error of a command that failed.
    fn output(&self, args: &[&str]) -> Result<Vec<u8>, ChangedError> {
        let out = self.run(args)?;
        if !out.status.success() {
            return Err(ChangedError::Git {
                command: args.join(" "),
                status: out.status,
                stderr: out.stderr,
            });
        }
        Ok(out.stdout)
    }

    /// The root of the checkout.
    fn root(&self) -> Result<PathBuf, ChangedError> {
        let out = self.run(&["rev-parse", "--show-toplevel"])?;
        if !out.status.success() {
            return Err(ChangedError::NotACheckout {
                dir: self.dir.clone(),
                stderr: out.stderr,
            });
        }
        let mut name = out.stdout;
        while name.last() == Some(&b'\n') {
            name.pop();
        }
        if name.is_empty() {
            // Inside `.git` itself, or a bare repository: no working tree.
            return Err(ChangedError::NotACheckout {
                dir: self.dir.clone(),
                stderr: b"no working tree".to_vec(),
            });
        }
        Ok(PathBuf::from(OsStr::from_bytes(&name)))
    }

    /// That `reference` names a commit.
    fn verify(&self, reference: &str) -> Result<(), ChangedError> {
        let commit = format!("{reference}^{{commit}}");
        let out = self.run(&["rev-parse", "--verify", "--quiet", &commit])?;
        if out.status.success() {
            Ok(())
        } else {
            Err(ChangedError::UnknownRevision {
                reference: reference.to_string(),
            })
        }
    }

    /// The merge base of `reference` and HEAD.
    fn merge_base(&self, reference: &str) -> Result<String, ChangedError> {
        let out = self.run(&["merge-base", reference, "HEAD"])?;
        if out.status.success() {
            let base = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if !base.is_empty() {
                return Ok(base);
            }
        }
        if out.status.code() != Some(1) {
            return Err(ChangedError::Git {
                command: format!("merge-base {reference} HEAD"),
                status: out.status,
                stderr: out.stderr,
            });
        }
        let shallow = self.output(&["rev-parse", "--is-shallow-repository"])?;
        if shallow.starts_with(b"true") {
            Err(ChangedError::ShallowClone {
                reference: reference.to_string(),
            })
        } else {
            Err(ChangedError::NoMergeBase {
                reference: reference.to_string(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_status_keeps_every_name_as_bytes() {
        let mut changed = BTreeSet::new();
        read_name_status(
            b"M\0src/a.rs\0D\0old\nname\0R100\0from\0to\xff\0A\0new\0",
            &mut changed,
        );
        let names: Vec<&[u8]> = changed.iter().map(|p| p.as_os_str().as_bytes()).collect();
        assert_eq!(
            names,
            [&b"from"[..], b"new", b"old\nname", b"src/a.rs", b"to\xff"]
        );
    }

    #[test]
    fn auto_takes_github_then_gitlab() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            auto_base(env(&[("GITHUB_BASE_REF", "main")])),
            Ok("origin/main".to_string())
        );
        assert_eq!(
            auto_base(env(&[
                ("GITHUB_BASE_REF", ""),
                ("CI_MERGE_REQUEST_DIFF_BASE_SHA", "abc123")
            ])),
            Ok("abc123".to_string())
        );
        assert!(auto_base(env(&[])).is_err());
    }

    #[test]
    fn normal_takes_dots_back() {
        assert_eq!(normal(Path::new("/a/./b/../c")), PathBuf::from("/a/c"));
    }
}
