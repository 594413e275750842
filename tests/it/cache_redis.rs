//! The results cache in Redis (`--cache redis://…`), against a real `redis-server`
//! started by each test: a second run in a fresh copy of a project restores everything
//! and runs nothing; in a distributed run, workers given `--cache` store what they ran
//! and the coordinator restores hits before publishing, so a second run publishes
//! nothing.

use crate::distributed::{Redis, Worker};
use crate::util::{wait_for, Collected, Test};
use std::time::Duration;

/// Three fan-out tasks with a source and an output each; every command that runs says
/// so in `ran.log`, which no run restores.
const FAN: &str = r#"
[jobs.build]
items = ["a", "b", "c"]
command = "echo ran {item} >> ran.log; mkdir -p out; tr a-z A-Z < src/{item}.txt > out/{item}.txt; echo built {item}"
sources = ["src/{item}.txt"]
outputs = ["out/{item}.txt"]
"#;

/// One task writing 3 MB (three of the store's 1 MiB chunks), and an executable.
const BIG: &str = r#"
[jobs.big]
command = "echo ran big >> ran.log; mkdir -p out; head -c 3000000 /dev/urandom > out/big.bin; printf '#!/bin/sh\necho hi\n' > out/tool.sh; chmod +x out/tool.sh"
sources = ["seed.txt"]
outputs = ["out/big.bin", "out/tool.sh"]
"#;

fn project(jobs: &str) -> Test {
    let t = Test::new(jobs);
    for item in ["a", "b", "c"] {
        t.write(&format!("src/{item}.txt"), &format!("source of {item}\n"));
    }
    t.write("seed.txt", "seed\n");
    t
}

