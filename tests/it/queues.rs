//! Queues: streaming, order, exactly-once delivery, closing, backpressure, and what
//! happens when a side fails.

use crate::util::{root, Test, BIN};
use std::collections::HashMap;
use std::process::Command;

/// A producer that writes one line and then waits (up to 10 s) for the consumer to have
/// seen it: it succeeds only if items stream while it runs.
const WAIT_FOR_ACK: &str = "echo first; i=0; while [ ! -e ack ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; test -e ack";

#[test]
fn a_stdin_consumer_reads_items_while_the_producer_runs() {
    let t = Test::new(&format!(
        "[jobs.p]\ncommand = '{WAIT_FOR_ACK}'\nto = 'q'\n[jobs.c]\ncommand = 'while read -r l; do echo \"got $l\"; touch ack; done'\nstdin = {{ queue = 'q' }}\n"
    ));
    let out = t.run();
    out.assert_code(0);
    assert_eq!(out.lines_of("c"), ["got first"]);
}

#[test]
fn an_item_consumer_starts_tasks_while_the_producer_runs() {
    let t = Test::new(&format!(
        "pool = 2\n[jobs.p]\ncommand = '{WAIT_FOR_ACK}'\nto = 'q'\n[jobs.c]\ncommand = 'echo got {{item}}; touch ack'\nitems = {{ queue = 'q' }}\n"
    ));
    let out = t.run();
    out.assert_code(0);
    assert_eq!(out.lines_of("c:first"), ["got first"]);
}

#[test]
fn fan_in_many_producers_every_item_exactly_once_in_producer_order() {
    let t = Test::new(
        "pool = 4\n[queues.q]\ncapacity = 7\n[jobs.p]\ncommand = 'for i in $(seq 1 5000); do echo {item}-$i; done'\nitems = ['a', 'b', 'c', 'd']\nto = 'q'\n[jobs.c]\ncommand = 'cat > got.txt'\nstdin = { queue = 'q' }\n",
    );
    t.run().assert_code(0);
    let got = t.read("got.txt");
    let mut last: HashMap<&str, u32> = HashMap::new();
    let mut count = 0;
    for line in got.lines() {
        let (producer, n) = line.split_once('-').unwrap();
        let n: u32 = n.parse().unwrap();
        let prev = last.insert(producer, n).unwrap_or(0);
        assert_eq!(n, prev + 1, "producer {producer}: {n} after {prev}");
        count += 1;
    }
    assert_eq!(count, 20_000);
}

#[test]
fn many_consumer_tasks_take_each_item_once_indexed_in_arrival_order() {
    let t = Test::new(
        "pool = 4\n[jobs.p]\ncommand = 'for i in $(seq 1 100); do echo {item}-$i; done'\nitems = ['a', 'b', 'c']\nto = 'q'\n[jobs.c]\ncommand = 'echo {index} {item} > out/{index}'\nitems = { queue = 'q' }\n",
    );
    std::fs::create_dir(t.path("out")).unwrap();
    t.run().assert_code(0);
    let mut seen: Vec<(u32, String)> = std::fs::read_dir(t.path("out"))
        .unwrap()
        .map(|e| {
            let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
            let (i, item) = text.trim().split_once(' ').unwrap();
            (i.parse().unwrap(), item.to_string())
        })
        .collect();
    seen.sort();
    assert_eq!(seen.len(), 300);
    assert!(
        seen.iter().enumerate().all(|(k, (i, _))| *i == k as u32),
        "indexes 0..300, each once"
    );
    let mut last: HashMap<String, u32> = HashMap::new();
    for (_, item) in &seen {
        let (producer, n) = item.split_once('-').unwrap();
        let n: u32 = n.parse().unwrap();
        let prev = last.insert(producer.to_string(), n).unwrap_or(0);
        assert_eq!(n, prev + 1, "arrival order keeps each producer's order");
    }
}

#[test]
fn a_producer_that_fails_halfway_the_consumer_drains_and_the_run_fails() {
    let t = Test::new(
        "[jobs.p]\ncommand = 'seq 3; exit 4'\nto = 'q'\n[jobs.c]\ncommand = 'cat > got.txt'\nstdin = { queue = 'q' }\n[jobs.d]\ncommand = 'echo {item}'\nitems = { queue = 'r' }\n[jobs.p2]\ncommand = 'echo x; exit 5'\nto = 'r'\n",
    );
    let out = t.run();
    out.assert_code(1)
        .assert_stderr_has("FAILED p: exit 4")
        .assert_stderr_has("FAILED p2: exit 5");
    assert_eq!(t.read("got.txt"), "1\n2\n3\n");
    assert_eq!(out.lines_of("d:x"), ["x"]);
}

#[test]
fn a_skipped_producer_closes_its_queue() {
    let t = Test::new(
        "[jobs.gate]\ncommand = 'false'\n[jobs.p]\ncommand = 'seq 3'\nto = 'q'\nneeds = ['gate']\n[jobs.c]\ncommand = 'wc -l'\nstdin = { queue = 'q' }\n",
    );
    let out = t.run();
    out.assert_code(1);
    assert_eq!(out.lines_of("c"), ["0"]);
}

