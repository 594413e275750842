//! The glob patterns of `sources` and `outputs`, after their placeholders were rendered:
//! each split into the folder a search starts from (its leading components without a
//! metacharacter) and a matcher for the rest, so that `data/{item}.csv` is one `stat`
//! and `src/**/*.rs` walks `src/` only.
//!
//! The syntax is `globset`'s, with `*` and `?` never matching `/`, `**` matching any
//! number of folders, `[…]` classes and `{a,b}` alternatives; `\` is an ordinary
//! character (`[*]` matches a literal `*`), so a value with a backslash in it stays
//! one name. Paths are relative to the task's cwd; absolute ones and `..` are allowed.
//! No I/O here: `jobfile` checks patterns with [`parse`] at load time, and
//! `state::files` searches with them.

use globset::{GlobBuilder, GlobMatcher};
use std::path::{Component, Path, PathBuf};

/// A pattern, parsed.
#[derive(Debug, Clone)]
pub struct Pattern {
    /// Where a search starts, relative to the task's cwd (or absolute); the path itself
    /// when the pattern has no metacharacter. `.` components are dropped.
    pub base: PathBuf,
    /// The rest, matched against paths relative to `base`; `None` for a plain path.
    pub glob: Option<GlobMatcher>,
    /// How many folders below `base` a match can be (`None`: any, for `**`).
    pub depth: Option<usize>,
}

/// Characters that make a component a pattern rather than a name. `\` is not one: it
/// is an ordinary character of a name (`[*]` matches a literal `*`).
const META: &[char] = &['*', '?', '[', ']', '{', '}'];

/// Why a text is not a pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("the pattern is empty")]
    Empty,
    /// What globset said of it (its kind only: the message that quotes the pattern
    /// says which one).
    #[error("{0}")]
    Glob(globset::ErrorKind),
    /// A brace group that is a whole folder name with an empty alternative (`a/{b,}/c`):
    /// it would make `a//c`, which names nothing.
    #[error("the empty alternative of {0} would leave an empty folder name; put the `/` inside the braces (`{{dir/,}}file`)")]
    EmptyFolderName(String),
}

/// Parses `text`: an error says what is wrong with it, in globset's words.
pub fn parse(text: &str) -> Result<Pattern, PatternError> {
    if text.is_empty() {
        return Err(PatternError::Empty);
    }
    let absolute = text.starts_with('/');
    let parts: Vec<&str> = text
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    let literal = parts
        .iter()
        .position(|p| p.contains(META))
        .unwrap_or(parts.len());
    let mut base = PathBuf::from(if absolute { "/" } else { "" });
    for part in &parts[..literal] {
        base.push(part);
    }
    if literal == parts.len() {
        return Ok(Pattern {
            base,
            glob: None,
            depth: Some(0),
        });
    }
    let rest = parts[literal..].join("/");
    empty_component(&rest)?;
    let glob = GlobBuilder::new(&rest)
        .literal_separator(true)
        .backslash_escape(false)
        // `data{,2}/*.csv` is `data/*.csv` and `data2/*.csv`: an empty alternative is
        // one (globset ignores it by default).
        .empty_alternates(true)
        .build()
        .map_err(|e| PatternError::Glob(e.kind().clone()))?;
    let depth =
        (!parts[literal..].iter().any(|p| p.contains("**"))).then_some(parts.len() - literal);
    Ok(Pattern {
        base,
        glob: Some(glob.compile_matcher()),
        depth,
    })
}

/// Refuses an alternation that is a whole path component with an empty alternative
/// (`a/{b,}/c`): the empty one would name the folder `a//c`, which no path is, so part
/// of the pattern would silently match nothing. `a/{b/,}c` says it.
fn empty_component(glob: &str) -> Result<(), PatternError> {
    let bytes = glob.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            // A class (`[{]`) holds no alternation.
            b'[' => {
                let from = i + 1 + usize::from(bytes.get(i + 1) == Some(&b']'));
                i = glob[from..]
                    .find(']')
                    .map_or(bytes.len(), |end| from + end + 1);
            }
            b'{' => {
                let Some(len) = glob[i..].find('}') else {
                    return Ok(());
                };
                let group = &glob[i..=i + len];
                let whole = (i == 0 || bytes[i - 1] == b'/')
                    && matches!(bytes.get(i + len + 1), None | Some(b'/'));
                if whole && group[1..group.len() - 1].split(',').any(str::is_empty) {
                    return Err(PatternError::EmptyFolderName(group.to_string()));
                }
                i += len + 1;
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// A name as text: bytes that are not UTF-8 written `\xFF`, so that two names that
/// differ only there stay two names.
fn push_name(out: &mut String, name: &std::ffi::OsStr) {
    for chunk in name.as_encoded_bytes().utf8_chunks() {
        // Control characters (a line feed in a name) are written as `\xNN` too: names
        // are quoted in one-line messages and logs.
        for c in chunk.valid().chars() {
            if c.is_control() {
                out.push_str(&format!("\\x{:02X}", c as u32));
            } else {
                out.push(c);
            }
        }
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02X}"));
        }
    }
}

