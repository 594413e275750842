//! Property: any item — quotes, `$( )`, backticks, newlines, leading dashes, globs,
//! unicode — reaches a shell-string command byte for byte, and never runs as code.

use crate::util::Test;
use proptest::prelude::*;

fn hostile_item() -> impl Strategy<Value = String> {
    prop_oneof![
        "[-a-zA-Z0-9 '\"$`()\\\\;&|<>*?~#!{}\\[\\]\n\t=%^,.:@+]{0,24}",
        Just("$(touch pwned)".to_string()),
        Just("`touch pwned`".to_string()),
        Just("'; touch pwned; '".to_string()),
        Just("\"; touch pwned; \"".to_string()),
        Just("-rf".to_string()),
        Just("a\nb; touch pwned".to_string()),
        Just("é✓😀 ${HOME} {item}".to_string()),
        Just(String::new()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn items_reach_a_shell_command_byte_for_byte(items in prop::collection::vec(hostile_item(), 1..40)) {
        // Items written in the file are templates (they may name vars): braces doubled.
        let written = |i: &String| written_in_a_list(i);
        let list = toml::Value::Array(items.iter().map(|i| toml::Value::String(written(i))).collect());
        let t = Test::new(&format!(
            "pool = 4\n[jobs.echo]\ncommand = \"printf '%s' {{item}} > out/{{index}}\"\nitems = {list}\n"
        ));
        std::fs::create_dir(t.path("out")).unwrap();
        let out = t.run();
        prop_assert_eq!(out.code, Some(0), "{}", out.stderr);
        for (index, item) in items.iter().enumerate() {
            let got = std::fs::read(t.path(&format!("out/{index}"))).unwrap();
            prop_assert_eq!(got, item.as_bytes().to_vec(), "item {}", index);
        }
        prop_assert!(!t.path("pwned").exists(), "an item ran as code");
    }
}

/// `item` as a list in the job file writes it: outside `${…}` (the shell's, left alone),
/// braces are doubled, so that no part of it reads as a placeholder.
fn written_in_a_list(item: &str) -> String {
    let mut out = String::new();
    let mut rest = item;
    while let Some(c) = rest.chars().next() {
        if rest.starts_with("${") {
            let end = rest.find('}').map_or(rest.len(), |e| e + 1);
            out.push_str(&rest[..end]);
            rest = &rest[end..];
            continue;
        }
        match c {
            '{' => out.push_str("{{"),
            '}' => out.push_str("}}"),
            c => out.push(c),
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Issue 11, point 1: in a here-document the shell expands `$(…)` even around a quoted
/// item, so `{item}` there is refused at load time (exit 2, nothing runs), pointing to
/// `"$RUNNER_ITEM"` — which is safe there, as the second run shows.
#[test]
fn an_item_in_a_here_document_is_refused_and_runner_item_is_safe_there() {
    for body in ["{item}", "'{item}'", "x $(echo {item}) y"] {
        let t = Test::new(&format!(
            "[jobs.h]\ncommand = \"\"\"cat <<EOF\n{body}\nEOF\"\"\"\nitems = ['$(touch PWNED)']\n"
        ));
        t.run()
            .assert_code(2)
            .assert_stderr_has("`{item}` in a here-document in a shell command")
            .assert_stderr_has("write \"$RUNNER_ITEM\" there instead");
        assert!(!t.path("PWNED").exists(), "{body}: an item ran as code");
    }
    let t = Test::new(
        "[jobs.h]\ncommand = \"\"\"cat <<EOF\n[$RUNNER_ITEM]\nEOF\"\"\"\nitems = ['$(touch PWNED)']\n",
    );
    t.run().assert_code(0).assert_stdout_has("[$(touch PWNED)]");
    assert!(!t.path("PWNED").exists());
}

/// Comments, backticks and arithmetic are refused too; `$(…)` inside double quotes is a
/// new quoting context, where a bare `{item}` is one word.
#[test]
fn other_places_quoting_cannot_protect_are_refused() {
    for (command, place) in [
        ("echo hi # {item}", "in a comment"),
        ("echo `echo {item}`", "inside backticks"),
        ("echo $(( {item} + 1 ))", "inside $((…))"),
    ] {
        let t = Test::new(&format!("[jobs.h]\ncommand = '{command}'\nitems = ['x']\n"));
        t.run()
            .assert_code(2)
            .assert_stderr_has(&format!("`{{item}}` {place} in a shell command"));
    }
    let t = Test::new(
        "[jobs.h]\ncommand = 'echo \"[$(printf %s {item})]\"'\nitems = ['a  b; touch PWNED']\n",
    );
    t.run()
        .assert_code(0)
        .assert_stdout_has("[a  b; touch PWNED]");
    assert!(!t.path("PWNED").exists());
}

/// An argv command that runs a shell's script (`["sh", "-c", SCRIPT]`, also `bash -ec`,
/// through `env`, or the file's `shell`) gets values in its script quoted like a string
/// command: an item `$(…)` is not run, an item `'` does not break the script, and a var
/// is quoted too. An argument after the script is passed as it is.
#[test]
fn the_script_of_an_argv_shell_gets_values_quoted() {
    let t = Test::new(
        r#"
shell = ["bash", "-o", "pipefail", "-c"]
[vars]
who = "$(touch PWNED-VAR) x"
[jobs.sh]
command = ["sh", "-c", "printf '%s|%s' {item} {vars.who} > out/sh.{index}"]
items = ["$(touch PWNED)", "'", "a  b"]
[jobs.bash]
command = ["/usr/bin/env", "bash", "-ec", "printf '%s' {item} > out/bash.{index}"]
items = ["$(touch PWNED)", "'", "a  b"]
[jobs.own]
command = ["bash", "-o", "pipefail", "-c", "printf '%s' {item} > out/own.{index}"]
items = ["$(touch PWNED)", "'", "a  b"]
[jobs.arg]
command = ["sh", "-c", "printf '%s' \"$1\" > out/arg.{index}", "sh", "{item}"]
items = ["$(touch PWNED)", "'", "a  b"]
"#,
    );
    std::fs::create_dir(t.path("out")).unwrap();
    t.run().assert_code(0);
    for (index, item) in ["$(touch PWNED)", "'", "a  b"].iter().enumerate() {
        assert_eq!(
            t.read(&format!("out/sh.{index}")),
            format!("{item}|$(touch PWNED-VAR) x")
        );
        for job in ["bash", "own", "arg"] {
            assert_eq!(t.read(&format!("out/{job}.{index}")), *item, "{job}");
        }
    }
    assert!(!t.path("PWNED").exists(), "an item ran as code");
    assert!(!t.path("PWNED-VAR").exists(), "a var ran as code");
}

/// Where quoting cannot protect a value, the script of an argv shell refuses it like a
/// string command does, and points to passing it as an argument.
#[test]
fn a_value_in_quotes_in_the_script_of_an_argv_shell_is_refused() {
    let t = Test::new("[jobs.h]\ncommand = ['sh', '-c', \"echo '{item}'\"]\nitems = ['x']\n");
    t.run()
        .assert_code(2)
        .assert_stderr_has("`{item}` inside single quotes in the shell script of an argv command")
        .assert_stderr_has("\"sh\", \"{item}\"]");
}

/// Every bad placeholder of a file is reported in one pass, each at its place: unknown
/// names, values inside quotes, and fields the items lack — several in one string.
#[test]
fn every_bad_placeholder_is_reported_at_once() {
    let t = Test::new(
        r#"
[vars]
profile = "fast"
[jobs.t]
command = 'run "{item.suite}" "{vars.profile}" {itme} {vars.nope} {item.sute}'
env = { A = "{item.x} {item.y}" }
items = [ { suite = "unit" } ]
"#,
    );
    let out = t.run();
    out.assert_code(2)
        .assert_stderr_has("`{item.suite}` inside double quotes in a shell command")
        .assert_stderr_has("`{vars.profile}` inside double quotes in a shell command")
        .assert_stderr_has("unknown placeholder `{itme}`")
        .assert_stderr_has("`{vars.nope}` is not declared in `[vars]`")
        .assert_stderr_has("`{item.sute}`: the items have no field `sute`")
        .assert_stderr_has("`{item.x}`: the items have no field `x`")
        .assert_stderr_has("`{item.y}`: the items have no field `y`");
}
