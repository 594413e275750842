//! The job file: the one module that knows TOML. `load` reads a file and returns either
//! the checked model ([`JobFile`]) or every problem found, each with its place in the
//! file. It reads the job file and the files it names (`items = { file }`), and does no
//! other I/O; graph-level rules (cycles, queue wiring) are checked by `graph`.
//!
//! Longer than 400 lines on purpose: each key's check sits next to the model field it
//! fills, so the rules of the format read in one place.

mod raw;
pub mod wiring;

use crate::diagnostic::{suggest, Diagnostic};
use crate::template::{Placeholder, Template};
use raw::{RawFile, RawJob, JOB_KEYS, QUEUE_KEYS, TOP_KEYS};
use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

pub type JobId = usize;
pub type QueueId = usize;

pub const DEFAULT_CAPACITY: usize = 1024;

/// A checked job file.
#[derive(Debug, Clone)]
pub struct JobFile {
    /// The path as the user gave it.
    pub path: PathBuf,
    /// The folder relative paths in the file are resolved against.
    pub dir: PathBuf,
    pub source: String,
    pub pool: Option<usize>,
    pub fail_fast: bool,
    pub env: Vec<(String, Template)>,
    pub queues: Vec<QueueDef>,
    pub jobs: Vec<Job>,
}

#[derive(Debug, Clone)]
pub struct QueueDef {
    pub name: String,
    pub capacity: usize,
    pub producers: Vec<JobId>,
    pub consumer: Option<JobId>,
    /// Where the queue is declared or first named.
    pub span: Range<usize>,
}

#[derive(Debug, Clone)]
pub struct Job {
    pub id: JobId,
    pub name: String,
    pub span: Range<usize>,
    pub description: Option<String>,
    pub command: CommandSpec,
    pub needs: Vec<JobId>,
    pub needs_spans: Vec<Range<usize>>,
    pub items: Items,
    pub stdin: StdinSpec,
    pub to: Option<QueueId>,
    pub env: Vec<(String, Template)>,
    pub cwd: Option<Template>,
    pub timeout: Option<Duration>,
    pub retries: u32,
    pub retry_delay: Duration,
    pub concurrency: Option<usize>,
    pub success_codes: Vec<i32>,
    pub allow_failure: bool,
    pub local: bool,
}

#[derive(Debug, Clone)]
pub enum CommandSpec {
    /// Run directly; each template renders to exactly one argument.
    Argv(Vec<Template>),
    /// Run as `shell… STRING`; `{item}` is inserted shell-quoted.
    Shell {
        shell: Vec<String>,
        script: Template,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Items {
    /// One task, with an empty item.
    Single,
    List(Vec<String>),
    Range(i64, i64),
    Queue(QueueId),
}

impl Items {
    /// How many tasks, when known before the run.
    pub fn count(&self) -> Option<u64> {
        match self {
            Items::Single => Some(1),
            Items::List(items) => Some(items.len() as u64),
            Items::Range(a, b) => Some(b.saturating_sub(*a).max(0) as u64),
            Items::Queue(_) => None,
        }
    }

    pub fn is_fan_out(&self) -> bool {
        !matches!(self, Items::Single)
    }
}

#[derive(Debug, Clone)]
pub enum StdinSpec {
    Empty,
    Text(Template),
    File(PathBuf),
    Queue(QueueId),
}

impl Job {
    /// The queue this job consumes, if any.
    pub fn consumes(&self) -> Option<QueueId> {
        match (&self.items, &self.stdin) {
            (Items::Queue(q), _) | (_, StdinSpec::Queue(q)) => Some(*q),
            _ => None,
        }
    }

    /// A streaming consumer: one long-running process reading a queue on stdin.
    pub fn is_streaming(&self) -> bool {
        matches!(self.stdin, StdinSpec::Queue(_))
    }
}

/// Reads and checks `path`. On failure, every problem found (already rendered, with
/// snippets) is in the error.
pub fn load(path: &Path) -> Result<JobFile, LoadError> {
    let source = std::fs::read_to_string(path).map_err(|e| LoadError::Unreadable {
        path: path.to_path_buf(),
        reason: e,
    })?;
    parse(path, source)
}

/// Checks `source` as if read from `path`.
pub fn parse(path: &Path, source: String) -> Result<JobFile, LoadError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let raw: RawFile = match toml::from_str(&source) {
        Ok(raw) => raw,
        Err(e) => {
            let diagnostic = toml_diagnostic(&e);
            return Err(LoadError::Invalid {
                path: path.to_path_buf(),
                text: source,
                diagnostics: vec![diagnostic],
            });
        }
    };
    let mut checker = Checker {
        dir: dir.clone(),
        diagnostics: Vec::new(),
        queues: Vec::new(),
        queue_ids: HashMap::new(),
    };
    let file = checker.check(raw, path, dir);
    let mut diagnostics = checker.diagnostics;
    if let Some(file) = &file {
        if diagnostics.is_empty() {
            diagnostics.extend(wiring::check(file));
        }
    }
    match file {
        Some(file) if diagnostics.is_empty() => Ok(JobFile { source, ..file }),
        _ => Err(LoadError::Invalid {
            path: path.to_path_buf(),
            text: source,
            diagnostics,
        }),
    }
}

/// Why a job file did not load.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read job file {}: {reason}", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        reason: std::io::Error,
    },
    /// Every problem found, each with its place in `text` (the file's contents).
    #[error("{}: {} problem(s)", path.display(), diagnostics.len())]
    Invalid {
        path: PathBuf,
        text: String,
        diagnostics: Vec<Diagnostic>,
    },
}

