//! How a task's process is run: its environment (`env`, also the top-level one), its
//! working folder (`cwd`), its time limit (`timeout`), how often it is retried
//! (`retries`) and which exit codes count as success (`success_codes`). What it runs is
//! checked in `inputs`.

use super::Checker;
use crate::jobfile::raw::Name;
use crate::template::{Placeholder, Template};
use std::time::Duration;
use toml::Spanned;

/// The variables the runner gives every task (and `RUNNER_ITEM_<KEY>` for fields,
/// `RUNNER_VAR_<NAME>` for each var).
const RUNNER_SETS: [&str; 6] = [
    "RUNNER_JOB",
    "RUNNER_ITEM",
    "RUNNER_INDEX",
    "RUNNER_ATTEMPT",
    "RUNNER_SLOT",
    "RUNNER_RUN_ID",
];

impl Checker<'_> {
    /// `env` (top level or a job's): names a process can be given, values as templates.
    pub(super) fn env(&mut self, raw: Vec<(Name, Name)>) -> Vec<(String, Template)> {
        let mut env = Vec::new();
        for (name, value) in raw {
            let span = name.span();
            let name = name.into_inner();
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                self.error(
                    format!("`{name}` is not an environment variable name"),
                    span,
                );
                continue;
            }
            let a_var = self
                .vars
                .iter()
                .any(|(var, _)| crate::jobfile::fields::var_env_name(var) == name);
            if RUNNER_SETS.contains(&name.as_str()) || name.starts_with("RUNNER_ITEM_") || a_var {
                self.error(
                    format!("`{name}` is set by the runner for every task (it would hide this value); choose another name"),
                    span,
                );
                continue;
            }
            if let Some(t) = self.template(&value) {
                env.push((name, t));
            }
        }
        env
    }

    /// `cwd`: a template. Without placeholders it names one folder, which must exist
    /// now; with them, each task's folder is only known when the task starts.
    pub(super) fn cwd(&mut self, raw: Option<&Spanned<String>>) -> Option<Template> {
        let raw = raw?;
        let cwd = self.template(raw)?;
        if cwd.is_empty() {
            self.error("`cwd` is empty", raw.span());
        } else if cwd.per_task().is_none() && !cwd.uses(&Placeholder::Job) {
            let dir = self.dir.join(self.render_fixed(&cwd));
            if !dir.is_dir() {
                self.error(
                    format!("`cwd` {} is not a folder", dir.display()),
                    raw.span(),
                );
            }
        }
        Some(cwd)
    }

    /// `timeout`: a duration longer than 0 (a zero timeout would kill every attempt).
    pub(super) fn timeout(&mut self, raw: Option<&Spanned<String>>) -> Option<Duration> {
        let raw = raw?;
        let timeout = self.duration(raw, "timeout")?;
        if timeout.is_zero() {
            self.error("`timeout` must be longer than 0", raw.span());
        }
        Some(timeout)
    }

    /// `retries`: bounded, so that a typo cannot retry a failing task for days.
    pub(super) fn retries(&mut self, raw: Option<&Spanned<i64>>) -> u32 {
        match raw {
            Some(r) if *r.get_ref() < 0 || *r.get_ref() > 1000 => {
                self.error("`retries` must be between 0 and 1000", r.span());
                0
            }
            Some(r) => *r.get_ref() as u32,
            None => 0,
        }
    }

    /// `success_codes`: exit statuses, which are 0 to 255; an empty list could never
    /// succeed.
    pub(super) fn success_codes(&mut self, raw: Option<&Spanned<Vec<Spanned<i64>>>>) -> Vec<i32> {
        let Some(codes) = raw else {
            return vec![0];
        };
        if codes.get_ref().is_empty() {
            self.error(
                "`success_codes` is empty: no exit code could succeed",
                codes.span(),
            );
        }
        codes
            .get_ref()
            .iter()
            .filter_map(|c| match i32::try_from(*c.get_ref()) {
                Ok(v) if (0..=255).contains(&v) => Some(v),
                _ => {
                    self.error("an exit code is between 0 and 255", c.span());
                    None
                }
            })
            .collect()
    }
}
