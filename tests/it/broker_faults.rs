//! Distributed runs when something goes wrong around them: hostile text in Redis, a
//! coordinator killed, Redis restarted without persistence, a run stopped while workers
//! run its tasks, a worker told to stop while its broker is away.

use crate::cut_proxy::{Cut, CutProxy};
use crate::distributed::{stderr_of, wait_child, Redis, Worker};
use crate::util::{marker, processes_with, wait_for, Collected, Test};
use std::time::Duration;

#[test]
fn terminal_escapes_from_redis_never_reach_the_terminal() {
    for authkey in [Some("k3y"), None] {
        let redis = Redis::start(&[]);
        let mut t = Test::new(
            "[jobs.gate]\ncommand = 'i=0; while [ ! -e open ] && [ $i -lt 300 ]; do sleep 0.05; i=$((i+1)); done'\n",
        )
        .args(&["--broker", &redis.url(), "--no-local"]);
        if let Some(key) = authkey {
            t = t.env("RUNNER_AUTHKEY", key);
        }
        let mut runner = t.spawn();
        let err = Collected::start(runner.stderr.take().unwrap());
        let run = redis.announced_run();
        let events = format!("runner:{run}:events");
        for _ in 0..2 {
            redis.cli(&[
                "XADD",
                &events,
                "*",
                "host",
                "evil\x1b[31m",
                "message",
                "\x1b]0;PWNED\x07\x1b[2J cleared",
            ]);
        }
        let seen = if authkey.is_some() {
            "dropped"
        } else {
            "cleared"
        };
        assert!(err.wait_for(Duration::from_secs(10), seen), "{}", err.now());
        t.write("open", "");
        let status = wait_child(&mut runner, Duration::from_secs(20));
        let err = err.finish();
        assert_eq!(status, Some(0), "{err}");
        assert!(!err.contains('\x1b') && !err.contains('\x07'), "{err:?}");
        if authkey.is_some() {
            assert!(!err.contains("PWNED") && !err.contains("evil"), "{err}");
            assert_eq!(err.matches("does not authenticate").count(), 1, "{err}");
            assert!(
                err.contains("2 worker reports that did not authenticate were dropped"),
                "{err}"
            );
        } else {
            assert!(
                err.contains("worker evil?[31m: ?]0;PWNED??[2J cleared"),
                "{err}"
            );
        }
    }
}

/// A job file whose fan-out tasks take a while, for runs that are cut short.
fn slow_fan(seconds: &str, count: u32, mark: &str) -> String {
    format!(
        "[jobs.fan]\ncommand = 'echo {{item}} >> started.log; sleep {seconds}; echo {mark} > /dev/null'\nitems = {{ range = [0, {count}] }}\n"
    )
}

#[test]
fn a_killed_coordinator_does_not_hold_workers_from_the_next_run() {
    let redis = Redis::start(&[]);
    let mark = marker("deadcoord");
    let t = Test::new(&slow_fan("0.2", 6, &mark)).args(&["--broker", &redis.url(), "--no-local"]);
    let mut dead = t.spawn();
    let first = redis.announced_run();
    // SAFETY: killing the coordinator this test started, by its pid.
    unsafe { libc::kill(dead.id() as i32, libc::SIGKILL) };
    let _ = dead.wait();
    let mut next = t.spawn();
    let w = Worker::start(&t, "jobs.toml", &redis.url(), &["--pool", "2"], &[]);
    let status = wait_child(&mut next, Duration::from_secs(30));
    let err = stderr_of(&mut next);
    assert_eq!(status, Some(0), "{err}");
    let ttl: i64 = redis
        .cli(&["TTL", &format!("runner:run:{first}")])
        .trim()
        .parse()
        .unwrap();
    assert!(ttl > 0, "the dead run's keys expire: TTL {ttl}");
    let said = w.finish();
    assert!(said.contains(&format!("run {first}")), "{said}");
}

#[test]
fn redis_restarted_without_persistence_ends_the_run_with_its_tasks_lost() {
    let mut redis = Redis::start(&[]);
    let t = Test::new("[jobs.step]\ncommand = 'sleep 0.3'\nitems = { range = [0, 20] }\n").args(&[
        "--broker",
        &redis.url(),
        "--no-local",
    ]);
    let w = Worker::start(&t, "jobs.toml", &redis.url(), &["--pool", "2"], &[]);
    let mut runner = t.spawn();
    let run = redis.announced_run();
    assert!(wait_for(Duration::from_secs(15), || redis
        .hash_len(&format!("runner:{run}:done"))
        >= 2));
    redis.restart();
    let status = wait_child(&mut runner, Duration::from_secs(20));
    let err = stderr_of(&mut runner);
    assert_eq!(status, Some(1), "{err}");
    assert!(err.contains("lost this run's state"), "{err}");
    assert!(err.contains("FAILED step:19: lost"), "{err}");
    drop(w);
}

