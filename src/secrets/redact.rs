//! Redaction: every exact occurrence of a secret's value replaced by `***`, with
//! aho-corasick (all values at once, leftmost-longest: of two values starting at one
//! place the longer is replaced). [`Stream`] does it over a stream read in pieces,
//! holding back only the end of a piece that could be the start of a value, so that a
//! value split across two reads is still found and a line that holds none is never
//! delayed.

use aho_corasick::{AhoCorasick, MatchKind};
use std::borrow::Cow;

/// What a value becomes.
pub const MASK: &[u8] = b"***";

/// The values to redact and their matcher.
#[derive(Debug)]
pub struct Patterns {
    matcher: Option<AhoCorasick>,
    values: Vec<Vec<u8>>,
    /// The longest value's length.
    longest: usize,
}

impl Patterns {
    pub fn new<'v>(values: impl IntoIterator<Item = &'v [u8]>) -> Patterns {
        let values: Vec<Vec<u8>> = values
            .into_iter()
            .filter(|v| !v.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        // Building fails only past limits no handful of secrets comes near; then no
        // redaction would be wrong, so fall back to the plain search below.
        let matcher = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&values)
            .ok();
        let longest = values.iter().map(Vec::len).max().unwrap_or(0);
        Patterns {
            matcher,
            values,
            longest,
        }
    }

    /// The matches in `haystack`, leftmost-longest, as (start, end).
    fn matches<'h>(&'h self, haystack: &'h [u8]) -> Box<dyn Iterator<Item = (usize, usize)> + 'h> {
        match &self.matcher {
            Some(m) => Box::new(m.find_iter(haystack).map(|m| (m.start(), m.end()))),
            None => Box::new(naive(&self.values, haystack)),
        }
    }

    /// `text` with every value replaced (borrowed when there was none).
    pub fn replace<'t>(&self, text: &'t [u8]) -> Cow<'t, [u8]> {
        let mut out = Vec::new();
        let mut pos = 0;
        for (start, end) in self.matches(text) {
            out.extend_from_slice(&text[pos..start]);
            out.extend_from_slice(MASK);
            pos = end;
        }
        if pos == 0 {
            return Cow::Borrowed(text);
        }
        out.extend_from_slice(&text[pos..]);
        Cow::Owned(out)
    }

    /// How many bytes at the end of `data` could be the start of a value (a proper
    /// prefix of one): those must wait for the next read.
    fn pending(&self, data: &[u8]) -> usize {
        let most = self.longest.saturating_sub(1).min(data.len());
        (1..=most)
            .rev()
            .find(|&k| {
                let tail = &data[data.len() - k..];
                self.values
                    .iter()
                    .any(|v| v.len() > k && v.starts_with(tail))
            })
            .unwrap_or(0)
    }
}

/// Leftmost-longest matches without a matcher (only if building one failed).
fn naive<'h>(
    values: &'h [Vec<u8>],
    haystack: &'h [u8],
) -> impl Iterator<Item = (usize, usize)> + 'h {
    let mut at = 0;
    std::iter::from_fn(move || {
        while at < haystack.len() {
            let found = values
                .iter()
                .filter(|v| haystack[at..].starts_with(v))
                .map(Vec::len)
                .max();
            if let Some(len) = found {
                let m = (at, at + len);
                at += len;
                return Some(m);
            }
            at += 1;
        }
        None
    })
}

/// Redaction of one stream read in pieces.
#[derive(Debug)]
pub struct Stream {
    patterns: std::sync::Arc<Patterns>,
    /// The end of the last piece, which could be the start of a value.
    held: Vec<u8>,
    /// Where a piece is joined to what was held (kept for its capacity).
    joined: Vec<u8>,
    out: Vec<u8>,
}

impl Stream {
    pub fn new(patterns: std::sync::Arc<Patterns>) -> Stream {
        Stream {
            patterns,
            held: Vec::new(),
            joined: Vec::new(),
            out: Vec::new(),
        }
    }

