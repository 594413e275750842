//! The results cache in a run (issue 24): `--cache DIR` with the folder store, two
//! copies of one project in two folders. What a test looks at is what a user would:
//! which processes ran (each command appends to a log outside both projects), the
//! files left, the exit status, the lines printed, and the reports.

use crate::util::Test;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Two items converted one file each, and a tool built from their outputs.
const PROJECT: &str = r#"
[jobs.build]
items = ["a", "b"]
command = "echo ran build {item} >> \"$LOG\"; mkdir -p out; tr a-z A-Z < in/{item}.txt > out/{item}.txt; echo printed {item}; echo warned {item} >&2"
sources = ["in/{item}.txt"]
outputs = ["out/{item}.txt"]

[jobs.tool]
needs = ["build"]
command = "echo ran tool >> \"$LOG\"; mkdir -p bin; cat out/*.txt > bin/tool.txt; printf '#!/bin/sh\\necho hi\\n' > bin/tool; chmod 755 bin/tool"
sources = ["out/*.txt"]
outputs = ["bin/tool", "bin/tool.txt"]
"#;

/// The store and the log, outside every project.
struct Place {
    dir: tempfile::TempDir,
}

impl Place {
    fn new() -> Place {
        Place {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn store(&self) -> String {
        self.dir.path().join("store").display().to_string()
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("ran.log")
    }

    /// What ran since the last call (the log is emptied).
    fn ran(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.log()).unwrap_or_default();
        let _ = std::fs::remove_file(self.log());
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        lines.sort();
        lines
    }

    /// Every file under the store's `sub` (`ac`, `cas`, `tmp`).
    fn files(&self, sub: &str) -> Vec<PathBuf> {
        let mut found = Vec::new();
        walk(&self.dir.path().join("store").join(sub), &mut found);
        found
    }

    /// A copy of the project, its log the place's.
    fn project(&self, jobs: &str) -> Test {
        let t = Test::new(jobs).env("LOG", &self.log().display().to_string());
        t.write("in/a.txt", "alpha\n").write("in/b.txt", "beta\n");
        t
    }
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, found);
        } else {
            found.push(path);
        }
    }
}

/// Runs `runner run jobs.toml --cache STORE --report report.json ARGS…` in `t`.
fn run(t: &Test, place: &Place, args: &[&str]) -> crate::util::Output {
    let store = place.store();
    let mut all = vec![
        "run",
        "jobs.toml",
        "--cache",
        &store,
        "--report",
        "report.json",
    ];
    all.extend(args);
    t.run_with(&all)
}

