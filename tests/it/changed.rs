//! `--changed-since REF` (issue 25): real git repositories made in temporary folders;
//! what a test looks at is what ran (each task appends its label to `ran.log`), the
//! report's and the plan's statuses and reasons, the summary, and the errors.

use crate::util::Test;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// Git with no system or user configuration, an author, and `main` as the first branch.
pub(crate) fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=runner tests",
            "-c",
            "user.email=tests@runner.invalid",
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A test whose folder is a git repository with `files` (and the job file) committed on
/// `main`, then on a new branch `feature`. `ran.log` and the reports are ignored.
fn repo(jobfile: &str, files: &[&str]) -> Test {
    let t = Test::new(jobfile)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null");
    t.write(".gitignore", "ran.log\n*.json\n*.xml\n*.html\n");
    for f in files {
        t.write(f, &format!("{f}\n"));
    }
    let dir = t.dir.path();
    git(dir, &["init", "-q"]);
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "base"]);
    git(dir, &["checkout", "-q", "-b", "feature"]);
    t
}

/// Runs `runner ARGS…` with a JSON report (asserting exit 0): what ran, sorted, and
/// each task's (label, status, reason).
fn run(t: &Test, args: &[&str]) -> (Vec<String>, Vec<(String, String, String)>, String) {
    let _ = std::fs::remove_file(t.path("ran.log"));
    let mut all = vec!["run", "jobs.toml", "--report", "report.json"];
    all.extend(args);
    let out = t.run_with(&all);
    out.assert_code(0);
    let mut ran: Vec<String> = t.read("ran.log").lines().map(str::to_string).collect();
    ran.sort();
    let report: Value = serde_json::from_str(&t.read("report.json")).unwrap();
    (
        ran,
        tasks(&report["tasks"], "status"),
        out.stderr + &out.stdout,
    )
}

/// `runner plan --json ARGS…`: each task's (label, action, reason).
fn plan(t: &Test, args: &[&str]) -> Vec<(String, String, String)> {
    let mut all = vec!["plan", "jobs.toml", "--json"];
    all.extend(args);
    let out = t.run_with(&all);
    out.assert_code(0);
    tasks(&serde_json::from_str(&out.stdout).unwrap(), "action")
}

