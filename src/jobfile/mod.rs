//! The job file: the one module that knows TOML. `load` reads a file and returns either
//! the checked model ([`JobFile`]) or every problem found, each with its place in the
//! file. It reads the job file and the items files it names (`items = { file }`), looks
//! at the other paths it names (`stdin = { file }`, `cwd`) to see that they exist, and
//! does no other I/O.
//!
//! This module owns the model (`JobFile`, `Job`, `Items`, …), `load`/`parse` and
//! [`LoadError`]. The rest is in submodules: `raw` parses the TOML and reads every key
//! with its type (`typed` holds the readers and their words), `check` checks each job on
//! its own and builds the model, and `wiring` checks the rules that span jobs (queue
//! wiring, cycles) once every job is valid. Every problem is reported at once, in the
//! order of the file; only a TOML syntax error stops reading, and is then the only one.

mod check;
pub mod duration;
pub mod fields;
pub mod items_file;
pub mod labels;
mod raw;
pub mod resources;
pub mod select;
mod typed;
pub mod wiring;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod type_tests;

use crate::diagnostic::Diagnostic;
use crate::template::Template;
pub use fields::FieldItems;
pub use resources::{Rate, RateId, Resource, ResourceId};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    /// How task output is printed, unless a job says otherwise.
    pub output: OutputMode,
    /// Whether the file's top level says `output` (else `output` is the default,
    /// which [`JobFile::default_output`] makes grouped in CI).
    pub output_chosen: bool,
    pub env: Vec<(String, Template)>,
    /// `[vars]`, in file order, with `--set` applied.
    pub vars: Vec<Var>,
    /// The jobs named on the command line (`runner run FILE JOB…`), as written; empty
    /// when every job runs.
    pub selection: Vec<String>,
    pub queues: Vec<QueueDef>,
    /// `[secrets]`, in file order: where each value comes from (resolved when a run
    /// starts, by `crate::secrets`, only for the selected jobs that name them).
    pub secrets: Vec<SecretDef>,
    /// `[resources]`: what one machine has of each, in file order.
    pub resources: Vec<Resource>,
    /// `[rates]`, then the jobs' own rates (named after their job).
    pub rates: Vec<Rate>,
    pub jobs: Vec<Job>,
    /// What the file says that is allowed but cannot do what it seems to (`sources` on
    /// a job whose output is a stream): said on stderr by the commands that load it.
    pub warnings: Vec<Diagnostic>,
}

impl JobFile {
    /// The warnings, rendered like the load errors (`warning: …` with the place).
    pub fn render_warnings(&self, color: bool) -> String {
        crate::diagnostic::render_warnings(
            &self.path.display().to_string(),
            &self.source,
            &self.warnings,
            color,
        )
    }
}

/// How a task's output reaches the terminal (`output`, `--output`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputMode {
    /// Each whole line as soon as it is complete.
    #[default]
    Lines,
    /// A task's lines together when it ends, stdout and stderr each in one piece.
    Grouped,
    /// Grouped, and a job's tasks printed in item order.
    KeepOrder,
}

impl OutputMode {
    pub const NAMES: [&'static str; 3] = ["lines", "grouped", "keep-order"];

    pub fn parse(name: &str) -> Option<OutputMode> {
        match name {
            "lines" => Some(OutputMode::Lines),
            "grouped" => Some(OutputMode::Grouped),
            "keep-order" => Some(OutputMode::KeepOrder),
            _ => None,
        }
    }

    /// A task's output waits for its end.
    pub fn grouped(self) -> bool {
        self != OutputMode::Lines
    }
}

impl JobFile {
    /// The output mode of `job`: its own, or the file's.
    pub fn output_of(&self, job: &Job) -> OutputMode {
        job.output.unwrap_or(self.output)
    }

