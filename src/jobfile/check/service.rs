//! Services (`service = true`, `ready`, `ready_timeout`): the readiness check and its
//! values (a TCP address, an HTTP URL, a regular expression, a command), and the keys a
//! service cannot have. A service runs until nothing needing it is left, so keys about
//! how a task ends, is retried, skipped or stored make no sense on it; and its tasks
//! must be known before the run, so it reads no queue.

use super::{article, Checker};
use crate::diagnostic::{suggest, Diagnostic};
use crate::jobfile::raw::RawJob;
use crate::jobfile::typed::Value;
use crate::jobfile::{Job, LinePattern, Ready, READY_TIMEOUT};
use std::ops::Range;
use std::time::Duration;
use toml::de::DeValue;

/// The keys of a `ready` table: exactly one of them.
pub const READY_KEYS: [&str; 4] = ["tcp", "http", "line", "command"];

const READY_FORM: &str = "write ready = { tcp = \"127.0.0.1:6379\" }, { http = \"http://127.0.0.1:8000/\" }, { line = \"listening\" } or { command = \"…\" }";

/// What a job says about being a service, checked.
pub(super) struct Service {
    pub service: bool,
    pub ready: Option<Ready>,
    pub ready_timeout: Duration,
}

impl Checker<'_> {
    /// `service`, `ready` and `ready_timeout` of job `name`; `shell` runs a string
    /// `command` check.
    pub(super) fn service(&mut self, name: &str, job: &RawJob<'_>, shell: &[String]) -> Service {
        let service = job.service.as_ref().is_some_and(|s| *s.get_ref());
        let ready = job.ready.as_ref().and_then(|raw| {
            if !service {
                self.diagnostics.push(
                    Diagnostic::at(
                        format!("job `{name}` has `ready` but is not a service"),
                        raw.span(),
                    )
                    .with_note("add `service = true`, or remove `ready`"),
                );
            }
            self.ready(raw, shell)
        });
        let ready_timeout = match &job.ready_timeout {
            Some(raw) => {
                if !service {
                    self.diagnostics.push(
                        Diagnostic::at(
                            format!("job `{name}` has `ready_timeout` but is not a service"),
                            raw.span(),
                        )
                        .with_note("add `service = true`, or remove `ready_timeout`"),
                    );
                }
                match self.duration(raw, "ready_timeout") {
                    Some(d) if d.is_zero() => {
                        self.error("`ready_timeout` must be longer than 0", raw.span());
                        READY_TIMEOUT
                    }
                    Some(d) => d,
                    None => READY_TIMEOUT,
                }
            }
            None => READY_TIMEOUT,
        };
        if let (true, Some(at)) = (service, job.service.as_ref().map(|s| s.span())) {
            self.not_with_service(name, job, at);
        }
        Service {
            service,
            ready,
            ready_timeout,
        }
    }

    /// `ready = { tcp | http | line | command = … }`.
    fn ready(&mut self, raw: &Value<'_>, shell: &[String]) -> Option<Ready> {
        let span = raw.span();
        let DeValue::Table(table) = raw.get_ref() else {
            self.diagnostics.push(
                Diagnostic::at(
                    format!(
                        "`ready` must be a table, not {}",
                        article(raw.get_ref().type_str())
                    ),
                    span,
                )
                .with_note(READY_FORM),
            );
            return None;
        };
        let mut found = Vec::new();
        for (key, value) in table {
            let k = key.get_ref();
            if READY_KEYS.contains(&&**k) {
                found.push((k.to_string(), value));
                continue;
            }
            let d = Diagnostic::at(format!("unknown key `{k}` in `ready`"), key.span());
            self.diagnostics
                .push(match suggest(k, READY_KEYS.iter().copied()) {
                    Some(s) => d.with_note(format!("did you mean `{s}`?")),
                    None => d.with_note(format!("the keys here are: {}", READY_KEYS.join(", "))),
                });
        }
        if found.len() != 1 {
            if found.len() > 1 {
                self.diagnostics.push(
                    Diagnostic::at("`ready` gives more than one check", span)
                        .with_note("give one of `tcp`, `http`, `line` or `command`"),
                );
            } else if table.is_empty() {
                self.diagnostics
                    .push(Diagnostic::at("`ready` is empty", span).with_note(READY_FORM));
            }
            return None;
        }
        let (key, value) = found.pop().expect("one check");
        if key == "command" {
            let before = self.diagnostics.len();
            let command = self.command(value, shell.to_vec());
            return (self.diagnostics.len() == before).then_some(Ready::Command(command));
        }
        let DeValue::String(text) = value.get_ref() else {
            let what = match key.as_str() {
                "tcp" => "an address \"HOST:PORT\"",
                "http" => "a URL",
                _ => "a regular expression",
            };
            self.error(
                format!(
                    "`ready.{key}` must be {what} (a string), not {}",
                    article(value.get_ref().type_str())
                ),
                value.span(),
            );
            return None;
        };
        match key.as_str() {
            "tcp" => self
                .fixed_ok(
                    text,
                    value.span(),
                    "tcp",
                    tcp_address,
                    "write \"HOST:PORT\", e.g. \"127.0.0.1:6379\"",
                )
                .map(Ready::Tcp),
            "http" => self
                .fixed_ok(
                    text,
                    value.span(),
                    "http",
                    http_url,
                    "write a URL such as \"http://127.0.0.1:8000/health\"",
                )
                .map(Ready::Http),
            _ => match regex_automata::meta::Regex::new(text) {
                Ok(regex) => Some(Ready::Line(LinePattern {
                    text: text.to_string(),
                    regex,
                })),
                Err(e) => {
                    self.diagnostics.push(
                        Diagnostic::at(
                            format!("`ready.line` is not a regular expression: {e}"),
                            value.span(),
                        )
                        .with_note(
                            "the syntax is Rust's regex crate's: escape `(`, `[`, `{`, `.` \
                             and `*` with `\\` to match them as they are",
                        ),
                    );
                    None
                }
            },
        }
    }

    /// A `tcp` or `http` value: a template; when known before the run (no per-task
    /// placeholder), checked now with `valid`.
    fn fixed_ok(
        &mut self,
        text: &str,
        span: Range<usize>,
        key: &str,
        valid: fn(&str) -> Result<(), AddressError>,
        how: &str,
    ) -> Option<crate::template::Template> {
        let template = self.template_at(text, span.clone())?;
        if template.per_task().is_none() {
            if let Err(e) = valid(&self.render_fixed(&template)) {
                self.diagnostics.push(
                    Diagnostic::at(format!("`ready.{key}`: {e}"), span).with_note(how.to_string()),
                );
                return None;
            }
        }
        Some(template)
    }

    /// The keys that make no sense on a service, each said with why.
    fn not_with_service(&mut self, name: &str, job: &RawJob<'_>, service: Range<usize>) {
        let mut refuse = |key: &str, why: &str, at: Option<Range<usize>>| {
            let at = at.unwrap_or_else(|| service.clone());
            self.diagnostics.push(
                Diagnostic::at(
                    format!("job `{name}` is a service and cannot have `{key}`"),
                    at,
                )
                .with_note(why.to_string()),
            );
        };
        let span = |v: &Option<Value<'_>>| v.as_ref().map(|v| v.span());
        if let Some(to) = &job.to {
            refuse("to", "a service feeds no queue: its output is shown like any task's; give the queue to a job that needs the service", Some(to.span()));
        }
        if job.stdin.as_ref().is_some_and(is_queue) {
            refuse(
                "stdin",
                "a service reads no queue: its tasks must be known before the run",
                span(&job.stdin),
            );
        }
        if job.items.as_ref().is_some_and(is_queue) {
            refuse("items", "a service's items must be known before the run: a list, a range, a matrix or a file", span(&job.items));
        }
        if let Some(r) = &job.retries {
            refuse("retries", "a service that fails is not started again: the jobs using it may have seen it fail", Some(r.span()));
        }
        if let Some(t) = &job.timeout {
            refuse("timeout", "a service runs until nothing needing it is left; `ready_timeout` bounds how long it may take to be ready", Some(t.span()));
        }
        if let Some(c) = &job.concurrency {
            refuse("concurrency", "every task of a service runs at once (the jobs needing it wait for all of them); use items for one service each", Some(c.span()));
        }
        if let Some((first, _)) = job.uses.first() {
            refuse("uses", "a service holds what it uses until it is stopped, which could keep the jobs needing it from ever starting", Some(first.span()));
        }
        if let Some(s) = &job.sources {
            refuse(
                "sources",
                "a service is never up to date: it runs whenever a job needing it runs",
                Some(s.span()),
            );
        }
        if let Some(o) = &job.outputs {
            refuse(
                "outputs",
                "a service is never up to date: it runs whenever a job needing it runs",
                Some(o.span()),
            );
        }
        if job.cache.is_some() {
            refuse(
                "cache",
                "a service is never stored in nor restored from the results cache",
                None,
            );
        }
        if let Some(c) = &job.cache_env {
            refuse(
                "cache_env",
                "a service is never stored in nor restored from the results cache",
                Some(c.span()),
            );
        }
    }

    /// Rules across jobs: no job needs a service item by item (its tasks wait for the
    /// whole service to be ready).
    pub(super) fn service_needs(&mut self, jobs: &[Job]) {
        for job in jobs {
            for (k, &dep) in job.needs.iter().enumerate() {
                if !job.each.contains(&dep) || !jobs.get(dep).is_some_and(|d| d.service) {
                    continue;
                }
                let at = job.needs_spans.get(k).cloned().unwrap_or(job.span.clone());
                self.diagnostics.push(
                    Diagnostic::at(
                        format!(
                            "job `{}` needs service `{}` item by item",
                            job.name, jobs[dep].name
                        ),
                        at,
                    )
                    .with_note(format!(
                        "a service is needed whole: write needs = [\"{}\"]; its tasks start once every one of its services is ready",
                        jobs[dep].name
                    )),
                );
            }
        }
    }
}

