//! `runner schema --report` and docs/runner-report.schema.json (issue 31): the schema
//! printed is the one checked in, every report the suite writes fits it (`util::Test`
//! checks each `--report FILE` it sees), and the runs here give every key it lists a
//! value, so that it documents no key the runner never writes.

use crate::util::{assert_report_fits, root, wait_for, Test, BIN};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

#[test]
fn schema_report_prints_the_checked_in_schema() {
    let out = Command::new(BIN)
        .args(["schema", "--report"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let checked_in =
        std::fs::read_to_string(root().join("docs/runner-report.schema.json")).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        checked_in,
        "runner schema --report differs from docs/runner-report.schema.json"
    );
    let schema: Value = serde_json::from_slice(&out.stdout).unwrap();
    jsonschema::validator_for(&schema).expect("a valid JSON Schema");
    let job_file = Command::new(BIN).arg("schema").output().unwrap();
    assert_ne!(
        job_file.stdout, out.stdout,
        "plain `runner schema` stays the job file's"
    );
}

/// Every way a task can end, retries, items with fields, a queue, a resource to wait
/// for, sources and outputs (up to date, cached, unchanged), logs.
const EVERYTHING: &str = r#"pool = 4
[vars]
who = "nobody"

[resources]
lock = 1

[jobs.build]
command = "cp src.txt out.txt"
sources = ["src.txt"]
outputs = ["out.txt"]

[jobs.matrix]
command = "echo {item.os} {vars.who}"
items = { matrix = { os = ["linux", "mac"] } }

[jobs.held]
command = "sleep 0.2"
items = ["a", "b"]
uses = { lock = 1 }

[jobs.flaky]
command = "echo only on stdout; exit 3"
retries = 1
retry_delay = "10ms"

[jobs.noisy]
command = "echo on stderr >&2; exit 1"
allow_failure = true

[jobs.killed]
command = "kill -9 $$"

[jobs.slow]
command = "sleep 5"
timeout = "200ms"

[jobs.missing]
command = ["no-such-program-for-runner-tests"]

[jobs.after]
command = "true"
needs = ["killed"]

[jobs.produce]
command = "seq 3"
to = "numbers"

[jobs.consume]
command = "echo {item}"
items = { queue = "numbers" }

[jobs.long]
command = "touch long.started; sleep 30"
"#;

fn read(t: &Test, name: &str) -> Value {
    let text = t.read(name);
    let report: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} is not JSON ({e}): {text}"));
    assert_report_fits(&report, &t.path(name));
    report
}

/// The reports of runs that between them give every key a value: failures, retries,
/// skipped, cached, up to date, done earlier, unchanged, a queue, a resource's waits,
/// the cache, an interrupted run, and (with the feature) a task a worker ran.
fn reports() -> Vec<Value> {
    let t = Test::new(EVERYTHING);
    t.write("src.txt", "source\n");
    let mut reports = Vec::new();
    let everything = [
        "build", "matrix", "held", "flaky", "noisy", "killed", "slow", "missing", "after",
        "produce", "consume",
    ];
    let mut first = vec![
        "--set", "who=me", "--logs", "logs", "--cache", "cache", "--report", "r1.json",
    ];
    first.extend(everything);
    t.run_with(&[&["run", "jobs.toml"], &first[..]].concat())
        .assert_code(1);
    reports.push(read(&t, "r1.json"));
    // Another state folder: no stamps, so `build` is looked up in the cache.
    t.run_with(&[
        "run",
        "jobs.toml",
        "build",
        "--state",
        "other",
        "--cache",
        "cache",
        "--report",
        "r2.json",
        "--set",
        "who=me",
    ])
    .assert_code(0);
    reports.push(read(&t, "r2.json"));
    // The same state: `build` up to date, what succeeded done earlier.
    let mut again = vec![
        "run",
        "jobs.toml",
        "--resume",
        "--set",
        "who=me",
        "--report",
        "r3.json",
    ];
    again.extend(everything);
    t.run_with(&again).assert_code(1);
    reports.push(read(&t, "r3.json"));
    // Without --resume: `build`'s sources and output as it left them, up to date.
    t.run_with(&[
        "run",
        "jobs.toml",
        "build",
        "--set",
        "who=me",
        "--report",
        "r3b.json",
    ])
    .assert_code(0);
    reports.push(read(&t, "r3b.json"));
    // A repository where nothing changed since HEAD: `build` unchanged.
    let dir = t.path("");
    t.write(
        ".gitignore",
        ".runner/\nother/\ncache/\nlogs/\n*.json\nout.txt\n",
    );
    crate::changed::git(&dir, &["init", "-q"]);
    crate::changed::git(&dir, &["add", "-A"]);
    crate::changed::git(&dir, &["commit", "-q", "-m", "base"]);
    t.run_with(&[
        "run",
        "jobs.toml",
        "build",
        "--changed-since",
        "HEAD",
        "--report",
        "r4.json",
        "--set",
        "who=me",
    ])
    .assert_code(0);
    reports.push(read(&t, "r4.json"));
    reports.push(interrupted(&t));
    reports.push(services());
    #[cfg(feature = "distributed")]
    reports.push(on_a_worker());
    reports
}

/// Services: one ready by a line and released, one never ready (its problem said).
fn services() -> Value {
    let t = Test::new(
        "[jobs.up]\nservice = true\ncommand = 'echo listening; sleep 30'\nready = { line = 'listening' }\n\
         [jobs.use]\ncommand = 'true'\nneeds = ['up']\n\
         [jobs.down]\nservice = true\ncommand = 'sleep 30'\nready = { command = 'false' }\nready_timeout = '1s'\n\
         [jobs.use2]\ncommand = 'true'\nneeds = ['down']\n",
    );
    t.run_with(&["run", "jobs.toml", "--report", "r6.json"])
        .assert_code(1);
    read(&t, "r6.json")
}

