//! Where the bytes a task prints go: whole lines to the terminal writer (labelled there),
//! or into a queue, or held back (`--quiet`) until the task's end says whether to show
//! them; a copy to a log file; and a bounded tail of stderr for the summary.
//!
//! Invariant: memory per task is bounded whatever it prints: a partial line is flushed
//! past `MAX_LINE`, held-back output spills to a temporary file past `SPOOL_MEMORY`, and
//! the tail keeps at most `TAIL_BYTES`.

use super::log::Log;
use crate::queue::Queue;
use crate::task::{Event, Stream};
use crossbeam_channel::Sender;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::Path;
use std::sync::Arc;

const MAX_LINE: usize = 64 * 1024;
const SPOOL_MEMORY: usize = 256 * 1024;
const TAIL_BYTES: usize = 8 * 1024;
pub const TAIL_LINES: usize = 10;

pub struct Sink {
    stream: Stream,
    label: Arc<str>,
    target: Target,
    partial: Vec<u8>,
    log: Option<Log>,
    tail: Option<Tail>,
}

enum Target {
    Display(Sender<Event>),
    Queue(Arc<Queue>, Arc<dyn Fn() -> bool + Send + Sync>),
    Spool(Spool, Sender<Event>),
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
        Sink::with(stream, label, Target::Spool(Spool::default(), out))
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
            log: None,
            tail: None,
        }
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

    pub fn keep_tail(mut self) -> Sink {
        self.tail = Some(Tail::default());
        self
    }

    /// Takes bytes as read from the pipe.
    pub fn write(&mut self, data: &[u8]) {
        if let Some(log) = &mut self.log {
            log.write(data);
        }
        if let Some(tail) = &mut self.tail {
            tail.push(data);
        }
        let cut = match memchr::memrchr(b'\n', data) {
            Some(last) => last + 1,
            None => 0,
        };
        if cut == 0 {
            self.partial.extend_from_slice(data);
            if self.partial.len() >= MAX_LINE {
                // A line this long is passed on in pieces rather than held whole.
                self.partial.push(b'\n');
                let lines = std::mem::take(&mut self.partial);
                self.emit(lines);
            }
            return;
        }
        let lines = if self.partial.is_empty() {
            data[..cut].to_vec()
        } else {
            let mut lines = std::mem::take(&mut self.partial);
            lines.extend_from_slice(&data[..cut]);
            lines
        };
        self.partial.extend_from_slice(&data[cut..]);
        self.emit(lines);
    }

    /// The pipe is closed: a last line without a newline still counts as a line.
    pub fn finish(&mut self) {
        if !self.partial.is_empty() {
            let mut lines = std::mem::take(&mut self.partial);
            lines.push(b'\n');
            self.emit(lines);
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

    /// For held-back output: show it (`show`) or drop it.
    pub fn release(&mut self, show: bool) {
        let Target::Spool(spool, out) = &mut self.target else {
            return;
        };
        if show {
            spool.replay(&mut |data| {
                let _ = out.send(Event::Output {
                    stream: self.stream,
                    label: self.label.clone(),
                    data,
                });
            });
        }
        *spool = Spool::default();
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

/// Output held in memory, then in an unnamed temporary file once it grows.
#[derive(Default)]
struct Spool {
    memory: Vec<u8>,
    file: Option<File>,
}

impl Spool {
    fn write(&mut self, data: &[u8]) {
        if self.file.is_none() && self.memory.len() + data.len() > SPOOL_MEMORY {
            if let Ok(mut file) = tempfile::tempfile() {
                if file.write_all(&self.memory).is_ok() {
                    self.memory = Vec::new();
                    self.file = Some(file);
                }
            }
        }
        match &mut self.file {
            Some(file) => {
                let _ = file.write_all(data);
            }
            None => self.memory.extend_from_slice(data),
        }
    }

    /// Passes the held lines on in pieces that end at a line end.
    fn replay(&mut self, send: &mut dyn FnMut(Vec<u8>)) {
        if let Some(mut file) = self.file.take() {
            if file.rewind().is_ok() {
                let mut carry = Vec::new();
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = file.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    carry.extend_from_slice(&buf[..n]);
                    if let Some(last) = memchr::memrchr(b'\n', &carry) {
                        let rest = carry.split_off(last + 1);
                        send(std::mem::replace(&mut carry, rest));
                    }
                }
                if !carry.is_empty() {
                    send(carry);
                }
            }
        } else if !self.memory.is_empty() {
            send(std::mem::take(&mut self.memory));
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
