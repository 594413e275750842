//! Up to date by content (issue 15): `sources` and `outputs`, the stamps in the state
//! folder, `--force`, and the reasons in the plan, the JSON report and the summary. Real
//! files, real processes; what a test looks at is what ran (each task appends its item
//! to `ran.log`), the report's statuses and reasons, and the summary's lines.

use crate::util::Test;
use serde_json::Value;
use std::time::{Duration, SystemTime};

/// Three items converted one file each, and a job that reads them all.
const PIPELINE: &str = r#"
[jobs.convert]
items = ["a", "b", "c"]
command = "tr a-z A-Z < in/{item}.txt > out/{item}.txt && echo convert:{item} >> ran.log"
sources = ["in/{item}.txt"]
outputs = ["out/{item}.txt"]

[jobs.all]
needs = ["convert"]
command = "cat in/*.txt > all.txt && echo all >> ran.log"
sources = ["in/*.txt"]
outputs = ["all.txt"]
"#;

fn pipeline() -> Test {
    let t = Test::new(PIPELINE);
    for item in ["a", "b", "c"] {
        t.write(&format!("in/{item}.txt"), &format!("data {item}\n"));
    }
    std::fs::create_dir_all(t.path("out")).unwrap();
    t
}

/// Runs the file with a JSON report: what ran (in `ran.log`, which is then emptied),
/// each task's (status, reason) by label, and the output.
fn run(t: &Test, args: &[&str]) -> (Vec<String>, Vec<(String, String, String)>, String) {
    let _ = std::fs::remove_file(t.path("ran.log"));
    let mut all = vec!["run", "jobs.toml", "--report", "report.json"];
    all.extend(args);
    let out = t.run_with(&all);
    out.assert_code(0);
    let mut ran: Vec<String> = t.read("ran.log").lines().map(str::to_string).collect();
    ran.sort();
    let report: Value = serde_json::from_str(&t.read("report.json")).unwrap();
    let tasks = report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|task| {
            let label = match task["item"].as_str() {
                Some("") | None => task["job"].as_str().unwrap().to_string(),
                Some(item) => format!("{}:{item}", task["job"].as_str().unwrap()),
            };
            (
                label,
                task["status"].as_str().unwrap().to_string(),
                task["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (ran, tasks, out.stderr)
}

fn reason_of<'a>(tasks: &'a [(String, String, String)], label: &str) -> (&'a str, &'a str) {
    let task = tasks
        .iter()
        .find(|t| t.0 == label)
        .unwrap_or_else(|| panic!("no task {label} in {tasks:?}"));
    (task.1.as_str(), task.2.as_str())
}

/// Sets a file's mtime without touching its content.
fn touch(path: &std::path::Path, when: SystemTime) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(when).unwrap();
}

#[test]
fn the_second_run_is_up_to_date_and_each_change_runs_only_what_it_touches() {
    let t = pipeline();
    let (ran, tasks, _) = run(&t, &[]);
    assert_eq!(ran, ["all", "convert:a", "convert:b", "convert:c"]);
    assert_eq!(reason_of(&tasks, "convert:a"), ("succeeded", "never ran"));

    let (ran, tasks, stderr) = run(&t, &[]);
    assert!(ran.is_empty(), "{ran:?}");
    assert_eq!(reason_of(&tasks, "convert:b"), ("up_to_date", "up to date"));
    assert_eq!(reason_of(&tasks, "all"), ("up_to_date", "up to date"));
    assert!(stderr.contains("convert: 3 up to date, 0 ran"), "{stderr}");
    assert!(stderr.contains("4 up to date"), "{stderr}");

    // New mtimes, same content: still up to date.
    let later = SystemTime::now() + Duration::from_secs(3600);
    for f in ["in/a.txt", "in/b.txt", "in/c.txt", "out/a.txt"] {
        touch(&t.path(f), later);
    }
    let (ran, _, _) = run(&t, &[]);
    assert!(ran.is_empty(), "touched files ran {ran:?}");

    // One byte of one source: its task runs, and the job reading every source.
    t.write("in/b.txt", "data B\n");
    let (ran, tasks, stderr) = run(&t, &[]);
    assert_eq!(ran, ["all", "convert:b"]);
    assert_eq!(
        reason_of(&tasks, "convert:b"),
        ("succeeded", "source changed: in/b.txt")
    );
    assert_eq!(reason_of(&tasks, "convert:a"), ("up_to_date", "up to date"));
    assert!(
        stderr.contains("convert: 2 up to date, 1 ran: source changed: in/b.txt"),
        "{stderr}"
    );

    // A file added where a pattern looks.
    t.write("in/d.txt", "data d\n");
    let (ran, tasks, _) = run(&t, &[]);
    assert_eq!(ran, ["all"]);
    assert_eq!(reason_of(&tasks, "all").1, "sources added: in/d.txt");
    std::fs::remove_file(t.path("in/d.txt")).unwrap();
    let (ran, tasks, _) = run(&t, &[]);
    assert_eq!(ran, ["all"]);
    assert_eq!(reason_of(&tasks, "all").1, "source removed: in/d.txt");

    // An output deleted, another edited.
    std::fs::remove_file(t.path("out/a.txt")).unwrap();
    t.write("out/c.txt", "tampered\n");
    let (ran, tasks, _) = run(&t, &[]);
    assert_eq!(ran, ["convert:a", "convert:c"]);
    assert_eq!(
        reason_of(&tasks, "convert:a").1,
        "output missing: out/a.txt"
    );
    assert_eq!(
        reason_of(&tasks, "convert:c").1,
        "output changed: out/c.txt"
    );
    assert_eq!(t.read("out/c.txt"), "DATA C\n");

    // The command changed: its job's tasks run, the other job's do not.
    t.write(
        "jobs.toml",
        &PIPELINE.replace("tr a-z A-Z", "tr 'a-z' 'A-Z'"),
    );
    let (ran, tasks, _) = run(&t, &[]);
    assert_eq!(ran, ["convert:a", "convert:b", "convert:c"]);
    assert_eq!(reason_of(&tasks, "convert:a").1, "command changed");
    assert_eq!(reason_of(&tasks, "all").0, "up_to_date");
}

#[test]
fn a_copied_project_with_its_state_is_still_up_to_date() {
    let t = pipeline();
    run(&t, &[]);
    // New inodes and new mtimes (a fresh clone with a restored cache).
    let copy = Test::new("");
    copy_tree(t.dir.path(), copy.dir.path());
    let (ran, tasks, _) = run(&copy, &[]);
    assert!(ran.is_empty(), "{ran:?} {tasks:?}");
    assert!(tasks.iter().all(|t| t.1 == "up_to_date"), "{tasks:?}");
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
            touch(&target, SystemTime::now() + Duration::from_secs(60));
        }
    }
}

