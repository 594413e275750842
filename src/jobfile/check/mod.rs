//! The per-job checks: turning the typed values of `raw` into the checked model of
//! `jobfile`, one key at a time, and collecting a [`Diagnostic`] for every value that is
//! wrong, each pointing at that value in the file. A wrong value is replaced by a default
//! and checking goes on, so that one pass reports every problem (`jobfile::parse` sorts
//! them in line order).
//!
//! This module checks one job (and the top-level keys) at a time. It does not parse TOML
//! nor check types (`raw` does), and it leaves rules that span jobs
//! (queue wiring, cycles) to `wiring`, which runs only once every job here checked out.
//! Its only I/O is looking at the files and folders the job file names (`items = { file }`,
//! `stdin = { file }`, `cwd`), so that a missing one is reported before anything runs.
//!
//! This file holds the pass itself (the top-level keys, each job's name, `shell`,
//! `needs` and `to`) and the value checks the others share; `inputs` checks what a task
//! runs and reads (`command`, `items`, `stdin`), `process` how its process is run (`env`,
//! `cwd`, `timeout`, `retries`, `success_codes`).

mod inputs;
mod process;

use super::raw::{Name, RawFile, RawJob, RawQueue};
use super::{
    valid_name, Items, Job, JobFile, JobId, QueueDef, QueueId, StdinSpec, DEFAULT_CAPACITY,
};
use crate::diagnostic::{suggest, Diagnostic};
use crate::template::Template;
use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// Checks every job of `raw` on its own, after the problems `raw` found (`found`).
/// Returns the model and every problem; the model is only usable when there are none.
pub(super) fn file(
    raw: RawFile<'_>,
    found: Vec<Diagnostic>,
    source: &str,
    path: &Path,
    dir: PathBuf,
) -> (JobFile, Vec<Diagnostic>) {
    let mut checker = Checker {
        source,
        dir: dir.clone(),
        diagnostics: found,
        queues: Vec::new(),
        queue_ids: HashMap::new(),
    };
    let file = checker.check(raw, path, dir);
    (file, checker.diagnostics)
}

/// The state of one pass over a file: the problems found so far, and the queues named
/// so far (a queue is declared by `[queues.NAME]` or by the first job that names it).
struct Checker<'s> {
    /// The job file's text, for pointing inside a string value.
    source: &'s str,
    /// The job file's folder, which relative paths in it are resolved against.
    dir: PathBuf,
    diagnostics: Vec<Diagnostic>,
    queues: Vec<QueueDef>,
    queue_ids: HashMap<String, QueueId>,
}

