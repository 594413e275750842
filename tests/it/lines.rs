//! Long lines: a line is one printed line and one queue item whatever its length, up to
//! the documented limits, past which the task fails saying so; memory stays bounded.

use crate::queues::peak_kib;
use crate::util::Test;

/// A shell command printing a line of `n` copies of `c` (and its newline).
fn line_of(n: usize, c: char) -> String {
    format!("head -c {n} /dev/zero | tr '\\\\0' {c}; echo")
}

#[test]
fn long_lines_are_printed_whole_and_labelled_once() {
    let t = Test::new(&format!(
        "pool = 2\n[jobs.long]\ncommand = \"{}; {}\"\n[jobs.short]\ncommand = 'seq 20000'\n",
        line_of(1 << 20, 'a'),
        line_of(200_000, 'b')
    ));
    let out = t.run();
    out.assert_code(0);
    let long = out.lines_of("long");
    assert_eq!(long.len(), 2, "two lines, each labelled once");
    assert_eq!(long[0].len(), 1 << 20);
    assert!(long[0].bytes().all(|b| b == b'a'));
    assert_eq!(long[1].len(), 200_000);
    assert!(long[1].bytes().all(|b| b == b'b'));
    assert_eq!(out.lines_of("short").len(), 20_000);
    assert_eq!(
        out.stdout.lines().count(),
        20_002,
        "no line torn by another"
    );
}

#[test]
fn a_long_line_held_back_by_quiet_is_shown_whole_when_its_task_fails() {
    let t = Test::new(&format!(
        "[jobs.long]\ncommand = \"{}; exit 1\"\n",
        line_of(300_000, 'a')
    ))
    .args(&["--quiet"]);
    let out = t.run();
    out.assert_code(1);
    let long = out.lines_of("long");
    assert_eq!(long.len(), 1);
    assert_eq!(long[0].len(), 300_000);
}

#[test]
fn a_long_line_is_one_queue_item_for_a_streaming_consumer() {
    let t = Test::new(&format!(
        "[jobs.p]\ncommand = \"{}; echo end\"\nto = 'q'\n[jobs.c]\ncommand = 'wc -lc'\nstdin = {{ queue = 'q' }}\n",
        line_of(200_000, 'a')
    ));
    let out = t.run();
    out.assert_code(0);
    let counts: Vec<u64> = out.lines_of("c")[0]
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(counts, [2, 200_001 + 4], "two lines, the long one whole");
}

#[test]
fn a_long_line_is_one_item_for_an_item_consumer() {
    let t = Test::new(&format!(
        "[jobs.p]\ncommand = \"{}\"\nto = 'q'\n[jobs.c]\ncommand = 'printf %s \"$RUNNER_ITEM\" | wc -c >> sizes.txt'\nitems = {{ queue = 'q' }}\n",
        line_of(100_000, 'a')
    ));
    t.run().assert_code(0);
    assert_eq!(
        t.read("sizes.txt").trim(),
        "100000",
        "one task, the item whole"
    );
}

#[test]
fn an_item_too_long_for_the_environment_fails_its_task_saying_why() {
    let t = Test::new(&format!(
        "[jobs.p]\ncommand = \"{}\"\nto = 'q'\n[jobs.c]\ncommand = 'echo ran >> ran.txt'\nitems = {{ queue = 'q' }}\n",
        line_of(200_000, 'a')
    ));
    let out = t.run();
    out.assert_code(1)
        .assert_stderr_has("did not start: the item is 200000 bytes")
        .assert_stderr_has("128 KiB")
        .assert_stderr_has("stdin = { queue");
    assert!(!t.path("ran.txt").exists());
}

#[test]
fn a_queue_line_past_the_limit_fails_its_producer_naming_the_limit() {
    let t = Test::new(&format!(
        "[jobs.p]\ncommand = \"echo first; {}\"\nto = 'q'\n[jobs.c]\ncommand = 'cat > got.txt'\nstdin = {{ queue = 'q' }}\n",
        line_of(17 << 20, 'a')
    ));
    let out = t.run();
    out.assert_code(1)
        .assert_stderr_has("FAILED p: line 2 of stdout is longer than 16 MiB");
    assert_eq!(
        t.read("got.txt"),
        "first\n",
        "nothing of the long line was passed on"
    );
}

#[test]
fn a_printed_line_past_the_limit_fails_its_task_naming_the_limit() {
    let t = Test::new("[jobs.p]\ncommand = 'head -c 300000000 /dev/zero'\n");
    let out = t.run();
    out.assert_code(1)
        .assert_stderr_has("FAILED p: line 1 of stdout is longer than 256 MiB");
    assert!(out.stdout.is_empty(), "nothing printed of it");
}

#[test]
fn a_huge_printed_line_keeps_memory_bounded() {
    let t = Test::new(&format!(
        "[jobs.p]\ncommand = \"{}\"\n",
        line_of(200_000_000, 'a')
    ))
    .args(&["--report", "report.json"]);
    let out = t.run();
    out.assert_code(0);
    assert_eq!(out.stdout.len(), "[p] ".len() + 200_000_001);
    let kib = peak_kib(&t);
    assert!(kib < 16 * 1024, "peak {kib} KiB");
}

#[test]
fn a_task_writing_an_endless_line_is_stopped_at_the_limit() {
    let t = Test::new(
        "[jobs.p]\ncommand = \"yes | tr -d '\\\\n'\"\nto = 'q'\n[jobs.c]\ncommand = 'wc -c'\nstdin = { queue = 'q' }\n",
    )
    .args(&["--grace", "1s"]);
    let out = t.run();
    out.assert_code(1)
        .assert_stderr_has("FAILED p: line 1 of stdout is longer than 16 MiB")
        .assert_stderr_has("the task was stopped");
    assert_eq!(out.lines_of("c"), ["0"]);
}
