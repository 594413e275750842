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
            "to resume: runner run jobs.toml a --set=\"day=it's\" --state='my state' --resume\n"
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
    // `plan` says so too.
    t.run_with(&["plan", "jobs.toml", "--resume"])
        .assert_code(0)
        .assert_stderr_has("1 record of the latest journal");
    let out = t.run_with(&["run", "jobs.toml", "--resume"]);
    out.assert_code(0)
        .assert_stderr_has("1 record of the latest journal")
        .assert_stderr_has("could not be read and was ignored");
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

/// Starts `runner run jobs.toml ARGS…` in the background, its output thrown away.
fn spawn_with(t: &Test, args: &[&str]) -> std::process::Child {
    t.command()
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("runner starts")
}

/// Kills the runner (SIGKILL, by its pid) and reaps it.
fn kill(mut runner: std::process::Child) {
    signal(&runner, libc::SIGKILL);
    let _ = runner.wait();
}

/// Twenty quick tasks, then one that waits for the file `go` (its start is written to
/// wait.log). A runner killed while it waits has journaled every quick one.
const WAITS: &str = "pool = 2\n[jobs.a]\ncommand = 'echo {item} >> a.log'\nitems = { range = [0, 20] }\n[jobs.wait]\ncommand = 'echo started >> wait.log; while [ ! -e go ]; do sleep 0.05; done'\nneeds = ['a']\n";

#[test]
fn a_resume_killed_before_any_task_ends_forgets_nothing() {
    let t = Test::new(WAITS);
    let first = t.spawn();
    assert!(wait_for(Duration::from_secs(30), || t.lines_in("wait.log") >= 1));
    kill(first);
    assert_eq!(t.lines_in("a.log"), 20);
    // A resume killed before any task of its own ended.
    let second = spawn_with(&t, &["--resume"]);
    assert!(wait_for(Duration::from_secs(30), || t.lines_in("wait.log") >= 2));
    kill(second);
    assert_eq!(t.lines_in("a.log"), 20, "the resume ran nothing done");
    t.write("go", "");
    let out = t.run_with(&["run", "jobs.toml", "--resume"]);
    out.assert_code(0)
        .assert_stderr_has("20 tasks done there, not run again");
    assert_eq!(t.lines_in("a.log"), 20, "nothing done earlier ran again");
    assert_eq!(t.lines_in("wait.log"), 3);
}

#[test]
fn a_task_killed_with_the_run_was_running_not_never_ran() {
    let t = Test::new(WAITS);
    let first = t.spawn();
    assert!(wait_for(Duration::from_secs(30), || t.lines_in("wait.log") >= 1));
    kill(first);
    t.write("go", "");
    let plan = t.run_with(&["plan", "jobs.toml", "--resume", "--json"]);
    let plan: Value = serde_json::from_str(&plan.stdout).unwrap();
    let wait = plan
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["job"] == "wait")
        .unwrap();
    assert_eq!(wait["reason"], "was running when the run stopped");
}

/// A job that succeeds, and one that fails until `fixed` exists.
const HALF: &str = "[jobs.a]\ncommand = 'echo a{item} >> ran.log'\nitems = ['x', 'y']\n[jobs.c]\ncommand = 'echo c >> ran.log; test -e fixed'\n";

#[test]
fn a_start_that_is_refused_leaves_the_latest_run_alone() {
    let t = Test::new(HALF);
    t.run().assert_code(1);
    t.write("ran.log", "");
    let refused: [&[&str]; 3] = [
        &["--trace", "/nonexistent/x.json"],
        &["--broker", "redis://127.0.0.1:1"],
        &["--broker", "127.0.0.1:6379"],
    ];
    // More refused starts than the runs kept: none may prune the real one away.
    for round in 0..2 {
        for args in refused {
            let mut all = vec!["run", "jobs.toml", "--resume"];
            all.extend_from_slice(args);
            let out = t.run_with(&all);
            assert!(
                matches!(out.code, Some(1 | 2)),
                "round {round}, {args:?} refused: {}",
                out.stderr
            );
        }
    }
    assert_eq!(t.read("ran.log"), "", "no refused start ran a task");
    t.write("fixed", "");
    t.run_with(&["run", "jobs.toml", "--resume"])
        .assert_code(0)
        .assert_stderr_has("2 tasks done there");
    assert_eq!(t.read("ran.log"), "c\n", "only the failed task ran again");
}

#[test]
fn a_resume_of_one_job_keeps_what_the_others_did() {
    let t = Test::new(HALF);
    t.run().assert_code(1);
    t.write("fixed", "");
    t.write("ran.log", "");
    // Only c, to retry it.
    t.run_with(&["run", "jobs.toml", "c", "--resume"])
        .assert_code(0);
    assert_eq!(t.read("ran.log"), "c\n");
    // The whole file: nothing ran again.
    t.run_with(&["run", "jobs.toml", "--resume"])
        .assert_code(0)
        .assert_stderr_has("3 tasks done there");
    assert_eq!(t.read("ran.log"), "c\n");
}

