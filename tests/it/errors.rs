//! Every invalid job file exits 2 with the file, line, column and a snippet, and runs
//! nothing.

use crate::util::Test;

/// Runs `source` (which would create `ran` if anything ran) and checks the message.
#[track_caller]
fn rejected(source: &str, message: &str, line_col: &str) -> String {
    let source = format!("[jobs.marker]\ncommand = 'touch ran'\n{source}");
    let t = Test::new(&source);
    let out = t.run();
    out.assert_code(2).assert_stderr_has(message);
    out.assert_stderr_has(&format!("jobs.toml:{line_col}"));
    assert!(
        !t.path("ran").exists(),
        "nothing runs when the file is invalid"
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    out.stderr
}

#[test]
fn toml_syntax_error() {
    let err = rejected("[jobs.a\ncommand = 'x'\n", "expected `]`", "3:8");
    assert!(err.contains("3 │ [jobs.a"), "snippet of the line: {err}");
}

#[test]
fn unknown_key_with_did_you_mean() {
    let err = rejected("[jobs.a]\ncomand = 'x'\n", "unknown key `comand`", "4:1");
    assert!(err.contains("did you mean `command`?"), "{err}");
    rejected("pol = 3\n", "unknown key `pol`", "3:1");
    rejected("[queues.q]\ncapacty = 3\n", "unknown key `capacty`", "4:1");
}

#[test]
fn unknown_key_far_from_any_is_listed_without_a_guess() {
    let err = rejected(
        "[jobs.a]\ncommand = 'x'\nzzzzzz = 1\n",
        "unknown key `zzzzzz`",
        "5:1",
    );
    assert!(!err.contains("did you mean"), "{err}");
}

#[test]
fn wrong_types_and_values() {
    rejected(
        "[jobs.a]\ncommand = 5\n",
        "`command` must be a string",
        "4:11",
    );
    rejected(
        "[jobs.a]\ncommand = 'x'\nretries = 'three'\n",
        "jobs.a.retries: expected an integer ≥ 0, found the string \"three\"",
        "5:11",
    );
    rejected(
        "[jobs.a]\ncommand = 'x'\ntimeout = '5 parsecs'\n",
        "`timeout` is not a duration",
        "5:11",
    );
    rejected(
        "[jobs.a]\ncommand = 'x'\nconcurrency = 0\n",
        "`concurrency` must be at least 1",
        "5:15",
    );
    rejected(
        "[jobs.a]\ncommand = 'x'\nitems = { range = [5, 1] }\n",
        "needs A ≤ B",
        "5:9",
    );
    rejected(
        "[jobs.a]\ncommand = 'x'\nitems = { rnage = [1, 2] }\n",
        "unknown key `rnage` in `items`",
        "5:9",
    );
    rejected(
        "[jobs.a]\ncommand = 'x'\nitems = 'abc'\n",
        "`items` must be an array or a table",
        "5:9",
    );
    rejected(
        "[jobs.a]\ncommand = 'x'\nsuccess_codes = [0, 300]\n",
        "an exit code is between 0 and 255",
        "5:21",
    );
}

#[test]
fn pool_zero() {
    let t = Test::new("pool = 0\n[jobs.a]\ncommand = 'touch ran'\n");
    t.run()
        .assert_code(2)
        .assert_stderr_has("`pool` must be at least 1 (got 0)")
        .assert_stderr_has("jobs.toml:1:8");
    assert!(!t.path("ran").exists());
}

#[test]
fn pool_zero_on_the_command_line() {
    let t = Test::new("[jobs.a]\ncommand = 'touch ran'\n").args(&["--pool", "0"]);
    t.run().assert_code(2).assert_stderr_has("--pool");
    assert!(!t.path("ran").exists());
}

#[test]
fn unknown_job_in_needs() {
    let err = rejected(
        "[jobs.build]\ncommand = 'x'\n[jobs.a]\ncommand = 'x'\nneeds = ['biuld']\n",
        "needs `biuld`, which is not a job",
        "7:10",
    );
    assert!(err.contains("did you mean `build`?"), "{err}");
}

#[test]
fn a_cycle_is_named() {
    rejected(
        "[jobs.a]\ncommand = 'x'\nneeds = ['b']\n[jobs.b]\ncommand = 'x'\nneeds = ['a']\n",
        "cycle: a → b → a",
        "3:7",
    );
}

#[test]
fn unknown_placeholder() {
    let err = rejected(
        "[jobs.a]\ncommand = 'echo {itme}'\n",
        "unknown placeholder `{itme}`",
        "4:17",
    );
    assert!(err.contains("did you mean `{item}`?"), "{err}");
}

#[test]
fn empty_command() {
    rejected("[jobs.a]\ncommand = ''\n", "`command` is empty", "4:11");
    rejected("[jobs.a]\ncommand = []\n", "`command` is empty", "4:11");
}

#[test]
fn missing_files() {
    rejected(
        "[jobs.a]\ncommand = 'x'\nitems = { file = 'nope.txt' }\n",
        "cannot read items file",
        "5:9",
    );
    rejected(
        "[jobs.a]\ncommand = 'x'\nstdin = { file = 'nope.txt' }\n",
        "stdin file",
        "5:9",
    );
    rejected(
        "[jobs.a]\ncommand = 'x'\ncwd = 'no-such-dir'\n",
        "is not a folder",
        "5:7",
    );
}

#[test]
fn item_inside_quotes_of_a_shell_command() {
    // Pointed at the `{item}` itself (column 18), not at the whole command string.
    let err = rejected(
        "[jobs.a]\ncommand = \"echo '{item}'\"\nitems = ['x']\n",
        "`{item}` inside single quotes",
        "4:18",
    );
    assert!(err.contains("$RUNNER_ITEM"), "{err}");
    assert!(
        err.contains("                 ^^^^^^"),
        "a caret under {{item}}: {err}"
    );
}

#[test]
fn item_in_a_command_run_by_a_shell_that_is_not_posix() {
    let err = rejected(
        "[jobs.a]\nshell = ['python3', '-c']\ncommand = 'print({item})'\nitems = ['x']\n",
        "`{item}` in a command run by `python3`, which is not a POSIX shell",
        "5:18",
    );
    assert!(err.contains("RUNNER_ITEM"), "{err}");
    // The same through the top-level shell, named by its path.
    let t = Test::new(
        "shell = ['/usr/bin/node', '-e']\n[jobs.a]\ncommand = 'console.log({item})'\nitems = ['x']\n",
    );
    let out = t.args(&["check", "jobs.toml"]).run();
    out.assert_code(2)
        .assert_stderr_has("run by `/usr/bin/node`, which is not a POSIX shell")
        .assert_stderr_has("jobs.toml:3:24")
        .assert_stderr_has("RUNNER_ITEM");
}

#[test]
fn item_in_a_command_run_by_a_posix_shell_named_by_its_path() {
    let t = Test::new(
        "[jobs.a]\nshell = ['/bin/bash', '-c']\ncommand = 'echo got {item} {index} {job}'\nitems = ['x y']\n",
    );
    let out = t.run();
    out.assert_code(0);
    assert_eq!(out.lines_of("a:x y"), ["got x y 0 a"], "{}", out.stdout);
}

/// The mistakes users make, several kinds at once (types among them): each is reported
/// in one run, in the order of the file, in the user's words.
#[test]
fn every_mistake_of_a_file_is_reported_at_once_in_line_order() {
    let t = Test::new(concat!(
        "pool = \"4\"\n",
        "fail_fast = 'yes'\n",
        "[jobs.a]\n",
        "comand = 'touch ran'\n",
        "needs = \"b\"\n",
        "timeout = 10\n",
        "retries = 99999999999999999999\n",
        "[jobs.b]\n",
        "command = \"echo '{item}'\"\n",
        "items = ['x']\n",
        "concurrency = 0\n",
        "success_codes = [0, '1']\n",
        "[jobs.c]\n",
        "command = 'touch ran'\n",
        "needs = ['bb']\n",
    ));
    let out = t.run();
    out.assert_code(2);
    let expected = [
        (
            "jobs.toml:1:8",
            "pool: expected an integer ≥ 1, found the string \"4\"",
        ),
        (
            "jobs.toml:2:13",
            "fail_fast: expected true or false, found the string \"yes\"",
        ),
        ("jobs.toml:4:1", "unknown key `comand`"),
        (
            "jobs.toml:5:9",
            "jobs.a.needs: expected an array of job names, found the string \"b\"",
        ),
        (
            "jobs.toml:6:11",
            "jobs.a.timeout: expected a duration such as \"10s\", found an integer",
        ),
        (
            "jobs.toml:7:11",
            "jobs.a.retries: expected an integer ≥ 0, found 99999999999999999999 (too large)",
        ),
        (
            "jobs.toml:9:18",
            "`{item}` inside single quotes in a shell command",
        ),
        (
            "jobs.toml:11:15",
            "`concurrency` must be at least 1 (got 0)",
        ),
        (
            "jobs.toml:12:21",
            "jobs.b.success_codes[1]: expected an exit code (an integer), found the string \"1\"",
        ),
        (
            "jobs.toml:15:10",
            "job `c` needs `bb`, which is not a job in this file",
        ),
    ];
    let mut from = 0;
    for (place, message) in expected {
        let at = out.stderr[from..]
            .find(&format!("error: {message}\n"))
            .unwrap_or_else(|| panic!("{message:?} after byte {from}:\n{}", out.stderr));
        from += at;
        let place_at = out.stderr[from..].find("jobs.toml:").expect("a place") + from;
        assert!(
            out.stderr[place_at..].starts_with(place),
            "{message:?} at {place}:\n{}",
            out.stderr
        );
        from = place_at;
    }
    assert_eq!(
        out.stderr.matches("error: ").count(),
        expected.len(),
        "{}",
        out.stderr
    );
    assert!(
        !t.path("ran").exists(),
        "nothing runs when the file is invalid"
    );
}

#[test]
fn item_with_a_nul_byte() {
    rejected(
        "[jobs.a]\ncommand = ['echo', '{item}']\nitems = [\"a\\u0000b\"]\n",
        "NUL byte",
        "5:9",
    );
}

#[test]
fn several_problems_are_reported_at_once() {
    let err = rejected(
        "[jobs.a]\ncommand = []\n[jobs.b]\ncommand = 'x'\nneeds = ['zz']\n",
        "`command` is empty",
        "4:11",
    );
    assert!(err.contains("needs `zz`"), "{err}");
}

#[test]
fn a_missing_job_file() {
    let t = Test::new("").args(&["run", "nope.toml"]);
    t.run()
        .assert_code(2)
        .assert_stderr_has("cannot read job file nope.toml");
}

#[test]
fn no_jobs() {
    let t = Test::new("pool = 2\n");
    t.run()
        .assert_code(2)
        .assert_stderr_has("the job file has no jobs");
}

#[test]
fn queue_wiring_errors() {
    rejected(
        "[jobs.p]\ncommand = 'seq 3'\nto = 'q'\n",
        "queue `q` has no consumer",
        "5:6",
    );
    rejected(
        "[jobs.c]\ncommand = 'cat'\nstdin = { queue = 'q' }\n",
        "queue `q` has no producer",
        "5:9",
    );
    rejected(
        "[jobs.p]\ncommand = 'seq 3'\nto = 'q'\n[jobs.c]\ncommand = 'cat'\nstdin = { queue = 'q' }\n[jobs.d]\ncommand = 'cat'\nitems = { queue = 'q' }\n",
        "queue `q` has two consumer jobs",
        "11:9",
    );
    rejected(
        "[jobs.p]\ncommand = 'seq 3'\nto = 'q'\n[jobs.c]\ncommand = 'cat'\nstdin = { queue = 'q' }\nneeds = ['p']\n",
        "needs its producer `p`",
        "6:7",
    );
    rejected(
        "[jobs.p]\ncommand = 'seq 3'\nto = 'q'\nneeds = ['c']\n[jobs.c]\ncommand = 'cat'\nstdin = { queue = 'q' }\n",
        "cycle: p → c → p",
        "3:7",
    );
}

/// Issue 11, messages: a syntax error on a 400 KB line shows a cut of the line around
/// the place, not the whole line.
#[test]
fn a_syntax_error_on_a_huge_line_shows_only_its_neighbourhood() {
    let nested = format!("x = {}{}\n", "[".repeat(200_000), "]".repeat(200_000));
    let t = Test::new(&format!("{nested}[jobs.a]\ncommand = 'true'\n"));
    let out = t.run();
    out.assert_code(2).assert_stderr_has("jobs.toml:1:");
    assert!(
        out.stderr.len() < 2_000,
        "{} bytes of stderr",
        out.stderr.len()
    );
    assert!(out.stderr.contains('…'), "{}", out.stderr);
}

/// Peak resident memory of `runner ARGS` in the test's folder, in KiB. Reaped here by
/// `wait4` (for its rusage), so std's `wait` is never called.
#[allow(clippy::zombie_processes)]
fn peak_rss_kib(t: &Test, args: &[&str]) -> (i32, i64) {
    let child = std::process::Command::new(crate::util::BIN)
        .args(args)
        .current_dir(t.path(""))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value to be filled by wait4.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, by its pid; the pointers are to live locals.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32);
    (libc::WEXITSTATUS(status), usage.ru_maxrss)
}

