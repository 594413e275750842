//! Sizes, read and written one way everywhere: `[resources]` and `uses`, `--memfree`,
//! `runner worker --resource`, `--cache-max-entry`, `runner cache prune --max-size`,
//! and every size the runner prints. Units are binary whatever their spelling (`8G`,
//! `8GB` and `8GiB` are all 8 × 2³⁰ bytes), as memory is counted; the parse-size crate
//! reads them.

/// A size as written: `8G`, `512 MiB`, `1.5GB`, `1024` (bytes).
pub fn parse(text: &str) -> Result<u64, parse_size::Error> {
    parse_size::Config::new().with_binary().parse_size(text)
}

/// A size in the units people read: `512 B`, `3.4 KiB`, `2 GiB` (one decimal, none
/// when it is 0).
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
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
    fn sizes_read_binary_and_print_short() {
        assert_eq!(parse("8G").unwrap(), 8 << 30);
        assert_eq!(parse("8GB").unwrap(), 8 << 30);
        assert_eq!(parse("512 MiB").unwrap(), 512 << 20);
        assert_eq!(parse("1024").unwrap(), 1024);
        assert!(parse("lots").is_err());
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1023), "1023 B");
        assert_eq!(human(10 * 1024), "10 KiB");
        assert_eq!(human(1536 << 20), "1.5 GiB");
        assert_eq!(human(2 << 30), "2 GiB");
    }
}
