//! Where the bytes a task prints go: whole lines to the terminal writer (labelled there),
//! or into a queue, or held back (`--quiet`, grouped output) until the attempt ends and
//! then shown whole (with `--quiet`, only if it failed); a copy to a log file; and a
//! bounded tail of stderr for the summary.
//!
//! A line is passed on whole, whatever its length, up to a limit: [`ITEM_LIMIT`] for a
//! queue item (held in memory, as an item is), [`PRINTED_LIMIT`] for a printed line
//! (spilled to a temporary file past [`PIECE`], and sent to the writer as one
//! [`Event::LongLine`]). A line past its limit is never split: the sink refuses it
//! ([`Sink::refused`]), drops the rest of the stream, and the task is stopped and fails.
//!
//! Invariant: task output is redacted at the sink's entrance: [`Sink::write`] first
//! replaces every secret's value by `***` (`crate::secrets::Stream`, holding back the
//! end of a read that could start a value until the next read or the end), so that
//! every target, the log, the tail and whatever reads them sees redacted bytes only.
//!
//! Invariant: memory per task is bounded whatever it prints: a printed line is held in
//! memory up to `PIECE`, a queue line up to `ITEM_LIMIT`; held-back output spills to a
//! temporary file past 64 KiB (`crate::held`), and the tail keeps at most `TAIL_BYTES`.
//!
//! Longer than 400 lines: a line's way to every target, with its limits, and the unit
//! tests of each (about a third of the file).

use super::log::Log;
pub use crate::held::Held;
use crate::queue::Queue;
use crate::task::{Event, Stream};
use crossbeam_channel::Sender;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A printed line longer than this goes to the writer through a temporary file.
pub use crate::held::PIECE;
/// The longest queue item (and line of a remote producer): it is held in memory.
pub const ITEM_LIMIT: usize = 16 << 20;
/// The longest printed line (it is spilled to a temporary file while it grows).
pub const PRINTED_LIMIT: u64 = 256 << 20;
const TAIL_BYTES: usize = 8 * 1024;
/// How much of a line a service's `line` check looks at.
const LINE_LOOKED: usize = 64 * 1024;
pub const TAIL_LINES: usize = 10;

/// What a worker's task sends on towards the coordinator (`Context::remote`): the bytes
/// of its printed streams as they come (redacted here first), when each attempt's
/// process started, a marker that the task's output so far was sent, and, from the
/// worker's consumers, which tasks taken ahead run and their results: one ordered
/// channel, so that a result goes after its task's output without anyone waiting.
#[cfg_attr(not(feature = "distributed"), allow(dead_code))]
pub enum Remote {
    Bytes {
        /// `job/index`.
        task: Arc<str>,
        stream: Stream,
        data: Vec<u8>,
    },
    Started {
        task: Arc<str>,
        pid: u32,
        attempt: u32,
    },
    /// Answered once everything sent before it is on the broker (or dropped).
    Flush(crossbeam_channel::Sender<()>),
    /// A task taken ahead (`job/index`) now runs.
    Running(String),
    /// A task's result, sent after everything it printed and never committed before
    /// that is on the broker: `job/index`, its entry, and the signed result's fields.
    Result {
        task: String,
        id: String,
        fields: Vec<(String, Vec<u8>)>,
    },
}

pub struct Sink {
    stream: Stream,
    label: Arc<str>,
    target: Target,
    /// The line being read, while it is short enough to be held in memory.
    partial: Vec<u8>,
    /// The line being read, once it is too long for memory (printed lines only).
    long: Option<(File, u64)>,
    /// Whole lines passed on so far.
    lines: u64,
    /// Why a line was refused: the stream is dropped from there on.
    refused: Option<String>,
    log: Option<Log>,
    tail: Option<Tail>,
    /// This process's secrets, redacted before anything else sees the bytes.
    redact: Option<crate::secrets::Stream>,
    /// What the stream shows, kept for the results cache.
    capture: Option<crate::cache::run::Capture>,
    /// A service's `line` check, with the line being read (until it matched).
    watch: Option<LineWatch>,
    /// A worker's task: a copy of the bytes for the coordinator (`Remote::Bytes`), as
    /// they come; the send waits while the channel is full (the task's pipe fills, and
    /// the task waits too), so memory stays bounded.
    remote: Option<RemoteTo>,
}

