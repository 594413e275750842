//! `runner plan FILE [JOB…]` (and `runner run --dry-run`): every task a run would have,
//! in an order the graph allows, each with its label, what it would run (rendered by
//! [`crate::render`], the same function the run uses), its stdin, its environment
//! additions, and what would happen to it and why. Runs nothing.
//!
//! Text is for people: a bounded preview per job (a range of a billion items shows its
//! first tasks and the count), control characters shown escaped. `--json` is for
//! programs: one object per task, streamed (never held in memory), byte-exact.

use crate::cache::run::Opened;
use crate::jobfile::items_file::{ItemReader, ItemsFileError};
use crate::jobfile::{CommandSpec, Items, Job, JobFile, JobId, When};
use crate::render::{self, Command, Rendered, Stdin};
use crate::state::{self, Memory};
use crate::task::{label, plural, thousands};
use crate::template::shell_quote;
use crate::template::{Quoting, Values};
use serde_json::{json, Map, Value};
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// At most this many tasks of a job are listed in text; past it, the first
/// [`PREVIEW`] and a count.
const LISTED: u64 = 20;
const PREVIEW: u64 = 10;
/// The tasks of a job whose actions the text counts; past it, the rest are said not
/// counted (a range of a billion items is not decided task by task).
const COUNTED: u64 = 100_000;

/// What would happen to a task, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// `run`, `up_to_date`, `done_earlier`, `cached` or `unchanged`.
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
    cache: Option<&Opened>,
    out: &mut impl Write,
) -> Result<(), PlanError> {
    let memory = &Known {
        memory,
        cache,
        cache_failed: AtomicBool::new(false),
    };
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

/// What a plan knows: the state of earlier runs, and the results cache (`--cache`).
struct Known<'a> {
    memory: &'a Memory,
    cache: Option<&'a Opened>,
    /// The store failed: said once, and not asked again.
    cache_failed: AtomicBool,
}

impl Known<'_> {
    /// The entry of a task that would run, if the cache would restore it: looked up and
    /// its MAC checked, no blob fetched.
    fn cached(&self, job: &Job, rendered: &Rendered, id: &state::TaskId) -> Option<String> {
        use crate::cache::run::{self as cache, Looked};
        let opened = self.cache?;
        let reads = opened.settings.mode.reads() && !self.memory.force;
        if !reads || !cache::cacheable(job) || self.cache_failed.load(Ordering::Relaxed) {
            return None;
        }
        let key = cache::key_of(job, rendered, id)?;
        let secret = opened.settings.secret.as_deref();
        match cache::look_up(&*opened.store, &key, secret) {
            Looked::Hit(entry) => Some(cache::reason(&entry)),
            Looked::Absent | Looked::Unusable(_) => None,
            Looked::Failed(e) => {
                if !self.cache_failed.swap(true, Ordering::Relaxed) {
                    eprintln!("warning: cache: {e}; the plan shows what would run without it");
                }
                None
            }
        }
    }
}

fn verdict(
    file: &JobFile,
    job: &Job,
    (index, item): (u64, &str),
    rendered: &Rendered,
    memory: &Known<'_>,
) -> Verdict {
    if job.service {
        // A service always runs (as the run decides: it has no identity there).
        return Verdict {
            action: state::Action::Run.word(),
            reason: "a service: it runs while the jobs needing it run".to_string(),
        };
    }
    let id = state::decide(file, job, index, item, rendered, memory.memory);
    if id.action == state::Action::Run {
        if let Some(reason) = memory.cached(job, rendered, &id) {
            return Verdict {
                action: state::Action::Cached.word(),
                reason,
            };
        }
    }
    Verdict {
        action: id.action.word(),
        reason: id.reason,
    }
}

