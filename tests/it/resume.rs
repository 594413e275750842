//! Runs that survive (issue 14): the journal in the state folder, `--resume` by task
//! identity, and every way the state can be missing, locked, torn or foreign. Real
//! processes, real files; the runner is killed with real signals.

use crate::util::{wait_for, Test};
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

/// How many times each line appears in `text`.
fn counts(text: &str) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for line in text.lines() {
        *counts.entry(line.to_string()).or_insert(0) += 1;
    }
    counts
}

fn signal(child: &std::process::Child, signal: i32) {
    // SAFETY: signalling the runner this test started, by its pid.
    unsafe { libc::kill(child.id() as i32, signal) };
}

const MANY: &str = "pool = 4\n[jobs.each]\ncommand = 'sleep 0.01; echo {item} >> items.log'\nitems = { range = [0, 2000] }\n";

#[test]
fn a_runner_killed_with_sigkill_resumes_where_it_stopped() {
    let t = Test::new(MANY);
    let mut runner = t.spawn();
    assert!(
        wait_for(Duration::from_secs(60), || t.lines_in("items.log") >= 400),
        "the run got going"
    );
    signal(&runner, libc::SIGKILL);
    let _ = runner.wait();
    let before = t.lines_in("items.log");
    assert!(before < 2000, "killed mid-run ({before} items done)");
    let out = t.run_with(&["run", "jobs.toml", "--resume"]);
    out.assert_code(0).assert_stderr_has("resuming run ");
    let seen = counts(&t.read("items.log"));
    for item in 0..2000 {
        assert!(
            seen.contains_key(&item.to_string()),
            "item {item} never ran"
        );
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.len() <= 4 && twice.iter().all(|(_, n)| **n == 2),
        "only tasks running at the kill (at most the pool, 4) ran again: {twice:?}"
    );
    // The summary counts what the first run finished as done earlier.
    assert!(out.stderr.contains("done earlier"), "{}", out.stderr);
}

#[test]
fn ctrl_c_then_resume_runs_the_rest() {
    let t = Test::new(MANY);
    let runner = t.spawn();
    assert!(wait_for(Duration::from_secs(60), || t
        .lines_in("items.log")
        >= 200));
    signal(&runner, libc::SIGINT);
    let out = runner.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.lines().last(),
        Some("to resume: runner run jobs.toml --resume"),
        "{stderr}"
    );
    t.run_with(&["run", "jobs.toml", "--resume"]).assert_code(0);
    let seen = counts(&t.read("items.log"));
    assert_eq!(seen.len(), 2000);
    assert!(seen.values().filter(|n| **n > 1).count() <= 4);
}