/// Where a worker's task's bytes go (`Sink::remote`), and when to stop waiting for room.
struct RemoteTo {
    to: Sender<Remote>,
    /// `job/index`.
    task: Arc<str>,
    /// True once the run stops (Ctrl-C, TERM, fail-fast): a send waits no more.
    give_up: Arc<dyn Fn() -> bool + Send + Sync>,
    /// The attempt's timeout, from when its sinks were made: a send waits no longer.
    deadline: Option<Instant>,
    /// Gave up waiting once: from then on a piece is sent only if there is room.
    dropping: bool,
}

/// How often a send waiting for room in the channel to the coordinator looks at
/// whether it should stop waiting.
const REMOTE_WAIT: Duration = Duration::from_millis(50);

/// A service's `line` check on a stream: lines are looked at until one matches.
struct LineWatch {
    watch: Arc<crate::service::Watch>,
    services: Arc<crate::service::Services>,
    line: Vec<u8>,
}

enum Target {
    Display(Sender<Event>),
    Queue(Arc<Queue>, Arc<dyn Fn() -> bool + Send + Sync>),
    Spool(Held, Sender<Event>),
    Collect(Vec<u8>),
}

impl Sink {
    pub fn display(stream: Stream, label: Arc<str>, out: Sender<Event>) -> Sink {
        Sink::with(stream, label, Target::Display(out))
    }

    /// Lines go into `queue`; `give_up` is asked while the queue is full.
    pub fn queue(
        label: Arc<str>,
        queue: Arc<Queue>,
        give_up: Arc<dyn Fn() -> bool + Send + Sync>,
    ) -> Sink {
        Sink::with(Stream::Stdout, label, Target::Queue(queue, give_up))
    }

    /// Held back until [`Sink::release`]: shown only if the task failed.
    pub fn held(stream: Stream, label: Arc<str>, out: Sender<Event>) -> Sink {
        Sink::with(stream, label, Target::Spool(Held::default(), out))
    }

    /// Lines kept for a remote task's result (see [`Sink::take_collected`]).
    pub fn collect(label: Arc<str>) -> Sink {
        Sink::with(Stream::Stdout, label, Target::Collect(Vec::new()))
    }

    /// The collected lines, each ending in a newline.
    pub fn take_collected(&mut self) -> Vec<u8> {
        match &mut self.target {
            Target::Collect(lines) => std::mem::take(lines),
            _ => Vec::new(),
        }
    }

    fn with(stream: Stream, label: Arc<str>, target: Target) -> Sink {
        Sink {
            stream,
            label,
            target,
            partial: Vec::new(),
            long: None,
            lines: 0,
            refused: None,
            log: None,
            tail: None,
            redact: crate::secrets::patterns().map(crate::secrets::Stream::new),
            capture: None,
            watch: None,
            remote: None,
        }
    }

    /// Every byte (redacted) is also sent to the coordinator, as task `task`'s. While
    /// the channel is full (the coordinator reads slowly) the task's thread waits, but
    /// not past `timeout` from now nor once `give_up` is true: the thread also watches
    /// the task's timeout and the run's stop, which must not wait for the coordinator.
    pub fn remote(
        mut self,
        to: Sender<Remote>,
        task: Arc<str>,
        give_up: Arc<dyn Fn() -> bool + Send + Sync>,
        timeout: Option<Duration>,
    ) -> Sink {
        self.remote = Some(RemoteTo {
            to,
            task,
            give_up,
            deadline: timeout.map(|t| Instant::now() + t),
            dropping: false,
        });
        self
    }

    /// Every byte shown is also kept for the results cache (see [`Sink::take_capture`]).
    pub fn capture(mut self) -> Sink {
        self.capture = Some(crate::cache::run::Capture::new());
        self
    }

