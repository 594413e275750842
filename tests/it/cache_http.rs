//! The HTTP cache store end to end (issue 24): the runner with `--cache http://…`
//! against nginx with WebDAV `PUT` (the Bazel docs' recipe for a cache server), started
//! by each test on a free loopback port (`nginx.rs`), and against servers that hang,
//! answer 500, or are not there. What a test looks at: what ran (each task appends to
//! `ran.log`), the files, the report's statuses, the exit status, the warnings, the time,
//! and the files on the server (`cas/` names are SHA-256 of their contents; `ac/`
//! entries decode with Bazel's official proto).

use crate::nginx::{answering_server, files_under, free_port, silent_server, Nginx};
use crate::util::Test;
use serde_json::Value;
use std::time::{Duration, Instant};

/// Two items built one file each (one of them executable), and a job printing.
const PROJECT: &str = r#"
[jobs.build]
items = ["a", "b"]
command = "tr a-z A-Z < in/{item}.txt > out/{item}.txt && chmod +x out/a.txt 2>/dev/null; echo built {item}; echo build:{item} >> ran.log"
sources = ["in/{item}.txt"]
outputs = ["out/{item}.txt"]
"#;

fn project() -> Test {
    let t = Test::new(PROJECT);
    for item in ["a", "b"] {
        t.write(&format!("in/{item}.txt"), &format!("data {item}\n"));
    }
    std::fs::create_dir_all(t.path("out")).unwrap();
    t
}