#[test]
fn fail_fast_stops_the_tasks_on_workers() {
    let redis = Redis::start(&[]);
    let mark = marker("failfast");
    let t = Test::new(&format!(
        "[jobs.fan]\ncommand = 'if [ {{item}} = 0 ]; then while [ $(wc -l < started.log) -lt 4 ]; do sleep 0.05; done; exit 3; fi; echo {{item}} >> started.log; sleep 30; echo {mark} > /dev/null'\nitems = {{ range = [0, 4] }}\n"
    ))
    .args(&["--broker", &redis.url(), "--no-local", "--fail-fast"]);
    t.write("started.log", "x\n");
    let w = Worker::start(
        &t,
        "jobs.toml",
        &redis.url(),
        &["--pool", "4", "--grace", "1s"],
        &[],
    );
    let mut runner = t.spawn();
    let status = wait_child(&mut runner, Duration::from_secs(20));
    let err = stderr_of(&mut runner);
    assert_eq!(status, Some(1), "{err}");
    assert!(
        wait_for(Duration::from_secs(10), || processes_with(&mark).is_empty()),
        "the worker's tasks are stopped: {:?}",
        processes_with(&mark)
    );
    for item in 1..4 {
        assert!(
            err.contains(&format!("STOPPED fan:{item}: killed by SIGTERM")),
            "{err}"
        );
    }
    drop(w);
}

#[test]
fn a_terminated_coordinator_stops_remote_tasks_and_says_what_it_withdrew() {
    let redis = Redis::start(&[]);
    let mark = marker("termcoord");
    let t = Test::new(&slow_fan("30", 3, &mark)).args(&[
        "--broker",
        &redis.url(),
        "--no-local",
        "--report",
        "report.json",
    ]);
    let w = Worker::start(
        &t,
        "jobs.toml",
        &redis.url(),
        &["--pool", "1", "--grace", "1s"],
        &[],
    );
    let mut runner = t.spawn();
    let said = Collected::start(runner.stderr.take().unwrap());
    assert!(wait_for(Duration::from_secs(15), || t
        .lines_in("started.log")
        == 1));
    // The coordinator knows it runs once the worker's start reached it (a worker sends
    // the starts of tasks it took ahead in its next batch, a round trip later): until
    // then the task counts as not yet taken.
    assert!(
        said.wait_for(Duration::from_secs(15), "start fan:"),
        "{}",
        said.now()
    );
    // SAFETY: terminating the coordinator this test started, by its pid.
    unsafe { libc::kill(runner.id() as i32, libc::SIGTERM) };
    let status = wait_child(&mut runner, Duration::from_secs(15));
    let err = said.finish();
    assert_eq!(status, Some(143), "{err}");
    assert!(!err.contains("os error 4"), "{err}");
    assert!(err.contains("stopping 0 running tasks"), "{err}");
    assert!(
        err.contains("1 task running on workers") && err.contains("2 not yet taken are withdrawn"),
        "{err}"
    );
    assert!(wait_for(Duration::from_secs(10), || processes_with(&mark).is_empty()));
    let report: serde_json::Value = serde_json::from_str(&t.read("report.json")).unwrap();
    let stopped = report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["stopped"] == true)
        .count();
    assert_eq!(stopped, 1, "{report}");
    drop(w);
}

#[test]
fn a_worker_whose_broker_is_gone_stops_on_the_first_term() {
    let mut redis = Redis::start(&[]);
    let t = Test::new("[jobs.fan]\ncommand = 'true'\nitems = [1]\n");
    let mut w = Worker::start(&t, "jobs.toml", &redis.url(), &["--pool", "1"], &[]);
    let err = Collected::start(w.0.stderr.take().unwrap());
    assert!(err.wait_for(Duration::from_secs(10), "worker on"));
    redis.stop();
    // It says what it waits for (an idle worker notices within its 1 s poll).
    let said = err.wait_for(Duration::from_secs(10), "unreachable");
    w.signal(libc::SIGTERM);
    let status = wait_child(&mut w.0, Duration::from_secs(5));
    let text = err.finish();
    assert!(said, "{text}");
    assert_eq!(status, Some(143), "{text}");
    assert!(text.contains("reconnecting"), "{text}");
}

#[test]
fn a_broker_url_without_scheme_says_what_to_write() {
    let out = Test::new("[jobs.fan]\ncommand = 'true'\nitems = [1]\n")
        .args(&["--broker", "127.0.0.1:6379"])
        .run();
    out.assert_code(2)
        .assert_stderr_has("redis://127.0.0.1:6379");
    assert!(
        !out.stderr.contains("the broker: Redis URL"),
        "{}",
        out.stderr
    );
}

