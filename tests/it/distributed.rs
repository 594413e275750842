//! Distributed runs against a real `redis-server` started by each test on a free
//! loopback port, with workers as separate processes. The helpers here (`Redis`,
//! `Worker`, `wait_child`, `stderr_of`) serve `broker_faults.rs` and `secrets.rs` too.
//! Over 400 lines: one file per subject, and this subject is the happy and hostile paths.

use crate::util::{wait_for, Test, BIN};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A redis-server of the test's own, stopped (by its pid) when dropped.
pub struct Redis {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    args: Vec<String>,
}

impl Redis {
    pub fn start(extra: &[&str]) -> Redis {
        assert!(
            Command::new("redis-server")
                .arg("--version")
                .output()
                .is_ok(),
            "redis-server is not installed: run scripts/test, which installs it"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = Redis {
            port,
            dir: tempfile::tempdir().unwrap(),
            child: None,
            args: extra.iter().map(|s| s.to_string()).collect(),
        };
        redis.boot();
        redis
    }

    fn boot(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.args)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let up = wait_for(Duration::from_secs(10), || {
            self.cli(&["PING"]).contains("PONG") || self.cli(&["PING"]).contains("NOAUTH")
        });
        assert!(up, "redis-server answers");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn config(&self, name: &str) -> String {
        self.cli(&["CONFIG", "GET", name])
            .lines()
            .nth(1)
            .unwrap_or_default()
            .to_string()
    }

    /// Connected clients, not counting the redis-cli that asks.
    pub fn clients(&self) -> usize {
        self.cli(&["CLIENT", "LIST"])
            .lines()
            .count()
            .saturating_sub(1)
    }

    /// The number of fields of the hash `key` (0 when there is none).
    pub fn hash_len(&self, key: &str) -> usize {
        if key.is_empty() {
            return 0;
        }
        self.cli(&["HLEN", key]).trim().parse().unwrap_or(0)
    }

    pub fn stream_len(&self, key: &str) -> usize {
        self.cli(&["XLEN", key]).trim().parse().unwrap_or(0)
    }

    /// The id of the newest announced run.
    pub fn newest_run(&self) -> String {
        self.cli(&["XREVRANGE", "runner:runs", "+", "-", "COUNT", "1"])
            .lines()
            .nth(2)
            .unwrap_or_default()
            .to_string()
    }

    /// The id of the newest run announced, once there is one (within 15 s).
    pub fn announced_run(&self) -> String {
        let mut run = String::new();
        assert!(
            wait_for(Duration::from_secs(15), || {
                run = self.newest_run();
                !run.is_empty()
            }),
            "a run is announced"
        );
        run
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: terminating the redis-server this test started, by its pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.boot();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A `runner worker` process, killed when dropped.
pub struct Worker(pub Child);

impl Worker {
    pub fn start(t: &Test, file: &str, url: &str, extra: &[&str], env: &[(&str, &str)]) -> Worker {
        let mut cmd = Command::new(BIN);
        cmd.current_dir(t.dir.path())
            .args(["worker", file])
            .args(extra)
            .env_remove("RUNNER_AUTHKEY")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // An empty URL: the worker takes it from RUNNER_BROKER_URL in `env`.
        if !url.is_empty() {
            cmd.args(["--broker", url]);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        Worker(cmd.spawn().unwrap())
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: signalling the worker this test started, by its pid.
        unsafe { libc::kill(self.0.id() as i32, signal) };
    }

    /// Stops it and returns what it printed on stderr.
    pub fn finish(mut self) -> String {
        self.signal(libc::SIGKILL);
        let _ = self.0.wait();
        stderr_of(&mut self.0)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const SQUARES: &str = "[jobs.master]\ncommand = 'seq 1 40'\nto = 'tasks'\n[jobs.square]\ncommand = 'n={item}; echo \"$n * $n = $((n * n))\"'\nitems = { queue = 'tasks' }\nto = 'results'\n[jobs.collect]\ncommand = 'sort -n > results.txt'\nstdin = { queue = 'results' }\n[jobs.fan]\ncommand = 'echo fan {item} >> fan.log'\nitems = { range = [0, 30] }\n";

#[test]
fn results_equal_the_local_mode() {
    let redis = Redis::start(&[]);
    let local = Test::new(SQUARES);
    local.run().assert_code(0);
    let t = Test::new(SQUARES).args(&[
        "--broker",
        &redis.url(),
        "--no-local",
        "--report",
        "report.json",
    ]);
    let w1 = Worker::start(&t, "jobs.toml", &redis.url(), &["--pool", "2"], &[]);
    let w2 = Worker::start(&t, "jobs.toml", &redis.url(), &["--pool", "2"], &[]);
    let out = t.run();
    out.assert_code(0);
    assert_eq!(t.read("results.txt"), local.read("results.txt"));
    let mut fan: Vec<String> = t.read("fan.log").lines().map(String::from).collect();
    fan.sort();
    let mut want: Vec<String> = local.read("fan.log").lines().map(String::from).collect();
    want.sort();
    assert_eq!(fan, want, "every fan-out task ran exactly once");
    let report: serde_json::Value = serde_json::from_str(&t.read("report.json")).unwrap();
    let remote = report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["job"] == "square" || t["job"] == "fan")
        .count();
    assert_eq!(remote, 70);
    assert!(report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["host"].as_str().is_some_and(|h| !h.is_empty())));
    drop((w1, w2));
}

#[test]
fn a_worker_killed_mid_task_loses_nothing() {
    let redis = Redis::start(&[]);
    let t = Test::new(
        "[jobs.slow]\ncommand = 'echo $RUNNER_ITEM >> started.log; sleep 0.5; echo {item}'\nitems = { range = [0, 12] }\nto = 'out'\n[jobs.collect]\ncommand = 'sort -n > got.txt'\nstdin = { queue = 'out' }\n",
    )
    .args(&["--broker", &redis.url(), "--no-local", "--lease", "1s"]);
    let doomed = Worker::start(&t, "jobs.toml", &redis.url(), &["--pool", "2"], &[]);
    let mut runner = t.spawn();
    assert!(wait_for(Duration::from_secs(15), || t
        .lines_in("started.log")
        >= 2));
    doomed.signal(libc::SIGKILL);
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
        (0..12).collect::<Vec<_>>(),
        "every result exactly once"
    );
}

/// What a finished child printed on its (piped) stderr.
pub fn stderr_of(child: &mut Child) -> String {
    let mut text = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        use std::io::Read;
        let _ = pipe.read_to_string(&mut text);
    }
    text
}

pub fn wait_child(child: &mut Child, limit: Duration) -> Option<i32> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("the run did not end in {limit:?}");
}

/// Waits for the run `runner` while workers die on a task that kills them: whenever none
/// of `workers` is alive, one more is started with `start`. Panics with what the run
/// said if it has not ended within `limit`.
pub fn wait_keeping_a_worker(
    runner: &mut Child,
    workers: &mut Vec<Worker>,
    start: impl Fn() -> Worker,
    limit: Duration,
) -> Option<i32> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = runner.try_wait().unwrap() {
            return status.code();
        }
        if Instant::now() >= deadline {
            let _ = runner.kill();
            let _ = runner.wait();
            let said: Vec<String> = workers.drain(..).map(Worker::finish).collect();
            panic!(
                "the run did not end\n--- coordinator\n{}\n--- workers\n{}",
                stderr_of(runner),
                said.join("\n---\n")
            );
        }
        if !workers
            .iter_mut()
            .any(|w| w.0.try_wait().unwrap().is_none())
        {
            workers.push(start());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_paused_worker_past_its_lease_runs_a_task_twice_but_it_counts_once() {
    let redis = Redis::start(&[]);
    let t = Test::new(
        "[jobs.once]\ncommand = 'echo ran >> runs.log; sleep 1.5; echo {item}'\nitems = ['only']\nto = 'out'\n[jobs.collect]\ncommand = 'cat > got.txt'\nstdin = { queue = 'out' }\n",
    )
    .args(&["--broker", &redis.url(), "--no-local", "--lease", "1s"]);
    let paused = Worker::start(&t, "jobs.toml", &redis.url(), &["--pool", "1"], &[]);
    let mut runner = t.spawn();
    assert!(wait_for(Duration::from_secs(15), || t.lines_in("runs.log") == 1));
    paused.signal(libc::SIGSTOP);
    let other = Worker::start(&t, "jobs.toml", &redis.url(), &["--pool", "1"], &[]);
    let status = wait_child(&mut runner, Duration::from_secs(30));
    paused.signal(libc::SIGCONT);
    assert_eq!(status, Some(0));
    assert_eq!(t.read("got.txt"), "only\n", "the result counts once");
    assert_eq!(
        t.lines_in("runs.log"),
        2,
        "the task was taken over and ran again"
    );
    drop((paused, other));
}

#[test]
fn a_long_task_under_a_short_lease_runs_once() {
    let redis = Redis::start(&[]);
    let t = Test::new("[jobs.long]\ncommand = 'echo ran >> runs.log; sleep 3'\nitems = ['x']\n")
        .args(&["--broker", &redis.url(), "--no-local", "--lease", "1s"]);
    let w1 = Worker::start(&t, "jobs.toml", &redis.url(), &["--pool", "1"], &[]);
    let w2 = Worker::start(&t, "jobs.toml", &redis.url(), &["--pool", "1"], &[]);
    t.run().assert_code(0);
    assert_eq!(t.read("runs.log"), "ran\n");
    drop((w1, w2));
}

#[test]
fn a_poison_task_fails_as_lost_after_max_deliveries() {
    let redis = Redis::start(&[]);
    let t = Test::new("[jobs.poison]\ncommand = 'kill -9 $PPID'\nitems = ['x']\n[jobs.fine]\ncommand = 'true'\nitems = [1, 2]\n")
        .args(&["--broker", &redis.url(), "--no-local", "--lease", "500ms", "--max-deliveries", "2"]);
    let mut runner = t.spawn();
    // Workers die on the poison task; keep one alive at all times.
    let start = || Worker::start(&t, "jobs.toml", &redis.url(), &["--pool", "1"], &[]);
    let status =
        wait_keeping_a_worker(&mut runner, &mut Vec::new(), start, Duration::from_secs(60));
    let err = stderr_of(&mut runner);
    assert_eq!(status, Some(1), "{err}");
    assert!(
        err.contains("FAILED poison:x: lost after 2 deliveries"),
        "{err}"
    );
    assert!(
        err.lines()
            .any(|l| l.starts_with("fine ") && l.contains(" 2 ")),
        "{err}"
    );
}

#[test]
fn a_worker_that_left_a_running_run_comes_back_for_the_tasks_it_held() {
    // The run's only worker leaves it while holding tasks: here because its coordinator,
    // paused, missed its heartbeat (under load, a connection the worker could not make
    // did the same). The run goes on when the coordinator is back; the tasks must not
    // wait for another worker that never comes.
    let redis = Redis::start(&[]);
    let t = Test::new(
        "[jobs.fan]\ncommand = 'echo {item} >> started.log; test -e resumed || sleep 60; echo {item} >> fan.log'\nitems = [1, 2, 3, 4]\n",
    )
    .args(&["--broker", &redis.url(), "--no-local"]);
    let w = Worker::start(&t, "jobs.toml", &redis.url(), &["--pool", "1"], &[]);
    let mut runner = t.spawn();
    assert!(
        wait_for(Duration::from_secs(15), || t.path("started.log").exists()),
        "the worker holds the tasks"
    );
    let run = redis.newest_run();
    // SAFETY: pausing the coordinator this test started, by its pid.
    unsafe { libc::kill(runner.id() as i32, libc::SIGSTOP) };
    // A worker that judges the coordinator gone lets the run's keys expire.
    let left = wait_for(Duration::from_secs(20), || {
        redis
            .cli(&["TTL", &format!("runner:run:{run}")])
            .trim()
            .parse::<i64>()
            .is_ok_and(|ttl| ttl > 0)
    });
    t.write("resumed", "");
    // SAFETY: as above.
    unsafe { libc::kill(runner.id() as i32, libc::SIGCONT) };
    assert!(left, "the worker left the run");
    let status = wait_child(&mut runner, Duration::from_secs(60));
    let err = w.finish();
    assert_eq!(
        status,
        Some(0),
        "the run ends: {}\n--- worker\n{err}",
        stderr_of(&mut runner)
    );
    let mut got: Vec<String> = t.read("fan.log").lines().map(String::from).collect();
    got.sort();
    got.dedup();
    assert_eq!(got, ["1", "2", "3", "4"]);
    // "goes on" if the coordinator was back when it looked, else "its coordinator is
    // gone": either way it said it gave the tasks back.
    assert!(err.contains("the tasks held here were released"), "{err}");
}

#[test]
fn a_redis_restart_mid_run_is_survived() {
    let mut redis = Redis::start(&["--appendonly", "yes", "--appendfsync", "always"]);
    let t = Test::new(
        "[jobs.step]\ncommand = 'sleep 0.2; echo {item}'\nitems = { range = [0, 30] }\nto = 'out'\n[jobs.collect]\ncommand = 'sort -n > got.txt'\nstdin = { queue = 'out' }\n",
    )
    .args(&["--broker", &redis.url(), "--no-local"]);
    let w = Worker::start(&t, "jobs.toml", &redis.url(), &["--pool", "2"], &[]);
    let mut runner = t.spawn();
    // Mid-run: a few of the 30 tasks are done (each takes 0.2 s on 2 slots), most are not.
    let mut done = 0;
    assert!(
        wait_for(Duration::from_secs(15), || {
            let key = redis.cli(&["KEYS", "runner:*:done"]);
            done = redis.hash_len(key.trim());
            done >= 3
        }),
        "tasks complete before the restart"
    );
    assert!(done < 30, "the restart comes mid-run: {done} tasks done");
    redis.restart();
    let status = wait_child(&mut runner, Duration::from_secs(60));
    let err = stderr_of(&mut runner);
    assert_eq!(status, Some(0), "{err}");
    assert!(
        err.contains("reconnecting") && err.contains("is back"),
        "it says so: {err}"
    );
    let got: Vec<u32> = t
        .read("got.txt")
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(got, (0..30).collect::<Vec<_>>());
    drop(w);
}

#[test]
fn a_worker_with_another_job_file_refuses_the_run() {
    let redis = Redis::start(&[]);
    let t = Test::new("[jobs.fan]\ncommand = 'sleep 1; echo {item}'\nitems = [1, 2, 3]\n").args(&[
        "--broker",
        &redis.url(),
        "--lease",
        "1s",
    ]);
    t.write(
        "other.toml",
        "# another file\n[jobs.fan]\ncommand = 'sleep 1; echo {item}'\nitems = [1, 2, 3]\n",
    );
    let w = Worker::start(&t, "other.toml", &redis.url(), &["--pool", "1"], &[]);
    assert!(
        wait_for(Duration::from_secs(10), || redis.clients() >= 1),
        "the worker is connected"
    );
    let t = t.args(&["--grace", "1s"]);
    let mut runner = t.spawn();
    let status = wait_child(&mut runner, Duration::from_secs(30));
    assert_eq!(status, Some(0));
    let coordinator = stderr_of(&mut runner);
    assert!(
        coordinator.contains("refused the run: its job file has digest"),
        "reported to the coordinator: {coordinator}"
    );
    let err = w.finish();
    assert!(
        err.contains("refusing run") && err.contains("its job file has digest"),
        "{err}"
    );
    let digests: Vec<&str> = err
        .split_whitespace()
        .map(|w| w.trim_end_matches([',', ':']))
        .filter(|w| w.len() == 64 && w.chars().all(|c| c.is_ascii_hexdigit()))
        .collect();
    assert_eq!(digests.len(), 2, "both digests named: {err}");
    assert_ne!(digests[0], digests[1]);
}

#[test]
fn the_coordinators_wake_up_entry_is_not_taken_for_a_workers_report() {
    // When a run ends, the coordinator adds an entry of only `wake` to the run's event
    // stream, so that its results thread, waiting on Redis, ends at once. Anyone may
    // add one: it is never a report. A forged report after it is dropped and counted
    // as the only one.
    let redis = Redis::start(&[]);
    let t = Test::new("[jobs.wait]\ncommand = 'while [ ! -e open ]; do sleep 0.02; done'\n")
        .args(&["--broker", &redis.url()])
        .env("RUNNER_AUTHKEY", "k3y");
    let mut runner = t.spawn();
    let err = crate::util::Collected::start(runner.stderr.take().unwrap());
    assert!(
        wait_for(Duration::from_secs(10), || !redis.newest_run().is_empty()),
        "the run is announced"
    );
    let events = format!("runner:{}:events", redis.newest_run());
    redis.cli(&["XADD", &events, "*", "wake", ""]);
    redis.cli(&["XADD", &events, "*", "host", "x", "message", "forged"]);
    assert!(
        err.wait_for(Duration::from_secs(10), "does not authenticate"),
        "the forged report is read"
    );
    t.write("open", "");
    let status = wait_child(&mut runner, Duration::from_secs(30));
    let err = err.finish();
    assert_eq!(status, Some(0), "{err}");
    assert!(
        err.contains("1 worker report that did not authenticate was dropped"),
        "only the forged one is counted: {err}"
    );
    // The run's end added its own, after the two above.
    let last = redis.cli(&["XREVRANGE", &events, "+", "-", "COUNT", "1"]);
    assert_eq!(
        last.lines().skip(1).collect::<Vec<_>>(),
        ["wake", ""],
        "{last}"
    );
}

#[test]
fn a_wrong_authkey_is_refused_and_reported() {
    let redis = Redis::start(&[]);
    let t = Test::new("[jobs.fan]\ncommand = 'sleep 0.3; echo {item}'\nitems = [1, 2, 3, 4]\n")
        .args(&["--broker", &redis.url()])
        .env("RUNNER_AUTHKEY", "right-key");
    let w = Worker::start(
        &t,
        "jobs.toml",
        &redis.url(),
        &["--pool", "1"],
        &[("RUNNER_AUTHKEY", "wrong-key")],
    );
    assert!(
        wait_for(Duration::from_secs(10), || redis.clients() >= 1),
        "the worker is connected"
    );
    let out = t.run();
    out.assert_code(0);
    let run = redis.newest_run();
    assert!(wait_for(Duration::from_secs(10), || redis
        .stream_len(&format!("runner:{run}:events"))
        >= 1));
    // With an authkey, a report that does not authenticate is dropped: said once.
    out.assert_stderr_has("dropped a worker report that does not authenticate");
    let err = w.finish();
    assert!(
        err.contains("refusing run") && err.contains("does not authenticate"),
        "{err}"
    );
    assert!(
        !err.contains("right-key") && !err.contains("wrong-key"),
        "no secret printed"
    );
}

#[test]
fn forged_messages_are_refused_reported_and_never_run() {
    let redis = Redis::start(&[]);
    let t = Test::new(
        "[jobs.gate]\ncommand = 'i=0; while [ ! -e open ] && [ $i -lt 300 ]; do sleep 0.05; i=$((i+1)); done; echo {item}'\nitems = ['a']\n",
    )
    .args(&["--broker", &redis.url(), "--no-local"])
    .env("RUNNER_AUTHKEY", "k3y");
    let w = Worker::start(
        &t,
        "jobs.toml",
        &redis.url(),
        &["--pool", "2"],
        &[("RUNNER_AUTHKEY", "k3y")],
    );
    let mut runner = t.spawn();
    let run = redis.announced_run();
    let tasks = format!("runner:{run}:tasks");
    let results = format!("runner:{run}:results");
    redis.cli(&[
        "XADD",
        &tasks,
        "*",
        "job",
        "gate",
        "index",
        "7",
        "item",
        "$(touch pwned)",
    ]);
    redis.cli(&[
        "XADD",
        &results,
        "*",
        "job",
        "gate",
        "index",
        "0",
        "status",
        "succeeded",
        "end",
        "exit",
        "value",
        "0",
        "mac",
        "00ff",
    ]);
    // The worker refuses the forged task and reports it; then the real task may end.
    assert!(wait_for(Duration::from_secs(10), || redis
        .stream_len(&format!("runner:{run}:events"))
        >= 1));
    t.write("open", "");
    let status = wait_child(&mut runner, Duration::from_secs(30));
    let err = stderr_of(&mut runner);
    assert_eq!(status, Some(0), "{err}");
    assert!(
        err.contains("refused result entry") && err.contains("MAC does not match"),
        "the forged result: {err}"
    );
    assert!(
        err.contains("refused task entry"),
        "the worker's report of the forged task: {err}"
    );
    assert!(!t.path("pwned").exists());
    drop(w);
}

#[test]
fn a_replayed_task_entry_is_refused_and_its_task_runs_once() {
    // A copy of a real, signed task entry (same fields, same MAC) under a new id: the
    // worker reads it with the entries it takes ahead, START finds it was not issued as
    // that entry, and it is refused; the task runs once, from its own entry.
    let redis = Redis::start(&[]);
    let t = Test::new(
        "[jobs.gate]\ncommand = 'while [ ! -e open ]; do sleep 0.02; done; echo ran >> runs'\nitems = ['a']\n",
    )
    .args(&["--broker", &redis.url(), "--no-local"])
    .env("RUNNER_AUTHKEY", "k3y");
    let mut runner = t.spawn();
    let err = crate::util::Collected::start(runner.stderr.take().unwrap());
    let tasks = format!("runner:{}:tasks", redis.announced_run());
    let mut entry = Vec::new();
    assert!(wait_for(Duration::from_secs(10), || {
        entry = redis
            .cli(&["XRANGE", &tasks, "-", "+"])
            .lines()
            .skip(1)
            .map(str::to_string)
            .collect();
        entry.iter().any(|f| f == "mac")
    }));
    let mut replay = vec!["XADD", &tasks, "*"];
    replay.extend(entry.iter().map(String::as_str));
    redis.cli(&replay);
    let w = Worker::start(
        &t,
        "jobs.toml",
        &redis.url(),
        &["--pool", "2"],
        &[("RUNNER_AUTHKEY", "k3y")],
    );
    assert!(
        err.wait_for(Duration::from_secs(10), "was not issued as this entry"),
        "the replay is refused and reported"
    );
    t.write("open", "");
    let status = wait_child(&mut runner, Duration::from_secs(30));
    let err = err.finish();
    drop(w);
    assert_eq!(status, Some(0), "{err}");
    assert_eq!(t.read("runs"), "ran\n", "the task ran once: {err}");
}

#[test]
fn redis_down_at_start_fails_within_seconds() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}");
    let t = Test::new("[jobs.fan]\ncommand = 'touch ran'\nitems = [1]\n").args(&["--broker", &url]);
    let started = Instant::now();
    let out = t.run();
    assert!(started.elapsed() < Duration::from_secs(8));
    out.assert_code(1)
        .assert_stderr_has(&format!("broker redis://127.0.0.1:{port}"));
    assert!(!t.path("ran").exists());
}

