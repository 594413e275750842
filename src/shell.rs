//! Where a placeholder lands in a POSIX shell string: a small lexer of the shell's
//! quoting contexts, enough to tell whether a value inserted shell-quoted there stays
//! one inert word.
//!
//! Quoting protects a value only where the shell reads it as an ordinary word: outside
//! quotes, and inside `$(…)` (a new quoting context, also within double quotes). It
//! does not protect it inside single or double quotes or after a backslash (the quotes
//! the runner adds would be read as text, and a quote in the value ends the user's),
//! inside backticks (their own backslash rules), inside `$((…))` (arithmetic expands
//! its text again), in a comment (a newline in the value ends the comment: the rest is
//! code), or anywhere in a here-document (an unquoted body expands `$(…)` even around a
//! quoted word, and a line of the value equal to the delimiter ends any body early).
//!
//! The lexer follows POSIX `sh` (Shell Command Language, 2.2–2.7): quotes, escapes,
//! `$(…)`, `$((…))`, `${…}`, backticks, comments (`#` at the start of a word), and
//! here-documents (`<<` and `<<-`, the delimiter quoted or not, bodies starting at the
//! next newline, several on one line in order). Where it is unsure it errs towards
//! refusing: a refused place has a safe spelling, `"$RUNNER_ITEM"`.
//!
//! No shell-parsing crate was used: the maintained ones are full parsers of one shell's
//! grammar (bash or yash), far larger than this question needs, and `shell-words` /
//! `shlex` know no here-documents or substitutions.
//!
//! Longer than 400 lines because of its unit tests (one case per quoting context); the
//! lexer itself is about 250.

use std::ops::Range;

/// One piece of a template as the lexer sees it: a character of literal text, or a
/// placeholder whose value is inserted shell-quoted (with its place in the source).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Char(char),
    Quoted(Range<usize>),
}

/// A place where a quoted value would not stay one inert word, as words for a message
/// ("`{item}` inside single quotes in a shell command").
pub const SINGLE: &str = "inside single quotes";
pub const DOUBLE: &str = "inside double quotes";
pub const ESCAPED: &str = "backslash-escaped";
pub const BACKTICKS: &str = "inside backticks";
pub const ARITHMETIC: &str = "inside $((…))";
pub const COMMENT: &str = "in a comment";
pub const HEREDOC: &str = "in a here-document";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    /// Top level or `$(…)`: words, with the depth of plain parentheses opened in it.
    Command(u32),
    Double,
    Backtick,
    /// `$((…))`, with the depth of parentheses opened in it.
    Arithmetic(u32),
}

struct HereDoc {
    delimiter: String,
    strip_tabs: bool,
}

/// Every placeholder of `pieces` that sits where quoting cannot protect it, in order:
/// the place (one of the constants above) and the placeholder's range in the source.
pub fn unsafe_placeholders(pieces: &[Piece]) -> Vec<(&'static str, Range<usize>)> {
    let mut lexer = Lexer {
        pieces,
        at: 0,
        stack: vec![Frame::Command(0)],
        word_start: true,
        pending: Vec::new(),
        found: Vec::new(),
    };
    lexer.run();
    let mut found = lexer.found;
    // A placeholder is refused once, at the first place that refused it.
    let mut seen = Vec::new();
    found.retain(|(_, range)| {
        let new = !seen.contains(range);
        seen.push(range.clone());
        new
    });
    found
}

/// The first of [`unsafe_placeholders`] (what the unit tests look at).
#[cfg(test)]
pub fn unsafe_placeholder(pieces: &[Piece]) -> Option<(&'static str, Range<usize>)> {
    unsafe_placeholders(pieces).into_iter().next()
}

struct Lexer<'a> {
    pieces: &'a [Piece],
    at: usize,
    stack: Vec<Frame>,
    /// Whether the next character starts a word (so that `#` starts a comment).
    word_start: bool,
    /// Here-documents whose bodies start at the next newline.
    pending: Vec<HereDoc>,
    /// The placeholders refused so far; lexing goes on past each, so that all are found.
    found: Vec<Found>,
}

