//! Output modes (`lines`, `grouped`, `keep-order`, `--no-label`), CI logs (GitHub
//! Actions groups and annotations, GitLab sections, the job summary) and `--trace`.

use crate::util::{Collected, Test};
use std::process::Stdio;
use std::time::Duration;

/// Two tasks printing 1,000 lines each on both streams; each waits half way for the
/// other to be half way too, so that printed as they come their lines must interleave.
const TWO_TALKERS: &str = r#"
pool = 2
[jobs.talk]
command = """
other=a; [ $RUNNER_ITEM = a ] && other=b
i=0
while [ $i -lt 1000 ]; do
  echo "$RUNNER_ITEM out $i"; echo "$RUNNER_ITEM err $i" >&2
  i=$((i+1))
  if [ $i = 500 ]; then touch $RUNNER_ITEM.half; while [ ! -e $other.half ]; do sleep 0.01; done; fi
done
"""
items = ["a", "b"]
"#;

/// The labels of a stream's task lines, with runs of one label collapsed.
fn runs(text: &str) -> Vec<String> {
    let mut runs: Vec<String> = Vec::new();
    for line in text.lines().filter(|l| l.starts_with("[talk:")) {
        let label = line.split(']').next().unwrap().to_string();
        if runs.last() != Some(&label) {
            runs.push(label);
        }
    }
    runs
}

#[test]
fn grouped_output_keeps_each_tasks_stream_together() {
    let t = Test::new(TWO_TALKERS).args(&["--output", "grouped"]);
    let out = t.run();
    out.assert_code(0);
    // Each task's stdout is one block, and so is its stderr, whole and in order.
    for (stream, text) in [("out", &out.stdout), ("err", &out.stderr)] {
        let mut blocks = runs(text);
        blocks.sort();
        assert_eq!(blocks, ["[talk:a", "[talk:b"], "{stream}: {text}");
        for item in ["a", "b"] {
            let lines: Vec<String> = text
                .lines()
                .filter_map(|l| l.strip_prefix(&format!("[talk:{item}] ")))
                .map(str::to_string)
                .collect();
            let expected: Vec<String> = (0..1000).map(|i| format!("{item} {stream} {i}")).collect();
            assert_eq!(lines, expected);
        }
    }
    // The same file in lines mode does interleave (the test above could fail).
    let lines = Test::new(TWO_TALKERS).run();
    assert!(runs(&lines.stdout).len() > 2, "{}", lines.stdout);
}

#[test]
fn the_jobs_own_output_key_groups_it_and_the_command_line_overrides_it() {
    let file = TWO_TALKERS.replace(
        "items = [\"a\", \"b\"]",
        "items = [\"a\", \"b\"]\noutput = \"grouped\"",
    );
    let grouped = Test::new(&file).run();
    grouped.assert_code(0);
    assert_eq!(runs(&grouped.stdout).len(), 2, "{}", grouped.stdout);
    let lines = Test::new(&file).args(&["--output", "lines"]).run();
    lines.assert_code(0);
    assert!(runs(&lines.stdout).len() > 2, "{}", lines.stdout);
}

#[test]
fn keep_order_prints_tasks_in_item_order_when_they_end_out_of_order() {
    // Item i sleeps (5 - i) tenths: they end in reverse, and print in order.
    let t = Test::new(
        "output = 'keep-order'\npool = 6\n[jobs.k]\ncommand = 'sleep 0.$((5 - RUNNER_ITEM)); echo \"item $RUNNER_ITEM\"; echo \"note $RUNNER_ITEM\" >&2'\nitems = { range = [0, 6] }\n",
    );
    let out = t.run();
    out.assert_code(0);
    let printed: Vec<&str> = out.stdout.lines().collect();
    let expected: Vec<String> = (0..6).map(|i| format!("[k:{i}] item {i}")).collect();
    assert_eq!(printed, expected);
    let notes: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("[k:"))
        .collect();
    let expected: Vec<String> = (0..6).map(|i| format!("[k:{i}] note {i}")).collect();
    assert_eq!(notes, expected);
    // They did end out of order: the progress lines say so.
    let ends: Vec<&str> = out
        .stderr
        .lines()
        .filter_map(|l| l.strip_prefix("[runner] done k:"))
        .map(|l| &l[..1])
        .collect();
    assert_eq!(ends, ["5", "4", "3", "2", "1", "0"], "{}", out.stderr);
}

