//! The command line: clap definitions and the translation of `runner FILE` into
//! `runner run FILE`. Knows nothing of how a run works.

use crate::jobfile::duration::{self, Bounds, DurationError};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

/// The sections of `runner run --help` and `runner worker --help` (clap's
/// `help_heading`): every option of theirs names one, so that a new option lands in a
/// section (a unit test walks the commands).
pub const CHOOSING: &str = "Choosing what runs";
pub const STATE: &str = "State";
pub const OUTPUT: &str = "Output and reports";
pub const PROCESS: &str = "Process control";
pub const CACHE: &str = "Cache";
pub const DISTRIBUTED: &str = "Distributed";
/// Every section, in the order `runner run --help` shows them.
#[cfg_attr(not(test), allow(dead_code))]
pub const HEADINGS: [&str; 6] = [CHOOSING, STATE, OUTPUT, PROCESS, CACHE, DISTRIBUTED];

/// The end of `runner run -h`: one example, and where the others are.
const RUN_SHORT: &str = "Example:
  runner run jobs/ci.toml --pool 4 --junit junit.xml

`runner run --help` (or `runner help run`) says more of each option, with examples.";

/// The end of `runner run --help`: what people do with it, as cargo's long help does.
const RUN_EXAMPLES: &str = "Examples:
  runner jobs/ci.toml
      Run every job of the file (the same as `runner run jobs/ci.toml`).
  runner run jobs/ci.toml lint test --set profile=release
      Run the jobs lint and test and what they need, with the var `profile` set.
  runner run jobs/ci.toml --pool 4 --fail-fast --junit junit.xml --html run.html
      Four tasks at once, stop at the first failure, leave JUnit XML and a page.
  runner run jobs/ci.toml --resume
      Run again what did not succeed in the latest run.
  runner run jobs/ci.toml --changed-since origin/main --cache .cache/runner
      Only tasks whose sources changed since the branch left main; results of
      tasks run before restored from a folder cache.
  runner run jobs/ci.toml --dry-run
      Show every task and its command; run nothing (as `runner plan`).
  RUNNER_AUTHKEY=… runner run examples/squares.toml --broker redis://10.0.0.5:6379
      Share the tasks with workers (`runner worker`) on other machines.";

/// The end of `runner worker -h`.
#[cfg(feature = "distributed")]
const WORKER_SHORT: &str = "Example:
  RUNNER_AUTHKEY=… runner worker examples/squares.toml --broker redis://10.0.0.5:6379

`runner worker --help` says more of each option, with examples.";

/// The end of `runner worker --help`.
#[cfg(feature = "distributed")]
const WORKER_EXAMPLES: &str = "Examples:
  RUNNER_AUTHKEY=… runner worker examples/squares.toml --broker redis://10.0.0.5:6379
      Serve every run of the file the broker announces, one after another.
  runner worker jobs/ci.toml --broker redis://10.0.0.5:6379 --authkey-file key --once
      Serve the next run, then exit.
  runner worker jobs/ci.toml --broker redis://10.0.0.5:6379 --pool 8 --resource gpu=2
      Eight tasks at once here, two of the file's `gpu` free on this machine.
  runner worker jobs/ci.toml --broker redis://10.0.0.5:6379 --cache redis://10.0.0.5:6379
      Store each task that succeeds here in the run's cache.";

pub const COMMANDS: [&str; 10] = [
    "run",
    "check",
    "plan",
    "graph",
    "report",
    "cache",
    "worker",
    "schema",
    "completions",
    "help",
];

#[derive(Debug, Parser)]
#[command(
    name = "runner",
    version,
    about = "Run a TOML job graph with a process pool.",
    after_help = "Example:\n  runner jobs/nslookup.toml          (same as: runner run jobs/nslookup.toml)\n  runner jobs/ci.toml lint           (only the job lint and what it needs)\n  runner plan jobs/ci.toml           (what would run, without running it)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
