//! A worker takes tasks ahead (prefetch) and sends results in batches: the delivery
//! rules hold for the tasks it holds and has not started.

use crate::distributed::{wait_child, wait_keeping_a_worker, Redis, Worker};
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

/// Runs of many short tasks, one after another, through two workers: each ends in
/// seconds. An ignored SIGCHLD (thousands of children a second) failed a worker's
/// XREADGROUP with EINTR; read again, the entries the first read took waited out their
/// lease (30 s here) before another worker took them over. (The workers print every
/// start and end, into files: so they ran when the stall was seen.)
#[test]
fn runs_of_short_tasks_one_after_another_never_wait_out_a_lease() {
    let redis = Redis::start(&[]);
    let t = Test::new("[jobs.t]\ncommand = ['true']\nitems = { range = [0, 3000] }\n").args(&[
        "--broker",
        &redis.url(),
        "--no-local",
        "--lease",
        "30s",
        "-q",
    ]);
    let workers: Vec<Worker> = (0..2)
        .map(|i| {
            let log = std::fs::File::create(t.path(&format!("worker{i}.log"))).unwrap();
            let child = std::process::Command::new(crate::util::BIN)
                .current_dir(t.dir.path())
                .args([
                    "worker",
                    "jobs.toml",
                    "--pool",
                    "1",
                    "--broker",
                    &redis.url(),
                ])
                .env_remove("RUNNER_AUTHKEY")
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            Worker(child)
        })
        .collect();
    for round in 0..4 {
        let mut runner = t.spawn();
        // Panics (and kills the run) if it has not ended by then.
        let status = wait_child(&mut runner, Duration::from_secs(25));
        assert_eq!(status, Some(0), "run {round}");
    }
    drop(workers);
}

/// A task that kills its worker, run by workers that keep tasks in hand: the tasks held
/// behind it, never started, are not counted as delivered each time a worker holding
/// them dies. Three workers learn their bounds on `warm` (so each keeps several tasks in
/// hand), then `poison` and `after` are published together: the worker that reads
/// `poison` holds `after` tasks behind it, and so may each worker that takes them over.
/// With `--max-deliveries 3` only `poison` is lost; every `after` task runs.
#[test]
fn tasks_held_behind_a_poison_task_are_not_lost_with_it() {
    let redis = Redis::start(&[]);
    let t = Test::new(
        "[jobs.warm]\ncommand = ['true']\nitems = { range = [0, 60] }\n\
         [jobs.poison]\ncommand = 'kill -9 $PPID'\nitems = ['x']\nneeds = ['warm']\n\
         [jobs.after]\ncommand = 'echo {item} >> after.log'\nitems = { range = [0, 12] }\nneeds = ['warm']\n",
    )
    .args(&[
        "--broker",
        &redis.url(),
        "--no-local",
        "--lease",
        "500ms",
        "--max-deliveries",
        "3",
    ]);
    let start = || Worker::start(&t, "jobs.toml", &redis.url(), &["--pool", "1"], &[]);
    let mut workers: Vec<Worker> = (0..3).map(|_| start()).collect();
    let mut runner = t.spawn();
    // Workers die on the poison task; one is started whenever none is left.
    let status = wait_keeping_a_worker(&mut runner, &mut workers, start, Duration::from_secs(60));
    let err = crate::distributed::stderr_of(&mut runner);
    assert_eq!(status, Some(1), "{err}");
    assert!(
        err.contains("FAILED poison:x: lost after 3 deliveries"),
        "{err}"
    );
    let mut ran: Vec<u32> = t
        .read("after.log")
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    ran.sort();
    ran.dedup();
    assert_eq!(ran, (0..12).collect::<Vec<_>>(), "{err}");
    assert!(!err.contains("FAILED after"), "{err}");
}
