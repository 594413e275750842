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
    render_as(name, source, diagnostics, color, false)
}

/// Renders every diagnostic as a warning (`warning: …`): something the file says that
/// is allowed but cannot do what it seems to.
pub fn render_warnings(
    name: &str,
    source: &str,
    diagnostics: &[Diagnostic],
    color: bool,
) -> String {
    render_as(name, source, diagnostics, color, true)
}

fn render_as(
    name: &str,
    source: &str,
    diagnostics: &[Diagnostic],
    color: bool,
    warning: bool,
) -> String {
    let severity = if warning { "warning" } else { "error" };
    let file = SimpleFile::new(name, source);
    let config = term::Config::default();
    let mut buffer = if color {
        termcolor::Buffer::ansi()
    } else {
        termcolor::Buffer::no_color()
    };
    for diagnostic in diagnostics {
        if let Some(text) = diagnostic.span.as_ref().and_then(|span| {
            long_line(
                name,
                source,
                diagnostic,
                clamp(span.clone(), source.len()),
                severity,
            )
        }) {
            let _ = std::io::Write::write_all(&mut buffer, text.as_bytes());
            continue;
        }
        let report = if warning {
            Report::warning()
        } else {
            Report::error()
        };
        let mut report = report.with_message(&diagnostic.message);
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
            return format!("{severity}: {name}: {}\n", diagnostic.message);
        }
    }
    String::from_utf8_lossy(buffer.as_slice()).into_owned()
}

/// The most characters of a source line a message shows; a longer line (a 400 KB line
/// of nested arrays) is cut to this much around the place, with `…` where it was cut.
const LINE_SHOWN: usize = 120;

/// The message about a place on a line longer than [`LINE_SHOWN`], in the same layout
/// as codespan's, showing only the part of the line around the place.
fn long_line(
    name: &str,
    source: &str,
    d: &Diagnostic,
    span: Range<usize>,
    severity: &str,
) -> Option<String> {
    let line_start = source[..span.start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = source[span.start..]
        .find('\n')
        .map_or(source.len(), |i| span.start + i);
    let line = &source[line_start..line_end];
    if line.chars().count() <= LINE_SHOWN {
        return None;
    }
    let line_no = source[..line_start].matches('\n').count() + 1;
    let column = source[line_start..span.start].chars().count() + 1;
    // The window: from up to a third of it before the place, LINE_SHOWN characters long.
    let chars: Vec<char> = line.chars().collect();
    let from = (column - 1).saturating_sub(LINE_SHOWN / 3);
    let to = (from + LINE_SHOWN).min(chars.len());
    let marked = source[span.start..span.end.min(line_end)]
        .chars()
        .count()
        .max(1);
    let mut shown: String = chars[from..to].iter().collect();
    let mut caret_at = column - 1 - from;
    if from > 0 {
        shown.insert(0, '…');
        caret_at += 1;
    }
    if to < chars.len() {
        shown.push('…');
    }
    let carets = "^".repeat(marked.min(to.saturating_sub(column - 1)).max(1));
    let gutter = " ".repeat(line_no.to_string().len());
    let mut text = format!(
        "{severity}: {}\n{gutter} ┌─ {name}:{line_no}:{column}\n{gutter} │\n{line_no} │ {shown}\n{gutter} │ {}{carets}\n",
        d.message,
        " ".repeat(caret_at)
    );
    text.push_str(&format!("{gutter} │\n"));
    if let Some(note) = &d.note {
        text.push_str(&format!("{gutter} = {note}\n"));
    }
    text.push('\n');
    Some(text)
}

fn clamp(span: Range<usize>, len: usize) -> Range<usize> {
    let start = span.start.min(len);
    start..span.end.clamp(start, len)
}

/// Text (from a task, a file, the command line) made safe for one line of a terminal: control characters (escape
/// sequences, carriage returns) shown as `?`, cut to `max` characters with `…`.
pub fn printable(text: &str, max: usize) -> String {
    let mut shown: String = text
        .chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.chars().nth(max).is_some() {
        shown.push('…');
    }
    shown
}

/// "did you mean …" for `name` among `known`, when one is close.
pub fn suggest<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let known: Vec<&'a str> = known.into_iter().collect();
    // A slip of case is the likeliest of all.
    if let Some(same) = known.iter().find(|k| k.eq_ignore_ascii_case(name)) {
        return Some(same);
    }
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
    fn a_long_line_is_cut_around_the_place() {
        let source = format!("x = {}{}\n[jobs.a]\n", "[".repeat(300), "]".repeat(300));
        let at = 4 + 80;
        let text = render(
            "f.toml",
            &source,
            &[Diagnostic::at("too deep", at..at + 1)],
            false,
        );
        assert!(text.contains("f.toml:1:85"), "{text}");
        let snippet = text.lines().find(|l| l.starts_with("1 │")).unwrap();
        assert!(snippet.chars().count() < 140, "{text}");
        assert!(
            snippet.starts_with("1 │ …") && snippet.ends_with('…'),
            "{text}"
        );
        let caret = text.lines().find(|l| l.contains('^')).unwrap();
        // The caret is under the 85th character of the line.
        let offset = caret.find('^').unwrap() - snippet.find('…').unwrap();
        assert_eq!(
            snippet
                .chars()
                .nth(snippet[..snippet.find('…').unwrap()].chars().count() + offset),
            Some('[')
        );
        assert!(text.len() < 600, "{text}");
    }

    #[test]
    fn suggestions_are_close_or_absent() {
        let known = ["command", "needs", "items"];
        assert_eq!(suggest("comand", known), Some("command"));
        assert_eq!(suggest("need", known), Some("needs"));
        assert_eq!(suggest("zzz", known), None);
    }
}
