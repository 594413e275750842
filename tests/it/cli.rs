//! The commands besides `run`: `check`, `graph`, `schema`, `completions`, `--help`.

use crate::util::{root, Test, BIN};
use std::process::Command;

#[test]
fn runner_file_is_runner_run_file() {
    let t = Test::new("[jobs.a]\ncommand = ['echo', 'hi']\n");
    let out = Command::new(BIN)
        .arg("jobs.toml")
        .current_dir(t.dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "[a] hi\n");
}

#[test]
fn check_accepts_every_shipped_job_file_and_runs_nothing() {
    let mut files = vec![root().join("jobs/nslookup.toml")];
    for dir in ["examples", "jobs"] {
        for entry in std::fs::read_dir(root().join(dir)).unwrap().flatten() {
            if entry.path().extension().is_some_and(|e| e == "toml") {
                files.push(entry.path());
            }
        }
    }
    assert!(files.len() >= 8, "{files:?}");
    for file in files {
        let out = Command::new(BIN).arg("check").arg(&file).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains(": ok ("));
    }
}

#[test]
fn check_does_not_run() {
    let t = Test::new("[jobs.a]\ncommand = 'touch ran'\n").args(&["check", "jobs.toml"]);
    let out = t.run();
    out.assert_code(0)
        .assert_stdout_has("jobs.toml: ok (1 job, 0 queues, 1 task)");
    assert!(!t.path("ran").exists());
}

#[test]
fn graph_text_shows_needs_and_queues() {
    let t = Test::new(
        "[jobs.master]\ncommand = 'seq 3'\nto = 'tasks'\n[jobs.worker]\ncommand = 'echo {item}'\nitems = { queue = 'tasks' }\n[jobs.report]\ncommand = 'true'\nneeds = ['worker']\n",
    )
    .args(&["graph", "jobs.toml"]);
    let out = t.run();
    out.assert_code(0);
    assert_eq!(
        out.stdout,
        "master\n  feeds worker through queue `tasks` (capacity 1024)\nworker × items from queue `tasks`\nreport\n  needs worker\n"
    );
}

const GRAPH: &str = "[jobs.master]\ncommand = 'seq 3'\nto = 'tasks'\n[jobs.worker]\ncommand = 'cat'\nstdin = { queue = 'tasks' }\ndescription = 'squares \"each\" item'\n[jobs.report]\ncommand = 'true'\nneeds = ['worker']\n";

#[test]
fn graph_dot_edges_read_the_way_work_flows() {
    let out = Test::new(GRAPH)
        .args(&["graph", "--dot", "jobs.toml"])
        .run();
    out.assert_code(0);
    assert!(out.stdout.starts_with("digraph runner {"));
    assert!(out
        .stdout
        .contains("\"master\" -> \"worker\" [style=dashed, label=\"queue tasks\"];"));
    // From the needed job to the one that needs it, so that it reads "worker, needed by report".
    assert!(
        out.stdout
            .contains("\"worker\" -> \"report\" [label=\"needed by\"];"),
        "{}",
        out.stdout
    );
    // The description is the box's second line.
    assert!(out
        .stdout
        .contains("\"worker\" [label=\"worker\\nsquares \\\"each\\\" item\"];"));
    assert!(out.stdout.contains("edge [fontname=\"sans-serif\""));
}

#[test]
#[ignore = "needs graphviz (dot); scripts/test runs ignored tests"]
fn graph_dot_renders_with_graphviz() {
    use std::io::Write;
    let out = Test::new(GRAPH)
        .args(&["graph", "--dot", "jobs.toml"])
        .run();
    out.assert_code(0);
    let mut dot = Command::new("dot")
        .arg("-Tsvg")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("graphviz's `dot` is not installed; scripts/test installs it");
    dot.stdin
        .take()
        .unwrap()
        .write_all(out.stdout.as_bytes())
        .unwrap();
    let svg = dot.wait_with_output().unwrap();
    assert!(svg.status.success());
    let svg = String::from_utf8_lossy(&svg.stdout);
    assert!(svg.contains("<svg"));
    assert!(svg.contains("needed by"), "{svg}");
    assert!(svg.contains("squares &quot;each&quot; item"), "{svg}");
}

