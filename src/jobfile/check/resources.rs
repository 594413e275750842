//! `[resources]`, `[rates]` and each job's `uses` and `rate`: amounts and sizes, rates,
//! names that must exist (with a suggestion), and uses that could never fit.

use super::super::raw::{Amount, Name};
use super::super::resources::{parse_rate, Rate, RateError, Resource};
use super::super::{valid_name, RateId, ResourceId};
use super::Checker;
use crate::diagnostic::{suggest, Diagnostic};
use toml::Spanned;

const SIZE_NOTE: &str =
    "write an integer ≥ 1, or a size such as \"8G\" or \"512M\" (K, M, G, T are powers of 1024)";
const RATE_NOTE: &str =
    "write N/s, N/m or N/h: \"5/s\" is at most 5 starts a second, spread evenly";

impl Checker<'_> {
    /// A job's `uses` and `rate`, checked against `[resources]` and `[rates]`.
    pub(super) fn holds(
        &mut self,
        job: &str,
        uses: Vec<(Name, Spanned<Amount>)>,
        rate: Option<&Name>,
        stream: Option<&str>,
    ) -> (Vec<(ResourceId, u64)>, Option<RateId>) {
        let resources = std::mem::take(&mut self.resources);
        let uses = self.uses(job, uses, &resources, stream);
        self.resources = resources;
        let mut rates = std::mem::take(&mut self.rates);
        let rate = self.job_rate(job, rate, &mut rates, self.named_rates);
        self.rates = rates;
        (uses, rate)
    }

    /// An amount: an integer ≥ 1, or a size of at least one byte. `what` names the key.
    fn amount(&mut self, raw: &Spanned<Amount>, what: &str) -> Option<(u64, bool)> {
        match raw.get_ref() {
            Amount::Count(n) if *n >= 1 => Some((*n as u64, false)),
            Amount::Count(n) => {
                let d = Diagnostic::at(format!("{what} must be at least 1 (got {n})"), raw.span());
                self.diagnostics.push(d.with_note(SIZE_NOTE));
                None
            }
            Amount::Size(text) => match crate::size::parse(text).ok() {
                Some(n) if n >= 1 => Some((n, true)),
                _ => {
                    let d = Diagnostic::at(format!("{what}: {text:?} is not a size"), raw.span());
                    self.diagnostics.push(d.with_note(SIZE_NOTE));
                    None
                }
            },
        }
    }

    /// `[resources]`: each name with what one machine has of it.
    pub(super) fn resources(&mut self, raw: Vec<(Name, Spanned<Amount>)>) -> Vec<Resource> {
        let mut resources = Vec::new();
        for (name, amount) in raw {
            let (at, name) = (name.span(), name.into_inner());
            if !valid_name(&name) {
                self.error(
                    format!("resource name `{name}` may only hold letters, digits, `_` and `-`"),
                    at,
                );
                continue;
            }
            let Some((capacity, size)) = self.amount(&amount, &format!("resources.{name}")) else {
                continue;
            };
            resources.push(Resource {
                name,
                capacity,
                size,
            });
        }
        resources
    }

    /// `[rates]`: named rates that jobs share.
    pub(super) fn rates(&mut self, raw: Vec<(Name, Name)>) -> Vec<Rate> {
        let mut rates = Vec::new();
        for (name, text) in raw {
            let (at, name) = (name.span(), name.into_inner());
            if !valid_name(&name) {
                self.error(
                    format!("rate name `{name}` may only hold letters, digits, `_` and `-`"),
                    at,
                );
                continue;
            }
            if let Some(rate) = self.rate_value(&text, &format!("rates.{name}"), &name) {
                rates.push(rate);
            }
        }
        rates
    }

    fn rate_value(&mut self, text: &Name, what: &str, name: &str) -> Option<Rate> {
        match parse_rate(text.get_ref()) {
            Ok((count, period)) => Some(Rate {
                name: name.to_string(),
                count,
                period,
                text: text.get_ref().trim().to_string(),
            }),
            Err(e) => {
                let d = Diagnostic::at(format!("{what}: {:?} {e}", text.get_ref()), text.span());
                self.diagnostics.push(match e {
                    RateError::Form | RateError::Zero => d.with_note(RATE_NOTE),
                    RateError::TooFast => d,
                });
                None
            }
        }
    }

    /// A job's `uses`: known resources, each amount at most what there is. `holds`:
    /// why the job may not hold resources at all (it feeds a queue or reads one on
    /// stdin, and could then wait, holding them, on a task that needs them).
    fn uses(
        &mut self,
        job: &str,
        raw: Vec<(Name, Spanned<Amount>)>,
        resources: &[Resource],
        holds: Option<&str>,
    ) -> Vec<(ResourceId, u64)> {
        let mut uses: Vec<(ResourceId, u64)> = Vec::new();
        if let (Some(why), Some((name, _))) = (holds, raw.first()) {
            self.diagnostics.push(
                Diagnostic::at(
                    format!("job `{job}` cannot have `uses`: {why}"),
                    name.span(),
                )
                .with_note("a task waiting on its queue would hold the resources the other side may need: put `uses` on a job that runs on its own"),
            );
            return uses;
        }
        for (name, amount) in raw {
            let Some(id) = resources.iter().position(|r| &r.name == name.get_ref()) else {
                let mut d = Diagnostic::at(
                    format!(
                        "job `{job}` uses `{}`, which is not in [resources]",
                        name.get_ref()
                    ),
                    name.span(),
                );
                d = match suggest(name.get_ref(), resources.iter().map(|r| r.name.as_str())) {
                    Some(s) => d.with_note(format!("did you mean `{s}`?")),
                    None => d.with_note(format!("declare it: [resources]\n{} = 1", name.get_ref())),
                };
                self.diagnostics.push(d);
                continue;
            };
            let what = format!("jobs.{job}.uses.{}", name.get_ref());
            let Some((n, _)) = self.amount(&amount, &what) else {
                continue;
            };
            let resource = &resources[id];
            if n > resource.capacity {
                self.diagnostics.push(
                    Diagnostic::at(
                        format!(
                            "job `{job}` uses {} of `{}`, but there is only {}: its tasks could never start",
                            resource.amount(n),
                            resource.name,
                            resource.amount(resource.capacity)
                        ),
                        amount.span(),
                    )
                    .with_note(format!(
                        "lower the use, or raise `{}` in [resources]",
                        resource.name
                    )),
                );
                continue;
            }
            uses.push((id, n));
        }
        uses
    }

    /// A job's `rate`: its own (`"5/s"`, added to `rates` under the job's name) or the
    /// name of one of `[rates]`.
    fn job_rate(
        &mut self,
        job: &str,
        raw: Option<&Name>,
        rates: &mut Vec<Rate>,
        named: usize,
    ) -> Option<RateId> {
        let raw = raw?;
        let text = raw.get_ref();
        if text.contains('/') {
            let rate = self.rate_value(raw, &format!("jobs.{job}.rate"), job)?;
            rates.push(rate);
            return Some(rates.len() - 1);
        }
        if let Some(id) = rates[..named].iter().position(|r| &r.name == text) {
            return Some(id);
        }
        let mut d = Diagnostic::at(
            format!("job `{job}`: rate `{text}` is not in [rates] and is not a rate"),
            raw.span(),
        );
        d = match suggest(text, rates[..named].iter().map(|r| r.name.as_str())) {
            Some(s) => d.with_note(format!("did you mean `{s}`?")),
            None => d.with_note(RATE_NOTE),
        };
        self.diagnostics.push(d);
        None
    }
}