#[test]
fn keep_order_goes_on_past_tasks_that_did_not_run_or_failed() {
    // `gate` fails, so `after` is skipped; in `k`, item 1 fails (after a retry) and
    // item 2 is slow: everything still prints, in order.
    let t = Test::new(
        "output = 'keep-order'\npool = 4\n[jobs.k]\ncommand = 'test $RUNNER_ITEM = 2 && sleep 0.3; echo \"k $RUNNER_ITEM try $RUNNER_ATTEMPT\"; test $RUNNER_ITEM != 1'\nitems = { range = [0, 4] }\nretries = 1\n[jobs.gate]\ncommand = 'false'\n[jobs.after]\ncommand = 'echo never'\nneeds = ['gate']\n",
    );
    let out = t.run();
    out.assert_code(1);
    let printed: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        printed,
        [
            "[k:0] k 0 try 1",
            "[k:1] k 1 try 1",
            "[k:1] k 1 try 2",
            "[k:2] k 2 try 1",
            "[k:3] k 3 try 1"
        ]
    );
}

#[test]
fn grouped_output_still_shows_progress_while_a_task_runs() {
    // The task prints, then waits for a file: its line is held back, but its start is
    // news now, and so is the heartbeat.
    let t = Test::new(
        "[jobs.slow]\ncommand = 'echo early; while [ ! -e go ]; do sleep 0.02; done; echo late'\n",
    )
    .args(&["--output", "grouped"])
    .env("RUNNER_HEARTBEAT", "200ms");
    let mut child = t
        .command()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = Collected::start(child.stdout.take().unwrap());
    let err = Collected::start(child.stderr.take().unwrap());
    assert!(
        err.wait_for(Duration::from_secs(10), "[runner] start slow pid"),
        "{}",
        err.now()
    );
    assert!(
        err.wait_for(Duration::from_secs(10), "slow (")
            && err.wait_for(
                Duration::from_secs(10),
                "output grouped, shown when it ends"
            ),
        "{}",
        err.now()
    );
    assert_eq!(out.now(), "", "grouped output waits for the task's end");
    t.write("go", "");
    assert!(child.wait().unwrap().success());
    assert_eq!(out.finish(), "[slow] early\n[slow] late\n");
}

#[test]
fn a_gigabyte_of_grouped_output_keeps_the_runner_small() {
    let t = Test::new("[jobs.flood]\ncommand = 'yes 0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789 | head -c 1000000000'\n")
        .args(&["--output", "grouped", "--report", "report.json"]);
    let mut child = t
        .command()
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Counted as it comes: every byte arrives, labelled.
    let mut stdout = child.stdout.take().unwrap();
    let (mut bytes, mut lines) = (0u64, 0u64);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = std::io::Read::read(&mut stdout, &mut buf).unwrap();
        if n == 0 {
            break;
        }
        bytes += n as u64;
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
    }
    assert!(child.wait().unwrap().success());
    // 101-byte lines: 9,900,990 whole ones and a last one of 10 bytes (ended by the
    // runner), each with "[flood] " before it.
    assert_eq!(lines, 9_900_991);
    assert_eq!(bytes, 1_000_000_000 + 1 + lines * 8);
    let kib = crate::queues::peak_kib(&t);
    assert!(kib < 64 * 1024, "peak {kib} KiB");
}

#[test]
fn no_label_passes_task_lines_as_they_are() {
    let t = Test::new("[jobs.a]\ncommand = 'echo one; echo; echo two >&2'\n").args(&["--no-label"]);
    let out = t.run();
    out.assert_code(0);
    assert_eq!(out.stdout, "one\n\n");
    assert!(
        out.stderr.starts_with("two\n") || out.stderr.contains("\ntwo\n"),
        "{}",
        out.stderr
    );
    let grouped = Test::new("[jobs.a]\ncommand = 'echo one; echo two'\n")
        .args(&["--no-label", "--output", "grouped"])
        .run();
    assert_eq!(grouped.stdout, "one\ntwo\n");
}

