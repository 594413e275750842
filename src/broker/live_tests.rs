//! The broker's waits against a real `redis-server` (`crate::test_redis`): what ends
//! them early. Each wait is given far longer than the test allows it, so a wait that
//! ends only by its own time fails the test.

use super::*;
use crate::test_redis::Server;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Longer than any test waits: a wait still going after [`ENDED_WITHIN`] was not ended.
const LONG: Duration = Duration::from_secs(30);
const ENDED_WITHIN: Duration = Duration::from_secs(10);

fn connect(server: &Server) -> Broker {
    Broker::connect(&server.url(), LONG + Duration::from_secs(5)).unwrap()
}

/// A connection, and the run `r1` created on it (state running).
fn with_run(server: &Server) -> Broker {
    let mut broker = connect(server);
    broker.create_run("r1", "d", Lease::default()).unwrap();
    broker
}

/// Adds a task entry of job `job` to run `r1` and has `consumer` read it: its id.
fn read_one(broker: &mut Broker, job: &str, consumer: &str) -> String {
    let _: String = broker
        .call(|c| {
            redis::cmd("XADD")
                .arg(key("r1", "tasks"))
                .arg("*")
                .arg("job")
                .arg(job)
                .arg("index")
                .arg("0")
                .query(c)
        })
        .unwrap();
    let read = broker
        .take_new("r1", consumer, 1, Duration::from_millis(10))
        .unwrap();
    assert_eq!(read.len(), 1);
    read[0].0.clone()
}

/// The seconds left to run `r1`'s key `name` (-1: no expiry).
fn ttl(broker: &mut Broker, name: &str) -> i64 {
    broker
        .call(|c| redis::cmd("TTL").arg(key("r1", name)).query(c))
        .unwrap()
}

/// Runs `wait` on a thread of its own; its answer comes on the channel.
fn waiting<T: Send + 'static>(wait: impl FnOnce() -> T + Send + 'static) -> mpsc::Receiver<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(wait());
    });
    rx
}

