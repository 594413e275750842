//! Placeholders: parsing `{item}`, `{index}`, `{job}`, `{vars.NAME}` and `{item.FIELD}`
//! out of a string once, at load time, and rendering them per task.
//!
//! This module knows the placeholder grammar of the job-file contract, POSIX shell
//! quoting, and which shells that quoting is right for ([`is_posix_shell`]). It does no
//! I/O. Vars are known when the file loads, so `{vars.NAME}` is resolved to its value
//! while parsing (the [`Scope`] holds them); an item's fields are given per task
//! ([`Values`]). Where a rendered string goes (argv, a shell string, an environment
//! value) is the caller's business; the caller says which with [`Quoting`].
//!
//! Longer than 400 lines because of its unit tests; the code itself is about 330.

use crate::shell;
use std::ops::Range;

/// A placeholder whose value differs from task to task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placeholder {
    Item,
    Index,
    Job,
    /// `{item.FIELD}`: one field of an item with fields.
    Field(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Slot(Placeholder),
    /// `{vars.NAME}`: the var's value, inserted like an item (quoted in a shell string).
    Var {
        name: String,
        value: String,
    },
    /// A placeholder that names nothing (an error was reported for it): kept as its
    /// text so that the rest of the string can still be checked.
    Bad(String),
}

/// A string with placeholders, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    segments: Vec<Segment>,
    /// Where each placeholder (each `Slot` and `Var` segment, in order) is in the source
    /// string, so that a load error can point at the placeholder itself.
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

/// What a template may name where it is parsed: the file's vars, with their values.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub vars: &'a [(String, String)],
}

/// The values a template is rendered with: one task's.
#[derive(Debug, Clone, Copy)]
pub struct Values<'a> {
    pub item: &'a str,
    pub index: u64,
    pub job: &'a str,
    /// The item's fields (key, value), when its job's items have fields.
    pub fields: &'a [(String, String)],
}

/// How a placeholder's value is inserted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quoting {
    /// As is (argv arguments, environment values, stdin, cwd).
    Raw,
    /// Quoted for a POSIX shell, left bare where it needs no quoting.
    Shell,
    /// A glob pattern's metacharacters made literal (`sources`, `outputs`): an item
    /// names one file, never a pattern.
    Glob,
}

impl Template {
    /// Parses `source`. `{{` and `}}` are literal braces, `${…}` is left to the shell,
    /// `{name}` or `{name.name}` with names made of letters, digits and `_` (and `-` in
    /// a field name, `{item.node-version}`) is a placeholder (an unknown one is an
    /// error), and any other brace is literal. Fails with the first unknown placeholder.
    pub fn parse(source: &str, scope: Scope<'_>) -> Result<Template, TemplateError> {
        let (template, mut errors) = Template::parse_all(source, scope);
        if errors.is_empty() {
            Ok(template)
        } else {
            Err(errors.swap_remove(0))
        }
    }