#[test]
fn a_fan_out_of_100_with_3_inputs_changed_runs_3_tasks() {
    let t = Test::new(
        "[jobs.each]\nitems = { range = [0, 100] }\ncommand = 'echo {item} >> ran.log'\nsources = ['in/{item}.txt']\n",
    );
    for i in 0..100 {
        t.write(&format!("in/{i}.txt"), &format!("{i}\n"));
    }
    let (ran, _, _) = run(&t, &[]);
    assert_eq!(ran.len(), 100);
    for i in [7, 42, 99] {
        t.write(&format!("in/{i}.txt"), "changed\n");
    }
    let (ran, tasks, stderr) = run(&t, &[]);
    assert_eq!(ran, ["42", "7", "99"]);
    assert_eq!(reason_of(&tasks, "each:42").1, "source changed: in/42.txt");
    // Named in the order the tasks ended.
    let line = stderr
        .lines()
        .find(|l| l.starts_with("each: "))
        .unwrap_or_else(|| panic!("no reasons line: {stderr}"));
    assert!(
        line.starts_with("each: 97 up to date, 3 ran: source changed: in/"),
        "{line}"
    );
    for name in ["in/7.txt", "in/42.txt", "in/99.txt"] {
        assert!(line.contains(name), "{line}");
    }
}

#[test]
fn force_runs_every_task_and_the_plan_tells_every_reason() {
    let t = pipeline();
    let plan = t.run_with(&["plan", "jobs.toml"]);
    plan.assert_code(0)
        .assert_stdout_has("convert:a  run (never ran)")
        .assert_stdout_has("all  run (never ran)");
    run(&t, &[]);
    t.write("in/a.txt", "new\n");
    let plan = t.run_with(&["plan", "jobs.toml"]);
    plan.assert_code(0)
        .assert_stdout_has("convert:a  run (source changed: in/a.txt)")
        .assert_stdout_has("convert:b  up to date\n");
    let json = t.run_with(&["plan", "jobs.toml", "--json"]);
    let tasks: Vec<Value> = serde_json::from_str(&json.stdout).unwrap();
    let b = tasks.iter().find(|t| t["item"] == "b").unwrap();
    assert_eq!(
        (&b["action"], &b["reason"]),
        (&"up_to_date".into(), &"up to date".into())
    );
    let a = tasks.iter().find(|t| t["item"] == "a").unwrap();
    assert_eq!(a["reason"], "source changed: in/a.txt");
    // The plan read the state and wrote nothing: the run still sees the change.
    let forced = t.run_with(&["plan", "jobs.toml", "--force"]);
    forced.assert_stdout_has("convert:b  run (forced)");
    // A job without sources says so too.
    let plain = Test::new("[jobs.p]\ncommand = 'true'\n");
    plain
        .run_with(&["plan", "jobs.toml", "--force"])
        .assert_stdout_has("  p  run (forced)");
    let (ran, tasks, _) = run(&t, &["--force"]);
    assert_eq!(ran, ["all", "convert:a", "convert:b", "convert:c"]);
    assert_eq!(reason_of(&tasks, "convert:b"), ("succeeded", "forced"));
    // Recorded as usual: the next run is up to date.
    let (ran, _, _) = run(&t, &[]);
    assert!(ran.is_empty(), "{ran:?}");
    t.run_with(&["run", "jobs.toml", "--force", "--resume"])
        .assert_code(2)
        .assert_stderr_has("cannot be used with");
}