#[test]
fn check_counts_in_words() {
    let out = Test::new("[jobs.one]\ncommand = 'true'\n")
        .args(&["check", "jobs.toml"])
        .run();
    out.assert_code(0);
    assert_eq!(out.stdout, "jobs.toml: ok (1 job, 0 queues, 1 task)\n");
    let out = Test::new(
        "[jobs.p]\ncommand = 'seq 2'\nto = 'q'\n[jobs.c]\ncommand = 'cat'\nitems = { queue = 'q' }\n",
    )
    .args(&["check", "jobs.toml"])
    .run();
    assert_eq!(
        out.stdout,
        "jobs.toml: ok (2 jobs, 1 queue, tasks fed by queues)\n"
    );
}

#[test]
fn help_is_short_and_has_an_example() {
    for args in [
        vec!["--help"],
        vec!["run", "--help"],
        vec!["check", "--help"],
        vec!["graph", "--help"],
    ] {
        let out = Command::new(BIN).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(0));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Example"), "{args:?}: {text}");
        assert!(text.lines().count() < 45, "{args:?} help is long: {text}");
    }
}

#[test]
fn completions_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(BIN)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        assert!(String::from_utf8_lossy(&out.stdout).contains("runner"));
    }
}

#[test]
fn a_bad_option_exits_2() {
    let out = Command::new(BIN)
        .args(["run", "x.toml", "--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// Issue 11, point 7: a duration too long to add to a clock reading is refused before
/// anything runs, in the job file and on the command line.
#[test]
fn absurd_durations_are_refused_before_anything_runs() {
    for key in ["timeout", "retry_delay"] {
        let t = Test::new(&format!(
            "[jobs.a]\ncommand = 'touch ran'\n{key} = '18446744073709551615s'\n"
        ));
        t.run()
            .assert_code(2)
            .assert_stderr_has(&format!(
                "`{key}` is too long: \"18446744073709551615s\" is more than 30 days"
            ))
            .assert_stderr_has("jobs.toml:3:");
        assert!(!t.path("ran").exists());
    }
    let t =
        Test::new("[jobs.a]\ncommand = 'touch ran'\n").args(&["--grace", "18446744073709551615s"]);
    t.run().assert_code(2).assert_stderr_has(
        "invalid value '18446744073709551615s' for '--grace <DURATION>': \"18446744073709551615s\" is more than 30 days",
    );
    assert!(!t.path("ran").exists());
}

/// Issue 11, point 16: a lease shorter than half a second is refused (before connecting: the
/// broker here does not exist).
#[cfg(feature = "distributed")]
#[test]
fn a_lease_below_half_a_second_is_refused() {
    for lease in ["0s", "1ms", "499ms"] {
        let t = Test::new("[jobs.a]\ncommand = 'touch ran'\n").args(&[
            "--broker",
            "redis://127.0.0.1:1",
            "--lease",
            lease,
        ]);
        t.run().assert_code(2).assert_stderr_has(&format!(
            "invalid value '{lease}' for '--lease <DURATION>': \"{lease}\" is less than 500ms: workers renew a lease every third of it"
        ));
        assert!(!t.path("ran").exists());
    }
}

/// Issue 11, point 8: RUNNER_HEARTBEAT is checked like an option: a bad value is exit 2
/// naming the variable and the value, before anything runs.
#[test]
fn a_bad_runner_heartbeat_is_refused_before_anything_runs() {
    for (value, says) in [
        ("abc", "RUNNER_HEARTBEAT=\"abc\" is not a duration"),
        ("0s", "RUNNER_HEARTBEAT=\"0s\" is too short: \"0s\" is less than 100ms"),
        (
            "18446744073709551615s",
            "RUNNER_HEARTBEAT=\"18446744073709551615s\" is too long: \"18446744073709551615s\" is more than 1h",
        ),
    ] {
        let t = Test::new("[jobs.a]\ncommand = 'touch ran'\n").env("RUNNER_HEARTBEAT", value);
        t.run().assert_code(2).assert_stderr_has(says);
        assert!(!t.path("ran").exists(), "{value}");
    }
    let t = Test::new("[jobs.a]\ncommand = 'touch ran'\n").env("RUNNER_HEARTBEAT", "2s");
    t.run().assert_code(0);
    assert!(t.path("ran").exists());
}
