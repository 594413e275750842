//! Queues: bounded, ordered buffers of lines between producer tasks and a consumer.
//!
//! Producers push whole lines (in chunks, as read from a pipe, so that millions of lines
//! cost a few thousand lock operations); the consumer takes one item at a time (one task
//! per item) or whole chunks (a streaming consumer's stdin). A push waits while the queue
//! holds `capacity` items: that wait is what pauses reading a producer's stdout, so the
//! producer blocks on its pipe and memory stays bounded.
//!
//! Invariant: an item is handed out exactly once, and the items of one push keep their
//! order; pushes from different producers interleave only between chunks.
//!
//! Invariant: a queue holds at most `capacity` items or [`MAX_BYTES`], whichever comes
//! first, plus the one push that found room (one read of a pipe, or one long line).
//!
//! Longer than 400 lines because of its unit tests; the code itself is about 280.

use memchr::memchr_iter;
use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Told when a queue the scheduler waits on gets items (or closes).
pub trait Waker: Send + Sync {
    fn wake(&self, queue: usize);
}

pub struct Queue {
    pub id: usize,
    pub name: String,
    capacity: usize,
    state: Mutex<State>,
    changed: Condvar,
    waker: Box<dyn Waker>,
}

#[derive(Default)]
struct State {
    chunks: VecDeque<Chunk>,
    len: usize,
    /// The bytes of the items held.
    bytes: usize,
    closed: bool,
    /// The consumer is gone: pushes are counted and dropped, so producers never hang.
    discarding: bool,
    /// The scheduler found the queue empty (or a producer found it full) and wants a wake.
    wake_wanted: bool,
    pushed: u64,
    taken: u64,
    dropped: u64,
    /// Pushes waiting for room: producers blocked on a full queue.
    waiting: usize,
}

/// Consecutive lines, each ending in `\n`, from one producer.
struct Chunk {
    data: Vec<u8>,
    pos: usize,
    count: usize,
}

/// What `try_take` found.
#[derive(Debug, PartialEq, Eq)]
pub enum Take {
    Item(Vec<u8>),
    Empty,
    Closed,
}

/// Why a push gave up before all its lines were in the queue: its `give_up` said so,
/// which the runner does once the run is stopping. The lines are dropped and counted.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("the run is stopping: lines waiting for room in the queue were dropped")]
pub struct Interrupted;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub pushed: u64,
    pub taken: u64,
    pub dropped: u64,
    pub len: usize,
    pub closed: bool,
}

const WAIT_SLICE: Duration = Duration::from_millis(50);

/// A queue also counts as full when its items hold this many bytes: an item may be up to
/// 16 MiB (`exec::sink::ITEM_LIMIT`), and `capacity` of those would not fit in memory.
pub const MAX_BYTES: usize = 64 << 20;

impl State {
    fn full(&self, capacity: usize) -> bool {
        self.len >= capacity || self.bytes >= MAX_BYTES
    }
}