/// A run stopped by SIGTERM while `long` runs.
fn interrupted(t: &Test) -> Value {
    let mut child = t
        .command()
        .args(["long", "--report", "r5.json"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        wait_for(Duration::from_secs(20), || t.path("long.started").exists()),
        "the long task never started"
    );
    // SAFETY: signalling the runner this test started, by its pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(
        crate::distributed::wait_child(&mut child, Duration::from_secs(20)),
        Some(143)
    );
    read(t, "r5.json")
}

#[cfg(feature = "distributed")]
fn on_a_worker() -> Value {
    use crate::distributed::{Redis, Worker};
    let redis = Redis::start(&[]);
    let t = Test::new("[jobs.fan]\ncommand = 'echo {item}'\nitems = ['a', 'b']\n");
    let worker = Worker::start(
        &t,
        "jobs.toml",
        &redis.url(),
        &["--pool", "2", "--label", "fast"],
        &[],
    );
    t.run_with(&[
        "run",
        "jobs.toml",
        "--broker",
        &redis.url(),
        "--no-local",
        "--report",
        "r.json",
    ])
    .assert_code(0);
    drop(worker);
    read(&t, "r.json")
}

/// Where the schema lists keys: `run.host`, `tasks[].tries[].signal`, …, and the values
/// an `enum` allows there.
fn schema_keys(root: &Value, node: &Value, at: &str, keys: &mut BTreeMap<String, Vec<String>>) {
    if let Some(Value::String(pointer)) = node.get("$ref") {
        let target = root
            .pointer(pointer.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("{at}: $ref {pointer} leads nowhere"));
        schema_keys(root, target, at, keys);
    }
    if let Some(Value::Array(choices)) = node.get("anyOf") {
        for choice in choices {
            schema_keys(root, choice, at, keys);
        }
    }
    if let Some(Value::Array(values)) = node.get("enum") {
        let values = values.iter().filter_map(Value::as_str).map(String::from);
        keys.entry(at.to_string()).or_default().extend(values);
    }
    if let Some(Value::Object(properties)) = node.get("properties") {
        for (name, property) in properties {
            let key = if at.is_empty() {
                name.clone()
            } else {
                format!("{at}.{name}")
            };
            keys.entry(key.clone()).or_default();
            schema_keys(root, property, &key, keys);
        }
    }
    if let Some(items) = node.get("items") {
        schema_keys(root, items, &format!("{at}[]"), keys);
    }
}

/// The keys a report gives a value (not null, false, [] or {}), and the strings seen.
fn given(value: &Value, at: &str, seen: &mut BTreeMap<String, BTreeSet<String>>) {
    match value {
        Value::Object(map) => {
            for (name, v) in map {
                let key = if at.is_empty() {
                    name.clone()
                } else {
                    format!("{at}.{name}")
                };
                let empty = match v {
                    Value::Null | Value::Bool(false) => true,
                    Value::Array(a) => a.is_empty(),
                    Value::Object(o) => o.is_empty(),
                    _ => false,
                };
                if !empty {
                    let entry = seen.entry(key.clone()).or_default();
                    if let Value::String(s) = v {
                        entry.insert(s.clone());
                    }
                }
                given(v, &key, seen);
            }
        }
        Value::Array(items) => items
            .iter()
            .for_each(|v| given(v, &format!("{at}[]"), seen)),
        _ => {}
    }
}

/// The other direction: no key the schema lists that no report ever gives a value, and
/// no status it allows that no task had.
#[test]
fn every_key_of_the_report_schema_gets_a_value_in_some_run() {
    let text = std::fs::read_to_string(root().join("docs/runner-report.schema.json")).unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    let mut keys = BTreeMap::new();
    schema_keys(&schema, &schema, "", &mut keys);
    assert!(keys.contains_key("tasks[].tries[].signal"), "{keys:?}");
    let mut seen = BTreeMap::new();
    for report in reports() {
        given(&report, "", &mut seen);
    }
    let mut missing = Vec::new();
    for (key, values) in &keys {
        match seen.get(key) {
            None => missing.push(format!(
                "  {key}: never given a value (not null, false, [] or {{}})"
            )),
            Some(found) => {
                for value in values.iter().filter(|v| !found.contains(*v)) {
                    missing.push(format!("  {key}: never {value:?}"));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/runner-report.schema.json documents what no run of this test wrote (make a run here write it, or take it out of the schema):\n{}",
        missing.join("\n")
    );
}

/// The check `util::Test` makes of every report is not blind: a key the schema does not
/// list is named, with its place.
#[test]
fn a_report_with_a_key_the_schema_lacks_is_refused_naming_it() {
    let t = Test::new("[jobs.a]\ncommand = 'true'\n").args(&["--report", "r.json"]);
    t.run().assert_code(0);
    let mut report: Value = serde_json::from_str(&t.read("r.json")).unwrap();
    report["tasks"][0]["surprise"] = Value::Bool(true);
    let path = t.path("r.json");
    let failure = std::panic::catch_unwind(|| assert_report_fits(&report, &path)).unwrap_err();
    let message = failure.downcast_ref::<String>().unwrap();
    assert!(
        message.contains("at /tasks/0") && message.contains("surprise"),
        "{message}"
    );
}
