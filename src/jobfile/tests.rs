//! The loader's checks, one by one, through `parse`: each bad file gives the message the
//! code gives today, pointing at the offending text. `tests/it/errors.rs` checks the same
//! through the binary (exit code, rendering); these pin the messages and spans.
//!
//! Longer than 400 lines on purpose: one short test per check, so that the file reads as
//! the list of what the loader refuses.

use super::*;
use crate::diagnostic::Diagnostic;

/// Every problem `parse` finds in `source`; none when it loads.
pub(super) fn problems(source: &str) -> Vec<Diagnostic> {
    problems_in(Path::new("x.toml"), source)
}

fn problems_in(path: &Path, source: &str) -> Vec<Diagnostic> {
    match parse(path, source.to_string()) {
        Ok(_) => Vec::new(),
        Err(e) => e.diagnostics().to_vec(),
    }
}

/// The one problem in `source`, with the text its span points at.
#[track_caller]
pub(super) fn problem(source: &str) -> (Diagnostic, String) {
    let found = problems(source);
    assert_eq!(found.len(), 1, "one problem expected: {found:#?}");
    let d = found.into_iter().next().expect("one");
    let span = d.span.clone().expect("a span");
    let text = source[span].to_string();
    (d, text)
}

fn messages(source: &str) -> Vec<String> {
    problems(source).into_iter().map(|d| d.message).collect()
}

/// A job `a` with a valid command and the extra lines `rest`.
pub(super) fn job(rest: &str) -> String {
    format!("[jobs.a]\ncommand = 'x'\n{rest}")
}

#[test]
fn a_valid_file_loads_with_its_defaults() {
    let file = parse(
        Path::new("x.toml"),
        "[jobs.a]\ncommand = ['echo', '{item}']\nitems = [1, 'b', true]\n".into(),
    )
    .expect("valid");
    let a = &file.jobs[0];
    assert_eq!(
        a.items,
        Items::List(vec!["1".into(), "b".into(), "true".into()])
    );
    assert_eq!(a.success_codes, [0]);
    assert_eq!(a.retries, 0);
    assert_eq!(a.retry_delay, Duration::from_secs(1));
    assert_eq!(file.dir, Path::new("."));
    assert!(file.source.contains("[jobs.a]"));
}

#[test]
fn unknown_key_with_a_suggestion() {
    let source = "[jobs.a]\ncomand = 'x'\n";
    let (d, at) = problem(source);
    assert_eq!(d.message, "unknown key `comand`");
    assert_eq!(d.note.as_deref(), Some("did you mean `command`?"));
    assert_eq!(at, "comand");

    let (d, at) = problem("pol = 3\n[jobs.a]\ncommand = 'x'\n");
    assert_eq!(d.message, "unknown key `pol`");
    assert_eq!(d.note.as_deref(), Some("did you mean `pool`?"));
    assert_eq!(at, "pol");

    let (d, _) = problem("[queues.q]\ncapacty = 3\n[jobs.a]\ncommand = 'x'\n");
    assert_eq!(d.message, "unknown key `capacty`");
    assert_eq!(d.note.as_deref(), Some("did you mean `capacity`?"));
}

#[test]
fn unknown_key_far_from_any_lists_the_keys() {
    let source = job("zzzzzz = 1\n");
    let (d, at) = problem(&source);
    assert_eq!(d.message, "unknown key `zzzzzz`");
    assert_eq!(
        d.note.as_deref(),
        Some("the keys here are: command, needs, when, items, stdin, to, env, cwd, timeout, retries, retry_delay, concurrency, success_codes, allow_failure, local, description, shell, sources, outputs, output, secrets, cache, cache_env, uses, rate, runs_on, service, ready, ready_timeout")
    );
    assert_eq!(at, "zzzzzz");
}

#[test]
fn a_value_of_the_wrong_type() {
    let source = job("retries = 'three'\n");
    let (d, at) = problem(&source);
    assert_eq!(
        d.message,
        "jobs.a.retries: expected an integer ≥ 0, found the string \"three\""
    );
    assert_eq!(at, "'three'");

    let source = job("needs = 'b'\n");
    let (d, at) = problem(&source);
    assert_eq!(
        d.message,
        "jobs.a.needs: expected an array of job names, found the string \"b\""
    );
    assert_eq!(d.note.as_deref(), Some("write it as an array: [\"b\"]"));
    assert_eq!(at, "'b'");
}

#[test]
fn a_toml_syntax_error_is_the_only_problem() {
    let found = problems("[jobs.a\ncommand = 'x'\n");
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].message.contains("expected `]`"), "{found:#?}");
}

#[test]
fn no_jobs_or_an_empty_jobs_table() {
    let found = problems("pool = 2\n");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].message, "the job file has no jobs");
    assert_eq!(found[0].span, Some(0..0));
    assert!(found[0].note.as_deref().unwrap().starts_with("add one:"));

    let (d, at) = problem("[jobs]\n");
    assert_eq!(
        d.message,
        "`jobs` is empty: a job file needs at least one job"
    );
    assert_eq!(at, "[jobs]");
}