fn bytes(t: &Test, name: &str) -> Vec<u8> {
    std::fs::read(t.path(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The statuses of the report's tasks, sorted.
fn statuses(t: &Test) -> Vec<String> {
    let report: serde_json::Value = serde_json::from_str(&t.read("report.json")).unwrap();
    let mut all: Vec<String> = report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            format!(
                "{} {}",
                t["job"].as_str().unwrap(),
                t["status"].as_str().unwrap()
            )
        })
        .collect();
    all.sort();
    all
}

/// How many keys of the cache match `pattern` (after `runner:cache:`).
fn cache_keys(redis: &Redis, pattern: &str) -> usize {
    redis
        .cli(&["--scan", "--pattern", &format!("runner:cache:{pattern}")])
        .lines()
        .count()
}

#[test]
fn a_fresh_copy_restores_everything_from_redis_with_no_task_run() {
    let redis = Redis::start(&[]);
    let url = redis.url();
    let jobs = format!("{FAN}{BIG}");
    let first = project(&jobs).args(&["--cache", &url]);
    first.run().assert_code(0);
    assert_eq!(first.lines_in("ran.log"), 4);
    // Stored before the run ended: an entry per task, the 3 MB file in chunks.
    assert_eq!(cache_keys(&redis, "ac:*"), 4);
    assert!(cache_keys(&redis, "cas:*:2") >= 1, "a blob of three chunks");

    let second = project(&jobs).args(&["--cache", &url, "--report", "report.json"]);
    let out = second.run();
    out.assert_code(0);
    assert!(
        !second.path("ran.log").exists(),
        "no task ran:\n{}",
        out.stderr
    );
    for name in [
        "out/a.txt",
        "out/b.txt",
        "out/c.txt",
        "out/big.bin",
        "out/tool.sh",
    ] {
        assert_eq!(bytes(&second, name), bytes(&first, name), "{name}");
    }
    assert_eq!(second.read("out/b.txt"), "SOURCE OF B\n");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(second.path("out/tool.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111, "the executable bit survives");
    // What the tasks printed is replayed.
    assert_eq!(out.lines_of("build:b"), ["built b"]);
    assert_eq!(
        statuses(&second),
        ["big cached", "build cached", "build cached", "build cached"]
    );
}

#[test]
fn workers_store_what_they_ran_and_the_coordinator_restores_instead_of_publishing() {
    let redis = Redis::start(&[]);
    let url = redis.url();

    // First run: the coordinator has no cache and runs nothing itself (--no-local);
    // only the workers, given --cache, can store.
    let first = project(FAN).args(&["--broker", &url, "--no-local"]);
    let cache = ["--pool", "2", "--cache", url.as_str()];
    let w1 = Worker::start(&first, "jobs.toml", &url, &cache, &[]);
    let w2 = Worker::start(&first, "jobs.toml", &url, &cache, &[]);
    first.run().assert_code(0);
    assert_eq!(first.lines_in("ran.log"), 3);
    let run = redis.newest_run();
    assert_eq!(
        redis.stream_len(&format!("runner:{run}:tasks")),
        3,
        "published"
    );
    // Workers store in the background: the entries come within a deadline.
    assert!(
        wait_for(Duration::from_secs(10), || cache_keys(&redis, "ac:*") == 3),
        "three entries stored by the workers: {}",
        redis.cli(&["--scan", "--pattern", "runner:cache:*"])
    );
    drop((w1, w2));

    // Second run, in a fresh copy: every task restored on the coordinator, none
    // published, none run by a worker.
    let second = project(FAN).args(&[
        "--broker",
        &url,
        "--no-local",
        "--cache",
        &url,
        "--report",
        "report.json",
    ]);
    let w1 = Worker::start(&second, "jobs.toml", &url, &cache, &[]);
    let w2 = Worker::start(&second, "jobs.toml", &url, &cache, &[]);
    let out = second.run();
    out.assert_code(0);
    let run = redis.newest_run();
    assert_eq!(
        redis.stream_len(&format!("runner:{run}:tasks")),
        0,
        "nothing published"
    );
    assert!(
        !second.path("ran.log").exists(),
        "no task ran:\n{}",
        out.stderr
    );
    for item in ["a", "b", "c"] {
        let name = format!("out/{item}.txt");
        assert_eq!(bytes(&second, &name), bytes(&first, &name), "{name}");
    }
    assert_eq!(
        statuses(&second),
        ["build cached", "build cached", "build cached"]
    );
    for w in [w1, w2] {
        let said = printed(w);
        assert!(!said.contains("built"), "a worker ran a task:\n{said}");
    }
}

#[test]
fn a_worker_whose_cache_is_down_says_so_once_and_runs_its_tasks() {
    let redis = Redis::start(&[]);
    let url = redis.url();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let closed = format!("redis://:hidden-pw@127.0.0.1:{port}");
    let t = project(FAN).args(&["--broker", &url, "--no-local"]);
    let mut w = Worker::start(
        &t,
        "jobs.toml",
        &url,
        &["--pool", "1", "--cache", &closed],
        &[],
    );
    let said = Collected::start(w.0.stderr.take().unwrap());
    t.run().assert_code(0);
    assert_eq!(t.lines_in("ran.log"), 3, "every task ran");
    // Said when the run it served ended, after its uploads (none: the store is down).
    assert!(
        said.wait_for(Duration::from_secs(10), "cache: 0 restored (0 B), 0 stored"),
        "{}",
        said.now()
    );
    let text = said.now();
    assert_eq!(
        text.matches("cache disabled for the rest of this run")
            .count(),
        1,
        "said once:\n{text}"
    );
    assert!(
        text.contains(&format!("redis://***@127.0.0.1:{port}")),
        "{text}"
    );
    let warning = text
        .lines()
        .find(|l| l.contains("cache disabled"))
        .unwrap_or_default();
    assert_eq!(
        warning.matches(&format!("127.0.0.1:{port}")).count(),
        1,
        "the store named once: {warning}"
    );
    assert!(!text.contains("hidden-pw"), "{text}");
}

/// Stops a worker and returns what it printed, stdout then stderr.
fn printed(mut w: Worker) -> String {
    use std::io::Read;
    w.signal(libc::SIGKILL);
    let _ = w.0.wait();
    let mut text = String::new();
    if let Some(mut pipe) = w.0.stdout.take() {
        let _ = pipe.read_to_string(&mut text);
    }
    if let Some(mut pipe) = w.0.stderr.take() {
        let _ = pipe.read_to_string(&mut text);
    }
    text
}

/// A redis-server answering TLS (a self-signed certificate, made by openssl) on a port
/// of its own, and plain Redis on the usual one.
fn tls_redis(certs: &std::path::Path) -> Redis {
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .args(["-keyout", "key.pem", "-out", "cert.pem"])
        .current_dir(certs)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        made,
        "openssl makes a certificate (scripts/test installs openssl)"
    );
    let (cert, key) = (certs.join("cert.pem"), certs.join("key.pem"));
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    Redis::start(&[
        "--tls-port",
        &free,
        "--tls-cert-file",
        cert.to_str().unwrap(),
        "--tls-key-file",
        key.to_str().unwrap(),
        "--tls-ca-cert-file",
        cert.to_str().unwrap(),
        "--tls-auth-clients",
        "no",
    ])
}

#[test]
fn a_cache_over_tls_restores_and_a_tls_mismatch_is_said_once_with_the_tasks_run() {
    let certs = tempfile::tempdir().unwrap();
    let redis = tls_redis(certs.path());
    let tls_port = redis.config("tls-port");
    // A self-signed certificate: `#insecure` skips verifying it (tests only).
    let tls_url = format!("rediss://127.0.0.1:{tls_port}/#insecure");
    project(FAN)
        .args(&["--cache", &tls_url])
        .run()
        .assert_code(0);
    assert_eq!(cache_keys(&redis, "ac:*"), 3);
    let second = project(FAN).args(&["--cache", &tls_url]);
    second.run().assert_code(0);
    assert!(!second.path("ran.log").exists(), "restored over TLS");

    // Plain Redis to the TLS port: the store fails, said once, and every task runs.
    let mismatch =
        project(FAN).args(&["--cache", &format!("redis://:pw-123@127.0.0.1:{tls_port}")]);
    let out = mismatch.run();
    out.assert_code(0);
    assert_eq!(mismatch.lines_in("ran.log"), 3);
    assert_eq!(
        out.stderr.matches("cache disabled").count(),
        1,
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("pw-123"), "{}", out.stderr);
}
