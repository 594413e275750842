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
            | Error::Path { .. },
        ) => EXIT_INVALID,
        Err(_) => EXIT_FAILED,
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    /// Files of src/ that may still hold a `Result<…, String>` or a
    /// `map_err(|e| e.to_string())`, with how many and why. Nothing else may: errors are
    /// types (issue 10; issue 23, point 19).
    const ALLOWED: &[(&str, usize, &str)] = &[];

    /// The last type argument of each `Result<…>` in `text` that is `String`, and each
    /// `map_err(|e| e.to_string())`: their byte offsets.
    fn stringly(text: &str) -> Vec<usize> {
        let mut found = Vec::new();
        for (at, _) in text.match_indices("Result<") {
            let args = &text[at + "Result<".len()..];
            // The start of the argument being read, and the one before it.
            let (mut depth, mut last, mut before, mut prev) = (0usize, 0, 0, ' ');
            for (i, c) in args.char_indices() {
                match c {
                    '<' | '(' | '[' => depth += 1,
                    '>' if prev == '-' => {}
                    '>' | ')' | ']' if depth > 0 => depth -= 1,
                    '>' => {
                        let mut arg: String = args[last..i].split_whitespace().collect();
                        if arg.is_empty() {
                            // A trailing comma.
                            arg = args[before..last - 1].split_whitespace().collect();
                        }
                        // `io::Result<String>` has one argument: its value.
                        let error = last > 0;
                        if error && (arg == "String" || arg == "std::string::String") {
                            found.push(at);
                        }
                        break;
                    }
                    ',' if depth == 0 => (before, last) = (last, i + 1),
                    _ => {}
                }
                prev = c;
            }
        }
        let squeezed: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        found.extend(
            squeezed
                .match_indices("map_err(|e| e.to_string())")
                .map(|(i, _)| i),
        );
        found
    }

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    #[test]
    fn the_guard_finds_what_it_looks_for() {
        assert_eq!(stringly("fn f() -> Result<u8, String> {").len(), 1);
        assert_eq!(
            stringly("-> Result<\n    (Arc<JobFile>, Vec<String>),\n    String,\n>").len(),
            1
        );
        assert_eq!(stringly("Result<Option<Stat>, String>").len(), 1);
        assert_eq!(stringly("Result<impl Fn() -> u8, String>").len(), 1);
        assert_eq!(stringly("x.map_err(|e|\n e.to_string())").len(), 1);
        assert!(
            stringly("Result<String, Error> Result<Vec<String>, E> io::Result<String>").is_empty()
        );
    }

    #[test]
    fn no_error_is_a_string() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        files.sort();
        let mut wrong = Vec::new();
        for path in files {
            let mut text = std::fs::read_to_string(&path).unwrap();
            let name = path
                .strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if name == "error.rs" {
                // These tests name what they look for.
                if let Some(tests) = text.find("\n#[cfg(test)]\nmod tests {") {
                    text.truncate(tests);
                }
            }
            let found = stringly(&text).len();
            let allowed = ALLOWED
                .iter()
                .find(|(f, ..)| *f == name)
                .map_or(0, |(_, n, _)| *n);
            if found > allowed {
                wrong.push(format!("{name}: {found} (allowed {allowed})"));
            }
        }
        assert!(
            wrong.is_empty(),
            "errors as strings (`Result<_, String>`, `map_err(|e| e.to_string())`); make them \
             types (src/error.rs, or a module's own enum converted into `Error`):\n{}",
            wrong.join("\n")
        );
    }
}