#[test]
fn names_hold_only_letters_digits_underscores_and_dashes() {
    let (d, at) = problem("[jobs.'a b']\ncommand = 'x'\n");
    assert_eq!(
        d.message,
        "job name `a b` may only hold letters, digits, `_` and `-`"
    );
    assert_eq!(at, "'a b'");
    assert!(messages("[queues.'q!']\n[jobs.a]\ncommand = 'x'\n")
        .contains(&"queue name `q!` may only hold letters, digits, `_` and `-`".to_string()));
    assert!(valid_name("build_all-2"));
    assert!(!valid_name(""));
    assert!(!valid_name("a.b"));
}

#[test]
fn unknown_job_in_needs_with_a_suggestion() {
    let source = "[jobs.build]\ncommand = 'x'\n[jobs.a]\ncommand = 'x'\nneeds = ['biuld']\n";
    let (d, at) = problem(source);
    assert_eq!(
        d.message,
        "job `a` needs `biuld`, which is not a job in this file"
    );
    assert_eq!(d.note.as_deref(), Some("did you mean `build`?"));
    assert_eq!(at, "'biuld'");

    let (d, _) = problem(&job("needs = ['zzzzzz']\n"));
    assert_eq!(d.note, None);
}

#[test]
fn a_job_that_needs_itself() {
    let source = job("needs = ['a']\n");
    let (d, at) = problem(&source);
    assert_eq!(d.message, "job `a` needs itself");
    assert_eq!(at, "'a'");
}

#[test]
fn needs_named_twice_count_once() {
    let file = parse(
        Path::new("x.toml"),
        "[jobs.b]\ncommand = 'x'\n[jobs.a]\ncommand = 'x'\nneeds = ['b', 'b']\n".into(),
    )
    .expect("valid");
    assert_eq!(file.jobs[1].needs, [0]);
    assert_eq!(file.jobs[1].needs_spans.len(), 1);
}

#[test]
fn a_cycle_through_needs() {
    let source = "[jobs.a]\ncommand = 'x'\nneeds = ['b']\n[jobs.b]\ncommand = 'x'\nneeds = ['a']\n";
    let (d, at) = problem(source);
    assert_eq!(d.message, "cycle: a → b → a");
    assert_eq!(
        d.note.as_deref(),
        Some("a job cannot wait on (through `needs`) or feed (through a queue) itself")
    );
    assert_eq!(at, "a");
}

#[test]
fn a_queue_without_a_producer_or_a_consumer() {
    let source = "[jobs.p]\ncommand = 'seq 3'\nto = 'q'\n";
    let (d, at) = problem(source);
    assert_eq!(d.message, "queue `q` has no consumer");
    assert_eq!(
        d.note.as_deref(),
        Some("a consumer is a job with `items = { queue = \"q\" }` or `stdin = { queue = \"q\" }`")
    );
    assert_eq!(at, "'q'");

    let source = "[jobs.c]\ncommand = 'cat'\nstdin = { queue = 'q' }\n";
    let (d, at) = problem(source);
    assert_eq!(d.message, "queue `q` has no producer");
    assert_eq!(
        d.note.as_deref(),
        Some("a producer is a job with `to = \"q\"`")
    );
    assert_eq!(at, "{ queue = 'q' }");

    // A declared queue nobody names is still a queue without either.
    let (d, at) = problem("[queues.q]\n[jobs.a]\ncommand = 'x'\n");
    assert_eq!(d.message, "queue `q` has no producer");
    assert_eq!(at, "q");
}

#[test]
fn a_queue_with_two_consumers() {
    let source = "[jobs.p]\ncommand = 'seq 3'\nto = 'q'\n[jobs.c]\ncommand = 'cat'\nstdin = { queue = 'q' }\n[jobs.d]\ncommand = 'cat'\nitems = { queue = 'q' }\n";
    let found = problems(source);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(
        found[0].message,
        "queue `q` has two consumer jobs; a queue has exactly one consumer"
    );
    // The second consumer is the one pointed at.
    let span = found[0].span.clone().unwrap();
    assert_eq!(&source[span.clone()], "{ queue = 'q' }");
    assert!(span.start > source.find("[jobs.d]").unwrap());
}

#[test]
fn a_job_that_reads_a_queue_twice() {
    let source = "[jobs.p]\ncommand = 'seq 3'\nto = 'q'\n[jobs.c]\ncommand = 'cat'\nitems = { queue = 'q' }\nstdin = { queue = 'q' }\n";
    let (d, at) = problem(source);
    assert_eq!(
        d.message,
        "job `c` reads a queue twice: use `items = { queue }` or `stdin = { queue }`, not both"
    );
    assert_eq!(at, "{ queue = 'q' }");
    assert!(source[..d.span.unwrap().start].ends_with("stdin = "));
}