type Found = (&'static str, Range<usize>);

/// The lexer's steps return `Result` so that a refusal could stop them; none does any
/// more (every refusal is recorded and lexing goes on), which this type says.
type Never = std::convert::Infallible;

impl Lexer<'_> {
    fn char_at(&self, at: usize) -> Option<char> {
        match self.pieces.get(at) {
            Some(Piece::Char(c)) => Some(*c),
            _ => None,
        }
    }

    fn next_is(&self, text: &str) -> bool {
        text.chars()
            .enumerate()
            .all(|(k, c)| self.char_at(self.at + k) == Some(c))
    }

    fn run(&mut self) {
        while self.at < self.pieces.len() {
            let frame = *self.stack.last().expect("the top frame is never popped");
            let lexed = match frame {
                Frame::Command(_) | Frame::Arithmetic(_) => self.word(frame),
                Frame::Double => self.double(),
                Frame::Backtick => self.backtick(),
            };
            let Ok(()) = lexed;
        }
    }

    /// Records the piece at `at` as refused with `place` if it is a placeholder. Lexing
    /// goes on past it as past any word character, so that one pass finds every
    /// placeholder that is refused.
    fn refuse_at(&mut self, at: usize, place: &'static str) -> Result<(), Never> {
        if let Some(Piece::Quoted(range)) = self.pieces.get(at) {
            self.found.push((place, range.clone()));
        }
        Ok(())
    }

    /// Skips to just after the next `close` (or the end), refusing any placeholder.
    fn skip_past(&mut self, close: char, place: &'static str) -> Result<(), Never> {
        while self.at < self.pieces.len() {
            self.refuse_at(self.at, place)?;
            self.at += 1;
            if self.char_at(self.at - 1) == Some(close) {
                break;
            }
        }
        Ok(())
    }

    /// `$(`, `$((`, `${` and `$'`: the frames and quotes a `$` opens.
    fn dollar(&mut self) -> Result<bool, Never> {
        if self.next_is("$((") {
            self.stack.push(Frame::Arithmetic(0));
            self.at += 3;
        } else if self.next_is("$(") {
            self.stack.push(Frame::Command(0));
            self.at += 2;
            self.word_start = true;
        } else if self.next_is("${") {
            // The template copies `${…}` through its first `}` as text: no placeholder
            // can be inside; skip it the same way.
            self.at += 2;
            self.skip_past('}', DOUBLE)?;
        } else if self.next_is("$'") {
            self.at += 2;
            self.skip_single_ansi()?;
        } else {
            return Ok(false);
        }
        Ok(true)
    }

    /// The rest of a `$'…'` string, where `\'` does not end it.
    fn skip_single_ansi(&mut self) -> Result<(), Never> {
        while self.at < self.pieces.len() {
            self.refuse_at(self.at, SINGLE)?;
            match self.char_at(self.at) {
                Some('\\') => {
                    self.refuse_at(self.at + 1, SINGLE)?;
                    self.at += 2;
                }
                Some('\'') => {
                    self.at += 1;
                    break;
                }
                _ => self.at += 1,
            }
        }
        Ok(())
    }

    /// One step in a command (top level or `$(…)`) or in arithmetic.
    fn word(&mut self, frame: Frame) -> Result<(), Never> {
        let arithmetic = matches!(frame, Frame::Arithmetic(_));
        if arithmetic {
            self.refuse_at(self.at, ARITHMETIC)?;
        }
        let Some(c) = self.char_at(self.at) else {
            // A placeholder in word position: one quoted word, safe.
            self.at += 1;
            self.word_start = false;
            return Ok(());
        };
        if c == '$' && self.dollar()? {
            return Ok(());
        }
        let mut word_start = false;
        match c {
            '\\' => {
                self.refuse_at(self.at + 1, ESCAPED)?;
                self.at += 2;
                return self.set_word_start(false);
            }
            '\'' => {
                self.at += 1;
                self.skip_past('\'', SINGLE)?;
                return self.set_word_start(false);
            }
            '"' => self.stack.push(Frame::Double),
            '`' => self.stack.push(Frame::Backtick),
            '(' => {
                self.nest(1);
                word_start = true;
            }
            ')' => {
                if arithmetic && self.depth() == 0 && self.next_is("))") {
                    self.stack.pop();
                    self.at += 2;
                    return self.set_word_start(false);
                }
                if self.depth() > 0 {
                    self.nest(-1);
                } else if self.stack.len() > 1 {
                    self.stack.pop();
                }
                word_start = true;
            }
            '#' if self.word_start && !arithmetic => {
                while self.at < self.pieces.len() && self.char_at(self.at) != Some('\n') {
                    self.refuse_at(self.at, COMMENT)?;
                    self.at += 1;
                }
                return Ok(());
            }
            '<' if !arithmetic && self.next_is("<<") && !self.next_is("<<<") => {
                return self.here_document_operator();
            }
            '<' if self.next_is("<<<") => {
                self.at += 3;
                return self.set_word_start(true);
            }
            '\n' => {
                self.at += 1;
                self.here_document_bodies()?;
                return self.set_word_start(true);
            }
            ' ' | '\t' | ';' | '&' | '|' | '<' | '>' => word_start = true,
            _ => {}
        }
        self.at += 1;
        self.set_word_start(word_start)
    }

    fn set_word_start(&mut self, word_start: bool) -> Result<(), Never> {
        self.word_start = word_start;
        Ok(())
    }

    fn depth(&self) -> u32 {
        match self.stack.last() {
            Some(Frame::Command(d) | Frame::Arithmetic(d)) => *d,
            _ => 0,
        }
    }

    fn nest(&mut self, by: i32) {
        if let Some(Frame::Command(d) | Frame::Arithmetic(d)) = self.stack.last_mut() {
            *d = d.saturating_add_signed(by);
        }
    }

    /// `<<WORD` or `<<-WORD`: the delimiter (its quotes removed) is remembered; its body
    /// starts at the next newline. A placeholder in the delimiter is refused.
    fn here_document_operator(&mut self) -> Result<(), Never> {
        self.at += 2;
        let strip_tabs = self.char_at(self.at) == Some('-');
        if strip_tabs {
            self.at += 1;
        }
        while matches!(self.char_at(self.at), Some(' ' | '\t')) {
            self.at += 1;
        }
        let mut delimiter = String::new();
        let mut quote = None;
        while self.at < self.pieces.len() {
            self.refuse_at(self.at, HEREDOC)?;
            let c = self.char_at(self.at).unwrap_or('\0');
            match (quote, c) {
                (None, ' ' | '\t' | '\n' | ';' | '&' | '|' | '<' | '>' | '(' | ')') => break,
                (None, '\'' | '"') => quote = Some(c),
                (None, '\\') => {
                    self.at += 1;
                    self.refuse_at(self.at, HEREDOC)?;
                    if let Some(next) = self.char_at(self.at) {
                        delimiter.push(next);
                    }
                }
                (Some(q), _) if q == c => quote = None,
                _ => delimiter.push(c),
            }
            self.at += 1;
        }
        self.pending.push(HereDoc {
            delimiter,
            strip_tabs,
        });
        self.set_word_start(false)
    }

    /// After a newline: the bodies of the here-documents opened on the line that ended,
    /// in order, each through its delimiter line. Any placeholder in them is refused.
    fn here_document_bodies(&mut self) -> Result<(), Never> {
        for doc in std::mem::take(&mut self.pending) {
            loop {
                if self.at >= self.pieces.len() {
                    return Ok(());
                }
                let mut line = String::new();
                while self.at < self.pieces.len() && self.char_at(self.at) != Some('\n') {
                    self.refuse_at(self.at, HEREDOC)?;
                    // A placeholder (refused above) is never part of a delimiter.
                    line.push(self.char_at(self.at).unwrap_or('\0'));
                    self.at += 1;
                }
                self.at += 1;
                let line = if doc.strip_tabs {
                    line.trim_start_matches('\t')
                } else {
                    &line
                };
                if line == doc.delimiter {
                    break;
                }
            }
        }
        Ok(())
    }

    /// One step inside double quotes.
    fn double(&mut self) -> Result<(), Never> {
        self.refuse_at(self.at, DOUBLE)?;
        match self.char_at(self.at) {
            Some('$') if self.dollar()? => return Ok(()),
            Some('\\') => {
                self.refuse_at(self.at + 1, DOUBLE)?;
                self.at += 1;
            }
            Some('"') => {
                self.stack.pop();
            }
            Some('`') => self.stack.push(Frame::Backtick),
            _ => {}
        }
        self.at += 1;
        Ok(())
    }

    /// One step inside backticks.
    fn backtick(&mut self) -> Result<(), Never> {
        self.refuse_at(self.at, BACKTICKS)?;
        match self.char_at(self.at) {
            Some('\\') => {
                self.refuse_at(self.at + 1, BACKTICKS)?;
                self.at += 1;
            }
            Some('`') => {
                self.stack.pop();
            }
            _ => {}
        }
        self.at += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `@` stands for a placeholder.
    fn place(script: &str) -> Option<&'static str> {
        let pieces: Vec<Piece> = script
            .char_indices()
            .map(|(i, c)| {
                if c == '@' {
                    Piece::Quoted(i..i + 1)
                } else {
                    Piece::Char(c)
                }
            })
            .collect();
        unsafe_placeholder(&pieces).map(|(place, _)| place)
    }

    #[test]
    fn words_outside_quotes_are_safe() {
        for script in [
            "echo @",
            "echo 'a' @ \"b\"",
            "echo \"it's\" @",
            "x=@; echo \"$x\"",
            "echo $(echo @)",
            "echo \"$(echo @)\"",
            "echo \"$(printf '%s' @)\" done",
            "f() { echo @; }; f",
            "(cd /tmp && echo @)",
            "echo ${HOME} @",
            "echo ${x:-'a'} @",
            "echo $'a\\'b' @",
            "cat <<<@",
            "echo a#b @",
            "cat <<EOF\nbody\nEOF\necho @",
            "cat <<-EOF\n\tbody\n\tEOF\necho @",
            "cat <<'EOF'\n$x\nEOF\necho @",
            "cat <<A <<B\na\nA\nb\nB\necho @",
            "echo $((1 + 2)) @",
            "echo `date` @",
            "case @ in (a) echo a;; esac",
        ] {
            assert_eq!(place(script), None, "{script:?}");
        }
    }

    #[test]
    fn places_quoting_cannot_protect_are_found() {
        for (script, expected) in [
            ("echo '@'", SINGLE),
            ("echo \"x @\"", DOUBLE),
            ("echo \\@", ESCAPED),
            ("echo $'@'", SINGLE),
            ("echo \"$x\"\"@\"", DOUBLE),
            ("echo `echo @`", BACKTICKS),
            ("echo \"`echo @`\"", BACKTICKS),
            ("echo $((@ + 1))", ARITHMETIC),
            ("echo $(( (1) + @ ))", ARITHMETIC),
            ("echo hi # @", COMMENT),
            ("# @\necho", COMMENT),
            ("cat <<EOF\n@\nEOF", HEREDOC),
            ("cat <<EOF\nx $(echo @) y\nEOF", HEREDOC),
            ("cat <<'EOF'\n@\nEOF", HEREDOC),
            ("cat <<\"EOF\"\n@\nEOF", HEREDOC),
            ("cat <<\\EOF\n@\nEOF", HEREDOC),
            ("cat <<-EOF\n\t@\n\tEOF", HEREDOC),
            ("cat <<@\nx\n", HEREDOC),
            ("cat <<A <<B\na\nA\n@\nB", HEREDOC),
            ("echo $(cat <<EOF\n@\nEOF\n)", HEREDOC),
            ("cat <<EOF\nEOFX\n@\nEOF\necho", HEREDOC),
            ("cat <<EOF; echo ok\n@\nEOF", HEREDOC),
        ] {
            assert_eq!(place(script), Some(expected), "{script:?}");
        }
    }

    #[test]
    fn the_body_ends_at_its_delimiter_line() {
        assert_eq!(place("cat <<EOF\nEOF\necho @"), None);
        assert_eq!(place("cat <<-EOF\n\t\tEOF\necho @"), None);
        // Without `-`, a tab-indented delimiter does not end the body.
        assert_eq!(place("cat <<EOF\n\tEOF\necho @\nEOF"), Some(HEREDOC));
        // A body left open runs to the end of the script.
        assert_eq!(place("cat <<EOF\nno end\n@"), Some(HEREDOC));
    }
}