#[test]
fn equal_items_are_distinct_tasks() {
    // The second `x` waits for `go`: killed there, it never completed.
    let t = Test::new(
        "pool = 1\n[jobs.a]\ncommand = 'echo {item} >> started.log; if [ \"$(wc -l < started.log)\" -eq 2 ]; then while [ ! -e go ]; do sleep 0.05; done; fi'\nitems = ['x', 'x', 'y']\n",
    );
    let first = t.spawn();
    assert!(wait_for(Duration::from_secs(30), || t
        .lines_in("started.log")
        >= 2));
    kill(first);
    t.write("go", "");
    t.run_with(&["run", "jobs.toml", "--resume"])
        .assert_code(0)
        .assert_stderr_has("1 task done there");
    let seen = counts(&t.read("started.log"));
    assert_eq!(seen.get("x"), Some(&3), "the second x ran again: {seen:?}");
    assert_eq!(seen.get("y"), Some(&1));
}

#[test]
fn the_order_of_env_is_not_part_of_a_task() {
    let t = Test::new("[jobs.a]\ncommand = 'echo $A$B >> ran.log'\nenv = { A = '1', B = '2' }\n");
    t.run().assert_code(0);
    t.write(
        "jobs.toml",
        "[jobs.a]\ncommand = 'echo $A$B >> ran.log'\nenv = { B = '2', A = '1' }\n",
    );
    let plan = t.run_with(&["plan", "jobs.toml", "--resume", "--json"]);
    let plan: Value = serde_json::from_str(&plan.stdout).unwrap();
    assert_eq!(plan[0]["action"], "done_earlier", "{plan}");
    t.run_with(&["run", "jobs.toml", "--resume"]).assert_code(0);
    assert_eq!(t.read("ran.log"), "12\n");
}

#[test]
fn the_resume_hint_is_one_line_and_works_when_pasted() {
    let t = Test::new(
        "[jobs.a]\ncommand = 'echo \"$V\" >> ran.log; test -e fixed'\nenv = { V = '{vars.v}' }\n[jobs.b]\ncommand = 'echo b >> ran.log'\n[vars]\nv = 'plain'\n",
    );
    // A value with a line feed: the hint stays one line, and no line of it is a
    // GitHub Actions workflow command.
    let out = t.run_with(&["run", "jobs.toml", "a", "--set", "v=x\n::warning::owned"]);
    out.assert_code(1);
    assert!(
        !out.stderr
            .lines()
            .any(|l| l.starts_with("::warning::owned")),
        "{}",
        out.stderr
    );
    let last = out.stderr.lines().last().unwrap_or_default();
    assert_eq!(
        last,
        "to resume: runner run jobs.toml a --set=$'v=x\\n::warning::owned' --resume"
    );
    // Pasted as printed (options the resumed run needs included), it resumes.
    let out = t.run_with(&[
        "run",
        "jobs.toml",
        "--set",
        "v=a b",
        "--state=-my state",
        "--pool",
        "1",
    ]);
    out.assert_code(1);
    let hint = out
        .stderr
        .lines()
        .last()
        .and_then(|l| l.strip_prefix("to resume: "))
        .unwrap_or_else(|| panic!("a hint: {}", out.stderr))
        .to_string();
    assert!(hint.contains("--pool=1"), "{hint}");
    t.write("fixed", "");
    t.write("ran.log", "");
    let bin = std::path::Path::new(crate::util::BIN).parent().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let pasted = std::process::Command::new("sh")
        .args(["-c", &hint])
        .current_dir(t.dir.path())
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .env_remove("CI")
        .env_remove("GITHUB_ACTIONS")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&pasted.stderr);
    assert_eq!(pasted.status.code(), Some(0), "{hint}: {stderr}");
    assert!(stderr.contains("resuming run "), "{stderr}");
    assert_eq!(t.read("ran.log"), "a b\n", "only the failed task ran");
}

#[test]
fn a_latest_that_is_a_folder_is_named_as_such() {
    let t = Test::new("[jobs.a]\ncommand = 'true'\n");
    std::fs::create_dir_all(t.path(".runner/jobs.toml/latest")).unwrap();
    let out = t.run();
    out.assert_code(0)
        .assert_stderr_has("latest is a folder, not the pointer to the latest run");
    assert!(
        !out.stderr.contains("cannot write the journal"),
        "{}",
        out.stderr
    );
}

/// The plan of a resumed run of 2,000 items counts what each job and the run would do:
/// what succeeded is done earlier, what failed runs.
#[test]
fn the_plan_of_a_resume_counts_each_action() {
    let t = Test::new_in_target(
        "pool = 4\n[jobs.big]\ncommand = 'test $((RUNNER_ITEM % 5)) -ne 0'\nitems = { range = [0, 2000] }\n[jobs.after]\ncommand = 'true'\nneeds = ['big']\n",
    );
    t.run().assert_code(1);
    let out = t.run_with(&["plan", "jobs.toml", "--resume"]);
    out.assert_code(0)
        .assert_stdout_has("big: 2,000 tasks, the first 10 shown\n")
        .assert_stdout_has("  big:0  run (failed earlier)\n")
        .assert_stdout_has("  big:1  done earlier\n")
        .assert_stdout_has("  2,000 tasks: 1,600 done earlier, 400 run\n")
        .assert_stdout_has("\nPlan: 2,001 tasks: 1,600 done earlier, 401 run\n");
    // The resume does what the plan said.
    let t = t.args(&["--resume", "--report", "run.json"]);
    t.run().assert_code(1);
    let report: Value = serde_json::from_str(&t.read("run.json")).unwrap();
    let done = report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|task| task["status"] == "done_earlier")
        .count();
    assert_eq!(done, 1600);
}
