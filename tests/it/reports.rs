//! What CI systems read: plain progress lines, `--quiet`, the JSON report, JUnit XML,
//! `--logs`, and the job file's JSON Schema.

use crate::util::{root, wait_for, Collected, Test, BIN};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

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
    assert_eq!(
        (attr(&suites[2], "tests"), attr(&suites[2], "skipped")),
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

/// Every outcome a task can have, several jobs, and text that XML cannot carry as it is.
const EVERY_OUTCOME: &str = r#"pool = 8
[jobs.ok]
command = "echo fine {item}"
items = ["plain", "a<b&c]]>", "tab	here"]
[jobs.allowed]
command = "printf 'allowed < & ]]> \\001\\033[31mred\\n\\377\\376 not utf-8\\n' >&2; exit 1"
allow_failure = true
[jobs.bad]
command = "printf 'bad < & ]]> \\002\\n\\377 bytes\\n' >&2; exit 3"
[jobs.slow]
command = "echo slow >&2; sleep 5"
timeout = "200ms"
[jobs.after]
command = "echo never"
needs = ["bad"]
[jobs.long]
command = "sleep 30"
items = { range = [0, 3] }
concurrency = 1
"#;

/// Runs EVERY_OUTCOME with `args` and stops it with SIGTERM once all but `long` ended:
/// `long:0` is stopped, `long:1` and `long:2` never start.
fn every_outcome(args: &[&str]) -> (Test, String) {
    let t = Test::new(EVERY_OUTCOME).args(args);
    let mut child = t.spawn();
    let stderr = Collected::start(child.stderr.take().unwrap());
    let _stdout = Collected::start(child.stdout.take().unwrap());
    let ready = || {
        let now = stderr.now();
        [
            "start long:0 ",
            "FAIL slow pid ",
            "FAIL bad pid ",
            "fail (allowed) allowed pid ",
        ]
        .iter()
        .all(|needle| now.contains(needle))
            && now.matches("[runner] done ok:").count() == 3
    };
    assert!(
        wait_for(Duration::from_secs(10), ready),
        "all but `long` ended: {}",
        stderr.now()
    );
    // SAFETY: signalling the runner we started, by its pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    let stderr = stderr.finish();
    assert_eq!(status.code(), Some(143), "{stderr}");
    (t, stderr)
}

/// `xmllint --noout --schema tests/junit-10.xsd FILE` must pass.
#[track_caller]
pub(crate) fn assert_valid_junit(file: &Path) {
    let schema = root().join("tests/junit-10.xsd");
    let out = match Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(&schema)
        .arg(file)
        .output()
    {
        Ok(out) => out,
        Err(e) => panic!(
            "cannot run xmllint ({e}): this test needs it; install the Debian package \
             libxml2-utils (scripts/test does)"
        ),
    };
    assert!(
        out.status.success(),
        "the JUnit file fails junit-10.xsd:\n{}\n--- the file\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(file).unwrap_or_default()
    );
}

#[test]
fn junit_validates_against_the_jenkins_schema_with_every_outcome() {
    let (t, _) = every_outcome(&["--junit", "junit.xml"]);
    assert_valid_junit(&t.path("junit.xml"));
}

#[test]
fn junit_counts_every_outcome_where_ci_systems_read_them() {
    let (t, _) = every_outcome(&["--junit", "junit.xml"]);
    let xml = t.read("junit.xml");
    let doc = roxmltree::Document::parse(&xml).expect("well-formed XML");
    let attr = |n: &roxmltree::Node, a: &str| {
        n.attribute(a)
            .unwrap_or_else(|| panic!("no {a} in {n:?}"))
            .parse::<u32>()
            .unwrap()
    };
    let counts: Vec<(&str, [u32; 4])> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testsuite"))
        .map(|s| {
            let name = s.attribute("name").unwrap();
            let c = ["tests", "failures", "errors", "skipped"].map(|a| attr(&s, a));
            (name, c)
        })
        .collect();
    assert_eq!(
        counts,
        [
            ("ok", [3, 0, 0, 0]),
            ("allowed", [1, 0, 0, 0]),
            ("bad", [1, 1, 0, 0]),
            ("slow", [1, 1, 0, 0]),
            ("after", [1, 0, 0, 1]),
            ("long", [3, 0, 0, 3]),
        ]
    );
    let root = doc.root_element();
    assert_eq!((attr(&root, "tests"), attr(&root, "failures")), (10, 2));
    let case = |name: &str| {
        doc.descendants()
            .find(|n| n.has_tag_name("testcase") && n.attribute("name") == Some(name))
            .unwrap_or_else(|| panic!("no testcase {name}"))
    };
    let child = |n: roxmltree::Node<'_, '_>, tag: &str| {
        n.descendants().find(|c| c.has_tag_name(tag)).map(|c| {
            (
                c.attribute("message").map(String::from),
                c.text().unwrap_or_default().to_string(),
            )
        })
    };
    assert_eq!(
        doc.descendants()
            .filter(|n| n.has_tag_name("testcase"))
            .map(|n| n.attribute("name").unwrap())
            .collect::<Vec<_>>(),
        [
            "ok:plain",
            "ok:a<b&c]]>",
            "ok:tab\there",
            "allowed",
            "bad",
            "slow",
            "after",
            "long:0",
            "long:1",
            "long:2"
        ]
    );
    // An allowed failure passes, keeps its exit and stderr, and its suite says it was
    // allowed (junit-10.xsd has properties on a testsuite only).
    let allowed = case("allowed");
    assert_eq!(child(allowed, "failure"), None);
    assert_eq!(child(allowed, "skipped"), None);
    let property = |name: &str| {
        allowed
            .parent()
            .unwrap()
            .descendants()
            .find(|n| n.has_tag_name("property") && n.attribute("name") == Some(name))
            .and_then(|n| n.attribute("value"))
    };
    assert_eq!(property("allowed_failure"), Some("true"));
    assert_eq!(property("allowed_failures"), Some("1"));
    assert!(child(allowed, "system-out").unwrap().1.contains("exit 1"));
    let err = child(allowed, "system-err").unwrap().1;
    assert!(err.contains("allowed < & ]]>"), "{err:?}");
    assert!(err.contains("not utf-8"), "{err:?}");
    let (message, text) = child(case("bad"), "failure").unwrap();
    assert_eq!(message.as_deref(), Some("exit 3"));
    assert!(text.contains("bad < & ]]>"), "{text:?}");
    let slow = case("slow");
    let failure = slow
        .descendants()
        .find(|n| n.has_tag_name("failure"))
        .unwrap();
    assert_eq!(failure.attribute("type"), Some("timeout"));
    // The task stopped by the run is skipped, with the reason; the rest never started.
    let (message, _) = child(case("long:0"), "skipped").unwrap();
    let message = message.unwrap_or_default();
    assert!(
        message.contains("stopped by the run") && message.contains("SIGTERM"),
        "{message}"
    );
    assert_eq!(child(case("long:0"), "failure"), None);
    assert!(child(case("long:1"), "skipped").is_some());
    assert!(child(case("after"), "skipped").is_some());
}

#[test]
fn the_summary_and_the_json_tell_stopped_and_allowed_apart() {
    let (t, stderr) = every_outcome(&["--report", "report.json"]);
    assert!(
        stderr.contains(
            "\n10 tasks: 3 succeeded, 2 failed, 1 failed (allowed), 1 stopped, 3 skipped in "
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("\nSTOPPED long:0: killed by SIGTERM"),
        "{stderr}"
    );
    assert!(!stderr.contains("FAILED long"), "{stderr}");
    assert!(stderr.contains("[runner] stopped long:0 pid "), "{stderr}");
    assert!(!stderr.contains("FAIL long"), "{stderr}");
    let header = stderr.lines().find(|l| l.starts_with("job ")).unwrap();
    assert!(
        header.contains(" allowed ") && header.contains(" stopped "),
        "{header}"
    );
    let report: serde_json::Value = serde_json::from_str(&t.read("report.json")).unwrap();
    let tasks = report["tasks"].as_array().unwrap();
    let find = |job: &str, item: &str| {
        tasks
            .iter()
            .find(|t| t["job"] == job && t["item"] == item)
            .unwrap()
    };
    let long = find("long", "0");
    assert_eq!(
        (&long["status"], &long["stopped"], &long["signal"]),
        (&"failed".into(), &true.into(), &"SIGTERM".into())
    );
    let allowed = find("allowed", "");
    assert_eq!(
        (&allowed["status"], &allowed["allowed_failure"]),
        (&"failed".into(), &true.into())
    );
    for never in [find("long", "1"), find("after", "")] {
        assert_eq!(never["status"], "skipped");
        assert!(
            never["slot"].is_null() && never["host"].is_null(),
            "{never}"
        );
    }
    assert!(find("ok", "plain")["slot"].is_u64());
}

#[test]
fn fail_fast_fails_its_cause_only_and_stops_the_rest() {
    let t = Test::new(
        "pool = 2\n[jobs.bad]\ncommand = 'sleep 0.3; echo broke >&2; exit 1'\n[jobs.long]\ncommand = 'sleep 30'\n",
    )
    .args(&["--fail-fast", "--junit", "junit.xml"]);
    let out = t.run();
    out.assert_code(1)
        .assert_stderr_has("FAILED bad: exit 1")
        .assert_stderr_has("\nSTOPPED long: killed by SIGTERM")
        .assert_stderr_has("[runner] stopped long pid ")
        .assert_stderr_has("2 tasks: 0 succeeded, 1 failed, 1 stopped, 0 skipped in ");
    assert!(!out.stderr.contains("FAILED long"), "{}", out.stderr);
    assert_valid_junit(&t.path("junit.xml"));
    let xml = t.read("junit.xml");
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let skipped = doc
        .descendants()
        .find(|n| n.has_tag_name("skipped"))
        .expect("the stopped task is skipped");
    assert_eq!(
        skipped.attribute("message"),
        Some("stopped by the run (fail-fast)")
    );
    assert_eq!(
        doc.descendants()
            .filter(|n| n.has_tag_name("failure"))
            .count(),
        1,
        "{xml}"
    );
}

#[test]
fn a_run_with_only_allowed_failures_is_green_everywhere() {
    let t = Test::new(
        "[jobs.ok]\ncommand = 'true'\n[jobs.lint]\ncommand = 'echo style >&2; exit 1'\nallow_failure = true\n",
    )
    .args(&["--junit", "junit.xml", "--html", "run.html"])
    .env("GITHUB_ACTIONS", "true");
    let summary = t.path("summary.md");
    let t = t.env("GITHUB_STEP_SUMMARY", summary.to_str().unwrap());
    let out = t.run();
    out.assert_code(0)
        .assert_stderr_has("FAILED (allowed) lint: exit 1, pid ")
        .assert_stderr_has("2 tasks: 1 succeeded, 0 failed, 1 failed (allowed), 0 skipped in ");
    assert!(
        !out.stderr.contains("all tasks succeeded"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(" — succeeded with 1 allowed failure\n"),
        "{}",
        out.stderr
    );
    // The job summary and the page say it in the same words.
    let md = t.read("summary.md");
    assert!(
        md.starts_with("### runner: jobs.toml — succeeded with 1 allowed failure\n"),
        "{md}"
    );
    let page = t.read("run.html");
    assert!(
        page.contains("jobs.toml: succeeded with 1 allowed failure</h1>"),
        "{page}"
    );
    assert_valid_junit(&t.path("junit.xml"));
    let xml = t.read("junit.xml");
    assert!(!xml.contains("<failure"), "{xml}");
    assert!(
        xml.contains(r#"<property name="allowed_failure" value="true"/>"#),
        "{xml}"
    );
}

/// Items a 40-character label would merge: three long URLs alike in their first 40
/// characters, a tab and a `?` in one place, and an item given twice.
const LOOK_ALIKE: &str = r#"[jobs.get]
command = "true"
items = [
  "https://example.com/downloads/releases/2026/file-1.tar.gz",
  "https://example.com/downloads/releases/2026/file-2.tar.gz",
  "https://example.com/downloads/releases/2026/file-3.tar.gz",
  "tab\there",
  "tab?here",
  "x",
  "x",
]
"#;

#[test]
fn junit_names_each_task_by_its_whole_item_and_never_two_alike() {
    let t = Test::new(LOOK_ALIKE).args(&["--junit", "junit.xml", "--trace", "trace.json"]);
    t.run().assert_code(0);
    assert_valid_junit(&t.path("junit.xml"));
    let xml = t.read("junit.xml");
    let doc = roxmltree::Document::parse(&xml).expect("well-formed XML");
    let names: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .map(|n| n.attribute("name").unwrap())
        .collect();
    let url = |n: u32| format!("get:https://example.com/downloads/releases/2026/file-{n}.tar.gz");
    assert_eq!(
        names,
        [
            url(1),
            url(2),
            url(3),
            "get:tab\there".to_string(),
            "get:tab?here".to_string(),
            "get:x".to_string(),
            "get:x (index 6)".to_string(),
        ],
        "{xml}"
    );
    // The trace names each event by the task's whole name too.
    let trace: serde_json::Value = serde_json::from_str(&t.read("trace.json")).unwrap();
    let mut events: Vec<(u64, String)> = trace["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["ph"] == "X")
        .map(|e| {
            let index = e["args"]["index"].as_u64().unwrap();
            (index, e["name"].as_str().unwrap().to_string())
        })
        .collect();
    events.sort();
    let traced: Vec<&str> = events.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(
        traced,
        [
            url(1).as_str(),
            &url(2),
            &url(3),
            "get:tab\there",
            "get:tab?here",
            "get:x",
            "get:x"
        ]
    );
}

#[test]
fn a_failure_that_printed_only_on_stdout_has_that_tail_in_junit() {
    let t = Test::new(
        "[jobs.t]\ncommand = 'echo first; echo last words; exit 2'\n[jobs.a]\ncommand = 'echo allowed words; exit 1'\nallow_failure = true\n",
    )
    .args(&["--junit", "junit.xml", "--report", "report.json"]);
    t.run().assert_code(1).assert_stderr_has("  | last words");
    assert_valid_junit(&t.path("junit.xml"));
    let xml = t.read("junit.xml");
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let text_of = |case: &str, tag: &str| {
        doc.descendants()
            .find(|n| n.has_tag_name("testcase") && n.attribute("name") == Some(case))
            .and_then(|n| n.descendants().find(|c| c.has_tag_name(tag)))
            .map(|c| c.text().unwrap_or_default().to_string())
    };
    assert_eq!(
        text_of("t", "failure").as_deref(),
        Some("first\nlast words"),
        "{xml}"
    );
    assert_eq!(
        text_of("t", "system-out").as_deref(),
        Some("first\nlast words")
    );
    let allowed = text_of("a", "system-out").unwrap_or_default();
    assert!(allowed.ends_with("\nallowed words"), "{xml}");
    // The same tail as the JSON report's.
    let report: serde_json::Value = serde_json::from_str(&t.read("report.json")).unwrap();
    assert_eq!(
        report["tasks"][0]["stdout_tail"],
        serde_json::json!(["first", "last words"])
    );
}

/// The reason of every task of `job` in the JSON report.
fn reasons_of(report: &serde_json::Value, job: &str) -> Vec<String> {
    report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["job"] == job)
        .map(|t| t["reason"].as_str().unwrap_or("(none)").to_string())
        .collect()
}

/// The `message` of each `<skipped>` of `job`'s testcases.
fn skipped_messages(xml: &str, job: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(xml).unwrap();
    doc.descendants()
        .filter(|n| n.has_tag_name("testcase") && n.attribute("classname") == Some(job))
        .filter_map(|n| n.descendants().find(|c| c.has_tag_name("skipped")))
        .map(|s| s.attribute("message").unwrap_or("(none)").to_string())
        .collect()
}

#[test]
fn a_task_that_never_started_says_why_in_json_and_junit() {
    // A job whose need failed, and one whose need was skipped for that.
    let t = Test::new(
        "[jobs.bad]\ncommand = 'exit 1'\n[jobs.after]\ncommand = 'true'\nneeds = ['bad']\n[jobs.later]\ncommand = 'true'\nitems = [1, 2]\nneeds = ['after']\n",
    )
    .args(&["--junit", "junit.xml", "--report", "report.json"]);
    t.run().assert_code(1);
    assert_valid_junit(&t.path("junit.xml"));
    let report: serde_json::Value = serde_json::from_str(&t.read("report.json")).unwrap();
    let xml = t.read("junit.xml");
    assert_eq!(reasons_of(&report, "after"), ["a needed job failed: `bad`"]);
    assert_eq!(
        skipped_messages(&xml, "after"),
        ["a needed job failed: `bad`"]
    );
    let later = "a needed job was skipped: `after` (`bad` did not succeed)";
    assert_eq!(reasons_of(&report, "later"), [later, later]);
    assert_eq!(skipped_messages(&xml, "later"), [later, later]);

    // Fail-fast: the tasks it kept from starting say so, naming the job that failed.
    let t = Test::new(
        "pool = 1\n[jobs.bad]\ncommand = 'exit 1'\n[jobs.other]\ncommand = 'true'\nitems = [1, 2]\n",
    )
    .args(&["--fail-fast", "--junit", "junit.xml", "--report", "report.json"]);
    t.run().assert_code(1);
    let report: serde_json::Value = serde_json::from_str(&t.read("report.json")).unwrap();
    let why = "fail-fast: a task of `bad` failed";
    assert_eq!(reasons_of(&report, "other"), [why, why]);
    assert_eq!(skipped_messages(&t.read("junit.xml"), "other"), [why, why]);
}

#[test]
fn tasks_an_interrupted_run_never_started_say_so() {
    let (t, _) = every_outcome(&["--junit", "junit.xml", "--report", "report.json"]);
    let report: serde_json::Value = serde_json::from_str(&t.read("report.json")).unwrap();
    let xml = t.read("junit.xml");
    let stopped = "the run was interrupted (SIGTERM)";
    assert_eq!(
        reasons_of(&report, "long")[1..],
        [stopped.to_string(), stopped.to_string()]
    );
    assert_eq!(
        skipped_messages(&xml, "long"),
        ["stopped by the run (SIGTERM)", stopped, stopped]
    );
    assert_eq!(reasons_of(&report, "after"), ["a needed job failed: `bad`"]);
    assert_eq!(
        skipped_messages(&xml, "after"),
        ["a needed job failed: `bad`"]
    );
}

/// A passing test case carries its last lines of stdout in `<system-out>` (and its
/// stderr in `<system-err>`), as a failed one carries its tail in `<failure>`.
#[test]
fn junit_passing_cases_carry_their_output_tail() {
    let t = Test::new(
        "[jobs.ok]\ncommand = 'seq 1 15; echo careful >&2'\n[jobs.quiet]\ncommand = 'true'\n",
    )
    .args(&["--junit", "junit.xml"]);
    t.run().assert_code(0);
    let xml = t.read("junit.xml");
    let doc = roxmltree::Document::parse(&xml).expect("well-formed XML");
    let case = |name: &str| {
        doc.descendants()
            .find(|n| n.has_tag_name("testcase") && n.attribute("name") == Some(name))
            .unwrap_or_else(|| panic!("no testcase {name}:\n{xml}"))
    };
    let text = |node: roxmltree::Node, tag: &str| {
        node.children()
            .find(|n| n.has_tag_name(tag))
            .and_then(|n| n.text())
            .map(str::to_string)
    };
    // The tail: the last 10 lines.
    let tail: Vec<String> = (6..=15).map(|n| n.to_string()).collect();
    assert_eq!(
        text(case("ok"), "system-out"),
        Some(tail.join("\n")),
        "{xml}"
    );
    assert_eq!(text(case("ok"), "system-err").as_deref(), Some("careful"));
    assert!(case("ok").children().all(|n| !n.has_tag_name("failure")));
    // A task that printed nothing has an empty test case.
    assert!(!case("quiet").has_children(), "{xml}");
    assert_valid_junit(&t.path("junit.xml"));
}
