//! `[secrets]` and each job's `secrets`: names that can be environment variables, one
//! place for each value, and jobs naming only declared secrets (with a suggestion).
//! Nothing is resolved here: a secret's value is read when a run starts
//! (`crate::secrets::resolve`), only for the jobs selected.

use super::super::raw::{Name, RawSecret, SecretCommand};
use super::super::{SecretDef, SecretSource};
use super::Checker;
use crate::diagnostic::{suggest, Diagnostic};
use std::collections::HashSet;
use toml::Spanned;

/// An environment variable's name: a letter or `_`, then letters, digits and `_`.
pub fn env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl Checker<'_> {
    /// The top-level `[secrets]`; `shell` runs a command written as a string.
    pub(super) fn secrets(
        &mut self,
        raw: Vec<(Name, Option<RawSecret>)>,
        shell: &[String],
    ) -> Vec<SecretDef> {
        let mut secrets = Vec::new();
        for (name, secret) in raw {
            let span = name.span();
            let name = name.into_inner();
            if !env_name(&name) {
                self.error(
                    format!(
                        "secret name `{name}` must be an environment variable's name: letters, digits and `_`, not starting with a digit"
                    ),
                    span,
                );
            }
            let source = match secret {
                Some(RawSecret::Env(var)) => {
                    if !env_name(var.get_ref()) {
                        self.error(
                            format!(
                                "secret `{name}`: `{}` is not an environment variable's name",
                                var.get_ref()
                            ),
                            var.span(),
                        );
                    }
                    SecretSource::Env(var.into_inner())
                }
                Some(RawSecret::File(path)) => {
                    if path.get_ref().is_empty() {
                        self.error(
                            format!("secret `{name}`: the file's path is empty"),
                            path.span(),
                        );
                    }
                    SecretSource::File(self.dir.join(path.get_ref()))
                }
                Some(RawSecret::Command(command)) => match command.into_inner() {
                    SecretCommand::Shell(script) => {
                        let mut argv = shell.to_vec();
                        argv.push(script);
                        SecretSource::Command(argv)
                    }
                    SecretCommand::Argv(argv) => SecretSource::Command(argv),
                },
                // Reported by `raw`.
                None => continue,
            };
            secrets.push(SecretDef { name, source });
        }
        secrets
    }

    /// A job's `secrets`: each a name of `[secrets]`, once.
    pub(super) fn job_secrets(
        &mut self,
        raw: Option<&Spanned<Vec<Name>>>,
        declared: &[String],
    ) -> Vec<String> {
        let Some(raw) = raw else {
            return Vec::new();
        };
        let mut seen = HashSet::new();
        let mut names = Vec::new();
        for name in raw.get_ref() {
            let n = name.get_ref();
            if !declared.contains(n) {
                let mut d = Diagnostic::at(format!("unknown secret `{n}`"), name.span());
                d = match suggest(n, declared.iter().map(String::as_str)) {
                    Some(s) => d.with_note(format!("did you mean `{s}`?")),
                    None if declared.is_empty() => {
                        d.with_note("declare it: [secrets]\nNAME = { env = \"VAR\" }")
                    }
                    None => d.with_note(format!("the secrets are: {}", declared.join(", "))),
                };
                self.diagnostics.push(d);
                continue;
            }
            if !seen.insert(n.clone()) {
                self.error(format!("secret `{n}` is named twice"), name.span());
                continue;
            }
            names.push(n.clone());
        }
        names
    }
}