// `run` takes many options; the command line is parsed once, so its size is no cost.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Load, check and run a job file (or only the jobs named, and what they need).
    #[command(after_help = RUN_SHORT, after_long_help = RUN_EXAMPLES)]
    Run(RunArgs),
    /// Show every task a run would have, and what it would run; run nothing.
    #[command(
        after_help = "Example:\n  runner plan jobs/ci.toml lint\n  runner plan examples/matrix.toml --json | jq -r '.[].command'"
    )]
    Plan(PlanArgs),
    /// Load and check a job file; run nothing.
    #[command(after_help = "Example:\n  runner check jobs/nslookup.toml")]
    Check {
        /// The job file.
        file: PathBuf,
        /// Give the var NAME of `[vars]` this value (repeatable).
        #[arg(long, value_name = "NAME=VALUE", value_parser = parse_set)]
        set: Vec<(String, String)>,
    },
    /// Print the job graph (jobs, needs, queues).
    #[command(
        after_help = "Example:\n  runner graph --dot examples/squares.toml | dot -Tsvg > graph.svg"
    )]
    Graph {
        /// Graphviz instead of text.
        #[arg(long)]
        dot: bool,
        /// The job file.
        file: PathBuf,
        /// Only these jobs and what they need (default: every job).
        #[arg(value_name = "JOB")]
        jobs: Vec<String>,
        /// Give the var NAME of `[vars]` this value (repeatable).
        #[arg(long, value_name = "NAME=VALUE", value_parser = parse_set)]
        set: Vec<(String, String)>,
    },
    /// Write the HTML page of a run from its JSON report (`runner run --report`).
    #[command(after_help = "Example:\n  runner report run.json --html run.html")]
    Report(ReportArgs),
    /// Look at a folder cache (`--cache DIR`), or keep it under a size.
    #[command(
        after_help = "Example:\n  runner cache stats .cache/runner\n  runner cache prune .cache/runner --max-size 2GiB"
    )]
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
    /// Take tasks of distributed runs of FILE from a broker and run them.
    #[cfg(feature = "distributed")]
    #[command(after_help = WORKER_SHORT, after_long_help = WORKER_EXAMPLES)]
    Worker(WorkerArgs),
    /// Print a JSON Schema of the job file format (for editors), or of the JSON report.
    #[command(
        after_help = "Example:\n  runner schema > runner.schema.json\n  runner schema --report > runner-report.schema.json"
    )]
    Schema {
        /// The JSON report's schema (`runner run --report FILE`) instead of the job file's.
        #[arg(long)]
        report: bool,
    },
    /// Print shell completions.
    #[command(after_help = "Example:\n  runner completions bash > /etc/bash_completion.d/runner")]
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

/// What a run is of: the file, the jobs chosen, the vars set (`run` and `plan`).
#[derive(Debug, Clone, clap::Args)]
pub struct SelectArgs {
    /// The job file.
    pub file: PathBuf,
    /// Only these jobs and what they need (default: every job).
    #[arg(value_name = "JOB")]
    pub jobs: Vec<String>,
    /// Give the var NAME of `[vars]` this value (repeatable).
    #[arg(long, value_name = "NAME=VALUE", value_parser = parse_set, help_heading = CHOOSING)]
    pub set: Vec<(String, String)>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// One JSON array of every task (streamed) instead of text.
    #[arg(long, help_heading = OUTPUT)]
    pub json: bool,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
}

