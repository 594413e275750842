//! The per-job checks: turning the typed values of `raw` into the checked model of
//! `jobfile`, one key at a time, and collecting a [`Diagnostic`] for every value that is
//! wrong, each pointing at that value in the file. A wrong value is replaced by a default
//! and checking goes on, so that one pass reports every problem (`jobfile::parse` sorts
//! them in line order).
//!
//! This module checks one job (and the top-level keys) at a time. It does not parse TOML
//! nor check types (`raw` does), and it leaves rules that span jobs
//! (queue wiring, cycles) to `wiring`, which runs only once every job here checked out.
//! Its only I/O is looking at the files and folders the job file names (`items = { file }`,
//! `stdin = { file }`, `cwd`), so that a missing one is reported before anything runs.
//!
//! This file holds the pass itself (the top-level keys, each job's name, `shell`,
//! `needs` and `to`) and the value checks the others share; `inputs` checks what a task
//! runs and reads (`command`, `items`, `stdin`), `process` how its process is run (`env`,
//! `cwd`, `timeout`, `retries`, `success_codes`).

mod fields;
mod files;
mod inputs;
mod process;
mod resources;
mod secrets;
mod service;

use super::raw::{Name, RawFile, RawJob, RawNeed, RawQueue, RawVars};
use super::{
    valid_name, Items, Job, JobFile, JobId, OutputMode, QueueDef, QueueId, StdinSpec, Var, When,
    DEFAULT_CAPACITY,
};
use crate::diagnostic::{suggest, Diagnostic};
use crate::template::{Scope, Template, TemplateError, Values};
use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// Checks every job of `raw` on its own, after the problems `raw` found (`found`).
/// Returns the model and every problem; the model is only usable when there are none.
pub(super) fn file(
    raw: RawFile<'_>,
    found: Vec<Diagnostic>,
    source: &str,
    path: &Path,
    dir: PathBuf,
    set: &[(String, String)],
) -> (JobFile, Vec<Diagnostic>) {
    let mut checker = Checker {
        source,
        dir: dir.clone(),
        diagnostics: found,
        warnings: Vec::new(),
        queues: Vec::new(),
        queue_ids: HashMap::new(),
        vars: Vec::new(),
        job_name: String::new(),
        templates: Vec::new(),
        reported: HashSet::new(),
        resources: Vec::new(),
        rates: Vec::new(),
        named_rates: 0,
    };
    let file = checker.check(raw, path, dir, set);
    (file, checker.diagnostics)
}

/// The state of one pass over a file: the problems found so far, and the queues named
/// so far (a queue is declared by `[queues.NAME]` or by the first job that names it).
struct Checker<'s> {
    /// The job file's text, for pointing inside a string value.
    source: &'s str,
    /// The job file's folder, which relative paths in it are resolved against.
    dir: PathBuf,
    diagnostics: Vec<Diagnostic>,
    /// What is allowed but cannot do what it seems to (see `JobFile::warnings`).
    warnings: Vec<Diagnostic>,
    queues: Vec<QueueDef>,
    queue_ids: HashMap<String, QueueId>,
    /// The vars (name, value), which every template may name.
    vars: Vec<(String, String)>,
    /// The job being checked (for `{job}` in values known at load time).
    job_name: String,
    /// The templates read so far of the job being checked (or of the top level), each
    /// with where it is written and its text: checked against the job's items once
    /// they are known.
    templates: Vec<(Template, Range<usize>, String)>,
    /// Problems already reported, so that one in the top-level `env` is said once, not
    /// once per job.
    reported: HashSet<(Range<usize>, String)>,
    /// `[resources]`, checked before the jobs.
    resources: Vec<super::Resource>,
    /// `[rates]` (the first `named_rates`), then the jobs' own rates.
    rates: Vec<super::Rate>,
    named_rates: usize,
}

