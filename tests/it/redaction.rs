//! Declared secrets (`[secrets]`, a job's `secrets`): resolved at start (a failure is
//! exit 2 naming the secret and the cause, never the value), given only to the jobs that
//! name them, and never in anything the runner writes: every byte of a run (stdout,
//! stderr, every file it left) is searched for the value.

use crate::util::{wait_for, Test};
use std::path::Path;
use std::time::Duration;

const VALUE: &str = "tok-5ecr3t-9f8e7d";

/// Every file under `dir` (state folder, reports, logs) that holds `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in walk(dir) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        if bytes.windows(needle.len()).any(|w| w == needle) {
            found.push(entry.display().to_string());
        }
    }
    found
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[track_caller]
fn assert_absent(what: &str, text: &str) {
    assert!(!text.contains(VALUE), "{what} shows the secret:\n{text}");
}

/// A failing task printing the secret on stdout and stderr, a producer whose queue line
/// (the secret) becomes a consumer's label, with every report, the logs, the trace, in
/// GitHub Actions with a step summary: nothing holds the value but the one
/// `::add-mask::` line GitHub reads.
#[test]
fn no_byte_of_a_run_holds_the_secret() {
    let t = Test::new(
        "[secrets]\nTOKEN = { env = \"SRC_TOKEN\" }\n\
         [jobs.leak]\ncommand = 'echo \"out: $TOKEN\"; echo \"err: $TOKEN\" >&2; exit 3'\n\
         items = ['a']\nsecrets = ['TOKEN']\n\
         [jobs.produce]\ncommand = 'echo \"$TOKEN\"'\nsecrets = ['TOKEN']\nto = 'q'\n\
         [jobs.consume]\ncommand = 'echo \"got $RUNNER_ITEM\"; exit 1'\nitems = { queue = 'q' }\n",
    );
    let summary = t.path("summary.md");
    let t = t
        .env("SRC_TOKEN", VALUE)
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", summary.to_str().unwrap())
        .args(&[
            "--report",
            "report.json",
            "--junit",
            "junit.xml",
            "--html",
            "page.html",
            "--trace",
            "trace.json",
            "--logs",
            "logs",
        ]);
    let out = t.run();
    out.assert_code(1);
    // GitHub is told to mask it, once, before any task's output.
    let masks: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("::add-mask::"))
        .collect();
    assert_eq!(masks, [format!("::add-mask::{VALUE}")], "{}", out.stdout);
    assert!(out.stdout.starts_with("::add-mask::"), "{}", out.stdout);
    let rest: String = out
        .stdout
        .lines()
        .filter(|l| !l.starts_with("::add-mask::"))
        .collect::<Vec<_>>()
        .join("\n");
    assert_absent("stdout", &rest);
    assert_absent("stderr", &out.stderr);
    assert!(rest.contains("out: ***"), "{rest}");
    assert!(
        rest.contains("err: ***") || out.stderr.contains("err: ***"),
        "{rest}\n{}",
        out.stderr
    );
    assert!(
        rest.contains("got ***"),
        "the consumer got the redacted line: {rest}"
    );
    assert!(
        out.stderr.contains("consume:***"),
        "its label: {}",
        out.stderr
    );
    for file in [
        "report.json",
        "junit.xml",
        "page.html",
        "trace.json",
        "summary.md",
        "logs/leak.0.stdout",
        "logs/leak.0.stderr",
    ] {
        assert!(!t.read(file).is_empty(), "{file} was written");
    }
    assert!(
        t.read("junit.xml").contains("err: ***"),
        "{}",
        t.read("junit.xml")
    );
    assert!(t.path(".runner").is_dir());
    assert_eq!(
        files_holding(t.dir.path(), VALUE.as_bytes()),
        Vec::<String>::new()
    );
}