/// The results cache (`run`, `plan`, and `worker`, which only stores).
#[derive(Debug, Clone, clap::Args)]
pub struct CacheArgs {
    /// Restore task results from, and store them in, the cache at URL: a folder (PATH
    /// or file://PATH), redis:// or rediss://, or http(s):// (Bazel's HTTP cache).
    /// RUNNER_CACHE_KEY signs entries; RUNNER_CACHE_TOKEN is an HTTP bearer token.
    #[arg(long, value_name = "URL", env = "RUNNER_CACHE", help_heading = CACHE)]
    pub cache: Option<String>,
    /// read (restore only), write (store only) or read-write.
    #[arg(long, value_name = "MODE", value_enum, default_value_t = crate::cache::Mode::ReadWrite, hide_possible_values = true, help_heading = CACHE)]
    pub cache_mode: crate::cache::Mode,
    /// Entries larger than SIZE (files and printed output) are not stored, e.g. 500MiB.
    #[arg(long, value_name = "SIZE", default_value = "1GiB", value_parser = parse_size, help_heading = CACHE)]
    pub cache_max_entry: u64,
}

/// A size that did not parse (on the command line; the one parser of sizes).
#[derive(Debug, thiserror::Error)]
#[error(
    "{0} (write e.g. 500M, 2GiB, 64KiB: every unit is a power of 1024, `M`, `MB` and `MiB` alike)"
)]
pub struct BadSize(parse_size::Error);

/// A size: `1GiB`, `500M`, `2 KiB`, `1024` (bytes), units binary however spelled
/// (`crate::size`), for the command line's sizes.
pub fn parse_size(text: &str) -> Result<u64, BadSize> {
    crate::size::parse(text).map_err(BadSize)
}

#[derive(Debug, Clone, clap::Args)]
pub struct StateArgs {
    /// Continue the latest run of FILE: tasks that succeeded there are not run again.
    #[arg(long, help_heading = STATE)]
    pub resume: bool,
    /// Keep the run's state (its journal, what tasks read and wrote) in DIR instead of
    /// .runner/ beside FILE.
    #[arg(long, value_name = "DIR", help_heading = STATE)]
    pub state: Option<PathBuf>,
    /// Run every task, even those whose sources and outputs are up to date.
    #[arg(long, conflicts_with = "resume", help_heading = STATE)]
    pub force: bool,
    /// Take outputs that workers on other machines wrote (which this machine cannot
    /// look at) as still there and unchanged.
    #[arg(long, help_heading = STATE)]
    pub trust_remote_outputs: bool,
    /// Run only the tasks whose sources changed since the merge base of REF and HEAD
    /// (git; the working tree included), and the jobs that need them; `auto` takes REF
    /// from a GitHub pull request or a GitLab merge request.
    #[arg(long, value_name = "REF", help_heading = CHOOSING)]
    pub changed_since: Option<String>,
}

