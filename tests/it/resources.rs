//! Resources, rates, memory and load gates (issue 27), against real processes. Times
//! come from the tasks' own clocks: each command appends `start NS ID` and `end NS ID`
//! (nanoseconds since the epoch) to a log, and the tests read the overlap and the gaps
//! from it. Bounds are lower bounds on gaps and loose upper bounds, for a loaded machine.

use crate::util::{wait_for, Collected, Test};
use std::time::Duration;

/// A shell command that logs its start and end around `body`, as task `id`.
fn timed(id: &str, body: &str) -> String {
    format!("echo \"start $(date +%s%N) {id}\" >> log; {body}; s=$?; echo \"end $(date +%s%N) {id}\" >> log; exit $s")
}

/// The log's (kind, ns, id) entries.
fn entries(t: &Test) -> Vec<(String, u128, String)> {
    t.read("log")
        .lines()
        .map(|l| {
            let mut w = l.split_whitespace();
            let kind = w.next().unwrap().to_string();
            let ns = w.next().unwrap().parse().unwrap();
            (kind, ns, w.next().unwrap_or("").to_string())
        })
        .collect()
}

/// The most tasks whose ids start with `prefix` running at once, by the log.
fn peak(t: &Test, prefix: &str) -> usize {
    let mut events: Vec<(u128, i32)> = entries(t)
        .into_iter()
        .filter(|(_, _, id)| id.starts_with(prefix))
        .map(|(k, ns, _)| (ns, if k == "start" { 1 } else { -1 }))
        .collect();
    // An end before a start at the same instant.
    events.sort();
    let (mut now, mut most) = (0, 0);
    for (_, d) in events {
        now += d;
        most = most.max(now);
    }
    most as usize
}

/// The start times (ns) of the tasks whose ids start with `prefix`, sorted.
fn starts(t: &Test, prefix: &str) -> Vec<u128> {
    let mut s: Vec<u128> = entries(t)
        .into_iter()
        .filter(|(k, _, id)| k == "start" && id.starts_with(prefix))
        .map(|(_, ns, _)| ns)
        .collect();
    s.sort();
    s
}

fn gaps_ms(starts: &[u128]) -> Vec<f64> {
    starts
        .windows(2)
        .map(|w| (w[1] - w[0]) as f64 / 1e6)
        .collect()
}

#[test]
fn tasks_never_hold_more_than_there_is_and_reach_it() {
    let t = Test::new(&format!(
        "pool = 6\n[resources]\ndb = 2\n[jobs.a]\ncommand = '{}'\nitems = {{ range = [0, 6] }}\nuses = {{ db = 1 }}\n",
        timed("a$RUNNER_ITEM", "sleep 0.3")
    ))
    .args(&["--report", "r.json"])
    .env("RUNNER_HEARTBEAT", "100ms");
    let out = t.run();
    out.assert_code(0)
        .assert_stderr_has("waiting: db 2/2 in use");
    assert_eq!(peak(&t, "a"), 2, "{}", t.read("log"));
    // The JSON report says how long each task waited for the resource.
    let report: serde_json::Value = serde_json::from_str(&t.read("r.json")).unwrap();
    let waited: Vec<f64> = report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|task| task["waited_s"].as_f64().unwrap())
        .collect();
    assert_eq!(waited.len(), 6);
    // The job's next task in line waits while both are taken: twice about 0.3 s.
    assert!(
        waited.iter().filter(|w| **w >= 0.2).count() >= 2,
        "{waited:?}"
    );
    assert!(waited.iter().sum::<f64>() >= 0.5, "{waited:?}");
    let job = &report["jobs"][0];
    assert_eq!(
        (&job["name"], &job["tasks"]),
        (&serde_json::json!("a"), &serde_json::json!(6))
    );
    let total = job["waited_s"].as_f64().unwrap();
    assert!(
        (total - waited.iter().sum::<f64>()).abs() < 1e-6,
        "{total} {waited:?}"
    );
}

#[test]
fn a_size_is_held_like_a_count() {
    let t = Test::new(&format!(
        "pool = 6\n[resources]\nmem = '1G'\n[jobs.m]\ncommand = '{}'\nitems = {{ range = [0, 4] }}\nuses = {{ mem = '512M' }}\n",
        timed("m$RUNNER_ITEM", "sleep 0.3")
    ));
    t.run().assert_code(0);
    assert_eq!(peak(&t, "m"), 2, "{}", t.read("log"));
}

