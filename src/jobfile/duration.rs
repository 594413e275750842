//! Durations as the user writes them ("500ms", "10s", "2m"), with the bounds each setting
//! allows. One ceiling for every duration that is added to a clock reading (a task's
//! timeout, a retry delay, the grace period, a lease): far above any real need, and low
//! enough that `Instant::now() + d` can never overflow.

use std::time::Duration;

/// 30 days: the longest `timeout`, `retry_delay`, `--grace` or `--lease`.
pub const CEILING: Duration = Duration::from_secs(30 * 24 * 3600);

/// The range a setting accepts.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub min: Duration,
    pub max: Duration,
    /// Why the floor is there, for the message ("" when the floor is 0).
    pub why_min: &'static str,
}

impl Bounds {
    /// From 0 up to the ceiling.
    pub const ANY: Bounds = Bounds {
        min: Duration::ZERO,
        max: CEILING,
        why_min: "",
    };
}

/// Why a duration was refused. Shown after the setting's name: "`timeout` is not a
/// duration: …", "--lease is too short: …".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurationError {
    NotADuration(String),
    TooLong(String),
    TooShort(String),
}

impl std::fmt::Display for DurationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DurationError::NotADuration(e) => write!(f, "is not a duration: {e}"),
            DurationError::TooLong(e) => write!(f, "is too long: {e}"),
            DurationError::TooShort(e) => write!(f, "is too short: {e}"),
        }
    }
}

impl std::error::Error for DurationError {}

/// How to write one, for a note after [`DurationError::NotADuration`].
pub const FORM: &str = "write a duration like \"500ms\", \"10s\" or \"2m\"";

/// Parses `text` and checks it against `bounds`.
pub fn parse(text: &str, bounds: Bounds) -> Result<Duration, DurationError> {
    let d = humantime::parse_duration(text).map_err(|e| DurationError::NotADuration(reason(&e)))?;
    if d > bounds.max {
        return Err(DurationError::TooLong(format!(
            "{text:?} is more than {}",
            words(bounds.max)
        )));
    }
    if d < bounds.min {
        return Err(DurationError::TooShort(format!(
            "{text:?} is less than {}{}",
            words(bounds.min),
            bounds.why_min
        )));
    }
    Ok(d)
}

/// A bound in words: "30 days", "1h", "500ms" (humantime writes "30days").
fn words(d: Duration) -> String {
    let text = humantime::format_duration(d).to_string();
    text.replace("day", " day")
}

/// Why text is not a duration, in words: humantime says "expected number at 0".
fn reason(e: &humantime::DurationError) -> String {
    match e {
        humantime::DurationError::InvalidCharacter(_)
        | humantime::DurationError::NumberExpected(_) => "it needs a number and a unit".to_string(),
        humantime::DurationError::Empty => "it is empty".to_string(),
        // The units it knows, listed: already in words.
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_kept() {
        assert_eq!(parse("10s", Bounds::ANY), Ok(Duration::from_secs(10)));
        assert_eq!(parse("30days", Bounds::ANY), Ok(CEILING));
        let err = parse("18446744073709551615s", Bounds::ANY).unwrap_err();
        assert_eq!(
            err.to_string(),
            "is too long: \"18446744073709551615s\" is more than 30 days"
        );
        let floor = Bounds {
            min: Duration::from_secs(1),
            max: CEILING,
            why_min: " (why)",
        };
        assert_eq!(
            parse("1ms", floor).unwrap_err().to_string(),
            "is too short: \"1ms\" is less than 1s (why)"
        );
        assert!(matches!(
            parse("abc", Bounds::ANY),
            Err(DurationError::NotADuration(_))
        ));
    }

    #[test]
    fn the_ceiling_can_be_added_to_any_instant() {
        assert!(std::time::Instant::now().checked_add(CEILING).is_some());
    }
}
