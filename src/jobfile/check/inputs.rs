//! What a task runs and reads: `command` (a shell script or argv), `items` (the fan-out:
//! a list, a range, the lines of a file or a queue) and `stdin` (text, a file or a
//! queue). A job that reads a queue becomes its consumer here; whether every queue has
//! a producer and a consumer is left to `wiring`.

use super::{article, Checker};
use crate::diagnostic::{suggest, Diagnostic};
use crate::jobfile::typed::{self, Value};
use crate::jobfile::{CommandSpec, Items, JobId, QueueId, StdinSpec};
use crate::template::{self, is_posix_shell, Template};
use std::ops::Range;
use toml::de::{DeTable, DeValue};

impl Checker<'_> {
    /// `command`: a string is a shell script, an array is argv. A wrong command becomes
    /// an empty argv, which is never run because the file is then rejected.
    pub(super) fn command(&mut self, raw: &Value<'_>, shell: Vec<String>) -> CommandSpec {
        match raw.get_ref() {
            DeValue::String(script) => self.shell_command(script, raw.span(), &shell).map_or(
                CommandSpec::empty(),
                |script| CommandSpec::Shell { shell, script },
            ),
            DeValue::Array(parts) => self
                .argv_command(parts, raw.span(), &shell)
                .unwrap_or_else(CommandSpec::empty),
            other => {
                self.error(
                    format!("`command` must be a string (run with the shell) or an array of strings (argv), not {}", article(other.type_str())),
                    raw.span(),
                );
                CommandSpec::empty()
            }
        }
    }

    /// A string `command`, run by `shell`.
    fn shell_command(
        &mut self,
        text: &str,
        span: Range<usize>,
        shell: &[String],
    ) -> Option<Template> {
        if text.trim().is_empty() {
            self.error("`command` is empty", span);
            return None;
        }
        let script = self.template_kept(text, span.clone())?;
        self.script(&script, text, span, shell, false);
        script.is_sound().then_some(script)
    }

    /// A shell script (a string `command`, or the script argument of an argv command
    /// that runs a shell, `in_argv`), run by `shell`. The runner inserts values (`{item}`,
    /// `{item.FIELD}`, `{vars.NAME}`) quoted for a POSIX shell, so a value is refused
    /// where that quoting cannot protect it: inside quotes (its quotes would close the
    /// ones around it, leaving the value bare for the shell to run as code), and
    /// anywhere in a script run by another program. Every such value is reported, each
    /// error pointing at its placeholder.
    fn script(
        &mut self,
        script: &Template,
        text: &str,
        span: Range<usize>,
        shell: &[String],
        in_argv: bool,
    ) {
        let at = |item: Range<usize>| typed::content_span(self.source, span.clone(), text, item);
        let argv_note = "or pass it as an argument of its own after the script, where it is never code: [\"sh\", \"-c\", \"echo \\\"$1\\\"\", \"sh\", \"{item}\"]";
        if !is_posix_shell(shell) {
            for value in script.values() {
                let program = shell.first().map_or("", String::as_str);
                let written = &text[value.clone()];
                let what = match written {
                    "{item}" => "the item",
                    w if w.starts_with("{vars.") => "the var",
                    _ => "the field",
                };
                let d = Diagnostic::at(
                    format!("`{written}` in a command run by `{program}`, which is not a POSIX shell: the runner cannot quote {what} for it"),
                    at(value),
                );
                self.diagnostics.push(if in_argv {
                    d.with_note(format!("pass it in the environment instead: every task gets its item in RUNNER_ITEM (and fields in RUNNER_ITEM_<KEY>), and `env = {{ NAME = \"{{vars.NAME}}\" }}` hands a var over (in Python, os.environ[\"NAME\"]); {argv_note}"))
                } else {
                    d.with_note("pass it in the environment instead: every task gets its item in RUNNER_ITEM (and fields in RUNNER_ITEM_<KEY>), and `env = { NAME = \"{vars.NAME}\" }` hands a var over (in Python, os.environ[\"NAME\"]); or make `command` an array (argv), where a placeholder is passed inside one argument")
                });
            }
            return;
        }
        for (place, value) in script.values_where_quoting_fails() {
            let written = text[value.clone()].to_string();
            let env_note = format!("hand it over in the environment (env = {{ NAME = \"{written}\" }}) and use \"$NAME\" there: the shell puts a variable's text in, never runs it");
            let note = match place {
                _ if written.starts_with("{vars.") && place != crate::shell::ARITHMETIC => env_note,
                crate::shell::HEREDOC => "in a here-document the shell expands $(…) and `…` even around a quoted word, and a line of the value could end the document early; write \"$RUNNER_ITEM\" there instead (the shell puts its text in, never runs it)".to_string(),
                crate::shell::COMMENT => "a newline in the value would end the comment and the rest would run; leave placeholders out of comments".to_string(),
                crate::shell::BACKTICKS => "the runner quotes the value itself, which protects it only as a plain word; write $(…) instead of backticks, or use \"$RUNNER_ITEM\"".to_string(),
                crate::shell::ARITHMETIC => "arithmetic evaluates its text again after removing quotes (and bash evaluates a variable's value too: an item `a[$(cmd)]` runs cmd), so no quoting protects it there; check that $RUNNER_ITEM is a number first (case $RUNNER_ITEM in ''|*[!0-9]*) exit 2;; esac), then use it".to_string(),
                _ if written == "{item}" => "the runner quotes {item} itself; write it bare (echo {item}), or use \"$RUNNER_ITEM\" inside quotes".to_string(),
                _ => format!("the runner quotes {written} itself; write it bare (echo {written}), or hand it over in the environment (env = {{ NAME = \"{written}\" }}) and use \"$NAME\" inside quotes"),
            };
            let note = if in_argv {
                format!("{note}; {argv_note}")
            } else {
                note
            };
            let what = if in_argv {
                "the shell script of an argv command"
            } else {
                "a shell command"
            };
            self.diagnostics.push(
                Diagnostic::at(format!("`{written}` {place} in {what}"), at(value)).with_note(note),
            );
        }
    }

    /// An array `command`: each part one argument, the first naming the program. When it
    /// runs a shell's script (`["sh", "-c", SCRIPT, …]`, or the file's `shell` followed by
    /// one argument: see `template::script_argument`), that argument is checked and
    /// rendered like a string command.
    fn argv_command(
        &mut self,
        parts: &[Value<'_>],
        span: Range<usize>,
        shell: &[String],
    ) -> Option<CommandSpec> {
        if parts.is_empty() {
            self.error(
                "`command` is empty: name a program, e.g. [\"echo\", \"hi\"]",
                span,
            );
            return None;
        }
        let mut args = Vec::new();
        let mut texts = Vec::new();
        for part in parts {
            match part.get_ref() {
                DeValue::String(s) => {
                    // Errors point at the argument itself.
                    if let Some(t) = self.template_kept(s, part.span()) {
                        args.push(t);
                        texts.push((s.to_string(), part.span()));
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
        if args.first().is_some_and(Template::is_empty) {
            self.error("`command` names an empty program", span);
        }
        let fixed: Vec<Option<String>> = args.iter().map(Template::fixed_text).collect();
        let script = template::script_argument(&fixed, shell);
        if let Some(k) = script {
            let program: Vec<String> = fixed[..k].iter().flatten().cloned().collect();
            let (text, at) = texts[k].clone();
            self.script(&args[k], &text, at, &program, true);
        }
        args.iter()
            .all(Template::is_sound)
            .then_some(CommandSpec::Argv { args, script })
    }

    /// `items`: an array of values, or a table with one of `range`, `file`, `queue`.
    /// Wrong items become an empty list, never run because the file is rejected.
    pub(super) fn items(&mut self, raw: &Value<'_>, job: JobId) -> Items {
        let span = raw.span();
        match raw.get_ref() {
            DeValue::Array(values) if values.iter().any(|v| v.get_ref().is_table()) => {
                self.item_tables(values, span)
            }
            DeValue::Array(values) => Items::List(self.item_list(values, span)),
            DeValue::Table(table)
                if table
                    .keys()
                    .any(|k| k.get_ref() == "matrix" || k.get_ref() == "exclude") =>
            {
                self.item_matrix(table, span)
            }
            DeValue::Table(table) => self.items_table(table, job, span),
            other => {
                self.error(
                    format!(
                        "`items` must be an array or a table (`range`, `file`, `queue` or `matrix`), not {}",
                        article(other.type_str())
                    ),
                    span,
                );
                Items::List(Vec::new())
            }
        }
    }

    /// `items = [...]`: scalars, each given to a process as text, so none may hold NUL.
    /// A string item may use `{vars.NAME}` (and `{job}`).
    fn item_list(&mut self, values: &[Value<'_>], span: Range<usize>) -> Vec<String> {
        let mut items = Vec::new();
        for spanned in values {
            let value = spanned.get_ref();
            match typed::scalar(value) {
                Some(s) if s.contains('\0') => self.error(
                    "an item holds a NUL byte, which no process can be given",
                    span.clone(),
                ),
                Some(s) if value.is_str() => {
                    if let Some(item) = self.fixed_template(&s, spanned.span(), "an item") {
                        // Every task gets its item in RUNNER_ITEM, which Linux caps.
                        if item.len() >= 128 * 1024 - "RUNNER_ITEM=".len() {
                            self.error(
                                format!("an item is {} bytes, more than Linux takes in one environment variable (128 KiB; every task gets its item in RUNNER_ITEM)", item.len()),
                                spanned.span(),
                            );
                        }
                        items.push(item);
                    }
                }
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
    fn items_table(&mut self, table: &DeTable<'_>, job: JobId, span: Range<usize>) -> Items {
        if table.len() != 1 {
            self.error(
                "`items` as a table takes exactly one of `range`, `file`, `queue` or `matrix`",
                span,
            );
            return Items::List(Vec::new());
        }
        let (key, value) = table.iter().next().expect("one key");
        match (&**key.get_ref(), value.get_ref()) {
            ("range", DeValue::Array(bounds)) => self.items_range(bounds, span),
            ("file", DeValue::String(file)) => {
                let Some(file) = self.fixed_template(file, value.span(), "the path of `items`")
                else {
                    return Items::List(Vec::new());
                };
                let path = self.dir.join(file);
                match super::super::items_file::count(&path) {
                    Ok(count) => Items::File { path, count },
                    Err(e) => {
                        self.error(e.to_string(), span);
                        Items::List(Vec::new())
                    }
                }
            }
            ("queue", DeValue::String(name)) => {
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
                if let Some(s) = suggest(other, ["range", "file", "queue", "matrix"]) {
                    d = d.with_note(format!("did you mean `{s}`?"));
                }
                self.diagnostics.push(d);
                Items::List(Vec::new())
            }
        }
    }

    /// `items = { range = [A, B] }`: A, A+1, …, B−1.
    fn items_range(&mut self, bounds: &[Value<'_>], span: Range<usize>) -> Items {
        let bound = |v: &Value<'_>| match v.get_ref() {
            DeValue::Integer(i) => Some(typed::integer(i)),
            _ => None,
        };
        match bounds.iter().map(bound).collect::<Vec<_>>()[..] {
            [Some(Some(a)), Some(Some(b))] if a <= b => Items::Range(a, b),
            [Some(Some(_)), Some(Some(_))] => {
                self.error("`range = [A, B]` needs A ≤ B (B is not included)", span);
                Items::List(Vec::new())
            }
            [Some(_), Some(_)] => {
                self.error("`range = [A, B]`: a bound is too large", span);
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
    pub(super) fn stdin(&mut self, raw: &Value<'_>, job: JobId) -> StdinSpec {
        let span = raw.span();
        match raw.get_ref() {
            DeValue::String(text) => match self.template_at(text, span) {
                Some(t) => StdinSpec::Text(t),
                None => StdinSpec::Empty,
            },
            DeValue::Table(table) if table.len() == 1 => {
                let (key, value) = table.iter().next().expect("one key");
                match (&**key.get_ref(), value.get_ref()) {
                    ("file", DeValue::String(file)) => {
                        let Some(path) = self.template_at(file, value.span()) else {
                            return StdinSpec::Empty;
                        };
                        // Known now unless it names the item or index: look for it now.
                        if path.per_task().is_none() {
                            let path = self.dir.join(self.render_fixed(&path));
                            let shown =
                                crate::diagnostic::printable(&path.display().to_string(), 200);
                            if path.is_dir() {
                                self.error(format!("stdin file {shown} is a folder"), span);
                            } else if !path.exists() {
                                self.error(format!("stdin file {shown} does not exist"), span);
                            }
                        }
                        StdinSpec::File(path)
                    }
                    ("queue", DeValue::String(name)) => {
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
