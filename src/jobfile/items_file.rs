//! Items files (`items = { file = "PATH" }`), read lazily: checked and counted once at
//! load time by streaming the file, then read again, line by line, as tasks start. The
//! runner never holds the file whole: memory is one line (at most [`LINE_MAX`]) whatever
//! the file's size.
//!
//! An item is one non-blank line. Each line must be UTF-8 without a NUL byte, and at
//! most [`LINE_MAX`] bytes: every task gets its item in `RUNNER_ITEM`, and Linux takes
//! no environment string longer than 128 KiB.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// The longest line an items file may hold (`RUNNER_ITEM=` plus the item must fit in
/// one environment string of 128 KiB).
pub const LINE_MAX: usize = 128 * 1024 - "RUNNER_ITEM=".len() - 1;

/// At most this many problems of one items file are listed; the rest are counted.
const PROBLEMS_SHOWN: usize = 5;

/// Why an items file cannot give its items.
#[derive(Debug, thiserror::Error)]
pub enum ItemsFileError {
    /// The file cannot be opened or read.
    #[error("cannot read items file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Lines that are not items (at load): the first few, and how many more.
    #[error("items file {}: {}{}", path.display(), list(problems), more_lines(*more))]
    BadLines {
        path: PathBuf,
        problems: Vec<BadLine>,
        more: u64,
    },
    /// The file is not what it was when it was checked (during the run).
    #[error("items file {} changed since the run started: {change}", path.display())]
    Changed { path: PathBuf, change: Change },
}

/// A line of an items file that cannot be an item, with its 1-based number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadLine {
    pub line: u64,
    pub problem: LineProblem,
}

/// What is wrong with a line of an items file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LineProblem {
    #[error("is longer than an item may be (128 KiB: every task gets its item in RUNNER_ITEM)")]
    TooLong,
    #[error("holds a NUL byte, which no process can be given")]
    Nul,
    #[error("is not UTF-8 text")]
    NotUtf8,
}

/// How an items file changed since it was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Change {
    /// It has fewer items than the task's index (`item` is 1-based).
    #[error("it has no item {item}")]
    NoItem { item: u64 },
    #[error("line {line} is no longer an item")]
    NotAnItem { line: u64 },
    #[error("line {line} is not UTF-8 text")]
    NotUtf8 { line: u64 },
}

fn list(problems: &[BadLine]) -> String {
    let each: Vec<String> = problems
        .iter()
        .map(|p| format!("line {} {}", p.line, p.problem))
        .collect();
    each.join("; ")
}

fn more_lines(more: u64) -> String {
    match more {
        0 => String::new(),
        n => format!(" (and {n} more lines like these)"),
    }
}

/// Counts the items of `path`, checking every line; the error lists the first problems
/// (with their line numbers) and counts the rest.
pub fn count(path: &Path) -> Result<u64, ItemsFileError> {
    let unreadable = |source| ItemsFileError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(unreadable)?;
    let mut lines = Lines::new(file);
    let mut count = 0u64;
    let mut problems = Vec::new();
    let mut more = 0u64;
    loop {
        match lines.next_line() {
            Ok(None) => break,
            Ok(Some(line)) => {
                let problem = if line.len() > LINE_MAX {
                    Some(LineProblem::TooLong)
                } else if line.contains(&0) {
                    Some(LineProblem::Nul)
                } else if std::str::from_utf8(line).is_err() {
                    Some(LineProblem::NotUtf8)
                } else {
                    None
                };
                match problem {
                    Some(problem) if problems.len() < PROBLEMS_SHOWN => {
                        problems.push(BadLine {
                            line: lines.number,
                            problem,
                        });
                    }
                    Some(_) => more += 1,
                    None if is_blank(line) => {}
                    None => count += 1,
                }
            }
            Err(e) => return Err(unreadable(e)),
        }
    }
    if problems.is_empty() {
        return Ok(count);
    }
    Err(ItemsFileError::BadLines {
        path: path.to_path_buf(),
        problems,
        more,
    })
}

/// Reads the items of a file in order, as tasks start.
pub struct ItemReader {
    path: PathBuf,
    lines: Option<Lines>,
    /// The index of the next item `lines` gives.
    next: u64,
}

impl ItemReader {
    pub fn new(path: &Path) -> ItemReader {
        ItemReader {
            path: path.to_path_buf(),
            lines: None,
            next: 0,
        }
    }