#[test]
fn a_source_that_cannot_be_read_is_said_and_its_task_runs_every_time() {
    let t = Test::new(
        "[jobs.read]\nitems = ['folder', 'dangling']\ncommand = 'echo {item} >> ran.log'\nsources = ['in/{item}']\n",
    );
    std::fs::create_dir_all(t.path("in/folder")).unwrap();
    std::os::unix::fs::symlink(t.path("nowhere"), t.path("in/dangling")).unwrap();
    for _ in 0..2 {
        let (ran, tasks, stderr) = run(&t, &[]);
        assert_eq!(ran, ["dangling", "folder"], "never wrongly up to date");
        assert!(
            reason_of(&tasks, "read:folder")
                .1
                .starts_with("cannot read source in/folder: a folder (name its files: DIR/**)"),
            "{tasks:?}"
        );
        assert_eq!(
            reason_of(&tasks, "read:dangling").1,
            "cannot read source in/dangling: a symbolic link to nothing"
        );
        assert!(
            stderr.contains("read:dangling: cannot read source in/dangling: a symbolic link to nothing; it runs"),
            "{stderr}"
        );
    }
}

#[test]
fn a_source_without_read_permission_is_said_and_its_task_runs() {
    use std::os::unix::fs::PermissionsExt;
    let t = Test::new("[jobs.read]\ncommand = 'echo x >> ran.log'\nsources = ['secret.txt']\n");
    t.write("secret.txt", "s");
    // Root reads any file: as root, the runner runs as `nobody` (setpriv), in a folder
    // it may write.
    let root = unsafe { libc::geteuid() } == 0;
    let runner = |t: &Test| {
        let _ = std::fs::remove_file(t.path("ran.log"));
        let mut cmd = if root {
            let mut cmd = std::process::Command::new("setpriv");
            cmd.args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                crate::util::BIN,
            ]);
            cmd
        } else {
            std::process::Command::new(crate::util::BIN)
        };
        let out = cmd
            .current_dir(t.dir.path())
            .args(["run", "jobs.toml"])
            .env("NO_COLOR", "1")
            .env_remove("CI")
            .output()
            .expect("setpriv (util-linux) runs the runner");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    std::fs::set_permissions(t.dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::set_permissions(t.path("jobs.toml"), std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(t.path("secret.txt"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, stderr) = runner(&t);
    assert_eq!(code, Some(0), "{stderr}");
    let (_, stderr) = runner(&t);
    assert!(stderr.contains("read: 1 up to date, 0 ran"), "{stderr}");
    std::fs::set_permissions(t.path("secret.txt"), std::fs::Permissions::from_mode(0o000)).unwrap();
    for _ in 0..2 {
        let (code, stderr) = runner(&t);
        assert_eq!(code, Some(0), "{stderr}");
        assert_eq!(t.read("ran.log"), "x\n", "it ran: {stderr}");
        assert!(
            stderr.contains("read: cannot read source secret.txt: permission denied; it runs"),
            "{stderr}"
        );
        assert!(
            stderr.contains("read: 0 up to date, 1 ran: cannot read source secret.txt"),
            "{stderr}"
        );
    }
}

#[test]
fn a_pattern_that_matches_nothing_runs_and_names_the_pattern() {
    let t = Test::new(
        "[jobs.csv]\ncommand = 'echo csv >> ran.log'\nsources = ['data/*.csv', 'jobs.toml']\n",
    );
    for _ in 0..2 {
        let (ran, tasks, _) = run(&t, &[]);
        assert_eq!(ran, ["csv"]);
        assert_eq!(reason_of(&tasks, "csv").1, "no file matches: data/*.csv");
    }
    t.write("data/x.csv", "1");
    let (ran, tasks, _) = run(&t, &[]);
    assert_eq!(
        (ran.len(), reason_of(&tasks, "csv").1),
        (1, "sources added: data/x.csv")
    );
    let (ran, _, _) = run(&t, &[]);
    assert!(ran.is_empty());
}

#[test]
fn a_failed_task_runs_again_even_if_an_older_success_matches() {
    let t = Test::new(
        "[jobs.flaky]\ncommand = 'echo x >> ran.log; test ! -e fail'\nsources = ['in.txt']\n",
    );
    t.write("in.txt", "1");
    run(&t, &[]);
    t.write("fail", "");
    let out = t.run_with(&["run", "jobs.toml", "--force"]);
    out.assert_code(1);
    std::fs::remove_file(t.path("fail")).unwrap();
    let (ran, tasks, _) = run(&t, &[]);
    assert_eq!(ran, ["x"]);
    assert_eq!(reason_of(&tasks, "flaky").1, "failed earlier");
}

#[test]
fn an_item_is_a_file_name_never_a_pattern() {
    let t = Test::new(
        "[jobs.each]\nitems = ['a*', 'ab']\ncommand = 'echo {item} >> ran.log'\nsources = ['in/{item}.txt']\n",
    );
    t.write("in/a*.txt", "star");
    t.write("in/ab.txt", "ab");
    run(&t, &[]);
    t.write("in/ab.txt", "changed");
    let (ran, _, _) = run(&t, &[]);
    assert_eq!(ran, ["ab"], "a* does not read ab.txt");
}

#[test]
fn a_queue_producer_with_sources_always_runs() {
    let t = Test::new(
        "[jobs.list]\ncommand = 'echo p >> ran.log; echo one'\nto = 'q'\nsources = ['in.txt']\n\
         [jobs.use]\nitems = { queue = 'q' }\ncommand = 'echo {item} >> ran.log'\nsources = ['in.txt']\n",
    );
    t.write("in.txt", "1");
    run(&t, &[]);
    let (ran, tasks, _) = run(&t, &[]);
    assert_eq!(ran, ["p"]);
    assert_eq!(
        reason_of(&tasks, "list").1,
        "its stdout feeds a queue: it runs again"
    );
    assert_eq!(reason_of(&tasks, "use:one").0, "up_to_date");
}

#[test]
fn sources_and_outputs_mistakes_are_load_errors_with_their_place() {
    let cases = [
        (
            "sources = 'in.txt'",
            "expected an array of glob patterns (strings)",
        ),
        ("sources = [1]", "expected a glob pattern (a string)"),
        ("sources = []", "`sources` is empty"),
        ("outputs = ['']", "the pattern is empty"),
        (
            "sources = ['src/[a']",
            "is not a glob pattern: unclosed character class",
        ),
        ("sources = ['in/{itme}.txt']", "unknown placeholder"),
    ];
    for (line, message) in cases {
        let t = Test::new(&format!("[jobs.a]\ncommand = 'true'\n{line}\n"));
        let out = t.run_with(&["check", "jobs.toml"]);
        out.assert_code(2).assert_stderr_has(message);
        assert!(
            out.stderr.contains("jobs.toml:3:"),
            "{line}: {}",
            out.stderr
        );
    }
}

#[test]
fn a_pattern_matching_100000_files_works_within_the_memory_bound() {
    let t =
        Test::new_in_target("[jobs.all]\ncommand = 'echo all >> ran.log'\nsources = ['many/**']\n");
    for d in 0..100 {
        let dir = t.path(&format!("many/{d:02}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..1000 {
            std::fs::write(dir.join(format!("{f:03}.txt")), f.to_string()).unwrap();
        }
    }
    let (ran, _, _) = run(&t, &[]);
    assert_eq!(ran, ["all"]);
    t.write("many/50/500.txt", "changed");
    let (ran, tasks, _) = run(&t, &[]);
    assert_eq!(ran, ["all"]);
    assert_eq!(
        reason_of(&tasks, "all").1,
        "source changed: many/50/500.txt"
    );
    let (ran, _, _) = run(&t, &[]);
    assert!(ran.is_empty());
    // The children of this test are the runs above: the largest one's peak.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct it is given.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let peak_mib = usage.ru_maxrss / 1024;
    assert!(peak_mib < 64, "peak RSS {peak_mib} MiB");
}

/// docs/state.md's example, run as the docs show it: the shipped `examples/pipeline.toml`
/// and its data, in a copy; the JUnit report of an up-to-date run is valid and says so.
#[test]
fn the_pipeline_example_does_what_the_docs_say() {
    let t = Test::new(
        &std::fs::read_to_string(crate::util::root().join("examples/pipeline.toml")).unwrap(),
    );
    std::fs::create_dir(t.path("data")).unwrap();
    for entry in std::fs::read_dir(crate::util::root().join("examples/data")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), t.path("data").join(entry.file_name())).unwrap();
    }
    t.run_with(&["run", "jobs.toml"]).assert_code(0);
    assert_eq!(t.read("out/report.txt"), "total 26\n");
    let out = t.run_with(&["run", "jobs.toml", "--junit", "junit.xml"]);
    out.assert_code(0)
        .assert_stderr_has("sum: 3 up to date, 0 ran\n")
        .assert_stderr_has("report: 1 up to date, 0 ran\n");
    crate::reports::assert_valid_junit(&t.path("junit.xml"));
    assert!(t.read("junit.xml").contains("<system-out>up to date: "));
    let mut day = t.read("data/2026-11-02.csv");
    day.push_str("x,5\n");
    t.write("data/2026-11-02.csv", &day);
    // The plan says the report is up to date as the files are now, and why that may
    // change.
    t.run_with(&["plan", "jobs.toml"])
        .assert_code(0)
        .assert_stdout_has("sum:2026-11-02  run (source changed: data/2026-11-02.csv)")
        .assert_stdout_has("  report  up to date\n")
        .assert_stdout_has("(as the files are now: `sum` runs first and may change them; decided again when each task starts)");
    t.run_with(&["run", "jobs.toml"])
        .assert_code(0)
        .assert_stderr_has("sum: 2 up to date, 1 ran: source changed: data/2026-11-02.csv\n")
        .assert_stderr_has("report: 0 up to date, 1 ran: source changed: out/2026-11-02.txt\n");
    assert_eq!(t.read("out/report.txt"), "total 31\n");
}

#[test]
fn declaring_another_output_runs_the_task_again() {
    let file = "[jobs.make]\ncommand = 'echo x >> ran.log; echo a > a.txt; echo b > b.txt'\nsources = ['in.txt']\noutputs = ['a.txt']\n";
    let t = Test::new(file);
    t.write("in.txt", "1");
    run(&t, &[]);
    t.write(
        "jobs.toml",
        &file.replace("['a.txt']", "['a.txt', 'b.txt']"),
    );
    let (ran, tasks, _) = run(&t, &[]);
    assert_eq!(
        (ran.len(), reason_of(&tasks, "make").1),
        (1, "outputs list changed")
    );
    // b.txt is recorded now: editing it runs the task.
    t.write("b.txt", "edited\n");
    let (_, tasks, _) = run(&t, &[]);
    assert_eq!(reason_of(&tasks, "make").1, "output changed: b.txt");
}

/// Found by a hostile probe of this issue: each of these once went wrong.
#[test]
fn mistakes_found_by_probing_are_handled() {
    // A backslash in an item is part of the file's name, never a glob escape: the task
    // reading `a\*` is not satisfied by a file `a[zz]`.
    let t = Test::new(
        "[jobs.j]\nitems = ['a\\*']\ncommand = 'cat d/{item} > out.txt; echo j >> ran.log'\nsources = ['d/{item}']\noutputs = ['out.txt']\n",
    );
    t.write("d/a\\*", "bs\n").write("d/a[zz]", "decoy\n");
    run(&t, &[]);
    t.write("d/a\\*", "changed\n");
    let (ran, tasks, _) = run(&t, &[]);
    assert_eq!(ran, ["j"], "{tasks:?}");
    assert_eq!(reason_of(&tasks, "j:a\\*").1, "source changed: d/a\\*");

    // A pattern made of one field alone loads, and names that field's file.
    let t = Test::new(
        "[jobs.f]\nitems = [ { n = 'f1' } ]\ncommand = 'echo f >> ran.log'\nsources = ['{item.n}']\n",
    );
    t.write("f1", "1");
    t.run_with(&["check", "jobs.toml"]).assert_code(0);
    run(&t, &[]);
    assert!(run(&t, &[]).0.is_empty());

    // A device or a FIFO is never read (it may never end, or be another reader's data):
    // the task runs, saying so; the run ends.
    let t =
        Test::new("[jobs.dev]\ncommand = 'echo dev >> ran.log'\nsources = ['/dev/zero', 'fifo']\n");
    let fifo = std::ffi::CString::new(t.path("fifo").to_str().unwrap()).unwrap();
    // SAFETY: mkfifo on a path this test owns.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    for _ in 0..2 {
        let (ran, tasks, stderr) = run(&t, &[]);
        assert_eq!(ran, ["dev"]);
        assert_eq!(
            reason_of(&tasks, "dev").1,
            "cannot read source /dev/zero: not a regular file (a device, FIFO or socket is never read)"
        );
        assert!(
            stderr.contains("dev: cannot read source /dev/zero: not a regular file"),
            "{stderr}"
        );
    }

    // The state folder is never searched, however `--state` spells it.
    let t = Test::new("[jobs.all]\ncommand = 'echo all >> ran.log'\nsources = ['data/**']\n");
    t.write("data/in.txt", "1");
    std::fs::create_dir(t.path("data/st")).unwrap();
    for _ in 0..2 {
        run(&t, &["--state", "data/st/../st"]);
    }
    let (ran, tasks, _) = run(&t, &["--state", "data/st/../st"]);
    assert!(ran.is_empty(), "{tasks:?}");

    // A file whose name is not UTF-8 is read by its own name.
    let t = Test::new("[jobs.bin]\ncommand = 'echo bin >> ran.log'\nsources = ['d/*']\n");
    std::fs::create_dir(t.path("d")).unwrap();
    let name = std::ffi::OsStr::from_encoded_bytes_unchecked_safe(b"bad\xff");
    let twin = std::ffi::OsStr::from_encoded_bytes_unchecked_safe(b"bad\xfe");
    std::fs::write(t.path("d").join(name), "b").unwrap();
    std::fs::write(t.path("d").join(twin), "b").unwrap();
    run(&t, &[]);
    let (ran, tasks, _) = run(&t, &[]);
    assert!(ran.is_empty(), "{tasks:?}");
    // Two names that differ only in bytes that are not UTF-8 stay two files.
    std::fs::write(t.path("d").join(twin), "changed").unwrap();
    let (ran, tasks, _) = run(&t, &[]);
    assert_eq!(ran, ["bin"]);
    assert_eq!(reason_of(&tasks, "bin").1, "source changed: d/bad\\xFE");

    // Every output pattern that matched nothing is named, in words of their own.
    let t = Test::new(
        "[jobs.o]\ncommand = 'mkdir -p outdir'\nsources = ['jobs.toml']\noutputs = ['nothing/*.json', 'nofile.txt', 'outdir']\n",
    );
    let out = t.run_with(&["run", "jobs.toml"]);
    out.assert_code(0).assert_stderr_has(
        "o: succeeded, but no file matches its output nothing/*.json; no file matches its output nofile.txt; its output outdir: a folder (name its files: DIR/**): it will run again next time",
    );
}

