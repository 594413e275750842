//! Placeholders: parsing `{item}`, `{index}` and `{job}` out of a string once, at load
//! time, and rendering them per task.
//!
//! This module knows the placeholder grammar of the job-file contract, POSIX shell
//! quoting, and which shells that quoting is right for ([`is_posix_shell`]). It does no
//! I/O. Where a rendered string goes (argv, a shell string, an environment value) is the
//! caller's business; the caller says which with [`Quoting`].
//!
//! Longer than 400 lines because of its unit tests; the code itself is about 260.

use crate::shell;
use std::ops::Range;

/// A placeholder a template may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholder {
    Item,
    Index,
    Job,
}

impl Placeholder {
    pub const NAMES: [&'static str; 3] = ["item", "index", "job"];

    fn from_name(name: &str) -> Option<Placeholder> {
        match name {
            "item" => Some(Placeholder::Item),
            "index" => Some(Placeholder::Index),
            "job" => Some(Placeholder::Job),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Slot(Placeholder),
}

/// A string with placeholders, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    segments: Vec<Segment>,
    /// Where each placeholder (each `Segment::Slot`, in order) is in the source string,
    /// so that a load error can point at the placeholder itself.
    slots: Vec<Range<usize>>,
}

/// A placeholder error, with the byte offset (in the template's source) where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    pub offset: usize,
    pub len: usize,
    pub message: String,
}

/// The values a template is rendered with: one task's.
#[derive(Debug, Clone, Copy)]
pub struct Values<'a> {
    pub item: &'a str,
    pub index: u64,
    pub job: &'a str,
}

/// How a placeholder's value is inserted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quoting {
    /// As is (argv arguments, environment values, stdin, cwd).
    Raw,
    /// Quoted for a POSIX shell, left bare where it needs no quoting.
    Shell,
}

impl Template {
    /// Parses `source`. `{{` and `}}` are literal braces, `${…}` is left to the shell,
    /// `{name}` with `name` made of letters, digits and `_` is a placeholder (an unknown
    /// name is an error), and any other brace is literal.
    pub fn parse(source: &str) -> Result<Template, TemplateError> {
        let bytes = source.as_bytes();
        let mut segments = Vec::new();
        let mut slots = Vec::new();
        let mut literal = String::new();
        let mut i = 0;
        while i < bytes.len() {
            let rest = &source[i..];
            if rest.starts_with("{{") || rest.starts_with("}}") {
                literal.push(bytes[i] as char);
                i += 2;
            } else if rest.starts_with("${") {
                // The shell's own expansion: copied through its closing brace.
                let end = rest.find('}').map(|e| e + 1).unwrap_or(rest.len());
                literal.push_str(&rest[..end]);
                i += end;
            } else if bytes[i] == b'{' {
                let name_len = rest[1..]
                    .bytes()
                    .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
                    .count();
                if name_len > 0 && rest.as_bytes().get(1 + name_len) == Some(&b'}') {
                    let name = &rest[1..1 + name_len];
                    let Some(placeholder) = Placeholder::from_name(name) else {
                        return Err(unknown_placeholder(name, i));
                    };
                    if !literal.is_empty() {
                        segments.push(Segment::Literal(std::mem::take(&mut literal)));
                    }
                    segments.push(Segment::Slot(placeholder));
                    slots.push(i..i + name_len + 2);
                    i += name_len + 2;
                } else {
                    literal.push('{');
                    i += 1;
                }
            } else {
                let ch = rest.chars().next().expect("not at the end");
                literal.push(ch);
                i += ch.len_utf8();
            }
        }
        if !literal.is_empty() {
            segments.push(Segment::Literal(literal));
        }
        Ok(Template { segments, slots })
    }

    /// A template that is only this text.
    pub fn literal(text: &str) -> Template {
        Template {
            segments: vec![Segment::Literal(text.to_string())],
            slots: Vec::new(),
        }
    }

    pub fn uses(&self, placeholder: Placeholder) -> bool {
        self.segments.contains(&Segment::Slot(placeholder))
    }

    /// Where the first use of `placeholder` is in the source string (a byte range).
    pub fn first_use(&self, placeholder: Placeholder) -> Option<Range<usize>> {
        self.slots_with_ranges()
            .find(|(p, _)| *p == placeholder)
            .map(|(_, range)| range)
    }