/// Waits until Redis shows `count` connections blocked (in a read that waits).
fn until_blocked(broker: &mut Broker, count: i64) {
    let deadline = Instant::now() + ENDED_WITHIN;
    loop {
        let info: String = broker
            .call(|c| redis::cmd("INFO").arg("clients").query(c))
            .unwrap();
        let blocked = info
            .lines()
            .find_map(|l| l.strip_prefix("blocked_clients:"))
            .and_then(|n| n.trim().parse::<i64>().ok())
            .unwrap_or(0);
        if blocked >= count {
            return;
        }
        assert!(Instant::now() < deadline, "no connection blocked: {info}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_read_waiting_for_task_entries_ends_when_another_connection_unblocks_it() {
    let server = Server::start(&[]);
    let mut other = with_run(&server);
    let mut taker = connect(&server);
    let id = taker
        .client_id()
        .expect("the server says the connection's id");
    let answer = waiting(move || taker.take_new("r1", "w1", 4, LONG));
    until_blocked(&mut other, 1);
    other.unblock(id);
    let taken = answer
        .recv_timeout(ENDED_WITHIN)
        .expect("the read ended when unblocked")
        .unwrap();
    assert!(taken.is_empty(), "nothing was taken: {taken:?}");
}

#[test]
fn a_watcher_waiting_on_the_events_is_woken_as_the_run_stops_and_as_it_ends() {
    let server = Server::start(&[]);
    let mut coordinator = with_run(&server);
    let mut watcher = connect(&server);
    let mut cursor = watcher.newest_event("r1").unwrap();
    assert_eq!(cursor, "0-0", "no event yet");
    assert_eq!(watcher.run_state("r1").unwrap(), RunState::Running);

    let answer = waiting(move || {
        assert!(
            watcher.wait_for_event("r1", &mut cursor, LONG).unwrap(),
            "a wake-up"
        );
        let state = watcher.run_state("r1").unwrap();
        (watcher, cursor, state)
    });
    until_blocked(&mut coordinator, 1);
    coordinator.stop_run("r1").unwrap();
    let (mut watcher, mut cursor, state) = answer
        .recv_timeout(ENDED_WITHIN)
        .expect("woken as the run stops");
    assert_eq!(state, RunState::Stopping);
    assert_ne!(cursor, "0-0", "the cursor moved past the wake-up");

    // Read after the cursor only: the stop's wake-up does not end the next wait.
    let answer = waiting(move || {
        assert!(
            watcher.wait_for_event("r1", &mut cursor, LONG).unwrap(),
            "a wake-up"
        );
        watcher.run_state("r1").unwrap()
    });
    until_blocked(&mut coordinator, 1);
    coordinator.end_run("r1").unwrap();
    let state = answer
        .recv_timeout(ENDED_WITHIN)
        .expect("woken as the run ends");
    assert_eq!(state, RunState::Over);
    let ttl: i64 = coordinator
        .call(|c| redis::cmd("TTL").arg(key("r1", "events")).query(c))
        .unwrap();
    assert!(ttl > 0, "the run's keys expire once it ended: {ttl}");
}

#[test]
fn a_change_of_state_after_the_cursor_was_read_is_not_missed() {
    // The watcher reads the cursor, then the state; the coordinator ends the run
    // between the two reads of a later round: the wait after them sees the wake-up.
    let server = Server::start(&[]);
    let mut coordinator = with_run(&server);
    let mut watcher = connect(&server);
    let mut cursor = watcher.newest_event("r1").unwrap();
    coordinator.end_run("r1").unwrap();
    let began = Instant::now();
    assert!(
        watcher.wait_for_event("r1", &mut cursor, LONG).unwrap(),
        "a wake-up"
    );
    assert!(
        began.elapsed() < ENDED_WITHIN,
        "the wake-up was already there"
    );
}

#[test]
fn a_workers_report_ends_the_wait_without_being_taken_for_a_wake_up() {
    let server = Server::start(&[]);
    let mut worker = with_run(&server);
    let mut cursor = worker.newest_event("r1").unwrap();
    worker
        .report("r1", &wire::Message::new().with("message", "refused"))
        .unwrap();
    assert!(!worker.wait_for_event("r1", &mut cursor, LONG).unwrap());
    assert_ne!(cursor, "0-0", "the cursor moved past the report");
}

#[test]
fn a_step_sent_again_with_its_token_is_answered_not_done_again() {
    let server = Server::start(&[]);
    let mut worker = with_run(&server);
    let output = |text: &str| {
        batch::Outbound::Output(
            wire::Message::new()
                .with("task", "t/0")
                .with("stream", "out")
                .with("data", text),
        )
    };
    let length = |b: &mut Broker| -> i64 {
        b.call(|c| redis::cmd("XLEN").arg(key("r1", "output")).query(c))
            .unwrap()
    };
    // The output stream holds one entry at most: the second item waits.
    let items = [output("one"), output("two")];
    let first = worker.send_step("r1", "w1", &items, 1, "a").unwrap();
    assert_eq!(first.done, 1);
    assert_eq!(length(&mut worker), 1);
    // Sent again (its reply lost): the same answer, nothing added.
    assert_eq!(worker.send_step("r1", "w1", &items, 1, "a").unwrap(), first);
    assert_eq!(length(&mut worker), 1);
    // Another consumer's step with the same token is its own.
    let other = worker.send_step("r1", "w2", &items[..1], 10, "a").unwrap();
    assert_eq!(other.done, 1);
    assert_eq!(length(&mut worker), 2);
    // The next step of the first consumer is done.
    assert_eq!(
        worker
            .send_step("r1", "w1", &items[1..], 10, "b")
            .unwrap()
            .done,
        1
    );
    assert_eq!(length(&mut worker), 3);
    let left = ttl(&mut worker, "replies");
    assert!(left > 0, "the tokens expire: {left}");
}

#[test]
fn a_takeover_counts_as_a_delivery_only_once_it_is_about_to_run() {
    let server = Server::start(&[]);
    let mut broker = with_run(&server);
    let id = read_one(&mut broker, "t", "w1");
    let counted = |b: &mut Broker| b.idle_tasks("r1", Duration::ZERO, 10).unwrap();
    // Read once: one delivery, as Redis counts it.
    assert_eq!(counted(&mut broker), vec![(id.clone(), 1)]);
    // Taken over twice and held, never started: Redis counts 3 deliveries, the run 1.
    for consumer in ["w2", "w3"] {
        assert!(broker
            .claim("r1", consumer, Duration::ZERO, &id)
            .unwrap()
            .is_some());
    }
    assert_eq!(counted(&mut broker), vec![(id.clone(), 1)]);
    // About to run on the last taker: counted, once (a step sent again after a lost
    // reply counts nothing more).
    broker.count_run("r1", &id, "w3").unwrap();
    broker.count_run("r1", &id, "w3").unwrap();
    assert_eq!(counted(&mut broker), vec![(id.clone(), 2)]);
    assert_eq!(
        ttl(&mut broker, "deliveries"),
        -1,
        "no expiry while the run is on"
    );
    broker.end_run("r1").unwrap();
    let left = ttl(&mut broker, "deliveries");
    assert!(left > 0, "the counts expire with the run: {left}");
}

#[test]
fn a_first_read_given_back_unstarted_is_not_counted_as_a_delivery() {
    let server = Server::start(&[]);
    let mut broker = with_run(&server);
    let id = read_one(&mut broker, "gpu", "plain");
    let counted = |b: &mut Broker| b.idle_tasks("r1", Duration::ZERO, 10).unwrap();
    // Read by a worker without the label and given back: no delivery counted.
    assert!(broker
        .give_back("r1", "plain", &id, Duration::from_secs(1))
        .unwrap());
    assert_eq!(counted(&mut broker), vec![(id.clone(), 0)]);
    // Taken over by one with the label, which gives it back too (no room): a takeover
    // given back is not taken off again.
    assert!(broker
        .claim("r1", "gpu1", Duration::ZERO, &id)
        .unwrap()
        .is_some());
    assert!(broker
        .give_back("r1", "gpu1", &id, Duration::from_secs(1))
        .unwrap());
    assert_eq!(counted(&mut broker), vec![(id.clone(), 0)]);
    // Taken over and about to run: its first counted delivery.
    assert!(broker
        .claim("r1", "gpu2", Duration::ZERO, &id)
        .unwrap()
        .is_some());
    broker.count_run("r1", &id, "gpu2").unwrap();
    assert_eq!(counted(&mut broker), vec![(id.clone(), 1)]);
}
