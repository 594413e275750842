//! Item-by-item `needs` (`{ job, each = true }`) and `when = "always" | "failure"`: what
//! runs, what is skipped and why (live log, summary, JSON, JUnit), the exit status, and
//! the load errors.

use crate::util::{wait_for, Test};
use std::time::Duration;

fn report(t: &Test) -> serde_json::Value {
    serde_json::from_str(&t.read("report.json")).expect("a JSON report")
}

/// (item, status, reason) of every task of `job` in the JSON report.
fn tasks_of(report: &serde_json::Value, job: &str) -> Vec<(String, String, String)> {
    report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["job"] == job)
        .map(|t| {
            let text = |k: &str| t[k].as_str().unwrap_or("").to_string();
            (text("item"), text("status"), text("reason"))
        })
        .collect()
}

/// The `message` of each `<skipped>` of `job`'s test cases.
fn skipped_messages(xml: &str, job: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(xml).unwrap();
    doc.descendants()
        .filter(|n| n.has_tag_name("testcase") && n.attribute("classname") == Some(job))
        .filter_map(|n| n.descendants().find(|c| c.has_tag_name("skipped")))
        .map(|s| s.attribute("message").unwrap_or("(none)").to_string())
        .collect()
}

/// The issue's case: 50 downloads, 2 of which fail after their retry; `process` needs
/// `download` item by item, so the other 48 are processed and only 2 are skipped.
#[test]
fn a_failed_download_skips_only_its_own_process_task() {
    let t = Test::new(
        r#"
[jobs.download]
command = "if [ {item} = 7 ] || [ {item} = 31 ]; then exit 3; fi; echo got {item}"
items = { range = [0, 50] }
retries = 1
retry_delay = "10ms"

[jobs.process]
command = "echo processed {item}"
items = { range = [0, 50] }
needs = [{ job = "download", each = true }]

[jobs.publish]
command = "echo published"
needs = ["process"]
"#,
    )
    .args(&["--report", "report.json", "--junit", "junit.xml"]);
    let out = t.run();
    out.assert_code(1);
    let processed = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("[process:") && l.contains("processed"))
        .count();
    assert_eq!(processed, 48, "{}", out.stdout);
    assert!(out.lines_of("process:7").is_empty() && out.lines_of("process:31").is_empty());
    // The live log and the summary say why.
    out.assert_stderr_has("[runner] skipped process:7: `download:7` failed")
        .assert_stderr_has("[runner] skipped process:31: `download:31` failed")
        .assert_stderr_has("\nskipped process:7: `download:7` failed\n")
        .assert_stderr_has(
            "\nskipped publish: a needed job did not succeed: `process` (2 tasks skipped)\n",
        );
    assert!(out.lines_of("publish").is_empty());
    let report = report(&t);
    let skipped: Vec<_> = tasks_of(&report, "process")
        .into_iter()
        .filter(|(_, status, _)| status == "skipped")
        .collect();
    assert_eq!(
        skipped,
        [
            ("7".into(), "skipped".into(), "`download:7` failed".into()),
            ("31".into(), "skipped".into(), "`download:31` failed".into())
        ]
    );
    let xml = t.read("junit.xml");
    assert_eq!(
        skipped_messages(&xml, "process"),
        ["`download:7` failed", "`download:31` failed"]
    );
}

/// Task L of `process` starts as soon as `download`'s task L succeeded: `download:a`
/// waits (up to 20 s, then fails) until `process:b` has started.
#[test]
fn an_item_starts_without_waiting_for_the_whole_job() {
    let t = Test::new(
        r#"
pool = 4
[jobs.download]
command = """
if [ "$RUNNER_ITEM" = a ]; then
  i=0; while [ ! -e started-b ]; do i=$((i+1)); [ $i -gt 400 ] && exit 1; sleep 0.05; done
fi
"""
items = ["a", "b"]

[jobs.process]
command = "touch started-{item}"
items = ["b", "a"]
needs = [{ job = "download", each = true }]
"#,
    );
    let out = t.run();
    out.assert_code(0);
    assert!(t.path("started-a").exists() && t.path("started-b").exists());
}

