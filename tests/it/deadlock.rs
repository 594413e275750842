//! Runs that used to hang forever (issue 11, point 6): each must end, within a
//! deadline far above its normal time.

use crate::util::Test;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Runs the job file to its end and returns its exit status; panics (after killing it)
/// if it has not ended within `limit`.
fn ends_within(t: &Test, limit: Duration) -> Option<i32> {
    let mut child = t
        .command()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("runner starts");
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the run did not end in {limit:?}: it hangs");
}

/// `pool = 1`: the producer fills its queue and holds the only slot; the consumer needs
/// `setup`, which must get the slot the blocked producer lends.
#[test]
fn a_blocked_producer_lends_its_slot_to_a_job_the_consumer_needs() {
    let t = Test::new(
        "pool = 1\n[queues.q]\ncapacity = 4\n[jobs.producer]\ncommand = 'seq 200'\nto = 'q'\n[jobs.consumer]\ncommand = 'echo {item} >> got'\nitems = { queue = 'q' }\nneeds = ['setup']\n[jobs.setup]\ncommand = 'true'\n",
    );
    assert_eq!(ends_within(&t, Duration::from_secs(60)), Some(0));
    assert_eq!(t.lines_in("got"), 200);
}

/// Two producers with a queue of one item in a pool of two.
#[test]
fn two_producers_on_a_queue_of_one_in_a_pool_of_two_end() {
    let t = Test::new(
        "pool = 2\n[queues.q]\ncapacity = 1\n[jobs.p1]\ncommand = 'seq 100'\nto = 'q'\n[jobs.p2]\ncommand = 'seq 100'\nto = 'q'\n[jobs.c]\ncommand = 'echo {item} >> got'\nitems = { queue = 'q' }\n",
    );
    assert_eq!(ends_within(&t, Duration::from_secs(60)), Some(0));
    assert_eq!(t.lines_in("got"), 200);
}

/// Found by the scheduler's property test: a consumer job that also writes to a queue
/// ends when its own queue closes after its last task; the queue it writes to must be
/// closed then too (the scheduler's "queue closed" news was dropped, and the run hung
/// with every task done).
#[test]
fn a_queue_written_by_a_consumer_closes_when_the_consumer_ends() {
    let t = Test::new(
        "[jobs.p]\ncommand = 'echo 1; sleep 0.3'\nto = 'q1'\n[jobs.c1]\ncommand = 'echo {item}'\nitems = { queue = 'q1' }\nto = 'q2'\n[jobs.c2]\ncommand = 'echo {item} >> got'\nitems = { queue = 'q2' }\n",
    );
    assert_eq!(ends_within(&t, Duration::from_secs(30)), Some(0));
    assert_eq!(t.read("got"), "1\n");
}

/// Also found by the property test: jobs that would wait on each other once a queue is
/// full are refused at load time, naming every wait.
#[test]
fn jobs_that_would_wait_on_each_other_through_a_full_queue_are_refused() {
    let t = Test::new(
        "[jobs.p]\ncommand = 'seq 5000'\nto = 'a'\n[jobs.r]\ncommand = 'cat'\nstdin = { queue = 'a' }\nto = 'b'\n[jobs.c]\ncommand = 'true {item}'\nitems = { queue = 'b' }\nneeds = ['p']\n",
    );
    t.run()
        .assert_code(2)
        .assert_stderr_has("these jobs would wait for each other forever once a queue is full: `c` starts after `p` ends; `p` cannot end until `r` reads queue `a`, and `r` reads only while it can write to queue `b`, read by `c`");
}

/// Issue 11, point 7: a bug (a panic) in a slot thread ends the run — a clear message,
/// that task failed, the others stopped, exit 1 — and leaves no process behind; it used
/// to leave a runner waiting forever and a zombie. The panic is asked for through a
/// hook that exists in debug builds only (`RUNNER_TEST_PANIC`, see exec/process.rs).
#[test]
fn a_panic_in_a_slot_thread_ends_the_run_and_leaves_no_process() {
    let mark = crate::util::marker("panic");
    let t = Test::new(&format!(
        "pool = 3\n[jobs.a]\ncommand = ['sh', '-c', 'sleep 1000; : {mark}', '{{item}}']\nitems = ['boom', 'x', 'y']\n"
    ))
    .args(&["--grace", "1s"])
    .env("RUNNER_TEST_PANIC", "boom")
    .env("RUST_BACKTRACE", "0");
    let stderr = std::fs::File::create(t.path("stderr")).unwrap();
    let mut child = t
        .command()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the run did not end after the panic: it hangs");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let err = t.read("stderr");
    assert_eq!(code, Some(1), "{err}");
    for expected in [
        "internal error: RUNNER_TEST_PANIC: a panic asked for by a test; this is a bug in runner, please report it; stopping the run",
        "FAILED a:boom: internal error",
        "STOPPED a:x",
    ] {
        assert!(err.contains(expected), "{expected:?} not in:\n{err}");
    }
    assert!(
        crate::util::wait_for(Duration::from_secs(5), || crate::util::processes_with(
            &mark
        )
        .is_empty()),
        "left behind: {:?}",
        crate::util::processes_with(&mark)
    );
}
