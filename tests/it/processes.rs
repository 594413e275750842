//! Processes beyond a task's group: tasks of a runner that was SIGKILLed, processes that
//! left their task's group with `setsid`, and a runner short of file descriptors.
//! Processes are found by a marker in their command line (`util::processes_with`).

use crate::util::{marker, processes_with, skipped_when_portable, wait_for, Collected, Test, BIN};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A copy of `sleep` whose name carries `mark`, so its processes can be found.
fn marked_sleep(t: &Test, mark: &str) -> String {
    let name = format!("sleep-{mark}");
    std::fs::copy("/bin/sleep", t.path(&name)).unwrap();
    format!("./{name}")
}

#[track_caller]
fn assert_none_left(mark: &str, within: Duration) {
    let gone = wait_for(within, || processes_with(mark).is_empty());
    let left = processes_with(mark);
    for pid in &left {
        // SAFETY: killing what this test started, so that a failure leaves nothing behind.
        unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
    }
    assert!(gone, "left behind: {left:?}");
}

fn signal(pid: u32, signal: i32) {
    // SAFETY: signalling a process this test started, by its pid.
    unsafe { libc::kill(pid as i32, signal) };
}

#[test]
fn tasks_die_with_a_sigkilled_runner() {
    let mark = marker("sigkilled");
    let t = Test::new("");
    let sleep = marked_sleep(&t, &mark);
    t.write(
        "jobs.toml",
        &format!(
            "pool = 3\n[jobs.long]\ncommand = '{sleep} 1000 & {sleep} 1000'\nitems = {{ range = [0, 3] }}\n"
        ),
    );
    let t = t.args(&["--grace", "1s"]);
    let mut child = t.spawn();
    assert!(
        wait_for(Duration::from_secs(10), || processes_with(&mark).len() >= 6),
        "tasks started: {:?}",
        processes_with(&mark)
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert_none_left(&mark, Duration::from_secs(5));
}

#[test]
fn tasks_die_with_a_runner_whose_whole_group_was_sigkilled() {
    // A CI timeout kills the runner's process group: the watchdog must not be in it.
    let mark = marker("groupkilled");
    let t = Test::new("");
    let sleep = marked_sleep(&t, &mark);
    t.write(
        "jobs.toml",
        &format!("[jobs.long]\ncommand = '{sleep} 1000'\n"),
    );
    let t = t.args(&["--grace", "1s"]);
    let mut cmd = t.command();
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || !processes_with(&mark)
            .is_empty()),
        "the task started"
    );
    // SAFETY: the group this test just created for the runner.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    child.wait().unwrap();
    assert_none_left(&mark, Duration::from_secs(5));
}

/// Escaped processes are found only by a subreaper, which the portable paths (and
/// macOS) are not.
const NO_SUBREAPER: &str = "no subreaper: a process that left its task's group is not found";

/// A job whose task starts `setsid SLEEP 1000` in the background, waits until it has
/// left the group (its session id is its own pid), then runs `tail`.
fn escaping(mark: &str, tail: &str, extra: &str) -> Test {
    let t = Test::new("");
    let sleep = marked_sleep(&t, mark);
    t.write(
        "jobs.toml",
        &format!(
            "[jobs.esc]\ncommand = '''\nsetsid {sleep} 1000 > /dev/null 2>&1 < /dev/null &\n\
             until [ $(ps -o sid= -p $!) -eq $! ] 2> /dev/null; do sleep 0.01; done\n\
             {tail}'''\n{extra}"
        ),
    );
    t.args(&["--grace", "1s"])
}

#[test]
fn a_process_that_left_the_group_is_stopped_when_its_task_times_out() {
    if skipped_when_portable(NO_SUBREAPER) {
        return;
    }
    let mark = marker("escapetimeout");
    let out = escaping(&mark, "sleep 1000", "timeout = '1s'\n").run();
    assert_none_left(&mark, Duration::from_secs(3));
    out.assert_code(1)
        .assert_stderr_has("timed out")
        .assert_stderr_has("a process left the task's group: pid ");
}

#[test]
fn a_process_that_left_the_group_is_stopped_on_sigint() {
    if skipped_when_portable(NO_SUBREAPER) {
        return;
    }
    let mark = marker("escapesigint");
    // The task's own shell has the mark in its command line as soon as it starts:
    // the file says that the process it started has left the group.
    let t = escaping(&mark, "touch escaped\nsleep 1000", "");
    let mut child = t.spawn();
    let stderr = Collected::start(child.stderr.take().unwrap());
    assert!(
        wait_for(Duration::from_secs(10), || t.path("escaped").exists()),
        "the task's process did not leave its group: {}",
        stderr.now()
    );
    signal(child.id(), libc::SIGINT);
    let status = child.wait().unwrap();
    let stderr = stderr.finish();
    assert_none_left(&mark, Duration::from_secs(3));
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("a process left the task's group: pid "),
        "{stderr}"
    );
}

#[test]
fn a_daemon_left_by_a_task_that_succeeded_is_stopped_with_it() {
    if skipped_when_portable(NO_SUBREAPER) {
        return;
    }
    let mark = marker("escapedaemon");
    let out = escaping(&mark, "echo started", "").run();
    assert_none_left(&mark, Duration::from_secs(3));
    out.assert_code(0)
        .assert_stderr_has("a process left the task's group: pid ")
        .assert_stderr_has("stopping it");
    assert_eq!(out.lines_of("esc"), ["started"]);
}

/// Runs the runner on `t` with its file descriptor limits set by `ulimit` first.
fn run_with_limits(t: &Test, limits: &str, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("{limits} && exec \"$0\" \"$@\""))
        .arg(BIN)
        .args(["run", "jobs.toml"])
        .args(args)
        .current_dir(t.dir.path())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const MANY_TASKS: &str = "[jobs.t]\ncommand = ['true']\nitems = { range = [0, 400] }\n";

#[test]
fn a_low_hard_fd_limit_caps_the_pool_and_every_task_succeeds() {
    let t = Test::new(MANY_TASKS);
    let (code, stderr) = run_with_limits(&t, "ulimit -Sn 64 && ulimit -Hn 64", &["--pool", "64"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("the pool is lowered from 64 to "),
        "the cap is noted: {stderr}"
    );
    assert!(!stderr.contains("Too many open files"), "{stderr}");
}

#[test]
fn a_low_soft_fd_limit_is_raised_and_every_task_succeeds() {
    let t = Test::new(MANY_TASKS);
    let (code, stderr) = run_with_limits(&t, "ulimit -Sn 40", &["--pool", "64"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("the pool is lowered"), "{stderr}");
}

#[test]
fn tasks_start_with_no_signal_blocked_or_ignored() {
    // Whatever the runner blocks or ignores in its own threads, a task starts as a
    // shell would start it: a program that waits for SIGCHLD or SIGPIPE must get them.
    let t = Test::new(
        "[jobs.look]\nitems = [\"a\", \"b\"]\n\
         command = \"grep -E '^Sig(Blk|Ign):' /proc/self/status\"\n",
    );
    let out = t.run();
    out.assert_code(0);
    let lines: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.contains("SigBlk:") || l.contains("SigIgn:"))
        .collect();
    assert_eq!(lines.len(), 4, "{}", out.stdout);
    for line in lines {
        let mask = u64::from_str_radix(line.rsplit(['\t', ':']).next().unwrap().trim(), 16);
        // Signals 1 to 31: none blocked, none ignored. (glibc's spawn leaves its two
        // internal real-time signals, 32 and 33, ignored: no program may use them.)
        assert_eq!(mask.unwrap() & 0x7fff_ffff, 0, "{line}");
    }
}