    /// The item at `index`. Items are asked for in increasing order (the file is read
    /// on from where it was; an earlier index reads it again from the start). The error
    /// says what went wrong: the file changed since it was checked, or cannot be read.
    pub fn item(&mut self, index: u64) -> Result<String, ItemsFileError> {
        let unreadable = |source| ItemsFileError::Read {
            path: self.path.clone(),
            source,
        };
        if self.lines.is_none() || index < self.next {
            let file = File::open(&self.path).map_err(unreadable)?;
            self.lines = Some(Lines::new(file));
            self.next = 0;
        }
        let lines = self.lines.as_mut().expect("opened above");
        let changed = |change| ItemsFileError::Changed {
            path: self.path.clone(),
            change,
        };
        loop {
            let line = match lines.next_line() {
                Ok(Some(line)) => line,
                Ok(None) => return Err(changed(Change::NoItem { item: index + 1 })),
                Err(e) => return Err(unreadable(e)),
            };
            if is_blank(line) {
                continue;
            }
            let at = self.next;
            self.next += 1;
            if at < index {
                continue;
            }
            if line.len() > LINE_MAX || line.contains(&0) {
                return Err(changed(Change::NotAnItem { line: lines.number }));
            }
            return String::from_utf8(line.to_vec())
                .map_err(|_| changed(Change::NotUtf8 { line: lines.number }));
        }
    }
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

/// Lines of a file without their line ends, none held longer than [`LINE_MAX`] + 1
/// bytes: past that a line is cut (and so reported too long), and the rest of it
/// skipped without being kept.
struct Lines {
    reader: BufReader<File>,
    line: Vec<u8>,
    /// The 1-based number of the line last returned.
    number: u64,
}

impl Lines {
    fn new(file: File) -> Lines {
        Lines {
            reader: BufReader::with_capacity(64 * 1024, file),
            line: Vec::new(),
            number: 0,
        }
    }

    fn next_line(&mut self) -> std::io::Result<Option<&[u8]>> {
        self.line.clear();
        let mut any = false;
        loop {
            let buffer = self.reader.fill_buf()?;
            if buffer.is_empty() {
                break;
            }
            any = true;
            let (part, end) = match memchr::memchr(b'\n', buffer) {
                Some(i) => (&buffer[..i], Some(i + 1)),
                None => (buffer, None),
            };
            let room = (LINE_MAX + 1).saturating_sub(self.line.len());
            self.line.extend_from_slice(&part[..part.len().min(room)]);
            let used = end.unwrap_or(buffer.len());
            self.reader.consume(used);
            if end.is_some() {
                break;
            }
        }
        if !any {
            return Ok(None);
        }
        self.number += 1;
        if self.line.last() == Some(&b'\r') {
            self.line.pop();
        }
        Ok(Some(&self.line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &[u8]) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn items_are_counted_and_read_in_order() {
        let f = file(b"a\n\n  \nb c\r\nlast");
        assert_eq!(count(f.path()).unwrap(), 3);
        let mut reader = ItemReader::new(f.path());
        assert_eq!(reader.item(0).unwrap(), "a");
        assert_eq!(reader.item(2).unwrap(), "last");
        // Backwards: read again from the start.
        assert_eq!(reader.item(1).unwrap(), "b c");
        let err = reader.item(3).unwrap_err();
        assert!(matches!(
            err,
            ItemsFileError::Changed {
                change: Change::NoItem { item: 4 },
                ..
            }
        ));
        let err = err.to_string();
        assert!(
            err.contains("changed since the run started: it has no item 4"),
            "{err}"
        );
    }

    #[test]
    fn bad_lines_are_listed_with_their_numbers() {
        let long = vec![b'x'; LINE_MAX + 10];
        let mut text = b"ok\nbad\0\n".to_vec();
        text.extend_from_slice(&long);
        text.extend_from_slice(b"\n\xff\n");
        for _ in 0..10 {
            text.extend_from_slice(b"\0\n");
        }
        let f = file(&text);
        let err = count(f.path()).unwrap_err().to_string();
        assert!(err.contains("line 2 holds a NUL byte"), "{err}");
        assert!(
            err.contains("line 3 is longer than an item may be"),
            "{err}"
        );
        assert!(err.contains("line 4 is not UTF-8 text"), "{err}");
        assert!(err.contains("(and 8 more lines like these)"), "{err}");
        assert!(err.len() < 1000, "{err}");
    }
}