    /// Parses `source` like [`Template::parse`], going on past every unknown
    /// placeholder: the template (each unknown placeholder kept as its text, inert) and
    /// an error for each, in order.
    pub fn parse_all(source: &str, scope: Scope<'_>) -> (Template, Vec<TemplateError>) {
        let bytes = source.as_bytes();
        let mut segments = Vec::new();
        let mut errors = Vec::new();
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
            } else if let Some((first, second)) = placeholder_at(rest) {
                let len = 2 + first.len() + second.map_or(0, |s| s.len() + 1);
                let segment = segment(first, second, scope, i, len).unwrap_or_else(|e| {
                    errors.push(e);
                    Segment::Bad(source[i..i + len].to_string())
                });
                if !literal.is_empty() {
                    segments.push(Segment::Literal(std::mem::take(&mut literal)));
                }
                segments.push(segment);
                slots.push(i..i + len);
                i += len;
            } else {
                let ch = rest.chars().next().expect("not at the end");
                literal.push(ch);
                i += ch.len_utf8();
            }
        }
        if !literal.is_empty() {
            segments.push(Segment::Literal(literal));
        }
        (Template { segments, slots }, errors)
    }

    /// A template that is only this text.
    pub fn literal(text: &str) -> Template {
        Template {
            segments: vec![Segment::Literal(text.to_string())],
            slots: Vec::new(),
        }
    }

    pub fn uses(&self, placeholder: &Placeholder) -> bool {
        self.placeholders().any(|(p, _)| p == placeholder)
    }

    /// Whether its value differs from task to task (it names the item, a field or the
    /// index; `{job}` and vars are the same for every task of a job).
    pub fn per_task(&self) -> Option<Range<usize>> {
        self.placeholders()
            .find(|(p, _)| !matches!(p, Placeholder::Job))
            .map(|(_, range)| range)
    }

    /// Every per-task placeholder (see [`Template::per_task`]), with where it is.
    pub fn per_task_all(&self) -> Vec<Range<usize>> {
        self.placeholders()
            .filter(|(p, _)| !matches!(p, Placeholder::Job))
            .map(|(_, range)| range)
            .collect()
    }

    /// Where the first use of `placeholder` is in the source string (a byte range).
    pub fn first_use(&self, placeholder: &Placeholder) -> Option<Range<usize>> {
        self.placeholders()
            .find(|(p, _)| *p == placeholder)
            .map(|(_, range)| range)
    }

    /// The first var, if any, with where it is.
    pub fn first_var(&self) -> Option<Range<usize>> {
        self.segments
            .iter()
            .filter(|s| !matches!(s, Segment::Literal(_)))
            .zip(self.slots.iter())
            .find(|(s, _)| matches!(s, Segment::Var { .. }))
            .map(|(_, range)| range.clone())
    }

    /// Each per-task placeholder used, with its byte range in the source string.
    fn placeholders(&self) -> impl Iterator<Item = (&Placeholder, Range<usize>)> + '_ {
        self.segments
            .iter()
            .filter(|s| !matches!(s, Segment::Literal(_)))
            .zip(self.slots.iter().cloned())
            .filter_map(|(s, range)| match s {
                Segment::Slot(p) => Some((p, range)),
                _ => None,
            })
    }

    /// Every placeholder that does not fit items with these fields (`None`: plain
    /// items): `{item}` on items with fields, `{item.F}` on plain items or naming a field
    /// they lack. Each error's offset is in the template's source.
    /// `fan_out`: the job has items at all (else `{item.F}` is told apart).
    pub fn check_fields(&self, fields: Option<&[String]>, fan_out: bool) -> Vec<TemplateError> {
        self.placeholders()
            .filter_map(|(p, range)| {
                let error = |message: String| TemplateError {
                    offset: range.start,
                    len: range.len(),
                    message,
                };
                match (p, fields) {
                    (Placeholder::Item, Some(fields)) => Some(error(format!(
                        "`{{item}}` on items with fields: name one of them ({})",
                        field_list(fields)
                    ))),
                    (Placeholder::Field(f), None) if !fan_out => Some(error(format!(
                        "`{{item.{f}}}`: this job has no `items`, so no fields"
                    ))),
                    (Placeholder::Field(f), None) => Some(error(format!(
                        "`{{item.{f}}}`: this job's items have no fields; write `{{item}}`"
                    ))),
                    (Placeholder::Field(f), Some(fields)) if !fields.contains(f) => {
                        let hint = crate::diagnostic::suggest(f, fields.iter().map(String::as_str))
                            .map(|s| format!(" (did you mean `{{item.{s}}}`?)"))
                            .unwrap_or_default();
                        Some(error(format!(
                        "`{{item.{f}}}`: the items have no field `{f}`{hint}; their fields are {}",
                        field_list(fields)
                    )))
                    }
                    _ => None,
                }
            })
            .collect()
    }

    /// Whether every placeholder names something (no error was found in it).
    pub fn is_sound(&self) -> bool {
        !self.segments.iter().any(|s| matches!(s, Segment::Bad(_)))
    }

    pub fn is_empty(&self) -> bool {
        self.segments.iter().all(|s| match s {
            Segment::Literal(text) => text.is_empty(),
            _ => false,
        })
    }

    pub fn render(&self, values: &Values<'_>, quoting: Quoting) -> String {
        let mut out = String::new();
        for segment in &self.segments {
            push_segment(&mut out, segment, values, quoting);
        }
        out
    }

    /// Rendered as [`Template::render`] renders it, cut into lines only where the
    /// template's own text breaks a line (a value's line feed stays inside its line):
    /// how `runner plan` shows a script of several lines. Joined with `\n`, the lines
    /// are what `render` gives.
    pub fn render_lines(&self, values: &Values<'_>, quoting: Quoting) -> Vec<String> {
        let mut lines = vec![String::new()];
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) | Segment::Bad(text) => {
                    let mut parts = text.split('\n');
                    if let (Some(line), Some(first)) = (lines.last_mut(), parts.next()) {
                        line.push_str(first);
                    }
                    lines.extend(parts.map(str::to_string));
                }
                other => {
                    if let Some(line) = lines.last_mut() {
                        push_segment(line, other, values, quoting);
                    }
                }
            }
        }
        lines
    }

    /// For a shell-string command: every value (an item, a field or a var) that sits
    /// where quoting cannot keep it from running as code (see [`crate::shell`]): the
    /// place, in words ("inside single quotes", "in a here-document", …), and where that
    /// placeholder is in the source. `{index}` and `{job}` are safe anywhere: a number
    /// and a job name need no quoting.
    pub fn values_where_quoting_fails(&self) -> Vec<(&'static str, Range<usize>)> {
        let mut pieces = Vec::new();
        let mut slots = self.slots.iter();
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => pieces.extend(text.chars().map(shell::Piece::Char)),
                Segment::Slot(Placeholder::Index | Placeholder::Job) | Segment::Bad(_) => {
                    slots.next();
                    // Inert text: stands for any word character.
                    pieces.push(shell::Piece::Char('x'));
                }
                Segment::Slot(_) | Segment::Var { .. } => {
                    let range = slots.next().cloned().unwrap_or_default();
                    pieces.push(shell::Piece::Quoted(range));
                }
            }
        }
        shell::unsafe_placeholders(&pieces)
    }

    /// The first of [`Template::values_where_quoting_fails`].
    pub fn value_where_quoting_fails(&self) -> Option<(&'static str, Range<usize>)> {
        self.values_where_quoting_fails().into_iter().next()
    }

    /// Every value a non-POSIX shell would be given unquoted: an item, a field or a var.
    pub fn values(&self) -> Vec<Range<usize>> {
        self.segments
            .iter()
            .filter(|s| !matches!(s, Segment::Literal(_)))
            .zip(self.slots.iter())
            .filter(|(s, _)| {
                !matches!(
                    s,
                    Segment::Slot(Placeholder::Index | Placeholder::Job) | Segment::Bad(_)
                )
            })
            .map(|(_, range)| range.clone())
            .collect()
    }

    /// The text of a template without placeholders that differ from task to task or
    /// job to job (vars are known): what it renders to for every task.
    pub fn fixed_text(&self) -> Option<String> {
        let mut out = String::new();
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => out.push_str(text),
                Segment::Var { value, .. } => out.push_str(value),
                Segment::Slot(_) | Segment::Bad(_) => return None,
            }
        }
        Some(out)
    }
}