/// A path as a pattern's matches are named: its components joined by `/`, without `.`.
pub fn shown(path: &Path) -> String {
    let mut out = String::new();
    for c in path.components() {
        match c {
            Component::RootDir => out.push('/'),
            Component::CurDir => {}
            other => {
                if !out.is_empty() && !out.ends_with('/') {
                    out.push('/');
                }
                push_name(&mut out, other.as_os_str());
            }
        }
    }
    if out.is_empty() {
        out.push('.');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pattern_starts_its_search_at_its_literal_folders() {
        let p = parse("data/in/*.csv").unwrap();
        assert_eq!(p.base, PathBuf::from("data/in"));
        assert_eq!(p.depth, Some(1));
        assert!(p.glob.as_ref().unwrap().is_match("a.csv"));
        assert!(!p.glob.as_ref().unwrap().is_match("sub/a.csv"));
        let p = parse("./src/**/*.rs").unwrap();
        assert_eq!(p.base, PathBuf::from("src"));
        assert_eq!(p.depth, None);
        assert!(p.glob.as_ref().unwrap().is_match("a/b/c.rs"));
        assert!(p.glob.as_ref().unwrap().is_match("c.rs"));
        let p = parse("../shared/x.txt").unwrap();
        assert_eq!(p.base, PathBuf::from("../shared/x.txt"));
        assert!(p.glob.is_none());
        let p = parse("/etc/*.conf").unwrap();
        assert_eq!(p.base, PathBuf::from("/etc"));
        let p = parse("*.{c,h}").unwrap();
        assert_eq!(p.base, PathBuf::from(""));
        assert!(p.glob.as_ref().unwrap().is_match("x.h"));
    }

    #[test]
    fn an_escaped_item_matches_only_itself() {
        let item = globset::escape("a*[b].csv");
        let p = parse(&format!("in/{item}")).unwrap();
        assert!(p.glob.as_ref().unwrap().is_match("a*[b].csv"));
        assert!(!p.glob.as_ref().unwrap().is_match("axb.csv"));
    }

    #[test]
    fn a_backslash_is_part_of_a_name() {
        let p = parse(&format!("d/{}", globset::escape("a\\*"))).unwrap();
        let glob = p.glob.as_ref().unwrap();
        assert!(glob.is_match("a\\*"));
        assert!(!glob.is_match("a[zz]") && !glob.is_match("a*"));
        let p = parse("d/a\\b").unwrap();
        assert!(p.glob.is_none());
        assert_eq!(p.base, PathBuf::from("d/a\\b"));
    }

    #[test]
    fn an_empty_alternative_is_one() {
        let p = parse("data{,2}/*.csv").unwrap();
        let glob = p.glob.as_ref().unwrap();
        assert!(glob.is_match("data/a.csv") && glob.is_match("data2/a.csv"));
        assert_eq!(p.depth, Some(2));
        let p = parse("d/{sub/,}x.txt").unwrap();
        assert_eq!(p.base, PathBuf::from("d"));
        let glob = p.glob.as_ref().unwrap();
        assert!(glob.is_match("x.txt") && glob.is_match("sub/x.txt"));
        for bad in ["a/{b,}/c", "{,a}/x", "x/{a,}", "{,a/b}"] {
            assert!(
                parse(bad)
                    .unwrap_err()
                    .to_string()
                    .contains("empty folder name"),
                "{bad}"
            );
        }
        assert!(parse("a/[{],/c").is_ok());
    }

    #[test]
    fn a_broken_pattern_says_why() {
        assert!(parse("src/[a")
            .unwrap_err()
            .to_string()
            .contains("unclosed character class"));
        assert!(parse("{a,b").unwrap_err().to_string().contains("unclosed"));
        assert_eq!(parse("").unwrap_err(), PatternError::Empty);
        assert_eq!(parse("").unwrap_err().to_string(), "the pattern is empty");
    }

    #[test]
    fn shown_paths_drop_dots() {
        assert_eq!(shown(Path::new("./a/./b.txt")), "a/b.txt");
        assert_eq!(shown(Path::new("/x/y")), "/x/y");
        assert_eq!(shown(Path::new("../x")), "../x");
        use std::os::unix::ffi::OsStrExt;
        let a = std::ffi::OsStr::from_bytes(b"d/a\xff");
        let b = std::ffi::OsStr::from_bytes(b"d/a\xfe");
        assert_eq!(shown(Path::new(a)), "d/a\\xFF");
        assert_ne!(shown(Path::new(a)), shown(Path::new(b)));
    }
}