fn tasks(list: &Value, what: &str) -> Vec<(String, String, String)> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|task| {
            let label = match task["item"].as_str() {
                Some("") | None => task["job"].as_str().unwrap().to_string(),
                Some(item) => format!("{}:{item}", task["job"].as_str().unwrap()),
            };
            (
                label,
                task[what].as_str().unwrap().to_string(),
                task["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn triple(label: &str, status: &str, reason: &str) -> (String, String, String) {
    (label.into(), status.into(), reason.into())
}

const PER_ITEM: &str = r#"
[jobs.t]
items = ["a", "b", "c", "d", "e", "f"]
command = "echo t:{item} >> ran.log"
sources = ["src/{item}.txt"]
"#;

#[test]
fn committed_staged_unstaged_and_untracked_changes_run_ignored_ones_do_not() {
    let t = repo(
        PER_ITEM,
        &["src/a.txt", "src/b.txt", "src/c.txt", "src/f.txt"],
    );
    let dir = t.dir.path();
    t.write("src/a.txt", "committed\n");
    git(dir, &["commit", "-q", "-am", "a"]);
    t.write("src/b.txt", "unstaged\n");
    t.write("src/c.txt", "staged\n");
    git(dir, &["add", "src/c.txt"]);
    t.write("src/d.txt", "untracked\n");
    t.write(".gitignore", "ran.log\n*.json\n*.xml\n*.html\nsrc/e.txt\n");
    git(dir, &["commit", "-q", "-am", "ignore e"]);
    t.write("src/e.txt", "ignored\n");
    let (ran, tasks, out) = run(
        &t,
        &[
            "--changed-since",
            "main",
            "--junit",
            "junit.xml",
            "--html",
            "page.html",
        ],
    );
    assert_eq!(ran, ["t:a", "t:b", "t:c", "t:d"]);
    let unchanged = "no source changed since main";
    assert_eq!(
        tasks,
        [
            triple("t:a", "succeeded", "source changed since main: src/a.txt"),
            triple("t:b", "succeeded", "source changed since main: src/b.txt"),
            triple("t:c", "succeeded", "source changed since main: src/c.txt"),
            triple("t:d", "succeeded", "source changed since main: src/d.txt"),
            triple("t:e", "unchanged", unchanged),
            triple("t:f", "unchanged", unchanged),
        ]
    );
    // The summary has an `unchanged` column, and the reasons line counts them.
    assert!(out.contains("unchanged"), "{out}");
    assert!(out.contains("t: 2 unchanged, 0 up to date, 4 ran"), "{out}");
    // JUnit: passed, with the reason.
    crate::reports::assert_valid_junit(&t.path("junit.xml"));
    assert!(t
        .read("junit.xml")
        .contains("<system-out>unchanged: no source changed since main; it was not run"));
    assert!(t.read("page.html").contains("unchanged"));
}

#[test]
fn a_rename_counts_under_both_names_and_a_deletion_under_its_old_one() {
    let t = repo(
        r#"
[jobs.t]
items = ["x", "y", "z", "w"]
command = "echo t:{item} >> ran.log"
sources = ["data/{item}.txt"]
"#,
        &["data/x.txt", "data/z.txt", "data/w.txt"],
    );
    let dir = t.dir.path();
    git(dir, &["mv", "data/x.txt", "data/y.txt"]);
    git(dir, &["rm", "-q", "data/z.txt"]);
    git(dir, &["commit", "-q", "-m", "rename and delete"]);
    let (ran, tasks, _) = run(&t, &["--changed-since", "main"]);
    assert_eq!(ran, ["t:x", "t:y", "t:z"]);
    assert_eq!(
        tasks[3],
        triple("t:w", "unchanged", "no source changed since main")
    );
}

/// a ← b ← c through `needs`, d apart, e without sources.
const CHAIN: &str = r#"
[jobs.a]
command = "echo a >> ran.log"
sources = ["a.txt"]

[jobs.b]
needs = ["a"]
command = "echo b >> ran.log"
sources = ["b.txt"]

[jobs.c]
needs = ["b"]
command = "echo c >> ran.log"
sources = ["c.txt"]

[jobs.d]
command = "echo d >> ran.log"
sources = ["d.txt"]

[jobs.e]
command = "echo e >> ran.log"
"#;

#[test]
fn the_jobs_that_need_a_changed_one_run_through_the_chain_and_the_plan_says_why() {
    let t = repo(CHAIN, &["a.txt", "b.txt", "c.txt", "d.txt"]);
    t.write("a.txt", "changed\n");
    let expected = [
        triple("a", "run", "source changed since main: a.txt"),
        triple("b", "run", "needs `a`, which runs for changes since main"),
        triple("c", "run", "needs `b`, which runs for changes since main"),
        triple("d", "unchanged", "no source changed since main"),
        triple("e", "run", "no sources: cannot tell"),
    ];
    let mut planned = plan(&t, &["--changed-since", "main"]);
    planned.sort();
    assert_eq!(planned, expected);
    // The text plan says the same, task by task.
    let text = t.run_with(&["plan", "jobs.toml", "--changed-since", "main"]);
    text.assert_code(0)
        .assert_stdout_has("a  run (source changed since main: a.txt)")
        .assert_stdout_has("d  unchanged (no source changed since main)");
    let (ran, mut tasks, _) = run(&t, &["--changed-since", "main"]);
    assert_eq!(ran, ["a", "b", "c", "e"]);
    tasks.sort();
    let statuses: Vec<&str> = tasks.iter().map(|t| t.1.as_str()).collect();
    assert_eq!(
        statuses,
        [
            "succeeded",
            "succeeded",
            "succeeded",
            "unchanged",
            "succeeded"
        ]
    );
    // An unchanged task is not journaled: the next run does not take it as failed.
    let planned = plan(&t, &[]);
    assert!(
        planned.contains(&triple("d", "run", "never ran")),
        "{planned:?}"
    );
}

#[test]
fn targets_are_chosen_first_then_filtered_by_the_change() {
    let t = repo(CHAIN, &["a.txt", "b.txt", "c.txt", "d.txt"]);
    t.write("a.txt", "changed\n");
    // `c` brings `b` and `a`: all run; `d` and `e` are not chosen.
    let (ran, _, _) = run(&t, &["c", "--changed-since", "main"]);
    assert_eq!(ran, ["a", "b", "c"]);
    // `d` alone: unchanged, and nothing runs.
    let (ran, tasks, _) = run(&t, &["d", "--changed-since", "main"]);
    assert!(ran.is_empty(), "{ran:?}");
    assert_eq!(
        tasks,
        [triple("d", "unchanged", "no source changed since main")]
    );
}

#[test]
fn a_job_tied_by_a_queue_to_a_changed_one_runs() {
    let t = repo(
        r#"
[jobs.gen]
command = "echo gen >> ran.log; echo one; echo two"
to = "q"
sources = ["gen.txt"]

[jobs.use]
items = { queue = "q" }
command = "echo use:{item} >> ran.log"
sources = ["use.txt"]

[jobs.other]
command = "echo other >> ran.log"
sources = ["other.txt"]
"#,
        &["gen.txt", "use.txt", "other.txt"],
    );
    // Only the consumer's source changed: its producer must run to feed it.
    t.write("use.txt", "changed\n");
    let (ran, tasks, _) = run(&t, &["--changed-since", "main"]);
    assert_eq!(ran, ["gen", "use:one", "use:two"]);
    assert!(tasks.contains(&triple(
        "gen",
        "succeeded",
        "tied by queue `q` to `use`, which runs for changes since main"
    )));
    assert!(tasks.contains(&triple(
        "other",
        "unchanged",
        "no source changed since main"
    )));
}

#[test]
fn a_changed_task_may_still_be_up_to_date_and_resume_composes() {
    let t = repo(
        r#"
[jobs.t]
items = ["a", "b"]
command = "echo t:{item} >> ran.log"
sources = ["src/{item}.txt"]
"#,
        &["src/a.txt", "src/b.txt"],
    );
    t.write("src/a.txt", "changed\n");
    let (ran, _, _) = run(&t, &[]);
    assert_eq!(ran, ["t:a", "t:b"]);
    // Changed since main, but as its last success here left it.
    let (ran, tasks, _) = run(&t, &["--changed-since", "main"]);
    assert!(ran.is_empty(), "{ran:?}");
    assert_eq!(tasks[0].1, "up_to_date");
    assert_eq!(tasks[1].1, "unchanged");
    // With --resume: what the run resumed counted as done is done earlier.
    let (ran, tasks, _) = run(&t, &["--changed-since", "main", "--resume"]);
    assert!(ran.is_empty(), "{ran:?}");
    assert_eq!(tasks[0].1, "done_earlier");
    assert_eq!(tasks[1].1, "unchanged");
}

#[test]
fn a_file_name_with_a_newline_is_one_name() {
    let t = repo(
        r#"
[jobs.t]
command = "echo t >> ran.log"
sources = ["data/*"]

[jobs.u]
command = "echo u >> ran.log"
sources = ["line.txt"]

[jobs.v]
command = "echo v >> ran.log"
sources = ["**/new*"]

[jobs.w]
command = "echo w >> ran.log"
sources = ["{data,other}/*.txt"]
"#,
        &["data/plain.txt"],
    );
    t.write("data/new\nline.txt", "x\n");
    let (ran, tasks, _) = run(&t, &["--changed-since", "main"]);
    assert_eq!(ran, ["t", "v", "w"]);
    assert_eq!(
        tasks[0],
        triple(
            "t",
            "succeeded",
            "source changed since main: data/new\\x0Aline.txt"
        )
    );
    assert_eq!(tasks[1].1, "unchanged");
}

#[test]
fn the_job_file_may_be_in_a_subfolder_of_the_repository() {
    let t = repo("", &["sub/src/a.txt", "sub/src/b.txt", "src/a.txt"]);
    std::fs::remove_file(t.path("jobs.toml")).unwrap();
    t.write(
        "sub/jobs.toml",
        "[jobs.t]\nitems = ['a', 'b']\ncommand = 'echo t:{item} >> ran.log'\nsources = ['src/{item}.txt']\n",
    );
    // A change outside the job file's folder with the same relative name is not its.
    t.write("src/b.txt", "changed\n");
    t.write("sub/src/a.txt", "changed\n");
    let out = t.run_with(&["plan", "sub/jobs.toml", "--json", "--changed-since", "main"]);
    out.assert_code(0);
    let planned = tasks(&serde_json::from_str(&out.stdout).unwrap(), "action");
    assert_eq!(
        planned,
        [
            triple("t:a", "run", "source changed since main: src/a.txt"),
            triple("t:b", "unchanged", "no source changed since main"),
        ]
    );
}

/// A bare repository as `origin`, a clone of it on a branch `feature` one commit past
/// `main` that changes `a.txt`.
fn clone_with_origin(jobfile: &str) -> (Test, tempfile::TempDir) {
    let origin = repo(jobfile, &["a.txt", "b.txt"]);
    git(origin.dir.path(), &["checkout", "-q", "main"]);
    let bare = tempfile::tempdir().unwrap();
    let url = format!("file://{}", origin.dir.path().display());
    git(bare.path(), &["clone", "-q", "--bare", &url, "origin.git"]);
    let t = Test::new(jobfile)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null");
    std::fs::remove_file(t.path("jobs.toml")).unwrap();
    let bare_url = format!("file://{}/origin.git", bare.path().display());
    git(t.dir.path(), &["clone", "-q", &bare_url, "."]);
    git(t.dir.path(), &["checkout", "-q", "-b", "feature"]);
    t.write("a.txt", "changed\n");
    git(t.dir.path(), &["commit", "-q", "-am", "a"]);
    (t, bare)
}

const TWO: &str = r#"
[jobs.a]
command = "echo a >> ran.log"
sources = ["a.txt"]

[jobs.b]
command = "echo b >> ran.log"
sources = ["b.txt"]
"#;

#[test]
fn auto_takes_the_base_from_github_and_gitlab() {
    let (t, _bare) = clone_with_origin(TWO);
    let t = t.env("GITHUB_BASE_REF", "main");
    let (ran, tasks, out) = run(&t, &["--changed-since", "auto"]);
    assert_eq!(ran, ["a"]);
    assert_eq!(tasks[0].2, "source changed since origin/main: a.txt");
    assert!(
        out.contains("--changed-since origin/main: 1 changed file"),
        "{out}"
    );

    let (t, _bare) = clone_with_origin(TWO);
    let base = git(t.dir.path(), &["rev-parse", "main"]);
    let t = t.env("CI_MERGE_REQUEST_DIFF_BASE_SHA", &base);
    let (ran, tasks, _) = run(&t, &["--changed-since", "auto"]);
    assert_eq!(ran, ["a"]);
    assert_eq!(
        tasks[1],
        triple("b", "unchanged", &format!("no source changed since {base}"))
    );
}

#[test]
fn auto_outside_a_pull_request_runs_everything_and_says_why() {
    let (t, _bare) = clone_with_origin(TWO);
    let t = t
        .env("GITHUB_BASE_REF", "")
        .env("CI_MERGE_REQUEST_DIFF_BASE_SHA", "");
    let (ran, _, out) = run(&t, &["--changed-since", "auto"]);
    assert_eq!(ran, ["a", "b"]);
    let said: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("--changed-since auto"))
        .collect();
    assert_eq!(said.len(), 1, "{out}");
    assert!(said[0].contains("not a GitHub pull request nor a GitLab merge request"));
}

#[test]
fn a_shallow_clone_without_the_merge_base_says_to_fetch_more_history() {
    let (origin, _bare) = clone_with_origin(TWO);
    let t = Test::new(TWO);
    std::fs::remove_file(t.path("jobs.toml")).unwrap();
    let url = format!("file://{}", origin.dir.path().display());
    git(
        t.dir.path(),
        &[
            "clone",
            "-q",
            "--depth",
            "1",
            "--no-single-branch",
            &url,
            ".",
        ],
    );
    git(t.dir.path(), &["checkout", "-q", "feature"]);
    let _ = std::fs::remove_file(t.path("ran.log"));
    let out = t.run_with(&["run", "jobs.toml", "--changed-since", "origin/main"]);
    out.assert_code(2)
        .assert_stderr_has("no common ancestor in this shallow clone")
        .assert_stderr_has("fetch-depth: 0");
    assert!(!t.path("ran.log").exists());
    assert!(!t.path(".runner").exists(), "the state was touched");
}

#[test]
fn mistakes_are_exit_2_before_anything_runs_each_with_its_fix() {
    // Not a git checkout.
    let t = Test::new("[jobs.a]\ncommand = 'echo a >> ran.log'\nsources = ['a.txt']\n")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CEILING_DIRECTORIES", "/");
    let out = t.run_with(&["run", "jobs.toml", "--changed-since", "main"]);
    out.assert_code(2)
        .assert_stderr_has("is not in a git checkout")
        .assert_stderr_has("run it in a clone of the repository");
    assert!(!t.path("ran.log").exists());
    assert!(!t.path(".runner").exists(), "the state was touched");

    // An unknown revision, for the run and the plan.
    let t = repo(
        "[jobs.a]\ncommand = 'echo a >> ran.log'\nsources = ['a.txt']\n",
        &["a.txt"],
    );
    for command in ["run", "plan"] {
        let out = t.run_with(&[command, "jobs.toml", "--changed-since", "nosuch"]);
        out.assert_code(2)
            .assert_stderr_has("git knows no revision `nosuch`")
            .assert_stderr_has("git fetch origin");
    }
    assert!(!t.path("ran.log").exists());
    assert!(!t.path(".runner").exists(), "the state was touched");

    // No git on PATH.
    let t = t.env("PATH", "/nonexistent");
    let out = t.run_with(&["run", "jobs.toml", "--changed-since", "main"]);
    out.assert_code(2)
        .assert_stderr_has("--changed-since needs git, which cannot be run")
        .assert_stderr_has("install git");
    assert!(!t.path("ran.log").exists());
}