/// `{name}` or `{name.name}` at the start of `text`: the names. The second name of
/// `{item.…}` (a field) may also hold `-`, as item keys do (`{item.node-version}`).
fn placeholder_at(text: &str) -> Option<(&str, Option<&str>)> {
    let word = |s: &str| {
        s.bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
            .count()
    };
    let field = |s: &str| {
        s.bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
            .count()
    };
    let body = text.strip_prefix('{')?;
    let first = word(body);
    if first == 0 {
        return None;
    }
    match body.as_bytes().get(first) {
        Some(b'}') => Some((&body[..first], None)),
        Some(b'.') => {
            let rest = &body[first + 1..];
            let second = if &body[..first] == "item" {
                field(rest)
            } else {
                word(rest)
            };
            (second > 0 && rest.as_bytes().get(second) == Some(&b'}'))
                .then(|| (&body[..first], Some(&rest[..second])))
        }
        _ => None,
    }
}

/// The segment for placeholder `first[.second]` at `offset` (`len` bytes long).
fn segment(
    first: &str,
    second: Option<&str>,
    scope: Scope<'_>,
    offset: usize,
    len: usize,
) -> Result<Segment, TemplateError> {
    let error = |message: String| TemplateError {
        offset,
        len,
        message,
    };
    Ok(match (first, second) {
        ("item", None) => Segment::Slot(Placeholder::Item),
        ("index", None) => Segment::Slot(Placeholder::Index),
        ("job", None) => Segment::Slot(Placeholder::Job),
        ("item", Some(field)) => Segment::Slot(Placeholder::Field(field.to_string())),
        ("vars", Some(name)) => match scope.vars.iter().find(|(n, _)| n == name) {
            Some((_, value)) => Segment::Var {
                name: name.to_string(),
                value: value.clone(),
            },
            None => return Err(error(unknown_var(name, scope.vars))),
        },
        _ => {
            let written = match second {
                Some(s) => format!("{first}.{s}"),
                None => first.to_string(),
            };
            return Err(error(unknown_placeholder(&written)));
        }
    })
}

