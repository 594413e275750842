//! What CI systems read: plain progress lines, `--quiet`, the JSON report, JUnit XML,
//! `--logs`, and the job file's JSON Schema.

use crate::util::{root, Test, BIN};
use std::process::Command;

const MIXED: &str = "pool = 2\n[jobs.build]\ncommand = 'echo built {item}; echo warn {item} >&2'\nitems = ['x', 'y']\n[jobs.test]\ncommand = 'echo testing; echo \"assertion failed\" >&2; exit 3'\nneeds = ['build']\n[jobs.deploy]\ncommand = 'echo never'\nneeds = ['test']\n";

#[test]
fn ci_logs_get_plain_lines_without_escape_codes() {
    let t = Test::new(MIXED).env("CI", "true");
    let out = t.run();
    out.assert_code(1);
    for text in [&out.stdout, &out.stderr] {
        assert!(
            !text.contains('\u{1b}') && !text.contains('\r'),
            "no escape codes or carriage returns:\n{text}"
        );
    }
    let starts = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("[runner] start build:") && l.contains(" pid "))
        .count();
    assert_eq!(starts, 2, "{}", out.stderr);
    assert!(out
        .stderr
        .lines()
        .any(|l| l.starts_with("[runner] done build:x pid ") && l.contains("exit 0 in ")));
    assert!(out
        .stderr
        .lines()
        .any(|l| l.starts_with("[runner] FAIL test pid ") && l.contains("exit 3 in ")));
    out.assert_stderr_has("[build:y] warn y");
    out.assert_stdout_has("[build:x] built x");
}

#[test]
fn a_heartbeat_shows_long_steps_are_alive() {
    let t = Test::new("[jobs.slow]\ncommand = 'sleep 1.2'\nitems = [1, 2]\n")
        .env("RUNNER_HEARTBEAT", "300ms");
    let out = t.run();
    out.assert_code(0);
    let beats: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains(" done, ") && l.contains(" running: "))
        .collect();
    assert!(beats.len() >= 2, "{}", out.stderr);
    assert!(
        beats[0].contains("0/2 done, 2 running: slow (2)"),
        "{}",
        beats[0]
    );
}

#[test]
fn quiet_shows_only_failures_and_the_summary() {
    let t = Test::new(MIXED).args(&["--quiet"]);
    let out = t.run();
    out.assert_code(1);
    assert!(
        !out.stdout.contains("built"),
        "output of tasks that succeeded is hidden:\n{}",
        out.stdout
    );
    assert!(!out.stderr.contains("warn"), "{}", out.stderr);
    assert!(!out.stderr.contains("[runner] start"), "{}", out.stderr);
    out.assert_stdout_has("[test] testing")
        .assert_stderr_has("[test] assertion failed");
    out.assert_stderr_has("FAILED test: exit 3")
        .assert_stderr_has("job ");
}

