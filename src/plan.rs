//! `runner plan FILE [JOB…]` (and `runner run --dry-run`): every task a run would have,
//! in an order the graph allows, each with its label, what it would run (rendered by
//! [`crate::render`], the same function the run uses), its stdin, its environment
//! additions, and what would happen to it and why. Runs nothing.
//!
//! Text is for people: a bounded preview per job (a range of a billion items shows its
//! first tasks and the count), control characters shown escaped. `--json` is for
//! programs: one object per task, streamed (never held in memory), byte-exact.

use crate::jobfile::items_file::{ItemReader, ItemsFileError};
use crate::jobfile::{Items, Job, JobFile, JobId};
use crate::render::{self, Command, Rendered, Stdin};
use crate::state::{self, Memory};
use crate::task::{label, plural};
use crate::template::shell_quote;
use serde_json::{json, Map, Value};
use std::io::{self, Write};

/// At most this many tasks of a job are listed in text; past it, the first
/// [`PREVIEW`] and a count.
const LISTED: u64 = 20;
const PREVIEW: u64 = 10;

/// What would happen to a task, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// `run`, `up_to_date` or `done_earlier`.
    pub action: &'static str,
    pub reason: String,
}

/// The jobs in an order the graph allows: a job after the jobs it needs and after the
/// producers of the queue it reads; otherwise in file order.
pub fn start_order(file: &JobFile) -> Vec<JobId> {
    let before = |j: JobId| -> Vec<JobId> {
        let job = &file.jobs[j];
        let mut before = job.needs.clone();
        if let Some(q) = job.consumes() {
            before.extend(&file.queues[q].producers);
        }
        before
    };
    let mut placed = vec![false; file.jobs.len()];
    let mut order = Vec::new();
    while order.len() < file.jobs.len() {
        // The graph has no cycle (the loader refuses one), so some job is always ready.
        let next = (0..file.jobs.len())
            .find(|&j| !placed[j] && before(j).iter().all(|b| placed[*b]))
            .expect("the job graph has no cycle");
        placed[next] = true;
        order.push(next);
    }
    order
}

/// Why a plan could not be written whole.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// Writing to the output failed.
    #[error(transparent)]
    Write(#[from] io::Error),
    /// A job's items file cannot give a task's item (the JSON plan lists every task;
    /// the text plan says it in its place).
    #[error("job `{job}`: {source}")]
    Items {
        job: String,
        #[source]
        source: ItemsFileError,
    },
}

/// Writes the plan of `file` to `out`, as text or JSON.
pub fn write(
    file: &JobFile,
    json: bool,
    memory: &Memory,
    out: &mut impl Write,
) -> Result<(), PlanError> {
    if json {
        write_json(file, memory, out)
    } else {
        write_text(file, memory, out)?;
        Ok(out.flush()?)
    }
}

/// Each task of `job`, in item order: (index, item, rendered), or the reason the items
/// file cannot give the next one. Tasks fed by a queue are not known: none.
fn tasks<'a>(
    file: &'a JobFile,
    job: &'a Job,
) -> impl Iterator<Item = Result<(u64, String, Rendered), ItemsFileError>> + 'a {
    let count = match job.items {
        Items::Queue(_) => 0,
        _ => job.items.count().unwrap_or(0),
    };
    let mut reader = match &job.items {
        Items::File { path, .. } => Some(ItemReader::new(path)),
        _ => None,
    };
    (0..count).map(move |index| {
        let item = match &mut reader {
            Some(reader) => reader.item(index)?,
            None => job.items.in_memory(index).unwrap_or_default(),
        };
        let rendered = render::task(file, job, &item, index);
        Ok((index, item, rendered))
    })
}

fn verdict(
    file: &JobFile,
    job: &Job,
    (index, item): (u64, &str),
    rendered: &Rendered,
    memory: &Memory,
) -> Verdict {
    let id = state::decide(file, job, index, item, rendered, memory);
    Verdict {
        action: id.action.word(),
        reason: id.reason,
    }
}

/// Under a job's heading: the jobs it needs item by item, if any.
fn write_each(file: &JobFile, job: &Job, out: &mut impl Write) -> io::Result<()> {
    if job.each.is_empty() {
        return Ok(());
    }
    let each: Vec<&str> = job
        .each
        .iter()
        .map(|&d| file.jobs[d].name.as_str())
        .collect();
    writeln!(
        out,
        "  item by item after {}: each task starts once the task of its label there succeeded",
        each.join(", ")
    )
}