/// `OsStr::from_encoded_bytes_unchecked` for bytes that are valid on Unix.
trait FromBytes {
    fn from_encoded_bytes_unchecked_safe(bytes: &[u8]) -> &std::ffi::OsStr;
}

impl FromBytes for std::ffi::OsStr {
    fn from_encoded_bytes_unchecked_safe(bytes: &[u8]) -> &std::ffi::OsStr {
        std::os::unix::ffi::OsStrExt::from_bytes(bytes)
    }
}

/// Found by a review: a failure never leaves an older success behind, even when the job
/// had no `sources` at the time; a far-future mtime is no overflow.
#[test]
fn a_failure_without_sources_forgets_the_older_success() {
    let with = "[jobs.t]\ncommand = 'echo t >> ran.log; test ! -e fail'\nsources = ['in.txt']\n";
    let t = Test::new(with);
    t.write("in.txt", "1");
    run(&t, &[]);
    t.write(
        "jobs.toml",
        "[jobs.t]\ncommand = 'echo t >> ran.log; test ! -e fail'\n",
    );
    t.write("fail", "");
    t.run_with(&["run", "jobs.toml"]).assert_code(1);
    std::fs::remove_file(t.path("fail")).unwrap();
    t.write("jobs.toml", with);
    let (ran, _, _) = run(&t, &[]);
    assert_eq!(ran, ["t"], "the last run of this task failed");
    // An mtime far in the future.
    touch(
        &t.path("in.txt"),
        SystemTime::UNIX_EPOCH + Duration::from_secs(9_300_000_000),
    );
    let (ran, _, _) = run(&t, &[]);
    assert!(ran.is_empty());
}

