//! What one task would run, rendered from its job and item: the command (argv, or the
//! shell and its script), the environment the file adds, the working folder and the
//! stdin. Pure: the same function serves the run (`exec::prepare`, which adds the
//! other `RUNNER_*` variables and turns a queue id into the queue) and `runner plan`, so that
//! the plan shows exactly what would run.

use crate::jobfile::{CommandSpec, Job, JobFile, QueueId, Ready, StdinSpec};
use crate::template::{Quoting, Values};
use std::path::PathBuf;

/// A task's command, as it will be run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// The program and its arguments.
    Argv(Vec<String>),
    /// `shell… script`.
    Shell { shell: Vec<String>, script: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stdin {
    Null,
    Bytes(Vec<u8>),
    File(PathBuf),
    Queue(QueueId),
}

/// One task, rendered.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub command: Command,
    /// The file's `env` and the job's, rendered (the `RUNNER_*` variables are not here).
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    pub stdin: Stdin,
    /// The item's fields (key, value), for items with fields.
    pub fields: Vec<(String, String)>,
    /// The file's vars as every task gets them: (`RUNNER_VAR_<NAME>`, value), in file
    /// order. Part of the task's identity (a script may read one).
    pub vars: Vec<(String, String)>,
    /// `sources` and `outputs`, relative to `cwd`, the values inserted matched literally.
    pub sources: Vec<String>,
    pub outputs: Vec<String>,
    /// The names of the secrets the job's tasks get as environment variables of the
    /// same names. Only names: the values are the process's (`crate::secrets`), added
    /// by `exec::prepare`, and never part of the task's identity.
    pub secrets: Vec<String>,
}

impl Command {
    /// The program and its arguments, as `execve` gets them.
    pub fn argv(&self) -> Vec<String> {
        match self {
            Command::Argv(argv) => argv.clone(),
            Command::Shell { shell, script } => {
                let mut argv = shell.clone();
                argv.push(script.clone());
                argv
            }
        }
    }
}

/// The task of `job` for `item` (the label, for items with fields) at `index`.
pub fn task(file: &JobFile, job: &Job, item: &str, index: u64) -> Rendered {
    let fields = job.items.fields(index);
    let values = Values {
        item,
        index,
        job: &job.name,
        fields: &fields,
    };
    let command = command(&job.command, &values);
    let env = file
        .env
        .iter()
        .chain(job.env.iter())
        .map(|(name, value)| (name.clone(), value.render(&values, Quoting::Raw)))
        .collect();
    let cwd = match &job.cwd {
        Some(cwd) => file.dir.join(cwd.render(&values, Quoting::Raw)),
        None => file.dir.clone(),
    };
    let stdin = match &job.stdin {
        StdinSpec::Empty => Stdin::Null,
        StdinSpec::Text(text) => Stdin::Bytes(text.render(&values, Quoting::Raw).into_bytes()),
        StdinSpec::File(path) => Stdin::File(file.dir.join(path.render(&values, Quoting::Raw))),
        StdinSpec::Queue(q) => Stdin::Queue(*q),
    };
    let patterns = |list: &[crate::template::Template]| {
        list.iter()
            .map(|t| t.render(&values, Quoting::Glob))
            .collect()
    };
    Rendered {
        command,
        env,
        cwd,
        stdin,
        secrets: job.secrets.clone(),
        sources: patterns(&job.sources),
        outputs: patterns(&job.outputs),
        fields,
        vars: file
            .vars
            .iter()
            .map(|v| {
                (
                    crate::jobfile::fields::var_env_name(&v.name),
                    v.value.clone(),
                )
            })
            .collect(),
    }
}

/// A command of the file (a job's, or a service's `ready` check), rendered for a task.
fn command(spec: &CommandSpec, values: &Values<'_>) -> Command {
    match spec {
        CommandSpec::Argv { args, script } => Command::Argv(
            args.iter()
                .enumerate()
                .map(|(k, t)| {
                    let quoting = if *script == Some(k) {
                        Quoting::Shell
                    } else {
                        Quoting::Raw
                    };
                    t.render(values, quoting)
                })
                .collect(),
        ),
        CommandSpec::Shell { shell, script } => Command::Shell {
            shell: shell.clone(),
            script: script.render(values, Quoting::Shell),
        },
    }
}

/// A service's readiness check, rendered for one of its tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadyCheck {
    /// `HOST:PORT`
    Tcp(String),
    Http(String),
    /// The regular expression, as written (the job holds it compiled).
    Line(String),
    Command(Command),
}

impl ReadyCheck {
    /// The check in words, as messages, the plan and the reports name it:
    /// `tcp 127.0.0.1:6379`, `line /ready/`.
    pub fn describe(&self) -> String {
        match self {
            ReadyCheck::Tcp(address) => format!("tcp {address}"),
            ReadyCheck::Http(url) => format!("http {url}"),
            ReadyCheck::Line(regex) => format!("line /{regex}/"),
            ReadyCheck::Command(Command::Shell { script, .. }) => format!("command `{script}`"),
            ReadyCheck::Command(Command::Argv(argv)) => format!("command {argv:?}"),
        }
    }
}

/// The readiness check of a service's task (`None`: not a service, or ready once its
/// process started).
pub fn ready(job: &Job, item: &str, index: u64) -> Option<ReadyCheck> {
    let fields = job.items.fields(index);
    let values = Values {
        item,
        index,
        job: &job.name,
        fields: &fields,
    };
    Some(match job.ready.as_ref()? {
        Ready::Tcp(t) => ReadyCheck::Tcp(t.render(&values, Quoting::Raw)),
        Ready::Http(t) => ReadyCheck::Http(t.render(&values, Quoting::Raw)),
        Ready::Line(pattern) => ReadyCheck::Line(pattern.text.clone()),
        Ready::Command(spec) => ReadyCheck::Command(command(spec, &values)),
    })
}