fn write_text(file: &JobFile, memory: &Memory, out: &mut impl Write) -> io::Result<()> {
    let known: Option<u64> = file.jobs.iter().map(|j| j.items.count()).sum();
    let tasks_word = match known {
        Some(n) => plural(n, "task"),
        None => {
            let n: u64 = file.jobs.iter().filter_map(|j| j.items.count()).sum();
            format!("{} and tasks fed by queues", plural(n, "task"))
        }
    };
    writeln!(
        out,
        "plan of {}: {}, {}",
        file.path.display(),
        plural(file.jobs.len() as u64, "job"),
        tasks_word
    )?;
    if !file.vars.is_empty() {
        let vars: Vec<String> = file
            .vars
            .iter()
            .map(|v| {
                let set = if v.set { " (--set)" } else { "" };
                format!("{}={}{set}", v.name, shown(&shell_quote(&v.value)))
            })
            .collect();
        writeln!(out, "vars: {}", vars.join(", "))?;
    }
    // Jobs some of whose tasks may run (and so may change files that later jobs read).
    let mut may_run = vec![false; file.jobs.len()];
    for j in start_order(file) {
        let job = &file.jobs[j];
        writeln!(out)?;
        if let Items::Queue(q) = job.items {
            may_run[j] = true;
            writeln!(
                out,
                "{}: one task per item of queue `{}`, as the run goes",
                job.name, file.queues[q].name
            )?;
            writeln!(out, "  run  tasks cannot be known before the run")?;
            continue;
        }
        let count = job.items.count().unwrap_or(0);
        let listed = if count > LISTED { PREVIEW } else { count };
        let heading = match (count, job.items.is_fan_out()) {
            (_, false) => job.name.clone(),
            (n, true) if n > LISTED => {
                format!(
                    "{}: {}, the first {PREVIEW} shown",
                    job.name,
                    plural(n, "task")
                )
            }
            (n, true) => format!("{}: {}", job.name, plural(n, "task")),
        };
        writeln!(out, "{heading}")?;
        write_each(file, job, out)?;
        // Unlisted tasks may run.
        may_run[j] = count > listed;
        let mut up_to_date = false;
        for task in tasks(file, job).take(listed as usize) {
            match task {
                Ok((index, item, rendered)) => {
                    let task = (index, item.as_str());
                    let action = write_task_text(file, job, task, &rendered, memory, out)?;
                    may_run[j] |= action == "run";
                    up_to_date |= action == "up_to_date";
                }
                Err(problem) => {
                    writeln!(out, "  error: {}", shown(&problem.to_string()))?;
                    break;
                }
            }
        }
        if count > listed {
            writeln!(
                out,
                "  … and {} more tasks (runner plan --json lists every one)",
                count - listed
            )?;
        }
        // Up to date as the files are now; a job it needs runs first and may change them.
        let before: Vec<&str> = job
            .needs
            .iter()
            .filter(|n| may_run[**n])
            .map(|n| file.jobs[*n].name.as_str())
            .collect();
        // What it writes may change too, when it runs after all.
        may_run[j] |= up_to_date && !before.is_empty();
        if up_to_date && !before.is_empty() {
            writeln!(
                out,
                "  (as the files are now: {} runs first and may change them; decided again when each task starts)",
                before.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
            )?;
        }
    }
    Ok(())
}

/// One task, as text; what would happen to it (`run`, `up_to_date`, `done_earlier`).
fn write_task_text(
    file: &JobFile,
    job: &Job,
    (index, item): (u64, &str),
    rendered: &Rendered,
    memory: &Memory,
    out: &mut impl Write,
) -> io::Result<&'static str> {
    let verdict = verdict(file, job, (index, item), rendered, memory);
    let word = verdict.action;
    let action = verdict.action.replace('_', " ");
    if verdict.reason == action {
        writeln!(out, "  {}  {action}", label(job, item))?;
    } else {
        writeln!(
            out,
            "  {}  {action} ({})",
            label(job, item),
            shown(&verdict.reason)
        )?;
    }
    let command = match &rendered.command {
        Command::Argv(argv) => argv
            .iter()
            .map(|a| pasteable(a))
            .collect::<Vec<_>>()
            .join(" "),
        Command::Shell { shell, script } if shell[..] == ["sh", "-c"] => script.clone(),
        Command::Shell { shell, script } => {
            format!("[{}] {script}", shell.join(" "))
        }
    };
    writeln!(out, "    $ {}", shown(&command))?;
    match &rendered.stdin {
        Stdin::Null => {}
        Stdin::Bytes(bytes) => {
            let text = String::from_utf8_lossy(bytes);
            let mut lines = text.lines();
            let first = lines.next().unwrap_or("");
            let more = lines.count();
            let more = match more {
                0 => String::new(),
                n => format!(" + {}", plural(n as u64, "more line")),
            };
            writeln!(
                out,
                "    stdin: {}{more} ({})",
                shown(&format!("{first:?}")),
                plural(bytes.len() as u64, "byte")
            )?;
        }
        Stdin::File(path) => {
            let size = match std::fs::metadata(path) {
                Ok(m) => plural(m.len(), "byte"),
                Err(_) => "not there now".to_string(),
            };
            writeln!(
                out,
                "    stdin: file {} ({size})",
                shown(&relative(file, path))
            )?;
        }
        Stdin::Queue(q) => writeln!(out, "    stdin: queue `{}`, streamed", file.queues[*q].name)?,
    }
    if !rendered.env.is_empty() {
        let env: Vec<String> = rendered
            .env
            .iter()
            .map(|(k, v)| format!("{k}={}", shell_quote(v)))
            .collect();
        writeln!(out, "    env: {}", shown(&env.join(" ")))?;
    }
    if job.cwd.is_some() {
        writeln!(out, "    cwd: {}", shown(&relative(file, &rendered.cwd)))?;
    }
    Ok(word)
}