fn is_queue(value: &Value<'_>) -> bool {
    matches!(value.get_ref(), DeValue::Table(t) if t.keys().any(|k| k.get_ref() == "queue"))
}

/// Why a `tcp` or `http` value is not an address the check can use.
#[derive(Debug, thiserror::Error)]
pub enum AddressError {
    #[error("{0:?} has no port")]
    NoPort(String),
    #[error("{0:?} has no host")]
    NoHost(String),
    #[error("{0:?} is not a port (1 to 65535)")]
    BadPort(String),
    #[error("{0:?} is not an http:// or https:// URL (its scheme is `{1}`)")]
    Scheme(String, String),
    #[error("{0:?} is not a URL ({1})")]
    NotUrl(String, url::ParseError),
}

/// Why `text` is not `HOST:PORT`, if it is not.
pub fn tcp_address(text: &str) -> Result<(), AddressError> {
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(AddressError::NoPort(text.to_string()));
    };
    if host.is_empty() {
        return Err(AddressError::NoHost(text.to_string()));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(AddressError::BadPort(port.to_string())),
    }
}

/// Why `text` is not an `http://` or `https://` URL, if it is not.
pub fn http_url(text: &str) -> Result<(), AddressError> {
    match url::Url::parse(text) {
        Ok(url) if !matches!(url.scheme(), "http" | "https") => Err(AddressError::Scheme(
            text.to_string(),
            url.scheme().to_string(),
        )),
        Ok(url) if url.host().is_none() => Err(AddressError::NoHost(text.to_string())),
        Ok(_) => Ok(()),
        Err(e) => Err(AddressError::NotUrl(text.to_string(), e)),
    }
}
