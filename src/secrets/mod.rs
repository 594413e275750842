//! Declared secrets (`[secrets]`, a job's `secrets`): resolved when a run (or a plan,
//! or a worker) starts, only those the selected jobs name; given to those jobs' tasks
//! as environment variables (`exec::prepare`); and every exact occurrence of a value
//! replaced by `***` in what the runner shows or writes (`redact`).
//!
//! The resolved secrets are the process's own (one job file a process): [`activate`]
//! installs them once, and the few places that need them ask [`active`] (the sinks at
//! their entrance, the runner's own messages, labels, the plan). Values never enter the
//! model, task identity, the journal or the broker: each worker resolves its own.
//! Not to be confused with `crate::scrub`, which hides the broker's password and
//! authkey from the process's own argv and environment.

mod redact;

pub use redact::{Patterns, Stream};

use crate::jobfile::{JobFile, SecretSource};
use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

/// The shortest value accepted: a shorter one would redact ordinary text.
pub const MIN_LEN: usize = 4;

/// The secrets of this process, once resolved.
static ACTIVE: RwLock<Option<Arc<Resolved>>> = RwLock::new(None);

/// Secrets resolved: each name with its value, the runner's variables they were read
/// from (removed from every task's environment), and the matcher over the values.
#[derive(Debug)]
pub struct Resolved {
    pub values: Vec<(String, String)>,
    pub source_vars: Vec<String>,
    pub patterns: Arc<Patterns>,
}

impl Resolved {
    /// The value of secret `name`, if resolved.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a secret has no value. The value itself is never in a message.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret `{name}`: the environment variable {var} is not set")]
    Unset { name: String, var: String },
    #[error("secret `{name}`: the environment variable {var} is not valid UTF-8")]
    EnvNotUnicode { name: String, var: String },
    #[error("secret `{name}`: cannot read the file {}: {source}", path.display())]
    File {
        name: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("secret `{name}`: the file {} is not valid UTF-8", path.display())]
    FileNotUnicode { name: String, path: PathBuf },
    #[error("secret `{name}`: cannot run `{program}`: {source}")]
    Spawn {
        name: String,
        program: String,
        source: std::io::Error,
    },
    #[error("secret `{name}`: the command `{program}` failed ({status})")]
    Failed {
        name: String,
        program: String,
        status: std::process::ExitStatus,
    },
    #[error("secret `{name}`: the command `{program}` printed something that is not valid UTF-8")]
    OutputNotUnicode { name: String, program: String },
    #[error("secret `{name}`: {what} is empty")]
    Empty { name: String, what: String },
    #[error("secret `{name}`: the value has {len} characters; a secret needs at least {MIN_LEN} (a shorter one would hide ordinary text)")]
    TooShort { name: String, len: usize },
}

/// The secrets named by the jobs of `file` (the selection) that may run in this
/// process (`here`), resolved in file order, and made this process's: task output and
/// messages are redacted from here on. Nothing to resolve changes nothing.
pub fn activate(
    file: &JobFile,
    here: impl Fn(&crate::jobfile::Job) -> bool,
) -> Result<Option<Arc<Resolved>>, SecretError> {
    let Some(resolved) = resolve(file, here)? else {
        return Ok(None);
    };
    let resolved = Arc::new(resolved);
    *ACTIVE.write().unwrap_or_else(|e| e.into_inner()) = Some(resolved.clone());
    Ok(Some(resolved))
}

/// The secrets of `file` its jobs that may run here name; `None` when there are none.
pub fn resolve(
    file: &JobFile,
    here: impl Fn(&crate::jobfile::Job) -> bool,
) -> Result<Option<Resolved>, SecretError> {
    let used = |name: &str| {
        file.jobs
            .iter()
            .any(|j| here(j) && j.secrets.iter().any(|s| s == name))
    };
    let mut values = Vec::new();
    let mut source_vars = Vec::new();
    for def in file.secrets.iter().filter(|s| used(&s.name)) {
        let name = def.name.clone();
        let value = match &def.source {
            SecretSource::Env(var) => {
                source_vars.push(var.clone());
                match std::env::var(var) {
                    Ok(v) if v.is_empty() => {
                        return Err(SecretError::Empty {
                            name,
                            what: format!("the environment variable {var}"),
                        })
                    }
                    Ok(v) => v,
                    Err(std::env::VarError::NotPresent) => {
                        return Err(SecretError::Unset {
                            name,
                            var: var.clone(),
                        })
                    }
                    Err(std::env::VarError::NotUnicode(_)) => {
                        return Err(SecretError::EnvNotUnicode {
                            name,
                            var: var.clone(),
                        })
                    }
                }
            }
            SecretSource::File(path) => {
                let bytes = std::fs::read(path).map_err(|source| SecretError::File {
                    name: name.clone(),
                    path: path.clone(),
                    source,
                })?;
                let text = String::from_utf8(bytes).map_err(|_| SecretError::FileNotUnicode {
                    name: name.clone(),
                    path: path.clone(),
                })?;
                let value = chomp(text);
                if value.is_empty() {
                    return Err(SecretError::Empty {
                        name,
                        what: format!("the file {}", path.display()),
                    });
                }
                value
            }
            SecretSource::Command(argv) => command(&name, argv, &file.dir)?,
        };
        let len = value.chars().count();
        if len < MIN_LEN {
            return Err(SecretError::TooShort { name, len });
        }
        values.push((def.name.clone(), value));
    }
    if values.is_empty() {
        return Ok(None);
    }
    let patterns = Arc::new(Patterns::new(values.iter().map(|(_, v)| v.as_bytes())));
    Ok(Some(Resolved {
        values,
        source_vars,
        patterns,
    }))
}