#[test]
fn a_consumer_that_needs_its_producer() {
    let source = "[jobs.p]\ncommand = 'seq 3'\nto = 'q'\n[jobs.c]\ncommand = 'cat'\nstdin = { queue = 'q' }\nneeds = ['p']\n";
    let (d, at) = problem(source);
    assert_eq!(
        d.message,
        "job `c` consumes queue `q` but needs its producer `p`: it would wait for the queue to be closed before reading it"
    );
    assert_eq!(at, "c");
}

#[test]
fn wiring_is_checked_only_once_every_job_is_valid() {
    // A queue with no consumer, and a bad command: only the command is reported.
    let m = messages("[jobs.p]\ncommand = []\nto = 'q'\n");
    assert_eq!(
        m,
        ["`command` is empty: name a program, e.g. [\"echo\", \"hi\"]"]
    );
}

#[test]
fn item_inside_shell_quotes() {
    let source = job("[jobs.b]\ncommand = \"echo '{item}'\"\nitems = ['x']\n");
    let (d, at) = problem(&source);
    assert_eq!(
        d.message,
        "`{item}` inside single quotes in a shell command"
    );
    assert_eq!(
        d.note.as_deref(),
        Some("the runner quotes {item} itself; write it bare (echo {item}), or use \"$RUNNER_ITEM\" inside quotes")
    );
    // The `{item}` itself is pointed at, not the whole command.
    assert_eq!(at, "{item}");
    assert_eq!(
        &source[..d.span.unwrap().start],
        "[jobs.a]\ncommand = 'x'\n[jobs.b]\ncommand = \"echo '"
    );

    let (d, _) = problem("[jobs.a]\ncommand = 'echo \"x {item}\"'\nitems = ['x']\n");
    assert_eq!(
        d.message,
        "`{item}` inside double quotes in a shell command"
    );

    // In argv there is no shell, so quotes are just characters.
    assert!(problems("[jobs.a]\ncommand = ['echo', \"'{item}'\"]\nitems = ['x']\n").is_empty());
}

#[test]
fn unknown_placeholder() {
    let source = "[jobs.a]\ncommand = 'echo {itme}'\n";
    let (d, at) = problem(source);
    assert_eq!(
        d.message,
        "unknown placeholder `{itme}` (did you mean `{item}`?); the placeholders are {item}, {index}, {job}, {vars.NAME} and {item.FIELD}; to mean the text `{itme}` itself (as in an awk program), write `{{itme}}`"
    );
    // It points at the placeholder itself.
    assert_eq!(at, "{itme}");

    // The same check guards every template: argv, env, stdin, cwd.
    for rest in ["env = { A = '{x}' }\n", "stdin = '{x}'\n", "cwd = '{x}'\n"] {
        let m = messages(&job(rest));
        assert_eq!(m.len(), 1, "{rest}: {m:?}");
        assert!(
            m[0].starts_with("unknown placeholder `{x}`;"),
            "{rest}: {m:?}"
        );
    }
}

#[test]
fn bad_durations() {
    let source = job("timeout = '5 parsecs'\n");
    let (d, at) = problem(&source);
    assert_eq!(
        d.message,
        "`timeout` is not a duration: unknown time unit \"parsecs\", supported units: ns, us/µs, ms, sec, min, hours, days, weeks, months, years (and few variations)"
    );
    assert_eq!(
        d.note.as_deref(),
        Some("write a duration like \"500ms\", \"10s\" or \"2m\"")
    );
    assert_eq!(at, "'5 parsecs'");

    let (d, at) = problem(&job("retry_delay = 'soon'\n"));
    assert_eq!(
        d.message,
        "`retry_delay` is not a duration: it needs a number and a unit"
    );
    assert_eq!(at, "'soon'");

    let source = job("timeout = '0s'\n");
    let (d, at) = problem(&source);
    assert_eq!(d.message, "`timeout` must be longer than 0");
    assert_eq!(at, "'0s'");
}

#[test]
fn empty_commands() {
    let (d, at) = problem("[jobs.a]\ncommand = ''\n");
    assert_eq!(d.message, "`command` is empty");
    assert_eq!(at, "''");
    let (d, _) = problem("[jobs.a]\ncommand = '   '\n");
    assert_eq!(d.message, "`command` is empty");

    let (d, at) = problem("[jobs.a]\ncommand = []\n");
    assert_eq!(
        d.message,
        "`command` is empty: name a program, e.g. [\"echo\", \"hi\"]"
    );
    assert_eq!(at, "[]");

    let (d, at) = problem("[jobs.a]\ncommand = ['', 'x']\n");
    assert_eq!(d.message, "`command` names an empty program");
    assert_eq!(at, "['', 'x']");
}

