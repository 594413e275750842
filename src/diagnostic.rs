//! Load-time error messages: a message, the byte range of the job file it is about, and
//! a note; rendered once, with file, line, column and a snippet of the offending line.
//!
//! Loading and validation collect these; only [`render`] turns them into text, through
//! `codespan-reporting` (the same layout rustc uses).

use codespan_reporting::diagnostic::{Diagnostic as Report, Label};
use codespan_reporting::files::SimpleFile;
use codespan_reporting::term::{self, termcolor};
use std::ops::Range;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub message: String,
    pub span: Option<Range<usize>>,
    pub note: Option<String>,
}

impl Diagnostic {
    pub fn new(message: impl Into<String>, span: Option<Range<usize>>) -> Diagnostic {
        Diagnostic {
            message: message.into(),
            span,
            note: None,
        }
    }

    pub fn at(message: impl Into<String>, span: Range<usize>) -> Diagnostic {
        Diagnostic::new(message, Some(span))
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Diagnostic {
        self.note = Some(note.into());
        self
    }
}

/// Renders every diagnostic against `source`, `name` being the file as the user gave it.
pub fn render(name: &str, source: &str, diagnostics: &[Diagnostic], color: bool) -> String {
    let file = SimpleFile::new(name, source);
    let config = term::Config::default();
    let mut buffer = if color {
        termcolor::Buffer::ansi()
    } else {
        termcolor::Buffer::no_color()
    };
    for diagnostic in diagnostics {
        let mut report = Report::error().with_message(&diagnostic.message);
        match &diagnostic.span {
            Some(span) => {
                let span = clamp(span.clone(), source.len());
                report = report.with_labels(vec![Label::primary((), span)]);
            }
            None => report = report.with_notes(vec![format!("in {name}")]),
        }
        if let Some(note) = &diagnostic.note {
            report.notes.push(note.clone());
        }
        if term::emit(&mut buffer, &config, &file, &report).is_err() {
            // Rendering can only fail on a span outside the file; say it plainly instead.
            return format!("error: {name}: {}\n", diagnostic.message);
        }
    }
    String::from_utf8_lossy(buffer.as_slice()).into_owned()
}

fn clamp(span: Range<usize>, len: usize) -> Range<usize> {
    let start = span.start.min(len);
    start..span.end.clamp(start, len)
}

/// "did you mean …" for `name` among `known`, when one is close.
pub fn suggest<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    known
        .into_iter()
        .map(|candidate| (strsim::damerau_levenshtein(name, candidate), candidate))
        .filter(|(distance, candidate)| {
            *distance <= 2.max(candidate.len() / 3) && *distance < candidate.len()
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendering_names_file_line_and_column_with_a_snippet() {
        let source = "pool = 2\n[jobs.a]\ncomand = \"x\"\n";
        let text = render(
            "f.toml",
            source,
            &[Diagnostic::at("unknown field `comand`", 18..24)],
            false,
        );
        assert!(text.contains("error: unknown field `comand`"), "{text}");
        assert!(text.contains("f.toml:3:1"), "{text}");
        assert!(text.contains("comand = \"x\""), "{text}");
    }

    #[test]
    fn suggestions_are_close_or_absent() {
        let known = ["command", "needs", "items"];
        assert_eq!(suggest("comand", known), Some("command"));
        assert_eq!(suggest("need", known), Some("needs"));
        assert_eq!(suggest("zzz", known), None);
    }
}