#[test]
fn a_wrong_password_fails_fast_without_printing_it() {
    let redis = Redis::start(&["--requirepass", "correct-horse"]);
    let url = format!("redis://:battery-staple@127.0.0.1:{}", redis.port);
    let t = Test::new("[jobs.fan]\ncommand = 'touch ran'\nitems = [1]\n")
        .env("RUNNER_BROKER_URL", &url);
    let started = Instant::now();
    let out = t.run();
    assert!(started.elapsed() < Duration::from_secs(8));
    out.assert_code(1);
    assert!(
        !out.stderr.contains("battery-staple") && !out.stderr.contains("correct-horse"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("***@127.0.0.1"), "{}", out.stderr);
    let out = Test::new("[jobs.a]\ncommand = 'true'\n")
        .args(&["worker", "jobs.toml", "--broker", &url])
        .run();
    out.assert_code(1);
    assert!(!out.stderr.contains("battery-staple"), "{}", out.stderr);
}

#[test]
fn the_broker_url_and_authkey_never_reach_a_task() {
    let redis = Redis::start(&[]);
    let t = Test::new("[jobs.single]\ncommand = 'env > single.env'\n[jobs.fan]\ncommand = 'env > fan-{item}.env'\nitems = [1, 2]\n")
        .env("RUNNER_BROKER_URL", &redis.url())
        .env("RUNNER_AUTHKEY", "s3cret-key");
    let w = Worker::start(
        &t,
        "jobs.toml",
        &redis.url(),
        &["--pool", "1"],
        &[
            ("RUNNER_AUTHKEY", "s3cret-key"),
            ("RUNNER_BROKER_URL", &redis.url()),
        ],
    );
    t.run().assert_code(0);
    for file in ["single.env", "fan-1.env", "fan-2.env"] {
        let env = t.read(file);
        assert!(env.contains("RUNNER_JOB="), "{file}: {env}");
        assert!(
            !env.contains("s3cret")
                && !env.contains("RUNNER_BROKER_URL")
                && !env.contains("RUNNER_AUTHKEY"),
            "{file}: {env}"
        );
    }
    drop(w);
}

/// Two network namespaces joined by a veth pair, deleted when dropped.
struct Netns {
    names: [String; 2],
}

impl Netns {
    /// Panics, saying what is missing, where namespaces cannot be made.
    fn create() -> Netns {
        assert!(
            Command::new("ip").arg("-V").output().is_ok(),
            "`ip` is not installed: run scripts/test, which installs iproute2"
        );
        assert!(
            rustix::process::geteuid().is_root(),
            "network namespaces need root"
        );
        let id = std::process::id() % 100_000;
        let names = [format!("rn{id}a"), format!("rn{id}b")];
        let ip = |args: &[&str]| {
            Command::new("ip")
                .args(args)
                .status()
                .is_ok_and(|s| s.success())
        };
        assert!(
            ip(&["netns", "add", &names[0]]),
            "`ip netns add` fails here (a container without CAP_SYS_ADMIN?)"
        );
        let ns = Netns {
            names: names.clone(),
        };
        let (va, vb) = (format!("rv{id}a"), format!("rv{id}b"));
        let ok = ip(&["netns", "add", &names[1]])
            && ip(&["link", "add", &va, "type", "veth", "peer", "name", &vb])
            && ip(&["link", "set", &va, "netns", &names[0]])
            && ip(&["link", "set", &vb, "netns", &names[1]])
            && ip(&["-n", &names[0], "addr", "add", "10.231.7.1/24", "dev", &va])
            && ip(&["-n", &names[1], "addr", "add", "10.231.7.2/24", "dev", &vb])
            && ip(&["-n", &names[0], "link", "set", &va, "up"])
            && ip(&["-n", &names[1], "link", "set", &vb, "up"])
            && ip(&["-n", &names[0], "link", "set", "lo", "up"])
            && ip(&["-n", &names[1], "link", "set", "lo", "up"]);
        assert!(ok, "two namespaces joined by a veth pair");
        ns
    }

    fn exec(&self, which: usize) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.names[which]]);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