#[test]
fn a_rate_spreads_starts_evenly() {
    let t = Test::new(&format!(
        "pool = 10\n[jobs.r]\ncommand = '{}'\nitems = {{ range = [0, 10] }}\nrate = '5/s'\n",
        timed("r$RUNNER_ITEM", "true")
    ))
    .env("RUNNER_HEARTBEAT", "100ms");
    t.run()
        .assert_code(0)
        .assert_stderr_has("waiting: rate r 5/s");
    let s = starts(&t, "r");
    assert_eq!(s.len(), 10);
    let gaps = gaps_ms(&s);
    assert!(gaps.iter().all(|g| *g >= 100.0), "{gaps:?}");
    let span = (s[9] - s[0]) as f64 / 1e9;
    assert!((1.6..5.0).contains(&span), "10 starts over {span} s");
}

#[test]
fn a_named_rate_is_shared_by_the_jobs_naming_it() {
    let t = Test::new(&format!(
        "pool = 10\n[rates]\ndns = '5/s'\n[jobs.a]\ncommand = '{}'\nitems = {{ range = [0, 5] }}\nrate = 'dns'\n[jobs.b]\ncommand = '{}'\nitems = {{ range = [0, 5] }}\nrate = 'dns'\n",
        timed("a$RUNNER_ITEM", "true"),
        timed("b$RUNNER_ITEM", "true")
    ));
    t.run().assert_code(0);
    let s = starts(&t, "");
    assert_eq!(s.len(), 10);
    let gaps = gaps_ms(&s);
    assert!(gaps.iter().all(|g| *g >= 100.0), "{gaps:?}");
    assert!((s[9] - s[0]) as f64 / 1e9 >= 1.6);
}

#[test]
fn retries_are_paced_by_the_rate_too() {
    let t = Test::new(&format!(
        "[jobs.f]\ncommand = '{}'\nretries = 2\nretry_delay = '10ms'\nrate = '4/s'\n",
        timed("f", "false")
    ));
    t.run().assert_code(1);
    let s = starts(&t, "f");
    assert_eq!(s.len(), 3);
    let gaps = gaps_ms(&s);
    assert!(gaps.iter().all(|g| *g >= 150.0), "{gaps:?}");
}

#[test]
fn a_task_waiting_to_retry_holds_no_resource() {
    // `flaky` takes the one db first and fails; during its 1 s retry delay `other`,
    // which needs the db too, runs.
    let flaky = timed(
        "flaky",
        "if [ -e once ]; then true; else touch once; false; fi",
    );
    let t = Test::new(&format!(
        "pool = 2\n[resources]\ndb = 1\n[jobs.flaky]\ncommand = '{flaky}'\nuses = {{ db = 1 }}\nretries = 1\nretry_delay = '1s'\n[jobs.other]\ncommand = '{}'\nuses = {{ db = 1 }}\n",
        timed("other", "sleep 0.2")
    ));
    t.run().assert_code(0);
    let log = entries(&t);
    let at = |kind: &str, id: &str, n: usize| {
        log.iter()
            .filter(|(k, _, i)| k == kind && i == id)
            .nth(n)
            .map(|e| e.1)
            .unwrap_or_else(|| panic!("no {kind} {id} #{n}: {log:?}"))
    };
    assert!(at("start", "flaky", 0) < at("start", "other", 0), "{log:?}");
    assert!(at("end", "other", 0) <= at("start", "flaky", 1), "{log:?}");
    assert_eq!(peak(&t, ""), 1, "{log:?}");
}

#[test]
fn a_big_task_is_not_passed_over_by_small_ones() {
    let t = Test::new(&format!(
        "pool = 8\n[resources]\ndb = 4\n[jobs.small]\ncommand = '{}'\nitems = {{ range = [0, 40] }}\nuses = {{ db = 1 }}\n[jobs.big]\ncommand = '{}'\nuses = {{ db = 4 }}\n",
        timed("small$RUNNER_ITEM", "sleep 0.05"),
        timed("big", "true")
    ));
    t.run().assert_code(0);
    let big = starts(&t, "big")[0];
    let before = starts(&t, "small").iter().filter(|s| **s < big).count();
    assert!(
        before <= 10,
        "{before} small tasks started before the big one"
    );
    assert_eq!(peak(&t, ""), 4);
}