/// A task skipped item by item skips the task of its label in a job that needs its job
/// item by item, naming the skipped one; whole-job needs mix in.
#[test]
fn item_by_item_chains_and_mixes_with_whole_job_needs() {
    let t = Test::new(
        r#"
[jobs.setup]
command = "true"
[jobs.a]
command = "[ {item} != 2 ]"
items = [1, 2, 3]
[jobs.b]
command = "true"
items = [3, 2, 1]
needs = [{ job = "a", each = true }, "setup"]
[jobs.c]
command = "echo c {item}"
items = [1, 2, 3]
needs = [{ job = "b", each = true }]
"#,
    )
    .args(&["--report", "report.json"]);
    let out = t.run();
    out.assert_code(1);
    assert_eq!(out.lines_of("c:1"), ["c 1"]);
    assert_eq!(out.lines_of("c:3"), ["c 3"]);
    let report = report(&t);
    let reason = |job: &str, item: &str| {
        tasks_of(&report, job)
            .into_iter()
            .find(|(i, _, _)| i == item)
            .map(|(_, s, r)| (s, r))
    };
    assert_eq!(
        reason("b", "2"),
        Some(("skipped".into(), "`a:2` failed".into()))
    );
    assert_eq!(
        reason("c", "2"),
        Some(("skipped".into(), "`b:2` was skipped".into()))
    );
}

/// Selecting the job that needs item by item brings the job it needs.
#[test]
fn selecting_a_job_brings_what_it_needs_item_by_item() {
    let t = Test::new(
        "[jobs.a]\ncommand = 'touch a{item}'\nitems = [1, 2]\n[jobs.b]\ncommand = 'touch b{item}'\nitems = [2, 1]\nneeds = [{ job = 'a', each = true }]\n[jobs.other]\ncommand = 'touch other'\n",
    )
    .args(&["b"]);
    t.run().assert_code(0);
    for f in ["a1", "a2", "b1", "b2"] {
        assert!(t.path(f).exists(), "{f}");
    }
    assert!(!t.path("other").exists());
}

const REPORT_JOB: &str = r#"
[jobs.report]
command = "echo report ran"
needs = ["build"]
when = "always"
"#;

#[test]
fn an_always_job_runs_after_a_failure_and_the_run_still_fails() {
    let t = Test::new(&format!("[jobs.build]\ncommand = 'exit 1'\n{REPORT_JOB}"))
        .args(&["--report", "report.json"]);
    let out = t.run();
    out.assert_code(1);
    assert_eq!(out.lines_of("report"), ["report ran"]);
    let report = report(&t);
    assert_eq!(tasks_of(&report, "report")[0].1, "succeeded");
}

#[test]
fn an_always_job_runs_after_fail_fast_stopped_the_rest() {
    let t = Test::new(&format!(
        "fail_fast = true\n[jobs.slow]\ncommand = 'sleep 60'\n[jobs.build]\ncommand = 'sleep 0.2; exit 1'\n[jobs.after]\ncommand = 'touch after'\nneeds = ['build']\n{REPORT_JOB}needs = ['build', 'slow', 'after']\n"
    ).replace("needs = [\"build\"]\nwhen = \"always\"\nneeds", "when = \"always\"\nneeds"))
    .args(&["--report", "report.json"]);
    let started = std::time::Instant::now();
    let out = t.run();
    out.assert_code(1);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "slow was stopped"
    );
    assert_eq!(out.lines_of("report"), ["report ran"]);
    assert!(!t.path("after").exists());
    out.assert_stderr_has("stopped slow");
    let report = report(&t);
    assert_eq!(
        tasks_of(&report, "after")[0].2,
        "fail-fast: a task of `build` failed"
    );
}

#[test]
fn an_always_job_does_not_run_after_ctrl_c() {
    let t = Test::new(
        "[jobs.slow]\ncommand = 'touch started; sleep 60'\n[jobs.report]\ncommand = 'touch report'\nneeds = ['slow']\nwhen = 'always'\n",
    );
    let mut child = t.spawn();
    assert!(wait_for(Duration::from_secs(10), || t
        .path("started")
        .exists()));
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(!t.path("report").exists());
}

const NOTIFY: &str = r#"
[jobs.notify]
command = "echo notified"
needs = ["build"]
when = "failure"
"#;

#[test]
fn a_failure_job_is_skipped_when_its_needs_succeeded() {
    let t = Test::new(&format!("[jobs.build]\ncommand = 'true'\n{NOTIFY}")).args(&[
        "--report",
        "report.json",
        "--junit",
        "junit.xml",
    ]);
    let out = t.run();
    out.assert_code(0);
    assert!(out.lines_of("notify").is_empty());
    out.assert_stderr_has("[runner] skipped `notify` (1 task): its needs succeeded")
        .assert_stderr_has("\nskipped notify: its needs succeeded\n");
    let report = report(&t);
    assert_eq!(
        tasks_of(&report, "notify"),
        [("".into(), "skipped".into(), "its needs succeeded".into())]
    );
    assert_eq!(
        skipped_messages(&t.read("junit.xml"), "notify"),
        ["its needs succeeded"]
    );
}