#[test]
#[ignore = "needs root and iproute2 (ip netns); scripts/test runs ignored tests"]
fn coordinator_and_worker_on_separate_network_namespaces() {
    let ns = Netns::create();
    let dir = tempfile::tempdir().unwrap();
    let mut redis = ns
        .exec(0)
        .args([
            "redis-server",
            "--port",
            "6390",
            "--bind",
            "10.231.7.1",
            "--save",
            "",
            "--requirepass",
            "netns-pw",
        ])
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let url = "redis://:netns-pw@10.231.7.1:6390";
    let t = Test::new(SQUARES);
    let up = wait_for(Duration::from_secs(10), || {
        let out = ns
            .exec(1)
            .args([
                "redis-cli",
                "-h",
                "10.231.7.1",
                "-p",
                "6390",
                "-a",
                "netns-pw",
                "--no-auth-warning",
                "PING",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains("PONG")
    });
    assert!(up, "redis in namespace A is reachable from namespace B");
    let mut worker = ns
        .exec(1)
        .arg(BIN)
        .args(["worker", "jobs.toml", "--broker", url, "--pool", "2"])
        .current_dir(t.dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = ns
        .exec(0)
        .arg(BIN)
        .args([
            "run",
            "jobs.toml",
            "--broker",
            url,
            "--no-local",
            "--report",
            "report.json",
        ])
        .current_dir(t.dir.path())
        .env_remove("CI")
        .output()
        .unwrap();
    let _ = worker.kill();
    let _ = worker.wait();
    let _ = redis.kill();
    let _ = redis.wait();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results = t.read("results.txt");
    assert_eq!(results.lines().count(), 40);
    assert!(results.contains("40 * 40 = 1600"));
}

#[test]
fn an_interrupted_coordinator_reports_tasks_still_on_workers() {
    let redis = Redis::start(&[]);
    let t = Test::new("[jobs.slow]\ncommand = 'echo x >> started.log; sleep 30'\nitems = [1, 2]\n")
        .args(&[
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
        &["--pool", "2", "--grace", "1s"],
        &[],
    );
    let mut runner = t.spawn();
    assert!(wait_for(Duration::from_secs(15), || t
        .lines_in("started.log")
        == 2));
    // SAFETY: interrupting the coordinator this test started, by its pid.
    unsafe { libc::kill(runner.id() as i32, libc::SIGINT) };
    let status = wait_child(&mut runner, Duration::from_secs(10));
    assert_eq!(status, Some(130));
    let report: serde_json::Value = serde_json::from_str(&t.read("report.json")).unwrap();
    let tasks = report["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2);
    // The worker sees the run stopping, stops its tasks and reports them.
    assert!(
        tasks
            .iter()
            .all(|t| t["signal"] == "SIGTERM" && t["stopped"] == true),
        "{tasks:?}"
    );
    let err = w.finish();
    assert!(
        err.contains("serving run") && err.contains("is stopping"),
        "{err}"
    );
}

#[test]
fn tls_works_and_a_tls_mismatch_fails_fast() {
    let certs = tempfile::tempdir().unwrap();
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .args(["-keyout", "key.pem", "-out", "cert.pem"])
        .current_dir(certs.path())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        made,
        "openssl makes a certificate (scripts/test installs openssl)"
    );
    let cert = certs.path().join("cert.pem");
    let key = certs.path().join("key.pem");
    // The listener that found a free port is closed before redis-server binds it.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let redis = Redis::start(&[
        "--tls-port",
        &free,
        "--tls-cert-file",
        cert.to_str().unwrap(),
        "--tls-key-file",
        key.to_str().unwrap(),
        "--tls-ca-cert-file",
        cert.to_str().unwrap(),
        "--tls-auth-clients",
        "no",
    ]);
    let tls_port = redis.config("tls-port");
    // A self-signed certificate: `#insecure` skips verifying it (tests only).
    let tls_url = format!("rediss://127.0.0.1:{tls_port}/#insecure");
    let t = Test::new(SQUARES).args(&["--broker", &tls_url, "--no-local"]);
    let w = Worker::start(&t, "jobs.toml", &tls_url, &["--pool", "2"], &[]);
    t.run().assert_code(0);
    assert_eq!(t.lines_in("results.txt"), 40);
    drop(w);

    let started = Instant::now();
    let plain_to_tls = Test::new("[jobs.f]\ncommand = 'touch ran'\nitems = [1]\n")
        .args(&["--broker", &format!("redis://:pw-123@127.0.0.1:{tls_port}")])
        .run();
    plain_to_tls
        .assert_code(1)
        .assert_stderr_has("use rediss://");
    assert!(!plain_to_tls.stderr.contains("pw-123"));
    let tls_to_plain = Test::new("[jobs.f]\ncommand = 'touch ran'\nitems = [1]\n")
        .args(&[
            "--broker",
            &format!("rediss://:pw-123@127.0.0.1:{}", redis.port),
        ])
        .run();
    tls_to_plain.assert_code(1).assert_stderr_has("TLS");
    assert!(!tls_to_plain.stderr.contains("pw-123"));
    let unknown = Test::new("[jobs.f]\ncommand = 'touch ran'\nitems = [1]\n")
        .args(&["--broker", "redis://:pw-123@no-such-host.invalid:6379"])
        .run();
    unknown
        .assert_code(1)
        .assert_stderr_has("no-such-host.invalid");
    assert!(!unknown.stderr.contains("pw-123"));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "each fails within seconds"
    );
}

/// Issue 11, point 7, on a worker: a bug (a panic, asked for by the debug-only hook)
/// while the worker runs a task fails that task with "internal error" — reported to the
/// coordinator, which ends (exit 1) — and the worker goes on serving the rest.
#[test]
fn a_panic_on_a_worker_fails_its_task_and_the_run_ends() {
    let redis = Redis::start(&[]);
    let t = Test::new("[jobs.fan]\ncommand = 'echo {item}'\nitems = ['boom', 'a', 'b']\n").args(&[
        "--broker",
        &redis.url(),
        "--no-local",
    ]);
    let w = Worker::start(
        &t,
        "jobs.toml",
        &redis.url(),
        &["--pool", "1"],
        &[("RUNNER_TEST_PANIC", "boom"), ("RUST_BACKTRACE", "0")],
    );
    assert!(
        wait_for(Duration::from_secs(10), || redis.clients() >= 1),
        "the worker is connected"
    );
    let mut runner = t.spawn();
    let status = wait_child(&mut runner, Duration::from_secs(30));
    let coordinator = stderr_of(&mut runner);
    assert_eq!(status, Some(1), "{coordinator}");
    assert!(
        coordinator.contains("FAILED fan:boom")
            && coordinator.contains("internal error: RUNNER_TEST_PANIC"),
        "{coordinator}"
    );
    assert!(coordinator.contains("2 succeeded"), "{coordinator}");
    let err = w.finish();
    assert!(err.contains("fan/0: internal error"), "{err}");
}

/// Issue 13: a run of a selection with `--set` is served by a worker started with no
/// flag for either: the run's announcement carries its jobs and vars, and the worker
/// renders its own file's commands with them, and gives them as `RUNNER_VAR_<NAME>`.
#[test]
fn a_worker_serves_a_selection_with_the_runs_vars() {
    let redis = Redis::start(&[]);
    let t = Test::new(
        "[vars]\nregion = 'eu'\n[jobs.fan]\ncommand = 'echo {vars.region}-{item.n} \"$RUNNER_VAR_REGION\" >> fan.log'\nitems = [ { n = 1 }, { n = 2 }, { n = 3 }, { n = 4 } ]\n[jobs.other]\ncommand = 'echo other >> other.log'\nitems = [1, 2]\n",
    );
    let w = Worker::start(&t, "jobs.toml", &redis.url(), &["--pool", "2"], &[]);
    let mut cmd = t.command();
    cmd.args([
        "fan",
        "--set",
        "region=us west",
        "--broker",
        &redis.url(),
        "--no-local",
    ]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut coordinator = cmd.spawn().unwrap();
    let status = wait_child(&mut coordinator, Duration::from_secs(60));
    if status.is_none() {
        let _ = coordinator.kill();
        let _ = coordinator.wait();
    }
    let err = stderr_of(&mut coordinator);
    if status != Some(0) {
        panic!(
            "exit {status:?}\ncoordinator:\n{err}\nworker:\n{}",
            w.finish()
        );
    }
    let mut got: Vec<String> = t.read("fan.log").lines().map(String::from).collect();
    got.sort();
    // The var reached each task on the worker in the placeholder and as
    // RUNNER_VAR_REGION.
    assert_eq!(
        got,
        [
            "us west-1 us west",
            "us west-2 us west",
            "us west-3 us west",
            "us west-4 us west"
        ]
    );
    assert!(!t.path("other.log").exists(), "only the selection ran");
    let err = w.finish();
    assert!(err.contains("serving run"), "{err}");
    assert!(!err.contains("refus"), "{err}");
}

/// Issue 14: the coordinator journals what its workers did. Killed with SIGKILL mid-run
/// and started again with `--resume` against the same Redis and the same two workers,
/// it completes the run, and no task whose success it had journaled runs twice.
#[test]
fn a_coordinator_killed_mid_run_resumes_without_rerunning_what_succeeded() {
    let redis = Redis::start(&[]);
    let t = Test::new(
        "[jobs.fan]\ncommand = 'sleep 0.05; echo {item} >> fan.log'\nitems = { range = [0, 200] }\n",
    );
    let w1 = Worker::start(&t, "jobs.toml", &redis.url(), &["--pool", "2"], &[]);
    let w2 = Worker::start(&t, "jobs.toml", &redis.url(), &["--pool", "2"], &[]);
    let coordinator = |resume: bool| {
        let mut cmd = t.command();
        cmd.args(["--broker", &redis.url(), "--no-local"]);
        if resume {
            cmd.arg("--resume");
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.spawn().unwrap()
    };
    let mut first = coordinator(false);
    assert!(
        wait_for(Duration::from_secs(60), || t.lines_in("fan.log") >= 40),
        "workers took tasks"
    );
    // SAFETY: killing the coordinator this test started, by its pid.
    unsafe { libc::kill(first.id() as i32, libc::SIGKILL) };
    let _ = first.wait();
    let run = t.read(".runner/jobs.toml/latest");
    let journal = t.read(&format!(".runner/jobs.toml/runs/{}.journal", run.trim()));
    let journaled: Vec<u64> = journal
        .lines()
        .skip(1)
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["status"] == "succeeded")
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    assert!(!journaled.is_empty(), "the coordinator journaled results");
    let mut second = coordinator(true);
    let status = wait_child(&mut second, Duration::from_secs(120));
    let err = stderr_of(&mut second);
    assert_eq!(status, Some(0), "{err}");
    assert!(err.contains("resuming run"), "{err}");
    let log = t.read("fan.log");
    let mut seen: std::collections::HashMap<u64, usize> = Default::default();
    for line in log.lines() {
        *seen.entry(line.parse().unwrap()).or_insert(0) += 1;
    }
    for item in 0..200u64 {
        assert!(seen.contains_key(&item), "item {item} never ran");
    }
    for item in &journaled {
        assert_eq!(
            seen[item], 1,
            "item {item} had succeeded (journaled) yet ran again"
        );
    }
    drop((w1, w2));
}

/// Issue 15: with `--broker`, the coordinator decides what is up to date (by its own
/// sources) before it publishes; a worker in another folder sends its outputs' hashes
/// with each result, and the coordinator records them as written there (on this
/// machine, it looks at them there; issue 23).
#[test]
fn the_coordinator_skips_up_to_date_tasks_and_records_the_workers_outputs() {
    let redis = Redis::start(&[]);
    let file = "[jobs.copy]\ncommand = 'mkdir -p out && cp in/{item}.txt out/{item}.txt && echo {item} >> ran.log'\nitems = { range = [0, 6] }\nsources = ['in/{item}.txt']\noutputs = ['out/{item}.txt']\n";
    let t = Test::new(file);
    // The worker's own copy of the project, in another folder.
    let elsewhere = Test::new(file);
    for i in 0..6 {
        t.write(&format!("in/{i}.txt"), &format!("{i}\n"));
        elsewhere.write(&format!("in/{i}.txt"), &format!("{i}\n"));
    }
    let w = Worker::start(&elsewhere, "jobs.toml", &redis.url(), &["--pool", "2"], &[]);
    let run = |t: &Test| {
        let out = t.run_with(&[
            "run",
            "jobs.toml",
            "--broker",
            &redis.url(),
            "--no-local",
            "--report",
            "report.json",
        ]);
        out.assert_code(0);
        let report: serde_json::Value = serde_json::from_str(&t.read("report.json")).unwrap();
        report["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["status"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert!(run(&t).iter().all(|s| s == "succeeded"));
    assert_eq!(elsewhere.lines_in("ran.log"), 6, "the worker ran them");
    assert!(
        !t.path("out").exists(),
        "outputs stay where they were written"
    );
    // Each stamp holds the output's hash and where it was written.
    let place = format!(
        "{}:{}",
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap()
            .trim(),
        elsewhere.dir.path().display()
    );
    let mut stamps = Vec::new();
    for dir in std::fs::read_dir(t.path(".runner/jobs.toml/stamps")).unwrap() {
        for stamp in std::fs::read_dir(dir.unwrap().path()).unwrap() {
            stamps.push(std::fs::read_to_string(stamp.unwrap().path()).unwrap());
        }
    }
    assert_eq!(stamps.len(), 6);
    for stamp in &stamps {
        assert!(
            stamp.contains(&format!("\"elsewhere\":{place:?}")),
            "{stamp}"
        );
        assert!(stamp.contains("{\"p\":\"out/"), "{stamp}");
    }
    // Nothing changed: nothing is published.
    assert!(run(&t).iter().all(|s| s == "up_to_date"));
    assert_eq!(elsewhere.lines_in("ran.log"), 6);
    // One source changed where the coordinator looks: that task alone is published.
    t.write("in/3.txt", "three\n");
    let statuses = run(&t);
    assert_eq!(statuses.iter().filter(|s| *s == "succeeded").count(), 1);
    assert_eq!(elsewhere.read("ran.log").lines().last(), Some("3"));
    // The worker's folder is on this machine: its outputs are looked at there. Gone,
    // their tasks run again.
    std::fs::remove_dir_all(elsewhere.path("out")).unwrap();
    let statuses = run(&t);
    assert!(statuses.iter().all(|s| s == "succeeded"), "{statuses:?}");
    assert_eq!(elsewhere.lines_in("ran.log"), 13);
    drop(w);
}

#[test]
fn a_distributed_trace_shows_each_worker_as_a_process_and_each_attempt() {
    // Item 3 fails its first attempt on whichever worker takes it.
    let redis = Redis::start(&[]);
    let file = "[jobs.fan]\ncommand = 'test {item} != 3 || test $RUNNER_ATTEMPT = 2'\nitems = { range = [0, 12] }\nretries = 1\n[jobs.here]\ncommand = 'true'\nneeds = ['fan']\n";
    let t = Test::new(file).args(&[
        "--broker",
        &redis.url(),
        "--no-local",
        "--trace",
        "trace.json",
    ]);
    let w1 = Worker::start(&t, "jobs.toml", &redis.url(), &["--pool", "2"], &[]);
    let w2 = Worker::start(&t, "jobs.toml", &redis.url(), &["--pool", "2"], &[]);
    t.run().assert_code(0);
    let trace: serde_json::Value = serde_json::from_str(&t.read("trace.json")).unwrap();
    let events = trace["traceEvents"].as_array().unwrap();
    let process = |pid: &serde_json::Value| {
        events
            .iter()
            .find(|e| e["name"] == "process_name" && &e["pid"] == pid)
            .map(|e| e["args"]["name"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("process {pid} is named"))
    };
    let x: Vec<&serde_json::Value> = events.iter().filter(|e| e["ph"] == "X").collect();
    // 12 fan-out tasks, one of them twice, and the local task.
    assert_eq!(x.len(), 14, "{trace:#}");
    let here = x.iter().find(|e| e["cat"] == "here").unwrap();
    let fan: Vec<&&serde_json::Value> = x.iter().filter(|e| e["cat"] == "fan").collect();
    let workers: std::collections::BTreeSet<String> =
        fan.iter().map(|e| process(&e["pid"])).collect();
    let pids = [w1.0.id(), w2.0.id()];
    for name in &workers {
        // A worker is named by its host and pid.
        let pid: u32 = name.rsplit(':').next().unwrap().parse().unwrap();
        assert!(pids.contains(&pid), "{name} is one of the workers {pids:?}");
    }
    assert!(
        !workers.contains(&process(&here["pid"])),
        "the coordinator is a process of its own"
    );
    for e in &fan {
        assert!(e["tid"].as_u64().unwrap() < 2, "a worker's slot: {e}");
    }
    let three: Vec<&&&serde_json::Value> = fan.iter().filter(|e| e["name"] == "fan:3").collect();
    assert_eq!(three.len(), 2);
    assert_eq!(three[0]["args"]["outcome"], "retried");
    assert_eq!(three[1]["args"]["outcome"], "succeeded");
    drop((w1, w2));
}

#[test]
fn a_worker_without_the_authkey_refuses_a_signed_run_and_the_run_goes_on() {
    let redis = Redis::start(&[]);
    // Each task waits until the test saw the worker decide, then leaves a file.
    let t = Test::new(
        "[jobs.fan]\ncommand = 'i=0; while [ ! -e open ] && [ $i -lt 300 ]; do sleep 0.05; i=$((i+1)); done; touch ran-{item}'\nitems = { range = [0, 6] }\n",
    )
    .args(&["--broker", &redis.url(), "--pool", "2"])
    .env("RUNNER_AUTHKEY", "k3y");
    let mut w = Worker::start(&t, "jobs.toml", &redis.url(), &["--pool", "2"], &[]);
    let said = crate::util::Collected::start(w.0.stderr.take().unwrap());
    assert!(said.wait_for(Duration::from_secs(10), "worker on"));
    let mut runner = t.spawn();
    let err = crate::util::Collected::start(runner.stderr.take().unwrap());
    let refused = said.wait_for(Duration::from_secs(10), "refusing run");
    t.write("open", "");
    // The coordinator's own share runs every task; nothing waits for the keyless worker.
    let status = wait_child(&mut runner, Duration::from_secs(30));
    let err = err.finish();
    w.signal(libc::SIGKILL);
    let _ = w.0.wait();
    let said = said.finish();
    assert!(refused, "{said}");
    assert_eq!(status, Some(0), "{err}");
    for item in 0..6 {
        assert!(t.path(&format!("ran-{item}")).exists(), "{err}");
    }
    assert!(
        said.contains("is signed")
            && said.contains("--authkey-file")
            && said.contains("RUNNER_AUTHKEY"),
        "the worker says why and how to give it the key: {said}"
    );
    assert!(!said.contains("done"), "it ran nothing: {said}");
    assert!(
        err.contains("a worker without the authkey refused this run"),
        "{err}"
    );
    assert!(
        !err.contains("forged") && !err.contains("does not authenticate"),
        "not taken for a forgery: {err}"
    );
}

#[test]
fn a_distributed_trace_shows_the_coordinators_own_share_as_the_runner_itself() {
    let redis = Redis::start(&[]);
    let file = "[jobs.fan]\ncommand = 'true'\nitems = { range = [0, 4] }\n[jobs.here]\ncommand = 'true'\nneeds = ['fan']\n";
    let t = Test::new(file).args(&[
        "--broker",
        &redis.url(),
        "--pool",
        "2",
        "--trace",
        "trace.json",
    ]);
    t.run().assert_code(0);
    let trace: serde_json::Value = serde_json::from_str(&t.read("trace.json")).unwrap();
    let events = trace["traceEvents"].as_array().unwrap();
    let named = |kind: &str, e: &serde_json::Value| {
        events
            .iter()
            .find(|m| {
                m["name"] == kind
                    && m["pid"] == e["pid"]
                    && (kind == "process_name" || m["tid"] == e["tid"])
            })
            .map(|m| m["args"]["name"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("{kind} of {e}"))
    };
    let x: Vec<&serde_json::Value> = events.iter().filter(|e| e["ph"] == "X").collect();
    assert_eq!(x.len(), 5, "{trace:#}");
    let here = x.iter().find(|e| e["cat"] == "here").unwrap();
    let processes = events
        .iter()
        .filter(|e| e["name"] == "process_name")
        .count();
    assert_eq!(processes, 1, "one process, the runner: {trace:#}");
    for e in x.iter().filter(|e| e["cat"] == "fan") {
        assert_eq!(e["pid"], here["pid"], "{e}");
        // Its own slots, told from the runner's slots for local jobs.
        let slot = named("thread_name", e);
        assert!(slot.starts_with("own share, slot "), "{slot}");
    }
    assert_eq!(named("thread_name", here), format!("slot {}", here["tid"]));
}