/// One segment, rendered, after `out`.
fn push_segment(out: &mut String, segment: &Segment, values: &Values<'_>, quoting: Quoting) {
    match segment {
        Segment::Literal(text) | Segment::Bad(text) => out.push_str(text),
        Segment::Var { value, .. } => push_value(out, value, quoting),
        Segment::Slot(Placeholder::Index) => out.push_str(&values.index.to_string()),
        Segment::Slot(Placeholder::Item) => push_value(out, values.item, quoting),
        Segment::Slot(Placeholder::Job) => push_value(out, values.job, quoting),
        Segment::Slot(Placeholder::Field(name)) => {
            let value = values
                .fields
                .iter()
                .find(|(key, _)| key == name)
                .map_or("", |(_, value)| value.as_str());
            push_value(out, value, quoting)
        }
    }
}

fn field_list(fields: &[String]) -> String {
    fields
        .iter()
        .map(|f| format!("{{item.{f}}}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn unknown_var(name: &str, vars: &[(String, String)]) -> String {
    if vars.is_empty() {
        return format!(
            "`{{vars.{name}}}`: the file declares no vars; add `[vars]` with `{name} = \"…\"`"
        );
    }
    let hint = crate::diagnostic::suggest(name, vars.iter().map(|(n, _)| n.as_str()))
        .map(|s| format!(" (did you mean `{{vars.{s}}}`?)"))
        .unwrap_or_default();
    let declared: Vec<&str> = vars.iter().map(|(n, _)| n.as_str()).collect();
    format!(
        "`{{vars.{name}}}` is not declared in `[vars]`{hint}; the vars are {}",
        declared.join(", ")
    )
}

/// The POSIX shells, by the file name of the program.
const POSIX_SHELLS: [&str; 11] = [
    "sh", "bash", "dash", "zsh", "ksh", "ksh93", "mksh", "oksh", "ash", "yash", "posh",
];

/// The shells whose quoting `{item}` gets: POSIX shells, named by the file name of the
/// program (`sh`, `/bin/bash`, `/usr/local/bin/zsh`): sh, bash, dash, zsh, ksh (ksh93,
/// mksh, oksh), ash, yash and posh; also `busybox sh` / `busybox ash`, and any of these
/// run through `env` (`["/usr/bin/env", "bash", "-c"]`). Any other program (python3,
/// node, fish, pwsh, …) would read a quoted item in its own way, so a string command it
/// runs may not use `{item}` at all.
pub fn is_posix_shell(shell: &[String]) -> bool {
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
        Some(program) => POSIX_SHELLS.contains(&program),
        None => false,
    }
}

/// In an argv command, the argument that a shell runs as its script, if argv starts a
/// shell that way: the file's `shell` itself followed by one more argument
/// (`shell = ["bash", "-euo", "pipefail", "-c"]`, `command = ["bash", "-euo",
/// "pipefail", "-c", SCRIPT]`), or a POSIX shell named as [`is_posix_shell`] names
/// them (also through `env` with `-i` or `NAME=VALUE` words, or `busybox`) with a
/// `-c` among its options (`-c`, `-ec`, `-o pipefail -c`, `--norc -c`), the first
/// argument after them. `args` holds each argument's text when it is the same for
/// every task (`None` otherwise: such an argument before the script hides what runs).
pub fn script_argument(args: &[Option<String>], shell: &[String]) -> Option<usize> {
    let fixed = |k: usize| args.get(k).and_then(|a| a.as_deref());
    if !shell.is_empty()
        && args.len() > shell.len()
        && shell.iter().enumerate().all(|(k, s)| fixed(k) == Some(s))
    {
        return Some(shell.len());
    }
    let name = |k: usize| {
        fixed(k).map(|a| {
            std::path::Path::new(a)
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("")
        })
    };
    let mut at = 0;
    if name(at) == Some("env") {
        at += 1;
        while let Some(a) = fixed(at) {
            let assignment = a.contains('=') && !a.starts_with('-');
            if !(assignment || matches!(a, "-i" | "-" | "--ignore-environment")) {
                break;
            }
            at += 1;
        }
    }
    if name(at) == Some("busybox") {
        at += 1;
        if !matches!(fixed(at), Some("sh" | "ash")) {
            return None;
        }
    } else if !name(at).is_some_and(|n| POSIX_SHELLS.contains(&n)) {
        return None;
    }
    at += 1;
    let mut dash_c = false;
    // Options, up to the end or an argument that differs from task to task (not one).
    while let Some(arg) = fixed(at) {
        at += 1;
        if arg == "--" || arg == "-" {
            break;
        } else if arg.starts_with("--") {
            // A long option (`--norc`, `--login`, `--posix`).
        } else if let Some(letters) = arg.strip_prefix(['-', '+']).filter(|l| !l.is_empty()) {
            dash_c |= arg.starts_with('-') && letters.contains('c');
            if letters.contains(['o', 'O']) {
                at += 1; // `-o pipefail`, `-O extglob`: the option's own argument.
            }
        } else {
            at -= 1;
            break;
        }
    }
    (dash_c && at < args.len()).then_some(at)
}

fn push_value(out: &mut String, value: &str, quoting: Quoting) {
    match quoting {
        Quoting::Raw => out.push_str(value),
        Quoting::Shell => out.push_str(&shell_quote(value)),
        Quoting::Glob => out.push_str(&globset::escape(value)),
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

fn unknown_placeholder(name: &str) -> String {
    const NAMES: [&str; 3] = ["item", "index", "job"];
    let suggestion = NAMES
        .iter()
        .map(|known| (strsim::damerau_levenshtein(name, known), known))
        .filter(|(distance, _)| *distance <= 2)
        .min()
        .map(|(_, known)| format!(" (did you mean `{{{known}}}`?)"))
        .unwrap_or_default();
    // The text itself, as an awk program's `{print}` means it: its braces doubled.
    format!(
        "unknown placeholder `{{{name}}}`{suggestion}; the placeholders are {{item}}, {{index}}, {{job}}, {{vars.NAME}} and {{item.FIELD}}; to mean the text `{{{name}}}` itself (as in an awk program), write `{{{{{name}}}}}`"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> Values<'static> {
        Values {
            item: "a b",
            index: 7,
            job: "fetch",
            fields: &[],
        }
    }

    const NO_VARS: Scope<'static> = Scope { vars: &[] };

    fn parse(source: &str) -> Result<Template, TemplateError> {
        Template::parse(source, NO_VARS)
    }

    #[test]
    fn placeholders_are_replaced() {
        let t = parse("{job}-{index}: {item}").unwrap();
        assert_eq!(t.render(&values(), Quoting::Raw), "fetch-7: a b");
        assert_eq!(t.render(&values(), Quoting::Shell), "fetch-7: 'a b'");
    }

    #[test]
    fn braces_that_are_not_placeholders_are_literal() {
        let t = parse("awk '{ s += $1 } END { print s }' {a,b} ${HOME} {{item}} x}").unwrap();
        assert_eq!(
            t.render(&values(), Quoting::Raw),
            "awk '{ s += $1 } END { print s }' {a,b} ${HOME} {item} x}"
        );
        assert!(!t.uses(&Placeholder::Item));
    }

    #[test]
    fn unknown_placeholder_is_an_error_with_a_suggestion() {
        let err = parse("echo {itme}").unwrap_err();
        assert_eq!(err.offset, 5);
        assert!(err.message.contains("`{itme}`"), "{}", err.message);
        assert!(
            err.message.contains("did you mean `{item}`"),
            "{}",
            err.message
        );
        let err = parse("echo {zzzzzz}").unwrap_err();
        assert!(!err.message.contains("did you mean"));
    }

    #[test]
    fn lines_break_only_where_the_template_does() {
        let t = parse("set -e\necho {item}\n  done {index}\n").unwrap();
        let values = Values {
            item: "two\nlines",
            ..values()
        };
        let lines = t.render_lines(&values, Quoting::Shell);
        assert_eq!(lines, ["set -e", "echo 'two\nlines'", "  done 7", ""]);
        assert_eq!(lines.join("\n"), t.render(&values, Quoting::Shell));
    }

    #[test]
    fn every_awk_brace_is_told_to_be_doubled() {
        let (_, errors) =
            Template::parse_all("awk '{print}' a; awk 'NR>1{next}' b", Scope { vars: &[] });
        let messages: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(messages[0].contains("write `{{print}}`"), "{}", messages[0]);
        assert!(messages[1].contains("write `{{next}}`"), "{}", messages[1]);
    }

    #[test]
    fn vars_are_resolved_when_parsed_and_quoted_like_items() {
        let vars = [("date".to_string(), "2026-11-27 x".to_string())];
        let t = Template::parse("get {vars.date} {item}", Scope { vars: &vars }).unwrap();
        assert_eq!(t.render(&values(), Quoting::Raw), "get 2026-11-27 x a b");
        assert_eq!(
            t.render(&values(), Quoting::Shell),
            "get '2026-11-27 x' 'a b'"
        );
        assert_eq!(t.per_task(), Some(16..22));
        let err = Template::parse("get {vars.dat}", Scope { vars: &vars }).unwrap_err();
        assert!(
            err.message.contains("did you mean `{vars.date}`"),
            "{}",
            err.message
        );
        assert_eq!((err.offset, err.len), (4, 10));
        let err = parse("get {vars.date}").unwrap_err();
        assert!(err.message.contains("declares no vars"), "{}", err.message);
        // A var inside quotes is refused like an item.
        let t = Template::parse("echo '{vars.date}'", Scope { vars: &vars }).unwrap();
        assert_eq!(
            t.value_where_quoting_fails().map(|p| p.0),
            Some("inside single quotes")
        );
    }

    #[test]
    fn fields_are_rendered_and_checked_against_the_items() {
        let fields = [
            ("os".to_string(), "linux".to_string()),
            ("py".to_string(), "3.12".to_string()),
        ];
        let values = Values {
            fields: &fields,
            ..values()
        };
        let t = parse("test-{item.os} {item.py}").unwrap();
        assert_eq!(t.render(&values, Quoting::Shell), "test-linux 3.12");
        let keys = ["os".to_string(), "py".to_string()];
        assert_eq!(t.check_fields(Some(&keys), true), vec![]);
        let plain = t.check_fields(None, true).remove(0);
        assert!(
            plain.message.contains("have no fields"),
            "{}",
            plain.message
        );
        let item = parse("x {item}")
            .unwrap()
            .check_fields(Some(&keys), true)
            .remove(0);
        assert!(
            item.message.contains("{item.os}, {item.py}"),
            "{}",
            item.message
        );
        let typo = parse("x {item.pyy}")
            .unwrap()
            .check_fields(Some(&keys), true)
            .remove(0);
        assert!(
            typo.message.contains("did you mean `{item.py}`"),
            "{}",
            typo.message
        );
        assert_eq!((typo.offset, typo.len), (2, 10));
        // Other dotted names are unknown placeholders; brace expansions stay literal.
        assert!(parse("{x.y}")
            .unwrap_err()
            .message
            .contains("unknown placeholder `{x.y}`"));
        assert!(parse("echo {1..5} {a.}").is_ok());
    }

    #[test]
    fn a_field_name_may_hold_a_dash_and_other_names_may_not() {
        let fields = [("node-version".to_string(), "20".to_string())];
        let values = Values {
            fields: &fields,
            ..values()
        };
        let t = parse("use {item.node-version}").unwrap();
        assert_eq!(t.render(&values, Quoting::Shell), "use 20");
        assert_eq!(t.check_fields(Some(&["node-version".into()]), true), vec![]);
        // Elsewhere a dash ends the name, and the braces stay literal as before.
        assert_eq!(
            parse("{a.b-c} {x-y}")
                .unwrap()
                .render(&values, Quoting::Raw),
            "{a.b-c} {x-y}"
        );
    }

    #[test]
    fn every_unknown_placeholder_and_every_unsafe_value_is_found() {
        let vars = [("v".to_string(), "1".to_string())];
        let (t, errors) = Template::parse_all(
            "a {itme} '{item}' {vars.w} \"{vars.v}\"",
            Scope { vars: &vars },
        );
        let at: Vec<usize> = errors.iter().map(|e| e.offset).collect();
        assert_eq!(at, [2, 18]);
        let unsafe_values: Vec<_> = t
            .values_where_quoting_fails()
            .into_iter()
            .map(|(place, range)| (place, range.start))
            .collect();
        assert_eq!(
            unsafe_values,
            [("inside single quotes", 10), ("inside double quotes", 28)]
        );
        let fields = ["os".to_string()];
        let t = parse("{item.a} {item.b} {item.os}").unwrap();
        assert_eq!(t.check_fields(Some(&fields), true).len(), 2);
        assert_eq!(t.values().len(), 3);
    }

    #[test]
    fn the_script_of_a_shell_in_argv_is_found() {
        let script = |args: &[&str], shell: &[&str]| {
            let args: Vec<Option<String>> = args
                .iter()
                .map(|a| (!a.contains("{item}")).then(|| a.to_string()))
                .collect();
            let shell: Vec<String> = shell.iter().map(|s| s.to_string()).collect();
            script_argument(&args, &shell)
        };
        let sh = ["sh", "-c"];
        assert_eq!(script(&["sh", "-c", "echo"], &sh), Some(2));
        assert_eq!(script(&["sh", "-c", "echo {item}"], &[]), Some(2));
        assert_eq!(
            script(&["sh", "-ec", "echo {item}", "{item}"], &sh),
            Some(2)
        );
        assert_eq!(script(&["/bin/bash", "-ec", "echo", "x"], &[]), Some(2));
        assert_eq!(script(&["bash", "-o", "pipefail", "-c", "e"], &[]), Some(4));
        assert_eq!(script(&["bash", "--norc", "-c", "e"], &[]), Some(3));
        assert_eq!(script(&["zsh", "-c", "--", "e"], &[]), Some(3));
        assert_eq!(script(&["/usr/bin/env", "bash", "-c", "e"], &[]), Some(3));
        assert_eq!(
            script(&["env", "-i", "A=1", "dash", "-c", "e"], &[]),
            Some(5)
        );
        assert_eq!(script(&["busybox", "sh", "-c", "e"], &[]), Some(3));
        assert_eq!(script(&["python3", "-c", "e"], &["python3", "-c"]), Some(2));
        for no in [
            &["sh", "script.sh", "{item}"][..],
            &["sh", "-c"],
            &["python3", "-c", "e"],
            &["echo", "-c", "e"],
            &["{item}", "-c", "e"],
            &["sh", "-e", "x.sh"],
            &["busybox", "awk", "-c", "e"],
        ] {
            assert_eq!(script(no, &sh), None, "{no:?}");
        }
    }

    #[test]
    fn a_template_error_is_an_error_showing_its_message() {
        let err = parse("{nope}").unwrap_err();
        let message = err.message.clone();
        let err: Box<dyn std::error::Error> = Box::new(err);
        assert_eq!(err.to_string(), message);
    }

    #[test]
    fn item_inside_quotes_is_found() {
        let inside = |s: &str| {
            parse(s)
                .unwrap()
                .value_where_quoting_fails()
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
        let (kind, range) = parse(source).unwrap().value_where_quoting_fails().unwrap();
        assert_eq!(kind, "inside single quotes");
        assert_eq!(&source[range.clone()], "{item}");
        assert_eq!(range.start, source.find("{index} ").unwrap() + 8);
    }

    #[test]
    fn first_use_is_located() {
        let source = "{{item}} {job} {item} {item}";
        let t = parse(source).unwrap();
        assert_eq!(t.first_use(&Placeholder::Item), Some(15..21));
        assert_eq!(t.first_use(&Placeholder::Job), Some(9..14));
        assert_eq!(t.first_use(&Placeholder::Index), None);
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
