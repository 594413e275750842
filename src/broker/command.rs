//! `runner worker FILE --broker URL`: find runs of the same job file, check that they
//! are, and serve them, one at a time, through the same session (signals, terminal
//! writer, stop switch) as a local run.

use super::wire::Message;
use super::worker::{serve, Serve, ServeOptions};
use super::{
    authkey, check_url, digest, redact, Broker, BrokerError, RunState, WorkerInfo, PRESENCE_EVERY,
};
use crate::cache::run::{Cache, Opened};
use crate::cli::WorkerArgs;
use crate::display;
use crate::error::{Error, Outcome};
use crate::exec::control::{Control, Level};
use crate::exec::Mode;
use crate::jobfile::{JobFile, LoadError};
use crate::queue::{Queue, Waker};
use crate::session::Session;
use crate::task::printable;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The `reason` of a report from a worker that refused a signed run, having no authkey.
pub const NO_AUTHKEY: &str = "no-authkey";

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
    /// Runs this worker left while they went on (a connection it could not make, a
    /// coordinator that missed its heartbeat for a while): served again while running.
    left: HashSet<String>,
    /// The newest announcement read, to wait for the next one.
    newest: String,
    /// A run could not be served (said when it happened; the exit status is then 1).
    failed: bool,
    /// `--cache`: the store each served run's tasks are stored in (write only: the
    /// coordinator looks tasks up before publishing them).
    cache: Option<Opened>,
    /// `--resource NAME=N`: this machine's amounts, instead of the file's.
    resources: Vec<(String, u64)>,
    /// Set when a run was served (or left): `--idle-exit` counts from then.
    serving: bool,
    /// `--label NAME`: jobs with `runs_on` are served only with all their labels.
    labels: Vec<String>,
    /// Its name in Redis: `host:pid`.
    consumer: String,
}