#[test]
fn commands_of_the_wrong_shape() {
    let (d, at) = problem("[jobs.a]\ncommand = 5\n");
    assert_eq!(
        d.message,
        "`command` must be a string (run with the shell) or an array of strings (argv), not an integer"
    );
    assert_eq!(at, "5");

    let (d, _) = problem("[jobs.a]\ncommand = ['echo', 1]\n");
    assert_eq!(
        d.message,
        "`command` array holds an integer; each argument must be a string"
    );
}

#[test]
fn an_empty_shell() {
    let (d, at) = problem("shell = []\n[jobs.a]\ncommand = 'x'\n");
    assert_eq!(
        d.message,
        "`shell` must name a program, e.g. [\"sh\", \"-c\"]"
    );
    assert_eq!(at, "[]");
    let (d, _) = problem(&job("shell = []\n"));
    assert_eq!(d.message, "`shell` must name a program");
}

#[test]
fn nul_bytes_are_refused() {
    let (d, at) = problem(&job("items = [\"a\\u0000b\"]\n"));
    assert_eq!(
        d.message,
        "an item holds a NUL byte, which no process can be given"
    );
    assert_eq!(at, "[\"a\\u0000b\"]");

    let (d, _) = problem("[jobs.a]\ncommand = [\"a\\u0000b\"]\n");
    assert_eq!(d.message, "a NUL byte cannot be passed to a process");
    let (d, _) = problem(&job("env = { A = \"\\u0000\" }\n"));
    assert_eq!(d.message, "a NUL byte cannot be passed to a process");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("items.txt"), "a\n\0\n").unwrap();
    let found = problems_in(
        &dir.path().join("x.toml"),
        &job("items = { file = 'items.txt' }\n"),
    );
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0].message,
        format!(
            "items file {}: line 2 holds a NUL byte, which no process can be given",
            dir.path().join("items.txt").display()
        )
    );
}

#[test]
fn environment_variable_names() {
    let (d, at) = problem(&job("env = { 'A=B' = 'x' }\n"));
    assert_eq!(d.message, "`A=B` is not an environment variable name");
    assert_eq!(at, "'A=B'");
    let m = messages("env = { '' = 'x' }\n[jobs.a]\ncommand = 'x'\n");
    assert_eq!(m, ["`` is not an environment variable name"]);
}

#[test]
fn vars_must_each_fit_their_runner_var_variable() {
    let m = messages("[vars]\nprofile = 'a'\nPROFILE = 'b'\n[jobs.a]\ncommand = 'x'\n");
    assert_eq!(
        m,
        ["vars `profile` and `PROFILE` would both be RUNNER_VAR_PROFILE in every task's environment; rename one"]
    );
    let big = "x".repeat(128 * 1024);
    let m = messages(&format!("[vars]\nbig = '{big}'\n[jobs.a]\ncommand = 'x'\n"));
    assert_eq!(
        m,
        ["var `big` is 131072 bytes, more than Linux takes in one environment variable (128 KiB), and every task gets it as RUNNER_VAR_BIG"]
    );
    let m = messages("[vars]\np = 'a'\n[jobs.a]\ncommand = 'x'\nenv = { RUNNER_VAR_P = 'b', RUNNER_VAR_Q = 'c' }\n");
    assert_eq!(m.len(), 1, "{m:?}");
    assert!(
        m[0].starts_with("`RUNNER_VAR_P` is set by the runner"),
        "{m:?}"
    );
}

#[test]
fn counts_out_of_range() {
    let source = "pool = 0\n[jobs.a]\ncommand = 'x'\n";
    let (d, at) = problem(source);
    assert_eq!(d.message, "`pool` must be at least 1 (got 0)");
    assert_eq!(at, "0");
    // An absurd count gets the same message, with the value it got.
    let (d, _) = problem("pool = 2000000\n[jobs.a]\ncommand = 'x'\n");
    assert_eq!(d.message, "`pool` must be at least 1 (got 2000000)");
    let (d, _) = problem(&job("concurrency = -1\n"));
    assert_eq!(d.message, "`concurrency` must be at least 1 (got -1)");
    let (d, _) = problem("[queues.q]\ncapacity = 0\n[jobs.p]\ncommand = 'x'\nto = 'q'\n[jobs.c]\ncommand = 'cat'\nstdin = { queue = 'q' }\n");
    assert_eq!(d.message, "`capacity` must be at least 1 (got 0)");

    for retries in ["-1", "1001"] {
        let (d, at) = problem(&job(&format!("retries = {retries}\n")));
        assert_eq!(d.message, "`retries` must be between 0 and 1000");
        assert_eq!(at, retries);
    }
    assert!(problems(&job("retries = 1000\n")).is_empty());
}

#[test]
fn success_codes() {
    let (d, at) = problem(&job("success_codes = []\n"));
    assert_eq!(
        d.message,
        "`success_codes` is empty: no exit code could succeed"
    );
    assert_eq!(at, "[]");
    let (d, at) = problem(&job("success_codes = [0, 300]\n"));
    assert_eq!(d.message, "an exit code is between 0 and 255");
    assert_eq!(at, "300");
    let m = messages(&job("success_codes = [-1, 99999999999]\n"));
    assert_eq!(m.len(), 2, "{m:?}");
}

