//! Values of the wrong type, and shells that are not POSIX shells: every mistake of a file
//! is reported in one pass, in line order, in the user's words (never a Rust type name),
//! and `{item}` is refused where the runner cannot quote it. `tests.rs` holds the other
//! checks of the loader.
//!
//! Longer than 400 lines on purpose: the tables of wrong values and their messages are
//! the list of what users are told.

use super::raw::{JOB_KEYS, QUEUE_KEYS, TOP_KEYS};
use super::tests::{job, problem, problems};
use super::*;

/// Words that only a programmer would understand: Rust and serde types.
const JARGON: [&str; 17] = [
    "i8",
    "i16",
    "i32",
    "i64",
    "i128",
    "u8",
    "u16",
    "u32",
    "u64",
    "u128",
    "usize",
    "f64",
    "invalid type",
    "invalid value",
    "sequence",
    "struct",
    "serde",
];

/// Every key, given every kind of wrong value: no message or note speaks Rust, and
/// each points somewhere in the file.
#[test]
fn no_rust_type_name_reaches_a_message() {
    let values = [
        "'4'",
        "4",
        "-1",
        "0",
        "99999999999999999999",
        "2.5",
        "true",
        "1979-05-27",
        "[]",
        "[1]",
        "['a', 2]",
        "[[1]]",
        "{}",
        "{ a = 1 }",
        "{ range = ['a', 99999999999999999999] }",
        "{ file = 1 }",
        "{ queue = [] }",
        "[{}]",
    ];
    let mut sources = Vec::new();
    for value in values {
        for key in TOP_KEYS {
            sources.push(format!("{key} = {value}\n[jobs.a]\ncommand = 'x'\n"));
        }
        for key in JOB_KEYS {
            sources.push(format!("[jobs.a]\ncommand = 'x'\n{key} = {value}\n"));
        }
        for key in QUEUE_KEYS {
            sources.push(format!(
                "[queues.q]\n{key} = {value}\n[jobs.a]\ncommand = 'x'\n"
            ));
        }
        sources.push(format!("[jobs.a]\ncommand = {value}\n"));
        sources.push(format!(
            "[jobs.a]\ncommand = 'x'\nenv = {{ A = {value} }}\n"
        ));
        sources.push(format!("jobs = {{ a = {value} }}\n"));
        sources.push(format!(
            "queues = {{ q = {value} }}\n[jobs.a]\ncommand = 'x'\n"
        ));
    }
    let mut seen = 0;
    for source in &sources {
        for d in problems(source) {
            seen += 1;
            let text = format!("{} {}", d.message, d.note.as_deref().unwrap_or(""));
            let words: Vec<&str> = text
                .split(|c: char| !c.is_alphanumeric() && c != ' ')
                .flat_map(str::split_whitespace)
                .collect();
            for jargon in JARGON {
                let hit = if jargon.contains(' ') {
                    text.contains(jargon)
                } else {
                    words.contains(&jargon)
                };
                assert!(!hit, "{jargon:?} in {text:?}\nfrom {source}");
            }
            assert!(d.span.is_some(), "{text:?} points nowhere\nfrom {source}");
        }
    }
    assert!(
        seen > sources.len() / 2,
        "most of these files are wrong: {seen}"
    );
}

#[test]
fn type_errors_at_the_top_name_the_key_and_both_types() {
    let cases = [
        (
            "pool = '4'",
            "pool: expected an integer ≥ 1, found the string \"4\"",
        ),
        (
            "pool = 99999999999999999999",
            "pool: expected an integer ≥ 1, found 99999999999999999999 (too large)",
        ),
        (
            "pool = 2.5",
            "pool: expected an integer ≥ 1, found the decimal number 2.5",
        ),
        (
            "fail_fast = 1",
            "fail_fast: expected true or false, found an integer",
        ),
        (
            "shell = 'bash -c'",
            "shell: expected an array of strings, found the string \"bash -c\"",
        ),
        (
            "shell = ['bash', 1]",
            "shell[1]: expected a string, found an integer",
        ),
        (
            "env = { A = 1 }",
            "env.A: expected a string, found an integer",
        ),
        (
            "env = []",
            "env: expected a table of strings, found an array",
        ),
        (
            "queues = 1",
            "queues: expected a table of queues ([queues.NAME]), found an integer",
        ),
        (
            "queues.q = 1",
            "queues.q: expected a table (the queue's `capacity`), found an integer",
        ),
        (
            "queues.q.capacity = '9'",
            "queues.q.capacity: expected an integer ≥ 1, found the string \"9\"",
        ),
    ];
    for (line, message) in cases {
        let (d, _) = problem(&format!("{line}\n[jobs.a]\ncommand = 'x'\n"));
        assert_eq!(d.message, message, "{line}");
    }
}