/// A success whose output could not be hashed (a link to nothing when it ended) is not
/// recorded as up to date: once the output exists, the task still runs.
#[test]
fn a_success_with_an_unhashed_output_is_not_up_to_date_later() {
    let t = Test::new(
        "[jobs.o]\ncommand = 'echo o >> ran.log; ln -sf target.txt out.txt'\nsources = ['in.txt']\noutputs = ['out.txt']\n",
    );
    t.write("in.txt", "1");
    let out = t.run_with(&["run", "jobs.toml"]);
    out.assert_code(0).assert_stderr_has(
        "o: succeeded, but its output out.txt: a symbolic link to nothing: it will run again next time",
    );
    t.write("target.txt", "now there");
    let (ran, _, _) = run(&t, &[]);
    assert_eq!(ran, ["o"], "its output was never recorded");
    let (ran, _, _) = run(&t, &[]);
    assert!(ran.is_empty());
}

/// A run that does not hold the state (another run does) records nothing, but a task of
/// it that fails still forgets the older success.
#[test]
fn a_failure_in_a_run_without_the_state_forgets_the_older_success() {
    let t = Test::new(
        "[jobs.t]\ncommand = 'echo t >> ran.log; test ! -e fail'\nsources = ['in.txt']\n",
    );
    t.write("in.txt", "1");
    run(&t, &[]);
    // Another run holds the state's lock.
    let lock = std::fs::File::open(t.path(".runner/jobs.toml/lock")).unwrap();
    // SAFETY: flock on a descriptor this test owns.
    assert_eq!(
        unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) },
        0
    );
    t.write("fail", "");
    t.run_with(&["run", "jobs.toml", "--force"])
        .assert_code(1)
        .assert_stderr_has("this run is not journaled");
    drop(lock);
    std::fs::remove_file(t.path("fail")).unwrap();
    let (ran, _, _) = run(&t, &[]);
    assert_eq!(ran, ["t"], "its last run failed");
}