#[test]
fn items_of_the_wrong_shape() {
    let cases = [
        (
            "items = 'abc'",
            "`items` must be an array or a table (`range`, `file`, `queue` or `matrix`), not a string",
        ),
        (
            "items = [1, {}]",
            "`items` mixes tables and an integer: either every item is a table (items with fields) or none is",
        ),
        (
            "items = { range = [5, 1] }",
            "`range = [A, B]` needs A ≤ B (B is not included)",
        ),
        (
            "items = { range = [1] }",
            "`range` is two integers: `{ range = [0, 10] }`",
        ),
        ("items = { range = 3 }", "`range` cannot be an integer"),
        ("items = { file = 3 }", "`file` cannot be an integer"),
        (
            "items = { range = [0, 1], file = 'x' }",
            "`items` as a table takes exactly one of `range`, `file`, `queue` or `matrix`",
        ),
        (
            "items = { rnage = [1, 2] }",
            "unknown key `rnage` in `items`",
        ),
    ];
    for (rest, message) in cases {
        let source = job(&format!("{rest}\n"));
        let (d, at) = problem(&source);
        assert_eq!(d.message, message, "{rest}");
        assert_eq!(at, &rest["items = ".len()..], "{rest}");
    }
    let (d, _) = problem(&job("items = { rnage = [1, 2] }\n"));
    assert_eq!(d.note.as_deref(), Some("did you mean `range`?"));
    assert!(problems(&job("items = { range = [3, 3] }\n")).is_empty());
}

#[test]
fn items_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("items.txt"), "a\n\n  \nb c\n").unwrap();
    let file = parse(
        &dir.path().join("x.toml"),
        job("items = { file = 'items.txt' }\n"),
    )
    .expect("valid");
    assert_eq!(
        file.jobs[0].items,
        Items::File {
            path: dir.path().join("items.txt"),
            count: 2
        }
    );

    std::fs::write(dir.path().join("latin1.txt"), b"caf\xe9\n").unwrap();
    let found = problems_in(
        &dir.path().join("x.toml"),
        &job("items = { file = 'latin1.txt' }\n"),
    );
    assert_eq!(
        found[0].message,
        format!(
            "items file {}: line 1 is not UTF-8 text",
            dir.path().join("latin1.txt").display()
        )
    );

    let (d, at) = problem(&job("items = { file = 'nope' }\n"));
    assert_eq!(
        d.message,
        "cannot read items file ./nope: No such file or directory (os error 2)"
    );
    assert_eq!(at, "{ file = 'nope' }");
}

#[test]
fn stdin_of_the_wrong_shape_or_a_missing_file() {
    let (d, at) = problem(&job("stdin = { fiel = 'x' }\n"));
    assert_eq!(
        d.message,
        "`stdin` as a table is `{ file = \"PATH\" }` or `{ queue = \"NAME\" }`, not `fiel`"
    );
    assert_eq!(d.note.as_deref(), Some("did you mean `file`?"));
    assert_eq!(at, "{ fiel = 'x' }");

    let (d, _) = problem(&job("stdin = 3\n"));
    assert_eq!(
        d.message,
        "`stdin` must be a string or a table (`file` or `queue`), not an integer"
    );

    let (d, at) = problem(&job("stdin = { file = 'nope' }\n"));
    assert_eq!(d.message, "stdin file ./nope does not exist");
    assert_eq!(at, "{ file = 'nope' }");
}

#[test]
fn cwd_must_be_a_folder_unless_it_has_placeholders() {
    let (d, at) = problem(&job("cwd = 'nope'\n"));
    assert_eq!(d.message, "`cwd` ./nope is not a folder");
    assert_eq!(at, "'nope'");
    let (d, _) = problem(&job("cwd = ''\n"));
    assert_eq!(d.message, "`cwd` is empty");
    // Known only per task: not looked at now.
    assert!(problems(&job("cwd = 'out/{job}'\n")).is_empty());
}

#[test]
fn several_problems_are_reported_in_file_order() {
    let m = messages(
        "pool = 0\n[jobs.a]\ncommand = []\ntimeout = 'x'\n[jobs.b]\ncommand = 'x'\nneeds = ['zz']\n",
    );
    assert_eq!(m.len(), 4, "{m:?}");
    assert_eq!(m[0], "`pool` must be at least 1 (got 0)");
    assert!(m[1].starts_with("`command` is empty"), "{m:?}");
    assert!(m[2].starts_with("`timeout` is not a duration"), "{m:?}");
    assert_eq!(m[3], "job `b` needs `zz`, which is not a job in this file");
}