#[test]
fn type_errors_in_a_job_name_the_key_and_both_types() {
    let cases = [
        (
            "needs = 'b'",
            "jobs.a.needs: expected an array of job names, found the string \"b\"",
        ),
        (
            "needs = [1]",
            "jobs.a.needs[0]: expected a job name (a string) or a table `{ job = \"NAME\", each = true }`, found an integer",
        ),
        (
            "needs = [{ job = 'b', each = 'yes' }]",
            "jobs.a.needs[0].each: expected true or false, found the string \"yes\"",
        ),
        (
            "when = true",
            "jobs.a.when: expected \"success\", \"always\" or \"failure\", found true",
        ),
        (
            "to = ['q']",
            "jobs.a.to: expected a queue name (a string), found an array",
        ),
        (
            "env = { 'B C' = true }",
            "jobs.a.env.\"B C\": expected a string, found true",
        ),
        (
            "cwd = 1",
            "jobs.a.cwd: expected a folder (a string), found an integer",
        ),
        (
            "timeout = 10",
            "jobs.a.timeout: expected a duration such as \"10s\", found an integer",
        ),
        (
            "retry_delay = {}",
            "jobs.a.retry_delay: expected a duration such as \"10s\", found a table",
        ),
        (
            "retries = '3'",
            "jobs.a.retries: expected an integer ≥ 0, found the string \"3\"",
        ),
        (
            "concurrency = []",
            "jobs.a.concurrency: expected an integer ≥ 1, found an array",
        ),
        (
            "success_codes = 0",
            "jobs.a.success_codes: expected an array of exit codes (integers), found an integer",
        ),
        (
            "success_codes = [0, '1']",
            "jobs.a.success_codes[1]: expected an exit code (an integer), found the string \"1\"",
        ),
        (
            "allow_failure = 'true'",
            "jobs.a.allow_failure: expected true or false, found the string \"true\"",
        ),
        (
            "local = 1979-05-27",
            "jobs.a.local: expected true or false, found a date or time",
        ),
        (
            "description = 1",
            "jobs.a.description: expected a string, found an integer",
        ),
        (
            "shell = 'sh'",
            "jobs.a.shell: expected an array of strings, found the string \"sh\"",
        ),
    ];
    for (line, message) in cases {
        let source = job(&format!("{line}\n"));
        let (d, at) = problem(&source);
        assert_eq!(d.message, message, "{line}");
        assert!(line.contains(&at), "{line}: points at {at:?}");
    }
    let (d, _) = problem("jobs = { a = 1 }\n");
    assert_eq!(
        d.message,
        "jobs.a: expected a table (the job's keys), found an integer"
    );
    let (d, _) = problem("jobs = 1\n");
    assert_eq!(
        d.message,
        "jobs: expected a table of jobs ([jobs.NAME]), found an integer"
    );
}

#[test]
fn the_usual_slips_get_a_note() {
    let note = |source: &str| problem(source).0.note;
    let with_job = |line: &str| format!("{line}\n[jobs.a]\ncommand = 'x'\n");
    assert_eq!(
        note(&with_job("pool = '4'")).as_deref(),
        Some("write the number without quotes: 4")
    );
    assert_eq!(
        note(&with_job("fail_fast = 'true'")).as_deref(),
        Some("write it without quotes: true")
    );
    assert_eq!(
        note(&job("timeout = 10\n")).as_deref(),
        Some("a duration is a string with a unit: \"10s\"")
    );
    assert_eq!(
        note(&job("needs = 'b'\n")).as_deref(),
        Some("write it as an array: [\"b\"]")
    );
}

#[test]
fn long_strings_are_shortened_in_messages() {
    let (d, _) = problem(&job(&format!("retries = '{}'\n", "x".repeat(100))));
    assert_eq!(
        d.message,
        format!(
            "jobs.a.retries: expected an integer ≥ 0, found the string \"{}…\"",
            "x".repeat(37)
        )
    );
}

#[test]
fn a_job_without_a_command() {
    let (d, at) = problem("[jobs.build]\nneeds = []\n");
    assert_eq!(d.message, "job `build` has no `command`");
    assert_eq!(at, "build");
    // A misspelt `command` is reported once, as an unknown key.
    let found = problems("[jobs.a]\ncomand = 'x'\n");
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].message, "unknown key `comand`");
}

