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

/// Issue 31: `run` and `worker` list their options in sections; `-h` is the short form
/// (one line an option, one example), `--help` and `runner help run` the long one (each
/// option's whole text, then examples), as cargo's.
#[test]
fn run_help_comes_in_sections_short_and_long() {
    let help = |args: &[&str]| {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let short = help(&["run", "-h"]);
    let long = help(&["run", "--help"]);
    for heading in [
        "Choosing what runs:",
        "State:",
        "Output and reports:",
        "Process control:",
        "Cache:",
        "Distributed:",
    ] {
        assert!(short.contains(heading), "run -h lacks {heading}:\n{short}");
        assert!(
            long.contains(heading),
            "run --help lacks {heading}:\n{long}"
        );
    }
    let section = |text: &str, heading: &str| -> String {
        let at = text.find(heading).unwrap();
        text[at..].split("\n\n").next().unwrap().to_string()
    };
    assert!(section(&short, "Choosing what runs:").contains("--changed-since"));
    assert!(section(&short, "Cache:").contains("--cache-mode"));
    assert!(section(&short, "Process control:").contains("--fail-fast"));
    assert!(section(&short, "Output and reports:").contains("--junit"));
    assert!(
        short.contains("Example:") && !short.contains("Examples:"),
        "{short}"
    );
    assert!(short.contains("runner run --help"), "-h says where more is");
    assert!(long.trim_end().ends_with("on other machines."), "{long}");
    assert!(
        long.contains("Examples:\n  runner jobs/ci.toml\n"),
        "{long}"
    );
    assert!(long.lines().count() > short.lines().count());
    assert_eq!(
        help(&["help", "run"]),
        long,
        "runner help run is the long help"
    );
    let worker = help(&["worker", "--help"]);
    for heading in ["Distributed:", "Process control:", "Cache:", "Examples:"] {
        assert!(
            worker.contains(heading),
            "worker --help lacks {heading}:\n{worker}"
        );
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

/// Issue 31: the man pages in man/ are what the code's clap definitions make. Without
/// the distributed feature there is no `runner worker`, so no page of it to compare.
#[cfg(feature = "distributed")]
#[test]
fn the_checked_in_man_pages_are_up_to_date() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("__man")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let names = |dir: &std::path::Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let made = names(dir.path());
    let checked_in = names(&root().join("man"));
    for page in [
        "runner.1",
        "runner-run.1",
        "runner-worker.1",
        "runner-cache-prune.1",
    ] {
        assert!(
            made.contains(&page.to_string()),
            "{page} not made: {made:?}"
        );
    }
    let regenerate = "regenerate them: cargo run -- __man man";
    assert_eq!(
        made, checked_in,
        "man/ has other pages than the code makes; {regenerate}"
    );
    for page in &made {
        let want = std::fs::read_to_string(dir.path().join(page)).unwrap();
        let have = std::fs::read_to_string(root().join("man").join(page)).unwrap();
        assert!(want == have, "man/{page} is out of date; {regenerate}");
    }
    let run = std::fs::read_to_string(dir.path().join("runner-run.1")).unwrap();
    assert!(
        run.contains("changed\\-since") && run.contains("Examples"),
        "{run}"
    );
}