    /// The output mode when the command line does not choose one: in GitHub Actions
    /// and GitLab CI, `grouped` (a task's output folded in one piece) for the jobs the
    /// file does not choose for (no top-level `output`, no job `output`). `in_ci`: the
    /// run is in one of them (the caller detects it; the model knows no environment).
    pub fn default_output(&mut self, in_ci: bool) {
        if !self.output_chosen && in_ci {
            self.output = OutputMode::Grouped;
        }
    }

    /// `--output MODE`: every job prints so, whatever the file says.
    pub fn set_output(&mut self, mode: OutputMode) {
        self.output = mode;
        for job in &mut self.jobs {
            job.output = None;
        }
    }
}

/// A secret of `[secrets]`: its name (the environment variable its jobs' tasks get) and
/// where its value comes from. The value itself is never in the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretDef {
    pub name: String,
    pub source: SecretSource,
}

/// Where a secret's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// The runner's own environment variable.
    Env(String),
    /// A file (relative to the job file's folder), its content less a final newline.
    File(PathBuf),
    /// A command's stdout less its final newline: a string run with the file's
    /// `shell`, or an argv.
    Command(Vec<String>),
}

/// A var: its name and value, and whether `--set` gave the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Var {
    pub name: String,
    pub value: String,
    pub set: bool,
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
    /// Of `needs`, the jobs needed item by item (`{ job = "NAME", each = true }`): task
    /// L starts once their task L succeeded. Their items have the same labels (checked
    /// at load); see [`each_map`].
    pub each: Vec<JobId>,
    /// When the job runs, given how the jobs it needs ended.
    pub when: When,
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
    /// Glob patterns of the files each task reads, relative to its cwd: with them a task
    /// can be up to date (`state::uptodate`).
    pub sources: Vec<Template>,
    /// Paths or patterns of the files each task writes.
    pub outputs: Vec<Template>,
    /// Its own output mode (`None`: the file's).
    pub output: Option<OutputMode>,
    /// The names of the secrets (of `JobFile::secrets`) its tasks get as environment
    /// variables.
    pub secrets: Vec<String>,
    /// `cache` (default true): with `--cache`, whether its tasks are stored and restored.
    pub cache: bool,
    /// `cache_env`: host environment variables whose values enter its cache key.
    pub cache_env: Vec<String>,
    /// What one task holds while it runs (`uses`): resources and amounts, each ≤ its
    /// capacity (checked at load).
    pub uses: Vec<(ResourceId, u64)>,
    /// Its start rate (`rate`), shared with the other jobs naming the same one.
    pub rate: Option<RateId>,
    /// `runs_on`: with `--broker`, only workers with every one of these labels take its
    /// tasks (`runner worker --label`); without, its tasks run here.
    pub runs_on: Vec<String>,
    /// `service = true`: a long-running process that the jobs needing it use while they
    /// run; it takes no pool slot and is stopped once nothing needing it is left.
    pub service: bool,
    /// When a service counts as started; `None`: once its process started.
    pub ready: Option<Ready>,
    /// How long a service may take to be ready (default 30 s).
    pub ready_timeout: Duration,
}

/// When a service is ready (`ready = { … }`): tried about every 100 ms.
#[derive(Debug, Clone)]
pub enum Ready {
    /// `{ tcp = "HOST:PORT" }`: a TCP connection is accepted.
    Tcp(Template),
    /// `{ http = "URL" }`: a GET answers 2xx (redirects followed).
    Http(Template),
    /// `{ line = "REGEX" }`: a line of its stdout or stderr matches.
    Line(LinePattern),
    /// `{ command = … }`: a command exits 0 (a shell string, or argv).
    Command(CommandSpec),
}

/// A regular expression on a service's output lines, as written and compiled.
#[derive(Debug, Clone)]
pub struct LinePattern {
    pub text: String,
    pub regex: regex_automata::meta::Regex,
}

impl Ready {
    /// The kind of check, as the file names it (`tcp`, `http`, `line`, `command`).
    pub fn kind(&self) -> &'static str {
        match self {
            Ready::Tcp(_) => "tcp",
            Ready::Http(_) => "http",
            Ready::Line(_) => "line",
            Ready::Command(_) => "command",
        }
    }
}

