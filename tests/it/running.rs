//! Running job files: the pool, `needs`, fan-out, stdin, output capture, placeholders,
//! environment and exit statuses, asserted through what tasks leave behind.

use crate::util::{peak_concurrency, Test};

#[test]
fn the_pool_bounds_concurrency_and_everything_runs() {
    let t = Test::new(
        "pool = 2\n[jobs.sleep]\ncommand = 'echo start >> log; sleep 0.4; echo end >> log'\nitems = { range = [0, 6] }\n",
    );
    t.run().assert_code(0);
    let log = t.read("log");
    assert_eq!(log.lines().filter(|l| *l == "end").count(), 6);
    assert_eq!(peak_concurrency(&log), 2, "{log}");
}

#[test]
fn pool_on_the_command_line_overrides_the_file() {
    let t = Test::new(
        "pool = 1\n[jobs.sleep]\ncommand = 'echo start >> log; sleep 0.3; echo end >> log'\nitems = { range = [0, 4] }\n",
    )
    .args(&["--pool", "4"]);
    t.run().assert_code(0);
    assert_eq!(peak_concurrency(&t.read("log")), 4);
}

#[test]
fn concurrency_caps_one_job() {
    let t = Test::new(
        "pool = 4\n[jobs.a]\ncommand = 'echo start >> log; sleep 0.2; echo end >> log'\nitems = { range = [0, 4] }\nconcurrency = 1\n",
    );
    t.run().assert_code(0);
    assert_eq!(peak_concurrency(&t.read("log")), 1);
}

#[test]
fn needs_orders_jobs() {
    let t = Test::new(
        "pool = 4\n[jobs.c]\ncommand = 'echo c >> log'\nneeds = ['b']\n[jobs.b]\ncommand = 'sleep 0.1; echo b >> log'\nneeds = ['a']\n[jobs.a]\ncommand = 'sleep 0.2; echo a >> log'\n",
    );
    t.run().assert_code(0);
    assert_eq!(t.read("log"), "a\nb\nc\n");
}

#[test]
fn a_failure_skips_what_needs_it_and_exits_1() {
    let t = Test::new(
        "[jobs.a]\ncommand = 'echo boom >&2; exit 3'\n[jobs.b]\ncommand = 'touch b-ran'\nneeds = ['a']\n[jobs.c]\ncommand = 'touch c-ran'\nneeds = ['b']\n[jobs.other]\ncommand = 'touch other-ran'\n",
    );
    let out = t.run();
    out.assert_code(1)
        .assert_stderr_has("FAILED a: exit 3")
        .assert_stderr_has("| boom");
    assert!(!t.path("b-ran").exists() && !t.path("c-ran").exists());
    assert!(t.path("other-ran").exists(), "independent jobs still run");
    let row = out.stderr.lines().find(|l| l.starts_with("c ")).unwrap();
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>()[..5],
        ["c", "1", "0", "0", "1"],
        "{row}"
    );
}

#[test]
fn allowed_failures_and_success_codes() {
    let t = Test::new(
        "[jobs.flaky]\ncommand = 'exit 1'\nallow_failure = true\n[jobs.grep]\ncommand = 'exit 1'\nsuccess_codes = [0, 1]\n[jobs.after]\ncommand = 'touch after-ran'\nneeds = ['flaky', 'grep']\n",
    );
    let out = t.run();
    out.assert_code(0).assert_stderr_has("allowed");
    assert!(t.path("after-ran").exists());
}

#[test]
fn fan_out_over_a_list_a_range_and_a_file() {
    let t = Test::new(
        "[jobs.list]\ncommand = ['echo', '{index}={item}']\nitems = ['a', 2, true]\n[jobs.range]\ncommand = ['echo', '{item}']\nitems = { range = [3, 6] }\n[jobs.file]\ncommand = ['echo', 'host {item}']\nitems = { file = 'hosts.txt' }\n",
    );
    t.write("hosts.txt", "alpha\n\n  \nbeta\n");
    let out = t.run();
    out.assert_code(0);
    let mut list: Vec<String> = ["a", "2", "true"]
        .iter()
        .flat_map(|i| out.lines_of(&format!("list:{i}")))
        .collect();
    list.sort();
    assert_eq!(list, ["0=a", "1=2", "2=true"]);
    for i in 3..6 {
        assert_eq!(out.lines_of(&format!("range:{i}")), [i.to_string()]);
    }
    assert_eq!(out.lines_of("file:alpha"), ["host alpha"]);
    assert_eq!(out.lines_of("file:beta"), ["host beta"]);
    assert!(!out.stdout.contains("file: "), "empty lines are not items");
}