/// A task that tries every way to slip a workflow command into a GitHub Actions log.
const INJECTOR: &str = r#"
[jobs.sly]
command = "printf '::add-mask::secret\n::error::injected\n  ::warning::indented\nsee ##[error]legacy\na\r::notice::after a CR\n'; echo 'it broke 100%' >&2; exit 3"
items = ["x,y:z"]
[jobs.fine]
command = "echo fine"
"#;

/// The workflow commands the GitHub Actions runner would find in `log`: it splits
/// lines at LF, CR LF and a lone CR, takes a line whose trimmed start is `::` as a
/// command, and also `##[` anywhere in a line (the legacy form).
fn github_commands(log: &str) -> Vec<String> {
    log.split(['\n', '\r'])
        .filter(|l| l.trim_start().starts_with("::") || l.contains("##["))
        .map(str::to_string)
        .collect()
}

#[test]
fn github_actions_gets_groups_and_annotations_and_no_injected_command() {
    let t = Test::new(INJECTOR)
        .args(&["--output", "grouped"])
        .env("GITHUB_ACTIONS", "true");
    let summary = t.path("summary.md");
    let t = t.env("GITHUB_STEP_SUMMARY", summary.to_str().unwrap());
    t.write("summary.md", "earlier step\n");
    let out = t.run();
    out.assert_code(1);
    // Only the runner's own commands: a group per task and one annotation, escaped.
    let mut commands = github_commands(&out.stdout);
    commands.extend(github_commands(&out.stderr));
    commands.sort();
    let mut expected = vec![
        "::endgroup::".to_string(),
        "::endgroup::".to_string(),
        "::error title=sly:x%2Cy%3Az failed::exit 3: it broke 100%25".to_string(),
        "::group::fine".to_string(),
        "::group::sly:x,y:z".to_string(),
    ];
    expected.sort();
    assert_eq!(commands, expected, "{}", out.stdout);
    // The task's lines are all there, labelled, inside its group, with its stderr.
    let group: Vec<&str> = out
        .stdout
        .lines()
        .skip_while(|l| *l != "::group::sly:x,y:z")
        .take_while(|l| *l != "::endgroup::")
        .collect();
    assert_eq!(
        group,
        [
            "::group::sly:x,y:z",
            "[sly:x,y:z] ::add-mask::secret",
            "[sly:x,y:z] ::error::injected",
            "[sly:x,y:z]   ::warning::indented",
            "[sly:x,y:z] see ##\u{200B}[error]legacy",
            "[sly:x,y:z] a\r[sly:x,y:z] ::notice::after a CR",
            "[sly:x,y:z] it broke 100%",
        ]
    );
    // The job summary was appended to, as Markdown.
    let md = t.read("summary.md");
    assert!(
        md.starts_with("earlier step\n### runner: jobs.toml — exit status 1\n"),
        "{md}"
    );
    assert!(
        md.contains("| sly:x,y:z | exit 3 | it broke 100% |"),
        "{md}"
    );
    // With --no-label the task's lines pass as they are: the user asked for it.
    let raw = Test::new(INJECTOR)
        .args(&["--no-label", "sly"])
        .env("GITHUB_ACTIONS", "true")
        .run();
    assert!(
        raw.stdout.lines().any(|l| l == "::error::injected"),
        "{}",
        raw.stdout
    );
}

#[test]
fn github_actions_lines_mode_labels_and_annotates_too() {
    let out = Test::new(INJECTOR)
        .args(&["--output", "lines"])
        .env("GITHUB_ACTIONS", "true")
        .run();
    out.assert_code(1);
    let commands = github_commands(&out.stdout);
    assert_eq!(
        commands,
        ["::error title=sly:x%2Cy%3Az failed::exit 3: it broke 100%25"],
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("::group::"));
}