    /// What was kept for the cache, if it was asked for.
    pub fn take_capture(&mut self) -> Option<crate::cache::run::Capture> {
        self.capture.take()
    }

    /// Every byte also goes to this log file, from when [`Sink::open_log`] is called.
    pub fn log_to(mut self, log: Log) -> Sink {
        self.log = Some(log);
        self
    }

    /// The process started: its log file is created (or appended to, for a retry).
    pub fn open_log(&mut self) {
        if let Some(log) = &mut self.log {
            log.open();
        }
    }

    /// The log file's path, once it was opened.
    pub fn log_path(&self) -> Option<&Path> {
        self.log.as_ref().and_then(Log::opened_path)
    }

    /// Each line (redacted) is shown to a service's `line` check until one matches.
    pub fn watch_lines(
        mut self,
        watch: Arc<crate::service::Watch>,
        services: Arc<crate::service::Services>,
    ) -> Sink {
        self.watch = Some(LineWatch {
            watch,
            services,
            line: Vec::new(),
        });
        self
    }

    /// Looks for the line a service's check waits for.
    fn look(&mut self, data: &[u8]) {
        let Some(w) = &mut self.watch else { return };
        let mut rest = data;
        while let Some(nl) = memchr::memchr(b'\n', rest) {
            let room = LINE_LOOKED.saturating_sub(w.line.len());
            w.line.extend_from_slice(&rest[..nl.min(room)]);
            if w.watch.line(&w.line, &w.services) {
                self.watch = None;
                return;
            }
            w.line.clear();
            rest = &rest[nl + 1..];
        }
        let room = LINE_LOOKED.saturating_sub(w.line.len());
        w.line.extend_from_slice(&rest[..rest.len().min(room)]);
    }

    pub fn keep_tail(mut self) -> Sink {
        self.tail = Some(Tail::default());
        self
    }

    /// Why a line was refused (it was longer than the limit): the task must fail.
    pub fn refused(&self) -> Option<&str> {
        self.refused.as_deref()
    }

    /// How long a line may grow in memory, and how long at all.
    fn limits(&self) -> (usize, u64) {
        match self.target {
            Target::Queue(..) | Target::Collect(_) => (ITEM_LIMIT, ITEM_LIMIT as u64),
            Target::Display(_) | Target::Spool(..) => (PIECE, PRINTED_LIMIT),
        }
    }

    /// Takes bytes as read from the pipe: redacted first (the end of `data` that could
    /// start a secret's value waits for the next read, or [`Sink::finish`]), then
    /// passed on.
    pub fn write(&mut self, data: &[u8]) {
        match self.redact.take() {
            None => self.pass(data),
            Some(mut redact) => {
                redact.push(data, &mut |clean| self.pass(clean));
                self.redact = Some(redact);
            }
        }
    }

    /// Bytes already redacted, to every target. Whatever keeps a copy of a task's output
    /// (the log, the tail, a capture for the results cache) takes it here, never in
    /// [`Sink::write`], so that it never holds a secret.
    fn pass(&mut self, data: &[u8]) {
        if let Some(log) = &mut self.log {
            log.write(data);
        }
        if let Some(capture) = &mut self.capture {
            capture.write(data);
        }
        if let Some(tail) = &mut self.tail {
            tail.push(data);
        }
        if self.watch.is_some() {
            self.look(data);
        }
        if let (Some(remote), false) = (&mut self.remote, data.is_empty()) {
            remote.send(self.stream, data);
        }
        if self.refused.is_some() {
            return;
        }
        let mut batch = Vec::new();
        let mut rest = data;
        while let Some(nl) = memchr::memchr(b'\n', rest) {
            if self.long.is_none() && self.partial.is_empty() {
                // Whole lines at once when none of them can be too long.
                let cut = memchr::memrchr(b'\n', rest).map_or(0, |i| i + 1);
                if cut <= self.limits().0 {
                    self.lines += memchr::memchr_iter(b'\n', &rest[..cut]).count() as u64;
                    batch.extend_from_slice(&rest[..cut]);
                    rest = &rest[cut..];
                    break;
                }
            }
            self.end_line(&rest[..nl], &mut batch);
            if self.refused.is_some() {
                return;
            }
            rest = &rest[nl + 1..];
        }
        if !batch.is_empty() {
            self.emit(batch);
        }
        if !rest.is_empty() {
            if self.long.is_none() && self.partial.len() + rest.len() <= self.limits().0 {
                self.partial.extend_from_slice(rest);
            } else {
                self.grow(rest);
            }
        }
    }

