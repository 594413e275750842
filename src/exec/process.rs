//! One attempt of one task: spawn the process as the leader of its own process group,
//! feed its stdin, read its stdout and stderr, and wait for it — all from one thread, in
//! one `poll` loop, so a task costs no helper threads (a streaming stdin is the exception:
//! it is fed by a thread of its own, because it blocks on the queue).
//!
//! Invariants:
//! - Every signal goes to the task's process group, never to a single pid, and only
//!   while the group is known to be ours: before the leader is reaped, or after, while
//!   the group still has members (a group id is not reused while the group exists).
//! - No process of the group outlives the attempt: leftovers of a leader that exited are
//!   sent TERM, then KILL after the grace period. Nor does a process that left the
//!   group, if it still carries the task's marker (`escapees.rs`, after the loop).
//! - The watchdog knows the group while the attempt runs (`Control::started`/`ended`).
//! - The loop never waits without a deadline on anything but the task itself: stop
//!   requests, timeouts and grace periods all bound it.
//!
//! Longer than 400 lines: one poll loop and every state it can be in (timeout, stop,
//! grace, leftovers); split up, its invariants would be in several places.

use super::control::{Control, Level};
use super::sink::Sink;
use crate::escapees::{self, Marker};
use crate::fds;
use crate::queue::Queue;
use crate::sys::{self, PollFlags, Signal};
use crate::task::End;
use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Environment variables of the runner that never reach a task.
pub const SECRET_VARS: [&str; 2] = ["RUNNER_AUTHKEY", "RUNNER_BROKER_URL"];

/// A command ready to spawn: everything rendered.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub program: OsString,
    pub args: Vec<OsString>,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    pub stdin: StdinSource,
}

#[derive(Clone)]
pub enum StdinSource {
    Null,
    Bytes(Arc<[u8]>),
    File(PathBuf),
    Queue(Arc<Queue>),
}

impl std::fmt::Debug for StdinSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StdinSource::Null => f.write_str("Null"),
            StdinSource::Bytes(b) => write!(f, "Bytes({})", b.len()),
            StdinSource::File(p) => write!(f, "File({})", p.display()),
            StdinSource::Queue(q) => write!(f, "Queue({})", q.name),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Attempt {
    pub pid: Option<u32>,
    pub end: End,
    pub started: SystemTime,
    pub duration: Duration,
    /// It was stopped by the run (Ctrl-C, fail-fast), not by its own doing.
    pub stopped: bool,
}

/// Runs one attempt to its end.
pub fn run(
    prepared: &Prepared,
    stdout: &mut Sink,
    stderr: &mut Sink,
    timeout: Option<Duration>,
    control: &Control,
    release: Option<&Control>,
    on_spawn: &mut dyn FnMut(u32),
) -> Attempt {
    let started = SystemTime::now();
    let clock = Instant::now();
    // Counted from before its pipes are made: a spawn short of descriptors waits for this.
    let _running = fds::Running::start();
    let mut command = Command::new(&prepared.program);
    command
        .args(&prepared.args)
        .current_dir(&prepared.cwd)
        .process_group(0);
    for var in SECRET_VARS {
        command.env_remove(var);
    }
    // A declared secret's source variable reaches only the jobs that name the secret,
    // under the secret's name (in `prepared.env`).
    if let Some(secrets) = crate::secrets::active() {
        for var in &secrets.source_vars {
            command.env_remove(var);
        }
    }
    command.envs(prepared.env.iter().map(|(k, v)| (k, v)));
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    match &prepared.stdin {
        StdinSource::Null => {
            command.stdin(Stdio::null());
        }
        StdinSource::Bytes(_) | StdinSource::Queue(_) => {
            command.stdin(Stdio::piped());
        }
        StdinSource::File(path) => match crate::sys::open_stdin_file(path) {
            Ok(file) => {
                command.stdin(file);
            }
            Err(e) => {
                return failed_spawn(
                    started,
                    clock,
                    format!("cannot open stdin file {}: {e}", path.display()),
                    true,
                );
            }
        },
    }
    let mut child = match fds::spawn(&mut command, &|| control.level() != Level::Run) {
        Ok(child) => child,
        Err(e) => {
            let program = prepared.program.to_string_lossy();
            let (message, retryable) = match e.kind() {
                io::ErrorKind::NotFound if !prepared.cwd.is_dir() => (
                    format!(
                        "working directory {} does not exist",
                        prepared.cwd.display()
                    ),
                    false,
                ),
                io::ErrorKind::NotFound => (format!("program not found: `{program}`"), false),
                io::ErrorKind::PermissionDenied => {
                    (format!("permission denied running `{program}`"), false)
                }
                _ if fds::out_of(&e) => (
                    format!("cannot start `{program}`: {}", fds::message(&e)),
                    true,
                ),
                _ => (format!("cannot start `{program}`: {e}"), true),
            };
            return failed_spawn(started, clock, message, retryable);
        }
    };
    let pid = child.id();
    control.started(pid);
    stdout.open_log();
    stderr.open_log();
    on_spawn(pid);
    let mut drive = Drive::new(&mut child, &prepared.stdin, timeout, control, clock);
    drive.release = release;
    panic_for_tests(prepared);
    let status = drive.run(stdout, stderr);
    stdout.finish();
    stderr.finish();
    stop_escapees(prepared, pid, control, stderr);
    control.ended(pid);
    let end = if drive.timed_out {
        End::TimedOut
    } else if let Some(signal) = status.signal() {
        End::Signaled(signal)
    } else {
        End::Exited(status.code().unwrap_or(-1))
    };
    Attempt {
        pid: Some(pid),
        end,
        started,
        duration: clock.elapsed(),
        stopped: drive.stopped,
    }
}

