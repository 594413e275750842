//! Choosing and shaping a run (issue 13): targets (`runner FILE JOB…`), `runner plan`
//! and `--dry-run`, `[vars]` and `--set`, items with fields (tables and matrices), and
//! every error a user can make with them.

use crate::util::{Test, BIN};
use serde_json::Value;
use std::process::{Command, Stdio};

/// A graph with a needs chain, a queue, and jobs on the side; every task appends its
/// job's name to ran.log.
const GRAPH: &str = r#"
[jobs.fmt]
command = "echo fmt >> ran.log"
[jobs.clippy]
command = "echo clippy >> ran.log"
needs = ["fmt"]
[jobs.lint]
command = "echo lint >> ran.log"
needs = ["clippy"]
[jobs.setup]
command = "echo setup >> ran.log"
[jobs.produce]
command = "echo produce >> ran.log; echo a; echo b"
needs = ["setup"]
to = "q"
[jobs.consume]
command = "echo consume {item} >> ran.log"
items = { queue = "q" }
[jobs.other]
command = "echo other >> ran.log"
"#;

fn ran(t: &Test) -> Vec<String> {
    let mut jobs: Vec<String> = t
        .read("ran.log")
        .lines()
        .map(|l| l.split(' ').next().unwrap_or("").to_string())
        .collect();
    jobs.sort();
    jobs.dedup();
    jobs
}

/// The jobs named in the summary table (the lines between its heading and the total).
fn summary_jobs(stderr: &str) -> Vec<String> {
    let table: Vec<&str> = stderr
        .lines()
        .skip_while(|l| !l.starts_with("job "))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .collect();
    let mut jobs: Vec<String> = table
        .iter()
        .filter_map(|l| l.split_whitespace().next())
        .map(String::from)
        .collect();
    jobs.sort();
    jobs
}

#[test]
fn a_target_runs_with_its_needs_transitively_and_nothing_else() {
    let t = Test::new(GRAPH).args(&["run", "jobs.toml", "lint"]);
    let out = t.run();
    out.assert_code(0);
    assert_eq!(ran(&t), ["clippy", "fmt", "lint"]);
    assert_eq!(summary_jobs(&out.stderr), ["clippy", "fmt", "lint"]);
    // `runner FILE JOB` is the same; a job named twice runs once.
    let t = Test::new(GRAPH).args(&["fmt", "fmt"]);
    t.run().assert_code(0);
    assert_eq!(t.read("ran.log"), "fmt\n");
}

