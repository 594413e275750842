//! The library's one error type, and the one place that turns the end of a command into
//! the process's exit status. Every fallible path of the library returns [`Error`]; the
//! binary prints it once (`Error::render`) and exits with [`exit_status`].

use crate::jobfile::LoadError;
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
    /// The broker cannot be used, or went away for good.
    #[cfg(feature = "distributed")]
    #[error(transparent)]
    Broker(#[from] BrokerError),
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
        Err(Error::Load(_) | Error::CommandLine(_) | Error::Usage(_) | Error::Path { .. }) => {
            EXIT_INVALID
        }
        Err(_) => EXIT_FAILED,
    }
}
