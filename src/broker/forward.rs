//! A worker's tasks' printed output, and what its consumers hand on after a task ran,
//! on their way to the broker: the `forward` thread reads what the tasks' sinks and the
//! consumers send (`exec::sink::Remote`, through one bounded channel, in order), joins
//! consecutive pieces of one stream into entries of up to [`ENTRY_BYTES`], signs them,
//! and sends them with the tasks taken ahead that now run and the tasks' results, in
//! order, in batches (one round trip each, the SEND script).
//!
//! Memory is bounded on every side: the channel holds at most [`CHANNEL`] pieces (a
//! task whose sink finds it full waits, and its process with it once its pipe is
//! full); the thread holds one batch; Redis holds at most [`CAP`] entries of the run,
//! the coordinator deleting each once read. While the stream is full the thread waits
//! (backpressure, never a dropped line) — unless the run is over or its coordinator is
//! gone (no heartbeat for [`GONE_AFTER`]): then what it holds and what comes is
//! dropped, said once, and the tasks go on (the watcher stops them when it leaves).
//!
//! A task's output is on the broker before its result, and no consumer waits for it:
//! the consumer sends the result (`Remote::Result`) down the same channel after the
//! task's output, and SEND commits items in order, stopping at the first that does not
//! fit. (`Remote::Flush`, answered once what came before it is sent, is for a consumer
//! that completes a task itself: with `uses`, one task at a time.)

