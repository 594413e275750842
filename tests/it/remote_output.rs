//! What a remote task prints reaches the coordinator and is printed there as a local
//! task's is (labelled, in each output mode, in `--logs` files), streamed and bounded;
//! its start and end lines name the worker that ran it.

use crate::distributed::{Redis, Worker};
use crate::util::Test;
use std::process::Stdio;

const TALK: &str = "[jobs.talk]\ncommand = 'echo \"out $RUNNER_ITEM one\"; echo \"err $RUNNER_ITEM\" >&2; echo \"out $RUNNER_ITEM two\"'\nitems = ['a', 'b', 'c']\n";

#[test]
fn a_remote_tasks_lines_are_printed_on_the_coordinator_in_each_mode_and_logged() {
    let redis = Redis::start(&[]);
    for mode in ["lines", "grouped"] {
        let t = Test::new(TALK).args(&[
            "--broker",
            &redis.url(),
            "--no-local",
            "--output",
            mode,
            "--logs",
            "logs",
        ]);
        let worker = Worker::start(&t, "jobs.toml", &redis.url(), &["--pool", "2"], &[]);
        let pid = worker.0.id();
        let out = t.run();
        out.assert_code(0);
        for item in ["a", "b", "c"] {
            let label = format!("talk:{item}");
            assert_eq!(
                out.lines_of(&label),
                [format!("out {item} one"), format!("out {item} two")],
                "{mode}: {}",
                out.stdout
            );
            out.assert_stderr_has(&format!("[{label}] err {item}\n"));
            let index = ["a", "b", "c"].iter().position(|i| *i == item).unwrap();
            assert_eq!(
                t.read(&format!("logs/talk.{index}.stdout")),
                format!("out {item} one\nout {item} two\n")
            );
            assert_eq!(
                t.read(&format!("logs/talk.{index}.stderr")),
                format!("err {item}\n")
            );
            // Its start and end lines name the worker (`host:pid`).
            for word in ["start", "done"] {
                let prefix = format!("[runner] {word} {label} on ");
                let line = out
                    .stderr
                    .lines()
                    .find(|l| l.starts_with(&prefix))
                    .unwrap_or_else(|| panic!("{mode}: no {prefix:?} in\n{}", out.stderr));
                let worker_name = line[prefix.len()..].split(' ').next().unwrap();
                assert!(worker_name.ends_with(&format!(":{pid}")), "{mode}: {line}");
            }
        }
        if mode == "grouped" {
            // Each task's stdout is one block.
            let labels: Vec<&str> = out
                .stdout
                .lines()
                .map(|l| l.split(']').next().unwrap())
                .collect();
            let mut blocks = labels.clone();
            blocks.dedup();
            assert_eq!(blocks.len(), 3, "{}", out.stdout);
        }
        drop(worker);
    }
}

/// A worker of pool 1 for `t`'s jobs.toml whose own terminal goes nowhere: a pipe
/// nobody reads would hold up its tasks' output.
fn worker_out_of_sight(t: &Test, redis: &Redis) -> Worker {
    Worker(
        std::process::Command::new(crate::util::BIN)
            .current_dir(t.dir.path())
            .args([
                "worker",
                "jobs.toml",
                "--broker",
                &redis.url(),
                "--pool",
                "1",
            ])
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Peak resident memory of a live process, in KiB.
fn peak_kib_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn redis_peak_bytes(redis: &Redis) -> u64 {
    redis
        .cli(&["INFO", "memory"])
        .lines()
        .find_map(|l| l.strip_prefix("used_memory_peak:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

#[test]
fn fifty_megabytes_of_remote_output_keep_redis_and_both_sides_small() {
    let redis = Redis::start(&[]);
    let before = redis_peak_bytes(&redis);
    let t = Test::new("[jobs.flood]\ncommand = 'yes 0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789 | head -c 50000000'\nitems = [1]\n")
        .args(&["--broker", &redis.url(), "--no-local", "--report", "report.json"]);
    // Its own terminal (stdout) is not read here: it goes nowhere.
    let worker = worker_out_of_sight(&t, &redis);
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
    // 101-byte lines: 495,049 whole ones and a last one of 51 bytes (ended by the
    // runner), each with "[flood:1] " before it.
    assert_eq!(lines, 495_050);
    assert_eq!(bytes, 50_000_000 + 1 + lines * 10);
    let worker_kib = peak_kib_of(worker.0.id());
    assert!(worker_kib < 64 * 1024, "worker peak {worker_kib} KiB");
    let kib = crate::queues::peak_kib(&t);
    assert!(kib < 64 * 1024, "coordinator peak {kib} KiB");
    let grew = redis_peak_bytes(&redis).saturating_sub(before);
    assert!(grew < 32 << 20, "Redis grew by {grew} bytes at its peak");
    drop(worker);
}

#[test]
fn a_remote_tasks_timeout_holds_while_the_coordinator_reads_its_output_slowly() {
    // The coordinator's stdout is a pipe nobody reads for a while: the output stream
    // fills, the worker's channel fills, and the task's thread waits for room. Its
    // timeout must still end the task.
    let redis = Redis::start(&[]);
    let t = Test::new(
        "[jobs.flood]\nitems = [1]\ntimeout = \"2s\"\n\
         command = 'echo $$ > flood.pid; exec yes 0123456789012345678901234567890123456789'\n",
    )
    .args(&["--broker", &redis.url(), "--no-local"]);
    // Its own terminal goes nowhere (a pipe nobody read would hold it up too).
    let worker = worker_out_of_sight(&t, &redis);
    let mut child = t.spawn();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let pid: i32 = loop {
        if let Ok(text) = std::fs::read_to_string(t.path("flood.pid")) {
            if let Ok(pid) = text.trim().parse() {
                break pid;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the task never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    // Gone (or a zombie) well within the deadline, with the coordinator's stdout unread.
    let gone = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
    };
    while !gone() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let ended = gone();
    if !ended {
        // The task this test started (through the worker) would print forever.
        // SAFETY: signalling a process of this test, by its pid.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    // Now read what the coordinator printed, so that it can end.
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stdout, &mut sink);
    });
    let output = child.wait_with_output().unwrap();
    let _ = reader.join();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        ended,
        "the task outlived its timeout while output waited: {stderr}"
    );
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("timed out"), "{stderr}");
    drop(worker);
}