#[test]
fn a_consumer_that_exits_early_does_not_hang_its_producers() {
    // Policy: the queue keeps draining (items are dropped and counted), producers finish.
    let t = Test::new(
        "[queues.q]\ncapacity = 4\n[jobs.p]\ncommand = 'seq 200000'\nto = 'q'\n[jobs.c]\ncommand = 'head -n 2'\nstdin = { queue = 'q' }\n",
    )
    .args(&["--report", "report.json"]);
    let out = t.run();
    out.assert_code(0)
        .assert_stderr_has("dropped (their consumer was gone)");
    assert_eq!(out.lines_of("c"), ["1", "2"]);
    let report: serde_json::Value = serde_json::from_str(&t.read("report.json")).unwrap();
    let q = &report["queues"][0];
    assert_eq!(
        q["taken"].as_u64().unwrap() + q["dropped"].as_u64().unwrap(),
        200_000
    );
}

/// The runner's own peak resident memory in KiB, from its report.
pub fn peak_kib(t: &Test) -> u64 {
    let report: serde_json::Value = serde_json::from_str(&t.read("report.json")).expect("a report");
    report["run"]["peak_rss_kib"].as_u64().unwrap()
}

#[test]
fn backpressure_keeps_memory_bounded_when_the_consumer_is_slow() {
    // 3 million lines (~20 MiB) into a consumer that waits before reading: without
    // backpressure the queue would hold them all.
    let t = Test::new(
        "[queues.q]\ncapacity = 16\n[jobs.p]\ncommand = 'seq 3000000'\nto = 'q'\n[jobs.c]\ncommand = 'sleep 1; wc -l'\nstdin = { queue = 'q' }\n",
    );
    let t = t.args(&["--report", "report.json"]);
    t.run().assert_code(0);
    let kib = peak_kib(&t);
    assert!(kib < 12 * 1024, "peak {kib} KiB");
}

#[test]
fn the_seed_queue_examples_print_what_the_seed_printed() {
    let run = |name: &str| {
        let out = Command::new(BIN)
            .arg(root().join("examples").join(name))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{name}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let read: Vec<String> = run("queue.toml")
        .lines()
        .filter(|l| l.starts_with("[read] Get"))
        .map(String::from)
        .collect();
    assert_eq!(
        read,
        [
            "[read] Get A from queue.",
            "[read] Get B from queue.",
            "[read] Get C from queue."
        ]
    );
    assert!(run("balance.toml").contains("[balance] balance: 0 after 120000 changes"));
    let squares = run("squares.toml");
    let results: Vec<&str> = squares
        .lines()
        .filter(|l| l.starts_with("[collector] Result: "))
        .collect();
    assert_eq!(results.len(), 10, "{squares}");
    for line in results {
        let expr = line.trim_start_matches("[collector] Result: ");
        let (lhs, product) = expr.split_once(" = ").unwrap();
        let (a, b) = lhs.split_once(" * ").unwrap();
        assert_eq!(a, b);
        assert_eq!(
            a.parse::<u64>().unwrap().pow(2),
            product.parse::<u64>().unwrap()
        );
    }
}

#[test]
fn a_failed_producer_says_its_stdout_went_to_the_queue_and_shows_its_stderr() {
    let t = Test::new(
        "[jobs.p]\ncommand = 'seq 3; echo oops >&2; exit 4'\nto = 'q'\n[jobs.p2]\ncommand = 'echo x; exit 5'\nto = 'q'\n[jobs.c]\ncommand = 'cat > got.txt'\nstdin = { queue = 'q' }\n",
    );
    let out = t.run();
    out.assert_code(1)
        .assert_stderr_has("FAILED p: exit 4")
        .assert_stderr_has("  (its stdout went to queue `q`)\n  | oops\n")
        .assert_stderr_has("FAILED p2: exit 5")
        .assert_stderr_has("  (its stdout went to queue `q`; no stderr)\n");
    assert!(
        !out.stderr.contains("last lines of stdout"),
        "{}",
        out.stderr
    );
}

/// A streaming consumer whose first attempt reads one item, closes its stdin and fails:
/// the producer writes the rest only after that, so they must reach the retry.
#[test]
fn a_streaming_consumer_retry_gets_the_items_not_yet_delivered() {
    let t = Test::new(
        "[jobs.p]\ncommand = 'echo 1; i=0; while [ ! -e dead ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; seq 2 5'\nto = 'q'\n[jobs.c]\ncommand = 'if [ $RUNNER_ATTEMPT = 1 ]; then read -r l; echo \"$l\" > first.txt; exec 0<&-; touch dead; exit 1; fi; cat > got.txt'\nstdin = { queue = 'q' }\nretries = 2\nretry_delay = '10ms'\n",
    );
    let out = t.run();
    out.assert_code(0);
    assert_eq!(t.read("first.txt"), "1\n");
    assert_eq!(t.read("got.txt"), "2\n3\n4\n5\n");
}

/// Every attempt of a streaming consumer fails: the producer still ends (the items are
/// dropped and counted once the consumer is gone for good) and the run fails.
#[test]
fn a_streaming_consumer_out_of_retries_does_not_hang_its_producer() {
    let t = Test::new(
        "[queues.q]\ncapacity = 4\n[jobs.p]\ncommand = 'seq 100000'\nto = 'q'\n[jobs.c]\ncommand = 'head -n 1 > /dev/null; exit 1'\nstdin = { queue = 'q' }\nretries = 2\nretry_delay = '10ms'\n",
    );
    let out = t.run();
    out.assert_code(1)
        .assert_stderr_has("FAILED c: exit 1")
        .assert_stderr_has("3 attempts")
        .assert_stderr_has("dropped (their consumer was gone)");
}