impl StateArgs {
    pub fn options(&self) -> crate::state::Options {
        crate::state::Options {
            dir: self.state.clone(),
            resume: self.resume,
            force: self.force,
            trust_remote_outputs: self.trust_remote_outputs,
            changed: None,
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// Show what would run (as `runner plan` does) and run nothing.
    #[arg(long, help_heading = CHOOSING)]
    pub dry_run: bool,
    #[command(flatten)]
    pub state: StateArgs,
    /// Show only failures and the summary.
    #[arg(long, short, help_heading = OUTPUT)]
    pub quiet: bool,
    /// Write a JSON report of every task to FILE.
    #[arg(long, value_name = "FILE", help_heading = OUTPUT)]
    pub report: Option<PathBuf>,
    /// Write JUnit XML (a testsuite per job, a testcase per task) to FILE.
    #[arg(long, value_name = "FILE", help_heading = OUTPUT)]
    pub junit: Option<PathBuf>,
    /// How task output is printed: lines (each line as it comes), grouped (a task's
    /// output together when it ends), keep-order (grouped, a job's tasks in item
    /// order). Overrides the file's `output`. Default: lines; grouped in GitHub Actions
    /// and GitLab CI.
    #[arg(long, value_name = "MODE", value_parser = clap::builder::PossibleValuesParser::new(crate::jobfile::OutputMode::NAMES), help_heading = OUTPUT)]
    pub output: Option<String>,
    /// Print task output without the `[job:label] ` prefix (to pipe it on as it is).
    #[arg(long, help_heading = OUTPUT)]
    pub no_label: bool,
    /// Write the run's timeline to FILE in the Chrome trace event format (Perfetto,
    /// chrome://tracing): one event per attempt, by host and slot.
    #[arg(long, value_name = "FILE", help_heading = OUTPUT)]
    pub trace: Option<PathBuf>,
    /// Write one self-contained HTML page of the run (its jobs, a timeline of every
    /// attempt, its failures) to FILE.
    #[arg(long, value_name = "FILE", help_heading = OUTPUT)]
    pub html: Option<PathBuf>,
    /// Keep each task's stdout and stderr in files in DIR.
    #[arg(long, value_name = "DIR", help_heading = OUTPUT)]
    pub logs: Option<PathBuf>,
    /// Process slots: the most tasks running at once (default: the file's `pool`, else
    /// the number of CPUs).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..), help_heading = PROCESS)]
    pub pool: Option<u32>,
    /// After the first failed task, stop the running ones and start nothing new.
    #[arg(long, help_heading = PROCESS)]
    pub fail_fast: bool,
    /// Time between TERM and KILL when a task is stopped (at most 30 days).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration, help_heading = PROCESS)]
    pub grace: std::time::Duration,
    /// Start no task while the machine's available memory (MemAvailable) is below SIZE
    /// (e.g. 2G; K, M, G, T are powers of 1024). Running tasks go on.
    #[arg(long, value_name = "SIZE", value_parser = parse_memfree, help_heading = PROCESS)]
    pub memfree: Option<u64>,
    /// Start no task while the one-minute load average is above N (a number ≥ 0).
    /// Running tasks go on.
    #[arg(long, value_name = "N", value_parser = parse_load, help_heading = PROCESS)]
    pub load: Option<f64>,
    #[command(flatten)]
    pub cache: CacheArgs,
    #[cfg(feature = "distributed")]
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// With --broker: leave every fan-out task to the workers.
    #[cfg(feature = "distributed")]
    #[arg(long, requires = "broker", help_heading = DISTRIBUTED)]
    pub no_local: bool,
    /// With --broker: how long a worker holds a task without renewing before another
    /// may take it over (500ms to 30 days).
    #[cfg(feature = "distributed")]
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_lease, requires = "broker", help_heading = DISTRIBUTED)]
    pub lease: std::time::Duration,
    /// With --broker: deliveries without a result before a task fails as lost.
    #[cfg(feature = "distributed")]
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..), requires = "broker", help_heading = DISTRIBUTED)]
    pub max_deliveries: u32,
    /// With --broker: submit N workers as one Slurm job array (`sbatch`), cancelled
    /// (`scancel`) when the run ends.
    #[cfg(feature = "distributed")]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..), requires = "broker", help_heading = DISTRIBUTED)]
    pub slurm: Option<u32>,
    /// With --slurm: one more argument for `sbatch` (repeatable), e.g.
    /// --slurm-arg=--partition=short.
    #[cfg(feature = "distributed")]
    #[arg(
        long,
        value_name = "ARG",
        allow_hyphen_values = true,
        requires = "slurm",
        help_heading = DISTRIBUTED
    )]
    pub slurm_arg: Vec<String>,
}

/// `runner report`: a JSON report read back, written in another form.
#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// A JSON report, written by `runner run --report FILE`.
    #[arg(value_name = "REPORT")]
    pub report: PathBuf,
    /// Write the run's HTML page (as `runner run --html` does) to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: PathBuf,
}