/// A value split across two reads of the pipe: the task prints its first half, waits
/// until the runner has passed on the line before it (it is in the log), then the rest.
#[test]
fn a_value_split_across_two_reads_is_redacted() {
    let (head, tail) = VALUE.split_at(7);
    let t = Test::new(&format!(
        "[secrets]\nTOKEN = {{ env = \"SRC_TOKEN\" }}\n\
         [jobs.split]\ncommand = 'printf \"first\\n{head}\"; while [ ! -e go ]; do sleep 0.01; done; printf \"{tail} end\\n\"'\n\
         secrets = ['TOKEN']\n"
    ))
    .env("SRC_TOKEN", VALUE)
    .args(&["--logs", "logs"]);
    let child = t.spawn();
    let first = wait_for(Duration::from_secs(10), || {
        t.read("logs/split.0.stdout").contains("first\n")
    });
    assert!(
        first,
        "the first line was passed on while the value's head waits"
    );
    assert!(
        !t.read("logs/split.0.stdout").contains(head),
        "the head is held back"
    );
    t.write("go", "");
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stdout.contains("[split] first\n[split] *** end\n"),
        "{stdout}"
    );
    assert_eq!(t.read("logs/split.0.stdout"), "first\n*** end\n");
}

/// Inside a line of 200 KB (past the 64 KiB a line is held in memory), and in a log.
#[test]
fn a_value_inside_a_200_kb_line_is_redacted() {
    let t = Test::new(
        "[secrets]\nTOKEN = { env = \"SRC_TOKEN\" }\n\
         [jobs.long]\ncommand = 'head -c 100000 /dev/zero | tr \"\\\\0\" x; printf %s \"$TOKEN\"; head -c 100000 /dev/zero | tr \"\\\\0\" y; echo'\n\
         secrets = ['TOKEN']\n",
    )
    .env("SRC_TOKEN", VALUE)
    .args(&["--logs", "logs"]);
    let out = t.run();
    out.assert_code(0);
    assert_absent("stdout", &out.stdout);
    let line = out.lines_of("long").concat();
    assert_eq!(
        line,
        format!("{}***{}", "x".repeat(100_000), "y".repeat(100_000))
    );
    assert_absent("the log", &t.read("logs/long.0.stdout"));
}

/// Grouped and keep-order output (held back, then printed whole), unlabelled output and
/// GitLab's sections are redacted too; a failing task's tail in the summary as well.
#[test]
fn every_output_mode_is_redacted() {
    let cases: [(&str, &[&str], Option<&str>); 4] = [
        ("grouped", &["--output", "grouped"], None),
        ("keep-order", &["--output", "keep-order"], None),
        ("no label", &["--no-label"], None),
        ("GitLab", &[], Some("GITLAB_CI")),
    ];
    for (what, args, ci) in cases {
        let t = Test::new(
            "[secrets]\nTOKEN = { env = \"SRC_TOKEN\" }\n\
             [jobs.g]\ncommand = 'echo {item} \"$TOKEN\"; echo {item} \"$TOKEN\" >&2; [ {item} != c ]'\n\
             items = ['a', 'b', 'c']\nsecrets = ['TOKEN']\n",
        )
        .env("SRC_TOKEN", VALUE)
        .args(args);
        let t = match ci {
            Some(var) => t.env(var, "true"),
            None => t,
        };
        let out = t.run();
        out.assert_code(1);
        assert_absent(what, &out.stdout);
        assert_absent(what, &out.stderr);
        if what == "no label" {
            assert!(
                out.stdout.lines().any(|l| l == "b ***"),
                "{what}: {}",
                out.stdout
            );
        } else {
            assert!(
                out.stdout.contains("[g:b] b ***\n"),
                "{what}: {}",
                out.stdout
            );
        }
        // The summary's tail of the failed task.
        assert!(out.stderr.contains("| c ***"), "{what}: {}", out.stderr);
    }
}

