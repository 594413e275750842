//! Process control: process groups, timeouts, retries, fail-fast, signals, bounded
//! output memory, pipes. Leftover processes are found by a marker in their command line.

use crate::util::{marker, processes_with, wait_for, Collected, Test};
use std::time::{Duration, Instant};

/// A copy of `sleep` whose name carries `mark`, so its processes can be found.
fn marked_sleep(t: &Test, mark: &str) -> String {
    let name = format!("sleep-{mark}");
    std::fs::copy("/bin/sleep", t.path(&name)).unwrap();
    format!("./{name}")
}

#[track_caller]
fn assert_none_left(mark: &str) {
    // Processes are reaped before the runner exits; give the kernel a moment to
    // finish tearing down what it already killed.
    let gone = wait_for(Duration::from_secs(2), || processes_with(mark).is_empty());
    assert!(gone, "left behind: {:?}", processes_with(mark));
}

#[test]
fn each_task_leads_its_own_process_group() {
    let t = Test::new(
        "[jobs.pg]\ncommand = ['sh', '-c', 'ps -o pgid= -p $$ | tr -d \" \"; echo $$']\n",
    );
    let out = t.run();
    out.assert_code(0);
    let lines = out.lines_of("pg");
    assert_eq!(lines[0], lines[1], "pgid equals the task's pid");
}

#[test]
fn a_timeout_stops_the_whole_tree_and_keeps_earlier_output() {
    let mark = marker("timeout");
    let t = Test::new("");
    let sleep = marked_sleep(&t, &mark);
    t.write(
        "jobs.toml",
        &format!(
            "[jobs.slow]\ncommand = 'echo before; {sleep} 1000 & {sleep} 1000'\ntimeout = '1s'\n"
        ),
    );
    let t = t.args(&["--grace", "1s"]);
    let started = Instant::now();
    let out = t.run();
    let took = started.elapsed();
    out.assert_code(1)
        .assert_stderr_has("FAILED slow: timed out");
    assert_eq!(out.lines_of("slow"), ["before"]);
    assert!(took < Duration::from_secs(2 + 3), "ended after {took:?}");
    assert_none_left(&mark);
}

#[test]
fn a_task_that_ignores_term_is_killed_after_the_grace_period() {
    let mark = marker("ignoreterm");
    let t = Test::new("");
    let sleep = marked_sleep(&t, &mark);
    t.write(
        "jobs.toml",
        &format!("[jobs.stubborn]\ncommand = \"trap '' TERM; {sleep} 1000; {sleep} 1000\"\ntimeout = '1s'\n"),
    );
    let t = t.args(&["--grace", "1s"]);
    let started = Instant::now();
    let out = t.run();
    let took = started.elapsed();
    out.assert_code(1).assert_stderr_has("timed out");
    assert!(
        took < Duration::from_secs(1 + 1 + 1 + 2),
        "ended after {took:?}"
    );
    assert_none_left(&mark);
}

#[test]
fn leftovers_of_a_finished_task_are_stopped() {
    let mark = marker("leftover");
    let t = Test::new("");
    let sleep = marked_sleep(&t, &mark);
    t.write(
        "jobs.toml",
        &format!("[jobs.bg]\ncommand = '{sleep} 1000 > /dev/null 2>&1 &'\n"),
    );
    let out = t.args(&["--grace", "1s"]).run();
    out.assert_code(0);
    assert_none_left(&mark);
}

#[test]
fn retries_with_doubling_delay_and_attempts_in_the_report() {
    let t = Test::new(
        "[jobs.flaky]\ncommand = 'n=$(cat n 2>/dev/null || echo 0); n=$((n+1)); echo $n > n; echo \"attempt $RUNNER_ATTEMPT\" >&2; date +%s.%N >> times; [ $n -ge 3 ]'\nretries = 3\nretry_delay = '100ms'\n",
    )
    .args(&["--report", "report.json"]);
    let out = t.run();
    out.assert_code(0);
    let report: serde_json::Value = serde_json::from_str(&t.read("report.json")).unwrap();
    assert_eq!(report["tasks"][0]["attempts"], 3);
    let times: Vec<f64> = t
        .read("times")
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert!(times[1] - times[0] >= 0.1, "{times:?}");
    assert!(times[2] - times[1] >= 0.2, "the delay doubles: {times:?}");
    assert!(out.stderr.contains("retrying"), "{}", out.stderr);
}