/// A test hook, in debug builds only: `RUNNER_TEST_PANIC=ITEM` makes the slot thread
/// running the task of that item panic once its process started, so that the tests can
/// see a bug end the run cleanly (`tests/it/deadlock.rs`). Release builds have no hook.
fn panic_for_tests(prepared: &Prepared) {
    if cfg!(debug_assertions) {
        if let Some(wanted) = std::env::var_os("RUNNER_TEST_PANIC") {
            let item = prepared.env.iter().find(|(k, _)| k == "RUNNER_ITEM");
            if item.is_some_and(|(_, v)| wanted.to_str() == Some(v.as_str())) {
                panic!("RUNNER_TEST_PANIC: a panic asked for by a test");
            }
        }
    }
}

/// Stops the task's processes that outlived its group (see `escapees.rs`); each that
/// left the group is named on the task's stderr.
fn stop_escapees(prepared: &Prepared, pgid: u32, control: &Control, stderr: &mut Sink) {
    let marker = Marker::new(&prepared.env);
    let kill_now = || control.level() == Level::Kill;
    let how = escapees::Stop {
        marker: &marker,
        task_group: pgid,
        grace: control.grace,
        watchdog: control.watchdog_pid(),
        kill_now: &kill_now,
    };
    let mut said = false;
    escapees::stop(&how, &mut |note| {
        stderr.write(format!("runner: {note}\n").as_bytes());
        said = true;
    });
    if said {
        stderr.finish();
    }
}

fn failed_spawn(started: SystemTime, clock: Instant, message: String, retryable: bool) -> Attempt {
    // The message may quote the command, which may hold an item: never a secret's value.
    let message = crate::secrets::redact(&message).into_owned();
    Attempt {
        pid: None,
        end: End::SpawnFailed { message, retryable },
        started,
        duration: clock.elapsed(),
        stopped: false,
    }
}

struct Drive<'a> {
    child: &'a mut Child,
    pgid: u32,
    stdin_bytes: Option<(ChildStdin, Arc<[u8]>, usize)>,
    feeder: Option<Feeder>,
    deadline: Option<Instant>,
    control: &'a Control,
    /// A service's own stop switch (its release), heard like the run's.
    release: Option<&'a Control>,
    pidfd: Option<std::os::fd::OwnedFd>,
    /// When the current TERM turns into KILL.
    kill_at: Option<Instant>,
    /// After the leader exited: when we stop waiting for its pipes to close.
    pipes_deadline: Option<Instant>,
    timed_out: bool,
    stopped: bool,
    status: Option<std::process::ExitStatus>,
    /// Without an exit watch (or while stopping), how long the next poll waits before
    /// `waitpid` is tried again: 1 ms after anything happened, doubling up to
    /// [`PERIODIC_MAX`] while nothing does. A short task's exit then costs about a
    /// millisecond, not the whole period (its pipes close just before it is reapable).
    periodic: Duration,
}

