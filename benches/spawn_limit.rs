//! The limit the benchmark suite measures the runner against: a minimal spawn loop with
//! a bounded number of children in flight, written with nothing but
//! `std::process::Command`. It does the same per-task I/O as the workload asks of the
//! runner and nothing else: no scheduling, no labels, no reports.
//!
//!   spawn_limit spawn N K PROGRAM [ARGS…]         N tasks, K in flight, stdio null
//!   spawn_limit communicate N K BYTES PROGRAM…    feed BYTES to stdin, capture stdout and stderr
//!   spawn_limit duct-spawn N K PROGRAM…           the same as `spawn`, through duct, capturing both streams
//!   spawn_limit duct-communicate N K BYTES PROG…  the same as `communicate`, through duct
//!
//! The duct modes measure the crate the project chose not to build on (ARCHITECTURE.md).

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: spawn_limit spawn|communicate N K [BYTES] PROGRAM [ARGS…]";
    let mode = args.get(1).expect(usage).clone();
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).expect(usage);
    let k: usize = args.get(3).and_then(|s| s.parse().ok()).expect(usage);
    let (payload, argv) = if mode.ends_with("communicate") {
        let bytes: usize = args.get(4).and_then(|s| s.parse().ok()).expect(usage);
        (vec![b'x'; bytes], args[5..].to_vec())
    } else {
        (Vec::new(), args[4..].to_vec())
    };
    let next = AtomicUsize::new(0);
    let failed = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..k {
            scope.spawn(|| {
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    let ok = if mode == "communicate" {
                        communicate(&argv, &payload)
                    } else if mode == "duct-communicate" {
                        duct::cmd(&argv[0], &argv[1..])
                            .stdin_bytes(payload.clone())
                            .stdout_capture()
                            .stderr_capture()
                            .unchecked()
                            .run()
                            .is_ok_and(|o| o.status.success() && o.stdout.len() == payload.len())
                    } else if mode == "duct-spawn" {
                        duct::cmd(&argv[0], &argv[1..])
                            .stdin_null()
                            .stdout_capture()
                            .stderr_capture()
                            .unchecked()
                            .run()
                            .is_ok_and(|o| o.status.success())
                    } else {
                        Command::new(&argv[0])
                            .args(&argv[1..])
                            .stdin(Stdio::null())
                            .stdout(Stdio::null())
                            .stderr(Stdio::null())
                            .status()
                            .is_ok_and(|s| s.success())
                    };
                    if !ok {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let failed = failed.into_inner();
    if failed > 0 {
        eprintln!("{failed} tasks failed");
        std::process::exit(1);
    }
}

/// Python's `communicate(input)`: write the payload, close stdin, read both outputs.
fn communicate(argv: &[String], payload: &[u8]) -> bool {
    let mut child = match Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(_) => return false,
    };
    let mut stdin = child.stdin.take().expect("piped");
    // Small payloads fit the pipe buffer: writing before reading cannot deadlock here.
    let _ = stdin.write_all(payload);
    drop(stdin);
    let mut out = Vec::new();
    let mut err = Vec::new();
    let _ = child.stdout.take().expect("piped").read_to_end(&mut out);
    let _ = child.stderr.take().expect("piped").read_to_end(&mut err);
    child.wait().is_ok_and(|s| s.success()) && out.len() == payload.len()
}