/// A value less its one final newline (`\n` or `\r\n`).
fn chomp(mut text: String) -> String {
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    text
}

/// Runs a secret's command in the job file's folder (stdin empty, stderr the runner's):
/// its stdout less the final newline.
fn command(name: &str, argv: &[String], dir: &std::path::Path) -> Result<String, SecretError> {
    let program = argv.join(" ");
    let output = std::process::Command::new(argv.first().map_or("", String::as_str))
        .args(&argv[1..])
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|source| SecretError::Spawn {
            name: name.to_string(),
            program: program.clone(),
            source,
        })?;
    if !output.status.success() {
        return Err(SecretError::Failed {
            name: name.to_string(),
            program,
            status: output.status,
        });
    }
    let text = String::from_utf8(output.stdout).map_err(|_| SecretError::OutputNotUnicode {
        name: name.to_string(),
        program: program.clone(),
    })?;
    let value = chomp(text);
    if value.is_empty() {
        return Err(SecretError::Empty {
            name: name.to_string(),
            what: format!("what the command `{program}` printed"),
        });
    }
    Ok(value)
}

/// This process's secrets, once [`activate`]d.
pub fn active() -> Option<Arc<Resolved>> {
    ACTIVE.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// The matcher of this process's secrets, for a stream.
pub fn patterns() -> Option<Arc<Patterns>> {
    active().map(|r| r.patterns.clone())
}

/// `text` with every secret's value replaced by `***` (the runner's own messages,
/// labels, the plan, the step summary).
pub fn redact(text: &str) -> Cow<'_, str> {
    match active() {
        None => Cow::Borrowed(text),
        Some(r) => match r.patterns.replace(text.as_bytes()) {
            Cow::Borrowed(_) => Cow::Borrowed(text),
            // Values are whole UTF-8 strings and `***` is ASCII: the text stays UTF-8.
            Cow::Owned(bytes) => Cow::Owned(String::from_utf8_lossy(&bytes).into_owned()),
        },
    }
}

/// In GitHub Actions, the `::add-mask::` commands for every secret, so that the Actions
/// log masks the values too: one per line of a value (GitHub masks line by line), with
/// `%`, CR and LF escaped as workflow commands need.
pub fn add_masks(resolved: &Resolved) -> String {
    let mut out = String::new();
    for (_, value) in &resolved.values {
        for line in value.lines().filter(|l| !l.is_empty()) {
            let escaped = line
                .replace('%', "%25")
                .replace('\r', "%0D")
                .replace('\n', "%0A");
            out.push_str(&format!("::add-mask::{escaped}\n"));
        }
    }
    out
}

/// In GitHub Actions (`GITHUB_ACTIONS=true`, as `display::Ci::detect` reads it), the
/// [`add_masks`] commands on stdout: the one place the runner writes a value, for the
/// Actions runner to hide it in the log. A reader gone away (`| head`) is not an error.
pub fn mask_in_github(resolved: &Resolved) -> std::io::Result<()> {
    use std::io::Write;
    if std::env::var("GITHUB_ACTIONS").map_or(true, |v| v != "true") {
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    match out
        .write_all(add_masks(resolved).as_bytes())
        .and_then(|()| out.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e),
        _ => Ok(()),
    }
}

/// A writer that redacts what goes through it (`runner plan`'s stdout). What could be
/// the start of a value is held until the next write or [`std::io::Write::flush`].
pub struct Writer<W: std::io::Write> {
    inner: W,
    stream: Option<Stream>,
}

impl<W: std::io::Write> Writer<W> {
    /// Redacts with this process's secrets, if any.
    pub fn new(inner: W) -> Writer<W> {
        Writer {
            inner,
            stream: patterns().map(Stream::new),
        }
    }
}

impl<W: std::io::Write> std::io::Write for Writer<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let Some(stream) = &mut self.stream else {
            return self.inner.write(buf);
        };
        let mut result = Ok(());
        let inner = &mut self.inner;
        stream.push(buf, &mut |clean| {
            if result.is_ok() {
                result = inner.write_all(clean);
            }
        });
        result.map(|()| buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let mut result = Ok(());
        if let Some(stream) = &mut self.stream {
            let inner = &mut self.inner;
            stream.finish(&mut |clean| {
                if result.is_ok() {
                    result = inner.write_all(clean);
                }
            });
        }
        result.and_then(|()| self.inner.flush())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_loses_only_its_final_newline() {
        assert_eq!(chomp("abcd\n".into()), "abcd");
        assert_eq!(chomp("abcd\r\n".into()), "abcd");
        assert_eq!(chomp("abcd\n\n".into()), "abcd\n");
        assert_eq!(chomp("abcd".into()), "abcd");
    }
}