#[test]
fn each_attempts_line_gives_that_attempts_own_time() {
    // The delay before the retry is 2 s; the second attempt's line must not count it.
    let out = Test::new("[jobs.bad]\ncommand = 'exit 3'\nretries = 1\nretry_delay = '2s'\n").run();
    out.assert_code(1);
    let line = out
        .stderr
        .lines()
        .find(|l| l.starts_with("[runner] FAIL bad") && l.ends_with("(attempt 2)"))
        .unwrap_or_else(|| panic!("no line for the second attempt:\n{}", out.stderr));
    assert!(
        line.contains("exit 3 in ") && line.contains("ms (attempt 2)"),
        "{line}"
    );
}

#[test]
fn retries_give_up_after_the_last_attempt() {
    let t = Test::new(
        "[jobs.bad]\ncommand = 'echo no >&2; exit 2'\nretries = 2\nretry_delay = '10ms'\n",
    );
    t.run()
        .assert_code(1)
        .assert_stderr_has("FAILED bad: exit 2")
        .assert_stderr_has("3 attempts");
}

#[test]
fn fail_fast_stops_running_tasks_and_skips_the_rest() {
    let mark = marker("failfast");
    let t = Test::new("");
    let sleep = marked_sleep(&t, &mark);
    t.write(
        "jobs.toml",
        &format!(
            "pool = 2\n[jobs.work]\ncommand = 'if [ {{item}} = 0 ]; then sleep 0.3; exit 1; fi; {sleep} 1000'\nitems = {{ range = [0, 10] }}\n"
        ),
    );
    let t = t.args(&["--fail-fast", "--grace", "1s", "--report", "report.json"]);
    let started = Instant::now();
    let out = t.run();
    out.assert_code(1).assert_stderr_has("fail-fast");
    assert!(started.elapsed() < Duration::from_secs(8));
    assert_none_left(&mark);
    let report: serde_json::Value = serde_json::from_str(&t.read("report.json")).unwrap();
    let tasks = report["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 10);
    let skipped = tasks.iter().filter(|t| t["status"] == "skipped").count();
    assert_eq!(skipped, 8, "two started, the rest never did");
    assert!(tasks
        .iter()
        .any(|t| t["stopped"] == true && t["signal"] == "SIGTERM"));
}

#[test]
fn fail_fast_in_the_file() {
    let t = Test::new("fail_fast = true\npool = 1\n[jobs.a]\ncommand = 'exit 1'\n[jobs.b]\ncommand = 'touch b-ran'\n");
    t.run().assert_code(1);
    assert!(!t.path("b-ran").exists());
}

#[test]
fn a_signal_death_is_reported_by_name() {
    let t = Test::new("[jobs.suicide]\ncommand = 'kill -9 $$'\n");
    t.run()
        .assert_code(1)
        .assert_stderr_has("FAILED suicide: killed by SIGKILL");
}

fn interrupt(signal: i32, expected: i32, name: &str) {
    let mark = marker(name);
    let t = Test::new("");
    let sleep = marked_sleep(&t, &mark);
    t.write(
        "jobs.toml",
        &format!("pool = 2\n[jobs.long]\ncommand = '{sleep} 1000 & {sleep} 1000'\nitems = {{ range = [0, 5] }}\n[jobs.quick]\ncommand = 'echo quick done'\n"),
    );
    let t = t.args(&["--grace", "1s"]);
    let child = t.spawn();
    assert!(
        wait_for(Duration::from_secs(10), || processes_with(&mark).len() >= 2),
        "tasks started"
    );
    // SAFETY: signalling the runner we started, by its pid.
    unsafe { libc::kill(child.id() as i32, signal) };
    let started = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "stopped in time"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(expected), "{stderr}");
    assert!(stderr.contains("job "), "the summary is printed: {stderr}");
    assert!(stderr.contains("skipped"), "{stderr}");
    assert_none_left(&mark);
}

