//! A worker takes tasks ahead (prefetch) and sends results in batches: the delivery
//! rules hold for the tasks it holds and has not started.

use crate::distributed::{wait_child, Redis, Worker};
use crate::util::{wait_for, Test};
use std::time::Duration;

/// Entries pending (delivered, not acknowledged) in the run's task stream.
fn pending(redis: &Redis) -> usize {
    let run = redis.newest_run();
    if run.is_empty() {
        return 0;
    }
    redis
        .cli(&["XPENDING", &format!("runner:{run}:tasks"), "workers"])
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_worker_killed_holding_prefetched_tasks_loses_none_of_them() {
    let redis = Redis::start(&[]);
    let t = Test::new(
        "[jobs.slow]\ncommand = 'echo $RUNNER_ITEM >> started.log; sleep 0.2; echo {item}'\nitems = { range = [0, 40] }\nto = 'out'\n[jobs.collect]\ncommand = 'sort -n > got.txt'\nstdin = { queue = 'out' }\n",
    )
    .args(&["--broker", &redis.url(), "--no-local", "--lease", "1s"]);
    let doomed = Worker::start(&t, "jobs.toml", &redis.url(), &["--pool", "1"], &[]);
    let mut runner = t.spawn();
    assert!(wait_for(Duration::from_secs(15), || t
        .lines_in("started.log")
        >= 2));
    // It holds more than the one task it runs: taken ahead, not started.
    let held = pending(&redis);
    assert!(held >= 2, "pending entries: {held}");
    doomed.signal(libc::SIGKILL);
    let ran_before = t.lines_in("started.log");
    assert!(ran_before < 40);
    let _survivor = Worker::start(&t, "jobs.toml", &redis.url(), &["--pool", "2"], &[]);
    let status = wait_child(&mut runner, Duration::from_secs(60));
    assert_eq!(status, Some(0));
    let got: Vec<u32> = t
        .read("got.txt")
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(
        got,
        (0..40).collect::<Vec<_>>(),
        "every task's result exactly once"
    );
}