#[test]
fn every_unknown_key_is_reported() {
    let found = problems("pol = 1\n[jobs.a]\ncommand = 'x'\ntimout = '1s'\nneed = []\n");
    let m: Vec<&str> = found.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(
        m,
        [
            "unknown key `pol`",
            "unknown key `timout`",
            "unknown key `need`"
        ]
    );
}

#[test]
fn every_mistake_is_reported_in_line_order() {
    let source = "\
pool = '4'
[jobs.a]
command = 'x'
needs = 'b'
timeout = 10
retries = 99999999999999999999
cwd = 'nowhere'
[jobs.b]
command = \"echo '{item}'\"
items = ['x']
concurrency = 0
zzz = 1
";
    let found = problems(source);
    let lines: Vec<usize> = found
        .iter()
        .map(|d| {
            source[..d.span.clone().unwrap().start]
                .matches('\n')
                .count()
                + 1
        })
        .collect();
    assert_eq!(lines, [1, 4, 5, 6, 7, 9, 11, 12], "{found:#?}");
}

#[test]
fn item_in_a_command_run_by_a_shell_that_is_not_posix() {
    let source = job("[jobs.py]\nshell = ['python3', '-c']\ncommand = 'print({job}, {index}, {item})'\nitems = ['x']\n");
    let (d, at) = problem(&source);
    assert_eq!(
        d.message,
        "`{item}` in a command run by `python3`, which is not a POSIX shell: the runner cannot quote the item for it"
    );
    assert!(d.note.as_deref().unwrap().contains("RUNNER_ITEM"), "{d:?}");
    assert_eq!(at, "{item}");
    assert!(source[..d.span.unwrap().start].ends_with("{index}, "));

    // The top-level shell counts too, and a path to the program changes nothing.
    let (d, at) =
        problem("shell = ['/usr/bin/python3', '-c']\n[jobs.a]\ncommand = 'print({item})'\n");
    assert!(d.message.contains("run by `/usr/bin/python3`"), "{d:?}");
    assert_eq!(at, "{item}");
}

#[test]
fn safe_placeholders_and_posix_shells_are_fine() {
    let fine = [
        // `{index}` and `{job}` hold only digits and name characters.
        "shell = ['python3', '-c']\ncommand = 'print({index}, \"{job}\")'\nitems = ['x']\n",
        // Without `{item}` any program may run a string command.
        "shell = ['python3', '-c']\ncommand = 'import os; print(os.environ[\"RUNNER_ITEM\"])'\nitems = ['x']\n",
        "shell = ['/bin/bash', '-c']\ncommand = 'echo {item}'\nitems = ['x']\n",
        "shell = ['/usr/bin/env', 'zsh', '-c']\ncommand = 'echo {item}'\nitems = ['x']\n",
        "shell = ['busybox', 'sh', '-c']\ncommand = 'echo {item}'\nitems = ['x']\n",
        // In argv nothing is a shell.
        "command = ['python3', '-c', 'import sys; print(sys.argv[1])', '{item}']\nitems = ['x']\n",
    ];
    for rest in fine {
        let source = format!("[jobs.a]\n{rest}");
        assert_eq!(problems(&source), [], "{rest}");
    }
    // A job's own POSIX shell overrides a top-level one that is not.
    let source = "shell = ['python3', '-c']\n[jobs.a]\nshell = ['bash', '-c']\ncommand = 'echo {item}'\nitems = ['x']\n";
    assert_eq!(problems(source), []);
}

#[test]
fn a_syntax_error_is_still_the_only_problem() {
    let found = problems("pool = '4'\n[jobs.a]\ncommand = 'x'\nretries = = 1\n");
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(!found[0].message.contains("pool"), "{found:#?}");
}

#[test]
fn a_wrong_element_is_reported_once() {
    // Not also "`success_codes` is empty", which is what would be left of the list.
    let (d, at) = problem(&job("success_codes = [[1]]\n"));
    assert_eq!(
        d.message,
        "jobs.a.success_codes[0]: expected an exit code (an integer), found an array"
    );
    assert_eq!(at, "[1]");
    assert_eq!(d.note, None);
}

#[test]
fn numbers_in_items_become_their_value() {
    let file = parse(
        Path::new("x.toml"),
        job("items = [99999999999999999999, 0x10, 1_000, +3, 1.50, true]\n"),
    )
    .expect("valid");
    assert_eq!(
        file.jobs[0].items,
        Items::List(
            ["99999999999999999999", "16", "1000", "3", "1.50", "true"]
                .map(String::from)
                .to_vec()
        )
    );
}