    /// `end` ends the line being read: a short line joins `batch`, a long one is passed
    /// on by itself (after `batch`, to keep the order).
    fn end_line(&mut self, end: &[u8], batch: &mut Vec<u8>) {
        if self.long.is_none() && self.partial.len() + end.len() <= self.limits().0 {
            self.lines += 1;
            batch.append(&mut self.partial);
            batch.extend_from_slice(end);
            batch.push(b'\n');
            return;
        }
        if !batch.is_empty() {
            self.emit(std::mem::take(batch));
        }
        self.grow(end);
        if self.refused.is_some() {
            return;
        }
        self.lines += 1;
        match self.long.take() {
            Some((file, len)) => self.emit_long(file, len),
            None => {
                let mut line = std::mem::take(&mut self.partial);
                line.push(b'\n');
                self.emit(line);
            }
        }
    }

    /// Adds to a line past what memory holds for this target: in memory up to the
    /// limit (queue items), or in a temporary file (printed lines); past the limit, the
    /// line is refused.
    fn grow(&mut self, data: &[u8]) {
        let (memory, limit) = self.limits();
        let len = self.partial.len() as u64 + self.long.as_ref().map_or(0, |l| l.1);
        if len + data.len() as u64 > limit {
            self.refuse(limit);
            return;
        }
        if memory as u64 >= limit {
            self.partial.extend_from_slice(data);
            return;
        }
        let spilled = match self.long.take() {
            Some(long) => Ok(long),
            None => tempfile::tempfile().map(|file| (file, 0)),
        }
        .and_then(|(mut file, len)| {
            file.write_all(&self.partial)?;
            file.write_all(data)?;
            Ok((file, len + (self.partial.len() + data.len()) as u64))
        });
        self.partial = Vec::new();
        match spilled {
            Ok(long) => self.long = Some(long),
            Err(e) => {
                self.refused = Some(format!(
                    "line {} of {} is longer than {} and cannot be held: temporary file: {e}",
                    self.lines + 1,
                    self.stream_name(),
                    crate::size::human(PIECE as u64)
                ));
            }
        }
    }

    fn refuse(&mut self, limit: u64) {
        let what = match self.target {
            Target::Queue(..) | Target::Collect(_) => "a queue item",
            Target::Display(_) | Target::Spool(..) => "a printed line",
        };
        self.refused = Some(format!(
            "line {} of {} is longer than {}, the most {what} may hold; the task was stopped",
            self.lines + 1,
            self.stream_name(),
            crate::size::human(limit)
        ));
        self.partial = Vec::new();
        self.long = None;
    }