#[test]
fn gitlab_ci_gets_a_collapsible_section_per_task() {
    let out = Test::new(
        "[jobs.t]\ncommand = 'echo hi $RUNNER_ITEM; echo there >&2'\nitems = ['a', 'b']\n",
    )
    .args(&["--output", "grouped", "--pool", "1"])
    .env("GITLAB_CI", "true")
    .run();
    out.assert_code(0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 8, "{}", out.stdout);
    for (n, item) in [(0, "a"), (4, "b")] {
        let start = lines[n];
        let (head, title) = start.split_once("\r\x1b[0K").unwrap();
        assert_eq!(title, format!("t:{item}"));
        let name = head
            .strip_prefix("\x1b[0Ksection_start:")
            .and_then(|r| r.strip_suffix("[collapsed=true]"))
            .unwrap_or_else(|| panic!("{start:?}"));
        let (_, section) = name.split_once(':').unwrap();
        assert_eq!(lines[n + 1], format!("[t:{item}] hi {item}"));
        assert_eq!(lines[n + 2], format!("[t:{item}] there"));
        let end = lines[n + 3];
        // Its start and end are the attempt's (GitLab shows the time between).
        let started: u64 = name.split(':').next().unwrap().parse().unwrap();
        let ended: u64 = end.split(':').nth(1).unwrap().parse().unwrap();
        assert!(started <= ended, "{start:?} {end:?}");
        assert!(
            end.starts_with("\x1b[0Ksection_end:")
                && end.ends_with(&format!(":{section}\r\x1b[0K")),
            "{end:?}"
        );
    }
}

#[test]
fn a_trace_has_an_event_per_attempt_with_slots_named() {
    // b fails once and is retried; c is allowed to fail; pool 2.
    let t = Test::new(
        "pool = 2\n[jobs.t]\ncommand = 'test $RUNNER_ITEM != b || test $RUNNER_ATTEMPT = 2'\nitems = ['a', 'b', 'c', 'd']\nretries = 1\n[jobs.bad]\ncommand = 'exit 4'\nallow_failure = true\n",
    )
    .args(&["--trace", "trace.json"]);
    t.run().assert_code(0);
    let trace: serde_json::Value =
        serde_json::from_str(&t.read("trace.json")).expect("the trace is JSON");
    let events = trace["traceEvents"].as_array().unwrap();
    let x: Vec<&serde_json::Value> = events.iter().filter(|e| e["ph"] == "X").collect();
    assert_eq!(x.len(), 6, "{trace:#}");
    let named = |what: &str, pid: &serde_json::Value, tid: Option<&serde_json::Value>| {
        events.iter().any(|e| {
            e["ph"] == "M"
                && e["name"] == what
                && &e["pid"] == pid
                && tid.is_none_or(|t| &e["tid"] == t)
        })
    };
    for e in &x {
        assert!(
            e["ts"].as_i64().unwrap() >= 0 && e["dur"].as_u64().is_some(),
            "{e}"
        );
        assert!(named("process_name", &e["pid"], None), "{e}");
        assert!(named("thread_name", &e["pid"], Some(&e["tid"])), "{e}");
        assert!(e["tid"].as_u64().unwrap() < 2, "{e}");
    }
    let b: Vec<&&serde_json::Value> = x.iter().filter(|e| e["name"] == "t:b").collect();
    assert_eq!(b.len(), 2);
    assert_eq!(
        (&b[0]["args"]["outcome"], &b[1]["args"]["outcome"]),
        (
            &serde_json::json!("retried"),
            &serde_json::json!("succeeded")
        )
    );
    assert!(b[1]["ts"].as_i64() >= b[0]["ts"].as_i64());
    let bad = x.iter().find(|e| e["name"] == "bad").unwrap();
    assert_eq!(bad["cat"], "bad");
    assert_eq!(bad["args"]["end"], "exit 4");
    assert_eq!(bad["args"]["outcome"], "failed (allowed)");
}

#[test]
fn output_mistakes_are_named_before_anything_runs() {
    let t = Test::new("[jobs.a]\ncommand = 'touch ran'\noutput = 'group'\n");
    let out = t.run();
    out.assert_code(2)
        .assert_stderr_has("jobs.toml:3:")
        .assert_stderr_has(
            "`output` must be \"lines\", \"grouped\" or \"keep-order\", not \"group\"",
        )
        .assert_stderr_has("did you mean \"grouped\"?");
    let t = Test::new("[jobs.a]\ncommand = 'touch ran'\n");
    t.run_with(&["--output", "sideways"])
        .assert_code(2)
        .assert_stderr_has("invalid value 'sideways'");
    t.run_with(&["--trace", "no/such/folder/trace.json"])
        .assert_code(2)
        .assert_stderr_has("no/such/folder/trace.json");
    assert!(!t.path("ran").exists(), "nothing ran");
}

