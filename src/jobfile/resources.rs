//! What a task needs besides a pool slot: named resources (`[resources]`, a job's
//! `uses`) and start rates (`[rates]`, a job's `rate`). The model and the parsing of
//! their values (sizes through `parse-size`, binary: `"1G"` is 1 GiB); the checks with
//! their messages are `check::resources`.

use std::time::Duration;

/// Index of a resource in [`super::JobFile::resources`].
pub type ResourceId = usize;
/// Index of a rate in [`super::JobFile::rates`].
pub type RateId = usize;

/// One `[resources]` entry: what one machine has of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub name: String,
    pub capacity: u64,
    /// Written as a size (`"8G"`): amounts are shown as sizes.
    pub size: bool,
}

impl Resource {
    /// An amount of this resource in words: `2` or `1.5 GiB`.
    pub fn amount(&self, n: u64) -> String {
        if self.size {
            size_text(n)
        } else {
            n.to_string()
        }
    }
}

/// A start rate: at most `count` starts per `period`, spread evenly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rate {
    /// The name from `[rates]`, or the job's name for a job's own rate.
    pub name: String,
    pub count: u64,
    pub period: Duration,
    /// As written (`5/s`).
    pub text: String,
}

impl Rate {
    /// The time between two starts.
    pub fn interval(&self) -> Duration {
        self.period / self.count.clamp(1, u32::MAX as u64) as u32
    }
}

/// Why a rate was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateError {
    #[error("is not a rate: write N/s, N/m or N/h (e.g. \"5/s\")")]
    Form,
    #[error("must allow at least 1 start per period")]
    Zero,
    #[error("is more than 1,000,000 starts a second")]
    TooFast,
}

/// `"N/s"`, `"N/m"`, `"N/h"` (also `sec`, `min`, `hour` spelt out): the count and period.
pub fn parse_rate(text: &str) -> Result<(u64, Duration), RateError> {
    let (n, unit) = text.split_once('/').ok_or(RateError::Form)?;
    let n: u64 = n.trim().parse().map_err(|_| RateError::Form)?;
    let period = match unit.trim() {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "m" | "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        _ => return Err(RateError::Form),
    };
    if n == 0 {
        return Err(RateError::Zero);
    }
    if period / (n.min(u32::MAX as u64) as u32) < Duration::from_micros(1) {
        return Err(RateError::TooFast);
    }
    Ok((n, period))
}

/// A size such as `"8G"`, `"512M"`, `"1.5GiB"` in bytes (binary: K is 1024).
pub fn parse_size(text: &str) -> Option<u64> {
    parse_size::Config::new()
        .with_binary()
        .parse_size(text)
        .ok()
}

/// Bytes in words: `512 MiB`, `1.5 GiB`.
pub fn size_text(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let text = format!("{value:.1}");
    let text = text.strip_suffix(".0").unwrap_or(&text);
    format!("{text} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_sizes_are_read() {
        assert_eq!(parse_rate("5/s"), Ok((5, Duration::from_secs(1))));
        assert_eq!(parse_rate("30/m"), Ok((30, Duration::from_secs(60))));
        assert_eq!(parse_rate("2/h"), Ok((2, Duration::from_secs(3600))));
        assert_eq!(parse_rate("5"), Err(RateError::Form));
        assert_eq!(parse_rate("5/d"), Err(RateError::Form));
        assert_eq!(parse_rate("0/s"), Err(RateError::Zero));
        assert_eq!(parse_rate("-1/s"), Err(RateError::Form));
        assert_eq!(parse_rate("9000000/s"), Err(RateError::TooFast));
        assert_eq!(parse_size("8G"), Some(8 << 30));
        assert_eq!(parse_size("512M"), Some(512 << 20));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(size_text(1536 << 20), "1.5 GiB");
        assert_eq!(size_text(2 << 30), "2 GiB");
        assert_eq!(size_text(100), "100 B");
    }
}