#[test]
fn load_errors_render_and_are_errors() {
    let err = parse(Path::new("x.toml"), job("retries = -1\n")).unwrap_err();
    assert_eq!(err.to_string(), "x.toml: 1 problem(s)");
    let text = err.render(false);
    assert!(text.contains("x.toml:3:11"), "{text}");

    let err = load(Path::new("/no/such/runner-job-file.toml"), &[]).unwrap_err();
    assert!(err.diagnostics().is_empty());
    assert!(err
        .render(false)
        .starts_with("error: cannot read job file /no/such/runner-job-file.toml: "));
    let source: Option<&dyn std::error::Error> = std::error::Error::source(&err);
    assert!(source.is_some());
}

#[test]
fn output_modes_are_read_at_both_levels_and_a_wrong_one_is_named() {
    let file = parse(
        Path::new("x.toml"),
        "output = 'grouped'\n[jobs.a]\ncommand = 'true'\n[jobs.b]\ncommand = 'true'\noutput = 'keep-order'\n"
            .to_string(),
    )
    .unwrap_or_else(|_| panic!("it loads"));
    assert_eq!(file.output, OutputMode::Grouped);
    assert_eq!(file.output_of(&file.jobs[0]), OutputMode::Grouped);
    assert_eq!(file.output_of(&file.jobs[1]), OutputMode::KeepOrder);
    let found = problems("[jobs.a]\ncommand = 'true'\noutput = 'group'\n");
    assert_eq!(
        found[0].message,
        "`output` must be \"lines\", \"grouped\" or \"keep-order\", not \"group\""
    );
    assert_eq!(found[0].note.as_deref(), Some("did you mean \"grouped\"?"));
}

#[test]
fn secrets_are_read_with_their_source_and_jobs_name_them() {
    let file = parse(
        Path::new("dir/x.toml"),
        "[secrets]\nA = { env = 'SRC' }\nB = { file = 'b.txt' }\nC = { command = 'echo c' }\nD = { command = ['pass', 'd'] }\n[jobs.a]\ncommand = 'true'\nsecrets = ['B', 'A']\n"
            .to_string(),
    )
    .unwrap_or_else(|e| panic!("it loads: {}", e.render(false)));
    let sources: Vec<&SecretSource> = file.secrets.iter().map(|s| &s.source).collect();
    assert_eq!(
        sources,
        [
            &SecretSource::Env("SRC".into()),
            &SecretSource::File(PathBuf::from("dir/b.txt")),
            &SecretSource::Command(vec!["sh".into(), "-c".into(), "echo c".into()]),
            &SecretSource::Command(vec!["pass".into(), "d".into()]),
        ]
    );
    assert_eq!(file.jobs[0].secrets, ["B", "A"]);
}

#[test]
fn a_wrong_secret_is_named() {
    let cases = [
        ("[secrets]\nA = { env = 'X', file = 'y' }\n", "secret `A` says where its value is more than once"),
        ("[secrets]\nA = {}\n", "secret `A` does not say where its value is"),
        ("[secrets]\nA = { command = [] }\n", "secrets.A.command: the command is empty"),
        ("[secrets]\nA = { command = 3 }\n", "secrets.A.command: expected a command (a string, or an array of strings), found an integer"),
        ("[secrets]\n1A = { env = 'X' }\n", "secret name `1A` must be an environment variable's name: letters, digits and `_`, not starting with a digit"),
        ("[secrets]\nA = { env = 'X-Y' }\n", "secret `A`: `X-Y` is not an environment variable's name"),
        ("[secrets]\nA = 'X'\n", "secrets.A: expected a table saying where the value is: { env = \"VAR\" }, { file = \"PATH\" } or { command = … }, found the string \"X\""),
        ("[secrets]\nA = { env = 'X' }\n[jobs.b]\ncommand = 'true'\nsecrets = ['A', 'A']\n", "secret `A` is named twice"),
    ];
    for (source, message) in cases {
        let source = format!("{source}[jobs.a]\ncommand = 'true'\n");
        assert_eq!(messages(&source), [message], "{source}");
    }
}

#[test]
fn cache_env_names_are_environment_variable_names_each_once() {
    let (d, at) = problem(&job(
        "sources = ['a']\noutputs = ['b']\ncache_env = ['CC', '1X']\n",
    ));
    assert_eq!(
        d.message,
        "`cache_env` of job `a`: \"1X\" is not an environment variable name (letters, digits and `_`, not starting with a digit)"
    );
    assert_eq!(at, "'1X'");
    let (d, _) = problem(&job(
        "sources = ['a']\noutputs = ['b']\ncache_env = ['CC', 'CC']\n",
    ));
    assert_eq!(d.message, "`cache_env` of job `a` names `CC` twice");
    let file = parse(
        Path::new("x.toml"),
        job("sources = ['a']\noutputs = ['b']\ncache_env = ['CC', 'RUSTFLAGS']\ncache = false\n"),
    )
    .expect("valid");
    assert_eq!(file.jobs[0].cache_env, ["CC", "RUSTFLAGS"]);
    assert!(!file.jobs[0].cache);
    // Never cached: a warning says the names do nothing.
    assert_eq!(
        file.warnings[0].message,
        "`cache_env` of job `a` does nothing: its tasks are never cached (it has `cache = false`)"
    );
    let file = parse(Path::new("x.toml"), job("cache_env = ['CC']\n")).expect("valid");
    assert!(file.warnings[0]
        .message
        .contains("both `sources` and `outputs`"));
    let file = parse(
        Path::new("x.toml"),
        job("sources = ['a']\noutputs = ['b']\ncache_env = ['CC']\n"),
    )
    .expect("valid");
    assert!(file.warnings.is_empty() && file.jobs[0].cache);
}