impl Checker<'_> {
    fn error(&mut self, message: impl Into<String>, span: Range<usize>) {
        self.diagnostics.push(Diagnostic::at(message, span));
    }

    fn check(&mut self, raw: RawFile<'_>, path: &Path, dir: PathBuf) -> JobFile {
        let pool = raw.pool.and_then(|p| self.positive(&p, "pool"));
        let shell = self.top_shell(raw.shell);
        let env = self.env(raw.env);
        self.declare_queues(raw.queues);
        // Every name first, so that `needs` may name a job defined further down.
        let names: HashMap<String, JobId> = raw
            .jobs
            .iter()
            .enumerate()
            .map(|(i, (name, _))| (name.get_ref().clone(), i))
            .collect();
        let mut checked = Vec::new();
        for (id, (name, job)) in raw.jobs.into_iter().enumerate() {
            checked.push(self.job(id, name, job, &names, &shell));
        }
        JobFile {
            path: path.to_path_buf(),
            dir,
            source: String::new(),
            pool,
            fail_fast: raw.fail_fast.unwrap_or(false),
            env,
            queues: std::mem::take(&mut self.queues),
            jobs: checked,
        }
    }

    /// The top-level `shell`, which every job's string command runs with unless the job
    /// sets its own.
    fn top_shell(&mut self, raw: Option<Spanned<Vec<String>>>) -> Vec<String> {
        match raw {
            Some(s) if s.get_ref().is_empty() => {
                self.error(
                    "`shell` must name a program, e.g. [\"sh\", \"-c\"]",
                    s.span(),
                );
                default_shell()
            }
            Some(s) => s.into_inner(),
            None => default_shell(),
        }
    }

    /// `[queues.NAME]` tables: declared before any job names them, so that their
    /// capacity holds however the jobs refer to them.
    fn declare_queues(&mut self, raw: Vec<(Name, RawQueue)>) {
        for (name, queue) in raw {
            let capacity = match queue.capacity {
                Some(c) => self.positive(&c, "capacity").unwrap_or(DEFAULT_CAPACITY),
                None => DEFAULT_CAPACITY,
            };
            let span = name.span();
            let id = self.queue(name.get_ref(), span.clone());
            self.queues[id].capacity = capacity;
        }
    }

    /// The queue called `name`, declared here (at `span`) if no one named it before.
    fn queue(&mut self, name: &str, span: Range<usize>) -> QueueId {
        if let Some(id) = self.queue_ids.get(name) {
            return *id;
        }
        if !valid_name(name) {
            self.error(
                format!("queue name `{name}` may only hold letters, digits, `_` and `-`"),
                span.clone(),
            );
        }
        let id = self.queues.len();
        self.queues.push(QueueDef {
            name: name.to_string(),
            capacity: DEFAULT_CAPACITY,
            producers: Vec::new(),
            consumer: None,
            span,
        });
        self.queue_ids.insert(name.to_string(), id);
        id
    }

    /// One `[jobs.NAME]` table, key by key. A wrong value is reported and replaced by
    /// its default, so that the checks after it still run and report their own problems.
    fn job(
        &mut self,
        id: JobId,
        name: Name,
        job: RawJob<'_>,
        names: &HashMap<String, JobId>,
        shell: &[String],
    ) -> Job {
        let span = name.span();
        let name = name.into_inner();
        if !valid_name(&name) {
            self.error(
                format!("job name `{name}` may only hold letters, digits, `_` and `-`"),
                span.clone(),
            );
        }
        let shell = self.job_shell(job.shell, shell);
        let command = match &job.command {
            Some(command) => self.command(command, shell),
            // Reported by `raw` (missing, or the job is not a table).
            None => super::CommandSpec::Argv(Vec::new()),
        };
        let (needs, needs_spans) = self.needs(&job.needs, id, &name, names);
        let items = match &job.items {
            None => Items::Single,
            Some(items) => self.items(items, id),
        };
        let stdin = match &job.stdin {
            None => StdinSpec::Empty,
            Some(stdin) => self.stdin(stdin, id),
        };
        // A job reads a queue either as one task per item or on stdin, not both.
        if let (Items::Queue(_), StdinSpec::Queue(_)) = (&items, &stdin) {
            self.error(
                format!("job `{name}` reads a queue twice: use `items = {{ queue }}` or `stdin = {{ queue }}`, not both"),
                job.stdin.as_ref().map(|s| s.span()).unwrap_or(span.clone()),
            );
        }
        let to = job.to.as_ref().map(|to| {
            let q = self.queue(to.get_ref(), to.span());
            self.queues[q].producers.push(id);
            q
        });
        let env = self.env(job.env);
        let cwd = self.cwd(job.cwd.as_ref());
        let timeout = self.timeout(job.timeout.as_ref());
        let retry_delay = job
            .retry_delay
            .as_ref()
            .and_then(|t| self.duration(t, "retry_delay"))
            .unwrap_or(Duration::from_secs(1));
        let retries = self.retries(job.retries.as_ref());
        let concurrency = job
            .concurrency
            .as_ref()
            .and_then(|c| self.positive(c, "concurrency"));
        let success_codes = self.success_codes(job.success_codes.as_ref());
        Job {
            id,
            name,
            span,
            description: job.description,
            command,
            needs,
            needs_spans,
            items,
            stdin,
            to,
            env,
            cwd,
            timeout,
            retries,
            retry_delay,
            concurrency,
            success_codes,
            allow_failure: job.allow_failure.unwrap_or(false),
            local: job.local.unwrap_or(false),
        }
    }

    /// A job's own `shell`, or the top-level one (`inherited`) when it sets none.
    fn job_shell(
        &mut self,
        raw: Option<Spanned<Vec<String>>>,
        inherited: &[String],
    ) -> Vec<String> {
        match raw {
            Some(s) if s.get_ref().is_empty() => {
                self.error("`shell` must name a program", s.span());
                inherited.to_vec()
            }
            Some(s) => s.into_inner(),
            None => inherited.to_vec(),
        }
    }

    /// `needs`: the jobs named, each once, with where each was named in the file. A job
    /// needing itself or a job not in the file is reported.
    fn needs(
        &mut self,
        raw: &[Spanned<String>],
        id: JobId,
        name: &str,
        names: &HashMap<String, JobId>,
    ) -> (Vec<JobId>, Vec<Range<usize>>) {
        let mut needs = Vec::new();
        let mut needs_spans = Vec::new();
        for need in raw {
            match names.get(need.get_ref()) {
                Some(&dep) if dep == id => {
                    self.error(format!("job `{name}` needs itself"), need.span())
                }
                Some(&dep) => {
                    if !needs.contains(&dep) {
                        needs.push(dep);
                        needs_spans.push(need.span());
                    }
                }
                None => {
                    let hint = suggest(need.get_ref(), names.keys().map(String::as_str))
                        .map(|s| format!("did you mean `{s}`?"));
                    let mut d = Diagnostic::at(
                        format!(
                            "job `{name}` needs `{}`, which is not a job in this file",
                            need.get_ref()
                        ),
                        need.span(),
                    );
                    if let Some(hint) = hint {
                        d = d.with_note(hint);
                    }
                    self.diagnostics.push(d);
                }
            }
        }
        (needs, needs_spans)
    }

    fn template(&mut self, raw: &Spanned<String>) -> Option<Template> {
        self.template_at(raw.get_ref(), raw.span())
    }

    /// Parses a template that appears in the file at `span` (a TOML string, quotes and
    /// all). A NUL byte is refused here because no process argument, environment value
    /// or path can hold one.
    fn template_at(&mut self, text: &str, span: Range<usize>) -> Option<Template> {
        if text.contains('\0') {
            self.error("a NUL byte cannot be passed to a process", span);
            return None;
        }
        match Template::parse(text) {
            Ok(t) => Some(t),
            Err(e) => {
                self.error(e.message, span);
                None
            }
        }
    }

    /// A count (`pool`, `capacity`, `concurrency`): at least 1, and at most a million, far
    /// above any real need, so that a typo is refused at load time.
    fn positive(&mut self, raw: &Spanned<i64>, key: &str) -> Option<usize> {
        match *raw.get_ref() {
            n if (1..=1_000_000).contains(&n) => Some(n as usize),
            n => {
                self.error(format!("`{key}` must be at least 1 (got {n})"), raw.span());
                None
            }
        }
    }

    /// A duration, at most [`duration::CEILING`] (so that adding it to a clock reading
    /// cannot overflow).
    fn duration(&mut self, raw: &Spanned<String>, key: &str) -> Option<Duration> {
        match super::duration::parse(raw.get_ref(), super::duration::Bounds::ANY) {
            Ok(d) => Some(d),
            Err(e) => {
                let d = Diagnostic::at(format!("`{key}` {e}"), raw.span());
                self.diagnostics.push(match e {
                    super::duration::DurationError::NotADuration(_) => {
                        d.with_note(super::duration::FORM)
                    }
                    _ => d,
                });
                None
            }
        }
    }
}

fn default_shell() -> Vec<String> {
    vec!["sh".into(), "-c".into()]
}

/// "an integer", "a string": a TOML type with its article.
fn article(kind: &str) -> String {
    match kind.as_bytes().first() {
        Some(b'a' | b'e' | b'i' | b'o' | b'u') => format!("an {kind}"),
        _ => format!("a {kind}"),
    }
}