/// Ctrl-C while a task's sources are being hashed stops the run at once; the task
/// never starts.
#[test]
fn ctrl_c_while_hashing_sources_stops_the_run_at_once() {
    let t = Test::new("[jobs.big]\ncommand = 'echo big >> ran.log'\nsources = ['big.bin']\n");
    // 64 GB of holes: minutes of hashing, no disk.
    let big = std::fs::File::create(t.path("big.bin")).unwrap();
    big.set_len(64 << 30).unwrap();
    drop(big);
    let mut runner = t.spawn();
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: signalling the runner this test started, by its pid.
    unsafe { libc::kill(runner.id() as i32, libc::SIGINT) };
    let started = std::time::Instant::now();
    let ended = crate::util::wait_for(Duration::from_secs(30), || {
        runner.try_wait().unwrap().is_some()
    });
    if !ended {
        let _ = runner.kill();
    }
    let status = runner.wait().unwrap();
    assert!(ended, "still hashing after 30 s");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(status.code(), Some(130));
    assert!(!t.path("ran.log").exists(), "the task never started");
}

#[test]
fn an_empty_alternative_matches_its_folder_and_one_that_cannot_is_refused() {
    let t =
        Test::new("[jobs.sum]\ncommand = 'echo sum >> ran.log'\nsources = ['data{,2}/*.csv']\n");
    t.write("data/a.csv", "1");
    t.write("data2/b.csv", "2");
    run(&t, &[]);
    // A change in `data/` is a change of a source: the empty alternative is one.
    t.write("data/a.csv", "10");
    let (ran, tasks, _) = run(&t, &[]);
    assert_eq!(ran, ["sum"], "{tasks:?}");
    assert_eq!(reason_of(&tasks, "sum").1, "source changed: data/a.csv");

    // An empty alternative that would leave an empty folder name is a load error.
    let t = Test::new("[jobs.a]\ncommand = 'true'\nsources = ['a/{b,}/c.txt']\n");
    t.run_with(&["check", "jobs.toml"])
        .assert_code(2)
        .assert_stderr_has("would leave an empty folder name");
}