    fn stream_name(&self) -> &'static str {
        match self.stream {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    /// The pipe is closed: a last line without a newline still counts as a line.
    pub fn finish(&mut self) {
        if let Some(mut redact) = self.redact.take() {
            redact.finish(&mut |clean| self.pass(clean));
            self.redact = Some(redact);
        }
        if self.refused.is_none() && (!self.partial.is_empty() || self.long.is_some()) {
            let mut batch = Vec::new();
            self.end_line(&[], &mut batch);
            if !batch.is_empty() {
                self.emit(batch);
            }
        }
        if let Some(log) = &mut self.log {
            log.flush();
        }
    }

    fn emit(&mut self, lines: Vec<u8>) {
        match &mut self.target {
            Target::Display(out) => {
                let _ = out.send(Event::Output {
                    stream: self.stream,
                    label: self.label.clone(),
                    data: lines,
                });
            }
            Target::Queue(queue, give_up) => {
                let give_up = give_up.clone();
                let _ = queue.push(&lines, &*give_up);
            }
            Target::Spool(spool, _) => spool.write(&lines),
            Target::Collect(collected) => collected.extend_from_slice(&lines),
        }
    }

    /// A printed line of `len` bytes (without its newline), in `file`.
    fn emit_long(&mut self, mut file: File, len: u64) {
        match &mut self.target {
            Target::Display(out) => {
                let _ = out.send(Event::LongLine {
                    stream: self.stream,
                    label: self.label.clone(),
                    file,
                    len,
                });
            }
            Target::Spool(spool, _) => {
                if file.rewind().is_ok() {
                    let mut bytes = file.take(len);
                    spool.copy(&mut bytes);
                    spool.write(b"\n");
                }
            }
            Target::Queue(..) | Target::Collect(_) => {}
        }
    }

    /// For held-back output: show it (`show`) or drop it. It is shown as it was read:
    /// through a display sink, so that long lines go to the writer the same way.
    pub fn release(&mut self, show: bool) {
        let Target::Spool(spool, out) = &mut self.target else {
            return;
        };
        let mut spool = std::mem::take(spool);
        if show {
            let mut display = Sink::display(self.stream, self.label.clone(), out.clone());
            // Held bytes were redacted as they came in.
            display.redact = None;
            spool.replay(&mut |data| display.write(data));
            display.finish();
        }
    }

    /// For grouped output: what was held back, to be printed in one piece by the
    /// terminal writer (`Event::Group`); `None` when nothing was printed.
    pub fn take_held(&mut self) -> Option<Held> {
        match &mut self.target {
            Target::Spool(spool, _) if !spool.is_empty() => Some(std::mem::take(spool)),
            _ => None,
        }
    }

    /// The last lines written, and whether earlier ones were cut.
    pub fn tail(&self) -> (Vec<String>, bool) {
        match &self.tail {
            Some(tail) => tail.lines(),
            None => (Vec::new(), false),
        }
    }
}

/// The last bytes of a stream.
#[derive(Default)]
struct Tail {
    bytes: VecDeque<u8>,
    dropped: bool,
}

impl Tail {
    fn push(&mut self, data: &[u8]) {
        let data = if data.len() > TAIL_BYTES {
            self.dropped = true;
            self.bytes.clear();
            &data[data.len() - TAIL_BYTES..]
        } else {
            data
        };
        let overflow = (self.bytes.len() + data.len()).saturating_sub(TAIL_BYTES);
        if overflow > 0 {
            self.dropped = true;
            self.bytes.drain(..overflow);
        }
        self.bytes.extend(data);
    }

