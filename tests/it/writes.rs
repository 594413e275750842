//! Writes the user asked for are never lost silently: task output on a full stdout, log
//! files that cannot be written, reports on a full disk. `/dev/full` stands in for a
//! full disk (every write to it fails with ENOSPC), reached through a symlink where the
//! runner names the file itself.

use crate::util::Test;
use std::process::Stdio;

const TWO_TASKS: &str =
    "[jobs.say]\ncommand = 'echo out-{item}; echo err-{item} >&2'\nitems = [1, 2]\n";

#[test]
fn a_full_stdout_is_said_once_and_the_run_exits_1() {
    let t = Test::new(TWO_TASKS);
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = t
        .command()
        .stdout(full)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.matches("No space left on device").count(),
        1,
        "said once:\n{stderr}"
    );
    assert!(stderr.contains("cannot write to stdout"), "{stderr}");
    // The tasks themselves succeeded, and their stderr still arrived.
    assert!(stderr.contains("2 succeeded"), "{stderr}");
    assert!(stderr.contains("[say:1] err-1"), "{stderr}");
}

#[test]
fn a_reader_that_goes_away_is_not_a_lost_write() {
    let t = Test::new("[jobs.many]\ncommand = 'seq 100000'\n");
    let mut child = t
        .command()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read one line, then close the pipe, as `| head -1` does.
    {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        assert_eq!(lines.next().unwrap().unwrap(), "[many] 1");
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("cannot write"), "{stderr}");
}

#[test]
fn a_log_file_that_cannot_be_written_is_said_once_and_the_run_exits_1() {
    let t = Test::new(TWO_TASKS).args(&["--logs", "logs"]);
    std::fs::create_dir(t.path("logs")).unwrap();
    std::os::unix::fs::symlink("/dev/full", t.path("logs/say.0.stdout")).unwrap();
    let out = t.run();
    out.assert_code(1);
    assert_eq!(
        out.stderr.matches("No space left on device").count(),
        1,
        "{}",
        out.stderr
    );
    out.assert_stderr_has("say.0.stdout")
        .assert_stderr_has("log files incomplete: 1 failed write");
    // The other task's logs are whole, and both tasks' output reached the terminal.
    assert_eq!(t.read("logs/say.1.stdout"), "out-2\n");
    assert_eq!(t.read("logs/say.0.stderr"), "err-1\n");
    assert_eq!(out.lines_of("say:1"), ["out-1"]);
}

#[test]
fn a_report_on_a_full_disk_makes_the_run_exit_1() {
    let t = Test::new(TWO_TASKS).args(&["--report", "report.json", "--junit", "junit.xml"]);
    std::os::unix::fs::symlink("/dev/full", t.path("report.json")).unwrap();
    std::os::unix::fs::symlink("/dev/full", t.path("junit.xml")).unwrap();
    let out = t.run();
    out.assert_code(1)
        .assert_stderr_has("cannot write report.json: No space left on device")
        .assert_stderr_has("cannot write junit.xml: No space left on device")
        .assert_stderr_has("reports incomplete: 2 failed writes")
        .assert_stderr_has("exit status 1: not everything asked for was written");
}

#[test]
fn a_logs_folder_that_cannot_be_created_stops_the_run_before_anything_runs() {
    let t = Test::new("[jobs.mark]\ncommand = 'touch ran'\n").args(&["--logs", "afile/logs"]);
    t.write("afile", "");
    let out = t.run();
    out.assert_code(1)
        .assert_stderr_has("cannot create the logs folder");
    assert!(!t.path("ran").exists(), "nothing runs");
}

#[test]
fn only_tasks_that_started_have_log_files() {
    let t = Test::new(
        "[jobs.quiet]\ncommand = 'true'\n[jobs.absent]\ncommand = ['no-such-program-for-logs']\n",
    )
    .args(&["--logs", "logs", "--report", "r.json"]);
    let out = t.run();
    out.assert_code(1);
    assert_eq!(t.read("logs/quiet.0.stdout"), "");
    assert_eq!(t.read("logs/quiet.0.stderr"), "");
    assert!(!t.path("logs/absent.0.stdout").exists());
    assert!(!t.path("logs/absent.0.stderr").exists());
    let report: serde_json::Value = serde_json::from_str(&t.read("r.json")).unwrap();
    let absent = &report["tasks"][1];
    assert_eq!(absent["job"], "absent");
    assert_eq!(absent["stdout_log"], serde_json::Value::Null);
}

#[test]
fn empty_lines_are_labelled_without_a_trailing_space() {
    let out = Test::new("[jobs.gap]\ncommand = 'echo a; echo; echo b'\n").run();
    out.assert_code(0);
    assert_eq!(out.stdout, "[gap] a\n[gap]\n[gap] b\n");
}

#[test]
fn the_report_states_the_exit_status_that_lost_logs_cause() {
    let t = Test::new(TWO_TASKS).args(&["--logs", "logs", "--report", "r.json"]);
    std::fs::create_dir(t.path("logs")).unwrap();
    std::os::unix::fs::symlink("/dev/full", t.path("logs/say.1.stderr")).unwrap();
    let out = t.run();
    out.assert_code(1);
    assert!(
        !out.stderr.contains("all tasks succeeded"),
        "{}",
        out.stderr
    );
    let report: serde_json::Value = serde_json::from_str(&t.read("r.json")).unwrap();
    assert_eq!(report["run"]["exit_status"], 1);
}

#[test]
fn a_log_file_left_by_an_earlier_run_is_started_afresh_then_appended_by_retries() {
    let t = Test::new("[jobs.flaky]\ncommand = 'echo try-$RUNNER_ATTEMPT; exit 1'\nretries = 1\nretry_delay = '10ms'\n")
        .args(&["--logs", "logs"]);
    std::fs::create_dir(t.path("logs")).unwrap();
    t.write("logs/flaky.0.stdout", "stale line from another run\n");
    t.run().assert_code(1);
    assert_eq!(t.read("logs/flaky.0.stdout"), "try-1\ntry-2\n");
}