impl Checker<'_> {
    fn error(&mut self, message: impl Into<String>, span: Range<usize>) {
        self.diagnostics.push(Diagnostic::at(message, span));
    }

    fn check(
        &mut self,
        raw: RawFile<'_>,
        path: &Path,
        dir: PathBuf,
        set: &[(String, String)],
    ) -> JobFile {
        let pool = raw.pool.and_then(|p| self.positive(&p, "pool"));
        let output = self.output_mode(raw.output);
        let shell = self.top_shell(raw.shell);
        let vars = self.vars(raw.vars, set);
        self.vars = vars
            .iter()
            .map(|v| (v.name.clone(), v.value.clone()))
            .collect();
        let env = self.env(raw.env);
        // Every job checks the top-level `env` against its own items.
        let top_templates = std::mem::take(&mut self.templates);
        let secrets = self.secrets(raw.secrets, &shell);
        let secret_names: Vec<String> = secrets.iter().map(|s| s.name.clone()).collect();
        self.declare_queues(raw.queues);
        self.resources = self.resources(raw.resources);
        self.rates = self.rates(raw.rates);
        self.named_rates = self.rates.len();
        // Every name first, so that `needs` may name a job defined further down.
        let names: HashMap<String, JobId> = raw
            .jobs
            .iter()
            .enumerate()
            .map(|(i, (name, _))| (name.get_ref().clone(), i))
            .collect();
        let mut checked = Vec::new();
        for (id, (name, job)) in raw.jobs.into_iter().enumerate() {
            self.templates = top_templates.clone();
            let job_secrets = self.job_secrets(job.secrets.as_ref(), &secret_names);
            let mut checked_job = self.job(id, name, job, &names, &shell);
            checked_job.secrets = job_secrets;
            checked.push(checked_job);
        }
        self.service_needs(&checked);
        JobFile {
            path: path.to_path_buf(),
            dir,
            source: String::new(),
            pool,
            fail_fast: raw.fail_fast.unwrap_or(false),
            output: output.unwrap_or_default(),
            output_chosen: output.is_some(),
            env,
            vars,
            selection: Vec::new(),
            queues: std::mem::take(&mut self.queues),
            secrets,
            resources: std::mem::take(&mut self.resources),
            rates: std::mem::take(&mut self.rates),
            jobs: checked,
            warnings: std::mem::take(&mut self.warnings),
        }
    }

    /// The top-level `shell`, which every job's string command runs with unless the job
    /// sets its own.
    fn top_shell(&mut self, raw: Option<Spanned<Vec<String>>>) -> Vec<String> {
        match raw {
            Some(s) if s.get_ref().is_empty() => {
                self.error(
                    "`shell` must name a program, e.g. [\"sh\", \"-c\"]",
                    s.span(),
                );
                default_shell()
            }
            Some(s) => s.into_inner(),
            None => default_shell(),
        }
    }

    /// `[queues.NAME]` tables: declared before any job names them, so that their
    /// capacity holds however the jobs refer to them.
    fn declare_queues(&mut self, raw: Vec<(Name, RawQueue)>) {
        for (name, queue) in raw {
            let capacity = match queue.capacity {
                Some(c) => self.positive(&c, "capacity").unwrap_or(DEFAULT_CAPACITY),
                None => DEFAULT_CAPACITY,
            };
            let span = name.span();
            let id = self.queue(name.get_ref(), span.clone());
            self.queues[id].capacity = capacity;
        }
    }

    /// The queue called `name`, declared here (at `span`) if no one named it before.
    fn queue(&mut self, name: &str, span: Range<usize>) -> QueueId {
        if let Some(id) = self.queue_ids.get(name) {
            return *id;
        }
        if !valid_name(name) {
            self.error(
                format!("queue name `{name}` may only hold letters, digits, `_` and `-`"),
                span.clone(),
            );
        }
        let id = self.queues.len();
        self.queues.push(QueueDef {
            name: name.to_string(),
            capacity: DEFAULT_CAPACITY,
            producers: Vec::new(),
            consumer: None,
            span,
        });
        self.queue_ids.insert(name.to_string(), id);
        id
    }

    /// One `[jobs.NAME]` table, key by key. A wrong value is reported and replaced by
    /// its default, so that the checks after it still run and report their own problems.
    fn job(
        &mut self,
        id: JobId,
        name: Name,
        job: RawJob<'_>,
        names: &HashMap<String, JobId>,
        shell: &[String],
    ) -> Job {
        let span = name.span();
        let name = name.into_inner();
        self.job_name = name.clone();
        if !valid_name(&name) {
            self.error(
                format!("job name `{name}` may only hold letters, digits, `_` and `-`"),
                span.clone(),
            );
        }
        let shell = self.job_shell(job.shell.clone(), shell);
        // (A missing command is reported by `raw`, or the job is not a table.)
        let command = job.command.as_ref().map(|c| self.command(c, shell.clone()));
        let command = command.unwrap_or_else(super::CommandSpec::empty);
        let service = self.service(&name, &job, &shell);
        let (needs, needs_spans, each) = self.needs(&job.needs, id, &name, names);
        let when = self.when(job.when.as_ref());
        let before_items = self.diagnostics.len();
        let items = match &job.items {
            None => Items::Single,
            Some(items) => self.items(items, id),
        };
        // Items that did not check out say nothing about the placeholders naming them.
        let items_ok = self.diagnostics.len() == before_items;
        let stdin = match &job.stdin {
            None => StdinSpec::Empty,
            Some(stdin) => self.stdin(stdin, id),
        };
        let stdin_at = job.stdin.as_ref().map_or(span.clone(), |s| s.span());
        self.reads_a_queue_once(&name, &items, &stdin, stdin_at);
        let to = job.to.as_ref().map(|to| {
            let q = self.queue(to.get_ref(), to.span());
            self.queues[q].producers.push(id);
            q
        });
        let env = self.env(job.env);
        let cwd = self.cwd(job.cwd.as_ref());
        let timeout = self.timeout(job.timeout.as_ref());
        let retry_delay = job
            .retry_delay
            .as_ref()
            .and_then(|t| self.duration(t, "retry_delay"))
            .unwrap_or(Duration::from_secs(1));
        let retries = self.retries(job.retries.as_ref());
        let concurrency = job
            .concurrency
            .as_ref()
            .and_then(|c| self.positive(c, "concurrency"));
        let success_codes = self.success_codes(job.success_codes.as_ref());
        let sources = self.patterns(job.sources.as_ref(), "sources");
        let outputs = self.patterns(job.outputs.as_ref(), "outputs");
        let stream = streams(to.is_some(), &stdin);
        if let Some(stream) = stream {
            self.stream_files(&name, stream, job.sources.as_ref(), job.outputs.as_ref());
        }
        let fed = matches!(items, Items::Queue(_)).then_some("its items come from a queue");
        let both = job.sources.is_some() && job.outputs.is_some();
        let never = never_cached(job.cache, both, stream.or(fed));
        let cache_env = self.cache_env(&name, job.cache_env.as_ref(), never);
        let (uses, rate) = self.holds(&name, job.uses, job.rate.as_ref(), stream);
        let runs_on = self.runs_on(&name, job.runs_on.as_ref(), &items, &stdin, job.local);
        if items_ok {
            self.check_fields(&name, items.keys(), items.is_fan_out());
        } else {
            self.templates.clear();
        }
        Job {
            id,
            name,
            span,
            description: job.description,
            command,
            needs,
            needs_spans,
            each,
            when,
            items,
            stdin,
            to,
            env,
            cwd,
            timeout,
            retries,
            retry_delay,
            concurrency,
            success_codes,
            allow_failure: job.allow_failure.unwrap_or(false),
            local: job.local.unwrap_or(false),
            sources,
            outputs,
            output: self.output_mode(job.output),
            secrets: Vec::new(),
            cache: job.cache.unwrap_or(true),
            cache_env,
            uses,
            rate,
            runs_on,
            service: service.service,
            ready: service.ready,
            ready_timeout: service.ready_timeout,
        }
    }

    /// A job reads a queue either as one task per item or on stdin, not both.
    fn reads_a_queue_once(
        &mut self,
        name: &str,
        items: &Items,
        stdin: &StdinSpec,
        at: std::ops::Range<usize>,
    ) {
        if let (Items::Queue(_), StdinSpec::Queue(_)) = (items, stdin) {
            self.error(
                format!("job `{name}` reads a queue twice: use `items = {{ queue }}` or `stdin = {{ queue }}`, not both"),
                at,
            );
        }
    }

    /// `runs_on`: labels, each once, on a job whose tasks may go to workers (a fan-out
    /// job, not `local`, not streaming a queue).
    fn runs_on(
        &mut self,
        job: &str,
        raw: Option<&Spanned<Vec<Name>>>,
        items: &Items,
        stdin: &StdinSpec,
        local: Option<bool>,
    ) -> Vec<String> {
        let reads_queue = matches!(stdin, StdinSpec::Queue(_));
        let Some(raw) = raw else { return Vec::new() };
        let mut labels: Vec<String> = Vec::new();
        for label in raw.get_ref() {
            let text = label.get_ref();
            if let Err(e) = crate::jobfile::labels::check(text) {
                self.error(format!("`runs_on` of job `{job}`: {e}"), label.span());
            } else if labels.contains(text) {
                self.error(
                    format!("`runs_on` of job `{job}` names `{text}` twice"),
                    label.span(),
                );
            } else {
                labels.push(text.clone());
            }
        }
        let never = if local == Some(true) {
            Some("it has `local = true`")
        } else if !items.is_fan_out() {
            Some("it has no `items`, so its one task runs on the coordinator")
        } else {
            reads_queue.then_some("it reads a queue on stdin, so it runs on the coordinator")
        };
        if let Some(why) = never {
            self.error(
                format!("`runs_on` of job `{job}`: its tasks never go to workers ({why})"),
                raw.span(),
            );
        }
        labels
    }

    /// `cache_env`: environment variable names (letters, digits and `_`, not starting
    /// with a digit), each once. On a job that is never cached (`never`: why) they do
    /// nothing: a warning.
    fn cache_env(
        &mut self,
        job: &str,
        raw: Option<&Spanned<Vec<Name>>>,
        never: Option<&str>,
    ) -> Vec<String> {
        let Some(raw) = raw else { return Vec::new() };
        let mut names: Vec<String> = Vec::new();
        for name in raw.get_ref() {
            let text = name.get_ref();
            let valid = text
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !valid {
                self.error(
                    format!("`cache_env` of job `{job}`: {text:?} is not an environment variable name (letters, digits and `_`, not starting with a digit)"),
                    name.span(),
                );
            } else if names.contains(text) {
                self.error(
                    format!("`cache_env` of job `{job}` names `{text}` twice"),
                    name.span(),
                );
            } else {
                names.push(text.clone());
            }
        }
        if let Some(why) = never {
            if !names.is_empty() {
                self.warnings.push(Diagnostic::at(
                    format!("`cache_env` of job `{job}` does nothing: its tasks are never cached ({why})"),
                    raw.span(),
                ));
            }
        }
        names
    }

    /// `output = "…"`: one of the modes, or an error saying which.
    fn output_mode(&mut self, raw: Option<Spanned<String>>) -> Option<OutputMode> {
        let raw = raw?;
        let name = raw.get_ref();
        if let Some(mode) = OutputMode::parse(name) {
            return Some(mode);
        }
        let mut d = Diagnostic::at(
            format!("`output` must be \"lines\", \"grouped\" or \"keep-order\", not {name:?}"),
            raw.span(),
        );
        if let Some(s) = suggest(name, OutputMode::NAMES) {
            d = d.with_note(format!("did you mean \"{s}\"?"));
        }
        self.diagnostics.push(d);
        None
    }

    /// A job's own `shell`, or the top-level one (`inherited`) when it sets none.
    fn job_shell(
        &mut self,
        raw: Option<Spanned<Vec<String>>>,
        inherited: &[String],
    ) -> Vec<String> {
        match raw {
            Some(s) if s.get_ref().is_empty() => {
                self.error("`shell` must name a program", s.span());
                inherited.to_vec()
            }
            Some(s) => s.into_inner(),
            None => inherited.to_vec(),
        }
    }

    /// `needs`: the jobs named, each once, with where each was named in the file, and
    /// those needed item by item (`each = true`). A job needing itself or a job not in
    /// the file is reported.
    fn needs(
        &mut self,
        raw: &[RawNeed],
        id: JobId,
        name: &str,
        names: &HashMap<String, JobId>,
    ) -> (Vec<JobId>, Vec<Range<usize>>, Vec<JobId>) {
        let mut needs = Vec::new();
        let mut needs_spans = Vec::new();
        let mut each = Vec::new();
        for need in raw {
            let job = &need.job;
            match names.get(job.get_ref()) {
                Some(&dep) if dep == id => {
                    self.error(format!("job `{name}` needs itself"), job.span())
                }
                Some(&dep) => {
                    if !needs.contains(&dep) {
                        needs.push(dep);
                        needs_spans.push(need.span.clone());
                    }
                    if need.each && !each.contains(&dep) {
                        each.push(dep);
                    }
                }
                None => {
                    let hint = suggest(job.get_ref(), names.keys().map(String::as_str))
                        .map(|s| format!("did you mean `{s}`?"));
                    let mut d = Diagnostic::at(
                        format!(
                            "job `{name}` needs `{}`, which is not a job in this file",
                            job.get_ref()
                        ),
                        job.span(),
                    );
                    if let Some(hint) = hint {
                        d = d.with_note(hint);
                    }
                    self.diagnostics.push(d);
                }
            }
        }
        (needs, needs_spans, each)
    }

    /// `when = "…"`: one of the three, or an error with a suggestion.
    fn when(&mut self, raw: Option<&Spanned<String>>) -> When {
        let Some(raw) = raw else {
            return When::Success;
        };
        if let Some(when) = When::parse(raw.get_ref()) {
            return when;
        }
        let name = raw.get_ref();
        let mut d = Diagnostic::at(
            format!("`when` must be \"success\", \"always\" or \"failure\", not {name:?}"),
            raw.span(),
        );
        d = match suggest(name, When::NAMES) {
            Some(s) => d.with_note(format!("did you mean \"{s}\"?")),
            None => d.with_note(
                "\"always\": after the needed jobs ended, however; \"failure\": only when one of them failed or was skipped",
            ),
        };
        self.diagnostics.push(d);
        When::Success
    }

    /// `[vars]`, with the `--set` values (`set`) in place of the file's. A name `--set`
    /// gives that `[vars]` does not declare is reported (at `[vars]`, or at the top of
    /// the file when there is none).
    fn vars(&mut self, raw: Option<RawVars>, set: &[(String, String)]) -> Vec<Var> {
        let (span, raw) = raw.unwrap_or((0..0, Vec::new()));
        let mut vars = Vec::new();
        for (name, value) in raw {
            let (at, name) = (name.span(), name.into_inner());
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                self.error(
                    format!("var name `{name}` may only hold ASCII letters, digits and `_` (it is written {{vars.NAME}})"),
                    at,
                );
                continue;
            }
            if value.get_ref().contains('\0') {
                self.error("a NUL byte cannot be passed to a process", value.span());
                continue;
            }
            let env = crate::jobfile::fields::var_env_name(&name);
            if let Some(message) = too_big(&name, value.get_ref()) {
                self.error(message, value.span());
                continue;
            }
            if let Some(other) = vars
                .iter()
                .find(|v: &&Var| crate::jobfile::fields::var_env_name(&v.name) == env)
            {
                self.error(
                    format!(
                        "vars `{}` and `{name}` would both be {env} in every task's environment; rename one",
                        other.name
                    ),
                    at,
                );
                continue;
            }
            vars.push(Var {
                name,
                value: value.into_inner(),
                set: false,
            });
        }
        for (name, value) in set {
            match vars.iter_mut().find(|v| &v.name == name) {
                Some(var) => {
                    if let Some(message) = too_big(name, value) {
                        self.error(format!("`--set {name}=…`: {message}"), span.clone());
                    }
                    var.value = value.clone();
                    var.set = true;
                }
                None => {
                    let known: Vec<&str> = vars.iter().map(|v| v.name.as_str()).collect();
                    let note = match (suggest(name, known.iter().copied()), known.is_empty()) {
                        (_, true) => format!("this file declares no vars; add `[vars]` with `{name} = \"…\"` to make it one"),
                        (Some(s), _) => format!("did you mean `--set {s}=…`? the vars are {}", known.join(", ")),
                        (None, _) => format!("the vars are {}", known.join(", ")),
                    };
                    let name = crate::diagnostic::printable(name, 60);
                    let message = format!("`--set {name}=…`: `{name}` is not declared in `[vars]`");
                    self.diagnostics
                        .push(Diagnostic::at(message, span.clone()).with_note(note));
                }
            }
        }
        vars
    }

    /// Checks the job's templates (and the top-level `env`) against its items: `{item}`
    /// on items with fields, `{item.F}` on plain items or naming a field they lack.
    fn check_fields(&mut self, job: &str, keys: Option<&[String]>, fan_out: bool) {
        for (template, span, text) in std::mem::take(&mut self.templates) {
            for TemplateError {
                offset,
                len,
                message,
            } in template.check_fields(keys, fan_out)
            {
                let at = super::typed::content_span(
                    self.source,
                    span.clone(),
                    &text,
                    offset..offset + len,
                );
                if self.reported.insert((at.clone(), message.clone())) {
                    self.error(format!("job `{job}`: {message}"), at);
                }
            }
        }
    }

    /// A value known at load time (an item of a list, the path of an items file): it may
    /// name vars and `{job}`, nothing that differs from task to task.
    fn fixed_template(&mut self, text: &str, span: Range<usize>, what: &str) -> Option<String> {
        let template = self
            .parse_template(text, span.clone())
            .filter(Template::is_sound)?;
        let per_task = template.per_task_all();
        for at in &per_task {
            let written = &text[at.clone()];
            let at = super::typed::content_span(self.source, span.clone(), text, at.clone());
            self.error(
                format!("`{written}` in {what}: only {{vars.NAME}} and {{job}} are known before tasks start"),
                at,
            );
        }
        per_task.is_empty().then(|| self.render_fixed(&template))
    }

    /// A template without per-task placeholders, rendered.
    fn render_fixed(&self, template: &Template) -> String {
        let values = Values {
            item: "",
            index: 0,
            job: &self.job_name,
            fields: &[],
        };
        template.render(&values, crate::template::Quoting::Raw)
    }

    fn template(&mut self, raw: &Spanned<String>) -> Option<Template> {
        self.template_at(raw.get_ref(), raw.span())
    }

    /// Parses a template of the job (or the top-level `env`) that appears in the file at
    /// `span` (a TOML string, quotes and all), kept to be checked against the job's items.
    fn template_at(&mut self, text: &str, span: Range<usize>) -> Option<Template> {
        self.template_kept(text, span).filter(Template::is_sound)
    }

    /// [`Checker::template_at`], also when a placeholder of it names nothing (reported
    /// already; it is inert in the template): for commands, whose other placeholders
    /// are still checked (quoting) in the same pass.
    fn template_kept(&mut self, text: &str, span: Range<usize>) -> Option<Template> {
        let template = self.parse_template(text, span.clone())?;
        self.templates
            .push((template.clone(), span, text.to_string()));
        Some(template)
    }

    /// Parses a template. A NUL byte is refused here because no process argument,
    /// environment value or path can hold one. Every unknown placeholder is reported,
    /// each error pointing at its placeholder; the template is still returned (the
    /// unknown ones inert, see [`Template::is_sound`]) so that a caller may check the
    /// rest of it in the same pass.
    fn parse_template(&mut self, text: &str, span: Range<usize>) -> Option<Template> {
        if text.contains('\0') {
            self.error("a NUL byte cannot be passed to a process", span);
            return None;
        }
        let (template, errors) = Template::parse_all(text, Scope { vars: &self.vars });
        for e in errors {
            let at = super::typed::content_span(
                self.source,
                span.clone(),
                text,
                e.offset..e.offset + e.len,
            );
            self.error(e.message, at);
        }
        Some(template)
    }

    /// A count (`pool`, `capacity`, `concurrency`): at least 1, and at most a million, far
    /// above any real need, so that a typo is refused at load time.
    fn positive(&mut self, raw: &Spanned<i64>, key: &str) -> Option<usize> {
        match *raw.get_ref() {
            n if (1..=1_000_000).contains(&n) => Some(n as usize),
            n => {
                self.error(format!("`{key}` must be at least 1 (got {n})"), raw.span());
                None
            }
        }
    }

    /// A duration, at most [`duration::CEILING`] (so that adding it to a clock reading
    /// cannot overflow).
    fn duration(&mut self, raw: &Spanned<String>, key: &str) -> Option<Duration> {
        match super::duration::parse(raw.get_ref(), super::duration::Bounds::ANY) {
            Ok(d) => Some(d),
            Err(e) => {
                let d = Diagnostic::at(format!("`{key}` {e}"), raw.span());
                self.diagnostics.push(match e {
                    super::duration::DurationError::NotADuration(_) => {
                        d.with_note(super::duration::FORM)
                    }
                    _ => d,
                });
                None
            }
        }
    }
}