/// Nanoseconds since the epoch, as `date +%s%N` writes them.
fn now_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[test]
fn a_worker_starts_no_task_of_a_run_whose_coordinator_is_dead() {
    let redis = Redis::start(&[]);
    let t = Test::new(
        "[jobs.fan]\ncommand = 'date +%s%N >> started.log; sleep 0.2'\nitems = { range = [0, 200] }\n",
    )
    .args(&["--broker", &redis.url(), "--no-local"]);
    let mut w = Worker::start(&t, "jobs.toml", &redis.url(), &["--pool", "2"], &[]);
    let said = Collected::start(w.0.stderr.take().unwrap());
    let mut dead = t.spawn();
    let run = redis.announced_run();
    assert!(wait_for(Duration::from_secs(15), || t
        .lines_in("started.log")
        >= 2));
    // SAFETY: killing the coordinator this test started, by its pid.
    unsafe { libc::kill(dead.id() as i32, libc::SIGKILL) };
    let _ = dead.wait();
    // The worker has tasks in hand and many more queued; the heartbeat lives 5 s.
    let alive = format!("runner:{run}:alive");
    let mut expired = 0;
    assert!(
        wait_for(Duration::from_secs(10), || {
            expired = now_ns();
            redis.cli(&["EXISTS", &alive]).trim() == "0"
        }),
        "the dead coordinator's heartbeat expires"
    );
    // Once the worker says it left the run, it starts none of its tasks any more.
    assert!(
        wait_for(Duration::from_secs(15), || {
            let now = said.now();
            now.contains("goes on") || now.contains("left run")
        }),
        "{}",
        said.now()
    );
    w.signal(libc::SIGTERM);
    let _ = wait_child(&mut w.0, Duration::from_secs(10));
    let said = said.finish();
    // A task checked just before the key expired may start a moment after the test saw
    // it gone; none starts later than that.
    let late: Vec<u128> = t
        .read("started.log")
        .lines()
        .filter_map(|l| l.trim().parse::<u128>().ok())
        .filter(|ns| *ns > expired + 300_000_000)
        .map(|ns| (ns - expired) / 1_000_000)
        .collect();
    assert!(
        late.is_empty(),
        "tasks started this many ms after the heartbeat expired: {late:?}\n{said}"
    );
    assert!(
        !said.contains("goes on"),
        "a dead run is not said to go on: {said}"
    );
    assert!(
        said.contains(&format!("left run {run}: its coordinator is gone")),
        "{said}"
    );
}