/// `runner cache …`: the folder store's upkeep (cache.md, Local folder store).
#[derive(Debug, Clone, Subcommand)]
pub enum CacheCommand {
    /// Print what a folder cache holds: entries, blobs, bytes, and what a prune would
    /// remove (blobs no entry names, temporary files left by writers that died).
    #[command(
        after_help = "Example:\n  runner cache stats .cache/runner --json | jq .total_bytes"
    )]
    Stats {
        /// The cache folder (as given to `--cache`).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Remove the least recently used entries until the folder holds at most SIZE, then
    /// every blob no entry names. Safe while runs use the folder.
    #[command(after_help = "Example:\n  runner cache prune .cache/runner --max-size 2GiB")]
    Prune {
        /// The cache folder (as given to `--cache`).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// The most the folder may hold: 500M, 2GiB, 10G (every unit a power of 1024).
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        max_size: u64,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, clap::Args)]
pub struct BrokerArgs {
    /// Redis URL (redis:// or rediss:// for TLS); a password belongs here or in the
    /// variable, never in the job file.
    #[arg(
        long,
        value_name = "URL",
        env = "RUNNER_BROKER_URL",
        hide_env_values = true,
        help_heading = DISTRIBUTED
    )]
    pub broker: Option<String>,
    /// A file holding the authkey (else RUNNER_AUTHKEY); messages are then signed.
    #[arg(long, value_name = "FILE", help_heading = DISTRIBUTED)]
    pub authkey_file: Option<PathBuf>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// The job file: the same file as the coordinator's.
    pub file: PathBuf,
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Tasks run at once on this machine (default: the number of CPUs).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..), help_heading = PROCESS)]
    pub pool: Option<u32>,
    /// Exit when the run served ends, instead of waiting for the next.
    #[arg(long, help_heading = DISTRIBUTED)]
    pub once: bool,
    /// Exit (status 0) after serving no run for DURATION, e.g. 10m: a batch
    /// allocation ends instead of sleeping.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, help_heading = DISTRIBUTED)]
    pub idle_exit: Option<std::time::Duration>,
    /// Keep this terminal short: a line when a run is served and when it ends, notes
    /// and errors, and the tasks that failed; no task output, starts nor progress.
    #[arg(long, help_heading = OUTPUT)]
    pub quiet: bool,
    /// This machine's amount of a `[resources]` entry instead of the file's
    /// (repeatable): an integer or a size, `gpu=2`, `mem=64G` (K, M, G, T are powers of
    /// 1024), `gpu=0` for none. A task of a job with `uses` starts here only when all
    /// it uses is free here. A NAME the file does not have is unused.
    #[arg(long = "resource", value_name = "NAME=N", value_parser = parse_resource, help_heading = PROCESS)]
    pub resources: Vec<(String, u64)>,
    /// A label of this worker (repeatable): jobs with `runs_on` go only to workers with
    /// every one of their labels. Letters, digits, `_`, `.` and `-`.
    #[arg(long = "label", value_name = "NAME", value_parser = crate::jobfile::labels::parse, help_heading = DISTRIBUTED)]
    pub labels: Vec<String>,
    /// A worker given a cache stores each task it ran that succeeded (the coordinator
    /// looks tasks up before publishing them; a worker never restores).
    #[command(flatten)]
    pub cache: CacheArgs,
    /// Time between TERM and KILL when a task is stopped (at most 30 days).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration, help_heading = PROCESS)]
    pub grace: std::time::Duration,
}

/// A `--set` that cannot be: clap says the first two (a value parser's error, shown
/// after clap's own words), the runner the third.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetError {
    #[error("{text:?} has no var name before `=` (write NAME=VALUE)")]
    NoName { text: String },
    #[error("{text:?} has no `=`: write NAME=VALUE, e.g. --set {text}=…")]
    NoEquals { text: String },
    #[error(
        "--set {name} is given twice ({name}={first:?}, then {name}={then:?}): give each var once"
    )]
    Twice {
        name: String,
        first: String,
        then: String,
    },
}

