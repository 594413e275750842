//! Resources and rates across a distributed run (issue 27): a real `redis-server` and
//! two real `runner worker` processes. Times come from the tasks' own clocks: each
//! command appends `start NS WORKER/ITEM` and `end NS WORKER/ITEM` to a log, `WORKER`
//! being the name each worker was started with (its environment reaches its tasks).

use crate::distributed::{Redis, Worker};
use crate::util::{wait_for, Test};
use std::time::Duration;

/// A command that logs its start and end around `body`.
fn timed(body: &str) -> String {
    format!("echo \"start $(date +%s%N) $WHO/$RUNNER_ITEM\" >> log; {body}; echo \"end $(date +%s%N) $WHO/$RUNNER_ITEM\" >> log")
}

/// The log's (kind, ns, worker) entries.
fn entries(t: &Test) -> Vec<(String, u128, String)> {
    t.read("log")
        .lines()
        .map(|l| {
            let mut w = l.split_whitespace();
            let kind = w.next().unwrap().to_string();
            let ns = w.next().unwrap().parse().unwrap();
            let who = w.next().unwrap_or("").split('/').next().unwrap_or("");
            (kind, ns, who.to_string())
        })
        .collect()
}

/// How late a task's own clock may read its start after the rate let it go: a process
/// started on a loaded machine. One late start shortens the gap after it by as much.
const START_JITTER_MS: f64 = 60.0;

/// That sorted start times (ns) keep a rate of one start per `period_ms`, as the run's
/// bucket in Redis gives turns: a turn asked for late lets the next come sooner, but
/// never sooner than 3/4 of the period after it, so any `k + 1` turns in a row span at
/// least `k` periods less a quarter of one. The tasks' clocks add one start's jitter.
/// Starts that skipped the rate come within a few ms of another, and many of them
/// shorten the longer spans by whole periods: both fail it.
fn assert_paced(starts: &[u128], period_ms: f64) {
    let gaps: Vec<f64> = starts
        .windows(2)
        .map(|w| (w[1] - w[0]) as f64 / 1e6)
        .collect();
    for (i, a) in starts.iter().enumerate() {
        for (k, b) in starts[i + 1..].iter().enumerate() {
            let span = (b - a) as f64 / 1e6;
            let least = (k + 1) as f64 * period_ms - period_ms / 4.0 - START_JITTER_MS;
            assert!(
                span >= least,
                "starts {i} to {} span {span:.1} ms, less than {least} ms; gaps (ms) {gaps:?}",
                i + k + 1
            );
        }
    }
}

/// The most tasks running at once on worker `who`, by the log.
fn peak(t: &Test, who: &str) -> usize {
    let mut events: Vec<(u128, i32)> = entries(t)
        .into_iter()
        .filter(|(_, _, w)| w == who)
        .map(|(k, ns, _)| (ns, if k == "start" { 1 } else { -1 }))
        .collect();
    events.sort();
    let (mut now, mut most) = (0, 0);
    for (_, d) in events {
        now += d;
        most = most.max(now);
    }
    most as usize
}

/// Two workers named w1 and w2, each with `extra`, connected before the run starts.
fn two_workers(t: &Test, redis: &Redis, extra: &[&str]) -> (Worker, Worker) {
    let before = redis.clients();
    let w1 = Worker::start(t, "jobs.toml", &redis.url(), extra, &[("WHO", "w1")]);
    let w2 = Worker::start(t, "jobs.toml", &redis.url(), extra, &[("WHO", "w2")]);
    assert!(
        wait_for(Duration::from_secs(10), || redis.clients() >= before + 2),
        "both workers connect"
    );
    (w1, w2)
}

#[test]
fn each_worker_holds_its_own_resources_and_both_are_used() {
    let redis = Redis::start(&[]);
    // The file says 4; each worker has 1 (`--resource`), and a pool of 3.
    let t = Test::new(&format!(
        "[resources]\ngpu = 4\n[jobs.train]\ncommand = '{}'\nitems = {{ range = [0, 6] }}\nuses = {{ gpu = 1 }}\n",
        timed("sleep 0.3")
    ))
    .args(&["--broker", &redis.url(), "--no-local"]);
    let (w1, w2) = two_workers(&t, &redis, &["--pool", "3", "--resource", "gpu=1"]);
    t.run().assert_code(0);
    let log = t.read("log");
    assert_eq!(entries(&t).len(), 12, "every task ran once:\n{log}");
    for who in ["w1", "w2"] {
        assert_eq!(peak(&t, who), 1, "{who} ran one gpu task at a time:\n{log}");
    }
    drop((w1, w2));
}