impl LoadError {
    /// The problems as rustc shows its own: file:line:col, a snippet, notes.
    pub fn render(&self, color: bool) -> String {
        match self {
            LoadError::Unreadable { .. } => format!("error: {self}\n"),
            LoadError::Invalid {
                path,
                text,
                diagnostics,
            } => crate::diagnostic::render(&path.display().to_string(), text, diagnostics, color),
        }
    }

    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            LoadError::Unreadable { .. } => &[],
            LoadError::Invalid { diagnostics, .. } => diagnostics,
        }
    }
}

/// A serde/TOML error, with "did you mean" added to unknown keys.
fn toml_diagnostic(e: &toml::de::Error) -> Diagnostic {
    let message = e.message().trim().to_string();
    let mut diagnostic = Diagnostic::new(message.clone(), e.span());
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some(name) = rest.split('`').next() {
            let mut known: Vec<&str> = Vec::new();
            for key in TOP_KEYS
                .iter()
                .chain(JOB_KEYS.iter())
                .chain(QUEUE_KEYS.iter())
            {
                if message.contains(&format!("`{key}`")) && !known.contains(key) {
                    known.push(key);
                }
            }
            diagnostic.message = format!("unknown key `{name}`");
            diagnostic = match suggest(name, known.iter().copied()) {
                Some(s) => diagnostic.with_note(format!("did you mean `{s}`?")),
                None => diagnostic.with_note(format!("the keys here are: {}", known.join(", "))),
            };
        }
    }
    diagnostic
}

struct Checker {
    dir: PathBuf,
    diagnostics: Vec<Diagnostic>,
    queues: Vec<QueueDef>,
    queue_ids: HashMap<String, QueueId>,
}

impl Checker {
    fn error(&mut self, message: impl Into<String>, span: Range<usize>) {
        self.diagnostics.push(Diagnostic::at(message, span));
    }

    fn check(&mut self, raw: RawFile, path: &Path, dir: PathBuf) -> Option<JobFile> {
        let pool = raw.pool.and_then(|p| self.positive(&p, "pool"));
        let shell = match raw.shell {
            Some(s) if s.get_ref().is_empty() => {
                self.error(
                    "`shell` must name a program, e.g. [\"sh\", \"-c\"]",
                    s.span(),
                );
                vec!["sh".into(), "-c".into()]
            }
            Some(s) => s.into_inner(),
            None => vec!["sh".into(), "-c".into()],
        };
        let env = self.env(raw.env);
        for (name, queue) in raw.queues {
            let capacity = match queue.capacity {
                Some(c) => self.positive(&c, "capacity").unwrap_or(DEFAULT_CAPACITY),
                None => DEFAULT_CAPACITY,
            };
            let span = name.span();
            let id = self.queue(name.get_ref(), span.clone());
            self.queues[id].capacity = capacity;
        }
        let Some(jobs) = raw.jobs else {
            self.diagnostics.push(
                Diagnostic::new("the job file has no jobs", Some(0..0))
                    .with_note("add one: [jobs.hello]\ncommand = [\"echo\", \"hello\"]"),
            );
            return None;
        };
        let jobs_span = jobs.span();
        let jobs = jobs.into_inner();
        if jobs.is_empty() {
            self.error(
                "`jobs` is empty: a job file needs at least one job",
                jobs_span,
            );
        }
        let names: HashMap<String, JobId> = jobs
            .keys()
            .enumerate()
            .map(|(i, name)| (name.get_ref().clone(), i))
            .collect();
        let mut checked = Vec::new();
        for (id, (name, job)) in jobs.into_iter().enumerate() {
            checked.push(self.job(id, name, job, &names, &shell));
        }
        let file = JobFile {
            path: path.to_path_buf(),
            dir,
            source: String::new(),
            pool,
            fail_fast: raw.fail_fast.unwrap_or(false),
            env,
            queues: std::mem::take(&mut self.queues),
            jobs: checked,
        };
        Some(file)
    }

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