/// Only the jobs naming a secret get it, under its own name; the variable it was read
/// from reaches no task.
#[test]
fn only_the_jobs_naming_a_secret_see_it() {
    let t = Test::new(
        "[secrets]\nTOKEN = { env = \"SRC_TOKEN\" }\n\
         [jobs.with]\ncommand = 'env > with.env'\nsecrets = ['TOKEN']\n\
         [jobs.without]\ncommand = 'env > without.env'\n",
    )
    .env("SRC_TOKEN", VALUE);
    t.run().assert_code(0);
    let with = t.read("with.env");
    assert!(
        with.lines().any(|l| l == format!("TOKEN={VALUE}")),
        "{with}"
    );
    assert!(!with.contains("SRC_TOKEN"), "{with}");
    let without = t.read("without.env");
    assert!(without.contains("RUNNER_JOB=without"), "{without}");
    assert!(!without.contains(VALUE), "{without}");
}

/// Each way a secret cannot be resolved: exit 2 before anything runs, the message names
/// the secret and the cause.
#[test]
fn a_secret_that_cannot_be_resolved_stops_the_run_before_it_starts() {
    let cases = [
        (
            "{ env = \"NOT_SET_ANYWHERE\" }",
            "secret `S`: the environment variable NOT_SET_ANYWHERE is not set",
        ),
        (
            "{ file = \"missing.txt\" }",
            "secret `S`: cannot read the file ./missing.txt: No such file or directory",
        ),
        (
            "{ command = \"exit 3\" }",
            "secret `S`: the command `sh -c exit 3` failed (exit status: 3)",
        ),
        (
            "{ command = [\"true\"] }",
            "secret `S`: what the command `true` printed is empty",
        ),
        (
            "{ command = \"printf q7z\" }",
            "secret `S`: the value has 3 characters; a secret needs at least 4",
        ),
        (
            "{ env = \"EMPTY_ONE\" }",
            "secret `S`: the environment variable EMPTY_ONE is empty",
        ),
    ];
    for (source, message) in cases {
        let t = Test::new(&format!(
            "[secrets]\nS = {source}\n[jobs.a]\ncommand = 'touch ran'\nsecrets = ['S']\n"
        ))
        .env("EMPTY_ONE", "");
        let out = t.run();
        out.assert_code(2).assert_stderr_has(message);
        assert!(!out.stderr.contains("q7z"), "{}", out.stderr);
        assert!(!t.path("ran").exists(), "{source}: nothing ran");
        // `runner plan` resolves them too.
        t.run_with(&["plan", "jobs.toml"])
            .assert_code(2)
            .assert_stderr_has(message);
    }
}

/// Only the secrets of the selected jobs are resolved; a name no secret has is a load
/// error with a suggestion.
#[test]
fn only_selected_jobs_secrets_are_resolved_and_names_are_checked() {
    let t = Test::new(
        "[secrets]\nDEPLOY_KEY = { env = \"NOT_SET_ANYWHERE\" }\n\
         [jobs.build]\ncommand = 'touch built'\n\
         [jobs.deploy]\ncommand = 'true'\nsecrets = ['DEPLOY_KEY']\n",
    );
    t.run_with(&["run", "jobs.toml", "build"]).assert_code(0);
    assert!(t.path("built").exists());
    t.run()
        .assert_code(2)
        .assert_stderr_has("secret `DEPLOY_KEY`");
    let t = Test::new(
        "[secrets]\nDEPLOY_KEY = { env = \"X\" }\n[jobs.a]\ncommand = 'true'\nsecrets = ['DEPLOY_KEYS']\n",
    );
    t.run()
        .assert_code(2)
        .assert_stderr_has("unknown secret `DEPLOY_KEYS`")
        .assert_stderr_has("did you mean `DEPLOY_KEY`?");
}

/// Buildkite's lesson: exact occurrences only. A secret `LIVE` makes `DELIVERY`
/// `DE***RY` (exact-substring redaction, documented); the 4-character minimum is what
/// keeps short values from eating ordinary text.
#[test]
fn only_exact_occurrences_are_redacted() {
    let t = Test::new(
        "[secrets]\nW = { command = \"echo LIVE\" }\n\
         [jobs.a]\ncommand = 'echo \"DELIVERY $W live Live\"'\nsecrets = ['W']\n",
    );
    let out = t.run();
    out.assert_code(0);
    assert_eq!(out.lines_of("a"), ["DE***RY *** live Live"]);
}