#[test]
fn in_github_actions_the_runners_own_lines_quote_tasks_safely() {
    // The item, the heartbeat's last line, and the summary's stderr tail all carry what
    // a task chose to print.
    let t = Test::new(
        "[jobs.q]\ncommand = 'printf \"x ##[error]from-heartbeat\\n\"; sleep 1; printf \"p\\r::error file=x::via-summary\\n##[warning]legacy\\n\" >&2; exit 3'\nitems = ['##[warning]item']\n[jobs.src]\ncommand = 'true'\nsources = [\"data/x\\n::error::from-a-file-name\"]\n",
    )
    // Lines mode (grouped is the default here): the heartbeat shows a task's last line.
    .args(&["--output", "lines"])
    .env("GITHUB_ACTIONS", "true")
    .env("RUNNER_HEARTBEAT", "200ms");
    // A folder where a source file should be, its name holding a line feed: the note
    // about it names it on one line.
    std::fs::create_dir_all(t.path("data/x\n::error::from-a-file-name")).unwrap();
    let out = t.run();
    out.assert_code(1)
        .assert_stderr_has("from-heartbeat")
        .assert_stderr_has("via-summary")
        .assert_stderr_has("data/x\\x0A::error::from-a-file-name");
    let mut commands = github_commands(&out.stdout);
    commands.extend(github_commands(&out.stderr));
    assert_eq!(
        commands,
        ["::error title=q:##\u{200B}[warning]item failed::exit 3: ##\u{200B}[warning]legacy"],
        "--- stdout\n{}\n--- stderr\n{}",
        out.stdout,
        out.stderr
    );
}

#[test]
fn annotations_name_tasks_that_never_started_and_leave_queue_items_out() {
    // `p` feeds its stdout to a queue and fails: its items are not its error. `b`'s
    // items file shrinks before it starts: its task fails without a process.
    let t = Test::new(
        "[jobs.p]\ncommand = 'echo secret-item; exit 1'\nto = 'q'\n[jobs.c]\ncommand = 'echo got {item}'\nitems = { queue = 'q' }\n[jobs.shrink]\ncommand = 'printf \"a\\n\" > list.txt'\n[jobs.b]\ncommand = 'echo item {item}'\nitems = { file = 'list.txt' }\nneeds = ['shrink']\n",
    )
    .env("GITHUB_ACTIONS", "true");
    let summary = t.path("summary.md");
    let t = t.env("GITHUB_STEP_SUMMARY", summary.to_str().unwrap());
    t.write("list.txt", "a\nb\nc\n");
    let out = t.run();
    out.assert_code(1);
    let errors: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("::error"))
        .collect();
    assert!(
        errors.contains(&"::error title=p failed::exit 1"),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("::error title=b:") && e.contains("did not start")),
        "{errors:?}"
    );
    assert!(!out
        .stdout
        .contains("::error title=p failed::exit 1: secret-item"));
    let md = t.read("summary.md");
    assert!(md.contains("| p | exit 1 |  |"), "{md}");
}

#[test]
fn a_failed_write_of_grouped_output_is_in_the_summary_and_the_report() {
    // The group is written after the task ended: the run waits for it before it states
    // its outcome.
    for mode in ["grouped", "keep-order"] {
        let t = Test::new("[jobs.a]\ncommand = 'echo hello'\n")
            .args(&["--output", mode, "--report", "r.json"]);
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let out = t.command().stdout(full).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("exit status 1: not everything asked for was written"),
            "{stderr}"
        );
        let report: serde_json::Value = serde_json::from_str(&t.read("r.json")).unwrap();
        assert_eq!(report["run"]["exit_status"], 1, "{mode}");
    }
}