    fn lines(&self) -> (Vec<String>, bool) {
        let bytes: Vec<u8> = self.bytes.iter().copied().collect();
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(TAIL_LINES);
        let cut = self.dropped || start > 0;
        (lines[start..].iter().map(|l| l.to_string()).collect(), cut)
    }
}

impl RemoteTo {
    /// Sends a piece, waiting for room unless the run stops or the attempt's timeout
    /// passed: then the piece, and any later one that finds no room, is dropped (the
    /// task is being stopped; what it printed is still in its log and tail here).
    fn send(&mut self, stream: Stream, data: &[u8]) {
        let mut piece = Remote::Bytes {
            task: self.task.clone(),
            stream,
            data: data.to_vec(),
        };
        loop {
            if self.dropping {
                let _ = self.to.try_send(piece);
                return;
            }
            match self.to.send_timeout(piece, REMOTE_WAIT) {
                Ok(()) | Err(crossbeam_channel::SendTimeoutError::Disconnected(_)) => return,
                Err(crossbeam_channel::SendTimeoutError::Timeout(back)) => {
                    piece = back;
                    let late = self.deadline.is_some_and(|d| Instant::now() >= d);
                    if late || (self.give_up)() {
                        self.dropping = true;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_whole_and_the_last_partial_line_counts() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut sink = Sink::display(Stream::Stdout, "j".into(), tx);
        sink.write(b"ab");
        sink.write(b"c\nd");
        sink.write(b"e\nf");
        sink.finish();
        let got: Vec<Vec<u8>> = rx
            .try_iter()
            .map(|e| match e {
                Event::Output { data, .. } => data,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(
            got,
            vec![b"abc\n".to_vec(), b"de\n".to_vec(), b"f\n".to_vec()]
        );
    }

    /// What a display sink sent: short lines as they are, a long line as "<long N>".
    fn sent(rx: &crossbeam_channel::Receiver<Event>) -> Vec<String> {
        rx.try_iter()
            .map(|e| match e {
                Event::Output { data, .. } => String::from_utf8(data).unwrap(),
                Event::LongLine { mut file, len, .. } => {
                    file.rewind().unwrap();
                    let mut text = String::new();
                    file.read_to_string(&mut text).unwrap();
                    assert_eq!(text.len() as u64, len);
                    assert!(text.bytes().all(|b| b == b'x'));
                    format!("<long {len}>")
                }
                _ => unreachable!(),
            })
            .collect()
    }

    #[test]
    fn a_long_line_goes_whole_in_order_between_short_ones() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut sink = Sink::display(Stream::Stdout, "j".into(), tx);
        let long = vec![b'x'; PIECE + 10];
        sink.write(b"a\nxx");
        for piece in long[2..].chunks(1000) {
            sink.write(piece);
        }
        sink.write(b"\nb\nc\n");
        sink.write(&long);
        sink.finish();
        assert_eq!(
            sent(&rx),
            [
                "a\n",
                &format!("<long {}>", PIECE + 10),
                "b\nc\n",
                &format!("<long {}>", PIECE + 10)
            ]
        );
        assert!(sink.refused().is_none());
    }

    #[test]
    fn a_queue_line_past_the_limit_is_refused_never_split() {
        let mut sink = Sink::collect("j".into());
        sink.write(b"one\ntwo\n");
        let piece = vec![b'x'; PIECE];
        for _ in 0..=ITEM_LIMIT / PIECE {
            sink.write(&piece);
        }
        sink.write(b"\nthree\n");
        sink.finish();
        assert_eq!(
            sink.refused(),
            Some("line 3 of stdout is longer than 16 MiB, the most a queue item may hold; the task was stopped")
        );
        assert_eq!(sink.take_collected(), b"one\ntwo\n");
    }

    #[test]
    fn a_queue_line_up_to_the_limit_is_one_item() {
        let mut sink = Sink::collect("j".into());
        let line = vec![b'x'; ITEM_LIMIT];
        for piece in line.chunks(PIECE) {
            sink.write(piece);
        }
        sink.write(b"\n");
        sink.finish();
        assert!(sink.refused().is_none());
        assert_eq!(sink.take_collected().len(), ITEM_LIMIT + 1);
    }

    #[test]
    fn the_tail_keeps_the_last_lines_and_says_it_cut() {
        let mut sink = Sink::collect("j".into()).keep_tail();
        for i in 0..100 {
            sink.write(format!("line {i}\n").as_bytes());
        }
        let (lines, cut) = sink.tail();
        assert_eq!(lines.len(), TAIL_LINES);
        assert_eq!(lines.last().unwrap(), "line 99");
        assert!(cut);
    }

    #[test]
    fn held_output_spills_to_a_file_and_replays_whole() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut sink = Sink::held(Stream::Stdout, "j".into(), tx);
        let line = vec![b'x'; 999];
        for _ in 0..1000 {
            sink.write(&line);
            sink.write(b"\n");
        }
        sink.finish();
        assert!(rx.try_recv().is_err(), "nothing shown before release");
        sink.release(true);
        let total: usize = rx
            .try_iter()
            .map(|e| match e {
                Event::Output { data, .. } => {
                    assert_eq!(data.last(), Some(&b'\n'));
                    data.len()
                }
                _ => unreachable!(),
            })
            .sum();
        assert_eq!(total, 1000 * 1000);
    }
}