/// A secret is not part of a task's identity: another value does not rerun an
/// up-to-date task.
#[test]
fn rotating_a_secret_does_not_rerun_an_up_to_date_task() {
    let t = Test::new(
        "[secrets]\nTOKEN = { file = \"token.txt\" }\n\
         [jobs.a]\ncommand = 'cat in.txt > out.txt; echo ran'\nsecrets = ['TOKEN']\n\
         sources = ['in.txt']\noutputs = ['out.txt']\n",
    );
    t.write("in.txt", "data\n")
        .write("token.txt", "first-value\n");
    let out = t.run();
    out.assert_code(0);
    assert_eq!(out.lines_of("a"), ["ran"]);
    t.write("token.txt", "second-value\n");
    let out = t.run();
    out.assert_code(0);
    assert!(out.lines_of("a").is_empty(), "{}", out.stdout);
    assert!(out.stderr.contains("up to date"), "{}", out.stderr);
}

/// `runner plan`, error messages and the reports show `***` for a value an item of the
/// job file holds.
#[test]
fn the_plan_and_messages_are_redacted() {
    let t = Test::new(&format!(
        "[secrets]\nTOKEN = {{ env = \"SRC_TOKEN\" }}\n\
         [jobs.a]\ncommand = ['./missing-program-{{item}}']\nitems = ['{VALUE}']\nsecrets = ['TOKEN']\n"
    ))
    .env("SRC_TOKEN", VALUE);
    for json in [false, true] {
        let out = if json {
            t.run_with(&["plan", "jobs.toml", "--json"])
        } else {
            t.run_with(&["plan", "jobs.toml"])
        };
        out.assert_code(0);
        assert_absent("the plan", &out.stdout);
        assert!(out.stdout.contains("missing-program-***"), "{}", out.stdout);
    }
    let out = t.run_with(&[
        "run",
        "jobs.toml",
        "--report",
        "r.json",
        "--junit",
        "j.xml",
        "--html",
        "p.html",
        "--trace",
        "t.json",
        "--logs",
        "logs",
    ]);
    out.assert_code(1);
    assert_absent("stdout", &out.stdout);
    assert_absent("stderr", &out.stderr);
    assert!(out.stderr.contains("a:***"), "{}", out.stderr);
    assert!(
        t.read("r.json").contains("\"item\":\"***\""),
        "{}",
        t.read("r.json")
    );
    // Only the job file, where the item is written, holds it.
    let holding = files_holding(t.dir.path(), VALUE.as_bytes());
    assert_eq!(holding, [t.path("jobs.toml").display().to_string()]);
}