#[test]
fn keep_order_gives_back_the_disk_of_output_it_printed() {
    // Item 1 prints 2 MB and ends while item 0 still runs: its output waits on disk.
    // Item 3 ends too and waits behind item 2. When item 0 ends, item 1's output is
    // printed while item 3's still waits: the file keeps its size, not its blocks.
    let t = Test::new(
        "output = 'keep-order'\npool = 4\n[jobs.k]\ncommand = 'case $RUNNER_ITEM in 0|2) while [ ! -e go$RUNNER_ITEM ]; do sleep 0.02; done;; 1) head -c 2000000 /dev/zero | tr \"\\\\0\" x | fold -w 1000; echo end1;; esac; echo done $RUNNER_ITEM'\nitems = { range = [0, 4] }\n",
    );
    let mut child = Stopped(
        t.command()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let child = &mut child.0;
    let out = Collected::start(child.stdout.take().unwrap());
    let err = Collected::start(child.stderr.take().unwrap());
    for ended in ["done k:1 ", "done k:3 "] {
        assert!(
            err.wait_for(Duration::from_secs(20), ended),
            "{}",
            err.now()
        );
    }
    t.write("go0", "");
    assert!(
        out.wait_for(Duration::from_secs(20), "[k:1] done 1"),
        "{}",
        err.now()
    );
    // The waiting file: unnamed (deleted), at least 2 MB long.
    let waiting: Vec<(u64, u64)> = std::fs::read_dir(format!("/proc/{}/fd", child.id()))
        .unwrap()
        .flatten()
        .filter(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy().ends_with("(deleted)"))
        })
        .filter_map(|fd| std::fs::metadata(fd.path()).ok())
        .map(|m| {
            use std::os::unix::fs::MetadataExt;
            (m.size(), m.blocks() * 512)
        })
        .filter(|(size, _)| *size >= 2_000_000)
        .collect();
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    assert!(
        waiting[0].1 < 1_000_000,
        "its disk was given back: {waiting:?}"
    );
    assert!(
        !out.now().contains("[k:3]"),
        "item 3 still waits for item 2"
    );
    t.write("go2", "");
    assert!(child.wait().unwrap().success());
    let printed = out.finish();
    let order: Vec<&str> = printed.lines().filter(|l| l.contains("] done ")).collect();
    assert_eq!(
        order,
        [
            "[k:0] done 0",
            "[k:1] done 1",
            "[k:2] done 2",
            "[k:3] done 3"
        ]
    );
}

/// A runner the test started, stopped if the test fails before it ends (its tasks wait
/// for files the test would have made).
struct Stopped(std::process::Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        // Only while it runs: once reaped, its pid may be another process's.
        if let Ok(None) = self.0.try_wait() {
            // SAFETY: a signal to the child this test started, by its pid, unreaped.
            unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
            let _ = self.0.wait();
        }
    }
}

/// Three long items alike in their first 40 characters, one with a tab, and one that
/// tries `##[`: every task fails.
const LONG_ITEMS: &str = r###"[jobs.get]
command = "echo no >&2; exit 1"
items = [
  "https://example.com/downloads/releases/2026/file-1.tar.gz",
  "https://example.com/downloads/releases/2026/file-2.tar.gz",
  "https://example.com/downloads/releases/2026/file-3.tar.gz",
  "tab\there",
  "##[warning]item",
]
"###;

#[test]
fn ci_titles_name_each_task_whole_and_carry_no_workflow_command() {
    let t = Test::new(LONG_ITEMS)
        .args(&["--output", "grouped", "--pool", "1"])
        .env("GITHUB_ACTIONS", "true");
    let summary = t.path("summary.md");
    let t = t.env("GITHUB_STEP_SUMMARY", summary.to_str().unwrap());
    let out = t.run();
    out.assert_code(1);
    let url = |n: u32| format!("get:https://example.com/downloads/releases/2026/file-{n}.tar.gz");
    let zw = "##\u{200B}[";
    let groups: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("::group::"))
        .collect();
    let want: Vec<String> = [
        url(1),
        url(2),
        url(3),
        "get:tab\\there".to_string(),
        format!("get:{zw}warning]item"),
    ]
    .iter()
    .map(|n| format!("::group::{n}"))
    .collect();
    assert_eq!(groups, want, "{}", out.stdout);
    let errors: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("::error title="))
        .collect();
    // (The item's `:` escaped, as a property of a workflow command needs.)
    let want: Vec<String> = want
        .iter()
        .map(|group| {
            let item = group.strip_prefix("::group::get:").unwrap();
            format!(
                "::error title=get:{} failed::exit 1: no",
                item.replace(':', "%3A")
            )
        })
        .collect();
    assert_eq!(errors, want, "{}", out.stdout);
    assert!(
        !github_commands(&out.stdout)
            .iter()
            .any(|l| l.contains("##[")),
        "{}",
        out.stdout
    );
    // The job summary lists the three failures apart.
    let md = t.read("summary.md");
    for n in 1..=3 {
        let row = format!(
            "| get:https://example.com/downloads/releases/2026/file-{n}.tar.gz | exit 1 | no |"
        );
        assert!(md.contains(&row), "{md}");
    }
    // GitLab's section titles too.
    let out = Test::new(LONG_ITEMS)
        .args(&["--output", "grouped", "--pool", "1"])
        .env("GITLAB_CI", "true")
        .run();
    let titles: Vec<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("\x1b[0Ksection_start:"))
        .filter_map(|l| l.split_once("\r\x1b[0K").map(|(_, title)| title))
        .collect();
    assert_eq!(
        titles,
        [
            url(1),
            url(2),
            url(3),
            "get:tab\\there".to_string(),
            "get:##[warning]item".to_string()
        ],
        "{:?}",
        out.stdout
    );
}