#[test]
fn a_task_too_big_for_a_worker_is_left_to_one_that_has_room() {
    let redis = Redis::start(&[]);
    let t = Test::new(&format!(
        "[resources]\nmem = \"4G\"\n[jobs.big]\ncommand = '{}'\nitems = {{ range = [0, 4] }}\nuses = {{ mem = \"2G\" }}\n",
        timed("sleep 0.2")
    ))
    .args(&["--broker", &redis.url(), "--no-local", "--lease", "1s"]);
    let before = redis.clients();
    let small = Worker::start(
        &t,
        "jobs.toml",
        &redis.url(),
        &["--pool", "2", "--resource", "mem=1G"],
        &[("WHO", "small")],
    );
    let big = Worker::start(
        &t,
        "jobs.toml",
        &redis.url(),
        &["--pool", "2"],
        &[("WHO", "big")],
    );
    assert!(wait_for(Duration::from_secs(10), || redis.clients() >= before + 2));
    let out = t.run();
    out.assert_code(0).assert_stderr_has(
        "job `big` uses more than this worker has (mem 2 GiB of 1 GiB): its tasks are left to other workers",
    );
    let log = t.read("log");
    let ran: Vec<String> = entries(&t).into_iter().map(|e| e.2).collect();
    assert_eq!(ran.len(), 8, "{log}");
    assert!(ran.iter().all(|w| w == "big"), "{log}");
    drop((small, big));
}

#[test]
fn a_rate_holds_over_both_workers_together() {
    let redis = Redis::start(&[]);
    let t = Test::new(&format!(
        "[jobs.call]\ncommand = '{}'\nitems = {{ range = [0, 20] }}\nrate = \"10/s\"\n",
        timed("true")
    ))
    .args(&["--broker", &redis.url(), "--no-local"]);
    let (w1, w2) = two_workers(&t, &redis, &["--pool", "2"]);
    t.run().assert_code(0);
    let mut starts: Vec<(u128, String)> = entries(&t)
        .into_iter()
        .filter(|e| e.0 == "start")
        .map(|e| (e.1, e.2))
        .collect();
    starts.sort();
    let log = t.read("log");
    assert_eq!(starts.len(), 20, "{log}");
    assert!(
        starts.iter().any(|s| s.1 == "w1") && starts.iter().any(|s| s.1 == "w2"),
        "both workers ran tasks:\n{log}"
    );
    let times: Vec<u128> = starts.iter().map(|s| s.0).collect();
    assert_paced(&times, 100.0);
    let total = (starts[19].0 - starts[0].0) as f64 / 1e9;
    assert!(total >= 1.7, "20 starts over {total} s");
    drop((w1, w2));
}

#[test]
fn retries_on_workers_are_paced_by_the_rate_too() {
    let redis = Redis::start(&[]);
    // Every task fails its first attempt and is retried 10 ms later on its worker: the
    // retries take turns of the rate with every other start.
    let t = Test::new(&format!(
        "[jobs.call]\ncommand = '{}'\nitems = {{ range = [0, 8] }}\nrate = \"10/s\"\nretries = 1\nretry_delay = \"10ms\"\n",
        timed("if [ -e seen.$RUNNER_ITEM ]; then s=0; else touch seen.$RUNNER_ITEM; s=1; fi")
            + "; exit $s"
    ))
    .args(&["--broker", &redis.url(), "--no-local"]);
    let (w1, w2) = two_workers(&t, &redis, &["--pool", "2"]);
    t.run().assert_code(0);
    let mut starts: Vec<u128> = entries(&t)
        .into_iter()
        .filter(|e| e.0 == "start")
        .map(|e| e.1)
        .collect();
    starts.sort();
    let log = t.read("log");
    assert_eq!(starts.len(), 16, "8 tasks, each tried twice:\n{log}");
    assert_paced(&starts, 100.0);
    drop((w1, w2));
}

#[test]
fn a_bad_resource_on_a_worker_exits_2() {
    let t = Test::new("[resources]\ngpu = 1\n[jobs.a]\ncommand = 'true'\n");
    for (bad, said) in [
        ("gpu=lots", "the amount is not an integer ≥ 0 or a size"),
        ("gpu=-1", "the amount is not an integer ≥ 0 or a size"),
        ("gpu", "has no `=`: write NAME=N"),
        ("=2", "has no resource name before `=`"),
    ] {
        let out = t.run_with(&[
            "worker",
            "jobs.toml",
            "--broker",
            "redis://127.0.0.1:1",
            "--resource",
            bad,
        ]);
        out.assert_code(2).assert_stderr_has(said);
    }
}