#[test]
fn sigint_stops_everything_and_exits_130() {
    interrupt(libc::SIGINT, 130, "sigint");
}

#[test]
fn sigterm_stops_everything_and_exits_143() {
    interrupt(libc::SIGTERM, 143, "sigterm");
}

#[test]
fn sighup_stops_everything() {
    interrupt(libc::SIGHUP, 129, "sighup");
}

#[test]
fn a_second_sigint_kills_at_once() {
    let mark = marker("twice");
    let t = Test::new("");
    let sleep = marked_sleep(&t, &mark);
    t.write(
        "jobs.toml",
        &format!("[jobs.stubborn]\ncommand = \"trap '' TERM; {sleep} 1000\"\n"),
    );
    let t = t.args(&["--grace", "60s"]);
    let mut child = t.spawn();
    let stderr = Collected::start(child.stderr.take().unwrap());
    let _stdout = Collected::start(child.stdout.take().unwrap());
    assert!(wait_for(Duration::from_secs(10), || !processes_with(&mark)
        .is_empty()));
    let pid = child.id() as i32;
    // SAFETY: signalling the runner we started, by its pid.
    unsafe { libc::kill(pid, libc::SIGINT) };
    // The first SIGINT sends TERM, which the task ignores; the runner says so and waits
    // out its 60 s grace period.
    assert!(
        stderr.wait_for(Duration::from_secs(10), "again to kill at once"),
        "the first SIGINT is noted: {}",
        stderr.now()
    );
    assert!(
        child.try_wait().unwrap().is_none() && !processes_with(&mark).is_empty(),
        "still in its grace period"
    );
    unsafe { libc::kill(pid, libc::SIGINT) };
    let started = Instant::now();
    let status = child.wait().unwrap();
    let stderr = stderr.finish();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("killed by SIGKILL"), "{stderr}");
    assert_none_left(&mark);
}

#[test]
fn output_memory_stays_bounded_and_logs_keep_every_byte() {
    // 200 MB through the runner; its peak memory must not grow with it.
    let t = Test::new("[jobs.flood]\ncommand = 'yes 0123456789012345678901234567890123456789012345678 | head -c 200000000; echo done >&2'\n")
        .args(&["--report", "report.json", "--logs", "logs"]);
    let mut cmd = t.command();
    let status = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let kib = crate::queues::peak_kib(&t);
    assert!(kib < 64 * 1024, "peak {kib} KiB");
    assert_eq!(
        std::fs::metadata(t.path("logs/flood.0.stdout"))
            .unwrap()
            .len(),
        200_000_000
    );
    assert_eq!(t.read("logs/flood.0.stderr"), "done\n");
}

#[test]
fn a_huge_stderr_is_cut_in_the_summary_and_says_so() {
    let t = Test::new("[jobs.noisy]\ncommand = 'seq 100000 >&2; exit 1'\n").args(&["--quiet"]);
    let out = t.run();
    out.assert_code(1)
        .assert_stderr_has("earlier stderr cut")
        .assert_stderr_has("  | 100000");
}

#[test]
fn stdin_a_task_never_reads_is_not_an_error() {
    let big = "x".repeat(1 << 20);
    let t = Test::new(&format!("[jobs.ignore]\ncommand = 'exit 0'\nstdin = '{big}'\n[jobs.early]\ncommand = 'head -c 10 > /dev/null'\nstdin = '{big}'\n"));
    t.run().assert_code(0);
}