use super::batch::{Completion, Outbound};
use super::wire::Message;
use super::{Broker, RunState};
use crate::exec::sink::Remote;
use crate::task::Stream;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Pieces waiting between the tasks and the thread (a piece is at most one read of a
/// pipe, 64 KiB).
const CHANNEL: usize = 64;
/// The most bytes of one entry.
const ENTRY_BYTES: usize = 64 * 1024;
/// The most entries of a run's output stream: with entries of at most 64 KiB, 8 MiB of
/// Redis's memory per run. Fewer than the coordinator reads at once (`read_reports`).
pub(super) const CAP: usize = 128;
/// The most output entries sent in one round trip.
const BATCH: usize = 32;
/// The most results (and starts of tasks taken ahead) sent in one round trip.
const RESULTS: usize = 256;
/// How long what came first waits for more to go with it in one round trip.
pub(super) const LINGER: Duration = Duration::from_millis(5);
/// How long the coordinator's heartbeat must stay missing before output is dropped.
const GONE_AFTER: Duration = Duration::from_secs(5);

/// What the `forward` thread needs of the worker serving the run (`worker::Serve`
/// implements it): a trait of this file's own, so that it does not import the worker's.
pub(super) trait Serving {
    /// The run's id.
    fn run(&self) -> &str;
    /// The authkey messages are signed with, if any.
    fn key(&self) -> Option<&[u8]>;
    /// This process's consumer name in the run's group.
    fn consumer(&self) -> &str;
    /// Says a note on the worker's terminal.
    fn say(&self, text: String);
    /// Entries whose results are on the broker, or were given up: no longer renewed.
    fn sent(&self, ids: &mut dyn Iterator<Item = &str>);
}

/// The channel from a worker's tasks to its `forward` thread.
pub fn channel() -> (Sender<Remote>, Receiver<Remote>) {
    crossbeam_channel::bounded(CHANNEL)
}

/// Sends `Remote::Flush` and waits until what was sent before it is on the broker (or
/// dropped): a task's output comes before its result.
pub(super) fn flush(to: &Sender<Remote>) {
    let (done, wait) = crossbeam_channel::bounded(1);
    if to.send(Remote::Flush(done)).is_ok() {
        let _ = wait.recv();
    }
}

/// Forwards until `done` is set (every consumer thread has ended) and nothing is left.
pub(super) fn forward(
    s: &dyn Serving,
    broker: &mut Broker,
    from: &Receiver<Remote>,
    done: &AtomicBool,
) {
    let mut out = Out::default();
    loop {
        let first = match from.recv_timeout(Duration::from_millis(50)) {
            Ok(first) => first,
            Err(RecvTimeoutError::Timeout) if !done.load(Ordering::SeqCst) => continue,
            Err(_) => return,
        };
        let mut items: Vec<Outbound> = Vec::new();
        let (mut entries, mut results) = (0, 0);
        let mut flushes = Vec::new();
        // The entry being joined: task, stream, bytes.
        let mut joining: Option<(std::sync::Arc<str>, Stream, Vec<u8>)> = None;
        let mut next = Some(first);
        let mut lingered = false;
        while let Some(piece) = next.take() {
            match piece {
                Remote::Bytes { task, stream, data } => {
                    let fits = joining.as_ref().is_some_and(|(t, st, b)| {
                        *t == task && *st == stream && b.len() + data.len() <= ENTRY_BYTES
                    });
                    if fits {
                        if let Some((_, _, bytes)) = &mut joining {
                            bytes.extend_from_slice(&data);
                        }
                    } else {
                        if let Some(j) = joining.take() {
                            items.push(Outbound::Output(bytes_entry(s, j)));
                            entries += 1;
                        }
                        joining = Some((task, stream, data));
                    }
                }
                Remote::Started { task, pid, attempt } => {
                    if let Some(j) = joining.take() {
                        items.push(Outbound::Output(bytes_entry(s, j)));
                        entries += 1;
                    }
                    items.push(Outbound::Output(
                        Message::new()
                            .with("task", &*task)
                            .with("stream", "start")
                            .with("worker", s.consumer())
                            .with("pid", pid.to_string())
                            .with("attempt", attempt.to_string())
                            .sign(s.key(), s.run()),
                    ));
                    entries += 1;
                }
                Remote::Flush(answer) => flushes.push(answer),
                Remote::Running(task) => {
                    items.push(Outbound::Running(task));
                    results += 1;
                }
                Remote::Result { task, id, fields } => {
                    // After the task's output, which may still be joining.
                    if let Some(j) = joining.take() {
                        items.push(Outbound::Output(bytes_entry(s, j)));
                        entries += 1;
                    }
                    items.push(Outbound::Done(Completion {
                        task,
                        id,
                        result: Message { fields },
                    }));
                    results += 1;
                }
            }
            if entries < BATCH && results < RESULTS {
                next = from.try_recv().ok();
                if next.is_none() && flushes.is_empty() && !lingered {
                    // What comes within LINGER goes with it (a task's start with its
                    // result, results with each other): fewer round trips, and fewer
                    // wake-ups here and on the coordinator. One sleep, not a wake-up
                    // per piece; a flush is answered at once.
                    lingered = true;
                    std::thread::sleep(LINGER);
                    next = from.try_recv().ok();
                }
            }
        }
        if let Some(j) = joining.take() {
            items.push(Outbound::Output(bytes_entry(s, j)));
        }
        out.send(s, broker, items);
        for answer in flushes {
            let _ = answer.send(());
        }
    }
}

fn bytes_entry(
    s: &dyn Serving,
    (task, stream, data): (std::sync::Arc<str>, Stream, Vec<u8>),
) -> Message {
    let stream = match stream {
        Stream::Stdout => "out",
        Stream::Stderr => "err",
    };
    Message::new()
        .with("task", &*task)
        .with("stream", stream)
        .with("data", data)
        .sign(s.key(), s.run())
}

/// Whether output is still sent, and since when the coordinator seems gone.
#[derive(Default)]
struct Out {
    dropping: bool,
    orphaned_since: Option<Instant>,
}

impl Out {
    /// Sends `items` in order, waiting while the output stream is full, unless nobody
    /// reads it (then output is dropped, and the rest still sent). Results sent are let
    /// go here (no longer renewed).
    fn send(&mut self, s: &dyn Serving, broker: &mut Broker, mut items: Vec<Outbound>) {
        let mut checked = Instant::now();
        while !items.is_empty() {
            if self.dropping {
                items.retain(|item| !matches!(item, Outbound::Output(_)));
            }
            let sent = match broker.send(s.run(), s.consumer(), &items, CAP) {
                Ok(sent) => sent,
                Err(e) => {
                    // Given up (an error Redis answered: out of memory, read-only…):
                    // these results are let go, no longer renewed, so their entries
                    // run out their leases and are taken over.
                    let results = items
                        .iter()
                        .filter(|i| matches!(i, Outbound::Done(_)))
                        .count();
                    if results > 0 {
                        s.say(format!(
                            "could not record the results of {}: {e}",
                            crate::task::plural(results as u64, "task")
                        ));
                    }
                    s.sent(&mut items.iter().filter_map(|item| match item {
                        Outbound::Done(d) => Some(d.id.as_str()),
                        _ => None,
                    }));
                    self.drop_from_now(s, "the broker cannot be reached");
                    return;
                }
            };
            if sent.output_gone {
                self.drop_from_now(s, "the run is over");
            }
            let rest = items.split_off(sent.done.min(items.len()));
            s.sent(&mut items.iter().filter_map(|item| match item {
                Outbound::Done(d) => Some(d.id.as_str()),
                _ => None,
            }));
            items = rest;
            if !items.is_empty() && !self.dropping {
                // Full: the coordinator reads it; check now and then that it still does.
                std::thread::sleep(Duration::from_millis(5));
                if checked.elapsed() >= Duration::from_secs(1) {
                    checked = Instant::now();
                    self.check(s, broker);
                }
            }
        }
    }

    fn check(&mut self, s: &dyn Serving, broker: &mut Broker) {
        match broker.run_state(s.run()) {
            Ok(RunState::Running | RunState::Stopping) => self.orphaned_since = None,
            Ok(RunState::Over) => self.drop_from_now(s, "the run is over"),
            Ok(RunState::Orphaned) => {
                let since = *self.orphaned_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= GONE_AFTER {
                    self.drop_from_now(s, "its coordinator is gone");
                }
            }
            Err(_) => {}
        }
    }

    fn drop_from_now(&mut self, s: &dyn Serving, why: &str) {
        if !self.dropping {
            self.dropping = true;
            s.say(format!(
                "run {}: the tasks' output no longer goes to the coordinator ({why}); it is only shown here",
                crate::task::printable(s.run(), 80)
            ));
        }
    }
}
