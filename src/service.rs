//! Services while they run: whether each is ready (a TCP connect, an HTTP GET, a line of
//! its output, a command), tried about every 100 ms on a thread of its own until
//! `ready_timeout`; and its release, a stop switch of its own that the run raises when
//! nothing needing it is left (TERM to its group, the grace period, KILL: the task's
//! poll loop does it, as for a run-wide stop).
//!
//! Invariant: a check never outlives its service's attempt: the checking thread looks
//! at `over` between tries and every try is bounded (a connect 1 s, a request 2 s, a
//! command killed when the attempt is over); the attempt joins it before it ends.

use crate::exec::control::Control;
use crate::jobfile::JobId;
use crate::render::{Command, ReadyCheck};
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::net::ToSocketAddrs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// How often a check is tried.
pub const EVERY: Duration = Duration::from_millis(100);
/// A TCP connect's bound.
const CONNECT: Duration = Duration::from_secs(1);
/// An HTTP request's bound (redirects included).
const REQUEST: Duration = Duration::from_secs(2);
/// The longest line a `line` check looks at (the rest of a longer line is not).
const LINE_MAX: usize = 64 * 1024;

/// A check's answer that is not "ready", as the failure names it ("last try: …").
#[derive(Debug, thiserror::Error)]
pub enum Answer {
    #[error("cannot resolve {0}: {1}")]
    Resolve(String, std::io::Error),
    #[error("{0} has no address")]
    NoAddress(String),
    #[error("{0}")]
    Connect(std::io::Error),
    #[error("HTTP {0}")]
    Status(u16),
    #[error("{0}")]
    Http(ureq::Error),
    #[error("the command is empty")]
    Empty,
    #[error("cannot start `{0}`: {1}")]
    Spawn(String, std::io::Error),
    #[error("cannot wait for `{0}`: {1}")]
    Wait(String, std::io::Error),
    /// It ended without success: how, and the last line it printed on stderr.
    #[error("{how}{}", if said.is_empty() { String::new() } else { format!(": {said}") })]
    Failed { how: String, said: String },
    #[error("still running when the time was up")]
    TimeUp,
    #[error("no matching line yet")]
    NoLine,
}

/// Told when a service's task is ready: (job, index, what to say: `LABEL: ready after
/// 212ms (tcp 127.0.0.1:6379)`).
pub type OnReady = Box<dyn Fn(JobId, u64, String) + Send + Sync>;

/// The services of a run: each running service task's watch, and the jobs released.
pub struct Services {
    on_ready: OnReady,
    live: Mutex<HashMap<(JobId, u64), Arc<Watch>>>,
    released: Mutex<HashSet<JobId>>,
    grace: Duration,
}

impl Services {
    pub fn new(grace: Duration, on_ready: OnReady) -> Services {
        Services {
            on_ready,
            live: Mutex::new(HashMap::new()),
            released: Mutex::new(HashSet::new()),
            grace,
        }
    }

    /// A service task is about to start: its watch (already released if its job is).
    pub fn watch(
        &self,
        job: JobId,
        index: u64,
        label: Arc<str>,
        check: Option<(ReadyCheck, Option<regex_automata::meta::Regex>)>,
        timeout: Duration,
    ) -> std::io::Result<Arc<Watch>> {
        let watch = Arc::new(Watch {
            job,
            index,
            label,
            release: Control::new(self.grace)?,
            released: AtomicBool::new(false),
            state: Mutex::new(State::default()),
            check,
            timeout,
            over: AtomicBool::new(false),
            began: Mutex::new(None),
        });
        let released = lock(&self.released).contains(&job);
        lock(&self.live).insert((job, index), watch.clone());
        if released {
            watch.release();
        }
        Ok(watch)
    }

    /// Nothing needing service `job` is left: its tasks are stopped, as released.
    pub fn release(&self, job: JobId) {
        lock(&self.released).insert(job);
        for watch in lock(&self.live).values() {
            if watch.job == job {
                watch.release();
            }
        }
    }

    /// A service task's attempt is over.
    pub fn forget(&self, job: JobId, index: u64) {
        lock(&self.live).remove(&(job, index));
    }

    fn ready(&self, job: JobId, index: u64, said: String) {
        (self.on_ready)(job, index, said);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Debug, Default)]