#[test]
fn memfree_above_the_machine_holds_tasks_and_says_so() {
    let t = Test::new(&format!("[jobs.a]\ncommand = '{}'\n", timed("a", "true")))
        .args(&["--memfree", "1000T"])
        .env("RUNNER_HEARTBEAT", "200ms");
    let mut child = t.spawn();
    let stderr = Collected::start(child.stderr.take().unwrap());
    let _stdout = Collected::start(child.stdout.take().unwrap());
    assert!(
        stderr.wait_for(Duration::from_secs(10), "waiting: memory"),
        "{}",
        stderr.now()
    );
    assert!(stderr.now().contains("free < 1000 TiB"), "{}", stderr.now());
    // SAFETY: signalling the runner this test started, by its pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    let stderr = stderr.finish();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(!t.path("log").exists(), "no task started");
}

#[test]
fn memfree_below_the_machine_lets_tasks_run() {
    let t = Test::new(&format!("[jobs.a]\ncommand = '{}'\n", timed("a", "true"))).args(&[
        "--memfree",
        "1M",
        "--load",
        "100000",
    ]);
    t.run().assert_code(0);
    assert!(wait_for(Duration::from_secs(1), || t.path("log").exists()));
}

#[test]
fn bad_gate_values_exit_2() {
    let t = Test::new("[jobs.a]\ncommand = 'true'\n");
    for (args, said) in [
        (["--memfree", "lots"], "\"lots\" is not a size"),
        (["--load=-1", "--pool=1"], "\"-1\" is not a load average"),
        (["--load", "x"], "\"x\" is not a load average"),
    ] {
        let out = t.run_with(&["run", "jobs.toml", args[0], args[1]]);
        out.assert_code(2).assert_stderr_has(said);
    }
}

#[test]
fn resource_mistakes_are_load_errors() {
    let t = Test::new("[resources]\ngpu = 1\n[jobs.a]\ncommand = 'true'\nuses = { gpus = 1 }\n");
    t.run()
        .assert_code(2)
        .assert_stderr_has("job `a` uses `gpus`, which is not in [resources]")
        .assert_stderr_has("did you mean `gpu`?");
}

#[test]
fn plan_shows_each_jobs_uses_and_rate() {
    let t = Test::new("[resources]\ngpu = 1\nmem = '8G'\n[rates]\ndns = '5/s'\n[jobs.train]\ncommand = 'true'\nuses = { gpu = 1, mem = '2G' }\nrate = 'dns'\n[jobs.ping]\ncommand = 'true'\nrate = '30/m'\n");
    let out = t.run_with(&["plan", "jobs.toml"]);
    out.assert_code(0)
        .assert_stdout_has("train  [uses gpu 1, mem 2 GiB, rate dns 5/s]")
        .assert_stdout_has("ping  [rate 30/m]");
}

#[test]
fn the_html_timeline_shows_the_wait() {
    let t = Test::new(&format!(
        "pool = 4\n[resources]\ndb = 1\n[jobs.a]\ncommand = '{}'\nitems = {{ range = [0, 2] }}\nuses = {{ db = 1 }}\n",
        timed("a$RUNNER_ITEM", "sleep 0.3")
    ))
    .args(&["--html", "r.html"]);
    t.run().assert_code(0);
    let page = t.read("r.html");
    assert!(page.contains("<rect class=\"wait\""), "no wait drawn");
    assert!(page.contains("for a resource or a rate"));
}

/// Slot threads that find the rate holding the next task wake the run loop: without
/// it, a run whose last look from the run loop saw every slot busy waited for ever.
#[test]
fn a_rate_with_few_slots_never_stalls() {
    let t = Test::new(&format!(
        "pool = 2\n[jobs.r]\ncommand = '{}'\nitems = {{ range = [0, 40] }}\nrate = '100/s'\n",
        timed("r$RUNNER_ITEM", "true")
    ));
    let mut child = t.spawn();
    let _out = Collected::start(child.stdout.take().unwrap());
    let err = Collected::start(child.stderr.take().unwrap());
    let ended = wait_for(Duration::from_secs(10), || {
        child.try_wait().ok().flatten().is_some()
    });
    if !ended {
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    assert!(ended, "still running after 10 s: {}", err.now());
    assert_eq!(status.code(), Some(0));
    assert_eq!(starts(&t, "r").len(), 40);
}