/// Each task's (label, status, reason) from the JSON report, and the report's `cache`.
fn report(t: &Test) -> (Vec<(String, String, String)>, Value) {
    let report: Value = serde_json::from_str(&t.read("report.json")).unwrap();
    let tasks = report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|task| {
            let job = task["job"].as_str().unwrap();
            let label = match task["item"].as_str() {
                Some("") | None => job.to_string(),
                Some(item) => format!("{job}:{item}"),
            };
            (
                label,
                task["status"].as_str().unwrap().to_string(),
                task["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (tasks, report["cache"].clone())
}

fn statuses(t: &Test) -> Vec<(String, String)> {
    report(t).0.into_iter().map(|(l, s, _)| (l, s)).collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

/// Files left behind by a restore that is not whole: temporary names in `dir`.
fn temporaries(t: &Test) -> Vec<PathBuf> {
    let mut found = Vec::new();
    walk(t.dir.path(), &mut found);
    found.retain(|p| p.to_string_lossy().contains(".runner-cache-"));
    found
}

#[test]
fn a_second_copy_restores_everything_byte_for_byte_and_runs_nothing() {
    let place = Place::new();
    let first = place.project(PROJECT);
    run(&first, &place, &[]).assert_code(0);
    assert_eq!(place.ran(), ["ran build a", "ran build b", "ran tool"]);
    let (_, cache) = report(&first);
    assert_eq!(cache["stored"], 3, "{cache}");
    assert_eq!(cache["restored"], 0, "{cache}");

    let second = place.project(PROJECT);
    let out = run(
        &second,
        &place,
        &[
            "--junit",
            "junit.xml",
            "--trace",
            "trace.json",
            "--html",
            "run.html",
        ],
    );
    out.assert_code(0);
    assert!(place.ran().is_empty(), "no task may run");
    for file in ["out/a.txt", "out/b.txt", "bin/tool", "bin/tool.txt"] {
        assert_eq!(
            std::fs::read(second.path(file)).unwrap(),
            std::fs::read(first.path(file)).unwrap(),
            "{file}"
        );
    }
    assert_eq!(second.read("out/a.txt"), "ALPHA\n");
    // The executable bit survives; a plain file is not made executable.
    let mode = |f: &str| {
        std::fs::metadata(second.path(f))
            .unwrap()
            .permissions()
            .mode()
    };
    assert_eq!(mode("bin/tool") & 0o111, 0o111);
    assert_eq!(mode("out/a.txt") & 0o111, 0);
    // What the tasks printed is replayed, labelled as usual.
    assert_eq!(out.lines_of("build:a"), ["printed a"]);
    out.assert_stderr_has("[build:b] warned b");
    // Status `cached` everywhere, with where it came from.
    let (tasks, cache) = report(&second);
    let reason = format!("restored from cache (stored by {} at ", hostname());
    for (label, status, why) in &tasks {
        assert_eq!(status, "cached", "{label}");
        assert!(why.starts_with(&reason), "{label}: {why}");
    }
    assert_eq!(tasks.len(), 3);
    assert_eq!(cache["restored"], 3, "{cache}");
    assert_eq!(cache["stored"], 0, "{cache}");
    assert!(cache["restored_bytes"].as_u64().unwrap() > 0);
    out.assert_stderr_has("cache: 3 restored (");
    let summary_row = out
        .stderr
        .lines()
        .find(|l| l.starts_with("job "))
        .unwrap_or_default();
    assert!(summary_row.contains("cached"), "{}", out.stderr);
    let junit = second.read("junit.xml");
    assert!(!junit.contains("<failure"), "{junit}");
    assert!(!junit.contains("<skipped"), "{junit}");
    assert!(junit.contains(&reason), "{junit}");
    let trace: Value = serde_json::from_str(&second.read("trace.json")).unwrap();
    let outcomes: Vec<&str> = trace["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["ph"] == "X")
        .map(|e| e["args"]["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["cached"; 3]);
    assert!(second.read("run.html").contains("cached"));
    // `runner report` reads a report with cached tasks back.
    second
        .run_with(&["report", "report.json", "--html", "again.html"])
        .assert_code(0);
    assert!(second.read("again.html").contains("cached"));
    assert!(temporaries(&second).is_empty());

    // The next run here is up to date without the cache.
    let out = second.run_with(&["run", "jobs.toml", "--report", "report.json"]);
    out.assert_code(0);
    assert!(place.ran().is_empty());
    assert_eq!(
        statuses(&second),
        pairs(&[
            ("build:a", "up_to_date"),
            ("build:b", "up_to_date"),
            ("tool", "up_to_date")
        ])
    );
}

#[test]
fn one_changed_source_misses_only_its_task_and_what_reads_its_output() {
    let place = Place::new();
    run(&place.project(PROJECT), &place, &[]).assert_code(0);
    place.ran();
    let second = place.project(PROJECT);
    second.write("in/b.txt", "changed\n");
    run(&second, &place, &[]).assert_code(0);
    // build:b read another file; tool reads build:b's output, which changed with it.
    assert_eq!(place.ran(), ["ran build b", "ran tool"]);
    assert_eq!(
        statuses(&second),
        pairs(&[
            ("build:a", "cached"),
            ("build:b", "succeeded"),
            ("tool", "succeeded")
        ])
    );
    assert_eq!(second.read("out/b.txt"), "CHANGED\n");
}

#[test]
fn read_mode_writes_nothing_and_write_mode_restores_nothing() {
    let place = Place::new();
    let first = place.project(PROJECT);
    run(&first, &place, &["--cache-mode", "read"]).assert_code(0);
    assert_eq!(place.ran().len(), 3);
    assert!(place.files("ac").is_empty() && place.files("cas").is_empty());

    run(&first, &place, &["--force"]).assert_code(0);
    place.ran();
    let second = place.project(PROJECT);
    run(&second, &place, &["--cache-mode", "write"]).assert_code(0);
    assert_eq!(place.ran(), ["ran build a", "ran build b", "ran tool"]);
    let (_, cache) = report(&second);
    assert_eq!(cache["restored"], 0, "{cache}");
}

#[test]
fn a_damaged_store_gives_misses_a_warning_and_right_files() {
    let place = Place::new();
    run(&place.project(PROJECT), &place, &[]).assert_code(0);
    place.ran();
    let blobs = place.files("cas");
    assert!(!blobs.is_empty());
    for blob in &blobs {
        let size = std::fs::metadata(blob).unwrap().len() as usize;
        // Other bytes: of the same size, and of another.
        std::fs::write(blob, "x".repeat(size.max(1))).unwrap();
    }
    std::fs::write(&blobs[0], "short").unwrap();
    let second = place.project(PROJECT);
    let out = run(&second, &place, &[]);
    out.assert_code(0);
    assert_eq!(place.ran(), ["ran build a", "ran build b", "ran tool"]);
    out.assert_stderr_has("not restored from the cache");
    assert_eq!(second.read("out/a.txt"), "ALPHA\n");
    assert_eq!(second.read("out/b.txt"), "BETA\n");
    assert_eq!(second.read("bin/tool.txt"), "ALPHA\nBETA\n");
    assert!(
        temporaries(&second).is_empty(),
        "{:?}",
        temporaries(&second)
    );
    let (tasks, cache) = report(&second);
    assert!(tasks.iter().all(|(_, s, _)| s == "succeeded"), "{tasks:?}");
    assert_eq!(cache["missed"], 3, "{cache}");
    out.assert_stderr_has("3 missed");
}

#[test]
fn entries_signed_with_another_key_or_unsigned_are_not_restored() {
    let place = Place::new();
    let first = place.project(PROJECT).env("RUNNER_CACHE_KEY", "secret one");
    run(&first, &place, &[]).assert_code(0);
    place.ran();
    let second = place.project(PROJECT).env("RUNNER_CACHE_KEY", "secret two");
    let out = run(&second, &place, &["--cache-mode", "read"]);
    out.assert_code(0);
    assert_eq!(place.ran().len(), 3);
    out.assert_stderr_has("signature is wrong");
    out.assert_stderr_has("3 ignored");
    assert_eq!(report(&second).1["ignored"], 3);
    // The right key restores.
    let third = place.project(PROJECT).env("RUNNER_CACHE_KEY", "secret one");
    run(&third, &place, &[]).assert_code(0);
    assert!(place.ran().is_empty());

    // Unsigned entries, read with a key: not restored either.
    let unsigned = Place::new();
    run(&unsigned.project(PROJECT), &unsigned, &[]).assert_code(0);
    unsigned.ran();
    let keyed = unsigned
        .project(PROJECT)
        .env("RUNNER_CACHE_KEY", "secret one");
    let out = run(&keyed, &unsigned, &[]);
    out.assert_code(0);
    assert_eq!(unsigned.ran().len(), 3);
    out.assert_stderr_has("not signed");
    // And a key is never shown to the tasks.
    assert!(!keyed.read("report.json").contains("secret one"));
}

#[test]
fn a_task_never_sees_the_cache_key() {
    let place = Place::new();
    let jobs = r#"
[jobs.env]
command = "env > out.txt"
sources = ["jobs.toml"]
outputs = ["out.txt"]
"#;
    let t = place
        .project(jobs)
        .env("RUNNER_CACHE_KEY", "k3y-value")
        .env("RUNNER_CACHE_TOKEN", "t0ken-value");
    run(&t, &place, &[]).assert_code(0);
    let env = t.read("out.txt");
    assert!(
        !env.contains("k3y-value") && !env.contains("t0ken-value"),
        "{env}"
    );
}

#[test]
fn a_cache_env_value_is_part_of_the_key() {
    let place = Place::new();
    let jobs = r#"
[jobs.build]
command = "echo ran build >> \"$LOG\"; echo \"$TOOLCHAIN\" > out.txt"
sources = ["in/a.txt"]
outputs = ["out.txt"]
cache_env = ["TOOLCHAIN"]
"#;
    run(&place.project(jobs).env("TOOLCHAIN", "1.0"), &place, &[]).assert_code(0);
    assert_eq!(place.ran().len(), 1);
    let other = place.project(jobs).env("TOOLCHAIN", "2.0");
    run(&other, &place, &[]).assert_code(0);
    assert_eq!(place.ran().len(), 1, "another value: a miss");
    assert_eq!(other.read("out.txt"), "2.0\n");
    let same = place.project(jobs).env("TOOLCHAIN", "1.0");
    run(&same, &place, &[]).assert_code(0);
    assert!(place.ran().is_empty(), "the same value: a hit");
    assert_eq!(same.read("out.txt"), "1.0\n");
}

#[test]
fn a_store_that_cannot_be_used_is_said_once_and_the_tasks_run() {
    let place = Place::new();
    // The store's place is taken by a file.
    std::fs::write(place.store(), "not a folder").unwrap();
    let t = place.project(PROJECT);
    let out = run(&t, &place, &[]);
    out.assert_code(0);
    assert_eq!(place.ran().len(), 3);
    assert_eq!(
        out.stderr
            .matches("cache disabled for the rest of this run")
            .count(),
        1,
        "{}",
        out.stderr
    );
    // The store named once: `warning: cache: cannot create STORE/tmp: …`.
    let warning = out
        .stderr
        .lines()
        .find(|l| l.contains("cache disabled"))
        .unwrap();
    assert!(warning.contains("warning: cache: cannot "), "{warning}");
    assert_eq!(warning.matches(&place.store()).count(), 1, "{warning}");
    assert!(statuses(&t).iter().all(|(_, s)| s == "succeeded"));
}

#[test]
fn plan_says_per_task_whether_it_would_be_restored() {
    let place = Place::new();
    run(&place.project(PROJECT), &place, &[]).assert_code(0);
    place.ran();
    let second = place.project(PROJECT);
    second.write("in/b.txt", "changed\n");
    let store = place.store();
    let out = second.run_with(&["plan", "jobs.toml", "--cache", &store, "--json"]);
    out.assert_code(0);
    let plan: Value = serde_json::from_str(&out.stdout).unwrap();
    let actions: Vec<(String, String)> = plan
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                format!(
                    "{}:{}",
                    t["job"].as_str().unwrap(),
                    t["item"].as_str().unwrap()
                ),
                t["action"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    // tool's sources (build's outputs) are not there yet: it would run.
    assert_eq!(
        actions,
        pairs(&[("build:a", "cached"), ("build:b", "run"), ("tool:", "run")])
    );
    let reason = plan[0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("restored from cache (stored by "),
        "{reason}"
    );
    let text = second.run_with(&["plan", "jobs.toml", "--cache", &store]);
    text.assert_code(0).assert_stdout_has("1 cached");
    assert!(place.ran().is_empty(), "a plan runs nothing");
    assert!(!second.path("out").exists(), "a plan restores nothing");
}

#[test]
fn a_symlink_output_is_not_stored_and_the_run_says_why() {
    let place = Place::new();
    let jobs = r#"
[jobs.link]
command = "echo ran >> \"$LOG\"; echo data > real.txt; ln -sf real.txt out.txt"
sources = ["in/a.txt"]
outputs = ["out.txt"]
"#;
    let t = place.project(jobs);
    let out = run(&t, &place, &[]);
    out.assert_code(0);
    out.assert_stderr_has("link: not stored in the cache: its output out.txt is a symbolic link");
    assert!(place.files("ac").is_empty());
    assert_eq!(report(&t).1["not_stored"], 1);
}

#[test]
fn an_entry_above_the_max_entry_size_is_not_stored_and_the_run_says_so() {
    let place = Place::new();
    let jobs = r#"
[jobs.big]
command = "head -c 2000 /dev/zero > out.bin"
sources = ["in/a.txt"]
outputs = ["out.bin"]
"#;
    let t = place.project(jobs);
    let out = run(&t, &place, &["--cache-max-entry", "1KiB"]);
    out.assert_code(0);
    out.assert_stderr_has(
        "big: not stored in the cache: its entry would be 2 KiB, more than --cache-max-entry 1 KiB",
    );
    assert!(place.files("ac").is_empty());
    // Under the limit, it is.
    run(&t, &place, &["--force"]).assert_code(0);
    assert_eq!(place.files("ac").len(), 1);
}

#[test]
fn a_bad_cache_url_or_size_is_exit_2_before_anything_runs() {
    let place = Place::new();
    let t = place.project(PROJECT);
    let out = t.run_with(&["run", "jobs.toml", "--cache", "ftp://host/cache"]);
    out.assert_code(2)
        .assert_stderr_has("--cache ftp://host/cache: unknown scheme");
    let store = place.store();
    let out = t.run_with(&[
        "run",
        "jobs.toml",
        "--cache",
        &store,
        "--cache-max-entry",
        "lots",
    ]);
    out.assert_code(2).assert_stderr_has("--cache-max-entry");
    assert!(place.ran().is_empty());
    // RUNNER_CACHE names the store; the command line wins.
    let env = place.project(PROJECT).env("RUNNER_CACHE", "ftp://nowhere");
    env.run_with(&["run", "jobs.toml"]).assert_code(2);
    env.run_with(&["run", "jobs.toml", "--cache", &store])
        .assert_code(0);
}

#[test]
fn an_entry_naming_files_its_job_does_not_write_is_not_restored() {
    let place = Place::new();
    let jobs = r#"
[jobs.x]
command = "echo ran x >> \"$LOG\"; echo from x > x.txt"
sources = ["in/a.txt"]
outputs = ["x.txt"]

[jobs.y]
command = "echo ran y >> \"$LOG\"; echo from y > y.txt"
sources = ["in/b.txt"]
outputs = ["y.txt"]
"#;
    let first = place.project(jobs);
    run(&first, &place, &["x"]).assert_code(0);
    let x_entry = place.files("ac");
    assert_eq!(x_entry.len(), 1);
    run(&first, &place, &["y"]).assert_code(0);
    let y_entry: Vec<PathBuf> = place
        .files("ac")
        .into_iter()
        .filter(|p| *p != x_entry[0])
        .collect();
    assert_eq!(y_entry.len(), 1);
    place.ran();
    // Whoever can write the store puts x's entry under y's key (no RUNNER_CACHE_KEY).
    std::fs::copy(&x_entry[0], &y_entry[0]).unwrap();
    let second = place.project(jobs);
    let out = run(&second, &place, &["y"]);
    out.assert_code(0);
    out.assert_stderr_has("y: not restored from the cache: it names `x.txt`, which the job's `outputs` do not match; it runs");
    assert_eq!(place.ran(), ["ran y"]);
    assert!(
        !second.path("x.txt").exists(),
        "nothing written outside y's outputs"
    );
    assert_eq!(second.read("y.txt"), "from y\n");
}

#[test]
fn a_restored_task_replays_through_logs_quiet_and_grouped_output_like_a_run() {
    let place = Place::new();
    run(&place.project(PROJECT), &place, &[]).assert_code(0);
    place.ran();
    let second = place.project(PROJECT);
    let out = run(&second, &place, &["--quiet", "--logs", "logs"]);
    out.assert_code(0);
    assert!(place.ran().is_empty());
    assert!(
        out.stdout.is_empty(),
        "--quiet hides a success's output: {}",
        out.stdout
    );
    assert_eq!(second.read("logs/build.0.stdout"), "printed a\n");
    assert_eq!(second.read("logs/build.1.stderr"), "warned b\n");
    let third = place.project(PROJECT);
    let out = run(&third, &place, &["--output", "grouped"]);
    out.assert_code(0);
    assert_eq!(out.lines_of("build:b"), ["printed b"]);
    assert!(place.ran().is_empty());
}

/// A 1 GB output (and 3 MiB printed, past what a capture keeps in memory) is stored
/// in the folder store and restored from it with the runner under 64 MiB both ways
/// (the JSON report's peak RSS); the file and what was printed come back whole.
/// About 5 s (1 GB written three times).
#[test]
fn a_1_gb_output_is_stored_and_restored_with_the_runner_under_64_mib() {
    const BIG: &str = r#"
[jobs.big]
command = "echo ran big >> \"$LOG\"; mkdir -p out; head -c 1000000000 /dev/zero > out/big.bin; head -c 3145728 /dev/zero | tr '\\0' 'y' | fold -w 99"
sources = ["in/a.txt"]
outputs = ["out/big.bin"]
"#;
    let place = Place::new();
    let peak_mib = |t: &Test| {
        let report: Value = serde_json::from_str(&t.read("report.json")).unwrap();
        report["run"]["peak_rss_kib"].as_u64().unwrap() / 1024
    };
    let printed = |out: &crate::util::Output| {
        out.stdout
            .lines()
            .filter(|l| l.ends_with(&"y".repeat(99)))
            .count()
    };
    let first = place.project(BIG);
    let out = run(&first, &place, &[]);
    out.assert_code(0);
    assert_eq!(place.ran(), ["ran big"]);
    assert_eq!(printed(&out), 3_145_728 / 99);
    assert!(peak_mib(&first) < 64, "storing: {} MiB", peak_mib(&first));
    assert_eq!(report(&first).1["stored"], 1, "{}", out.stderr);
    drop(first);
    let second = place.project(BIG);
    let out = run(&second, &place, &[]);
    out.assert_code(0);
    assert!(place.ran().is_empty());
    assert_eq!(
        statuses(&second),
        [("big".to_string(), "cached".to_string())]
    );
    assert_eq!(printed(&out), 3_145_728 / 99, "replayed whole");
    let size = std::fs::metadata(second.path("out/big.bin")).unwrap().len();
    assert_eq!(size, 1_000_000_000);
    assert!(
        peak_mib(&second) < 64,
        "restoring: {} MiB",
        peak_mib(&second)
    );
}

/// `--force` skips the lookup: every task runs (none restored), the plan says so, and
/// the successes are stored again (a forced run refreshes the cache).
#[test]
fn a_forced_run_skips_the_cache_and_refreshes_it() {
    let place = Place::new();
    run(&place.project(PROJECT), &place, &[]).assert_code(0);
    place.ran();
    let second = place.project(PROJECT);
    let store = place.store();
    let out = second.run_with(&["plan", "jobs.toml", "--cache", &store, "--force", "--json"]);
    out.assert_code(0);
    let plan: Value = serde_json::from_str(&out.stdout).unwrap();
    for task in plan.as_array().unwrap() {
        assert_eq!(task["action"], "run", "{task}");
        assert_eq!(task["reason"], "forced", "{task}");
    }
    let entries = place.files("ac");
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    for entry in &entries {
        std::fs::File::options()
            .append(true)
            .open(entry)
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    let out = run(&second, &place, &["--force"]);
    out.assert_code(0);
    assert_eq!(place.ran(), ["ran build a", "ran build b", "ran tool"]);
    assert!(statuses(&second).iter().all(|(_, s)| s == "succeeded"));
    assert_eq!(report(&second).1["stored"], 3, "{}", out.stderr);
    assert_eq!(report(&second).1["restored"], 0);
    // Every entry written anew.
    for entry in &entries {
        let modified = std::fs::metadata(entry).unwrap().modified().unwrap();
        assert!(
            modified > old + std::time::Duration::from_secs(60),
            "{entry:?}"
        );
    }
}

/// While a cacheable task runs, the runner holds no temporary file for what it prints
/// when it printed little (kept in memory) or nothing: its open files under `TMPDIR`
/// (unnamed temporary files show as `TMPDIR/#N (deleted)`) are none.
#[test]
fn capturing_a_tasks_little_output_creates_no_temporary_file() {
    const WAITS: &str = r#"
[jobs.quiet]
command = "mkdir -p out; echo hello > out/a.txt; touch started-quiet; while [ ! -e go ]; do sleep 0.02; done"
sources = ["in/a.txt"]
outputs = ["out/a.txt"]

[jobs.says]
command = "mkdir -p out; echo hello; echo there >&2; cp in/b.txt out/b.txt; touch started-says; while [ ! -e go ]; do sleep 0.02; done"
sources = ["in/b.txt"]
outputs = ["out/b.txt"]
"#;
    let place = Place::new();
    let tmp = tempfile::tempdir().unwrap();
    let tmp_name = tmp.path().display().to_string();
    let store = place.store();
    let t = place
        .project(WAITS)
        .env("TMPDIR", &tmp_name)
        .args(&["--cache", &store]);
    let mut child = t.spawn();
    let started = crate::util::wait_for(std::time::Duration::from_secs(10), || {
        t.path("started-quiet").exists() && t.path("started-says").exists()
    });
    let temporary: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", child.id()))
        .unwrap()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .map(|target| target.display().to_string())
        .filter(|target| target.starts_with(&tmp_name))
        .collect();
    t.write("go", "");
    let status = child.wait().unwrap();
    assert!(started, "the tasks started");
    assert!(status.success());
    assert!(temporary.is_empty(), "{temporary:?}");
    assert_eq!(place.files("ac").len(), 2, "both stored");
}