/// A `--resource NAME=N` that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadResource {
    #[error("{0:?} has no `=`: write NAME=N, e.g. --resource gpu=1")]
    NoEquals(String),
    #[error("{0:?} has no resource name before `=` (write NAME=N, e.g. gpu=1)")]
    NoName(String),
    #[error(
        "{0:?}: the amount is not an integer ≥ 0 or a size (write e.g. gpu=2 or mem=64G; K, M, G, T are powers of 1024)"
    )]
    Amount(String),
}

/// `--resource NAME=N`: N an integer ≥ 0 or a size, binary as in the file's
/// `[resources]` (`"8G"` is 8 GiB there too).
fn parse_resource(text: &str) -> Result<(String, u64), BadResource> {
    let (name, amount) = text
        .split_once('=')
        .ok_or_else(|| BadResource::NoEquals(text.to_string()))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(BadResource::NoName(text.to_string()));
    }
    let amount = amount.trim();
    let n = match amount.parse::<u64>() {
        Ok(n) => Some(n),
        Err(_) if amount.starts_with(|c: char| c.is_ascii_digit()) => {
            crate::size::parse(amount).ok()
        }
        Err(_) => None,
    };
    n.map(|n| (name.to_string(), n))
        .ok_or_else(|| BadResource::Amount(text.to_string()))
}

/// `--set NAME=VALUE`: split at the first `=` (the value may hold more).
fn parse_set(text: &str) -> Result<(String, String), SetError> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        Some(_) => Err(SetError::NoName { text: text.into() }),
        None => Err(SetError::NoEquals { text: text.into() }),
    }
}

/// The `--set` pairs, each name once.
pub fn check_sets(sets: &[(String, String)]) -> Result<(), SetError> {
    for (i, (name, value)) in sets.iter().enumerate() {
        if let Some((_, other)) = sets[..i].iter().find(|(n, _)| n == name) {
            return Err(SetError::Twice {
                name: name.clone(),
                first: other.clone(),
                then: value.clone(),
            });
        }
    }
    Ok(())
}

/// A duration on the command line that did not parse or is out of bounds, with the form
/// to write.
#[derive(Debug)]
struct BadDuration(DurationError);

impl std::fmt::Display for BadDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            DurationError::NotADuration(e) => {
                write!(f, "{e} (write e.g. \"500ms\", \"10s\", \"2m\")")
            }
            DurationError::TooLong(e) | DurationError::TooShort(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for BadDuration {}

/// A `--memfree` or `--load` value that is not one.
#[derive(Debug, thiserror::Error)]
enum BadGate {
    #[error("{0:?} is not a size (write e.g. \"2G\" or \"512M\"; K, M, G, T are powers of 1024)")]
    Size(String),
    #[error("{0:?} is not a load average (write a number ≥ 0, e.g. 4 or 2.5)")]
    Load(String),
}

fn parse_memfree(text: &str) -> Result<u64, BadGate> {
    crate::size::parse(text)
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| BadGate::Size(text.to_string()))
}

fn parse_load(text: &str) -> Result<f64, BadGate> {
    match text.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 0.0 => Ok(n),
        _ => Err(BadGate::Load(text.to_string())),
    }
}

fn parse_duration(text: &str) -> Result<Duration, BadDuration> {
    duration::parse(text, Bounds::ANY).map_err(BadDuration)
}

/// The shortest lease. A worker renews its leases every third of the lease, so a lease
/// much shorter than that (0s, 1ms) expires between two renewals and other workers take
/// the tasks of live ones. Half a second leaves each renewal about 160 ms.
#[cfg(feature = "distributed")]
pub const LEASE_FLOOR: Duration = Duration::from_millis(500);

#[cfg(feature = "distributed")]
fn parse_lease(text: &str) -> Result<Duration, BadDuration> {
    let bounds = Bounds {
        min: LEASE_FLOOR,
        max: duration::CEILING,
        why_min: ": workers renew a lease every third of it, and a shorter lease hands the tasks of live workers to others",
    };
    duration::parse(text, bounds).map_err(BadDuration)
}

