//! What a task runs and reads: `command` (a shell script or argv), `items` (the fan-out:
//! a list, a range, the lines of a file or a queue) and `stdin` (text, a file or a
//! queue). A job that reads a queue becomes its consumer here; whether every queue has
//! a producer and a consumer is left to `wiring`.

use super::{article, Checker};
use crate::diagnostic::{suggest, Diagnostic};
use crate::jobfile::{CommandSpec, Items, JobId, QueueId, StdinSpec};
use crate::template::Template;
use std::ops::Range;
use std::path::Path;
use toml::Spanned;

impl Checker {
    /// `command`: a string is a shell script, an array is argv. A wrong command becomes
    /// an empty argv, which is never run because the file is then rejected.
    pub(super) fn command(
        &mut self,
        raw: &Spanned<toml::Value>,
        shell: Vec<String>,
    ) -> CommandSpec {
        match raw.get_ref() {
            toml::Value::String(script) => self.shell_command(script, raw.span()).map_or(
                CommandSpec::Argv(Vec::new()),
                |script| CommandSpec::Shell { shell, script },
            ),
            toml::Value::Array(parts) => {
                CommandSpec::Argv(self.argv_command(parts, raw.span()).unwrap_or_default())
            }
            other => {
                self.error(
                    format!("`command` must be a string (run with the shell) or an array of strings (argv), not {}", article(other.type_str())),
                    raw.span(),
                );
                CommandSpec::Argv(Vec::new())
            }
        }
    }

    /// A string `command`. `{item}` inside quotes is refused: the runner shell-quotes the
    /// item itself, and its quotes would close the ones around it, leaving the item bare
    /// for the shell to run as code.
    fn shell_command(&mut self, script: &str, span: Range<usize>) -> Option<Template> {
        if script.trim().is_empty() {
            self.error("`command` is empty", span);
            return None;
        }
        let script = self.template_at(script, span.clone())?;
        if let Some(kind) = script.item_inside_shell_quotes() {
            self.diagnostics.push(
                Diagnostic::at(format!("`{{item}}` inside {kind} quotes in a shell command"), span)
                    .with_note("the runner quotes {item} itself; write it bare (echo {item}), or use \"$RUNNER_ITEM\" inside quotes"),
            );
        }
        Some(script)
    }

    /// An array `command`: each part one argument, the first naming the program.
    fn argv_command(&mut self, parts: &[toml::Value], span: Range<usize>) -> Option<Vec<Template>> {
        if parts.is_empty() {
            self.error(
                "`command` is empty: name a program, e.g. [\"echo\", \"hi\"]",
                span,
            );
            return None;
        }
        let mut argv = Vec::new();
        for part in parts {
            match part {
                toml::Value::String(s) => {
                    if let Some(t) = self.template_at(s, span.clone()) {
                        argv.push(t);
                    }
                }
                other => {
                    self.error(
                        format!(
                            "`command` array holds {}; each argument must be a string",
                            article(other.type_str())
                        ),
                        span,
                    );
                    return None;
                }
            }
        }
        if argv.first().is_some_and(Template::is_empty) {
            self.error("`command` names an empty program", span);
        }
        Some(argv)
    }

    /// `items`: an array of values, or a table with one of `range`, `file`, `queue`.
    /// Wrong items become an empty list, never run because the file is rejected.
    pub(super) fn items(&mut self, raw: &Spanned<toml::Value>, job: JobId) -> Items {
        let span = raw.span();
        match raw.get_ref() {
            toml::Value::Array(values) => Items::List(self.item_list(values, span)),
            toml::Value::Table(table) => self.items_table(table, job, span),
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

    /// `items = [...]`: scalars, each given to a process as text, so none may hold NUL.
    fn item_list(&mut self, values: &[toml::Value], span: Range<usize>) -> Vec<String> {
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
        items
    }

    /// `items = { range | file | queue = ... }`.
    fn items_table(&mut self, table: &toml::Table, job: JobId, span: Range<usize>) -> Items {
        if table.len() != 1 {
            self.error(
                "`items` as a table takes exactly one of `range`, `file` or `queue`",
                span,
            );
            return Items::List(Vec::new());
        }
        let (key, value) = table.iter().next().expect("one key");
        match (key.as_str(), value) {
            ("range", toml::Value::Array(bounds)) => self.items_range(bounds, span),
            ("file", toml::Value::String(file)) => {
                let path = self.dir.join(file);
                match read_items(&path) {
                    Ok(items) => Items::List(items),
                    Err(message) => {
                        self.error(message, span);
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
                let mut d = Diagnostic::at(format!("unknown key `{other}` in `items`"), span);
                if let Some(s) = suggest(other, ["range", "file", "queue"]) {
                    d = d.with_note(format!("did you mean `{s}`?"));
                }
                self.diagnostics.push(d);
                Items::List(Vec::new())
            }
        }
    }

    /// `items = { range = [A, B] }`: A, A+1, …, B−1.
    fn items_range(&mut self, bounds: &[toml::Value], span: Range<usize>) -> Items {
        match bounds {
            [toml::Value::Integer(a), toml::Value::Integer(b)] if a <= b => Items::Range(*a, *b),
            [toml::Value::Integer(_), toml::Value::Integer(_)] => {
                self.error("`range = [A, B]` needs A ≤ B (B is not included)", span);
                Items::List(Vec::new())
            }
            _ => {
                self.error("`range` is two integers: `{ range = [0, 10] }`", span);
                Items::List(Vec::new())
            }
        }
    }

    /// Makes `job` the consumer of queue `q`; a queue has one consumer, so a second is
    /// reported where it names the queue.
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

    /// `stdin`: a string (a template), or a table with one of `file`, `queue`.
    pub(super) fn stdin(&mut self, raw: &Spanned<toml::Value>, job: JobId) -> StdinSpec {
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
}

/// The lines of an items file, blank ones skipped; the error is the message to show.
fn read_items(path: &Path) -> Result<Vec<String>, String> {
    let bytes = std::fs::read(path)
        .map_err(|e| format!("cannot read items file {}: {e}", path.display()))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| format!("items file {} is not UTF-8 text", path.display()))?;
    if text.contains('\0') {
        return Err(format!("items file {} holds a NUL byte", path.display()));
    }
    Ok(text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect())
}

/// An item as the text a process is given; tables and arrays are not items.
fn scalar(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}