    /// Each placeholder used, with its byte range in the source string.
    fn slots_with_ranges(&self) -> impl Iterator<Item = (Placeholder, Range<usize>)> + '_ {
        let placeholders = self.segments.iter().filter_map(|s| match s {
            Segment::Slot(p) => Some(*p),
            Segment::Literal(_) => None,
        });
        placeholders.zip(self.slots.iter().cloned())
    }

    pub fn is_empty(&self) -> bool {
        self.segments.iter().all(|s| match s {
            Segment::Literal(text) => text.is_empty(),
            Segment::Slot(_) => false,
        })
    }

    pub fn render(&self, values: &Values<'_>, quoting: Quoting) -> String {
        let mut out = String::new();
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => out.push_str(text),
                Segment::Slot(Placeholder::Index) => out.push_str(&values.index.to_string()),
                Segment::Slot(Placeholder::Item) => push_value(&mut out, values.item, quoting),
                Segment::Slot(Placeholder::Job) => push_value(&mut out, values.job, quoting),
            }
        }
        out
    }

    /// For a shell-string command: the first `{item}` that sits where quoting cannot
    /// keep it from running as code (see [`crate::shell`]): the place, in words ("inside
    /// single quotes", "in a here-document", …), and where that `{item}` is in the source.
    /// `{index}` and `{job}` are safe anywhere: a number and a job name need no quoting.
    pub fn item_where_quoting_fails(&self) -> Option<(&'static str, Range<usize>)> {
        let mut pieces = Vec::new();
        let mut slots = self.slots.iter();
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => pieces.extend(text.chars().map(shell::Piece::Char)),
                Segment::Slot(placeholder) => {
                    let range = slots.next().cloned().unwrap_or_default();
                    pieces.push(match placeholder {
                        Placeholder::Item => shell::Piece::Quoted(range),
                        // Inert text: stands for any word character.
                        Placeholder::Index | Placeholder::Job => shell::Piece::Char('x'),
                    });
                }
            }
        }
        shell::unsafe_placeholder(&pieces)
    }
}

/// The shells whose quoting `{item}` gets: POSIX shells, named by the file name of the
/// program (`sh`, `/bin/bash`, `/usr/local/bin/zsh`): sh, bash, dash, zsh, ksh (ksh93,
/// mksh, oksh), ash, yash and posh; also `busybox sh` / `busybox ash`, and any of these
/// run through `env` (`["/usr/bin/env", "bash", "-c"]`). Any other program (python3,
/// node, fish, pwsh, …) would read a quoted item in its own way, so a string command it
/// runs may not use `{item}` at all.
pub fn is_posix_shell(shell: &[String]) -> bool {
    const SHELLS: [&str; 11] = [
        "sh", "bash", "dash", "zsh", "ksh", "ksh93", "mksh", "oksh", "ash", "yash", "posh",
    ];
    let name = |arg: Option<&String>| {
        arg.map(|a| {
            std::path::Path::new(a)
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("")
                .to_string()
        })
    };
    match name(shell.first()).as_deref() {
        Some("busybox") => matches!(shell.get(1).map(String::as_str), Some("sh" | "ash")),
        Some("env") => is_posix_shell(&shell[1..]),
        Some(program) => SHELLS.contains(&program),
        None => false,
    }
}

fn push_value(out: &mut String, value: &str, quoting: Quoting) {
    match quoting {
        Quoting::Raw => out.push_str(value),
        Quoting::Shell => out.push_str(&shell_quote(value)),
    }
}

/// POSIX-shell quoting of one word; bare where the word needs none. A NUL byte cannot be
/// quoted (nor passed to a process at all); callers reject such items before rendering.
pub fn shell_quote(value: &str) -> String {
    match shlex::try_quote(value) {
        Ok(quoted) => quoted.into_owned(),
        // Only a NUL byte makes `try_quote` fail; strip it so the result is still inert.
        Err(_) => shell_quote(&value.replace('\0', "")),
    }
}

