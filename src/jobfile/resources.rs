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
            crate::size::human(n)
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
    }
}