#[test]
fn a_worker_gives_back_a_tasks_resources_while_it_waits_to_retry() {
    let redis = Redis::start(&[]);
    // Item 0 fails its first attempt and waits 1.5 s to retry; item 1, published after
    // it, needs the same gpu: it runs during the delay.
    let t = Test::new(&format!(
        "[resources]\ngpu = 1\n[jobs.train]\ncommand = '{}'\nitems = {{ range = [0, 2] }}\nuses = {{ gpu = 1 }}\nretries = 1\nretry_delay = \"1500ms\"\n",
        timed("if [ $RUNNER_ITEM = 0 ] && [ ! -e seen ]; then touch seen; s=1; else s=0; fi")
            + "; exit $s"
    ))
    .args(&["--broker", &redis.url(), "--no-local"]);
    let before = redis.clients();
    let w = Worker::start(
        &t,
        "jobs.toml",
        &redis.url(),
        &["--pool", "2"],
        &[("WHO", "w1")],
    );
    assert!(wait_for(Duration::from_secs(10), || redis.clients() > before));
    t.run().assert_code(0);
    let log = t.read("log");
    let starts: Vec<(u128, String)> = log
        .lines()
        .filter(|l| l.starts_with("start"))
        .map(|l| {
            let mut w = l.split_whitespace().skip(1);
            let ns = w.next().unwrap().parse().unwrap();
            (ns, w.next().unwrap().to_string())
        })
        .collect();
    let of = |item: &str| -> Vec<u128> {
        starts
            .iter()
            .filter(|s| s.1.ends_with(&format!("/{item}")))
            .map(|s| s.0)
            .collect()
    };
    let (zero, one) = (of("0"), of("1"));
    assert_eq!((zero.len(), one.len()), (2, 1), "{log}");
    assert!(
        zero[0] < one[0] && one[0] < zero[1],
        "item 1 ran while item 0 waited to retry:\n{log}"
    );
    assert_eq!(peak(&t, "w1"), 1, "never two gpu tasks at once:\n{log}");
    drop(w);
}

#[test]
fn the_coordinators_own_share_and_its_local_tasks_share_one_count() {
    let redis = Redis::start(&[]);
    // One gpu on this machine: the single task (run by the coordinator's scheduler) and
    // the fan-out's tasks (run by its own share, no worker) never hold it together.
    let t = Test::new(&format!(
        "[resources]\ngpu = 1\n[jobs.solo]\ncommand = '{}'\nuses = {{ gpu = 1 }}\n[jobs.fan]\ncommand = '{}'\nitems = {{ range = [0, 4] }}\nuses = {{ gpu = 1 }}\n",
        timed("sleep 0.4"),
        timed("sleep 0.2")
    ))
    .args(&["--broker", &redis.url(), "--pool", "3"]);
    t.run().assert_code(0);
    let log = t.read("log");
    assert_eq!(entries(&t).len(), 10, "every task ran once:\n{log}");
    assert_eq!(
        peak(&t, ""),
        1,
        "one gpu task at a time on this machine:\n{log}"
    );
}

#[test]
fn tasks_no_worker_has_room_for_are_said_in_the_heartbeat() {
    let redis = Redis::start(&[]);
    let t = Test::new(
        "[resources]\ngpu = 1\n[jobs.train]\ncommand = 'touch ran-{item}'\nitems = { range = [0, 3] }\nuses = { gpu = 1 }\n",
    )
    .args(&["--broker", &redis.url(), "--no-local"]);
    let before = redis.clients();
    let w = Worker::start(&t, "jobs.toml", &redis.url(), &["--resource", "gpu=0"], &[]);
    assert!(wait_for(Duration::from_secs(10), || redis.clients() > before));
    let mut runner = t.spawn();
    let err = crate::util::Collected::start(runner.stderr.take().unwrap());
    let said = err.wait_for(
        Duration::from_secs(20),
        "3 tasks wait for a worker with gpu free",
    );
    // SAFETY: signalling the runner this test started, by its pid.
    unsafe { libc::kill(runner.id() as i32, libc::SIGTERM) };
    let status = crate::distributed::wait_child(&mut runner, Duration::from_secs(30));
    let err = err.finish();
    assert!(said, "{err}");
    assert!(status.is_some_and(|s| s != 0), "{status:?}: {err}");
    assert!(!t.path("ran-0").exists());
    drop(w);
}
