//! The library's one error type, and the one place that turns the end of a command into
//! the process's exit status. Every fallible path of the library returns [`Error`]; the
//! binary prints it once (`Error::render`) and exits with [`exit_status`].

use crate::cli::{HeartbeatError, SetError};
use crate::jobfile::items_file::ItemsFileError;
use crate::jobfile::select::UnknownJob;
use crate::jobfile::LoadError;
use crate::report::ReadError;
use crate::signals::Interrupt;
use std::path::PathBuf;

/// Exit status: every task succeeded (or was allowed to fail).
pub const EXIT_OK: u8 = 0;
/// Exit status: a task failed, or the run could not go on.
pub const EXIT_FAILED: u8 = 1;
/// Exit status: the job file or the command line is invalid; nothing ran.
pub const EXIT_INVALID: u8 = 2;

/// How a command that did its work ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything asked for was done (a run: every task succeeded or was allowed to fail).
    Success,
    /// A run in which a task failed (not allowed to), or a worker that could not serve
    /// a run.
    Failed,
    /// A run stopped by a signal.
    Interrupted(Interrupt),
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The job file did not load; every problem is in it, each with its place.
    #[error("{}", .0.render(false))]
    Load(#[from] LoadError),
    /// The command line did not parse (clap's message, with its usage line).
    #[error("{}", .0.render())]
    CommandLine(clap::Error),
    /// The command line asks for something that cannot be; nothing ran.
    #[error("{0}")]
    Usage(String),
    /// A `--set` given twice (clap refuses one that does not parse).
    #[error(transparent)]
    Set(#[from] SetError),
    /// `RUNNER_HEARTBEAT` is not a duration in its bounds.
    #[error(transparent)]
    Heartbeat(#[from] HeartbeatError),
    /// A job named on the command line is not in the file.
    #[error(transparent)]
    UnknownJob(#[from] UnknownJob),
    /// A job's items file cannot give an item any more (`runner plan --json`, which
    /// lists every task).
    #[error("job `{job}`: {source}")]
    ItemsFile {
        job: String,
        #[source]
        source: ItemsFileError,
    },
    /// The JSON report given to `runner report` cannot be read, or is not a report.
    #[error(transparent)]
    Report(#[from] ReadError),
    /// A file the user named cannot be used; nothing ran.
    #[error("cannot {what} {}: {source}", path.display())]
    Path {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Something the run needs from the system could not be had (a thread, a pipe, the
    /// signal handlers).
    #[error("cannot {what}: {source}")]
    System {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// `--resume` cannot use the state of the earlier run, or write its own.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// `--changed-since` cannot be answered (no git, not a checkout, an unknown
    /// revision, no merge base); nothing ran.
    #[error(transparent)]
    Changed(#[from] crate::changed::ChangedError),
    /// `runner cache stats|prune DIR`: DIR is not a cache folder, or cannot be read or
    /// pruned.
    #[error(transparent)]
    CacheDir(#[from] crate::cache::prune::CacheDirError),
    /// `--cache URL` or `--cache-max-entry` that cannot be used; nothing ran.
    #[error(transparent)]
    Cache(#[from] crate::cache::OpenError),
    /// The broker cannot be used, or went away for good.
    #[cfg(feature = "distributed")]
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// A secret a selected job names cannot be resolved; nothing ran.
    #[error(transparent)]
    Secret(#[from] crate::secrets::SecretError),
    /// `--slurm`: the workers' job array cannot be submitted; nothing ran.
    #[cfg(feature = "distributed")]
    #[error(transparent)]
    Slurm(#[from] crate::run::slurm::SlurmError),
}

impl Error {
    /// A constructor for `map_err`: `.map_err(Error::system("start a thread"))`.
    pub fn system(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::System { what, source }
    }

    /// A constructor for `map_err` about a file the user named.
    pub fn path(
        what: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Path { what, path, source }
    }

    /// The message as the user sees it on stderr (a load error with its snippets, in
    /// colour if asked; anything else as one `error:` line).
    pub fn render(&self, color: bool) -> String {
        crate::secrets::redact(&self.render_plain(color)).into_owned()
    }

    fn render_plain(&self, color: bool) -> String {
        match self {
            Error::Load(e) => e.render(color),
            Error::CommandLine(e) if color => e.render().ansi().to_string(),
            Error::CommandLine(e) => e.render().to_string(),
            other => format!("error: {other}\n"),
        }
    }
}

/// Why the broker cannot be used.
#[cfg(feature = "distributed")]
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// Cannot work with this broker at all: wrong password, TLS, unknown host, down at start.
    #[error("{0}")]
    Fatal(String),
    /// Gave up reconnecting because the run is stopping.
    #[error("stopped")]
    Stopped,
}

/// The exit status of a command: the one place where results become numbers.
pub fn exit_status(result: &Result<Outcome, Error>) -> u8 {
    match result {
        Ok(Outcome::Success) => EXIT_OK,
        Ok(Outcome::Failed) => EXIT_FAILED,
        Ok(Outcome::Interrupted(signal)) => signal.exit_status(),
        Err(
            Error::Load(_)
            | Error::CommandLine(_)
            | Error::Usage(_)
            | Error::Set(_)
            | Error::Heartbeat(_)
            | Error::UnknownJob(_)
            | Error::ItemsFile { .. }
            | Error::Report(_)
            | Error::State(_)
            | Error::Changed(_)
            | Error::Secret(_)
            | Error::CacheDir(_)
            | Error::Cache(_)
            | Error::Path { .. },
        ) => EXIT_INVALID,
        #[cfg(feature = "distributed")]
        Err(Error::Slurm(_)) => EXIT_INVALID,
        Err(_) => EXIT_FAILED,
    }
}