/// A path the plan shows, relative to the job file's folder when it is inside it (`.`
/// for the folder itself).
fn relative(file: &JobFile, path: &std::path::Path) -> String {
    let shown = path
        .strip_prefix(&file.dir)
        .unwrap_or(path)
        .display()
        .to_string();
    if shown.is_empty() {
        ".".to_string()
    } else {
        shown
    }
}

/// One argument as a shell would need it pasted: quoted as usual, or, when it holds
/// control characters, in bash's `$'…'` with them escaped (so that the line stays one
/// line, and pasting it passes the same bytes).
pub(crate) fn pasteable(arg: &str) -> String {
    if !arg.chars().any(char::is_control) {
        return shell_quote(arg);
    }
    let mut out = String::from("$'");
    for c in arg.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\'' => out.push_str("\\'"),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() && (c as u32) < 0x80 => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Text shown on one line of a terminal: control characters escaped (`\n`, `\t`,
/// `\u{1b}`), everything else as is.
fn shown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&c.escape_unicode().to_string()),
            c => out.push(c),
        }
    }
    out
}

fn write_json(file: &JobFile, memory: &Memory, out: &mut impl Write) -> Result<(), PlanError> {
    out.write_all(b"[")?;
    let mut first = true;
    let mut object = |out: &mut dyn Write, value: Value| -> io::Result<()> {
        out.write_all(if first { b"\n" } else { b",\n" })?;
        first = false;
        serde_json::to_writer(&mut *out, &value).map_err(io::Error::from)
    };
    for j in start_order(file) {
        let job = &file.jobs[j];
        if let Items::Queue(q) = job.items {
            object(
                out,
                json!({
                    "job": job.name,
                    "item": null,
                    "index": null,
                    "command": null,
                    "queue": file.queues[q].name,
                    "action": "run",
                    "reason": "tasks come from the queue as the run goes",
                }),
            )?;
            continue;
        }
        for task in tasks(file, job) {
            match task {
                Ok((index, item, rendered)) => {
                    object(out, task_json(file, job, index, &item, &rendered, memory))?;
                }
                Err(source) => {
                    return Err(PlanError::Items {
                        job: job.name.clone(),
                        source,
                    });
                }
            }
        }
    }
    out.write_all(b"\n]\n")?;
    Ok(out.flush()?)
}

fn task_json(
    file: &JobFile,
    job: &Job,
    index: u64,
    item: &str,
    rendered: &Rendered,
    memory: &Memory,
) -> Value {
    let verdict = verdict(file, job, (index, item), rendered, memory);
    let mut task = Map::new();
    task.insert("job".into(), json!(job.name));
    task.insert("item".into(), json!(item));
    task.insert("index".into(), json!(index));
    task.insert("label".into(), json!(label(job, item)));
    match &rendered.command {
        Command::Argv(argv) => {
            task.insert("command".into(), json!(argv));
        }
        Command::Shell { shell, script } => {
            task.insert("command".into(), json!(script));
            task.insert("shell".into(), json!(shell));
        }
    }
    let stdin = match &rendered.stdin {
        Stdin::Null => Value::Null,
        Stdin::Bytes(bytes) => json!({
            "text": String::from_utf8_lossy(bytes),
            "bytes": bytes.len(),
        }),
        Stdin::File(path) => json!({ "file": path.display().to_string() }),
        Stdin::Queue(q) => json!({ "queue": file.queues[*q].name }),
    };
    task.insert("stdin".into(), stdin);
    task.insert("env".into(), object(&rendered.env));
    task.insert("cwd".into(), json!(rendered.cwd.display().to_string()));
    if !rendered.fields.is_empty() {
        task.insert("fields".into(), object(&rendered.fields));
    }
    task.insert("action".into(), json!(verdict.action));
    task.insert("reason".into(), json!(verdict.reason));
    Value::Object(task)
}

/// (name, value) pairs as a JSON object, in their order.
fn object(pairs: &[(String, String)]) -> Value {
    Value::Object(pairs.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
}