struct State {
    /// When it became ready.
    ready: Option<(SystemTime, Instant)>,
    /// The last answer of the check that was not "ready".
    last: Option<String>,
    /// Readiness failed: why (it was then stopped).
    failed: Option<String>,
}

/// One service task's readiness and release.
pub struct Watch {
    pub job: JobId,
    pub index: u64,
    label: Arc<str>,
    /// Raised at release, or when readiness failed: the attempt stops its process.
    pub release: Control,
    released: AtomicBool,
    state: Mutex<State>,
    check: Option<(ReadyCheck, Option<regex_automata::meta::Regex>)>,
    timeout: Duration,
    over: AtomicBool,
    /// When its process started.
    began: Mutex<Option<Instant>>,
}

/// What a service task's attempt came to, as far as being a service goes.
#[derive(Debug, Clone, Default)]
pub struct Life {
    /// When it became ready, and how long after its process started.
    pub ready: Option<(SystemTime, Duration)>,
    /// It was stopped because nothing needing it was left.
    pub released: bool,
    /// Why it failed as a service (not ready in time, or ended before its release),
    /// naming the check and its last answer.
    pub problem: Option<String>,
}

impl Watch {
    fn release(&self) {
        self.released.store(true, Ordering::SeqCst);
        self.release.stop();
    }

    pub fn is_released(&self) -> bool {
        self.released.load(Ordering::SeqCst)
    }

    pub fn is_ready(&self) -> bool {
        lock(&self.state).ready.is_some()
    }

    /// The check as words (`tcp 127.0.0.1:6379`), if it has one.
    pub fn describe(&self) -> Option<String> {
        self.check.as_ref().map(|(c, _)| c.describe())
    }

    /// Its process started: without a check, it is ready now; with one, the checking
    /// thread starts (a `line` check is done by the output's sinks, the thread only
    /// keeps the time).
    pub fn started(
        self: &Arc<Self>,
        services: &Arc<Services>,
    ) -> Option<std::thread::JoinHandle<()>> {
        *lock(&self.began) = Some(Instant::now());
        if self.check.is_none() {
            self.set_ready(services);
            return None;
        }
        let watch = self.clone();
        let services = services.clone();
        std::thread::Builder::new()
            .name(format!("ready-{}", self.index))
            .spawn(move || watch.keep_checking(&services))
            .ok()
    }

    fn set_ready(&self, services: &Services) {
        {
            let mut state = lock(&self.state);
            if state.ready.is_some() || state.failed.is_some() || self.over.load(Ordering::SeqCst) {
                return;
            }
            state.ready = Some((SystemTime::now(), Instant::now()));
        }
        let began = lock(&self.began).unwrap_or_else(Instant::now);
        let after = crate::task::duration(began.elapsed());
        let said = match self.describe() {
            Some(check) => format!("{}: ready after {after} ({check})", self.label),
            None => format!("{}: started (a service without `ready`)", self.label),
        };
        services.ready(self.job, self.index, said);
    }

    /// A line of its output (without its newline): ready if the `line` check matches.
    pub fn line(&self, line: &[u8], services: &Services) -> bool {
        let Some((_, Some(regex))) = &self.check else {
            return false;
        };
        if regex.is_match(&line[..line.len().min(LINE_MAX)]) {
            self.set_ready(services);
            return true;
        }
        false
    }

    /// Whether a `line` check watches its output.
    pub fn watches_lines(&self) -> bool {
        matches!(&self.check, Some((_, Some(_))))
    }