#[test]
fn runs_on_is_labels_each_once_on_a_job_that_may_go_to_workers() {
    let file = parse(
        Path::new("x.toml"),
        job("items = ['1']\nruns_on = ['gpu', 'zone-a']\n"),
    )
    .expect("valid");
    assert_eq!(file.jobs[0].runs_on, ["gpu", "zone-a"]);
    let (d, at) = problem(&job("items = ['1']\nruns_on = ['gpu', 'a b']\n"));
    assert_eq!(
        d.message,
        "`runs_on` of job `a`: \"a b\" is not a label (letters, digits, `_`, `.` and `-`, starting with a letter or a digit)"
    );
    assert_eq!(at, "'a b'");
    let (d, _) = problem(&job("items = ['1']\nruns_on = ['gpu', 'gpu']\n"));
    assert_eq!(d.message, "`runs_on` of job `a` names `gpu` twice");
    let (d, _) = problem(&job("items = ['1']\nruns_on = ['']\n"));
    assert_eq!(d.message, "`runs_on` of job `a`: a label cannot be empty");
    let (d, at) = problem(&job("runs_on = ['gpu']\n"));
    assert_eq!(
        d.message,
        "`runs_on` of job `a`: its tasks never go to workers (it has no `items`, so its one task runs on the coordinator)"
    );
    assert_eq!(at, "['gpu']");
    let (d, _) = problem(&job("items = ['1']\nlocal = true\nruns_on = ['gpu']\n"));
    assert!(
        d.message.ends_with("(it has `local = true`)"),
        "{}",
        d.message
    );
    let (d, _) = problem(&job("runs_on = 'gpu'\n"));
    assert!(
        d.message.contains("an array of worker labels"),
        "{}",
        d.message
    );
}

#[test]
fn resources_and_rates_load_with_sizes_and_shared_names() {
    let file = parse(
        Path::new("x.toml"),
        "[resources]\ngpu = 1\nmem = '8G'\n[rates]\ndns = '5/s'\n[jobs.a]\ncommand = 'x'\nuses = { gpu = 1, mem = '512M' }\nrate = 'dns'\n[jobs.b]\ncommand = 'x'\nrate = 'dns'\n[jobs.c]\ncommand = 'x'\nrate = '2/m'\n".into(),
    )
    .expect("valid");
    assert_eq!(file.resources[1].capacity, 8 << 30);
    assert_eq!(file.jobs[0].uses, [(0, 1), (1, 512 << 20)]);
    assert_eq!((file.jobs[0].rate, file.jobs[1].rate), (Some(0), Some(0)));
    assert_eq!(file.rates[file.jobs[2].rate.unwrap()].name, "c");
    assert_eq!(file.rates[0].interval(), Duration::from_millis(200));
}

#[test]
fn resource_mistakes_are_said_with_their_place_and_a_suggestion() {
    let res = "[resources]\ngpu = 1\nmem = '8G'\n";
    let (d, text) = problem(&format!("{res}{}", job("uses = { gpus = 1 }\n")));
    assert_eq!(
        d.message,
        "job `a` uses `gpus`, which is not in [resources]"
    );
    assert_eq!(
        (text.as_str(), d.note.as_deref().unwrap_or("")),
        ("gpus", "did you mean `gpu`?")
    );
    let (d, text) = problem(&format!("{res}{}", job("uses = { gpu = 2 }\n")));
    assert_eq!(
        d.message,
        "job `a` uses 2 of `gpu`, but there is only 1: its tasks could never start"
    );
    assert_eq!(text, "2");
    let (d, _) = problem(&format!("{res}{}", job("uses = { mem = '9G' }\n")));
    assert!(
        d.message
            .contains("uses 9 GiB of `mem`, but there is only 8 GiB"),
        "{d:?}"
    );
    let (d, text) = problem(&format!("[resources]\nmem = 'lots'\n{}", job("")));
    assert_eq!(
        (d.message.as_str(), text.as_str()),
        ("resources.mem: \"lots\" is not a size", "'lots'")
    );
    let (d, _) = problem(&format!("[resources]\ndb = 0\n{}", job("")));
    assert_eq!(d.message, "resources.db must be at least 1 (got 0)");
    let (d, _) = problem(&job("rate = '5/d'\n"));
    assert_eq!(
        d.message,
        "jobs.a.rate: \"5/d\" is not a rate: write N/s, N/m or N/h (e.g. \"5/s\")"
    );
    let (d, text) = problem(&format!("[rates]\ndns = '5/s'\n{}", job("rate = 'dsn'\n")));
    assert_eq!(
        d.message,
        "job `a`: rate `dsn` is not in [rates] and is not a rate"
    );
    assert_eq!(
        (text.as_str(), d.note.as_deref().unwrap_or("")),
        ("'dsn'", "did you mean `dns`?")
    );
    let (d, _) = problem(&format!("[rates]\ndns = 'fast'\n{}", job("")));
    assert!(
        d.message.starts_with("rates.dns: \"fast\" is not a rate"),
        "{d:?}"
    );
    let (d, _) = problem(&format!(
        "{res}{}",
        job("to = 'q'\nuses = { gpu = 1 }\n[jobs.c]\ncommand = 'x'\nitems = { queue = 'q' }\n")
    ));
    assert!(
        d.message
            .starts_with("job `a` cannot have `uses`: its stdout feeds a queue"),
        "{d:?}"
    );
}

