//! `runner worker FILE --broker URL`: find runs of the same job file, check that they
//! are, and serve them.

use super::wire::Message;
use super::worker::{serve, Serve};
use super::{authkey, digest, entry_list, key, redact, run_key, Broker, RUNS};
use crate::cli::WorkerArgs;
use crate::display::{self, Event};
use crate::exec::control::Control;
use crate::exec::{self, Context};
use crate::queue::{Queue, Waker};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

struct NoWake;
impl Waker for NoWake {
    fn wake(&self, _: usize) {}
}

/// Runs the worker command; returns the exit status.
pub fn worker(args: WorkerArgs, color: bool) -> i32 {
    let file = match crate::jobfile::load(&args.file) {
        Ok(file) => Arc::new(file),
        Err(e) => {
            eprint!("{}", e.render(color));
            return crate::EXIT_INVALID;
        }
    };
    let Some(url) = args.broker.broker.clone() else {
        eprintln!("error: `runner worker` needs --broker URL (or RUNNER_BROKER_URL)");
        return crate::EXIT_INVALID;
    };
    let key = match authkey(args.broker.authkey_file.as_deref()) {
        Ok(key) => key,
        Err(e) => {
            eprintln!("error: {e}");
            return crate::EXIT_INVALID;
        }
    };
    let mine = digest(&file.source);
    let mut broker = match Broker::connect(&url, Duration::from_secs(10)) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let pool = args.pool.map(|p| p as usize).unwrap_or_else(num_cpus::get);
    let (events, events_rx) = crossbeam_channel::bounded::<Event>(64);
    let writer = display::Writer::new(file.clone(), display::Options::detect(false));
    let writer = std::thread::spawn(move || writer.run(events_rx));
    let stop = Arc::new(AtomicBool::new(false));
    let control = match Control::new(args.grace) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let interrupted = listen(stop.clone(), control.clone());
    let host = exec::sys::hostname();
    let say = |text: String| {
        let _ = events.send(Event::Note(text));
    };
    say(format!(
        "worker on {host} (pid {}) serving {} (digest {}) from {}",
        std::process::id(),
        file.path.display(),
        &mine[..12],
        redact(&url)
    ));
    let mut seen: HashSet<String> = HashSet::new();
    let mut newest = "0-0".to_string();
    let mut code = 0;
    while !stop.load(Ordering::SeqCst) {
        let runs = broker.call(|c| {
            redis::cmd("XREVRANGE")
                .arg(RUNS)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(20)
                .query::<redis::Value>(c)
        });
        let runs = match runs {
            Ok(v) => entry_list(&v),
            Err(e) => {
                say(format!("error: {e}"));
                code = 1;
                break;
            }
        };
        let mut served = false;
        if let Some((id, _)) = runs.first() {
            newest = id.clone();
        }
        for (_, announcement) in runs.into_iter().rev() {
            let Some(run) = announcement.text("run") else {
                continue;
            };
            if !seen.insert(run.clone()) {
                continue;
            }
            let state = broker.call(|c| {
                redis::cmd("HGET")
                    .arg(run_key(&run))
                    .arg("state")
                    .query::<Option<String>>(c)
            });
            if !matches!(state, Ok(Some(ref s)) if s == "running") {
                continue;
            }
            if !announcement.verify(key.as_deref(), &run) {
                refuse(
                    &mut broker,
                    &say,
                    &run,
                    key.as_deref(),
                    &host,
                    "its announcement does not authenticate (a different RUNNER_AUTHKEY?)".into(),
                );
                continue;
            }
            let theirs = announcement.text("digest").unwrap_or_default();
            if theirs != mine {
                let text = format!(
                    "its job file has digest {theirs}, this worker's {} has {mine}: run the same file on both",
                    file.path.display()
                );
                refuse(&mut broker, &say, &run, key.as_deref(), &host, text);
                continue;
            }
            say(format!("serving run {run}"));
            let ctx = Arc::new(Context {
                file: file.clone(),
                queues: file
                    .queues
                    .iter()
                    .enumerate()
                    .map(|(i, q)| Arc::new(Queue::new(i, &q.name, q.capacity, Box::new(NoWake))))
                    .collect(),
                control: control.clone(),
                events: events.clone(),
                quiet: false,
                logs: None,
                run_id: run.clone(),
                host: host.clone(),
                collect: true,
                progress: true,
            });
            let lease_ms: u64 = broker
                .call(|c| {
                    redis::cmd("HGET")
                        .arg(run_key(&run))
                        .arg("lease_ms")
                        .query::<Option<u64>>(c)
                })
                .ok()
                .flatten()
                .unwrap_or(super::DEFAULT_LEASE.as_millis() as u64);
            let max_deliveries: u32 = broker
                .call(|c| {
                    redis::cmd("HGET")
                        .arg(run_key(&run))
                        .arg("max_deliveries")
                        .query::<Option<u32>>(c)
                })
                .ok()
                .flatten()
                .unwrap_or(super::DEFAULT_MAX_DELIVERIES);
            let run_stop = Arc::new(AtomicBool::new(false));
            let watcher = {
                let (run_stop, stop) = (run_stop.clone(), stop.clone());
                std::thread::spawn(move || {
                    while !run_stop.load(Ordering::SeqCst) {
                        if stop.load(Ordering::SeqCst) {
                            run_stop.store(true, Ordering::SeqCst);
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                })
            };
            let consumer = format!("{host}:{}", std::process::id());
            let s = Arc::new(Serve::new(
                &url,
                &run,
                key.clone(),
                consumer,
                pool,
                Duration::from_millis(lease_ms),
                max_deliveries,
                ctx,
                run_stop.clone(),
            ));
            if let Err(e) = serve(s) {
                say(format!("error: {e}"));
                code = 1;
            }
            run_stop.store(true, Ordering::SeqCst);
            let _ = watcher.join();
            say(format!("run {run} ended"));
            served = true;
            break;
        }
        if served && args.once {
            break;
        }
        if !served {
            // Wait for the next announcement (or a second, to look again).
            let _ = broker.call(|c| {
                redis::cmd("XREAD")
                    .arg("BLOCK")
                    .arg(1000)
                    .arg("STREAMS")
                    .arg(RUNS)
                    .arg(&newest)
                    .query::<redis::Value>(c)
            });
        }
    }
    if let Some(signal) = *interrupted.lock().unwrap_or_else(|e| e.into_inner()) {
        code = signal;
    }
    let _ = events.send(Event::Finish(String::new()));
    drop(events);
    let _ = writer.join();
    code
}

fn refuse(
    broker: &mut Broker,
    say: &dyn Fn(String),
    run: &str,
    key_: Option<&[u8]>,
    host: &str,
    why: String,
) {
    say(format!("refusing run {run}: {why}"));
    let event = Message::new()
        .with("host", host)
        .with("message", format!("refused the run: {why}"))
        .sign(key_, run);
    let _ = broker.add(&key(run, "events"), &event);
}

/// SIGINT/SIGTERM/SIGHUP: stop taking tasks, stop running ones (they stay pending on the
/// broker and are taken over by another worker after their lease). Holds the exit status.
fn listen(stop: Arc<AtomicBool>, control: Arc<Control>) -> Arc<std::sync::Mutex<Option<i32>>> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let status = Arc::new(std::sync::Mutex::new(None));
    if let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        let status = status.clone();
        std::thread::spawn(move || {
            for signal in signals.forever() {
                let code = match signal {
                    SIGINT => 130,
                    SIGTERM => 143,
                    _ => 129,
                };
                let mut s = status.lock().unwrap_or_else(|e| e.into_inner());
                if s.is_some() {
                    control.kill();
                } else {
                    *s = Some(code);
                    stop.store(true, Ordering::SeqCst);
                    control.stop();
                }
            }
        });
    }
    status
}