impl Queue {
    pub fn new(id: usize, name: &str, capacity: usize, waker: Box<dyn Waker>) -> Queue {
        Queue {
            id,
            name: name.to_string(),
            capacity: capacity.max(1),
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            waker,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock is a bug elsewhere; the data is still whole.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Pushes `lines` (each ending in `\n`, as one read from a pipe gave them), waiting
    /// while the queue holds `capacity` items or more. Once there is room the whole read
    /// goes in, so the queue may hold up to one read (64 KiB) past `capacity`: handing
    /// lines over a few at a time would cost more than the copying it saves. `give_up` is
    /// asked every few milliseconds while waiting; when it says so, the lines are dropped.
    pub fn push(&self, lines: &[u8], give_up: &dyn Fn() -> bool) -> Result<(), Interrupted> {
        // Lines from a pipe always end in a newline; lines from elsewhere (a remote
        // result) get one, so that every chunk holds whole lines.
        let owned;
        let lines = if lines.is_empty() || lines.ends_with(b"\n") {
            lines
        } else {
            owned = [lines, b"\n"].concat();
            &owned
        };
        let count = memchr_iter(b'\n', lines).count();
        if count == 0 {
            return Ok(());
        }
        let mut state = self.lock();
        loop {
            if state.discarding || state.closed {
                state.dropped += count as u64;
                return Ok(());
            }
            if !state.full(self.capacity) {
                break;
            }
            // A producer blocked here lends its pool slot to the consumer: tell the
            // scheduler, which may start a consumer task in its place.
            state.waiting += 1;
            state.wake_wanted = false;
            self.waker.wake(self.id);
            state = self
                .changed
                .wait_timeout(state, WAIT_SLICE)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            state.waiting -= 1;
            if give_up() {
                state.dropped += count as u64;
                return Err(Interrupted);
            }
        }
        let was_empty = state.len == 0;
        state.chunks.push_back(Chunk {
            data: lines.to_vec(),
            pos: 0,
            count,
        });
        state.len += count;
        state.bytes += lines.len();
        state.pushed += count as u64;
        self.changed.notify_all();
        if was_empty && std::mem::take(&mut state.wake_wanted) {
            self.waker.wake(self.id);
        }
        Ok(())
    }

    /// One item, without waiting. When the queue is empty and still open, the waker is
    /// called once items arrive.
    pub fn try_take(&self) -> Take {
        let mut state = self.lock();
        let Some(chunk) = state.chunks.front_mut() else {
            if state.closed {
                return Take::Closed;
            }
            state.wake_wanted = true;
            return Take::Empty;
        };
        let end =
            memchr::memchr(b'\n', &chunk.data[chunk.pos..]).expect("a chunk holds whole lines");
        let item = chunk.data[chunk.pos..chunk.pos + end].to_vec();
        chunk.pos += end + 1;
        chunk.count -= 1;
        if chunk.count == 0 {
            state.chunks.pop_front();
        }
        state.len -= 1;
        state.bytes -= end + 1;
        state.taken += 1;
        self.changed.notify_all();
        Take::Item(item)
    }

    /// Every item there is, as lines, waiting up to `wait` for some. `None` when the queue
    /// is closed and drained; an empty vector when the wait ran out.
    pub fn take_all(&self, wait: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + wait;
        let mut state = self.lock();
        loop {
            if !state.chunks.is_empty() {
                let mut out = Vec::new();
                while let Some(chunk) = state.chunks.pop_front() {
                    if out.is_empty() && chunk.pos == 0 {
                        out = chunk.data;
                    } else {
                        out.extend_from_slice(&chunk.data[chunk.pos..]);
                    }
                    state.taken += chunk.count as u64;
                }
                state.len = 0;
                state.bytes = 0;
                self.changed.notify_all();
                return Some(out);
            }
            if state.closed {
                return None;
            }
            let now = Instant::now();
            if now >= deadline {
                return Some(Vec::new());
            }
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Lines taken that their consumer could not be given (its process stopped reading):
    /// they go back to the front, for the consumer's next attempt.
    pub fn put_back(&self, lines: Vec<u8>) {
        let count = memchr_iter(b'\n', &lines).count();
        if count == 0 {
            return;
        }
        let mut state = self.lock();
        if state.discarding {
            state.dropped += count as u64;
            return;
        }
        state.len += count;
        state.bytes += lines.len();
        state.chunks.push_front(Chunk {
            data: lines,
            pos: 0,
            count,
        });
        state.taken -= count as u64;
        self.changed.notify_all();
    }

    /// No more producers: the consumer drains what is left, then sees the end.
    pub fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        self.changed.notify_all();
        if std::mem::take(&mut state.wake_wanted) {
            self.waker.wake(self.id);
        }
    }

    /// The consumer is gone: what is in the queue and whatever comes is dropped (and
    /// counted), so that producers finish instead of waiting forever.
    pub fn discard(&self) {
        let mut state = self.lock();
        state.discarding = true;
        let dropped = state.len as u64;
        state.dropped += dropped;
        state.chunks.clear();
        state.len = 0;
        state.bytes = 0;
        self.changed.notify_all();
    }

    pub fn is_full(&self) -> bool {
        self.lock().full(self.capacity)
    }

    /// No item waits to be taken.
    pub fn is_empty(&self) -> bool {
        self.lock().len == 0
    }

    /// Producers waiting for room right now.
    pub fn blocked_producers(&self) -> usize {
        self.lock().waiting
    }

    pub fn stats(&self) -> QueueStats {
        let state = self.lock();
        QueueStats {
            pushed: state.pushed,
            taken: state.taken,
            dropped: state.dropped,
            len: state.len,
            closed: state.closed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    struct CountWakes(Arc<AtomicUsize>);
    impl Waker for CountWakes {
        fn wake(&self, _: usize) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn queue(capacity: usize) -> (Arc<Queue>, Arc<AtomicUsize>) {
        let wakes = Arc::new(AtomicUsize::new(0));
        (
            Arc::new(Queue::new(
                0,
                "q",
                capacity,
                Box::new(CountWakes(wakes.clone())),
            )),
            wakes,
        )
    }

    #[test]
    fn items_come_out_in_order_once() {
        let (q, _) = queue(10);
        q.push(b"a\nb\n", &|| false).unwrap();
        q.push(b"c\n", &|| false).unwrap();
        assert_eq!(q.try_take(), Take::Item(b"a".to_vec()));
        assert_eq!(q.take_all(Duration::ZERO), Some(b"b\nc\n".to_vec()));
        assert_eq!(q.try_take(), Take::Empty);
        q.close();
        assert_eq!(q.try_take(), Take::Closed);
        assert_eq!(q.take_all(Duration::ZERO), None);
    }

    #[test]
    fn a_full_queue_makes_the_producer_wait_until_items_are_taken() {
        let (q, _) = queue(2);
        q.push(b"1\n2\n3\n", &|| false).unwrap();
        let producer = {
            let q = q.clone();
            std::thread::spawn(move || q.push(b"4\n5\n", &|| false))
        };
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            q.stats().len,
            3,
            "the second push waits: the queue is at capacity"
        );
        let mut got = Vec::new();
        while got.len() < 5 {
            if let Take::Item(item) = q.try_take() {
                got.push(String::from_utf8(item).unwrap());
            }
        }
        producer.join().unwrap().unwrap();
        assert_eq!(got, ["1", "2", "3", "4", "5"]);
    }

    #[test]
    fn the_scheduler_is_woken_when_an_empty_queue_gets_items() {
        let (q, wakes) = queue(4);
        assert_eq!(q.try_take(), Take::Empty);
        q.push(b"x\n", &|| false).unwrap();
        assert_eq!(wakes.load(Ordering::SeqCst), 1);
        q.push(b"y\n", &|| false).unwrap();
        assert_eq!(wakes.load(Ordering::SeqCst), 1, "no wake when nobody waits");
    }

    #[test]
    fn a_discarding_queue_drops_and_counts() {
        let (q, _) = queue(1);
        q.push(b"a\n", &|| false).unwrap();
        q.discard();
        q.push(b"b\nc\n", &|| false).unwrap();
        assert_eq!(q.stats().dropped, 3);
    }

    #[test]
    fn lines_put_back_come_out_first_and_count_as_not_taken() {
        let (q, _) = queue(10);
        q.push(b"a\nb\nc\n", &|| false).unwrap();
        let taken = q.take_all(Duration::ZERO).unwrap();
        q.put_back(taken[2..].to_vec());
        q.push(b"d\n", &|| false).unwrap();
        assert_eq!((q.stats().taken, q.stats().len), (1, 3));
        assert_eq!(q.take_all(Duration::ZERO), Some(b"b\nc\nd\n".to_vec()));
    }

    #[test]
    fn a_queue_of_few_big_items_is_full_by_its_bytes() {
        let (q, _) = queue(1000);
        let big = [vec![b'x'; MAX_BYTES / 2 - 1], b"\n".to_vec()].concat();
        q.push(&big, &|| false).unwrap();
        assert!(!q.is_full());
        q.push(&big, &|| false).unwrap();
        assert!(q.is_full(), "two items of half the bytes each");
        assert_eq!(q.try_take(), Take::Item(big[..big.len() - 1].to_vec()));
        assert!(!q.is_full());
    }

    #[test]
    fn a_waiting_push_gives_up_when_told() {
        let (q, _) = queue(1);
        q.push(b"a\n", &|| true).unwrap();
        assert_eq!(q.push(b"b\nc\n", &|| true), Err(Interrupted));
        assert_eq!((q.stats().pushed, q.stats().dropped), (1, 2));
    }
}