#[test]
fn results_redis_refuses_to_record_are_let_go_and_run_again() {
    // Redis answers an error (out of memory) to the worker's batch of results: the
    // entries must not be renewed for ever (the run would wait for ever); their
    // leases run out and they are taken over once Redis takes writes again.
    let redis = Redis::start(&[]);
    let t = Test::new(
        "[jobs.work]\nitems = [1, 2]\n\
         command = 'echo go >> started.log; while [ ! -e release ]; do sleep 0.05; done; echo $RUNNER_ITEM >> ran.log'\n",
    )
    .args(&["--broker", &redis.url(), "--no-local", "--lease", "3s"]);
    let worker = Worker::start(&t, "jobs.toml", &redis.url(), &["--pool", "2"], &[]);
    let mut child = t
        .command()
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let read = |name: &str| std::fs::read_to_string(t.path(name)).unwrap_or_default();
    while read("started.log").lines().count() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the tasks never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Every write refused from now on (noeviction is Redis's default policy).
    redis.cli(&["CONFIG", "SET", "maxmemory", "1"]);
    std::fs::write(t.path("release"), "").unwrap();
    while read("ran.log").lines().count() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the tasks never ended"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Give the worker time to try, then take writes again.
    std::thread::sleep(Duration::from_millis(500));
    redis.cli(&["CONFIG", "SET", "maxmemory", "0"]);
    let code = wait_child(&mut child, Duration::from_secs(60));
    let stderr = stderr_of(&mut child);
    assert_eq!(code, Some(0), "{stderr}");
    let said = worker.finish();
    assert!(
        said.contains("could not record the results"),
        "worker said: {said}"
    );
}

#[test]
fn a_batch_whose_reply_is_lost_is_not_sent_twice() {
    // The worker's batch that carries a task's output reaches Redis, and the connection
    // drops before Redis's answer comes back: the worker reconnects and sends the same
    // batch again, which must not add the output a second time. The task goes on until
    // then, so that its output is read while it is still running (the output of a task
    // whose result is in is dropped anyway).
    let redis = Redis::start(&[]);
    let proxy = CutProxy::start(redis.port, "said-42-once", Cut::AfterRequest);
    let t = Test::new(
        "[jobs.say]\nitems = [1]\n\
         command = 'echo said-$((6 * 7))-once; while [ ! -e release ]; do sleep 0.02; done'\n",
    )
    .args(&["--broker", &redis.url(), "--no-local"]);
    let worker = Worker::start(&t, "jobs.toml", &proxy.url(), &[], &[]);
    let mut child = t.spawn();
    let out = Collected::start(child.stdout.take().unwrap());
    assert!(
        wait_for(Duration::from_secs(20), || proxy.sent_again() >= 1),
        "the batch was sent again after its reply was lost"
    );
    // Its result comes after the batch sent again, on the same connection.
    t.write("release", "");
    let code = wait_child(&mut child, Duration::from_secs(30));
    let stderr = stderr_of(&mut child);
    let out = out.finish();
    let said = worker.finish();
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(proxy.cuts(), 1, "the batch's reply was lost: {said}");
    assert!(
        said.contains("unreachable"),
        "the worker reconnected: {said}"
    );
    assert_eq!(
        out.matches("said-42-once").count(),
        1,
        "the output is shown once: {out}"
    );
}

#[test]
fn entries_read_by_a_read_whose_reply_is_lost_are_run_without_waiting_for_their_lease() {
    // The reply that hands the worker a task entry is lost with its connection: Redis
    // read the entry for this worker (it is pending for it), and the read asked again
    // takes other entries. The worker takes it back at once, rather than leaving it
    // until its lease (a minute here) runs out: read ahead by the `take` thread, and
    // read one at a time by the consumers when a job `uses` a resource.
    for uses in ["", "uses = { gpu = 1 }\n"] {
        let redis = Redis::start(&[]);
        let proxy = CutProxy::start(redis.port, "lost-in-the-reply", Cut::Reply);
        let t = Test::new(&format!(
            "[resources]\ngpu = 1\n[jobs.work]\n{uses}\
             items = ['first', 'lost-in-the-reply', 'third', 'fourth']\n\
             command = 'echo \"$RUNNER_ITEM\" >> ran.log'\n"
        ))
        .args(&["--broker", &redis.url(), "--no-local", "--lease", "60s"]);
        let worker = Worker::start(&t, "jobs.toml", &proxy.url(), &["--pool", "1"], &[]);
        let mut child = t.spawn();
        let code = wait_child(&mut child, Duration::from_secs(30));
        let stderr = stderr_of(&mut child);
        let said = worker.finish();
        assert_eq!(
            code,
            Some(0),
            "{uses}the run ended before the lease ran out: {stderr}\nworker: {said}"
        );
        assert_eq!(proxy.cuts(), 1, "{uses}a reply was lost: {said}");
        // The entry, and any read with it.
        assert!(
            said.contains("took back ")
                && said.contains(" read before the broker's connection dropped"),
            "{uses}{said}"
        );
        let mut ran: Vec<String> = t.read("ran.log").lines().map(String::from).collect();
        ran.sort();
        assert_eq!(
            ran,
            ["first", "fourth", "lost-in-the-reply", "third"],
            "{uses}each ran once"
        );
    }
}

#[test]
fn a_takeover_whose_reply_is_lost_still_counts_against_max_deliveries() {
    // A task that kills its worker, `--max-deliveries 2`. The first worker reads it and
    // dies. The second takes it over, but the reply to its XCLAIM is lost with its
    // connection: asked again, the claim finds the entry no longer idle, and the worker
    // takes it back as an entry pending for it (`unseen`). That run must count: the task
    // is lost after these two, not run by a third worker.
    let redis = Redis::start(&[]);
    let proxy = CutProxy::start(redis.port, "poison-for-workers", Cut::Reply);
    let t = Test::new(
        "[jobs.poison]\nitems = ['poison-for-workers']\n\
         command = 'echo ran >> runs.log; kill -9 $PPID'\n",
    )
    .args(&[
        "--broker",
        &redis.url(),
        "--no-local",
        "--lease",
        "500ms",
        "--max-deliveries",
        "2",
    ]);
    let mut runner = t.spawn();
    let dies = |url: &str| {
        let mut w = Worker::start(&t, "jobs.toml", url, &["--pool", "1"], &[]);
        wait_child(&mut w.0, Duration::from_secs(20));
        w
    };
    let first = dies(&redis.url());
    let second = dies(&proxy.url());
    assert_eq!(proxy.cuts(), 1, "the claim's reply was lost");
    // A third worker, which must find nothing left to run.
    let third = Worker::start(&t, "jobs.toml", &redis.url(), &["--pool", "1"], &[]);
    let code = wait_child(&mut runner, Duration::from_secs(30));
    let err = stderr_of(&mut runner);
    let said = [first, second, third].map(Worker::finish).join("\n---\n");
    assert_eq!(code, Some(1), "{err}\n{said}");
    assert!(err.contains("lost after 2 deliveries"), "{err}\n{said}");
    assert_eq!(t.lines_in("runs.log"), 2, "{err}\n{said}");
}