/// Issue 11, point 12: items files are read lazily. Checking a file of 2,000,000 items
/// (about 30 MB) keeps the runner's memory small, and a run reads the items in order.
#[test]
fn an_items_file_is_never_held_whole() {
    let t = Test::new("[jobs.a]\ncommand = ['true', '{item}']\nitems = { file = 'items.txt' }\n");
    // Written by `seq`, not by this process: a child's peak memory as the kernel counts
    // it starts from its parent's at the spawn.
    let status = std::process::Command::new("sh")
        .args(["-c", "seq -f 'item-number-%.0f' 0 1999999 > items.txt"])
        .current_dir(t.path(""))
        .status()
        .unwrap();
    assert!(status.success());
    let (code, kib) = peak_rss_kib(&t, &["check", "jobs.toml"]);
    assert_eq!(code, 0);
    assert!(kib < 24 * 1024, "runner check peaked at {kib} KiB");

    let t = Test::new(
        "pool = 1\n[jobs.a]\ncommand = 'echo {index}:{item} >> log'\nitems = { file = 'items.txt' }\n",
    );
    std::fs::write(t.path("items.txt"), "first\n\n  \nsecond one\r\nlast").unwrap();
    let out = t.run();
    out.assert_code(0);
    assert_eq!(
        std::fs::read_to_string(t.path("log")).unwrap(),
        "0:first\n1:second one\n2:last\n",
        "{}",
        out.stderr
    );
}