#[test]
fn stdin_is_the_payload_written_whole_then_closed() {
    let t = Test::new(
        "[jobs.text]\ncommand = 'cat > text.out'\nstdin = \"set q=mx\\npython.org\\nexit\\n\"\n[jobs.file]\ncommand = 'wc -l'\nstdin = { file = 'in.txt' }\n[jobs.none]\ncommand = 'cat; echo eof'\n",
    );
    t.write("in.txt", "1\n2\n3\n");
    let t = t.stdin(b"the runner's own stdin must not reach tasks\n");
    let out = t.run();
    out.assert_code(0);
    assert_eq!(t.read("text.out"), "set q=mx\npython.org\nexit\n");
    assert_eq!(out.lines_of("file"), ["3"]);
    assert_eq!(
        out.lines_of("none"),
        ["eof"],
        "no stdin configured: end of input at once"
    );
}

#[test]
fn large_output_on_both_sides_and_large_stdin_do_not_deadlock() {
    // 4 MiB in, 8 MiB out on stdout and 8 MiB on stderr, interleaved by the task.
    let script = "import sys\ndata = sys.stdin.buffer.read()\nfor i in range(2000):\n    sys.stdout.write('o' * 4095 + '\\n')\n    sys.stderr.write('e' * 4095 + '\\n')\nprint(len(data))\n";
    let t = Test::new(&format!(
        "[jobs.big]\ncommand = ['python3', 'big.py']\nstdin = {{ file = 'in.bin' }}\n[jobs.payload]\ncommand = ['python3', 'big.py']\nstdin = '{}'\n",
        "x".repeat(300_000)
    ));
    t.write("big.py", script);
    t.write("in.bin", &"y".repeat(4 << 20));
    let out = t.run();
    out.assert_code(0);
    let big = out.lines_of("big");
    assert_eq!(big.len(), 2001);
    assert_eq!(big.last().unwrap(), &(4 << 20).to_string());
    assert!(big[..2000]
        .iter()
        .all(|l| l.len() == 4095 && l.bytes().all(|b| b == b'o')));
    assert_eq!(out.lines_of("payload").last().unwrap(), "300000");
    assert_eq!(
        out.stderr
            .lines()
            .filter(|l| l.starts_with("[big] e"))
            .count(),
        2000
    );
}

#[test]
fn lines_of_concurrent_tasks_are_never_torn() {
    let t = Test::new("pool = 4\n[jobs.chatty]\ncommand = ['python3', 'chatty.py', '{item}']\nitems = ['a', 'b', 'c', 'd']\n");
    t.write(
        "chatty.py",
        "import sys\nfor i in range(3000):\n    sys.stdout.write(sys.argv[1] * 300 + '\\n')\n    sys.stdout.flush()\n",
    );
    let out = t.run();
    out.assert_code(0);
    let mut count = 0;
    for line in out.stdout.lines() {
        let (label, text) = line.split_once("] ").expect("labelled");
        let item = &label[label.len() - 1..];
        assert_eq!(text, item.repeat(300), "a torn line: {line:.80}");
        count += 1;
    }
    assert_eq!(count, 12_000);
}

#[test]
fn placeholders_and_runner_variables() {
    let t = Test::new(
        "pool = 1\n[env]\nGREETING = 'hi {job}'\n[jobs.show]\ncommand = ['sh', '-c', 'echo \"$1|$RUNNER_JOB|$RUNNER_ITEM|$RUNNER_INDEX|$RUNNER_ATTEMPT|$RUNNER_SLOT|$GREETING|$PER\"; test -n \"$RUNNER_RUN_ID\"', 'sh', '{job}/{index}/{item}']\nitems = ['x y']\nenv = { PER = 'item={item}' }\n",
    );
    let out = t.run();
    out.assert_code(0);
    assert_eq!(
        out.lines_of("show:x y"),
        ["show/0/x y|show|x y|0|1|0|hi show|item=x y"]
    );
}

#[test]
fn an_argv_item_is_one_argument() {
    let t = Test::new(
        "[jobs.count]\ncommand = ['sh', '-c', 'echo $#', 'sh', '{item}']\nitems = ['a b  c']\n",
    );
    assert_eq!(t.run().lines_of("count:a b  c"), ["1"]);
}

