//! `sources` and `outputs`: arrays of glob patterns, each a template (placeholders are
//! allowed, and the values inserted are matched literally), each checked to parse as a
//! pattern once its placeholders are filled in.

use super::Checker;
use crate::diagnostic::Diagnostic;
use crate::jobfile::raw::Name;
use crate::template::{Quoting, Template, Values};
use toml::Spanned;

impl Checker<'_> {
    /// The patterns of `key` (`sources` or `outputs`), as templates.
    pub(super) fn patterns(
        &mut self,
        raw: Option<&Spanned<Vec<Name>>>,
        key: &str,
    ) -> Vec<Template> {
        let Some(raw) = raw else {
            return Vec::new();
        };
        if raw.get_ref().is_empty() {
            let what = if key == "sources" { "reads" } else { "writes" };
            self.error(
                format!("`{key}` is empty: list the files each task {what} (such as \"src/**/*.rs\"), or leave the key out"),
                raw.span(),
            );
        }
        let mut patterns = Vec::new();
        for text in raw.get_ref() {
            let Some(template) = self.template(text) else {
                continue;
            };
            // The values are matched literally: any stands for all of them here.
            let values = Values {
                item: "item",
                index: 0,
                job: &self.job_name,
                fields: &[],
            };
            let rendered = template.render(&values, Quoting::Glob);
            // A pattern made only of a field (`{item.name}`): known per task.
            let per_task_only = rendered.is_empty() && !template.is_empty();
            if per_task_only {
                patterns.push(template);
                continue;
            }
            if let Err(why) = crate::pattern::parse(&rendered) {
                self.error(
                    format!("`{key}`: {:?} is not a glob pattern: {why}", text.get_ref()),
                    text.span(),
                );
                continue;
            }
            patterns.push(template);
        }
        patterns
    }

    /// `sources`/`outputs` on the job `name`, whose output is a stream (`stream`: why):
    /// allowed, but such a job is never up to date, so they do nothing. A warning.
    pub(super) fn stream_files(
        &mut self,
        name: &str,
        stream: &str,
        sources: Option<&Spanned<Vec<Name>>>,
        outputs: Option<&Spanned<Vec<Name>>>,
    ) {
        let (key, span) = match (sources, outputs) {
            (Some(s), _) => ("sources", s.span()),
            (None, Some(o)) => ("outputs", o.span()),
            (None, None) => return,
        };
        let both = if sources.is_some() && outputs.is_some() {
            "`sources` and `outputs`"
        } else {
            &format!("`{key}`")
        };
        self.warnings.push(
            Diagnostic::at(
                format!(
                    "{both} of job `{name}` can never make it up to date: {stream}, so it always runs"
                ),
                span,
            )
            .with_note(
                "its output is a stream, not a stored result; the tasks of a job fed item by item from the queue can be up to date",
            ),
        );
    }
}