/// The heartbeat's period when `RUNNER_HEARTBEAT` is not set.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);

/// `RUNNER_HEARTBEAT` set to what is not a duration from 100ms to 1h.
#[derive(Debug, thiserror::Error)]
#[error("RUNNER_HEARTBEAT={text:?} {source}{}", form(source))]
pub struct HeartbeatError {
    /// The variable's value (lossily UTF-8).
    pub text: String,
    #[source]
    pub source: DurationError,
}

/// The form to write, after an error that is not about bounds.
fn form(e: &DurationError) -> &'static str {
    match e {
        DurationError::NotADuration(_) => " (write e.g. \"10s\"; between 100ms and 1h)",
        _ => "",
    }
}

/// `RUNNER_HEARTBEAT`: how often plain output says what is running, 100ms to 1h; the
/// default when unset or empty. The commands check it before anything runs.
pub fn heartbeat() -> Result<Duration, HeartbeatError> {
    let Some(raw) = std::env::var_os("RUNNER_HEARTBEAT").filter(|v| !v.is_empty()) else {
        return Ok(DEFAULT_HEARTBEAT);
    };
    let text = raw.to_string_lossy();
    let bounds = Bounds {
        min: Duration::from_millis(100),
        max: Duration::from_secs(3600),
        why_min: "",
    };
    duration::parse(&text, bounds).map_err(|source| HeartbeatError {
        text: text.into_owned(),
        source,
    })
}

/// `runner FILE …` means `runner run FILE …`.
pub fn normalize(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    if let Some(first) = args.get(1).and_then(|a| a.to_str()) {
        let global = ["-h", "--help", "-V", "--version"].contains(&first);
        if !global && !COMMANDS.contains(&first) {
            args.insert(1, "run".into());
        }
    }
    args
}

#[cfg(test)]
mod size_tests {
    use super::parse_size;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(parse_size("2 KiB").unwrap(), 2048);
        assert_eq!(parse_size("1MB").unwrap(), 1 << 20);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("1024").unwrap(), 1024);
        let error = parse_size("lots").unwrap_err().to_string();
        assert!(error.contains("write e.g. 500M, 2GiB"), "{error}");
    }
}

#[cfg(test)]
mod help_tests {
    use clap::CommandFactory;

    /// A new option of `run`, `plan` or `worker` without `help_heading` would land in a
    /// flat "Options" list after the sections: name its command and option.
    #[test]
    fn every_option_of_run_plan_and_worker_has_a_section() {
        let mut cli = super::Cli::command();
        cli.build();
        let mut names = vec!["run", "plan"];
        if cfg!(feature = "distributed") {
            names.push("worker");
        }
        for name in names {
            let command = cli.find_subcommand(name).expect(name);
            let mut options = 0;
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if arg.is_positional() || id == "help" || id == "version" {
                    continue;
                }
                options += 1;
                let heading = arg.get_help_heading();
                assert!(
                    heading.is_some_and(|h| super::HEADINGS.contains(&h)),
                    "runner {name} --{id}: help_heading is {heading:?}; give it one of cli::HEADINGS {:?}",
                    super::HEADINGS
                );
            }
            assert!(options >= 5, "runner {name}: {options} options");
        }
    }

    /// `run --help` shows the sections in the order of `HEADINGS`.
    #[test]
    fn the_sections_of_run_come_in_order() {
        let mut cli = super::Cli::command();
        cli.build();
        let run = cli.find_subcommand_mut("run").unwrap();
        let text = run.render_long_help().to_string();
        let mut at = 0;
        for heading in super::HEADINGS {
            if !cfg!(feature = "distributed") && heading == super::DISTRIBUTED {
                continue;
            }
            let found = text[at..]
                .find(&format!("{heading}:"))
                .unwrap_or_else(|| panic!("{heading} missing or out of order in:\n{text}"));
            at += found;
        }
    }
}