/// Runs with the cache at `url` and a JSON report; returns what ran, the statuses by
/// task, and the output.
fn run(t: &Test, url: &str) -> (Vec<String>, Vec<String>, crate::util::Output) {
    let _ = std::fs::remove_file(t.path("ran.log"));
    let out = t.run_with(&[
        "run",
        "jobs.toml",
        "--cache",
        url,
        "--report",
        "report.json",
    ]);
    let mut ran: Vec<String> = t.read("ran.log").lines().map(str::to_string).collect();
    ran.sort();
    let report: Value = serde_json::from_str(&t.read("report.json")).unwrap_or(Value::Null);
    let statuses = report["tasks"]
        .as_array()
        .map(|tasks| {
            tasks
                .iter()
                .map(|task| task["status"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default();
    (ran, statuses, out)
}

fn sha256_hex(bytes: &[u8]) -> String {
    let out = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(bytes)?;
            child.wait_with_output()
        })
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn a_fresh_copy_of_a_project_restores_everything_from_nginx() {
    let nginx = Nginx::start(None);
    let url = nginx.url("cache/");
    let first = project();
    let (ran, statuses, out) = run(&first, &url);
    out.assert_code(0);
    assert_eq!(ran, ["build:a", "build:b"]);
    assert_eq!(statuses, ["succeeded", "succeeded"]);

    // On the server: every cas/ file is named by its SHA-256, and the outputs are there.
    let cas = nginx.root().join("cache/cas");
    let blobs = files_under(&cas);
    assert!(blobs.len() >= 2, "{blobs:?}");
    for blob in &blobs {
        let content = std::fs::read(cas.join(blob)).unwrap();
        assert_eq!(blob.to_str().unwrap(), sha256_hex(&content));
    }
    let built = std::fs::read(first.path("out/a.txt")).unwrap();
    assert!(blobs
        .iter()
        .any(|b| b.to_str() == Some(&sha256_hex(&built))));
    // Two entries, each an ActionResult the official proto decodes.
    let entries = files_under(&nginx.root().join("cache/ac"));
    assert_eq!(entries.len(), 2, "{entries:?}");
    for entry in &entries {
        let text = protoc_decode(&nginx.root().join("cache/ac").join(entry));
        assert!(text.contains("output_files {"), "{text}");
        assert!(text.contains("worker: \"runner@"), "{text}");
    }

    // A second copy in another folder: nothing runs, the files are the same bytes.
    let second = project();
    let (ran, statuses, out) = run(&second, &url);
    out.assert_code(0);
    assert!(ran.is_empty(), "{ran:?}");
    assert_eq!(statuses, ["cached", "cached"]);
    for item in ["a", "b"] {
        let name = format!("out/{item}.txt");
        assert_eq!(
            std::fs::read(first.path(&name)).unwrap(),
            std::fs::read(second.path(&name)).unwrap()
        );
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(second.path("out/a.txt"))
        .unwrap()
        .permissions()
        .mode();
    assert_ne!(mode & 0o111, 0, "the executable bit survives");
    // What the tasks printed is replayed.
    out.assert_stdout_has("built a");
}

#[test]
fn a_bearer_token_from_the_environment_reaches_the_server() {
    let nginx = Nginx::start(Some("Bearer t0ken-of-ci"));
    let url = nginx.url("");
    let first = project().env("RUNNER_CACHE_TOKEN", "t0ken-of-ci");
    let (_, _, out) = run(&first, &url);
    out.assert_code(0);
    assert!(!out.stderr.contains("t0ken"), "{}", out.stderr);
    let second = project().env("RUNNER_CACHE_TOKEN", "t0ken-of-ci");
    let (ran, statuses, out) = run(&second, &url);
    out.assert_code(0);
    assert!(ran.is_empty(), "{ran:?}");
    assert_eq!(statuses, ["cached", "cached"]);
}

#[test]
fn basic_credentials_in_the_url_reach_the_server_and_are_never_printed() {
    // user:s3cret
    let nginx = Nginx::start(Some("Basic dXNlcjpzM2NyZXQ="));
    let url = format!("http://user:s3cret@127.0.0.1:{}/", nginx.port);
    let (_, _, out) = run(&project(), &url);
    out.assert_code(0);
    let (ran, statuses, out) = run(&project(), &url);
    out.assert_code(0);
    assert!(ran.is_empty(), "{ran:?}");
    assert_eq!(statuses, ["cached", "cached"]);
    // Wrong credentials: one warning, which names the store without the password.
    let wrong = format!("http://user:wrong@127.0.0.1:{}/", nginx.port);
    let (ran, _, out) = run(&project(), &wrong);
    out.assert_code(0);
    assert_eq!(ran, ["build:a", "build:b"]);
    assert!(!out.stderr.contains("wrong") && !out.stdout.contains("wrong"));
    assert_eq!(warnings_naming(&out, nginx.port), 1, "{}", out.stderr);
}

/// Lines of the runner's stderr that name the store (its port); each names it once.
fn warnings_naming(out: &crate::util::Output, port: u16) -> usize {
    let needle = format!("127.0.0.1:{port}");
    let lines: Vec<&str> = out.stderr.lines().filter(|l| l.contains(&needle)).collect();
    for line in &lines {
        assert_eq!(
            line.matches(&needle).count(),
            1,
            "the store named twice: {line}"
        );
    }
    lines.len()
}

/// A store that fails: the tasks run, the run exits 0, one warning, in bounded time.
fn fails_once_and_runs_everything(port: u16) {
    let t = project();
    let start = Instant::now();
    let (ran, _, out) = run(&t, &format!("http://127.0.0.1:{port}/"));
    let took = start.elapsed();
    assert!(took < Duration::from_secs(30), "took {took:?}");
    out.assert_code(0);
    assert_eq!(ran, ["build:a", "build:b"]);
    assert_eq!(t.read("out/a.txt"), "DATA A\n");
    assert_eq!(warnings_naming(&out, port), 1, "{}", out.stderr);
}

#[test]
fn a_cache_server_that_never_answers_is_said_once_and_the_tasks_run() {
    fails_once_and_runs_everything(silent_server());
}

#[test]
fn a_cache_server_answering_500_is_said_once_and_the_tasks_run() {
    fails_once_and_runs_everything(answering_server("500 Internal Server Error"));
}

#[test]
fn a_closed_cache_port_is_said_once_and_the_tasks_run() {
    fails_once_and_runs_everything(free_port());
}

/// `protoc --decode` of an entry with the official proto (tests/fixtures/proto).
fn protoc_decode(file: &std::path::Path) -> String {
    let protos = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/proto");
    let out = std::process::Command::new("protoc")
        .arg(format!("-I{protos}"))
        .arg("-I/usr/include")
        .arg("--decode=build.bazel.remote.execution.v2.ActionResult")
        .arg("build/bazel/remote/execution/v2/remote_execution.proto")
        .current_dir(protos)
        .stdin(std::fs::File::open(file).unwrap())
        .output()
        .expect("protoc is not installed: run scripts/test, which installs protobuf-compiler");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn blobs_damaged_on_the_server_are_misses_and_leave_right_files() {
    let nginx = Nginx::start(None);
    let url = nginx.url("");
    let (_, _, out) = run(&project(), &url);
    out.assert_code(0);
    // Every blob on the server: same length, other bytes.
    let cas = nginx.root().join("cas");
    for blob in files_under(&cas) {
        let path = cas.join(blob);
        let mut bytes = std::fs::read(&path).unwrap();
        for b in &mut bytes {
            *b ^= 0x20;
        }
        std::fs::write(&path, bytes).unwrap();
    }
    let second = project();
    let (ran, statuses, out) = run(&second, &url);
    out.assert_code(0);
    assert_eq!(ran, ["build:a", "build:b"]);
    assert_eq!(statuses, ["succeeded", "succeeded"]);
    assert_eq!(second.read("out/a.txt"), "DATA A\n");
    assert_eq!(second.read("out/b.txt"), "DATA B\n");
    assert!(out.stderr.contains("warning"), "{}", out.stderr);
}

#[test]
fn a_store_that_refuses_writes_is_said_once_and_the_run_succeeds() {
    let nginx = Nginx::start_read_only();
    let t = project();
    let (ran, _, out) = run(&t, &nginx.url(""));
    out.assert_code(0);
    assert_eq!(ran, ["build:a", "build:b"]);
    assert_eq!(warnings_naming(&out, nginx.port), 1, "{}", out.stderr);
    assert!(out.stderr.contains("405"), "{}", out.stderr);
    assert!(files_under(&nginx.root()).is_empty());
}

#[test]
fn credentials_given_two_ways_stop_the_run_before_it_starts_without_the_password() {
    let t = project().env("RUNNER_CACHE_TOKEN", "a-token");
    let out = t.run_with(&[
        "run",
        "jobs.toml",
        "--cache",
        "http://user:pw0rd@127.0.0.1:1/cache/",
    ]);
    out.assert_code(2);
    out.assert_stderr_has("http://user:***@127.0.0.1:1/cache/");
    out.assert_stderr_has("RUNNER_CACHE_TOKEN");
    assert!(!out.stderr.contains("pw0rd"), "{}", out.stderr);
    assert!(t.read("ran.log").is_empty());
}

/// A 256 MiB output goes to nginx and comes back streamed: the runner stays under
/// 64 MiB both ways (the JSON report's peak RSS), and the file is the same.
#[test]
fn a_large_output_is_streamed_to_nginx_and_back() {
    const BIG: &str = r#"
[jobs.big]
command = "head -c 268435456 /dev/zero | tr '\\0' 'x' > out/big.bin && echo big >> ran.log"
sources = ["in/seed.txt"]
outputs = ["out/big.bin"]
"#;
    let nginx = Nginx::start(None);
    let url = nginx.url("");
    let make = || {
        let t = Test::new(BIG);
        t.write("in/seed.txt", "seed\n");
        std::fs::create_dir_all(t.path("out")).unwrap();
        t
    };
    let peak_mib = |t: &Test| {
        let report: Value = serde_json::from_str(&t.read("report.json")).unwrap();
        report["run"]["peak_rss_kib"].as_u64().unwrap() / 1024
    };
    let first = make();
    let (ran, _, out) = run(&first, &url);
    out.assert_code(0);
    assert_eq!(ran, ["big"]);
    assert!(peak_mib(&first) < 64, "storing: {} MiB", peak_mib(&first));
    // A blob this large is asked for before it is sent (not there: 404, then PUT).
    let requests = nginx.requests_once(|r| r.iter().any(|r| r.starts_with("PUT /ac/")));
    let head = requests
        .iter()
        .position(|r| r.starts_with("HEAD /cas/") && r.contains(" 404 "));
    let put = requests.iter().position(|r| r.starts_with("PUT /cas/"));
    assert!(head.is_some() && head < put, "{requests:#?}");
    let second = make();
    let (ran, statuses, out) = run(&second, &url);
    out.assert_code(0);
    assert!(ran.is_empty(), "{ran:?}");
    assert_eq!(statuses, ["cached"]);
    assert!(
        peak_mib(&second) < 64,
        "restoring: {} MiB",
        peak_mib(&second)
    );
    let size = std::fs::metadata(second.path("out/big.bin")).unwrap().len();
    assert_eq!(size, 256 << 20);
    let same = std::process::Command::new("cmp")
        .arg(first.path("out/big.bin"))
        .arg(second.path("out/big.bin"))
        .status()
        .unwrap();
    assert!(same.success());
}

#[test]
fn a_run_that_misses_everything_reuses_its_connections_and_sends_small_blobs_without_asking() {
    let mut jobs = String::from(
        "[jobs.build]\nitems = { range = [0, 24] }\n\
         command = \"cp in/{item}.txt out/{item}.txt && echo built {item}\"\n\
         sources = [\"in/{item}.txt\"]\noutputs = [\"out/{item}.txt\"]\n",
    );
    jobs.insert_str(0, "pool = 2\n");
    let t = Test::new(&jobs);
    for i in 0..24 {
        t.write(&format!("in/{i}.txt"), &format!("data {i}\n"));
    }
    std::fs::create_dir_all(t.path("out")).unwrap();
    let nginx = Nginx::start(None);
    let out = t.run_with(&["run", "jobs.toml", "--cache", &nginx.url("")]);
    out.assert_code(0);
    out.assert_stderr_has("24 stored");
    // A lookup, the output's blob, what it printed, the entry: four requests a task.
    let requests = nginx.requests_once(|r| r.len() >= 24 * 4);
    assert_eq!(requests.len(), 24 * 4, "{requests:#?}");
    // Small blobs are sent without a HEAD first.
    assert!(
        !requests.iter().any(|r| r.starts_with("HEAD ")),
        "{requests:#?}"
    );
    // Connections are kept and reused: a slot's and an uploader's each, not one a task
    // (ureq pools a connection only once its answer's body was read to the end).
    let mut conns: Vec<&str> = requests
        .iter()
        .filter_map(|r| r.split_whitespace().find_map(|w| w.strip_prefix("conn=")))
        .collect();
    conns.sort_unstable();
    conns.dedup();
    assert!(
        conns.len() <= 6,
        "{} connections for 24 tasks: {requests:#?}",
        conns.len()
    );
}