#[test]
fn a_hostile_item_never_runs_as_shell_code() {
    let t = Test::new(
        "[jobs.echo]\ncommand = 'printf \"%s\\n\" {item}'\nitems = ['$(touch pwned)', '`touch pwned`', '; touch pwned', \"'; touch pwned; '\", '-n']\n",
    );
    let out = t.run();
    out.assert_code(0);
    assert!(!t.path("pwned").exists());
    assert_eq!(out.lines_of("echo:$(touch pwned)"), ["$(touch pwned)"]);
    assert_eq!(
        out.lines_of("echo:'; touch pwned; '"),
        ["'; touch pwned; '"]
    );
}

#[test]
fn cwd_defaults_to_the_job_file_folder() {
    let t = Test::new("[jobs.here]\ncommand = 'pwd'\n[jobs.sub]\ncommand = 'pwd'\ncwd = 'sub'\n");
    std::fs::create_dir(t.path("sub")).unwrap();
    let t = t.args(&["run", "jobs.toml"]);
    let out = t.run();
    let dir = t.dir.path().canonicalize().unwrap();
    assert_eq!(out.lines_of("here"), [dir.display().to_string()]);
    assert_eq!(out.lines_of("sub"), [dir.join("sub").display().to_string()]);
}

#[test]
fn a_program_that_does_not_exist_is_a_failed_task_naming_it() {
    let t = Test::new("[jobs.ghost]\ncommand = ['no-such-program-4711', 'x']\nretries = 2\n");
    let out = t.run();
    out.assert_code(1)
        .assert_stderr_has("program not found: `no-such-program-4711`");
    out.assert_stderr_has("1 attempt,");
}

#[test]
fn every_exit_code_and_pid_is_shown() {
    let t = Test::new("[jobs.seven]\ncommand = 'exit 7'\n[jobs.ok]\ncommand = 'true'\n");
    let out = t.run();
    out.assert_code(1);
    assert!(
        out.stderr
            .lines()
            .any(|l| l.starts_with("[runner] FAIL seven pid ") && l.contains("exit 7")),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .lines()
            .any(|l| l.starts_with("[runner] done ok pid ") && l.contains("exit 0")),
        "{}",
        out.stderr
    );
}

#[test]
fn the_runners_secrets_never_reach_a_task() {
    let t = Test::new("[jobs.env]\ncommand = 'env'\n")
        .env("RUNNER_AUTHKEY", "s3cret-key")
        .env("KEEP_ME", "yes");
    let out = t.run();
    out.assert_code(0).assert_stdout_has("[env] KEEP_ME=yes");
    assert!(
        !out.stdout.contains("s3cret") && !out.stdout.contains("RUNNER_BROKER_URL"),
        "{}",
        out.stdout
    );
}

#[test]
fn binary_output_passes_through_byte_for_byte() {
    let t = Test::new("[jobs.bin]\ncommand = ['python3', '-c', 'import sys; sys.stdout.buffer.write(bytes(range(256)) + b\"\\n\")']\n")
        .args(&["--logs", "logs"]);
    let out = t.command().output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let mut expected = b"[bin] ".to_vec();
    expected.extend(0u8..=255);
    expected.push(b'\n');
    // Byte 10 is a newline: the task's one line is two lines, each labelled.
    let mut want = b"[bin] ".to_vec();
    want.extend(0u8..=10);
    want.extend(b"[bin] ");
    want.extend(11u8..=255);
    want.push(b'\n');
    assert_eq!(out.stdout, want);
    let logged = std::fs::read(t.path("logs/bin.0.stdout")).unwrap();
    assert_eq!(&logged[..256], (0u8..=255).collect::<Vec<_>>().as_slice());
}

#[test]
fn the_heartbeat_shows_what_each_running_task_said_last() {
    use crate::util::Collected;
    use std::time::Duration;
    let t = Test::new(
        "[jobs.build]\ncommand = 'echo starting; echo \"compiling part 7\" >&2; while [ ! -e go ]; do sleep 0.05; done'\n[jobs.wait]\ncommand = 'while [ ! -e go ]; do sleep 0.05; done'\n",
    )
    .env("RUNNER_HEARTBEAT", "200ms");
    let mut child = t.spawn();
    let stderr = Collected::start(child.stderr.take().unwrap());
    let seen = stderr.wait_for(Duration::from_secs(20), "[runner]   build (")
        && stderr.wait_for(Duration::from_secs(20), "[runner]   wait (");
    t.write("go", "");
    let status = child.wait().unwrap();
    let text = stderr.finish();
    assert!(seen, "no heartbeat lines for the running tasks:\n{text}");
    assert_eq!(status.code(), Some(0), "{text}");
    let build = text
        .lines()
        .find(|l| l.starts_with("[runner]   build ("))
        .unwrap();
    assert!(build.ends_with("): compiling part 7"), "{build}");
    let wait = text
        .lines()
        .find(|l| l.starts_with("[runner]   wait ("))
        .unwrap();
    assert!(wait.ends_with("): nothing shown yet"), "{wait}");
}