    /// Takes a piece of the stream and gives `pass` what can go on, redacted (nothing,
    /// or one slice).
    pub fn push(&mut self, data: &[u8], pass: &mut dyn FnMut(&[u8])) {
        let mut joined = std::mem::take(&mut self.joined);
        let buf: &[u8] = if self.held.is_empty() {
            data
        } else {
            joined.clear();
            joined.extend_from_slice(&self.held);
            joined.extend_from_slice(data);
            &joined
        };
        // A match starting before `safe` is whole in `buf`: no value starting there
        // can be longer than what `buf` still holds (else its end would be pending).
        let safe = buf.len() - self.patterns.pending(buf);
        self.out.clear();
        let mut pos = 0;
        for (start, end) in self.patterns.matches(buf) {
            if start >= safe {
                break;
            }
            self.out.extend_from_slice(&buf[pos..start]);
            self.out.extend_from_slice(MASK);
            pos = end;
        }
        let end = pos.max(safe);
        if self.out.is_empty() {
            if end > 0 {
                pass(&buf[..end]);
            }
        } else {
            self.out.extend_from_slice(&buf[pos..end]);
            pass(&self.out);
        }
        self.held.clear();
        self.held.extend_from_slice(&buf[end..]);
        self.joined = joined;
    }

    /// The stream ended: what was held back goes on.
    pub fn finish(&mut self, pass: &mut dyn FnMut(&[u8])) {
        let held = std::mem::take(&mut self.held);
        if !held.is_empty() {
            pass(&self.patterns.replace(&held));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn patterns(values: &[&str]) -> Arc<Patterns> {
        Arc::new(Patterns::new(values.iter().map(|v| v.as_bytes())))
    }

    /// `pieces` through a stream, all that came out.
    fn through(values: &[&str], pieces: &[&str]) -> String {
        let mut stream = Stream::new(patterns(values));
        let mut out = Vec::new();
        for piece in pieces {
            stream.push(piece.as_bytes(), &mut |b| out.extend_from_slice(b));
        }
        stream.finish(&mut |b| out.extend_from_slice(b));
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn exact_occurrences_only() {
        assert_eq!(
            through(&["LIVE"], &["DELIVERY LIVE live\n"]),
            "DE***RY *** live\n"
        );
    }

    #[test]
    fn a_value_split_across_pieces_is_found_at_every_cut() {
        let text = "before hunter2secret after hunter2secret\n";
        for cut in 0..text.len() {
            for cut2 in cut..text.len() {
                let got = through(
                    &["hunter2secret"],
                    &[&text[..cut], &text[cut..cut2], &text[cut2..]],
                );
                assert_eq!(got, "before *** after ***\n", "cuts {cut} {cut2}");
            }
        }
    }

    #[test]
    fn the_longer_of_two_values_at_one_place_wins_across_pieces() {
        let values = ["abcd", "abcdefgh"];
        assert_eq!(through(&values, &["x abcd", "efgh y\n"]), "x *** y\n");
        assert_eq!(through(&values, &["x abcd", "efg y\n"]), "x ***efg y\n");
        assert_eq!(through(&values, &["x abcd"]), "x ***");
    }

    #[test]
    fn nothing_is_held_back_that_cannot_start_a_value() {
        let mut stream = Stream::new(patterns(&["secret-value"]));
        let mut out = Vec::new();
        stream.push(b"ready\n", &mut |b| out.extend_from_slice(b));
        assert_eq!(out, b"ready\n");
        out.clear();
        stream.push(b"a secr", &mut |b| out.extend_from_slice(b));
        assert_eq!(out, b"a ");
    }

    #[test]
    fn the_plain_search_agrees_with_the_matcher() {
        let values: Vec<Vec<u8>> = vec![b"abcd".to_vec(), b"abcdefgh".to_vec(), b"cdef".to_vec()];
        let hay = b"xxabcdefghabcdcdefabc";
        let p = Patterns::new(values.iter().map(Vec::as_slice));
        let fast: Vec<_> = p.matches(hay).collect();
        let slow: Vec<_> = naive(&values, hay).collect();
        assert_eq!(fast, slow);
    }
}