    fn keep_checking(&self, services: &Services) {
        let began = lock(&self.began).unwrap_or_else(Instant::now);
        let deadline = began + self.timeout;
        let Some((check, _)) = &self.check else {
            return;
        };
        loop {
            if self.over.load(Ordering::SeqCst) || self.is_ready() || self.is_released() {
                return;
            }
            let tried = Instant::now();
            if !matches!(check, ReadyCheck::Line(_)) {
                match self.try_once(check, deadline) {
                    Ok(()) => {
                        self.set_ready(services);
                        return;
                    }
                    Err(e) => lock(&self.state).last = Some(e.to_string()),
                }
            }
            if Instant::now() >= deadline {
                if self.is_ready() || self.over.load(Ordering::SeqCst) {
                    return;
                }
                let mut state = lock(&self.state);
                let last = match &state.last {
                    Some(last) => format!("; last try: {last}"),
                    None => String::new(),
                };
                state.failed = Some(format!(
                    "not ready after {} ({}{last})",
                    crate::task::duration(self.timeout),
                    check.describe()
                ));
                drop(state);
                self.release.stop();
                return;
            }
            let next = (tried + EVERY).min(deadline);
            while Instant::now() < next {
                if self.over.load(Ordering::SeqCst) || self.is_ready() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10).min(next - Instant::now().min(next)));
            }
        }
    }

    fn try_once(&self, check: &ReadyCheck, deadline: Instant) -> Result<(), Answer> {
        match check {
            ReadyCheck::Tcp(address) => tcp(address),
            ReadyCheck::Http(url) => http(url),
            ReadyCheck::Command(command) => self.command(command, deadline),
            ReadyCheck::Line(_) => Err(Answer::NoLine),
        }
    }

    /// Runs the check's command to its end (killed if the attempt ends or the deadline
    /// passes first).
    fn command(&self, command: &Command, deadline: Instant) -> Result<(), Answer> {
        let argv = command.argv();
        let Some((program, args)) = argv.split_first() else {
            return Err(Answer::Empty);
        };
        let mut child = std::process::Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| Answer::Spawn(program.clone(), e))?;
        let mut stderr = child.stderr.take();
        let reader = std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(err) = &mut stderr {
                let _ = err.take(4096).read_to_end(&mut text);
            }
            text
        });
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if self.over.load(Ordering::SeqCst) || Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => return Err(Answer::Wait(program.clone(), e)),
            }
        };
        let said = reader.join().unwrap_or_default();
        let said = String::from_utf8_lossy(&said);
        let said = said.trim().lines().last().unwrap_or("").to_string();
        match status {
            Some(s) if s.success() => Ok(()),
            Some(s) => Err(Answer::Failed {
                how: match s.code() {
                    Some(code) => format!("exit {code}"),
                    None => "killed".to_string(),
                },
                said,
            }),
            None => Err(Answer::TimeUp),
        }
    }

    /// The attempt is over: the check stops, and what came of the service is said.
    pub fn finish(&self, checker: Option<std::thread::JoinHandle<()>>) -> Life {
        self.over.store(true, Ordering::SeqCst);
        if let Some(checker) = checker {
            let _ = checker.join();
        }
        let began = lock(&self.began).unwrap_or_else(Instant::now);
        let state = lock(&self.state);
        let released = self.is_released() && state.failed.is_none();
        let ready = state
            .ready
            .map(|(at, clock)| (at, clock.saturating_duration_since(began)));
        let problem = match (&state.failed, ready, released) {
            (Some(failed), _, _) => Some(failed.clone()),
            (None, _, true) => None,
            (None, None, false) => {
                let check = self.describe().unwrap_or_else(|| "no check".to_string());
                let last = match &state.last {
                    Some(last) => format!("; last try: {last}"),
                    None => String::new(),
                };
                Some(format!("ended before it was ready ({check}{last})"))
            }
            (None, Some(_), false) => Some("ended while jobs still needed it".to_string()),
        };
        Life {
            ready,
            released,
            problem,
        }
    }
}

/// A TCP connection to `address` is accepted.
fn tcp(address: &str) -> Result<(), Answer> {
    let addrs: Vec<_> = address
        .to_socket_addrs()
        .map_err(|e| Answer::Resolve(address.to_string(), e))?
        .collect();
    let mut last = Answer::NoAddress(address.to_string());
    for addr in addrs {
        match std::net::TcpStream::connect_timeout(&addr, CONNECT) {
            Ok(_) => return Ok(()),
            Err(e) => last = Answer::Connect(e),
        }
    }
    Err(last)
}

/// A GET of `url` answers 2xx (redirects followed).
fn http(url: &str) -> Result<(), Answer> {
    let mut config = ureq::Agent::config_builder();
    if url.starts_with("https:") {
        config = config.tls_config(crate::cache::http::tls());
    }
    let agent: ureq::Agent = config
        .http_status_as_error(false)
        .max_redirects(10)
        .timeout_global(Some(REQUEST))
        .user_agent(concat!("runner/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    match agent.get(url).call() {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => Err(Answer::Status(response.status().as_u16())),
        Err(e) => Err(Answer::Http(e)),
    }
}
