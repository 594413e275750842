//! Worker labels: `runner worker --label NAME` and a job's `runs_on`. A label is a
//! name: letters, digits, `_`, `.` and `-`, starting with a letter or a digit, at most
//! 64 characters (so that it reads well in messages and needs no quoting anywhere).

/// The longest label.
pub const LONGEST: usize = 64;

/// Why a text is not a label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadLabel {
    #[error("a label cannot be empty")]
    Empty,
    #[error("{0:?} is longer than 64 characters")]
    TooLong(String),
    #[error(
        "{0:?} is not a label (letters, digits, `_`, `.` and `-`, starting with a letter or a digit)"
    )]
    Characters(String),
}

/// Checks a label.
pub fn check(text: &str) -> Result<(), BadLabel> {
    if text.is_empty() {
        return Err(BadLabel::Empty);
    }
    if text.chars().count() > LONGEST {
        return Err(BadLabel::TooLong(text.to_string()));
    }
    let first = text
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric());
    let rest = text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if first && rest {
        Ok(())
    } else {
        Err(BadLabel::Characters(text.to_string()))
    }
}

/// `--label NAME` (clap's value parser).
pub fn parse(text: &str) -> Result<String, BadLabel> {
    check(text).map(|()| text.to_string())
}

/// The labels of `runs_on` that `have` lacks, in the order written.
pub fn missing<'a>(runs_on: &'a [String], have: &[String]) -> Vec<&'a str> {
    runs_on
        .iter()
        .filter(|l| !have.contains(l))
        .map(String::as_str)
        .collect()
}

/// Labels in words: `label gpu`, `labels gpu, cuda`.
pub fn words(labels: &[impl AsRef<str>]) -> String {
    let list: Vec<&str> = labels.iter().map(AsRef::as_ref).collect();
    match list.len() {
        1 => format!("label {}", list[0]),
        _ => format!("labels {}", list.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_names() {
        for ok in ["gpu", "x86_64", "zone-a", "v1.2", "A"] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
        assert_eq!(check(""), Err(BadLabel::Empty));
        for bad in ["-gpu", "gpu cuda", "a/b", "é", "_x"] {
            assert!(matches!(check(bad), Err(BadLabel::Characters(_))), "{bad}");
        }
        assert!(matches!(check(&"a".repeat(65)), Err(BadLabel::TooLong(_))));
        assert_eq!(
            missing(&["gpu".into(), "big".into()], &["big".into()]),
            ["gpu"]
        );
        assert_eq!(words(&["gpu"]), "label gpu");
        assert_eq!(words(&["gpu", "cuda"]), "labels gpu, cuda");
    }
}