#[test]
fn a_loop_of_symbolic_links_among_sources_is_called_a_loop() {
    let t = Test::new("[jobs.read]\ncommand = 'echo read >> ran.log'\nsources = ['in/*']\n");
    std::fs::create_dir_all(t.path("in")).unwrap();
    std::os::unix::fs::symlink("b", t.path("in/a")).unwrap();
    std::os::unix::fs::symlink("a", t.path("in/b")).unwrap();
    let (ran, tasks, stderr) = run(&t, &[]);
    assert_eq!(ran, ["read"]);
    let reason = reason_of(&tasks, "read").1;
    assert!(
        reason.starts_with("cannot read source in/")
            && reason.ends_with(": a loop of symbolic links"),
        "{reason}"
    );
    assert!(
        stderr.contains(": a loop of symbolic links; it runs"),
        "{stderr}"
    );
}

#[test]
fn sources_on_a_stream_are_a_warning_and_reasons_stay_true() {
    let t = Test::new(
        "[jobs.list]\ncommand = 'echo p >> ran.log; echo one'\nto = 'q'\nsources = ['in.txt']\n\
         [jobs.sink]\nstdin = { queue = 'r' }\ncommand = 'cat > /dev/null'\noutputs = ['x']\n\
         [jobs.feed]\ncommand = 'echo x'\nto = 'r'\n\
         [jobs.use]\nitems = { queue = 'q' }\ncommand = 'echo {item} >> ran.log'\nsources = ['in.txt']\n",
    );
    t.write("in.txt", "1");
    for command in ["check", "plan"] {
        let out = t.run_with(&[command, "jobs.toml"]);
        out.assert_code(0)
            .assert_stderr_has("warning: `sources` of job `list` can never make it up to date: its stdout feeds a queue, so it always runs")
            .assert_stderr_has("jobs.toml:4:")
            .assert_stderr_has("warning: `outputs` of job `sink` can never make it up to date: it reads a queue on stdin, so it always runs");
        assert!(!out.stderr.contains("job `use`"), "{}", out.stderr);
    }
    let (ran, tasks, stderr) = run(&t, &[]);
    assert!(
        stderr.contains("warning: `sources` of job `list`"),
        "{stderr}"
    );
    assert_eq!(ran, ["one", "p"]);
    // The first run: it never ran, whatever it feeds.
    assert_eq!(reason_of(&tasks, "list").1, "never ran");
    assert_eq!(reason_of(&tasks, "sink").1, "never ran");
    let (_, tasks, _) = run(&t, &[]);
    assert_eq!(
        reason_of(&tasks, "list").1,
        "its stdout feeds a queue: it runs again"
    );
    let (_, tasks, _) = run(&t, &["--force"]);
    assert_eq!(reason_of(&tasks, "list").1, "forced");
}