/// Two jobs: one whose tasks print two lines each, and one that chooses its own mode.
const TWO_JOBS: &str = "[jobs.t]\ncommand = 'echo one $RUNNER_ITEM; echo two $RUNNER_ITEM'\nitems = ['a', 'b']\n[jobs.own]\ncommand = 'echo mine'\noutput = 'lines'\n";

/// In GitHub Actions and GitLab CI the default is grouped output, folded per task;
/// `--output`, the file's `output` and a job's own `output` still choose.
#[test]
fn ci_folds_each_task_by_default_unless_the_file_or_the_command_line_chooses() {
    let grouped_in_github = |out: &crate::util::Output| {
        ["a", "b"].iter().all(|item| {
            out.stdout.contains(&format!(
                "::group::t:{item}\n[t:{item}] one {item}\n[t:{item}] two {item}\n::endgroup::\n"
            ))
        })
    };
    let out = Test::new(TWO_JOBS).env("GITHUB_ACTIONS", "true").run();
    out.assert_code(0);
    assert!(grouped_in_github(&out), "{}", out.stdout);
    // The job that says `output = 'lines'` is not folded.
    assert!(!out.stdout.contains("::group::own"), "{}", out.stdout);
    out.assert_stdout_has("[own] mine\n");
    // --output lines: no group at all.
    let out = Test::new(TWO_JOBS)
        .args(&["--output", "lines"])
        .env("GITHUB_ACTIONS", "true")
        .run();
    out.assert_code(0).assert_stdout_has("[t:a] one a\n");
    assert!(!out.stdout.contains("::group::"), "{}", out.stdout);
    // The file's top-level `output` chooses too.
    let out = Test::new(&format!("output = 'lines'\n{TWO_JOBS}"))
        .env("GITHUB_ACTIONS", "true")
        .run();
    out.assert_code(0).assert_stdout_has("[t:b] two b\n");
    assert!(!out.stdout.contains("::group::"), "{}", out.stdout);
    // Outside CI, lines as before.
    let out = Test::new(TWO_JOBS).run();
    assert!(!out.stdout.contains("::group::"), "{}", out.stdout);
    // GitLab: a collapsible section per task by default, none with --output lines.
    let sections = |out: &crate::util::Output| out.stdout.matches("section_start:").count();
    let out = Test::new(TWO_JOBS).env("GITLAB_CI", "true").run();
    out.assert_code(0);
    assert_eq!(sections(&out), 2, "{}", out.stdout);
    assert_eq!(
        out.stdout.matches("section_end:").count(),
        2,
        "{}",
        out.stdout
    );
    for item in ["a", "b"] {
        out.assert_stdout_has(&format!(
            "\r\x1b[0Kt:{item}\n[t:{item}] one {item}\n[t:{item}] two {item}\n"
        ));
    }
    let out = Test::new(TWO_JOBS)
        .args(&["--output", "lines"])
        .env("GITLAB_CI", "true")
        .run();
    out.assert_code(0).assert_stdout_has("[t:a] two a\n");
    assert_eq!(sections(&out), 0, "{}", out.stdout);
}