/// A service is ready within this by default (`ready_timeout`).
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// `when`: which outcomes of the needed jobs let a job run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum When {
    /// Every needed job succeeded (the default).
    #[default]
    Success,
    /// Every needed job ended, however; also after fail-fast stopped the run.
    Always,
    /// A needed job failed or was skipped; otherwise the job is skipped.
    Failure,
}

impl When {
    pub const NAMES: [&'static str; 3] = ["success", "always", "failure"];

    pub fn parse(name: &str) -> Option<When> {
        match name {
            "success" => Some(When::Success),
            "always" => Some(When::Always),
            "failure" => Some(When::Failure),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            When::Success => "success",
            When::Always => "always",
            When::Failure => "failure",
        }
    }
}

/// For a job needing `dep` item by item: which of `dep`'s tasks each of the job's tasks
/// waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EachMap {
    /// The same labels in the same order: task i waits for task i.
    Same,
    /// For each of the job's task indexes, the index of `dep`'s task with the same label
    /// (the k-th of equal labels to the k-th).
    Indexes(Vec<u64>),
}

impl EachMap {
    pub fn of(&self, index: u64) -> u64 {
        match self {
            EachMap::Same => index,
            EachMap::Indexes(at) => at.get(index as usize).copied().unwrap_or(index),
        }
    }
}

/// How `job`'s tasks match `dep`'s by label. `None` when the items are not held in the
/// file (an items file, a queue) or the labels differ: the loader refuses both.
pub fn each_map(file: &JobFile, job: JobId, dep: JobId) -> Option<EachMap> {
    let (a, b) = (&file.jobs[job].items, &file.jobs[dep].items);
    let held = |items: &Items| !matches!(items, Items::File { .. } | Items::Queue(_));
    if !held(a) || !held(b) || a.count()? != b.count()? {
        return None;
    }
    let n = a.count()?;
    if (0..n).all(|i| a.in_memory(i) == b.in_memory(i)) {
        return Some(EachMap::Same);
    }
    let mut at: std::collections::HashMap<String, std::collections::VecDeque<u64>> =
        std::collections::HashMap::new();
    for i in 0..n {
        at.entry(b.in_memory(i)?).or_default().push_back(i);
    }
    (0..n)
        .map(|i| at.get_mut(&a.in_memory(i)?)?.pop_front())
        .collect::<Option<Vec<u64>>>()
        .map(EachMap::Indexes)
}

#[derive(Debug, Clone)]
pub enum CommandSpec {
    /// Run directly; each template renders to exactly one argument. `script`: the
    /// argument that is a shell's script (`["sh", "-c", SCRIPT, …]`, see
    /// `check::inputs`), whose values are inserted shell-quoted like a string
    /// command's; every other argument gets them as they are.
    Argv {
        args: Vec<Template>,
        script: Option<usize>,
    },
    /// Run as `shell… STRING`; `{item}` is inserted shell-quoted.
    Shell {
        shell: Vec<String>,
        script: Template,
    },
}