/// A distributed run: the worker resolves the secret from its own environment, its
/// tasks print it; the producer (a stream job) runs in the coordinator's own share with
/// the coordinator's; neither what went through Redis (every command, seen with
/// MONITOR, and every key left, dumped) nor what the coordinator and the worker printed
/// holds the value.
#[test]
fn a_worker_resolves_its_own_and_nothing_in_redis_holds_the_value() {
    use crate::distributed::{stderr_of, Redis, Worker};
    let redis = Redis::start(&["--rdbcompression", "no"]);
    let mut monitor = std::process::Command::new("redis-cli")
        .args(["-p", &redis.port.to_string(), "monitor"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let seen = crate::util::Collected::start(monitor.stdout.take().unwrap());
    assert!(
        seen.wait_for(Duration::from_secs(10), "OK"),
        "MONITOR started"
    );
    let t = Test::new(
        "[secrets]\nTOKEN = { env = \"SRC_TOKEN\" }\n\
         [jobs.leak]\ncommand = 'echo out {item} \"$TOKEN\"; echo err {item} \"$TOKEN\" >&2; exit 1'\n\
         items = [1, 2]\nsecrets = ['TOKEN']\n\
         [jobs.produce]\ncommand = 'echo \"$TOKEN\"'\nsecrets = ['TOKEN']\nto = 'q'\n\
         [jobs.consume]\ncommand = 'echo \"got $RUNNER_ITEM\"'\nitems = { queue = 'q' }\n",
    )
    .args(&["--broker", &redis.url(), "--no-local", "--report", "report.json"])
    .env("SRC_TOKEN", VALUE);
    let mut w = Worker::start(
        &t,
        "jobs.toml",
        &redis.url(),
        &["--pool", "2"],
        &[("SRC_TOKEN", VALUE)],
    );
    let out = t.run();
    out.assert_code(1);
    assert_absent("the coordinator's stdout", &out.stdout);
    assert_absent("the coordinator's stderr", &out.stderr);
    // Resolved by the worker (the task ran there), redacted there.
    assert!(out.stderr.contains("err 1 ***"), "{}", out.stderr);
    // The producer ran in the coordinator's own share: its line, redacted, is a label.
    assert!(out.stderr.contains("consume:***"), "{}", out.stderr);
    // Every key left, dumped whole (uncompressed), and every command Redis was sent.
    let keys = redis.cli(&["--scan"]);
    assert!(!keys.trim().is_empty(), "the run left keys");
    for key in keys.lines() {
        let dumped = std::process::Command::new("redis-cli")
            .args(["-p", &redis.port.to_string(), "--no-raw", "DUMP", key])
            .output()
            .unwrap()
            .stdout;
        assert!(
            !dumped.windows(VALUE.len()).any(|w| w == VALUE.as_bytes()),
            "key {key} holds the secret"
        );
    }
    let _ = monitor.kill();
    let _ = monitor.wait();
    let sent = seen.finish();
    assert!(sent.contains("***"), "the tasks' output went through Redis");
    assert_absent("a command sent to Redis", &sent);
    assert_absent("the report", &t.read("report.json"));
    w.signal(libc::SIGKILL);
    let _ = w.0.wait();
    let err = stderr_of(&mut w.0);
    assert_absent("the worker's stderr", &err);
}

/// With `--no-local`, a coordinator needs no secret of the jobs only workers run.
#[test]
fn a_coordinator_without_the_secret_leaves_it_to_its_workers() {
    use crate::distributed::{Redis, Worker};
    let redis = Redis::start(&[]);
    let t = Test::new(
        "[secrets]\nTOKEN = { env = \"SRC_TOKEN\" }\n\
         [jobs.leak]\ncommand = 'echo err {item} \"$TOKEN\" >&2; exit 1'\n\
         items = [1]\nsecrets = ['TOKEN']\n",
    )
    .args(&["--broker", &redis.url(), "--no-local"]);
    let _w = Worker::start(&t, "jobs.toml", &redis.url(), &[], &[("SRC_TOKEN", VALUE)]);
    let out = t.run();
    out.assert_code(1).assert_stderr_has("err 1 ***");
    assert_absent("stderr", &out.stderr);
}

/// The heartbeat quotes a running task's last line: redacted.
#[test]
fn the_heartbeats_last_line_is_redacted() {
    let t = Test::new(
        "[secrets]\nTOKEN = { env = \"SRC_TOKEN\" }\n\
         [jobs.hb]\ncommand = 'echo \"hb $TOKEN\"; while [ ! -e go ]; do sleep 0.01; done'\n\
         secrets = ['TOKEN']\n",
    )
    .env("SRC_TOKEN", VALUE)
    .env("RUNNER_HEARTBEAT", "100ms");
    let mut child = t.spawn();
    let stdout = crate::util::Collected::start(child.stdout.take().unwrap());
    let stderr = crate::util::Collected::start(child.stderr.take().unwrap());
    // On stderr only the heartbeat quotes what the task printed on stdout.
    let quoted = stderr.wait_for(Duration::from_secs(10), "hb ***");
    t.write("go", "");
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let (stdout, stderr) = (stdout.finish(), stderr.finish());
    assert!(quoted, "{stderr}");
    assert_absent("stdout", &stdout);
    assert_absent("stderr", &stderr);
}