    fn job(
        &mut self,
        id: JobId,
        name: Spanned<String>,
        job: Spanned<RawJob>,
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
        let job = job.into_inner();
        let shell = match job.shell {
            Some(s) if s.get_ref().is_empty() => {
                self.error("`shell` must name a program", s.span());
                shell.to_vec()
            }
            Some(s) => s.into_inner(),
            None => shell.to_vec(),
        };
        let command = self.command(&job.command, shell);
        let mut needs = Vec::new();
        let mut needs_spans = Vec::new();
        for need in &job.needs {
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
        let items = match &job.items {
            None => Items::Single,
            Some(items) => self.items(items, id),
        };
        let stdin = match &job.stdin {
            None => StdinSpec::Empty,
            Some(stdin) => self.stdin(stdin, id),
        };
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
        let cwd = job.cwd.as_ref().and_then(|c| self.template(c));
        if let (Some(cwd), Some(raw)) = (&cwd, &job.cwd) {
            if cwd.is_empty() {
                self.error("`cwd` is empty", raw.span());
            } else if !(cwd.uses(Placeholder::Item)
                || cwd.uses(Placeholder::Index)
                || cwd.uses(Placeholder::Job))
            {
                let dir = self.dir.join(raw.get_ref());
                if !dir.is_dir() {
                    self.error(
                        format!("`cwd` {} is not a folder", dir.display()),
                        raw.span(),
                    );
                }
            }
        }
        let timeout = job
            .timeout
            .as_ref()
            .and_then(|t| self.duration(t, "timeout"));
        if let (Some(t), Some(raw)) = (timeout, &job.timeout) {
            if t.is_zero() {
                self.error("`timeout` must be longer than 0", raw.span());
            }
        }
        let retry_delay = job
            .retry_delay
            .as_ref()
            .and_then(|t| self.duration(t, "retry_delay"))
            .unwrap_or(Duration::from_secs(1));
        let retries = match &job.retries {
            Some(r) if *r.get_ref() < 0 || *r.get_ref() > 1000 => {
                self.error("`retries` must be between 0 and 1000", r.span());
                0
            }
            Some(r) => *r.get_ref() as u32,
            None => 0,
        };
        let concurrency = job
            .concurrency
            .as_ref()
            .and_then(|c| self.positive(c, "concurrency"));
        let success_codes = match &job.success_codes {
            None => vec![0],
            Some(codes) => {
                if codes.get_ref().is_empty() {
                    self.error(
                        "`success_codes` is empty: no exit code could succeed",
                        codes.span(),
                    );
                }
                codes
                    .get_ref()
                    .iter()
                    .filter_map(|c| match i32::try_from(*c.get_ref()) {
                        Ok(v) if (0..=255).contains(&v) => Some(v),
                        _ => {
                            self.error("an exit code is between 0 and 255", c.span());
                            None
                        }
                    })
                    .collect()
            }
        };
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

    fn command(&mut self, raw: &Spanned<toml::Value>, shell: Vec<String>) -> CommandSpec {
        let empty = CommandSpec::Argv(Vec::new());
        match raw.get_ref() {
            toml::Value::String(script) => {
                if script.trim().is_empty() {
                    self.error("`command` is empty", raw.span());
                    return empty;
                }
                let Some(script) = self.template_at(script, raw.span()) else {
                    return empty;
                };
                if let Some(kind) = script.item_inside_shell_quotes() {
                    self.diagnostics.push(
                        Diagnostic::at(format!("`{{item}}` inside {kind} quotes in a shell command"), raw.span())
                            .with_note("the runner quotes {item} itself; write it bare (echo {item}), or use \"$RUNNER_ITEM\" inside quotes"),
                    );
                }
                CommandSpec::Shell { shell, script }
            }
            toml::Value::Array(parts) => {
                if parts.is_empty() {
                    self.error(
                        "`command` is empty: name a program, e.g. [\"echo\", \"hi\"]",
                        raw.span(),
                    );
                    return empty;
                }
                let mut argv = Vec::new();
                for part in parts {
                    match part {
                        toml::Value::String(s) => {
                            if let Some(t) = self.template_at(s, raw.span()) {
                                argv.push(t);
                            }
                        }
                        other => {
                            self.error(
                                format!(
                                    "`command` array holds {}; each argument must be a string",
                                    article(other.type_str())
                                ),
                                raw.span(),
                            );
                            return empty;
                        }
                    }
                }
                if argv.first().is_some_and(Template::is_empty) {
                    self.error("`command` names an empty program", raw.span());
                }
                CommandSpec::Argv(argv)
            }
            other => {
                self.error(
                    format!("`command` must be a string (run with the shell) or an array of strings (argv), not {}", article(other.type_str())),
                    raw.span(),
                );
                empty
            }
        }
    }

    fn items(&mut self, raw: &Spanned<toml::Value>, job: JobId) -> Items {
        let span = raw.span();
        match raw.get_ref() {
            toml::Value::Array(values) => {
                let mut items = Vec::new();
                for value in values {
                    match scalar(value) {
                        Some(s) if s.contains('\0') => self.error(
                            "an item holds a NUL byte, which no process can be given",
                            span.clone(),
                        ),
                        Some(s) => items.push(s),
                        None => self.error(
                            format!(
                                "`items` holds {}; items are strings, numbers or booleans",
                                article(value.type_str())
                            ),
                            span.clone(),
                        ),
                    }
                }
                Items::List(items)
            }
            toml::Value::Table(table) => {
                let keys: Vec<&str> = table.keys().map(String::as_str).collect();
                if keys.len() != 1 {
                    self.error(
                        "`items` as a table takes exactly one of `range`, `file` or `queue`",
                        span,
                    );
                    return Items::List(Vec::new());
                }
                let (key, value) = table.iter().next().expect("one key");
                match (key.as_str(), value) {
                    ("range", toml::Value::Array(bounds)) => match bounds.as_slice() {
                        [toml::Value::Integer(a), toml::Value::Integer(b)] if a <= b => {
                            Items::Range(*a, *b)
                        }
                        [toml::Value::Integer(_), toml::Value::Integer(_)] => {
                            self.error("`range = [A, B]` needs A ≤ B (B is not included)", span);
                            Items::List(Vec::new())
                        }
                        _ => {
                            self.error("`range` is two integers: `{ range = [0, 10] }`", span);
                            Items::List(Vec::new())
                        }
                    },
                    ("file", toml::Value::String(file)) => {
                        let path = self.dir.join(file);
                        match std::fs::read(&path) {
                            Ok(bytes) => match String::from_utf8(bytes) {
                                Ok(text) if text.contains('\0') => {
                                    self.error(
                                        format!("items file {} holds a NUL byte", path.display()),
                                        span,
                                    );
                                    Items::List(Vec::new())
                                }
                                Ok(text) => Items::List(
                                    text.lines()
                                        .filter(|l| !l.trim().is_empty())
                                        .map(str::to_string)
                                        .collect(),
                                ),
                                Err(_) => {
                                    self.error(
                                        format!("items file {} is not UTF-8 text", path.display()),
                                        span,
                                    );
                                    Items::List(Vec::new())
                                }
                            },
                            Err(e) => {
                                self.error(
                                    format!("cannot read items file {}: {e}", path.display()),
                                    span,
                                );
                                Items::List(Vec::new())
                            }
                        }
                    }
                    ("queue", toml::Value::String(name)) => {
                        let q = self.queue(name, span.clone());
                        self.consume(q, job, span);
                        Items::Queue(q)
                    }
                    (key @ ("range" | "file" | "queue"), other) => {
                        self.error(
                            format!("`{key}` cannot be {}", article(other.type_str())),
                            span,
                        );
                        Items::List(Vec::new())
                    }
                    (other, _) => {
                        let mut d =
                            Diagnostic::at(format!("unknown key `{other}` in `items`"), span);
                        if let Some(s) = suggest(other, ["range", "file", "queue"]) {
                            d = d.with_note(format!("did you mean `{s}`?"));
                        }
                        self.diagnostics.push(d);
                        Items::List(Vec::new())
                    }
                }
            }
            other => {
                self.error(
                    format!(
                        "`items` must be an array or a table (`range`, `file` or `queue`), not {}",
                        article(other.type_str())
                    ),
                    span,
                );
                Items::List(Vec::new())
            }
        }
    }

    fn consume(&mut self, q: QueueId, job: JobId, span: Range<usize>) {
        match self.queues[q].consumer {
            Some(other) if other != job => {
                let name = self.queues[q].name.clone();
                self.error(
                    format!(
                        "queue `{name}` has two consumer jobs; a queue has exactly one consumer"
                    ),
                    span,
                );
            }
            _ => self.queues[q].consumer = Some(job),
        }
    }

    fn stdin(&mut self, raw: &Spanned<toml::Value>, job: JobId) -> StdinSpec {
        let span = raw.span();
        match raw.get_ref() {
            toml::Value::String(text) => match self.template_at(text, span) {
                Some(t) => StdinSpec::Text(t),
                None => StdinSpec::Empty,
            },
            toml::Value::Table(table) if table.len() == 1 => {
                let (key, value) = table.iter().next().expect("one key");
                match (key.as_str(), value) {
                    ("file", toml::Value::String(file)) => {
                        let path = self.dir.join(file);
                        if !path.is_file() {
                            self.error(
                                format!("stdin file {} does not exist", path.display()),
                                span,
                            );
                        }
                        StdinSpec::File(path)
                    }
                    ("queue", toml::Value::String(name)) => {
                        let q = self.queue(name, span.clone());
                        self.consume(q, job, span);
                        StdinSpec::Queue(q)
                    }
                    (other, _) => {
                        let mut d = Diagnostic::at(
                            format!("`stdin` as a table is `{{ file = \"PATH\" }}` or `{{ queue = \"NAME\" }}`, not `{other}`"),
                            span,
                        );
                        if let Some(s) = suggest(other, ["file", "queue"]) {
                            d = d.with_note(format!("did you mean `{s}`?"));
                        }
                        self.diagnostics.push(d);
                        StdinSpec::Empty
                    }
                }
            }
            other => {
                self.error(
                    format!(
                        "`stdin` must be a string or a table (`file` or `queue`), not {}",
                        article(other.type_str())
                    ),
                    span,
                );
                StdinSpec::Empty
            }
        }
    }

    fn env(&mut self, raw: indexmap::IndexMap<String, Spanned<String>>) -> Vec<(String, Template)> {
        let mut env = Vec::new();
        for (name, value) in raw {
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                self.error(
                    format!("`{name}` is not an environment variable name"),
                    value.span(),
                );
                continue;
            }
            if let Some(t) = self.template(&value) {
                env.push((name, t));
            }
        }
        env
    }

    fn template(&mut self, raw: &Spanned<String>) -> Option<Template> {
        self.template_at(raw.get_ref(), raw.span())
    }

    /// Parses a template that appears in the file at `span` (a TOML string, quotes and
    /// all): the error points at the placeholder when the string has no escapes.
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

    fn positive(&mut self, raw: &Spanned<i64>, key: &str) -> Option<usize> {
        match *raw.get_ref() {
            n if (1..=1_000_000).contains(&n) => Some(n as usize),
            n => {
                self.error(format!("`{key}` must be at least 1 (got {n})"), raw.span());
                None
            }
        }
    }

    fn duration(&mut self, raw: &Spanned<String>, key: &str) -> Option<Duration> {
        match humantime::parse_duration(raw.get_ref()) {
            Ok(d) => Some(d),
            Err(e) => {
                self.diagnostics.push(
                    Diagnostic::at(format!("`{key}` is not a duration: {e}"), raw.span())
                        .with_note("write a duration like \"500ms\", \"10s\" or \"2m\""),
                );
                None
            }
        }
    }
}

fn scalar(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// "an integer", "a string": a TOML type with its article.
fn article(kind: &str) -> String {
    match kind.as_bytes().first() {
        Some(b'a' | b'e' | b'i' | b'o' | b'u') => format!("an {kind}"),
        _ => format!("a {kind}"),
    }
}