impl CommandSpec {
    /// The command of a job whose `command` is wrong: never run, since the file is then
    /// rejected.
    pub(crate) fn empty() -> CommandSpec {
        CommandSpec::Argv {
            args: Vec::new(),
            script: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Items {
    /// One task, with an empty item.
    Single,
    List(Vec<String>),
    /// The non-blank lines of a file, `count` of them when it was checked; read as
    /// tasks start (`items_file::ItemReader`), never held whole.
    File {
        path: PathBuf,
        count: u64,
    },
    Range(i64, i64),
    /// Items with fields: tables or a matrix.
    Fields(FieldItems),
    Queue(QueueId),
}

impl Items {
    /// How many tasks, when known before the run.
    pub fn count(&self) -> Option<u64> {
        match self {
            Items::Single => Some(1),
            Items::List(items) => Some(items.len() as u64),
            Items::File { count, .. } => Some(*count),
            Items::Range(a, b) => Some(b.saturating_sub(*a).max(0) as u64),
            Items::Fields(items) => Some(items.len()),
            Items::Queue(_) => None,
        }
    }

    /// The item at `index` (the label, for items with fields) of the kinds held in
    /// memory; `None` for a file's lines (read through `items_file::ItemReader`) and for
    /// queue-fed items.
    pub fn in_memory(&self, index: u64) -> Option<String> {
        if self.count().is_some_and(|n| index >= n) {
            return None;
        }
        match self {
            Items::Single => Some(String::new()),
            Items::List(list) => list.get(index as usize).cloned(),
            Items::Range(a, _) => Some(a.saturating_add(index as i64).to_string()),
            Items::Fields(items) => Some(items.label(index)),
            Items::File { .. } | Items::Queue(_) => None,
        }
    }

    /// The fields of the item at `index` (key, value), empty for items without fields.
    pub fn fields(&self, index: u64) -> Vec<(String, String)> {
        match self {
            Items::Fields(items) if index < items.len() => items.fields(index),
            _ => Vec::new(),
        }
    }

    /// The keys of items with fields.
    pub fn keys(&self) -> Option<&[String]> {
        match self {
            Items::Fields(items) => Some(&items.keys),
            _ => None,
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
    /// A file, relative to the job file's folder; with per-task placeholders, each
    /// task's file is only known (and looked for) when it starts.
    File(Template),
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
/// `set`: the `--set NAME=VALUE` pairs, each naming a var of `[vars]`.
pub fn load(path: &Path, set: &[(String, String)]) -> Result<JobFile, LoadError> {
    let source = std::fs::read_to_string(path).map_err(|e| LoadError::Unreadable {
        path: path.to_path_buf(),
        reason: e,
    })?;
    parse_with(path, source, set)
}

/// Checks `source` as if read from `path`.
pub fn parse(path: &Path, source: String) -> Result<JobFile, LoadError> {
    parse_with(path, source, &[])
}

/// Checks `source` as if read from `path`, with the vars `set` on the command line.
pub fn parse_with(
    path: &Path,
    source: String,
    set: &[(String, String)],
) -> Result<JobFile, LoadError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let checked = match raw::read(&source) {
        Ok((raw, found)) => {
            let (file, mut diagnostics) = check::file(raw, found, &source, path, dir, set);
            // Rules across jobs only make sense between jobs that are each valid.
            if diagnostics.is_empty() {
                diagnostics.extend(wiring::check(&file));
            }
            // In line order, whichever check found them.
            diagnostics.sort_by_key(|d| d.span.as_ref().map_or(0, |s| s.start));
            (diagnostics.is_empty()).then_some(file).ok_or(diagnostics)
        }
        // The file cannot be read further: the syntax error is the only problem.
        Err(syntax) => Err(vec![syntax]),
    };
    match checked {
        Ok(file) => Ok(JobFile { source, ..file }),
        Err(diagnostics) => Err(LoadError::Invalid {
            path: path.to_path_buf(),
            text: source,
            diagnostics,
        }),
    }
}

/// The names of the jobs of the file at `path`, read from its TOML alone (nothing else
/// checked, no items file read): for shell completion, which must answer quickly even
/// for a file being edited. `None` if it cannot be read or is not TOML.
pub fn job_names_in(path: &Path) -> Option<Vec<String>> {
    let source = std::fs::read_to_string(path).ok()?;
    let table = toml::de::DeTable::parse(&source).ok()?.into_inner();
    let (_, jobs) = table.into_iter().find(|(k, _)| k.get_ref() == "jobs")?;
    match jobs.into_inner() {
        toml::de::DeValue::Table(jobs) => {
            Some(jobs.keys().map(|k| k.get_ref().to_string()).collect())
        }
        _ => None,
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

/// Job and queue names: they appear in labels, Redis keys and file names, so they
/// hold only characters that need no quoting anywhere.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