#[test]
fn a_failure_job_runs_when_a_need_failed() {
    let t = Test::new(&format!("[jobs.build]\ncommand = 'exit 1'\n{NOTIFY}"));
    let out = t.run();
    out.assert_code(1);
    assert_eq!(out.lines_of("notify"), ["notified"]);
}

#[test]
fn a_whole_job_skip_names_the_failed_job_on_the_live_log() {
    let t = Test::new(
        "[jobs.build]\ncommand = 'exit 1'\n[jobs.deploy]\ncommand = 'true'\nitems = [1, 2]\nneeds = ['build']\n",
    );
    let out = t.run();
    out.assert_code(1)
        .assert_stderr_has("[runner] skipped `deploy` (2 tasks): a needed job failed: `build`")
        .assert_stderr_has("\nskipped 2 tasks of `deploy`: a needed job failed: `build`\n");
}

/// Runs `source` and expects a load error with `message` at `line_col`; nothing runs.
#[track_caller]
fn rejected(source: &str, message: &str, line_col: &str) -> String {
    let t = Test::new(source);
    let out = t.run();
    out.assert_code(2)
        .assert_stderr_has(message)
        .assert_stderr_has(&format!("jobs.toml:{line_col}"));
    out.stderr
}

#[test]
fn item_by_item_load_errors() {
    let err = rejected(
        "[jobs.a]\ncommand = 'true'\nitems = [1, 2]\n[jobs.b]\ncommand = 'true'\nitems = [1, 3]\nneeds = [{ job = 'a', each = true }]\n",
        "job `b` needs `a` item by item, but their items differ: `3` is an item of `b` but not of `a`",
        "7:10",
    );
    assert!(err.contains("same labels (in any order)"), "{err}");
    rejected(
        "[jobs.p]\ncommand = 'seq 3'\nto = 'q'\n[jobs.c]\ncommand = 'true'\nitems = { queue = 'q' }\n[jobs.d]\ncommand = 'true'\nitems = [1, 2, 3]\nneeds = [{ job = 'c', each = true }]\n",
        "job `d` needs `c` item by item, but `c` cannot be matched item by item: its items come from a queue",
        "10:10",
    );
    rejected(
        "[jobs.a]\ncommand = 'true'\nitems = [1]\n[jobs.b]\ncommand = 'true'\nitems = [1]\nneeds = [{ job = 'a', each = true }]\nwhen = 'always'\n",
        "has `when = \"always\"`: a job needed item by item runs on success only",
        "7:10",
    );
    let err = rejected(
        "[jobs.a]\ncommand = 'true'\n[jobs.b]\ncommand = 'true'\nneeds = [{ jbo = 'a' }]\n",
        "unknown key `jbo`",
        "5:12",
    );
    assert!(err.contains("did you mean `job`?"), "{err}");
    rejected(
        "[jobs.a]\ncommand = 'true'\n[jobs.b]\ncommand = 'true'\nneeds = [{ job = 'x', each = true }]\n",
        "job `b` needs `x`, which is not a job in this file",
        "5:18",
    );
}

#[test]
fn a_wrong_when_is_a_load_error_with_a_suggestion() {
    let err = rejected(
        "[jobs.a]\ncommand = 'true'\nwhen = 'allways'\n",
        "`when` must be \"success\", \"always\" or \"failure\", not \"allways\"",
        "3:8",
    );
    assert!(err.contains("did you mean \"always\"?"), "{err}");
}

#[test]
fn the_plan_and_the_graph_show_item_by_item_needs_and_when() {
    let t = Test::new(
        "[jobs.a]\ncommand = 'true'\nitems = [1, 2]\n[jobs.b]\ncommand = 'true'\nitems = [2, 1]\nneeds = [{ job = 'a', each = true }]\n[jobs.r]\ncommand = 'true'\nneeds = ['b']\nwhen = 'always'\n",
    );
    let plan = t.run_with(&["plan", "jobs.toml"]);
    plan.assert_code(0).assert_stdout_has(
        "b: 2 tasks\n  item by item after a: each task starts once the task of its label there succeeded\n",
    );
    let graph = t.run_with(&["graph", "jobs.toml"]);
    graph
        .assert_code(0)
        .assert_stdout_has("  needs a (item by item)\n")
        .assert_stdout_has("r (when always)\n");
    let dot = t.run_with(&["graph", "jobs.toml", "--dot"]);
    dot.assert_code(0)
        .assert_stdout_has("\"a\" -> \"b\" [style=dashed, label=\"each\"];");
}