/// An items file that loses its lines during the run: the task whose item is gone fails
/// saying so, the job's later items are not run, and the run exits 1 (no panic).
#[test]
fn an_items_file_that_shrinks_during_the_run_fails_its_job_clearly() {
    let t = Test::new(
        "pool = 1\n[jobs.a]\ncommand = 'if [ {index} = 0 ]; then : > items.txt; fi'\nitems = { file = 'items.txt' }\n",
    );
    let line = "x".repeat(10_000);
    std::fs::write(t.path("items.txt"), format!("{line}\n").repeat(40)).unwrap();
    let out = t.run();
    out.assert_code(1)
        .assert_stderr_has("changed since the run started: it has no item")
        .assert_stderr_has("items after this one are not run");
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}

/// An awk program's `{print}` is an unknown placeholder (the typo check needs it), and
/// every such brace is told, in one pass, how to be written: `{{print}}`.
#[test]
fn awk_braces_are_each_told_to_be_doubled() {
    let t = Test::new("[jobs.a]\ncommand = \"awk '{print}' in.txt; awk 'NR > 1 {next}' in.txt\"\n");
    let out = t.run();
    out.assert_code(2)
        .assert_stderr_has("unknown placeholder `{print}`")
        .assert_stderr_has("write `{{print}}`")
        .assert_stderr_has("unknown placeholder `{next}`")
        .assert_stderr_has("write `{{next}}`");
    // Written so, the program runs and awk gets its own braces.
    let t = Test::new("[jobs.a]\ncommand = \"awk '{{print}}' in.txt\"\n");
    t.write("in.txt", "one\ntwo\n");
    t.run().assert_code(0).assert_stdout_has("[a] two");
}