/// Runs the worker command until `--once` is satisfied, a signal comes, or the broker
/// fails for good.
pub fn worker(args: WorkerArgs, cache: Option<Opened>) -> Result<Outcome, Error> {
    let file = Arc::new(crate::jobfile::load(&args.file, &[])?);
    // Its own secrets, from its own environment and files: none cross the broker. A
    // worker may serve any selection of its file: every secret a job it may run names.
    if let Some(secrets) = crate::secrets::activate(&file, super::worker::may_run_remotely)? {
        crate::secrets::mask_in_github(&secrets).map_err(Error::system("write to stdout"))?;
    }
    let Some(url) = args.broker.broker.clone() else {
        return Err(Error::Usage(
            "`runner worker` needs --broker URL (or RUNNER_BROKER_URL)".into(),
        ));
    };
    check_url(&url)?;
    let key = authkey(args.broker.authkey_file.as_deref())?;
    let broker = Broker::connect(&url, Duration::from_secs(10))?;
    let session = Session::start(file.clone(), display_options(args.quiet), args.grace)?;
    let stop = Arc::new(AtomicBool::new(false));
    let interrupted = session.relay_signals(stop.clone())?;
    // Idle or between runs, it says when the broker is away and gives up on a signal.
    let mut broker = {
        let (events, stop) = (session.events.clone(), stop.clone());
        broker.on_trouble(
            move |text| {
                let _ = events.send(crate::task::Event::Note(text));
            },
            move || stop.load(Ordering::SeqCst),
        )
    };
    let mut worker = Worker {
        digest: digest(&file.source),
        session,
        url,
        key,
        pool: args.pool.map_or_else(crate::sys::cpus, |p| p as usize),
        stop,
        seen: HashSet::new(),
        left: HashSet::new(),
        newest: "0-0".to_string(),
        failed: false,
        cache: None,
        resources: args.resources.clone(),
        serving: false,
        labels: once_each(&args.labels),
        consumer: String::new(),
    };
    worker.consumer = format!("{}:{}", worker.session.host, std::process::id());
    for (name, _) in &args.resources {
        if !file.resources.iter().any(|r| &r.name == name) {
            worker.session.say(format!(
                "--resource {name}: {} has no resource `{name}` in [resources]; unused",
                file.path.display()
            ));
        }
    }
    let labels = match worker.labels.len() {
        0 => String::new(),
        _ => format!(" with {}", crate::jobfile::labels::words(&worker.labels)),
    };
    worker.session.say(format!(
        "worker on {} (pid {}){labels} serving {} (digest {}) from {}",
        worker.session.host,
        std::process::id(),
        file.path.display(),
        &worker.digest[..12],
        redact(&worker.url)
    ));
    let presence = Presence::start(&worker);
    worker.cache = cache.and_then(|mut cache| {
        let store = cache.store.describe();
        if !cache.settings.mode.writes() {
            worker.session.say(format!(
                "cache {store}: a worker only stores, and --cache-mode read stores nothing: no cache"
            ));
            return None;
        }
        worker
            .session
            .say(format!("storing what runs here in the cache {store}"));
        cache.settings.mode = crate::cache::Mode::Write;
        Some(cache)
    });
    let result = worker.serve_runs(&mut broker, args.once, args.idle_exit);
    presence.stop();
    let Worker {
        session, failed, ..
    } = worker;
    // Said here, in order with everything else the worker said; the exit status is 1.
    let broken = match result {
        Ok(()) | Err(Error::Broker(BrokerError::Stopped)) => false,
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

/// The worker's terminal: with `--quiet`, plain lines and only the runner's own
/// (`display::Options::brief`).
fn display_options(quiet: bool) -> display::Options {
    let mut display = display::Options::detect(quiet);
    if quiet {
        display.brief = true;
        display.mode = display::Mode::Plain;
    }
    display
}

/// `--label`s, each once, in the order given.
fn once_each(labels: &[String]) -> Vec<String> {
    let mut all: Vec<String> = Vec::new();
    for label in labels {
        if !all.contains(label) {
            all.push(label.clone());
        }
    }
    all
}

impl Worker {
    /// Serves runs until stopped (or, with `once`, until one was served; with
    /// `idle_exit`, until no run was served for that long).
    fn serve_runs(
        &mut self,
        broker: &mut Broker,
        once: bool,
        idle_exit: Option<Duration>,
    ) -> Result<(), Error> {
        // Since when this worker serves nothing: its start, or the end of the last run.
        let mut idle_since = Instant::now();
        while !self.stop.load(Ordering::SeqCst) {
            let served = self.serve_newest(broker)?;
            if served && once {
                break;
            }
            if self.serving {
                idle_since = Instant::now();
                self.serving = false;
            }
            if let Some(idle) = idle_exit.filter(|idle| idle_since.elapsed() >= *idle) {
                self.session.say(format!(
                    "no run served for {} (--idle-exit): exiting",
                    humantime::format_duration(idle)
                ));
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
            let again = self.left.contains(&run);
            if !self.seen.insert(run.clone()) && !again {
                continue;
            }
            match broker.run_state(&run)? {
                RunState::Running => {}
                // Left, and its coordinator not back (yet): looked at again next time.
                RunState::Orphaned if again => continue,
                RunState::Orphaned => {
                    // Its coordinator died: nobody wants its results. Let it expire.
                    let _ = broker.expire_run(&run);
                    continue;
                }
                RunState::Stopping | RunState::Over => {
                    self.left.remove(&run);
                    continue;
                }
            }
            if self.key.is_none() && announcement.get("mac").is_some() {
                self.refuse_keyless(broker, &run);
                continue;
            }
            if let Some(why) = self.refusal(&announcement, &run) {
                self.refuse(broker, &run, why);
                continue;
            }
            match self.run_file(&announcement) {
                Ok((file, jobs)) => self.serve_run(broker, &run, file, jobs),
                Err(why) => {
                    self.refuse(broker, &run, why.to_string());
                    continue;
                }
            }
            // Left while it goes on: the tasks this worker held were released, and it may
            // be the run's only worker. Served again once it is running (its coordinator
            // back), so not served yet for `--once`.
            let stopping = self.stop.load(Ordering::SeqCst);
            let shown = printable(&run, 80);
            let state = if stopping {
                None
            } else {
                broker.run_state(&run).ok()
            };
            let said = match state {
                Some(RunState::Running) => Some(format!(
                    "run {shown} goes on: the tasks held here were released; serving it again while it runs"
                )),
                // Its coordinator died (or lost Redis for seconds): nothing runs for it
                // unless it comes back.
                Some(RunState::Orphaned) => Some(format!(
                    "left run {shown}: its coordinator is gone; the tasks held here were \
                     released, and none is started unless its coordinator comes back"
                )),
                _ => None,
            };
            if let Some(said) = said {
                self.session.say(said);
                self.left.insert(run);
                return Ok(false);
            }
            self.left.remove(&run);
            self.session
                .say(format!("run {} ended", printable(&run, 80)));
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
        let theirs = printable(&announcement.text("digest").unwrap_or_default(), 80);
        (theirs != self.digest).then(|| {
            format!(
                "its job file has digest {theirs}, this worker's {} has {}: run the same file on both",
                self.session.file.path.display(),
                self.digest
            )
        })
    }

    /// This worker's file as the run announced uses it: with the run's vars, and the
    /// names of the run's jobs (a run may be of a selection). Both are data: a var is
    /// only ever inserted where this worker's own file says, quoted like an item.
    fn run_file(&self, announcement: &Message) -> Result<(Arc<JobFile>, Vec<String>), Refusal> {
        let file = &self.session.file;
        let vars: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&announcement.text("vars").unwrap_or_else(|| "{}".into()))
                .map_err(Refusal::VarsNotAnObject)?;
        let vars: Vec<(String, String)> = vars
            .into_iter()
            .map(|(name, value)| match value {
                serde_json::Value::String(value) => Ok((name, value)),
                _ => Err(Refusal::VarNotAString(name)),
            })
            .collect::<Result<_, _>>()?;
        let all: Vec<String> = file.jobs.iter().map(|j| j.name.clone()).collect();
        let jobs: Vec<String> = match announcement.text("jobs") {
            None => all.clone(),
            Some(text) => serde_json::from_str(&text).map_err(Refusal::JobsNotAnArray)?,
        };
        if let Some(unknown) = jobs.iter().find(|j| !all.contains(j)) {
            return Err(Refusal::UnknownJob(unknown.clone()));
        }
        if vars.iter().all(|(name, value)| {
            file.vars
                .iter()
                .any(|v| &v.name == name && &v.value == value)
        }) {
            return Ok((file.clone(), jobs));
        }
        match crate::jobfile::parse_with(&file.path, file.source.clone(), &vars) {
            Ok(run_file) => Ok((Arc::new(run_file), jobs)),
            Err(e) => Err(Refusal::VarsDoNotFit(Box::new(e))),
        }
    }

    /// Refuses a signed run, having no key to check its tasks with: said here, and
    /// reported (unsigned, so marked as such) for the coordinator to tell it from a
    /// forgery.
    fn refuse_keyless(&self, broker: &mut Broker, run: &str) {
        // Reported first: once this worker said it, the coordinator can read it.
        let event = Message::new()
            .with("host", &self.session.host)
            .with("reason", NO_AUTHKEY)
            .with("message", "refused the run: this worker has no authkey");
        let _ = broker.report(run, &event);
        let _ = broker.refused(run, &self.consumer, "it has no authkey (the run is signed)");
        self.session.say(format!(
            "refusing run {}: it is signed (its coordinator has an authkey) and this worker \
             has none, so it cannot check its tasks; give it the same key with \
             --authkey-file FILE or RUNNER_AUTHKEY",
            printable(run, 80)
        ));
    }

    fn refuse(&self, broker: &mut Broker, run: &str, why: String) {
        self.session
            .say(format!("refusing run {}: {why}", printable(run, 80)));
        let event = Message::new()
            .with("host", &self.session.host)
            .with("message", format!("refused the run: {why}"))
            .sign(self.key.as_deref(), run);
        let _ = broker.report(run, &event);
        let _ = broker.refused(run, &self.consumer, &why);
    }

    /// Serves one run until it ends or this worker stops.
    fn serve_run(&mut self, broker: &mut Broker, run: &str, file: Arc<JobFile>, jobs: Vec<String>) {
        let shown = printable(run, 80);
        self.session.say(format!("serving run {shown}"));
        self.serving = true;
        let queues = file
            .queues
            .iter()
            .enumerate()
            .map(|(i, q)| Arc::new(Queue::new(i, &q.name, q.capacity, Box::new(NoWake))))
            .collect();
        let mut ctx = self.session.context(run, queues, Mode::Worker, None);
        ctx.file = file;
        // What its tasks print goes on to the coordinator too.
        let (remote, output) = super::forward::channel();
        ctx.remote = Some(remote);
        // A cache of the run's own: its uploads are waited for, and what it did is said,
        // when the run ends.
        let cache = self.cache.as_ref().map(|o| {
            Cache::new(
                o.store.clone(),
                o.settings.clone(),
                self.session.events.clone(),
                &self.session.host,
            )
        });
        ctx.cache = cache.clone();
        // The run's own stop switch: the run stopping stops its tasks, and this worker
        // serves the next run with a fresh one. The worker's own switch (its signals)
        // reaches it through the relay below.
        let control = match Control::new(self.session.control.grace) {
            Ok(control) => Arc::new(control),
            Err(e) => {
                self.session
                    .say(format!("error: cannot serve run {shown}: {e}"));
                self.failed = true;
                return;
            }
        };
        ctx.control = control.clone();
        let ctx = Arc::new(ctx);
        let lease = broker.run_lease(run);
        // The run's own stop flag: raised when the run ends, or by this worker's.
        let run_stop = Arc::new(AtomicBool::new(false));
        // Set once the run was served: the relay below ends.
        let served = Arc::new(AtomicBool::new(false));
        let watcher = {
            let (run_stop, stop) = (run_stop.clone(), self.stop.clone());
            let (own, served) = (self.session.control.clone(), served.clone());
            std::thread::spawn(move || {
                while !served.load(Ordering::SeqCst) {
                    if stop.load(Ordering::SeqCst) {
                        run_stop.store(true, Ordering::SeqCst);
                    }
                    match own.level() {
                        Level::Run => {}
                        Level::Stop => control.stop(),
                        Level::Kill => control.kill(),
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        let options = ServeOptions {
            url: self.url.clone(),
            run_id: run.to_string(),
            key: self.key.clone(),
            consumer: self.consumer.clone(),
            pool: self.pool,
            lease,
            jobs,
            capacity: ctx
                .file
                .resources
                .iter()
                .map(|r| {
                    self.resources
                        .iter()
                        .rev()
                        .find(|(name, _)| *name == r.name)
                        .map_or(r.capacity, |(_, n)| *n)
                })
                .collect(),
            labels: self.labels.clone(),
            ledger: None,
            output: Some(output),
        };
        let s = Arc::new(Serve::new(options, ctx, run_stop.clone()));
        if let Err(e) = serve(s) {
            self.session.say(format!("error: {e}"));
            self.failed = true;
        }
        run_stop.store(true, Ordering::SeqCst);
        served.store(true, Ordering::SeqCst);
        let _ = watcher.join();
        if let Some(cache) = cache {
            let totals = cache.finish(self.stop.load(Ordering::SeqCst));
            self.session.say(format!("run {shown}: {}", totals.line()));
        }
    }
}

/// A worker's presence in Redis (`runner:workers`): refreshed every second by a thread
/// of its own while the worker runs, so that a coordinator can tell connected workers
/// (and their labels) from none.
struct Presence {
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Presence {
    /// Starts the thread (none if its connection cannot be made: the worker serves on,
    /// only unseen by coordinators).
    fn start(worker: &Worker) -> Presence {
        let done = Arc::new(AtomicBool::new(false));
        let info = WorkerInfo {
            name: worker.consumer.clone(),
            labels: worker.labels.clone(),
            pool: worker.pool,
        };
        let thread = Broker::connect(&worker.url, Duration::from_secs(10))
            .ok()
            .map(|broker| {
                let give_up = done.clone();
                broker.on_trouble(|_| {}, move || give_up.load(Ordering::SeqCst))
            })
            .and_then(|mut broker| {
                let done = done.clone();
                std::thread::Builder::new()
                    .name("presence".into())
                    .spawn(move || {
                        while !done.load(Ordering::SeqCst) {
                            let _ = broker.worker_present(&info);
                            let wake = std::time::Instant::now() + PRESENCE_EVERY;
                            while std::time::Instant::now() < wake && !done.load(Ordering::SeqCst) {
                                std::thread::sleep(Duration::from_millis(50));
                            }
                        }
                    })
                    .ok()
            });
        Presence { done, thread }
    }

    fn stop(self) {
        self.done.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread {
            let _ = thread.join();
        }
    }
}

/// Why a worker does not serve a run whose announcement it read (said on its stderr and
/// reported to the coordinator). Names read from the broker are made printable.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("its vars are not a JSON object: {0}")]
    VarsNotAnObject(#[source] serde_json::Error),
    #[error("its var `{}` is not a string", printable(.0, 40))]
    VarNotAString(String),
    #[error("its list of jobs is not a JSON array of names: {0}")]
    JobsNotAnArray(#[source] serde_json::Error),
    #[error("its job `{}` is not in this worker's file", printable(.0, 40))]
    UnknownJob(String),
    /// The first line of what the loader said, at most 200 characters.
    #[error(
        "its vars do not fit this worker's file: {}",
        printable(.0.render(false).lines().next().unwrap_or(""), 200)
    )]
    VarsDoNotFit(#[source] Box<LoadError>),
}