#[test]
fn a_failed_run_fixed_and_resumed_runs_only_the_failed_and_skipped_tasks() {
    let t = Test::new(
        "[jobs.a]\ncommand = 'echo a{item} >> ran.log; test ! -e broken.{item}'\nitems = { range = [0, 6] }\n[jobs.b]\ncommand = 'echo b >> ran.log'\nneeds = ['a']\n[jobs.c]\ncommand = 'echo c >> ran.log'\n",
    );
    t.write("broken.3", "");
    let out = t.run();
    out.assert_code(1);
    assert!(
        out.stderr
            .ends_with("to resume: runner run jobs.toml --resume\n"),
        "{}",
        out.stderr
    );
    std::fs::remove_file(t.path("broken.3")).unwrap();
    std::fs::remove_file(t.path("ran.log")).unwrap();
    let out = t.run_with(&[
        "run",
        "jobs.toml",
        "--resume",
        "--report",
        "report.json",
        "--junit",
        "junit.xml",
    ]);
    out.assert_code(0);
    let mut ran: Vec<String> = t.read("ran.log").lines().map(String::from).collect();
    ran.sort();
    assert_eq!(ran, ["a3", "b"]);
    assert!(
        !out.stderr.contains("to resume"),
        "a run that succeeded says nothing of resuming"
    );
    // The command to resume repeats the selection, the vars and the state folder.
    let t2 = Test::new(
        "[vars]\nday = 'mon'\n[jobs.a]\ncommand = 'exit 1'\n[jobs.b]\ncommand = 'true'\n",
    );
    let failed = t2.run_with(&[
        "run",
        "jobs.toml",
        "a",
        "--set",
        "day=it's",
        "--state",
        "my state",
    ]);
    failed.assert_code(1);
    assert!(
        failed.stderr.ends_with(
            "to resume: runner run jobs.toml a --set \"day=it's\" --state 'my state' --resume\n"
        ),
        "{}",
        failed.stderr
    );
    let report: Value = serde_json::from_str(&t.read("report.json")).unwrap();
    let tasks = report["tasks"].as_array().unwrap();
    let by = |job: &str, index: u64| {
        tasks
            .iter()
            .find(|t| t["job"] == job && t["index"] == index)
            .unwrap_or_else(|| panic!("{job}:{index} in the report"))
            .clone()
    };
    assert_eq!(by("a", 0)["status"], "done_earlier");
    assert_eq!(by("a", 0)["reason"], "done earlier");
    assert_eq!(by("a", 3)["status"], "succeeded");
    assert_eq!(by("a", 3)["reason"], "failed earlier");
    assert_eq!(by("b", 0)["reason"], "never ran");
    assert_eq!(by("c", 0)["status"], "done_earlier");
    // JUnit: a task done earlier is a passed test case that says so.
    let xml = t.read("junit.xml");
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let case = doc
        .descendants()
        .find(|n| n.has_tag_name("testcase") && n.attribute("name") == Some("a:0"))
        .unwrap();
    assert!(!case
        .descendants()
        .any(|n| n.has_tag_name("failure") || n.has_tag_name("skipped")));
    let out_text = case
        .descendants()
        .find(|n| n.has_tag_name("system-out"))
        .and_then(|n| n.text())
        .unwrap_or_default();
    assert!(out_text.contains("done earlier"), "{xml}");
    // The summary: a column and the last line's words.
    assert!(
        out.stderr.contains("7 done earlier") || out.stderr.contains("6 done earlier"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_changed_command_reruns_its_tasks_and_new_items_run_alone() {
    let t = Test::new(
        "[jobs.a]\ncommand = 'echo a{item} >> ran.log'\nitems = ['x', 'y']\n[jobs.c]\ncommand = 'echo c >> ran.log'\n",
    );
    t.run().assert_code(0);
    std::fs::remove_file(t.path("ran.log")).unwrap();
    // A new item: only it runs.
    t.write(
        "jobs.toml",
        "[jobs.a]\ncommand = 'echo a{item} >> ran.log'\nitems = ['x', 'y', 'z']\n[jobs.c]\ncommand = 'echo c >> ran.log'\n",
    );
    t.run_with(&["run", "jobs.toml", "--resume"]).assert_code(0);
    assert_eq!(t.read("ran.log"), "az\n");
    std::fs::remove_file(t.path("ran.log")).unwrap();
    // A changed command: its job's tasks run again, the other job's do not.
    t.write(
        "jobs.toml",
        "[jobs.a]\ncommand = 'echo A{item} >> ran.log'\nitems = ['x', 'y', 'z']\n[jobs.c]\ncommand = 'echo c >> ran.log'\n",
    );
    let plan = t.run_with(&["plan", "jobs.toml", "--resume", "--json"]);
    let plan: Value = serde_json::from_str(&plan.stdout).unwrap();
    let actions: Vec<(String, String)> = plan
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["action"].as_str().unwrap().into(),
                t["reason"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("run".into(), "command changed".into()),
            ("run".into(), "command changed".into()),
            ("run".into(), "command changed".into()),
            ("done_earlier".into(), "done earlier".into()),
        ]
    );
    t.run_with(&["run", "jobs.toml", "--resume"]).assert_code(0);
    let mut ran: Vec<String> = t.read("ran.log").lines().map(String::from).collect();
    ran.sort();
    assert_eq!(ran, ["Ax", "Ay", "Az"]);
}

/// The journal of the latest run of jobs.toml in the test's folder.
fn journal(t: &Test) -> std::path::PathBuf {
    let latest = t.read(".runner/jobs.toml/latest");
    t.path(&format!(".runner/jobs.toml/runs/{}.journal", latest.trim()))
}

#[test]
fn a_torn_journal_resumes_cleanly() {
    let t = Test::new("[jobs.a]\ncommand = 'echo {item} >> ran.log'\nitems = { range = [0, 5] }\n");
    t.run().assert_code(0);
    let path = journal(&t);
    let len = std::fs::metadata(&path).unwrap().len();
    // The last record loses its last few bytes, as a death mid-write leaves it.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    std::fs::remove_file(t.path("ran.log")).unwrap();
    let out = t.run_with(&["run", "jobs.toml", "--resume"]);
    out.assert_code(0)
        .assert_stderr_has("1 record of the latest journal");
    assert_eq!(
        t.lines_in("ran.log"),
        1,
        "only the task of the torn record ran again"
    );
    assert!(!out.stderr.contains("panicked"));
}

#[test]
fn resume_without_an_earlier_run_is_an_error() {
    let t = Test::new("[jobs.a]\ncommand = 'echo ran >> ran.log'\n");
    t.run_with(&["run", "jobs.toml", "--resume"])
        .assert_code(2)
        .assert_stderr_has("--resume: there is no earlier run of jobs.toml to resume");
    t.run_with(&["plan", "jobs.toml", "--resume"])
        .assert_code(2);
    assert!(!t.path("ran.log").exists());
}

#[test]
fn a_state_that_cannot_be_written_warns_and_only_resume_fails() {
    let t = Test::new("[jobs.a]\ncommand = 'echo ran >> ran.log'\n");
    // The state folder's place is taken by a file.
    t.write("blocked", "not a folder");
    let out = t.run_with(&["run", "jobs.toml", "--state", "blocked"]);
    out.assert_code(0)
        .assert_stderr_has("warning: cannot write the state in blocked/jobs.toml");
    assert_eq!(
        out.stderr.matches("warning:").count(),
        1,
        "said once: {}",
        out.stderr
    );
    assert_eq!(t.read("ran.log"), "ran\n");
    t.run_with(&["run", "jobs.toml", "--state", "blocked", "--resume"])
        .assert_code(2)
        .assert_stderr_has("--resume");
}

#[test]
fn a_foreign_or_corrupt_state_never_stops_a_plain_run() {
    let t = Test::new("[jobs.a]\ncommand = 'echo ran >> ran.log'\n");
    t.write(".runner/jobs.toml/latest", "../../etc/passwd");
    let out = t.run();
    out.assert_code(0).assert_stderr_has("does not name a run");
    t.run_with(&["run", "jobs.toml", "--resume"]).assert_code(0);
    // A journal that is not one.
    let path = journal(&t);
    std::fs::write(&path, b"\x00\x01garbage\n{}\n").unwrap();
    let out = t.run();
    out.assert_code(0)
        .assert_stderr_has("is not a runner journal");
    std::fs::write(journal(&t), b"\x00\x01garbage\n{}\n").unwrap();
    let out = t.run_with(&["run", "jobs.toml", "--resume"]);
    out.assert_code(2)
        .assert_stderr_has("is not a runner journal");
    assert!(!out.stderr.contains("panicked"));
}

#[test]
fn two_runs_at_once_do_not_share_a_journal() {
    let t = Test::new("[jobs.slow]\ncommand = 'echo go >> started.log; sleep 30'\n");
    let mut first = t.spawn();
    assert!(wait_for(Duration::from_secs(20), || t
        .lines_in("started.log")
        >= 1));
    let second = t.run_with(&["plan", "jobs.toml"]);
    second.assert_code(0);
    t.write("jobs2.toml", "");
    let resume = t.run_with(&["run", "jobs.toml", "--resume"]);
    resume
        .assert_code(2)
        .assert_stderr_has("another run of jobs.toml is running (pid ")
        .assert_stderr_has("wait for it to end");
    t.write(
        "jobs.toml",
        "[jobs.slow]\ncommand = 'echo quick >> quick.log'\n",
    );
    let plain = t.run();
    plain
        .assert_code(0)
        .assert_stderr_has("this run is not journaled (it cannot be resumed)");
    assert_eq!(t.read("quick.log"), "quick\n");
    signal(&first, libc::SIGTERM);
    let _ = first.wait();
}

#[test]
fn old_runs_are_pruned_and_the_state_keeps_out_of_git() {
    let t = Test::new("[jobs.a]\ncommand = 'true'\n");
    for _ in 0..7 {
        t.run().assert_code(0);
    }
    let runs = std::fs::read_dir(t.path(".runner/jobs.toml/runs"))
        .unwrap()
        .count();
    assert_eq!(runs, 5);
    assert!(t.read(".runner/.gitignore").lines().any(|l| l == "*"));
}

#[test]
fn producers_and_streaming_consumers_run_again_but_done_items_do_not() {
    let t = Test::new(
        "[jobs.p]\ncommand = 'echo p >> ran.log; seq 1 4'\nto = 'q'\n[jobs.c]\ncommand = 'echo c{item} >> ran.log; test ! -e broken.{item}'\nitems = { queue = 'q' }\n",
    );
    t.write("broken.3", "");
    t.run().assert_code(1);
    std::fs::remove_file(t.path("broken.3")).unwrap();
    std::fs::remove_file(t.path("ran.log")).unwrap();
    t.run_with(&["run", "jobs.toml", "--resume"]).assert_code(0);
    let mut ran: Vec<String> = t.read("ran.log").lines().map(String::from).collect();
    ran.sort();
    assert_eq!(
        ran,
        ["c3", "p"],
        "the producer ran again; only the failed item's task did"
    );
}

/// A full disk while journaling: one warning, the run goes on and ends as it would.
#[test]
#[ignore = "needs root (mount -t tmpfs); scripts/test runs ignored tests"]
fn a_full_disk_while_journaling_is_a_warning_not_a_lost_run() {
    let t = Test::new("pool = 4\n[jobs.many]\ncommand = ['true']\nitems = { range = [0, 1500] }\n");
    let disk = t.path("disk");
    std::fs::create_dir(&disk).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&disk)
        .status()
        .unwrap();
    assert!(mounted.success(), "mount a 64 KiB tmpfs (needs root)");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(disk.clone());
    let out = t.run_with(&["run", "jobs.toml", "--state", "disk"]);
    out.assert_code(0)
        .assert_stderr_has("cannot write the journal")
        .assert_stderr_has("No space left on device")
        .assert_stderr_has("1500 tasks: 1500 succeeded");
    assert_eq!(
        out.stderr.matches("cannot write the journal").count(),
        1,
        "{}",
        out.stderr
    );
}