#[test]
fn names_are_bytes_never_their_escaped_display() {
    use std::os::unix::ffi::OsStrExt;
    let t = Test::new(
        "[jobs.read]\ncommand = 'echo read >> ran.log'\nsources = ['in/*', \"tab\\there.txt\"]\n",
    );
    let name = |bytes: &[u8]| t.path("in").join(std::ffi::OsStr::from_bytes(bytes));
    std::fs::create_dir_all(t.path("in")).unwrap();
    // Each pair shows the same (`\x09`, `\xFF`), and is two files.
    for (bytes, text) in [
        (&b"a\tb"[..], "tab"),
        (b"a\\x09b", "escaped tab"),
        (b"c\r", "cr"),
        (b"d\xff", "ff"),
        (b"d\\xFF", "escaped ff"),
    ] {
        std::fs::write(name(bytes), text).unwrap();
    }
    t.write("tab\there.txt", "plain");
    let (ran, tasks, stderr) = run(&t, &[]);
    assert_eq!(ran, ["read"]);
    assert_eq!(reason_of(&tasks, "read").1, "never ran", "{stderr}");
    let (ran, tasks, stderr) = run(&t, &[]);
    assert!(ran.is_empty(), "{tasks:?} {stderr}");
    // The real file with a tab changes (the one named with its escape does not).
    std::fs::write(name(b"a\tb"), "tab, changed").unwrap();
    let (ran, tasks, _) = run(&t, &[]);
    assert_eq!(ran, ["read"]);
    assert_eq!(reason_of(&tasks, "read").1, "source changed: in/a\\x09b");
    run(&t, &[]);
    std::fs::write(name(b"d\xff"), "ff, changed").unwrap();
    std::fs::write(name(b"c\r"), "cr, changed").unwrap();
    let (ran, tasks, _) = run(&t, &[]);
    assert_eq!(ran, ["read"]);
    assert_eq!(
        reason_of(&tasks, "read").1,
        "source changed: in/c\\x0D, in/d\\xFF"
    );
    // A source removed is one file, not the other that shows the same.
    std::fs::remove_file(name(b"d\\xFF")).unwrap();
    let (_, tasks, _) = run(&t, &[]);
    assert_eq!(reason_of(&tasks, "read").1, "source removed: in/d\\xFF");
}

/// Rewrites every stamp of `t` as if its outputs had been written at `place`.
fn stamps_written_at(t: &Test, place: &str) {
    for dir in std::fs::read_dir(t.path(".runner/jobs.toml/stamps")).unwrap() {
        for stamp in std::fs::read_dir(dir.unwrap().path()).unwrap() {
            let path = stamp.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let text = text.replace("\"elsewhere\":null", &format!("\"elsewhere\":{place:?}"));
            std::fs::write(&path, text).unwrap();
        }
    }
}

#[test]
fn outputs_written_on_another_machine_are_trusted_only_when_told() {
    let t = Test::new(
        "[jobs.make]\ncommand = 'echo x > out.txt && echo make >> ran.log'\nsources = ['in.txt']\noutputs = ['out.txt']\n",
    );
    t.write("in.txt", "1");
    run(&t, &[]);
    // As a worker on another machine would have recorded them: not visible here.
    stamps_written_at(&t, "far.invalid:/w");
    std::fs::remove_file(t.path("out.txt")).unwrap();
    // Not told: a missing output is missing, wherever it was written.
    let (ran, tasks, _) = run(&t, &[]);
    assert_eq!(ran, ["make"]);
    assert_eq!(
        reason_of(&tasks, "make").1,
        "output missing: out.txt (written on far.invalid:/w; --trust-remote-outputs trusts it)"
    );
    // Told: trusted, by the plan and the run alike.
    stamps_written_at(&t, "far.invalid:/w");
    std::fs::remove_file(t.path("out.txt")).unwrap();
    let plan = t.run_with(&["plan", "jobs.toml", "--trust-remote-outputs"]);
    plan.assert_code(0).assert_stdout_has("up to date");
    let (ran, tasks, _) = run(&t, &["--trust-remote-outputs"]);
    assert!(ran.is_empty(), "{tasks:?}");
    assert_eq!(reason_of(&tasks, "make").0, "up_to_date");
}