/// The longest wait between two `waitpid` tries when the exit is not watched.
const PERIODIC_MAX: Duration = Duration::from_millis(50);
const PERIODIC_MIN: Duration = Duration::from_millis(1);

impl Drop for Drive<'_> {
    /// Normally the leader was reaped by now. If not, a bug is unwinding this thread:
    /// the task's processes must not outlive it, nor stay zombies.
    fn drop(&mut self) {
        if self.status.is_none() {
            sys::kill_group(self.pgid, Signal::KILL);
            let _ = self.child.wait();
            self.control.ended(self.pgid);
        }
    }
}

impl<'a> Drive<'a> {
    fn new(
        child: &'a mut Child,
        stdin: &StdinSource,
        timeout: Option<Duration>,
        control: &'a Control,
        clock: Instant,
    ) -> Drive<'a> {
        let pgid = child.id();
        let pidfd = sys::exit_watch(pgid);
        let mut stdin_bytes = None;
        let mut feeder = None;
        match stdin {
            StdinSource::Bytes(bytes) => {
                if let Some(pipe) = child.stdin.take() {
                    if bytes.is_empty() || sys::set_nonblocking(&pipe).is_err() {
                        drop(pipe); // Empty payload: stdin is closed at once.
                    } else {
                        stdin_bytes = Some((pipe, bytes.clone(), 0));
                    }
                }
            }
            StdinSource::Queue(queue) => {
                if let Some(pipe) = child.stdin.take() {
                    feeder = Some(Feeder::start(pipe, queue.clone()));
                }
            }
            _ => {}
        }
        Drive {
            child,
            pgid,
            stdin_bytes,
            feeder,
            deadline: timeout.map(|t| clock + t),
            control,
            release: None,
            pidfd,
            kill_at: None,
            pipes_deadline: None,
            timed_out: false,
            stopped: false,
            status: None,
            periodic: PERIODIC_MIN,
        }
    }

    fn run(&mut self, stdout: &mut Sink, stderr: &mut Sink) -> std::process::ExitStatus {
        let mut out = self.child.stdout.take();
        let mut err = self.child.stderr.take();
        for pipe in [
            out.as_ref().map(|p| p.as_fd()),
            err.as_ref().map(|p| p.as_fd()),
        ]
        .into_iter()
        .flatten()
        {
            let _ = sys::set_nonblocking(pipe);
            // A task that prints a flood fills a 64 KiB pipe in microseconds and then
            // waits for each read: a larger one lets it run on while the runner reads
            // (in pieces of the same 64 KiB). Refused (a user's pipe quota): no matter.
            let _ = sys::grow_pipe(pipe, PIPE_SIZE);
        }
        // One read buffer per slot thread, reused by every task it runs.
        thread_local! {
            static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; 64 * 1024]);
        }
        BUF.with(|buf| self.pump(stdout, stderr, &mut out, &mut err, &mut buf.borrow_mut()));
        if let Some(feeder) = self.feeder.take() {
            feeder.finish();
        }
        self.status
            .expect("the loop ends after the leader was reaped")
    }

    /// The poll loop: until the leader is reaped and both pipes are closed.
    fn pump(
        &mut self,
        stdout: &mut Sink,
        stderr: &mut Sink,
        out: &mut Option<std::process::ChildStdout>,
        err: &mut Option<std::process::ChildStderr>,
        buf: &mut [u8],
    ) {
        let mut watching_control = true;
        loop {
            if out.is_none() && err.is_none() && self.status.is_some() {
                break;
            }
            self.check_control(&mut watching_control);
            let now = Instant::now();
            self.check_deadlines(now, out, err);
            if out.is_none() && err.is_none() && self.status.is_some() {
                break;
            }
            let mut fds = Vec::with_capacity(6);
            let mut roles = Vec::with_capacity(6);
            if let Some(p) = &out {
                fds.push(sys::pollfd(p.as_fd(), PollFlags::IN));
                roles.push(Role::Stdout);
            }
            if let Some(p) = &err {
                fds.push(sys::pollfd(p.as_fd(), PollFlags::IN));
                roles.push(Role::Stderr);
            }
            if let Some((p, _, _)) = &self.stdin_bytes {
                fds.push(sys::pollfd(p.as_fd(), PollFlags::OUT));
                roles.push(Role::Stdin);
            }
            if self.status.is_none() {
                if let Some(p) = &self.pidfd {
                    fds.push(sys::pollfd(p.as_fd(), PollFlags::IN));
                    roles.push(Role::Exit);
                }
            }
            if watching_control {
                fds.push(sys::pollfd(self.control.fd(), PollFlags::IN));
                roles.push(Role::Control);
                if let Some(release) = self.release {
                    fds.push(sys::pollfd(release.fd(), PollFlags::IN));
                    roles.push(Role::Control);
                }
            }
            let timeout = self.poll_timeout(now);
            if sys::poll(&mut fds, timeout).is_err() {
                // poll only fails on bad arguments or no memory; back off rather than spin.
                std::thread::sleep(Duration::from_millis(10));
            }
            // The entries borrow the pipes that reading needs: note which are ready first.
            let mut ready = [false; 6];
            for (r, fd) in ready.iter_mut().zip(&fds) {
                *r = !fd.revents().is_empty();
            }
            drop(fds);
            self.periodic = if ready.contains(&true) {
                PERIODIC_MIN
            } else {
                (self.periodic * 2).min(PERIODIC_MAX)
            };
            for (ready, role) in ready.iter().zip(&roles) {
                if !ready {
                    continue;
                }
                match role {
                    Role::Stdout => read_into(out, buf, stdout),
                    Role::Stderr => read_into(err, buf, stderr),
                    Role::Stdin => self.write_stdin(),
                    Role::Exit | Role::Control => {}
                }
            }
            let refused = stdout.refused().is_some() || stderr.refused().is_some();
            if refused && self.status.is_none() {
                self.term(); // A line past its limit: the task fails (exec says why).
            }
            if self.status.is_none() {
                self.reap();
            }
        }
    }

    fn poll_timeout(&self, now: Instant) -> i32 {
        let mut next: Option<Instant> = None;
        for t in [
            self.deadline.filter(|_| !self.timed_out),
            self.kill_at,
            self.pipes_deadline,
        ]
        .into_iter()
        .flatten()
        {
            next = Some(next.map_or(t, |n| n.min(t)));
        }
        let mut ms = next.map_or(-1, |t| {
            t.saturating_duration_since(now).as_millis().min(60_000) as i32 + 1
        });
        let periodic = self.pidfd.is_none() || self.level() != Level::Run;
        if periodic && self.status.is_none() {
            let period = self.periodic.as_millis() as i32;
            ms = if ms < 0 { period } else { ms.min(period) };
        }
        ms
    }

    /// The run's stop switch, or the service's own if it is further up.
    fn level(&self) -> Level {
        let run = self.control.level();
        match self.release {
            Some(release) => run.max(release.level()),
            None => run,
        }
    }

    fn check_control(&mut self, watching: &mut bool) {
        match self.level() {
            Level::Run => {}
            Level::Stop => {
                *watching = false;
                if !self.stopped {
                    self.stopped = true;
                    self.term();
                }
            }
            Level::Kill => {
                *watching = false;
                self.stopped = true;
                sys::kill_group(self.pgid, Signal::KILL);
                self.kill_at = None;
            }
        }
    }

    /// TERM to the group, KILL after the grace period.
    fn term(&mut self) {
        if self.kill_at.is_none() {
            sys::kill_group(self.pgid, Signal::TERM);
            sys::kill_group(self.pgid, Signal::CONT);
            self.kill_at = Some(Instant::now() + self.control.grace);
        }
    }

    fn check_deadlines(
        &mut self,
        now: Instant,
        out: &mut Option<std::process::ChildStdout>,
        err: &mut Option<std::process::ChildStderr>,
    ) {
        if let Some(deadline) = self.deadline {
            if !self.timed_out && self.status.is_none() && now >= deadline {
                self.timed_out = true;
                self.term();
            }
        }
        if let Some(kill_at) = self.kill_at {
            if now >= kill_at {
                sys::kill_group(self.pgid, Signal::KILL);
                self.kill_at = None;
                if self.status.is_some() {
                    // Whatever still holds the pipes now is not in the group: stop reading.
                    self.pipes_deadline = Some(now);
                }
            }
        }
        if let Some(deadline) = self.pipes_deadline {
            if now >= deadline && self.kill_at.is_none() {
                *out = None;
                *err = None;
            }
        }
    }

    fn reap(&mut self) {
        match self.child.try_wait() {
            Ok(Some(status)) => {
                self.status = Some(status);
                self.stdin_bytes = None;
                // The leader is gone; anything left in its group is a leftover.
                if sys::group_exists(self.pgid) {
                    self.kill_at = None;
                    self.term();
                } else {
                    self.kill_at = None;
                }
                self.pipes_deadline = Some(Instant::now() + self.control.grace);
            }
            Ok(None) => {}
            Err(_) => {
                // ECHILD: someone else reaped it; report it as killed rather than hang.
                self.status = Some(std::process::ExitStatus::from_raw(Signal::KILL.as_raw()));
                self.pipes_deadline = Some(Instant::now());
            }
        }
    }

    fn write_stdin(&mut self) {
        let Some((pipe, bytes, written)) = &mut self.stdin_bytes else {
            return;
        };
        loop {
            match pipe.write(&bytes[*written..]) {
                Ok(n) => {
                    *written += n;
                    if *written >= bytes.len() {
                        // All written: close stdin, as communicate(input) does.
                        self.stdin_bytes = None;
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    // EPIPE: the task does not read its input; that is its right.
                    self.stdin_bytes = None;
                    return;
                }
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Role {
    Stdout,
    Stderr,
    Stdin,
    Exit,
    Control,
}

/// The size asked for a task's stdout and stderr pipes.
const PIPE_SIZE: usize = 1 << 20;

/// Reads what is there (up to a few buffers, to stay fair to the other pipe).
fn read_into<R: Read>(pipe: &mut Option<R>, buf: &mut [u8], sink: &mut Sink) {
    let Some(reader) = pipe else { return };
    for _ in 0..4 {
        match reader.read(buf) {
            Ok(0) => {
                *pipe = None;
                return;
            }
            Ok(n) => {
                sink.write(&buf[..n]);
                if n < buf.len() {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                *pipe = None;
                return;
            }
        }
    }
}

/// Feeds a streaming consumer's stdin from its queue, on a thread of its own.
struct Feeder {
    done: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Feeder {
    fn start(mut pipe: ChildStdin, queue: Arc<Queue>) -> Feeder {
        let done = Arc::new(AtomicBool::new(false));
        let stop = done.clone();
        let thread = std::thread::Builder::new()
            .name(format!("feed-{}", queue.name))
            .spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match queue.take_all(Duration::from_millis(100)) {
                        None => return, // Closed and drained: dropping the pipe is end of input.
                        Some(lines) if lines.is_empty() => continue,
                        Some(lines) => {
                            if let Err(unwritten) = write_lines(&mut pipe, &lines) {
                                // The process stopped reading: what it was not given
                                // waits for a retry (the task discards the queue when
                                // it has none left).
                                queue.put_back(unwritten);
                                return;
                            }
                        }
                    }
                }
            })
            .expect("spawning a thread");
        Feeder { done, thread }
    }

    fn finish(self) {
        self.done.store(true, Ordering::SeqCst);
        let _ = self.thread.join();
    }
}

/// Writes whole lines; on failure, gives back those not wholly written (a line the
/// process got only part of is given again whole).
fn write_lines(pipe: &mut ChildStdin, lines: &[u8]) -> Result<(), Vec<u8>> {
    let mut written = 0;
    while written < lines.len() {
        match pipe.write(&lines[written..]) {
            Ok(n) if n > 0 => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            _ => {
                let start = memchr::memrchr(b'\n', &lines[..written]).map_or(0, |i| i + 1);
                return Err(lines[start..].to_vec());
            }
        }
    }
    Ok(())
}