#[test]
fn the_heartbeat_keeps_tasks_with_the_same_label_apart() {
    use crate::util::Collected;
    use std::time::Duration;
    let t = Test::new(
        "pool = 2\n[jobs.same]\ncommand = 'while [ ! -e go ]; do sleep 0.05; done'\nitems = ['x', 'x']\n",
    )
    .env("RUNNER_HEARTBEAT", "200ms");
    let mut child = t.spawn();
    let stderr = Collected::start(child.stderr.take().unwrap());
    // One heartbeat that lists both: its summary line, then a line for each task.
    let both = crate::util::wait_for(Duration::from_secs(20), || {
        let text = stderr.now();
        let lines: Vec<&str> = text.lines().collect();
        lines.windows(3).any(|w| {
            w[0].contains(" done, 2 running")
                && w[1].starts_with("[runner]   same:x (")
                && w[2].starts_with("[runner]   same:x (")
        })
    });
    t.write("go", "");
    let status = child.wait().unwrap();
    let text = stderr.finish();
    assert!(both, "both tasks in the heartbeat:\n{text}");
    assert_eq!(status.code(), Some(0), "{text}");
}

#[test]
fn a_task_waiting_to_retry_frees_its_slot_for_the_others() {
    // pool = 1: the flaky task fails once and retries after 2 s; the three others start
    // during that delay (each notes its start on its own clock), and the retry is
    // attempt 2 of the same task, its record keeping both tries.
    let t = Test::new(
        "pool = 1\n\
         [jobs.flaky]\n\
         command = 'date +%s.%N >> flaky; if [ $RUNNER_ATTEMPT = 1 ]; then exit 1; fi; echo $RUNNER_ATTEMPT > attempt'\n\
         retries = 1\nretry_delay = '2s'\n\
         [jobs.other]\n\
         command = 'date +%s.%N >> others'\n\
         items = { range = [0, 3] }\n",
    )
    .args(&["--report", "report.json"]);
    t.run().assert_code(0);
    let times =
        |name: &str| -> Vec<f64> { t.read(name).lines().map(|l| l.parse().unwrap()).collect() };
    let (flaky, others) = (times("flaky"), times("others"));
    assert_eq!(flaky.len(), 2, "{flaky:?}");
    assert_eq!(others.len(), 3, "{others:?}");
    for start in &others {
        assert!(
            *start > flaky[0] && *start < flaky[1],
            "every other task starts during the delay: flaky {flaky:?}, others {others:?}"
        );
    }
    assert!(
        flaky[1] - flaky[0] >= 2.0,
        "the delay still holds: {flaky:?}"
    );
    assert_eq!(t.read("attempt").trim(), "2");
    let report: serde_json::Value = serde_json::from_str(&t.read("report.json")).unwrap();
    let task = report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|task| task["job"] == "flaky")
        .unwrap();
    assert_eq!(task["attempts"], 2, "{task}");
    assert_eq!(task["tries"].as_array().unwrap().len(), 2, "{task}");
    assert_eq!(task["status"], "succeeded", "{task}");
}

#[test]
fn fail_fast_ends_a_task_waiting_to_retry_without_another_attempt() {
    let t = Test::new(
        "pool = 2\nfail_fast = true\n\
         [jobs.waiter]\n\
         command = 'echo $RUNNER_ATTEMPT >> attempts; exit 1'\n\
         retries = 3\nretry_delay = '30s'\n\
         [jobs.bad]\n\
         command = 'while [ ! -s attempts ]; do sleep 0.01; done; exit 2'\n",
    );
    // `bad` fails once the first attempt wrote its line (`-s`: not when the shell only
    // created the file, which raced under load in CI: the stop came before the line).
    let started = std::time::Instant::now();
    let out = t.run();
    out.assert_code(1).assert_stderr_has("fail-fast");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "the delay was cut short"
    );
    assert_eq!(t.read("attempts"), "1\n", "no attempt after the stop");
    let row = out
        .stderr
        .lines()
        .find(|l| l.starts_with("waiter "))
        .unwrap();
    assert!(row.split_whitespace().nth(1) == Some("1"), "{row}");
}