#[test]
fn services_load_with_their_readiness_checks_and_default_timeout() {
    let file = parse(
        Path::new("t.toml"),
        "[jobs.db]\nservice = true\ncommand = 'redis-server'\nready = { tcp = '127.0.0.1:6379' }\n\
         [jobs.web]\nservice = true\nitems = [{ port = 8000 }]\ncommand = 'serve {item.port}'\n\
         ready = { http = 'http://127.0.0.1:{item.port}/health' }\nready_timeout = '5s'\n\
         [jobs.log]\nservice = true\ncommand = 'x'\nready = { line = 'listening on \\d+' }\n\
         [jobs.cmd]\nservice = true\ncommand = 'x'\nready = { command = ['pg_isready', '-p', '5432'] }\n\
         [jobs.t]\nneeds = ['db', 'web', 'log', 'cmd']\ncommand = 'x'\n"
            .into(),
    )
    .unwrap();
    let kinds: Vec<&str> = file.jobs[..4]
        .iter()
        .map(|j| j.ready.as_ref().unwrap().kind())
        .collect();
    assert_eq!(kinds, ["tcp", "http", "line", "command"]);
    assert!(file.jobs[..4].iter().all(|j| j.service));
    assert!(!file.jobs[4].service);
    assert_eq!(file.jobs[0].ready_timeout, Duration::from_secs(30));
    assert_eq!(file.jobs[1].ready_timeout, Duration::from_secs(5));
}

#[test]
fn service_problems_are_load_errors_with_a_way_out() {
    let m = messages(
        "[jobs.a]\ncommand = 'x'\nready = { tcp = 'h:1' }\nready_timeout = '1s'\n\
         [jobs.b]\nservice = true\ncommand = 'x'\nready = { line = '(' }\n\
         [jobs.c]\nservice = true\ncommand = 'x'\nready = { tcp = 'nohost' }\n\
         [jobs.d]\nservice = true\ncommand = 'x'\nready = { http = 'ftp://x/' }\n\
         [jobs.e]\nservice = true\ncommand = 'x'\nready = { tcp = 'h:1', http = 'http://h/' }\n\
         [jobs.f]\nservice = true\ncommand = 'x'\nready = 'up'\n\
         [jobs.g]\nservice = true\ncommand = 'x'\nto = 'q'\nretries = 1\ntimeout = '1s'\ncache = false\nconcurrency = 1\n\
         [jobs.h]\ncommand = 'x'\nitems = { queue = 'q' }\n\
         [jobs.i]\nservice = true\ncommand = 'x'\nitems = [1, 2]\n\
         [jobs.j]\ncommand = 'x'\nitems = [1, 2]\nneeds = [{ job = 'i', each = true }]\n\
         [jobs.k]\nservice = true\ncommand = 'x'\nready_timeout = '0s'\n",
    );
    let has = |text: &str| assert!(m.iter().any(|m| m.contains(text)), "{text}: {m:#?}");
    has("job `a` has `ready` but is not a service");
    has("job `a` has `ready_timeout` but is not a service");
    has("`ready.line` is not a regular expression");
    has("`ready.tcp`: \"nohost\" has no port");
    has("`ready.http`: \"ftp://x/\" is not an http:// or https:// URL");
    has("`ready` gives more than one check");
    has("`ready` must be a table, not a string");
    has("job `g` is a service and cannot have `to`");
    has("job `g` is a service and cannot have `retries`");
    has("job `g` is a service and cannot have `timeout`");
    has("job `g` is a service and cannot have `cache`");
    has("job `g` is a service and cannot have `concurrency`");
    has("job `j` needs service `i` item by item");
    has("`ready_timeout` must be longer than 0");
}