#[test]
fn a_queue_brings_its_other_side_both_ways() {
    for target in ["consume", "produce"] {
        let t = Test::new(GRAPH).args(&[target, "--report", "report.json"]);
        t.run().assert_code(0);
        assert_eq!(ran(&t), ["consume", "produce", "setup"], "{target}");
        let report: Value = serde_json::from_str(&t.read("report.json")).unwrap();
        let mut jobs: Vec<&str> = report["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["job"].as_str().unwrap())
            .collect();
        jobs.sort();
        jobs.dedup();
        assert_eq!(jobs, ["consume", "produce", "setup"], "{target}");
        assert_eq!(
            report["run"]["jobs"],
            serde_json::json!(["setup", "produce", "consume"])
        );
    }
}

#[test]
fn an_unknown_job_is_refused_with_a_suggestion_by_every_command() {
    for args in [
        &["run", "jobs.toml", "lnt"][..],
        &["plan", "jobs.toml", "lnt"],
        &["graph", "jobs.toml", "lnt"],
        &["lnt"],
    ] {
        let t = Test::new(GRAPH).args(args);
        t.run()
            .assert_code(2)
            .assert_stderr_has("jobs.toml has no job `lnt` (did you mean `lint`?)")
            .assert_stderr_has("its jobs are fmt, clippy, lint, setup, produce, consume, other");
        assert!(!t.path("ran.log").exists(), "{args:?}: nothing runs");
    }
}

#[test]
fn graph_and_plan_show_only_the_selection() {
    let t = Test::new(GRAPH).args(&["graph", "jobs.toml", "clippy"]);
    let out = t.run();
    out.assert_code(0);
    assert!(out.stdout.contains("clippy\n  needs fmt"), "{}", out.stdout);
    assert!(!out.stdout.contains("lint") && !out.stdout.contains("other"));
    let t = Test::new(GRAPH).args(&["plan", "jobs.toml", "consume"]);
    let out = t.run();
    out.assert_code(0);
    assert!(
        out.stdout
            .starts_with("plan of jobs.toml: 3 jobs, 2 tasks and tasks fed by queues\n"),
        "{}",
        out.stdout
    );
    assert!(out
        .stdout
        .contains("consume: one task per item of queue `q`, as the run goes"));
    assert!(!out.stdout.contains("fmt"), "{}", out.stdout);
    assert!(!t.path("ran.log").exists(), "plan runs nothing");
}

/// A program that writes its arguments, NUL-terminated, to args.<RUNNER_INDEX>, and a
/// POSIX shell (`sh` by name) that writes the script it was given to script.<index>
/// before running it: what the tasks really got, to compare with the plan.
fn recorders(t: &Test) -> (String, String) {
    t.write(
        "bin/args",
        "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\0' \"$a\"; done > \"args.$RUNNER_INDEX\"\n",
    );
    t.write(
        "bin/sh",
        "#!/bin/sh\nprintf '%s' \"$2\" > \"script.$RUNNER_INDEX\"\nexec /bin/sh -c \"$2\"\n",
    );
    for name in ["bin/args", "bin/sh"] {
        let status = Command::new("chmod")
            .args(["+x", t.path(name).to_str().unwrap()])
            .status()
            .unwrap();
        assert!(status.success());
    }
    (
        t.path("bin/args").display().to_string(),
        t.path("bin/sh").display().to_string(),
    )
}

const HOSTILE: &str = r#"items = ["a b", "$(touch pwned)", "`touch pwned`", "it's \"so\"", "line\nbreak; touch pwned", "-rf", "", "é ✓ \\ *", "{{item}} ${HOME}"]"#;

fn plan_json(t: &Test, job: &str) -> Vec<Value> {
    let out = Command::new(BIN)
        .current_dir(t.dir.path())
        .args(["plan", "jobs.toml", job, "--json"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    plan.as_array().unwrap().clone()
}

#[test]
fn the_plan_shows_what_runs_byte_for_byte_with_hostile_items() {
    let t = Test::new("");
    let (args, shell) = recorders(&t);
    t.write(
        "jobs.toml",
        &format!(
            "[jobs.argv]\ncommand = [{args:?}, \"{{item}}\", \"x{{item}}y\", \"{{index}}\"]\n{HOSTILE}\n[jobs.shell]\nshell = [{shell:?}, \"-c\"]\ncommand = \"printf '%s' {{item}} > out.{{index}}; echo {{item}}x{{item}}\"\n{HOSTILE}\n"
        ),
    );
    let argv_plan = plan_json(&t, "argv");
    let shell_plan = plan_json(&t, "shell");
    assert_eq!((argv_plan.len(), shell_plan.len()), (9, 9));
    let out = t.run();
    out.assert_code(0);
    assert!(!t.path("pwned").exists(), "an item ran as code");
    for task in &argv_plan {
        let index = task["index"].as_u64().unwrap();
        let got = std::fs::read(t.path(&format!("args.{index}"))).unwrap();
        let planned: Vec<u8> = task["command"].as_array().unwrap()[1..]
            .iter()
            .flat_map(|a| {
                let mut bytes = a.as_str().unwrap().as_bytes().to_vec();
                bytes.push(0);
                bytes
            })
            .collect();
        assert_eq!(got, planned, "argv task {index}");
        assert_eq!(task["action"], "run");
        assert_eq!(task["reason"], "never ran");
    }
    for task in &shell_plan {
        let index = task["index"].as_u64().unwrap();
        let got = std::fs::read(t.path(&format!("script.{index}"))).unwrap();
        assert_eq!(
            got,
            task["command"].as_str().unwrap().as_bytes(),
            "shell task {index}"
        );
        assert_eq!(task["shell"], serde_json::json!([shell, "-c"]));
        // And the item itself arrived whole.
        let item = task["item"].as_str().unwrap();
        assert_eq!(t.read(&format!("out.{index}")), item, "task {index}");
    }
    assert_eq!(shell_plan[8]["item"], "{item} ${HOME}");
    // The text plan shows the same commands, control characters escaped.
    let out = Command::new(BIN)
        .current_dir(t.dir.path())
        .args(["plan", "jobs.toml", "shell"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("] printf '%s' 'line\\nbreak; touch pwned' > out.4;"),
        "{text}"
    );
    assert!(
        text.contains("] printf '%s' '$(touch pwned)' > out.1;"),
        "{text}"
    );
}

#[test]
fn dry_run_is_the_plan_and_runs_nothing() {
    let t = Test::new(GRAPH);
    let plan = t.run_with(&["plan", "jobs.toml", "lint"]);
    let dry = t.run_with(&["run", "jobs.toml", "lint", "--dry-run"]);
    dry.assert_code(0);
    assert_eq!(plan.stdout, dry.stdout);
    assert!(
        dry.stdout
            .contains("  lint  run (never ran)\n    $ echo lint >> ran.log\n"),
        "{}",
        dry.stdout
    );
    assert!(!t.path("ran.log").exists());
}

#[test]
fn a_billion_items_plan_as_a_preview_and_json_streams() {
    let t = Test::new(
        "[jobs.big]\ncommand = ['echo', '{item}']\nitems = { range = [0, 1000000000] }\n",
    );
    let out = t.run_with(&["plan", "jobs.toml"]);
    out.assert_code(0);
    assert!(
        out.stdout
            .contains("big: 1,000,000,000 tasks, the first 10 shown"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("  … and 999,999,990 more tasks"),
        "{}",
        out.stdout
    );
    // Counted as far as a plan decides task by task, and said so.
    out.assert_stdout_has(
        "  1,000,000,000 tasks: of the first 100,000, 100,000 run; the rest not counted
",
    )
    .assert_stdout_has(
        "Plan: 1,000,000,000 tasks: 100,000 run, 999,900,000 not counted
",
    );
    assert_eq!(out.stdout.matches("$ echo").count(), 10);
    // JSON: every task, streamed: the first lines come at once, and a reader that
    // stops reading ends it (no buffer of a billion objects).
    let mut child = Command::new(BIN)
        .current_dir(t.dir.path())
        .args(["plan", "jobs.toml", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    assert_eq!(lines.next().unwrap().unwrap(), "[");
    let first: Value =
        serde_json::from_str(lines.next().unwrap().unwrap().trim_end_matches(',')).unwrap();
    assert_eq!(first["command"], serde_json::json!(["echo", "0"]));
    for _ in 0..1000 {
        lines.next().unwrap().unwrap();
    }
    drop(lines);
    let status = crate::distributed::wait_child(&mut child, std::time::Duration::from_secs(10));
    assert_eq!(status, Some(0), "a closed pipe ends the plan quietly");
}

const VARS: &str = r#"
[vars]
date = "2026-11-27"
region = "eu"
retries = 2
[jobs.fetch]
command = "echo fetch {vars.region} {vars.date} {item} > out.{index}"
items = ["{vars.region}-a", "b"]
env = { DATE = "{vars.date}" }
"#;

#[test]
fn set_overrides_a_var_everywhere_it_is_used() {
    let t = Test::new(VARS);
    let plan = plan_json(&t, "fetch");
    assert_eq!(plan[0]["command"], "echo fetch eu 2026-11-27 eu-a > out.0");
    let out = t.run_with(&[
        "run",
        "jobs.toml",
        "--set",
        "date=2026-12-01 x=y",
        "--set",
        "region=us",
    ]);
    out.assert_code(0);
    assert_eq!(t.read("out.0"), "fetch us 2026-12-01 x=y us-a\n");
    let out = t.run_with(&["plan", "jobs.toml", "--json", "--set", "date=it's"]);
    let plan: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(plan[1]["command"], "echo fetch eu \"it's\" b > out.1");
    assert_eq!(plan[1]["env"]["DATE"], "it's");
    let out = t.run_with(&["plan", "jobs.toml", "--set", "region=us"]);
    assert!(
        out.stdout
            .contains("vars: date=2026-11-27, region=us (--set), retries=2"),
        "{}",
        out.stdout
    );
}

#[test]
fn set_mistakes_are_refused_before_anything_runs() {
    let t = Test::new(VARS);
    t.run_with(&["run", "jobs.toml", "--set", "dat=x"])
        .assert_code(2)
        .assert_stderr_has("`--set dat=…`: `dat` is not declared in `[vars]`")
        .assert_stderr_has("did you mean `--set date=…`? the vars are date, region, retries");
    t.run_with(&["run", "jobs.toml", "--set", "date"])
        .assert_code(2)
        .assert_stderr_has("\"date\" has no `=`: write NAME=VALUE");
    t.run_with(&["run", "jobs.toml", "--set", "date=1", "--set", "date=2"])
        .assert_code(2)
        .assert_stderr_has(
            "--set date is given twice (date=\"1\", then date=\"2\"): give each var once",
        );
    t.run_with(&["plan", "jobs.toml", "--set", "=x"])
        .assert_code(2)
        .assert_stderr_has("has no var name before `=`");
    let t = Test::new("[jobs.a]\ncommand = 'echo {vars.x}'\n");
    t.run()
        .assert_code(2)
        .assert_stderr_has("`{vars.x}`: the file declares no vars; add `[vars]` with `x = \"…\"`");
    t.run_with(&["run", "jobs.toml", "--set", "x=1"])
        .assert_code(2)
        .assert_stderr_has("this file declares no vars");
    assert!(!t.path("out.0").exists());
}

#[test]
fn a_matrix_with_two_excludes_runs_seven_tasks_with_labels_and_fields() {
    let t = Test::new(
        r#"
[jobs.test]
command = "echo {item.os}/{item.py}-{item.py-v} $RUNNER_ITEM $RUNNER_ITEM_OS $RUNNER_ITEM_PY_V > out.{index}"
items = { matrix = { os = ["linux", "mac", "win"], py = ["3.11", "3.12", "3.13"], py-v = [1] }, exclude = [ { os = "mac", py = "3.11" }, { os = "win", py = "3.13" } ] }
"#,
    );
    // A key with a dash (`node-version` in GitHub matrices) is `{item.py-v}` and
    // `RUNNER_ITEM_PY_V`.
    let t = t.args(&["--report", "report.json"]);
    let out = t.run();
    out.assert_code(0);
    let labels = [
        "linux,3.11,1",
        "linux,3.12,1",
        "linux,3.13,1",
        "mac,3.12,1",
        "mac,3.13,1",
        "win,3.11,1",
        "win,3.12,1",
    ];
    for (i, label) in labels.iter().enumerate() {
        let parts: Vec<&str> = label.split(',').collect();
        assert_eq!(
            t.read(&format!("out.{i}")),
            format!("{}/{}-1 {label} {} 1\n", parts[0], parts[1], parts[0]),
            "task {i}"
        );
        assert!(
            out.stderr.contains(&format!("done test:{label} ")),
            "{}",
            out.stderr
        );
    }
    assert!(!t.path("out.7").exists());
    let report: Value = serde_json::from_str(&t.read("report.json")).unwrap();
    let tasks = report["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 7);
    assert_eq!(tasks[3]["item"], "mac,3.12,1");
    assert_eq!(
        tasks[3]["fields"],
        serde_json::json!({"os": "mac", "py": "3.12", "py-v": "1"})
    );
}

#[test]
fn item_tables_give_each_task_its_fields() {
    let t = Test::new(
        "[jobs.svc]\ncommand = ['sh', '-c', 'echo $1 $2 $RUNNER_ITEM_PORT', 'sh', '{item.name}', '{item.port}']\nitems = [ { name = 'api', port = 8080 }, { port = 8081, name = 'web' } ]\n",
    );
    let out = t.run();
    out.assert_code(0);
    assert_eq!(out.lines_of("svc:api,8080"), ["api 8080 8080"]);
    // Keys are in the first table's order, whatever the order of later ones.
    assert_eq!(out.lines_of("svc:web,8081"), ["web 8081 8081"]);
}

/// Any key is a field: `node-version` is `{item.node-version}` and
/// `RUNNER_ITEM_NODE_VERSION`, in a table as in a matrix.
#[test]
fn item_table_keys_with_a_dash_are_fields() {
    let t = Test::new(
        "[jobs.t]\ncommand = 'echo {item.node-version} $RUNNER_ITEM_NODE_VERSION'\nitems = [ { node-version = 18 }, { node-version = 20 } ]\n",
    );
    let out = t.run();
    out.assert_code(0);
    assert_eq!(out.lines_of("t:18"), ["18 18"]);
    assert_eq!(out.lines_of("t:20"), ["20 20"]);
}

#[track_caller]
fn refused(jobfile: &str, message: &str) -> String {
    let t = Test::new(jobfile);
    let out = t.run();
    out.assert_code(2).assert_stderr_has(message);
    out.stderr.clone()
}

#[test]
fn items_with_fields_mistakes_are_load_errors() {
    let job = |rest: &str| format!("[jobs.t]\ncommand = ['echo', '{{item.os}}']\n{rest}\n");
    refused(
        &job("items = [ { os = 'linux' }, { os = 'mac', py = '3' } ]"),
        "item 1 has the fields os, py but item 0 has os: every table in `items` has the same keys",
    );
    refused(
        &job("items = [ { os = ['linux'] } ]"),
        "field `os` holds an array; a field's value is a string, a number or a boolean",
    );
    refused(
        &job("items = { matrix = { os = [] } }"),
        "matrix key `os` has an empty list: the matrix would have no items",
    );
    let err = refused(
        &job("items = { matrix = { os = ['linux', 'mac'] }, exclude = [ { so = 'mac' } ] }"),
        "`exclude` names `so`, which is not a key of the matrix",
    );
    assert!(err.contains("did you mean `os`?"), "{err}");
    let err = refused(
        &job("items = { matrix = { os = ['linux', 'mac'] }, exclude = [ { os = 'win' } ] }"),
        "`exclude` has os = \"win\", which is not in the matrix's list for `os`",
    );
    assert!(
        err.contains("the values of `os` are \"linux\", \"mac\""),
        "{err}"
    );
    refused(
        &job("items = { matrix = { os = ['linux', 'mac'], py = [1, 2] }, exclude = [ { os = 'mac' }, { os = 'mac', py = 1 } ] }"),
        "this `exclude` entry matches nothing that an earlier entry has not already removed",
    );
    refused(
        &job("items = { matrix = { os = ['linux'] }, exclude = [ { os = 'linux' } ] }"),
        "the excludes remove every combination of the matrix",
    );
    let err = refused(
        "[jobs.t]\ncommand = 'echo {item}'\nitems = { matrix = { os = ['linux'], py = ['3'] } }\n",
        "job `t`: `{item}` on items with fields: name one of them ({item.os}, {item.py})",
    );
    assert!(
        err.contains("jobs.toml:2:17"),
        "points at the placeholder: {err}"
    );
    refused(
        "[jobs.t]\ncommand = ['echo', '{item.os}']\nitems = ['a']\n",
        "job `t`: `{item.os}`: this job's items have no fields; write `{item}`",
    );
    refused(
        "[jobs.t]\ncommand = ['echo', '{item.oss}']\nitems = [ { os = 'a' } ]\n",
        "`{item.oss}`: the items have no field `oss` (did you mean `{item.os}`?)",
    );
    // The top-level env is checked against every job, and said once.
    let err = refused(
        "[env]\nX = '{item}'\n[jobs.a]\ncommand = 'true'\nitems = [ { os = 'a' } ]\n[jobs.b]\ncommand = 'true'\nitems = [ { os = 'b' } ]\n",
        "job `a`: `{item}` on items with fields",
    );
    assert!(!err.contains("job `b`"), "{err}");
    // Fields and vars are refused inside quotes, as items are.
    refused(
        "[jobs.t]\ncommand = \"echo '{item.os}'\"\nitems = [ { os = 'a' } ]\n",
        "`{item.os}` inside single quotes in a shell command",
    );
    refused(
        "[vars]\nv = 'x'\n[jobs.t]\ncommand = 'echo \"{vars.v}\"'\n",
        "`{vars.v}` inside double quotes in a shell command",
    );
    refused(
        "[jobs.t]\ncommand = 'true'\nitems = ['{index}']\n",
        "`{index}` in an item: only {vars.NAME} and {job} are known before tasks start",
    );
}

#[test]
fn bash_completes_job_names_after_the_file() {
    if Command::new("bash").arg("--version").output().is_err() {
        panic!("bash is needed for this test");
    }
    let t = Test::new(GRAPH);
    let script = Command::new(BIN)
        .args(["completions", "bash"])
        .output()
        .unwrap();
    t.write("complete.bash", &String::from_utf8_lossy(&script.stdout));
    let bin_dir = std::path::Path::new(BIN)
        .parent()
        .unwrap()
        .display()
        .to_string();
    let complete = |line: &str| -> String {
        let probe = format!(
            "source complete.bash\nCOMP_WORDS=({line})\nCOMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))\n_runner_jobs runner \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\necho \"${{COMPREPLY[*]}}\"\n"
        );
        let out = Command::new("bash")
            .current_dir(t.dir.path())
            .env(
                "PATH",
                format!("{bin_dir}:{}", std::env::var("PATH").unwrap_or_default()),
            )
            .args(["-c", &probe])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(
        complete("runner run jobs.toml ''"),
        "fmt clippy lint setup produce consume other"
    );
    assert_eq!(complete("runner plan jobs.toml c"), "clippy consume");
    assert_eq!(complete("runner jobs.toml --pool 2 o"), "other");
    // Elsewhere clap's completion answers: options, not jobs.
    assert!(complete("runner run jobs.toml --po").contains("--pool"));
    assert!(!complete("runner check ''").contains("clippy"));
    // A file being edited, with an error in it, still gives its job names.
    t.write(
        "broken.toml",
        "[jobs.one]\ncommand = 'echo {itme}'\n[jobs.two]\ncommand = 'true'\n",
    );
    assert_eq!(complete("runner run broken.toml ''"), "one two");
}

/// docs/plans.md shows `runner plan` of every shipped job file, as the runner prints it
/// now. `RUNNER_BLESS=1 cargo nextest run docs_show` rewrites it after a change.
#[test]
fn docs_show_the_plan_of_every_shipped_file() {
    let root = crate::util::root();
    let mut files: Vec<String> = vec!["jobs/nslookup.toml".into(), "jobs/ci.toml".into()];
    let mut examples: Vec<String> = std::fs::read_dir(root.join("examples"))
        .unwrap()
        .map(|e| format!("examples/{}", e.unwrap().file_name().to_string_lossy()))
        .filter(|f| f.ends_with(".toml"))
        .collect();
    examples.sort();
    files.extend(examples);
    let mut doc = String::from(
        "# The plan of every shipped job file\n\n`runner plan FILE` prints every task a run of FILE would have and what it would run,\nwithout running anything (see [job-file.md](job-file.md#runner-plan)). These are the\nplans of the files in `jobs/` and `examples/`, as the runner prints them today (a test\nkeeps this page true: `tests/it/choosing.rs`).\n",
    );
    // A state folder of its own: what earlier runs of these files did (the project's
    // CI runs jobs/ci.toml) is not part of the page.
    let state = tempfile::tempdir().unwrap();
    for file in &files {
        let out = Command::new(BIN)
            .current_dir(root)
            .args(["plan", file, "--state"])
            .arg(state.path())
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        doc.push_str(&format!(
            "\n## {file}\n\n```text\n$ runner plan {file}\n{}```\n",
            String::from_utf8_lossy(&out.stdout)
        ));
    }
    let path = root.join("docs/plans.md");
    if std::env::var_os("RUNNER_BLESS").is_some() {
        std::fs::write(&path, &doc).unwrap();
    }
    let shown = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        shown == doc,
        "docs/plans.md is out of date: run RUNNER_BLESS=1 cargo nextest run docs_show_the_plan \
         (a plan depends on the files there: if you ran examples/pipeline.toml in place, \
         delete examples/out first)"
    );
}

/// Found by a hostile probe of issue 13: each of these once went wrong.
#[test]
fn mistakes_found_by_probing_are_handled() {
    // Decimal numbers stay as written.
    let t = Test::new("[vars]\nv = 1.0\n[jobs.t]\ncommand = ['echo', 'py{item.py}', '{vars.v}']\nitems = { matrix = { py = [3.9, 3.10] } }\n");
    let out = t.run();
    out.assert_code(0);
    assert_eq!(out.lines_of("t:3.10"), ["py3.10 1.0"]);
    // A variable the runner sets cannot be set in `env`.
    refused(
        "[jobs.t]\ncommand = 'true'\nenv = { RUNNER_ITEM = 'x' }\n",
        "`RUNNER_ITEM` is set by the runner for every task",
    );
    // Two items with one label.
    refused(
        "[jobs.t]\ncommand = ['echo', '{item.a}']\nitems = [ { a = 'x,y', b = 'z' }, { a = 'x', b = 'y,z' } ]\n",
        "items 0 and 1 have the same label `x,y,z`",
    );
    // An exclude that earlier entries together already cover.
    refused(
        "[jobs.t]\ncommand = ['echo', '{item.a}']\nitems = { matrix = { a = [1, 2], b = ['x', 'y'] }, exclude = [ { a = 1, b = 'x' }, { a = 1, b = 'y' }, { a = 1 } ] }\n",
        "this `exclude` entry matches nothing that an earlier entry has not already removed",
    );
    // A broken matrix is reported once, without advice about its placeholders.
    let err = refused(
        "[jobs.t]\ncommand = ['echo', '{item.os}']\nitems = { matrix = { os = ['a', 'a'] } }\n",
        "matrix key `os` lists \"a\" twice",
    );
    assert!(!err.contains("have no fields"), "{err}");
    let err = refused(
        "[jobs.t]\ncommand = ['echo', '{item.os}']\n",
        "this job has no `items`, so no fields",
    );
    assert!(!err.contains("write `{item}`"), "{err}");
    // A slip of case gets its suggestion; an argv error points at its argument.
    let err = refused(
        "[vars]\nv = 'x'\n[jobs.t]\ncommand = ['echo', 'a', '{vars.V}']\n",
        "did you mean `{vars.v}`?",
    );
    assert!(err.contains("jobs.toml:4:26"), "{err}");
    // `check` and `graph` take `--set`, as `plan` and `run` do.
    let t = Test::new("[vars]\nlist = 'missing'\n[jobs.t]\ncommand = ['echo', '{item}']\nitems = { file = '{vars.list}.txt' }\n");
    t.write("real.txt", "a\n");
    t.run_with(&["check", "jobs.toml"]).assert_code(2);
    t.run_with(&["check", "jobs.toml", "--set", "list=real"])
        .assert_code(0);
    t.run_with(&["graph", "jobs.toml", "--set", "list=real"])
        .assert_code(0);
    // A write error of the text plan is an error (exit 1), as it is for --json.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let status = Command::new(BIN)
        .current_dir(t.dir.path())
        .args(["plan", "jobs.toml", "--set", "list=real"])
        .stdout(full)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1));
    // A list item too big for RUNNER_ITEM is refused at load, not when its task starts.
    let big = "x".repeat(130 * 1024);
    refused(
        &format!("[jobs.t]\ncommand = ['true']\nitems = ['{big}']\n"),
        "more than Linux takes in one environment variable",
    );
    // --dry-run says that the reports it was asked for are not written.
    let dry = Test::new(GRAPH).run_with(&["run", "jobs.toml", "--dry-run", "--html", "r.html"]);
    dry.assert_code(0).assert_stderr_has(
        "--dry-run runs nothing, so --report, --junit, --html, --trace and --logs write nothing",
    );
    // Control characters in an argv argument are shown as `$'…'`, pasteable.
    let t = Test::new(
        "[jobs.t]\ncommand = ['printf', '%s', '{item}']\nitems = [\"a\\nb\\u001b[31m\"]\n",
    );
    let out = t.run_with(&["plan", "jobs.toml"]);
    assert!(
        out.stdout.contains("$ printf '%s' $'a\\nb\\x1b[31m'\n"),
        "{}",
        out.stdout
    );
}

/// A stdin file that is a FIFO with no writer (or a device) never blocks the run; a
/// folder fails its task.
#[test]
fn a_stdin_file_that_is_a_fifo_or_a_folder_never_hangs_the_run() {
    let t = Test::new("[jobs.g]\ncommand = 'head -c 10 | wc -c'\nstdin = { file = '{item}' }\nitems = ['ff', '/dev/zero', '.']\n");
    let made = Command::new("mkfifo").arg(t.path("ff")).status().unwrap();
    assert!(made.success());
    let mut child = t.spawn();
    let status = crate::distributed::wait_child(&mut child, std::time::Duration::from_secs(20));
    let err = crate::distributed::stderr_of(&mut child);
    assert_eq!(status, Some(1), "{err}");
    assert!(
        err.contains("cannot open stdin file ./.: it is a folder"),
        "{err}"
    );
}

/// Every var is in every task's environment as `RUNNER_VAR_<NAME>`, with its `--set`
/// value; a var's value is part of a task's identity even when only the environment
/// carries it.
#[test]
fn vars_are_in_every_tasks_environment() {
    let t = Test::new(
        "[vars]\nprofile = 'dev'\nlevel_2 = 3\n[jobs.show]\ncommand = 'echo \"$RUNNER_VAR_PROFILE $RUNNER_VAR_LEVEL_2 $RUNNER_ITEM\"'\nitems = ['a']\n[jobs.argv]\ncommand = ['sh', '-c', 'echo argv $RUNNER_VAR_PROFILE']\n",
    );
    let out = t.run();
    out.assert_code(0)
        .assert_stdout_has("[show:a] dev 3 a\n")
        .assert_stdout_has("[argv] argv dev\n");
    let out = t.run_with(&["run", "jobs.toml", "--set", "profile=release"]);
    out.assert_code(0)
        .assert_stdout_has("[show:a] release 3 a\n")
        .assert_stdout_has("[argv] argv release\n");
    // Done earlier with the same vars; another value is another task.
    let out = t.run_with(&["run", "jobs.toml", "--set", "profile=release", "--resume"]);
    out.assert_code(0);
    assert!(!out.stdout.contains("release"), "{}", out.stdout);
    let out = t.run_with(&["plan", "jobs.toml", "--set", "profile=test", "--resume"]);
    out.assert_code(0)
        .assert_stdout_has("show:a  run (command changed)");
}

/// Two vars that would make one variable, and an `env` that would hide a var's, are
/// load errors that name them.
#[test]
fn vars_that_would_share_a_variable_are_refused() {
    let t = Test::new("[vars]\nprofile = 'a'\nPROFILE = 'b'\n[jobs.t]\ncommand = 'touch ran'\n");
    t.run()
        .assert_code(2)
        .assert_stderr_has("vars `profile` and `PROFILE` would both be RUNNER_VAR_PROFILE");
    let t = Test::new(
        "[vars]\nprofile = 'a'\n[jobs.t]\ncommand = 'touch ran'\nenv = { RUNNER_VAR_PROFILE = 'x', RUNNER_VAR_OTHER = 'y' }\n",
    );
    t.run()
        .assert_code(2)
        .assert_stderr_has("`RUNNER_VAR_PROFILE` is set by the runner for every task");
    assert!(!t.path("ran").exists());
}

/// A shell script of several lines is shown as its lines, under the task; each job's
/// heading carries the settings that change what happens to its tasks; counts per
/// action close each fan-out job and the plan.
#[test]
fn the_plan_shows_scripts_as_lines_settings_and_counts() {
    let t = Test::new(
        "[jobs.build]\ncommand = \"\"\"\nset -e\nfor f in a b; do\n  echo $f\ndone\n\"\"\"\ntimeout = '30s'\nretries = 2\nconcurrency = 4\nallow_failure = true\n[jobs.fan]\ncommand = ['echo', '{item}']\nitems = { range = [0, 2500] }\n",
    );
    let out = t.run_with(&["plan", "jobs.toml"]);
    out.assert_code(0)
        .assert_stdout_has(
            "build  [concurrency 4, timeout 30s, retries 2 (delay 1s), allow_failure]\n  build  run (never ran)\n    $ set -e\n      for f in a b; do\n        echo $f\n      done\n",
        )
        .assert_stdout_has("fan: 2,500 tasks, the first 10 shown\n")
        .assert_stdout_has("  … and 2,490 more tasks")
        .assert_stdout_has("  2,500 tasks: 2,500 run\n")
        .assert_stdout_has("\nPlan: 2,501 tasks: 2,501 run\n");
    assert!(!out.stdout.contains("\\n"), "{}", out.stdout);
    // JSON keeps the script whole.
    let json = t.run_with(&["plan", "jobs.toml", "--json"]);
    let plan: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(
        plan[0]["command"],
        "set -e\nfor f in a b; do\n  echo $f\ndone\n"
    );
}