#[test]
fn the_json_report_has_every_task() {
    let t = Test::new(MIXED).args(&["--report", "report.json", "--logs", "logs"]);
    t.run().assert_code(1);
    let report: serde_json::Value = serde_json::from_str(&t.read("report.json")).unwrap();
    let run = &report["run"];
    assert_eq!(run["exit_status"], 1);
    assert!(run["id"].as_str().unwrap().len() > 4);
    assert!(run["start"].as_str().unwrap().ends_with('Z'));
    assert!(run["duration_s"].as_f64().unwrap() > 0.0);
    let tasks = report["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 4);
    let find = |job: &str, item: &str| {
        tasks
            .iter()
            .find(|t| t["job"] == job && t["item"] == item)
            .unwrap()
    };
    let x = find("build", "x");
    assert_eq!(
        (
            x["status"].as_str(),
            x["exit_code"].as_i64(),
            x["index"].as_u64()
        ),
        (Some("succeeded"), Some(0), Some(0))
    );
    assert!(x["pid"].as_u64().unwrap() > 1);
    assert_eq!(x["attempts"], 1);
    assert_eq!(x["timed_out"], false);
    assert!(x["host"].as_str().is_some_and(|h| !h.is_empty()));
    assert_eq!(
        std::fs::read_to_string(x["stdout_log"].as_str().unwrap()).unwrap(),
        "built x\n"
    );
    let test = find("test", "");
    assert_eq!(
        (test["status"].as_str(), test["exit_code"].as_i64()),
        (Some("failed"), Some(3))
    );
    assert_eq!(test["stderr_tail"], serde_json::json!(["assertion failed"]));
    let deploy = find("deploy", "");
    assert_eq!(deploy["status"], "skipped");
    assert!(deploy["pid"].is_null());
}

#[test]
fn junit_xml_has_a_suite_per_job_and_right_counts() {
    let t = Test::new(MIXED).args(&["--junit", "junit.xml"]);
    t.run().assert_code(1);
    let xml = t.read("junit.xml");
    let doc = roxmltree::Document::parse(&xml).expect("well-formed XML");
    let suites: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testsuite"))
        .collect();
    assert_eq!(
        suites
            .iter()
            .map(|s| s.attribute("name").unwrap())
            .collect::<Vec<_>>(),
        ["build", "test", "deploy"]
    );
    let attr = |s: &roxmltree::Node, a: &str| s.attribute(a).unwrap().parse::<u32>().unwrap();
    assert_eq!(
        (attr(&suites[0], "tests"), attr(&suites[0], "failures")),
        (2, 0)
    );
    assert_eq!(
        (attr(&suites[1], "tests"), attr(&suites[1], "failures")),
        (1, 1)
    );
    // quick-junit counts skipped cases as "disabled"; CI systems read the <skipped/> elements.
    assert_eq!(
        (attr(&suites[2], "tests"), attr(&suites[2], "disabled")),
        (1, 1)
    );
    let skipped = |s: &roxmltree::Node| {
        s.descendants()
            .filter(|n| n.has_tag_name("skipped"))
            .count()
    };
    assert_eq!(suites.iter().map(skipped).collect::<Vec<_>>(), [0, 0, 1]);
    let failure = doc
        .descendants()
        .find(|n| n.has_tag_name("failure"))
        .unwrap();
    assert_eq!(failure.attribute("message"), Some("exit 3"));
    assert!(failure
        .text()
        .unwrap_or_default()
        .contains("assertion failed"));
    let cases: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .map(|n| n.attribute("name").unwrap())
        .collect();
    assert_eq!(cases, ["build:x", "build:y", "test", "deploy"]);
    let root = doc.root_element();
    assert_eq!((attr(&root, "tests"), attr(&root, "failures")), (4, 1));
}

#[test]
fn logs_keep_each_tasks_streams_in_files_named_by_job_and_index() {
    let t = Test::new(MIXED).args(&["--logs", "out/logs"]);
    t.run().assert_code(1);
    assert_eq!(t.read("out/logs/build.0.stdout"), "built x\n");
    assert_eq!(t.read("out/logs/build.1.stderr"), "warn y\n");
    assert_eq!(t.read("out/logs/test.0.stderr"), "assertion failed\n");
    assert!(
        !t.path("out/logs/deploy.0.stdout").exists(),
        "skipped tasks leave no logs"
    );
}

#[test]
fn the_schema_is_json_and_accepts_every_shipped_job_file() {
    let out = Command::new(BIN).arg("schema").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let validator = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
    let mut checked = 0;
    for dir in ["examples", "jobs"] {
        for entry in std::fs::read_dir(root().join(dir)).unwrap().flatten() {
            if entry.path().extension().is_some_and(|e| e == "toml") {
                let text = std::fs::read_to_string(entry.path()).unwrap();
                let value: serde_json::Value = toml::from_str(&text).unwrap();
                let errors: Vec<String> = validator
                    .iter_errors(&value)
                    .map(|e| e.to_string())
                    .collect();
                assert!(errors.is_empty(), "{}: {errors:?}", entry.path().display());
                checked += 1;
            }
        }
    }
    assert!(checked >= 8);
    let bad: serde_json::Value = toml::from_str("[jobs.a]\ncomand = 'x'\n").unwrap();
    assert!(!validator.is_valid(&bad), "an unknown key is flagged");
    let bad: serde_json::Value = toml::from_str("pool = 0\n[jobs.a]\ncommand = 'x'\n").unwrap();
    assert!(!validator.is_valid(&bad), "pool 0 is flagged");
}

#[test]
fn an_unwritable_report_path_is_refused_before_anything_runs() {
    let t =
        Test::new("[jobs.a]\ncommand = 'touch ran'\n").args(&["--junit", "no/such/dir/junit.xml"]);
    t.run()
        .assert_code(2)
        .assert_stderr_has("cannot write no/such/dir/junit.xml");
    assert!(!t.path("ran").exists());
}
