//! `runner worker FILE --broker URL`: find runs of the same job file, check that they
//! are, and serve them, one at a time, through the same session (signals, terminal
//! writer, stop switch) as a local run.

use super::wire::Message;
use super::worker::{serve, Serve, ServeOptions};
use super::{authkey, digest, redact, Broker};
use crate::cli::WorkerArgs;
use crate::display;
use crate::error::{Error, Outcome};
use crate::exec::Mode;
use crate::queue::{Queue, Waker};
use crate::session::Session;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

struct NoWake;
impl Waker for NoWake {
    fn wake(&self, _: usize) {}
}

/// A worker process: its file, its broker, and what it has seen.
struct Worker {
    session: Session,
    url: String,
    key: Option<Vec<u8>>,
    /// The digest of this worker's job file.
    digest: String,
    pool: usize,
    /// Set by the first signal: stop taking tasks and runs.
    stop: Arc<AtomicBool>,
    /// Runs already considered (served or refused).
    seen: HashSet<String>,
    /// The newest announcement read, to wait for the next one.
    newest: String,
    /// A run could not be served (said when it happened; the exit status is then 1).
    failed: bool,
}

/// Runs the worker command until `--once` is satisfied, a signal comes, or the broker
/// fails for good.
pub fn worker(args: WorkerArgs) -> Result<Outcome, Error> {
    let file = Arc::new(crate::jobfile::load(&args.file)?);
    let Some(url) = args.broker.broker.clone() else {
        return Err(Error::Usage(
            "`runner worker` needs --broker URL (or RUNNER_BROKER_URL)".into(),
        ));
    };
    let key = authkey(args.broker.authkey_file.as_deref())?;
    let mut broker = Broker::connect(&url, Duration::from_secs(10))?;
    let session = Session::start(file.clone(), display::Options::detect(false), args.grace)?;
    let stop = Arc::new(AtomicBool::new(false));
    let interrupted = session.relay_signals(stop.clone())?;
    let mut worker = Worker {
        digest: digest(&file.source),
        session,
        url,
        key,
        pool: args.pool.map_or_else(crate::sys::cpus, |p| p as usize),
        stop,
        seen: HashSet::new(),
        newest: "0-0".to_string(),
        failed: false,
    };
    worker.session.say(format!(
        "worker on {} (pid {}) serving {} (digest {}) from {}",
        worker.session.host,
        std::process::id(),
        file.path.display(),
        &worker.digest[..12],
        redact(&worker.url)
    ));
    let result = worker.serve_runs(&mut broker, args.once);
    let Worker {
        session, failed, ..
    } = worker;
    // Said here, in order with everything else the worker said; the exit status is 1.
    let broken = match result {
        Ok(()) => false,
        Err(e) => {
            session.say(format!("error: {e}"));
            true
        }
    };
    let lost = session.lost.clone();
    session.finish(lost.summary());
    Ok(match interrupted.get() {
        Some(signal) => Outcome::Interrupted(*signal),
        None if failed || broken || lost.any() => Outcome::Failed,
        None => Outcome::Success,
    })
}

impl Worker {
    /// Serves runs until stopped (or, with `once`, until one was served).
    fn serve_runs(&mut self, broker: &mut Broker, once: bool) -> Result<(), Error> {
        while !self.stop.load(Ordering::SeqCst) {
            let served = self.serve_newest(broker)?;
            if served && once {
                break;
            }
            if !served {
                // Wait for the next announcement (or a second, to look again).
                let _ = broker.wait_for_run_after(&self.newest, Duration::from_secs(1));
            }
        }
        Ok(())
    }

    /// Serves the oldest running run not seen yet, if any; true if one was served.
    fn serve_newest(&mut self, broker: &mut Broker) -> Result<bool, Error> {
        let runs = broker.newest_runs(20)?;
        if let Some((id, _)) = runs.first() {
            self.newest = id.clone();
        }
        for (_, announcement) in runs.into_iter().rev() {
            let Some(run) = announcement.text("run") else {
                continue;
            };
            if !self.seen.insert(run.clone()) {
                continue;
            }
            if !broker.is_running(&run).unwrap_or(false) {
                continue;
            }
            if let Some(why) = self.refusal(&announcement, &run) {
                self.refuse(broker, &run, why);
                continue;
            }
            self.serve_run(broker, &run);
            return Ok(true);
        }
        Ok(false)
    }

    /// Why this worker must not serve the run announced, if it must not.
    fn refusal(&self, announcement: &Message, run: &str) -> Option<String> {
        if !announcement.verify(self.key.as_deref(), run) {
            return Some(
                "its announcement does not authenticate (a different RUNNER_AUTHKEY?)".into(),
            );
        }
        let theirs = announcement.text("digest").unwrap_or_default();
        (theirs != self.digest).then(|| {
            format!(
                "its job file has digest {theirs}, this worker's {} has {}: run the same file on both",
                self.session.file.path.display(),
                self.digest
            )
        })
    }

    fn refuse(&self, broker: &mut Broker, run: &str, why: String) {
        self.session.say(format!("refusing run {run}: {why}"));
        let event = Message::new()
            .with("host", &self.session.host)
            .with("message", format!("refused the run: {why}"))
            .sign(self.key.as_deref(), run);
        let _ = broker.report(run, &event);
    }

    /// Serves one run until it ends or this worker stops.
    fn serve_run(&mut self, broker: &mut Broker, run: &str) {
        self.session.say(format!("serving run {run}"));
        let file = &self.session.file;
        let queues = file
            .queues
            .iter()
            .enumerate()
            .map(|(i, q)| Arc::new(Queue::new(i, &q.name, q.capacity, Box::new(NoWake))))
            .collect();
        let ctx = Arc::new(self.session.context(run, queues, Mode::Worker, None));
        let lease = broker.run_lease(run);
        // The run's own stop flag: raised when the run ends, or by this worker's.
        let run_stop = Arc::new(AtomicBool::new(false));
        let watcher = {
            let (run_stop, stop) = (run_stop.clone(), self.stop.clone());
            std::thread::spawn(move || {
                while !run_stop.load(Ordering::SeqCst) {
                    if stop.load(Ordering::SeqCst) {
                        run_stop.store(true, Ordering::SeqCst);
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        let options = ServeOptions {
            url: self.url.clone(),
            run_id: run.to_string(),
            key: self.key.clone(),
            consumer: format!("{}:{}", self.session.host, std::process::id()),
            pool: self.pool,
            lease,
        };
        let s = Arc::new(Serve::new(options, ctx, run_stop.clone()));
        if let Err(e) = serve(s) {
            self.session.say(format!("error: {e}"));
            self.failed = true;
        }
        run_stop.store(true, Ordering::SeqCst);
        let _ = watcher.join();
        self.session.say(format!("run {run} ended"));
    }
}