fn default_shell() -> Vec<String> {
    vec!["sh".into(), "-c".into()]
}

/// "an integer", "a string": a TOML type with its article.
fn article(kind: &str) -> String {
    match kind.as_bytes().first() {
        Some(b'a' | b'e' | b'i' | b'o' | b'u') => format!("an {kind}"),
        _ => format!("a {kind}"),
    }
}

/// Why a var's value cannot be given to tasks as `RUNNER_VAR_<NAME>`: Linux takes at
/// most 128 KiB in one environment variable (`MAX_ARG_STRLEN`), name and `=` included.
fn too_big(name: &str, value: &str) -> Option<String> {
    let env = crate::jobfile::fields::var_env_name(name);
    (env.len() + 1 + value.len() >= 128 * 1024).then(|| {
        format!(
            "var `{name}` is {} bytes, more than Linux takes in one environment variable (128 KiB), and every task gets it as {env}",
            value.len()
        )
    })
}

/// How a job's output is a stream rather than a stored result, if it is: its stdout
/// feeds a queue, or it reads one on stdin.
fn streams(feeds: bool, stdin: &StdinSpec) -> Option<&'static str> {
    if feeds {
        Some("its stdout feeds a queue")
    } else if matches!(stdin, StdinSpec::Queue(_)) {
        Some("it reads a queue on stdin")
    } else {
        None
    }
}

/// Why a job's tasks are never cached, if they are not: `cache = false`, a stream
/// (`stream`: feeding or fed by a queue), or not both `sources` and `outputs` (`both`).
fn never_cached(cache: Option<bool>, both: bool, stream: Option<&str>) -> Option<&str> {
    if !cache.unwrap_or(true) {
        Some("it has `cache = false`")
    } else if stream.is_some() {
        stream
    } else if !both {
        Some("a job is cached only with both `sources` and `outputs`")
    } else {
        None
    }
}