/// What would happen to the tasks of a job, or of the run: how many of each action.
#[derive(Debug, Default)]
struct Counts {
    /// (action word, count), in the order [`Counts::RANK`] gives.
    by_action: Vec<(&'static str, u64)>,
}

impl Counts {
    /// The order actions are said in: what is skipped first, what runs last
    /// ("608 done earlier, 1,392 run").
    const RANK: [&'static str; 5] = ["up_to_date", "done_earlier", "cached", "unchanged", "run"];

    fn add(&mut self, action: &'static str, n: u64) {
        match self.by_action.iter_mut().find(|(a, _)| *a == action) {
            Some((_, count)) => *count += n,
            None => {
                self.by_action.push((action, n));
                let rank = |a: &str| {
                    Self::RANK
                        .iter()
                        .position(|r| *r == a)
                        .unwrap_or(usize::MAX)
                };
                self.by_action.sort_by_key(|(a, _)| rank(a));
            }
        }
    }

    fn merge(&mut self, other: &Counts) {
        for (action, n) in &other.by_action {
            self.add(action, *n);
        }
    }

    fn total(&self) -> u64 {
        self.by_action.iter().map(|(_, n)| n).sum()
    }

    fn runs(&self) -> bool {
        self.by_action.iter().any(|(a, n)| *a == "run" && *n > 0)
    }

    /// "608 done earlier, 1,392 run"; "none" when there is no task.
    fn words(&self) -> String {
        if self.by_action.is_empty() {
            return "none".to_string();
        }
        self.by_action
            .iter()
            .map(|(action, n)| format!("{} {}", thousands(*n), action.replace('_', " ")))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// "2,000 tasks".
fn tasks_count(n: u64) -> String {
    let word = if n == 1 { "task" } else { "tasks" };
    format!("{} {word}", thousands(n))
}

/// A job's settings that change what happens to its tasks, as its heading shows them
/// (`concurrency 4, timeout 30s, retries 2, allow_failure`).
fn settings(file: &JobFile, job: &Job) -> Vec<String> {
    let mut said = Vec::new();
    if job.service {
        said.push("service".to_string());
    }
    if let Some(n) = job.concurrency {
        said.push(format!("concurrency {n}"));
    }
    if let Some(t) = job.timeout {
        said.push(format!("timeout {}", humantime::format_duration(t)));
    }
    if job.retries > 0 {
        said.push(format!(
            "retries {} (delay {})",
            job.retries,
            humantime::format_duration(job.retry_delay)
        ));
    }
    if job.allow_failure {
        said.push("allow_failure".to_string());
    }
    if job.success_codes != [0] {
        let codes: Vec<String> = job.success_codes.iter().map(i32::to_string).collect();
        said.push(format!("success_codes {}", codes.join(" ")));
    }
    match job.when {
        When::Success => {}
        When::Always => said.push("when always".to_string()),
        When::Failure => said.push("when failure".to_string()),
    }
    if !job.uses.is_empty() {
        let uses: Vec<String> = job
            .uses
            .iter()
            .map(|&(r, n)| {
                let r = &file.resources[r];
                format!("{} {}", r.name, r.amount(n))
            })
            .collect();
        said.push(format!("uses {}", uses.join(", ")));
    }
    if let Some(rate) = job.rate {
        let rate = &file.rates[rate];
        match rate.name == job.name {
            true => said.push(format!("rate {}", rate.text)),
            false => said.push(format!("rate {} {}", rate.name, rate.text)),
        }
    }
    if !job.runs_on.is_empty() {
        said.push(format!("runs_on {}", job.runs_on.join(" ")));
    }
    said
}

/// A job's heading: its name, its tasks, and its settings in brackets.
fn heading(file: &JobFile, job: &Job, what: String) -> String {
    let settings = settings(file, job);
    let what = if what.is_empty() {
        job.name.clone()
    } else {
        format!("{}: {what}", job.name)
    };
    if settings.is_empty() {
        what
    } else {
        format!("{what}  [{}]", settings.join(", "))
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

fn write_text(file: &JobFile, memory: &Known<'_>, out: &mut impl Write) -> io::Result<()> {
    let known: Option<u64> = file.jobs.iter().map(|j| j.items.count()).sum();
    let fed = known.is_none();
    let tasks_word = match known {
        Some(n) => tasks_count(n),
        None => {
            let n: u64 = file.jobs.iter().filter_map(|j| j.items.count()).sum();
            format!("{} and tasks fed by queues", tasks_count(n))
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
    let mut run = Counts::default();
    // Tasks past the counted ones of a job, not looked at.
    let mut not_counted = 0;
    for j in start_order(file) {
        let job = &file.jobs[j];
        writeln!(out)?;
        if let Items::Queue(q) = job.items {
            may_run[j] = true;
            let what = format!(
                "one task per item of queue `{}`, as the run goes",
                file.queues[q].name
            );
            writeln!(out, "{}", heading(file, job, what))?;
            writeln!(out, "  run  tasks cannot be known before the run")?;
            continue;
        }
        let count = job.items.count().unwrap_or(0);
        let what = match (count, job.items.is_fan_out()) {
            (_, false) => String::new(),
            (n, true) if n > LISTED => {
                format!("{}, the first {PREVIEW} shown", tasks_count(n))
            }
            (n, true) => tasks_count(n),
        };
        writeln!(out, "{}", heading(file, job, what))?;
        write_each(file, job, out)?;
        let (counts, up_to_date) = write_job_tasks(file, job, memory, out)?;
        let counted = counts.total();
        // Tasks not looked at may run.
        may_run[j] = counts.runs() || counted < count;
        not_counted += count - counted;
        run.merge(&counts);
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
    // The run's counts, as Terraform's "Plan: N to add" closes its plan.
    let mut last = format!(
        "Plan: {}: {}",
        tasks_count(run.total() + not_counted),
        run.words()
    );
    if not_counted > 0 {
        last.push_str(&format!(", {} not counted", thousands(not_counted)));
    }
    if fed {
        last.push_str("; and the tasks fed by queues, which run");
    }
    writeln!(out, "\n{last}")?;
    Ok(())
}

/// The tasks of a job (the first [`PREVIEW`] of a long one) and, for a fan-out, its
/// counts per action: the counts and whether some task is up to date.
fn write_job_tasks(
    file: &JobFile,
    job: &Job,
    memory: &Known<'_>,
    out: &mut impl Write,
) -> io::Result<(Counts, bool)> {
    let count = job.items.count().unwrap_or(0);
    let listed = if count > LISTED { PREVIEW } else { count };
    let mut counts = Counts::default();
    let mut up_to_date = false;
    let mut error = false;
    for (n, task) in tasks(file, job).take(COUNTED as usize).enumerate() {
        match task {
            Ok((index, item, rendered)) => {
                let task = (index, item.as_str());
                let verdict = verdict(file, job, task, &rendered, memory);
                if (n as u64) < listed {
                    write_task_text(file, job, task, &rendered, &verdict, out)?;
                }
                counts.add(verdict.action, 1);
                up_to_date |= verdict.action == "up_to_date";
            }
            Err(problem) => {
                writeln!(out, "  error: {}", shown(&problem.to_string()))?;
                error = true;
                break;
            }
        }
    }
    if count > listed {
        writeln!(
            out,
            "  … and {} more tasks (runner plan --json lists every one)",
            thousands(count - listed)
        )?;
    }
    let counted = counts.total();
    if job.items.is_fan_out() && !error {
        if counted < count {
            writeln!(
                out,
                "  {}: of the first {}, {}; the rest not counted",
                tasks_count(count),
                thousands(counted),
                counts.words()
            )?;
        } else {
            writeln!(out, "  {}: {}", tasks_count(count), counts.words())?;
        }
    }
    Ok((counts, up_to_date))
}

/// One task, as text; what would happen to it (`run`, `up_to_date`, `done_earlier`).
fn write_task_text(
    file: &JobFile,
    job: &Job,
    (index, item): (u64, &str),
    rendered: &Rendered,
    verdict: &Verdict,
    out: &mut impl Write,
) -> io::Result<()> {
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
    match &rendered.command {
        Command::Argv(argv) => {
            let command: Vec<String> = argv.iter().map(|a| pasteable(a)).collect();
            writeln!(out, "    $ {}", shown(&command.join(" ")))?;
        }
        Command::Shell { shell, script } => {
            let shell = if shell[..] == ["sh", "-c"] {
                String::new()
            } else {
                format!("[{}] ", shell.join(" "))
            };
            // A script of several lines as its lines, under the first; a line feed
            // an inserted value holds stays escaped in its line.
            let mut lines = script_lines(job, item, index, rendered, script);
            while lines.len() > 1 && lines.last().is_some_and(String::is_empty) {
                lines.pop();
            }
            let mut lines = lines.iter();
            let first = lines.next().map_or("", String::as_str);
            writeln!(out, "    $ {shell}{}", shown(first))?;
            for line in lines {
                if line.is_empty() {
                    writeln!(out)?;
                } else {
                    writeln!(out, "      {}", shown(line))?;
                }
            }
        }
    }
    if job.service {
        writeln!(out, "    {}", shown(&service_words(job, item, index)))?;
    }
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
    Ok(())
}

/// A shell script's lines, cut where the job's own text breaks a line (not where a
/// value holds a line feed); the script whole, as one line, should they not make it.
fn script_lines(
    job: &Job,
    item: &str,
    index: u64,
    rendered: &Rendered,
    script: &str,
) -> Vec<String> {
    let CommandSpec::Shell {
        script: template, ..
    } = &job.command
    else {
        return vec![script.to_string()];
    };
    let values = Values {
        item,
        index,
        job: &job.name,
        fields: &rendered.fields,
    };
    let lines = template.render_lines(&values, Quoting::Shell);
    if lines.join("\n") == script {
        lines
    } else {
        vec![script.to_string()]
    }
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

fn write_json(file: &JobFile, memory: &Known<'_>, out: &mut impl Write) -> Result<(), PlanError> {
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
    memory: &Known<'_>,
) -> Value {
    let verdict = verdict(file, job, (index, item), rendered, memory);
    let mut task = Map::new();
    task.insert("job".into(), json!(job.name));
    task.insert("item".into(), json!(item));
    task.insert("index".into(), json!(index));
    task.insert("label".into(), json!(label(job, item)));
    if !job.runs_on.is_empty() {
        task.insert("runs_on".into(), json!(job.runs_on));
    }
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
    if job.service {
        let ready = render::ready(job, item, index).map(|c| c.describe());
        task.insert(
            "service".into(),
            json!({
                "ready": ready,
                "ready_timeout_s": job.ready_timeout.as_secs_f64(),
            }),
        );
    }
    task.insert("action".into(), json!(verdict.action));
    task.insert("reason".into(), json!(verdict.reason));
    Value::Object(task)
}

/// A service's task in words: `service, ready: tcp 127.0.0.1:6379 within 30s`.
fn service_words(job: &Job, item: &str, index: u64) -> String {
    match render::ready(job, item, index) {
        Some(check) => format!(
            "service, ready: {} within {}",
            check.describe(),
            humantime::format_duration(job.ready_timeout)
        ),
        None => "service, ready once started".to_string(),
    }
}

/// (name, value) pairs as a JSON object, in their order.
fn object(pairs: &[(String, String)]) -> Value {
    Value::Object(pairs.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
}