fn unknown_placeholder(name: &str, offset: usize) -> TemplateError {
    let suggestion = Placeholder::NAMES
        .iter()
        .map(|known| (strsim::damerau_levenshtein(name, known), known))
        .filter(|(distance, _)| *distance <= 2)
        .min()
        .map(|(_, known)| format!(" (did you mean `{{{known}}}`?)"))
        .unwrap_or_default();
    TemplateError {
        offset,
        len: name.len() + 2,
        message: format!(
            "unknown placeholder `{{{name}}}`{suggestion}; the placeholders are {{item}}, {{index}} and {{job}} (write `{{{{` for a literal brace)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> Values<'static> {
        Values {
            item: "a b",
            index: 7,
            job: "fetch",
        }
    }

    #[test]
    fn placeholders_are_replaced() {
        let t = Template::parse("{job}-{index}: {item}").unwrap();
        assert_eq!(t.render(&values(), Quoting::Raw), "fetch-7: a b");
        assert_eq!(t.render(&values(), Quoting::Shell), "fetch-7: 'a b'");
    }

    #[test]
    fn braces_that_are_not_placeholders_are_literal() {
        let t =
            Template::parse("awk '{ s += $1 } END { print s }' {a,b} ${HOME} {{item}} x}").unwrap();
        assert_eq!(
            t.render(&values(), Quoting::Raw),
            "awk '{ s += $1 } END { print s }' {a,b} ${HOME} {item} x}"
        );
        assert!(!t.uses(Placeholder::Item));
    }

    #[test]
    fn unknown_placeholder_is_an_error_with_a_suggestion() {
        let err = Template::parse("echo {itme}").unwrap_err();
        assert_eq!(err.offset, 5);
        assert!(err.message.contains("`{itme}`"), "{}", err.message);
        assert!(
            err.message.contains("did you mean `{item}`"),
            "{}",
            err.message
        );
        let err = Template::parse("echo {zzzzzz}").unwrap_err();
        assert!(!err.message.contains("did you mean"));
    }

    #[test]
    fn a_template_error_is_an_error_showing_its_message() {
        let err = Template::parse("{nope}").unwrap_err();
        let message = err.message.clone();
        let err: Box<dyn std::error::Error> = Box::new(err);
        assert_eq!(err.to_string(), message);
    }

    #[test]
    fn item_inside_quotes_is_found() {
        let inside = |s: &str| {
            Template::parse(s)
                .unwrap()
                .item_where_quoting_fails()
                .map(|(kind, _)| kind)
        };
        assert_eq!(inside("echo {item}"), None);
        assert_eq!(inside("echo '{item}'"), Some("inside single quotes"));
        assert_eq!(inside("echo \"x {item}\""), Some("inside double quotes"));
        assert_eq!(inside("echo 'a' {item} \"b\""), None);
        assert_eq!(inside("echo \"it's\" {item}"), None);
        assert_eq!(inside("echo \\{item}"), Some("backslash-escaped"));
        assert_eq!(inside("echo '{index}'"), None);
    }

    #[test]
    fn item_inside_quotes_is_located() {
        let source = "echo {job} {{item}} '{index} {item}' {item}";
        let (kind, range) = Template::parse(source)
            .unwrap()
            .item_where_quoting_fails()
            .unwrap();
        assert_eq!(kind, "inside single quotes");
        assert_eq!(&source[range.clone()], "{item}");
        assert_eq!(range.start, source.find("{index} ").unwrap() + 8);
    }

    #[test]
    fn first_use_is_located() {
        let source = "{{item}} {job} {item} {item}";
        let t = Template::parse(source).unwrap();
        assert_eq!(t.first_use(Placeholder::Item), Some(15..21));
        assert_eq!(t.first_use(Placeholder::Job), Some(9..14));
        assert_eq!(t.first_use(Placeholder::Index), None);
    }

    #[test]
    fn posix_shells_are_known_by_file_name() {
        let shell =
            |s: &[&str]| is_posix_shell(&s.iter().map(|a| a.to_string()).collect::<Vec<_>>());
        for yes in [
            &["sh", "-c"][..],
            &["/bin/bash", "-c"],
            &["/usr/local/bin/zsh", "-c"],
            &["dash", "-ec"],
            &["ksh", "-c"],
            &["busybox", "sh", "-c"],
            &["/usr/bin/env", "bash", "-c"],
        ] {
            assert!(shell(yes), "{yes:?}");
        }
        for no in [
            &["python3", "-c"][..],
            &["/usr/bin/python3", "-c"],
            &["node", "-e"],
            &["fish", "-c"],
            &["pwsh", "-Command"],
            &["busybox", "awk"],
            &["env", "python3", "-c"],
            &["bash-wrapper", "-c"],
            &[],
        ] {
            assert!(!shell(no), "{no:?}");
        }
    }

    #[test]
    fn shell_quoting_leaves_safe_words_bare() {
        assert_eq!(shell_quote("abc-1.txt"), "abc-1.txt");
        assert_eq!(shell_quote("$(touch x)"), "'$(touch x)'");
        assert_eq!(shell_quote(""), "''");
    }
}
