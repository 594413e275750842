//! The terminal writer: the one thread that writes to stdout and stderr during a run.
//! Tasks send it [`Event`]s; it prints their output as whole lines, each labelled with
//! its task, and shows progress: indicatif bars when stderr is a terminal, plain lines
//! (a line per task start and end, and a heartbeat) otherwise, so CI logs never look
//! dead and never hold escape codes.
//!
//! Invariant: a line of task output is written in one piece, with the bars suspended,
//! so neither another task's output nor a bar can tear it.
//!
//! Longer than 400 lines: bars and plain lines share the counts and the writer.

use crate::held::{Held, PIECE};
use crate::jobfile::{JobFile, OutputMode};
use crate::lost::{Kind, LostWrites};
use crate::sys;
use crate::task::{
    describe_end, duration, printable, titled, Event, Outcome, Status, Stream, TaskRecord,
};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The heartbeat shows the last line of at most this many running tasks (the oldest),
/// cut to this many characters.
const LATEST_TASKS: usize = 8;
const LATEST_LINE_CHARS: usize = 120;

/// A running task as the heartbeat shows it.
struct Latest {
    pid: u32,
    since: Instant,
    /// Its last line of output shown on the terminal, made printable.
    last: String,
    /// Its output is grouped: shown when it ends.
    grouped: bool,
}

/// How long the writer waits between batches of events while they flow.
const BATCH_WAIT: Duration = Duration::from_millis(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// indicatif bars on a terminal.
    Bars,
    /// Plain lines (CI logs, pipes).
    Plain,
}

/// The CI system whose log this is, when it has ways to fold output and annotate a
/// run: GitHub Actions (`GITHUB_ACTIONS=true`) or GitLab CI (`GITLAB_CI=true`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ci {
    None,
    GitHub,
    GitLab,
}

impl Ci {
    pub fn detect() -> Ci {
        let is = |name: &str| std::env::var(name).is_ok_and(|v| v == "true");
        if is("GITHUB_ACTIONS") {
            Ci::GitHub
        } else if is("GITLAB_CI") {
            Ci::GitLab
        } else {
            Ci::None
        }
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub mode: Mode,
    pub quiet: bool,
    pub color: bool,
    pub heartbeat: Duration,
    /// Task lines start with `[job:label] ` (not with `--no-label`).
    pub label: bool,
    pub ci: Ci,
    /// `keep-order` jobs print their tasks in item order. A worker never does: its
    /// tasks are a share of a run whose order it cannot know.
    pub keep_order: bool,
    /// `runner worker --quiet`: the runner's own lines only (runs served, notes,
    /// errors) and the tasks that failed; no task output, starts, ends nor heartbeat.
    pub brief: bool,
}

impl Options {
    /// Bars only when stderr is a terminal and `CI` is not set; colour only on a
    /// terminal and without `NO_COLOR`.
    pub fn detect(quiet: bool) -> Options {
        use std::io::IsTerminal;
        let terminal = io::stderr().is_terminal();
        let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
        let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
        let color = terminal && !dumb && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        // Checked by the commands before anything runs (exit 2 on a bad value).
        let heartbeat = crate::cli::heartbeat().unwrap_or(crate::cli::DEFAULT_HEARTBEAT);
        Options {
            mode: if terminal && !ci && !dumb {
                Mode::Bars
            } else {
                Mode::Plain
            },
            quiet,
            color,
            heartbeat,
            label: true,
            ci: Ci::detect(),
            keep_order: false,
            brief: false,
        }
    }
}

/// Counts per job, kept by the writer for progress lines.
#[derive(Default, Clone)]
struct Count {
    total: Option<u64>,
    done: u64,
    failed: u64,
    running: u64,
    skipped: u64,
    taken: u64,
}

pub struct Writer {
    file: Arc<JobFile>,
    options: Options,
    counts: Vec<Count>,
    term: Terminal,
    /// Where a failed write to stdout is recorded (it makes the run exit 1).
    lost: Arc<LostWrites>,
    /// Plain mode: each running task's start and last line of output, for the heartbeat.
    /// Keyed by label, then pid: two tasks can share a label (equal or long items).
    latest: HashMap<Arc<str>, Vec<Latest>>,
    started: Instant,
    bars: Option<Bars>,
    /// This machine's name, to tell remote tasks apart.
    host: String,
    /// Per job: its order, when it is a `keep-order` job.
    order: Vec<Option<Order>>,
    /// Output of `keep-order` tasks waiting for the tasks before them.
    waiting: Waiting,
    /// Groups printed so far (GitLab sections are named by it).
    groups: u64,
    /// The labelled text of the last output event, its room reused by the next.
    scratch: Vec<u8>,
    /// What holds tasks back now (`Event::Waiting`).
    held: Option<String>,
    /// What the cluster's workers are doing (`Event::Cluster`), for the heartbeat.
    cluster: Option<String>,
}

/// Stdout and stderr, buffered; stdout is not written once it failed.
struct Terminal {
    out: BufWriter<io::Stdout>,
    err: BufWriter<io::Stderr>,
    out_broken: bool,
}

impl Terminal {
    fn write(&mut self, stream: Stream, text: &[u8], flush: bool) -> io::Result<()> {
        write_stream(
            stream,
            text,
            &mut self.out,
            &mut self.err,
            self.out_broken,
            flush,
        )
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = self.err.flush();
        if self.out_broken {
            return Ok(());
        }
        self.out.flush()
    }
}

/// A `keep-order` job as the writer prints it: the next task (by index) to print, the
/// tasks past it that are over, and the output of those that wait.
#[derive(Default)]
struct Order {
    next: u64,
    settled: BTreeSet<u64>,
    waiting: BTreeMap<u64, Vec<Parked>>,
}

/// A group's task label (its lines' prefix), its whole name (the group's title), and
/// when its attempt started and ended (seconds since the epoch).
type Title = (Arc<str>, Arc<str>, (u64, u64));

/// One attempt's output set aside in the [`Waiting`] file: its label, and where each
/// stream's part is.
struct Parked {
    title: Title,
    parts: Vec<(Stream, u64, u64)>,
}

/// The one temporary file that output waiting for its turn goes to (so that it is never
/// held in memory, however many tasks wait); emptied whenever nothing waits.
#[derive(Default)]
struct Waiting {
    file: Option<File>,
    len: u64,
    count: u64,
}

struct Bars {
    /// The terminal's settings before the bars, restored when they go.
    saved_termios: Option<sys::Termios>,
    multi: MultiProgress,
    overall: ProgressBar,
    jobs: Vec<Option<ProgressBar>>,
}

impl Writer {
    pub fn new(file: Arc<JobFile>, options: Options, lost: Arc<LostWrites>) -> Writer {
        let counts = file
            .jobs
            .iter()
            .map(|j| Count {
                total: if j.is_streaming() {
                    Some(1)
                } else {
                    j.items.count()
                },
                ..Count::default()
            })
            .collect();
        let bars = (options.mode == Mode::Bars).then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
            let overall = multi.add(ProgressBar::new(0));
            overall.set_style(
                ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            overall.enable_steady_tick(Duration::from_millis(100));
            Bars {
                saved_termios: sys::echoctl_off(io::stderr()),
                multi,
                overall,
                jobs: vec![None; file.jobs.len()],
            }
        });
        let order = file
            .jobs
            .iter()
            .map(|j| {
                (options.keep_order && file.output_of(j) == OutputMode::KeepOrder)
                    .then(Order::default)
            })
            .collect();
        Writer {
            counts,
            term: Terminal {
                out: BufWriter::with_capacity(64 * 1024, io::stdout()),
                err: BufWriter::with_capacity(16 * 1024, io::stderr()),
                out_broken: false,
            },
            lost,
            latest: HashMap::new(),
            started: Instant::now(),
            bars,
            host: sys::hostname(),
            order,
            waiting: Waiting::default(),
            groups: 0,
            scratch: Vec::new(),
            held: None,
            cluster: None,
            file,
            options,
        }
    }

    /// Runs `f` on the terminal with the bars (if any) cleared for the time it writes.
    fn with_terminal<R>(&mut self, f: impl FnOnce(&mut Terminal) -> R) -> R {
        let term = &mut self.term;
        match &self.bars {
            Some(bars) => bars.multi.suspend(|| f(term)),
            None => f(term),
        }
    }

    /// Runs until `Finish`, or until every sender is gone.
    ///
    /// While events flow it drains them in batches and then sleeps a few milliseconds
    /// instead of blocking on the channel: a sender only has to wake a receiver that
    /// blocks, and at thousands of tasks a second those wake-ups cost more than the
    /// printing. When nothing comes, it blocks until the next heartbeat.
    pub fn run(mut self, events: Receiver<Event>) {
        let mut next_beat = Instant::now() + self.options.heartbeat;
        loop {
            let mut drained = 0usize;
            let mut finished = None;
            while let Ok(event) = events.try_recv() {
                drained += 1;
                if let Event::Finish(summary) = event {
                    finished = Some(summary);
                    break;
                }
                self.handle(event);
            }
            if let Some(summary) = finished {
                self.update_bars();
                self.finish(&summary);
                break;
            }
            if drained > 0 {
                self.update_bars();
            }
            self.flush();
            if Instant::now() >= next_beat {
                self.heartbeat();
                next_beat = Instant::now() + self.options.heartbeat;
            }
            if drained >= events.capacity().unwrap_or(usize::MAX) / 2 {
                continue; // A flood of output: keep draining.
            }
            if drained > 0 {
                std::thread::sleep(BATCH_WAIT);
                continue;
            }
            // Bars are redrawn at least every second, so their clocks move when no
            // task starts or ends.
            let mut wait = next_beat.saturating_duration_since(Instant::now());
            if self.bars.is_some() {
                wait = wait.min(Duration::from_secs(1));
            }
            match events.recv_timeout(wait) {
                Ok(Event::Finish(summary)) => {
                    self.finish(&summary);
                    break;
                }
                Ok(event) => {
                    self.handle(event);
                    self.update_bars();
                }
                Err(RecvTimeoutError::Timeout) => {
                    if let Some(bars) = &self.bars {
                        for bar in bars.jobs.iter().flatten() {
                            bar.tick();
                        }
                    }
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        self.clear_bars();
        self.flush();
    }

    fn handle(&mut self, event: Event) {
        if self.options.brief
            && matches!(
                event,
                Event::Output { .. } | Event::LongLine { .. } | Event::Group { .. }
            )
        {
            return; // Dropped (a group's flight with it).
        }
        match event {
            Event::Output {
                stream,
                label,
                data,
            } => self.output(stream, &label, &data),
            Event::LongLine {
                stream,
                label,
                file,
                len,
            } => self.long_line(stream, &label, file, len),
            Event::Spawned {
                job,
                label,
                pid,
                attempt,
                worker,
            } => {
                // A remote task's retry: its worker ran the attempt before (only the
                // last attempt's end comes back), so it is not one more running.
                let retried_elsewhere = worker.is_some() && attempt > 1;
                if retried_elsewhere {
                    self.latest.remove(&label);
                } else {
                    self.counts[job].running += 1;
                }
                if self.options.mode == Mode::Plain {
                    let grouped = self.file.output_of(&self.file.jobs[job]).grouped();
                    self.latest.entry(label.clone()).or_default().push(Latest {
                        pid,
                        since: Instant::now(),
                        last: String::new(),
                        grouped,
                    });
                }
                if !self.options.quiet && self.options.mode == Mode::Plain {
                    let retry = if attempt > 1 {
                        format!(" attempt {attempt}")
                    } else {
                        String::new()
                    };
                    let on = worker.map(|w| format!(" on {w}")).unwrap_or_default();
                    self.note(&format!("start {label}{on} pid {pid}{retry}"));
                }
            }
            Event::Ended {
                job,
                label,
                record,
                retrying,
                took,
            } => {
                if let Some(tasks) = self.latest.get_mut(&label) {
                    tasks.retain(|t| Some(t.pid) != record.pid);
                    if tasks.is_empty() {
                        self.latest.remove(&label);
                    }
                }
                self.ended(job, &label, &record, retrying, took);
            }
            Event::Group {
                job,
                index,
                label,
                name,
                span,
                out,
                err,
                flight,
            } => {
                self.group(job, index, (label, name, span), [out, err]);
                drop(flight);
            }
            Event::Settled { job, index } => self.settled(job, index),
            Event::Skipped { job, count } => self.counts[job].skipped += count,
            Event::NotRun { job, count } => self.counts[job].done += count,
            Event::Taken { job } => self.counts[job].taken += 1,
            Event::Note(text) => self.note(&text),
            Event::Waiting(held) => {
                self.held = held;
                self.update_bars();
            }
            Event::Cluster(text) => self.cluster = Some(text),
            Event::Drain(done) => {
                self.unpark_all();
                self.flush();
                let _ = done.send(());
            }
            Event::Finish(_) => {}
        }
    }

    fn ended(
        &mut self,
        job: usize,
        label: &str,
        record: &TaskRecord,
        retrying: bool,
        took: Duration,
    ) {
        if !retrying && self.options.ci == Ci::GitHub {
            self.annotate(job, record);
        }
        let count = &mut self.counts[job];
        if record.pid.is_some() {
            count.running = count.running.saturating_sub(1);
        }
        if !retrying {
            count.done += 1;
            // The bars' "failed" counts what fails the run: not allowed failures, not
            // tasks the run itself stopped.
            if record.outcome() == Outcome::Failed {
                count.failed += 1;
            }
        }
        let failed = record.status == Status::Failed;
        if self.options.quiet && !failed {
            return;
        }
        if self.options.mode == Mode::Bars && !failed {
            return;
        }
        let word = match record.outcome() {
            Outcome::Failed => "FAIL",
            Outcome::AllowedFailure => "fail (allowed)",
            Outcome::Stopped => "stopped",
            Outcome::Succeeded
            | Outcome::Skipped
            | Outcome::DoneEarlier
            | Outcome::UpToDate
            | Outcome::Unchanged => "done",
            Outcome::Cached => "cached",
        };
        let pid = record.pid.map(|p| format!(" pid {p}")).unwrap_or_default();
        // Tasks that ran on a worker name it (`host:pid`, its consumer name); others
        // that ran on another machine say where.
        let pid = match &record.worker {
            Some(worker) if !worker.starts_with("coordinator@") => {
                format!(" on {worker}{pid}")
            }
            _ if !record.host.is_empty() && record.host != self.host => {
                format!("{pid} on {}", record.host)
            }
            _ => pid,
        };
        let retry = if retrying {
            format!(" (attempt {}, retrying)", record.attempts)
        } else if record.attempts > 1 {
            format!(" (attempt {})", record.attempts)
        } else {
            String::new()
        };
        let end = record
            .end_words()
            .map(|e| format!(" {e}"))
            .unwrap_or_default();
        let line = format!("{word} {label}{pid}{end} in {}{retry}", duration(took));
        let line = if record.outcome() == Outcome::Failed && self.options.color {
            console::style(line).red().force_styling(true).to_string()
        } else {
            line
        };
        self.note(&line);
    }

    fn output(&mut self, stream: Stream, label: &str, data: &[u8]) {
        if let Some(tasks) = self.latest.get_mut(label) {
            // The last line, and of it what a terminal would show last after a `\r`.
            let last_line = data
                .split(|&b| b == b'\n' || b == b'\r')
                .rev()
                .find(|l| !l.is_empty());
            if let Some(line) = last_line {
                let line = printable(&String::from_utf8_lossy(line), LATEST_LINE_CHARS);
                // Tasks sharing a label cannot be told apart here; each shows the line.
                for task in tasks {
                    task.last.clone_from(&line);
                }
            }
        }
        let result = if self.options.label {
            // Labelled into a buffer kept from one event to the next (no allocation, no
            // fresh pages per event); one that grew past a few pieces is given back.
            let prefix = self.prefix(label);
            let mut text = std::mem::take(&mut self.scratch);
            text.clear();
            self.labeller(&prefix).feed(data, &mut text);
            let result = self.with_terminal(|t| t.write(stream, &text, true));
            if text.capacity() <= 4 * PIECE {
                self.scratch = text;
            }
            result
        } else {
            // Nothing to add: the lines are written as they came.
            self.with_terminal(|t| t.write(stream, data, true))
        };
        if let Err(e) = result {
            self.stdout_failed(&e);
        }
    }

    /// `[job:label]`, the label made safe for the log it goes to (an item holding
    /// `##[` must not make every line of its task a workflow command).
    fn prefix(&self, label: &str) -> String {
        self.safe(&format!("[{label}]")).into_owned()
    }

    /// Text of the runner's own (notes, the summary) that may quote what tasks said
    /// (labels, last lines, file names): in GitHub Actions, `##[` is broken and a lone
    /// CR written `\r`, so that none of it is read as a workflow command. A secret's
    /// value in it is written `***` (in every mode: task output was redacted at its
    /// sink, this is the runner's own text).
    fn safe<'t>(&self, text: &'t str) -> std::borrow::Cow<'t, str> {
        match crate::secrets::redact(text) {
            std::borrow::Cow::Borrowed(text) => self.workflow_safe(text),
            std::borrow::Cow::Owned(text) => {
                std::borrow::Cow::Owned(self.workflow_safe(&text).into_owned())
            }
        }
    }

    fn workflow_safe<'t>(&self, text: &'t str) -> std::borrow::Cow<'t, str> {
        if self.options.ci != Ci::GitHub || !(text.contains("##[") || text.contains('\r')) {
            return std::borrow::Cow::Borrowed(text);
        }
        let mut out = String::with_capacity(text.len() + 8);
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\r' if chars.peek() != Some(&'\n') => out.push_str("\\r"),
                '[' if out.ends_with("##") => out.push_str("\u{200B}["),
                c => out.push(c),
            }
        }
        std::borrow::Cow::Owned(out)
    }

    /// What puts the label before each line of a task's output (nothing with
    /// `--no-label`).
    fn labeller<'p>(&self, prefix: &'p str) -> Labeller<'p> {
        Labeller::new(
            self.options.label.then_some(prefix.as_bytes()),
            self.options.ci == Ci::GitHub,
        )
    }

    /// One line too long to have come in memory: copied from its file in pieces, all
    /// within this one call, so no other output falls inside it.
    fn long_line(&mut self, stream: Stream, label: &str, mut file: File, len: u64) {
        if let Some(tasks) = self.latest.get_mut(label) {
            let shown = format!("(a line of {len} bytes)");
            for task in tasks {
                task.last.clone_from(&shown);
            }
        }
        let prefix = self.prefix(label);
        let mut labeller = self.labeller(&prefix);
        let result = self.with_terminal(|t| -> io::Result<()> {
            let mut buf = vec![0u8; PIECE];
            let mut text = Vec::with_capacity(PIECE + 64);
            let mut left = len;
            // A temporary file that cannot be read back ends the line short; the newline
            // still comes, so the next line is not joined to it.
            let _ = file.rewind();
            while left > 0 {
                let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                let n = match file.read(&mut buf[..want]) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                text.clear();
                labeller.feed(&buf[..n], &mut text);
                t.write(stream, &text, false)?;
                left -= n as u64;
            }
            text.clear();
            labeller.feed(b"\n", &mut text);
            t.write(stream, &text, true)
        });
        if let Err(e) = result {
            self.stdout_failed(&e);
        }
    }

    /// An attempt's grouped output. A task of a `keep-order` job waits (set aside on
    /// disk) until every task before it is over.
    fn group(&mut self, job: usize, index: u64, title: Title, parts: [Option<Held>; 2]) {
        let label = title.0.clone();
        for held in parts.iter().flatten() {
            if let Some(error) = held.error() {
                let message = format!("output of {label} was lost: {error}");
                if let Some(message) = self.lost.record(Kind::Stdout, || message) {
                    self.note(&message);
                }
            }
        }
        let [out, err] = parts;
        let parts = [(Stream::Stdout, out), (Stream::Stderr, err)];
        let waits = self
            .order
            .get(job)
            .and_then(Option::as_ref)
            .is_some_and(|order| index > order.next);
        if waits {
            if let Err(e) = self.waiting_file() {
                let message = format!(
                    "keep-order: cannot set output aside (temporary file: {e}); {label} is printed out of order"
                );
                self.note(&message);
            } else {
                let parked = self.park(parts);
                if let Some(order) = self.order[job].as_mut() {
                    let parked = Parked {
                        title,
                        parts: parked,
                    };
                    order.waiting.entry(index).or_default().push(parked);
                    self.waiting.count += 1;
                }
                return;
            }
        }
        self.print_group(&title, parts);
    }

    /// The file output waiting for its turn goes to, made on first use.
    fn waiting_file(&mut self) -> io::Result<()> {
        if self.waiting.file.is_none() {
            self.waiting.file = Some(tempfile::tempfile()?);
        }
        Ok(())
    }

    /// Copies an attempt's output to the waiting file: where each part is. A part that
    /// cannot be copied is a lost write, said once.
    fn park(&mut self, parts: [(Stream, Option<Held>); 2]) -> Vec<(Stream, u64, u64)> {
        let mut parked = Vec::new();
        for (stream, held) in parts {
            let Some(held) = held else { continue };
            let start = self.waiting.len;
            let copied = (|| -> io::Result<u64> {
                let file = self.waiting.file.as_mut().ok_or(io::ErrorKind::NotFound)?;
                file.seek(SeekFrom::Start(start))?;
                io::copy(&mut held.into_reader()?, file)
            })();
            match copied {
                Ok(n) => {
                    self.waiting.len += n;
                    parked.push((stream, start, n));
                }
                Err(e) => {
                    let message = format!("output set aside for keep-order was lost: {e}");
                    if let Some(message) = self.lost.record(Kind::Stdout, || message) {
                        self.note(&message);
                    }
                }
            }
        }
        parked
    }

    /// A task of a `keep-order` job is over: the tasks after it that are over too print.
    fn settled(&mut self, job: usize, index: u64) {
        let Some(order) = self.order.get_mut(job).and_then(Option::as_mut) else {
            return;
        };
        if index < order.next {
            return;
        }
        order.settled.insert(index);
        loop {
            let Some(order) = self.order[job].as_mut() else {
                return;
            };
            if !order.settled.remove(&order.next) {
                return;
            }
            order.next += 1;
            let ready = order.waiting.remove(&order.next).unwrap_or_default();
            for parked in ready {
                self.unpark(parked);
            }
        }
    }

    /// Prints output that waited, and empties the waiting file once nothing waits.
    fn unpark(&mut self, parked: Parked) {
        let parts = parked
            .parts
            .iter()
            .map(|&(stream, start, len)| {
                let file = match &self.waiting.file {
                    Some(f) => f.try_clone(),
                    None => Err(io::ErrorKind::NotFound.into()),
                };
                let slice = file.map(|file| {
                    Box::new(Slice {
                        file,
                        at: start,
                        end: start + len,
                    }) as Box<dyn Read>
                });
                (stream, slice)
            })
            .collect();
        self.print_parts(&parked.title, parts);
        // Its space is given back at once: the file's disk use follows what waits, not
        // all the job printed (the holes read as zeros, and nothing reads them again).
        if let Some(file) = &self.waiting.file {
            for &(_, start, len) in &parked.parts {
                sys::punch_hole(file, start, len);
            }
        }
        self.waiting.count = self.waiting.count.saturating_sub(1);
        if self.waiting.count == 0 && self.waiting.len > 0 {
            if let Some(file) = &self.waiting.file {
                let _ = file.set_len(0);
            }
            self.waiting.len = 0;
        }
    }

    /// The end of the run: whatever still waits is printed, each job's in item order.
    fn unpark_all(&mut self) {
        for job in 0..self.order.len() {
            let waiting = match self.order[job].as_mut() {
                Some(order) => std::mem::take(&mut order.waiting),
                None => continue,
            };
            for parked in waiting.into_values().flatten() {
                self.unpark(parked);
            }
        }
    }

    fn print_group(&mut self, title: &Title, parts: [(Stream, Option<Held>); 2]) {
        let parts = parts
            .into_iter()
            .filter_map(|(stream, held)| {
                let reader = held?.into_reader().map(|r| r as Box<dyn Read>);
                Some((stream, reader))
            })
            .collect();
        self.print_parts(title, parts);
    }

    /// Prints one group in one piece: in a CI log, between its folding markers, and
    /// all of it on stdout — the GitHub Actions runner reads stdout and stderr apart and
    /// hands on each batch's stderr lines first, so a group split across the two would
    /// come apart; elsewhere stdout's part to stdout and stderr's to stderr.
    fn print_parts(&mut self, title: &Title, parts: Vec<(Stream, io::Result<Box<dyn Read>>)>) {
        let (label, (started, ended)) = (&*title.0, title.2);
        // The title names the task whole (a label is cut at 40 characters), on one line.
        let name = titled(&title.1);
        self.groups += 1;
        let ci = self.options.ci;
        let prefix = self.prefix(label);
        let labellers: Vec<Labeller<'_>> = parts.iter().map(|_| self.labeller(&prefix)).collect();
        let section = format!("runner_{}", self.groups);
        let group_line = self
            .safe(&format!("::group::{}\n", github_data(&name)))
            .into_owned();
        // A part that cannot be read back (its temporary file) is lost, and said.
        let mut unread: Option<io::Error> = None;
        let result = self.with_terminal(|t| -> io::Result<()> {
            match ci {
                Ci::GitHub => {
                    t.write(Stream::Stdout, group_line.as_bytes(), false)?;
                }
                Ci::GitLab => {
                    let line = format!(
                        "\x1b[0Ksection_start:{started}:{section}[collapsed=true]\r\x1b[0K{name}\n"
                    );
                    t.write(Stream::Stdout, line.as_bytes(), false)?;
                }
                Ci::None => {}
            }
            let mut buf = vec![0u8; PIECE];
            let mut text = Vec::with_capacity(PIECE + 64);
            for ((stream, reader), mut labeller) in parts.into_iter().zip(labellers) {
                let mut reader = match reader {
                    Ok(reader) => reader,
                    Err(e) => {
                        unread.get_or_insert(e);
                        continue;
                    }
                };
                let stream = if ci == Ci::None {
                    stream
                } else {
                    Stream::Stdout
                };
                loop {
                    let n = match reader.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) => {
                            unread.get_or_insert(e);
                            break;
                        }
                    };
                    text.clear();
                    labeller.feed(&buf[..n], &mut text);
                    t.write(stream, &text, false)?;
                }
                // A part cut short still ends its line: nothing is glued to it (in
                // GitHub Actions, the end of the group).
                if !labeller.at_start {
                    t.write(stream, b"\n", false)?;
                }
                // Each stream's part is out before the next one starts.
                t.flush()?;
            }
            match ci {
                Ci::GitHub => t.write(Stream::Stdout, b"::endgroup::\n", false)?,
                Ci::GitLab => {
                    let line = format!("\x1b[0Ksection_end:{ended}:{section}\r\x1b[0K\n");
                    t.write(Stream::Stdout, line.as_bytes(), false)?;
                }
                Ci::None => {}
            }
            t.flush()
        });
        if let Err(e) = result {
            self.stdout_failed(&e);
        }
        if let Some(e) = unread {
            let message = format!("output of {label} was lost: its temporary file: {e}");
            if let Some(message) = self.lost.record(Kind::Stdout, || message) {
                self.note(&message);
            }
        }
    }

    /// GitHub Actions: an annotation for a failed task, titled with its whole name, with
    /// its end and its last line of stderr (or stdout), escaped as workflow commands
    /// require and with `##[` broken like every line of the runner's own.
    fn annotate(&mut self, job: usize, record: &TaskRecord) {
        let name = titled(&crate::task::name(&self.file.jobs[job], &record.item));
        let (command, title) = match record.outcome() {
            Outcome::Failed => ("error", format!("{} failed", github_title(&name))),
            Outcome::AllowedFailure => (
                "warning",
                format!("{} failed (allowed)", github_title(&name)),
            ),
            _ => return,
        };
        let end = record.end.as_ref().map(describe_end).unwrap_or_default();
        let last = record.last_line();
        let message = match last {
            Some(line) => format!("{end}: {line}"),
            None => end,
        };
        let line = format!("::{command} title={title}::{}\n", github_data(&message));
        let line = self.safe(&line).into_owned();
        let result = self.with_terminal(|t| t.write(Stream::Stdout, line.as_bytes(), true));
        if let Err(e) = result {
            self.stdout_failed(&e);
        }
    }

    /// Stdout cannot be written: stop writing it. A reader that went away (`| head`)
    /// is the user's choice; anything else (a full disk) is a lost write, said once.
    fn stdout_failed(&mut self, e: &io::Error) {
        self.term.out_broken = true;
        if e.kind() == io::ErrorKind::BrokenPipe {
            return;
        }
        if let Some(message) = self
            .lost
            .record(Kind::Stdout, || format!("cannot write to stdout: {e}"))
        {
            self.note(&message);
        }
    }

    fn note(&mut self, text: &str) {
        // A note is one line: in GitHub Actions a line feed inside it (a file name's,
        // say) must not start a line of its own.
        let text = match self.options.ci {
            Ci::GitHub if text.contains('\n') => text.replace('\n', "\\n"),
            _ => text.to_string(),
        };
        let line = format!("[runner] {}\n", self.safe(&text));
        let bars = self.bars.is_some();
        self.with_terminal(|t| {
            let _ = t.err.write_all(line.as_bytes());
            if bars {
                let _ = t.err.flush();
            }
        });
    }

    fn heartbeat(&mut self) {
        if self.options.mode != Mode::Plain || self.options.brief {
            return;
        }
        let running: Vec<String> = self
            .file
            .jobs
            .iter()
            .zip(&self.counts)
            .filter(|(_, c)| c.running > 0)
            .map(|(j, c)| format!("{} ({})", j.name, c.running))
            .collect();
        if running.is_empty() && self.held.is_none() && self.cluster.is_none() {
            return;
        }
        let done: u64 = self.counts.iter().map(|c| c.done).sum();
        let total = self.total_label();
        let n: u64 = self.counts.iter().map(|c| c.running).sum();
        let mut waiting = match &self.held {
            Some(held) => format!(" — waiting: {held}"),
            None => String::new(),
        };
        if let Some(cluster) = &self.cluster {
            waiting.push_str(&format!(" — {cluster}"));
        }
        let list = match running.is_empty() {
            true => String::new(),
            false => format!(": {}", running.join(", ")),
        };
        let line = format!(
            "{done}/{total} done, {n} running{list}{waiting} — {} elapsed",
            duration(self.started.elapsed())
        );
        self.note(&line);
        // What each running task said last, so that a long step never looks dead.
        let mut latest: Vec<(&Arc<str>, &Latest)> = self
            .latest
            .iter()
            .flat_map(|(label, tasks)| tasks.iter().map(move |t| (label, t)))
            .collect();
        latest.sort_by_key(|(_, t)| t.since);
        let lines: Vec<String> = latest
            .iter()
            .take(LATEST_TASKS)
            .map(|(label, t)| {
                let running = duration(t.since.elapsed());
                if t.last.is_empty() && t.grouped {
                    format!("  {label} ({running}): output grouped, shown when it ends")
                } else if t.last.is_empty() {
                    // Held back by --quiet, or sent to a queue, or nothing printed at all.
                    format!("  {label} ({running}): nothing shown yet")
                } else {
                    format!("  {label} ({running}): {}", t.last)
                }
            })
            .collect();
        for line in lines {
            self.note(&line);
        }
    }

    fn total_label(&self) -> String {
        let mut total = 0;
        for c in &self.counts {
            match c.total {
                Some(t) => total += t,
                None => return format!("{}+", total + c.taken),
            }
        }
        total.to_string()
    }

    fn update_bars(&mut self) {
        let Some(bars) = &mut self.bars else { return };
        let done: u64 = self.counts.iter().map(|c| c.done).sum();
        let failed: u64 = self.counts.iter().map(|c| c.failed).sum();
        let running: u64 = self.counts.iter().map(|c| c.running).sum();
        let mut total = 0;
        let mut open = false;
        for c in &self.counts {
            match c.total {
                Some(t) => total += t,
                None => {
                    total += c.taken;
                    open = true;
                }
            }
        }
        let mut waiting = match &self.held {
            Some(held) => format!(" — waiting: {held}"),
            None => String::new(),
        };
        if let Some(cluster) = &self.cluster {
            waiting.push_str(&format!(" — {cluster}"));
        }
        bars.overall.set_message(format!(
            "{done}/{total}{} tasks done, {failed} failed, {running} running{waiting}",
            if open { "+" } else { "" }
        ));
        let rows = console::Term::stderr().size().0.max(4) as usize;
        let mut shown = 0;
        for (j, c) in self.counts.iter().enumerate() {
            let active =
                c.running > 0 || (c.done > 0 && c.total.is_none_or(|t| c.done + c.skipped < t));
            if active && shown + 2 < rows {
                shown += 1;
                let bar = bars.jobs[j].get_or_insert_with(|| {
                    let bar = bars.multi.add(ProgressBar::new(c.total.unwrap_or(0)));
                    let template = if c.total.is_some() {
                        "  {prefix:<16} [{bar:30}] {pos}/{len} {msg}, {elapsed}"
                    } else {
                        "  {prefix:<16} {pos} items taken, {msg}, {elapsed}"
                    };
                    bar.set_style(
                        ProgressStyle::with_template(template)
                            .unwrap_or_else(|_| ProgressStyle::default_bar())
                            .progress_chars("=> "),
                    );
                    bar.set_prefix(self.file.jobs[j].name.clone());
                    bar
                });
                bar.set_position(if c.total.is_some() { c.done } else { c.taken });
                bar.set_message(format!("{} running, {} failed", c.running, c.failed));
            } else if let Some(bar) = bars.jobs[j].take() {
                // Finished jobs collapse: their counts live on in the overall line.
                bar.finish_and_clear();
                bars.multi.remove(&bar);
            }
        }
    }

    fn clear_bars(&mut self) {
        if let Some(bars) = self.bars.take() {
            for bar in bars.jobs.into_iter().flatten() {
                bar.finish_and_clear();
            }
            bars.overall.finish_and_clear();
            let _ = bars.multi.clear();
            if let Some(saved) = &bars.saved_termios {
                sys::restore_terminal(io::stderr(), saved);
            }
        }
    }

    /// The last words: what still waits is printed, task output is flushed (so that a
    /// failure to write it is said before the summary), then the summary.
    fn finish(&mut self, summary: &str) {
        self.unpark_all();
        self.clear_bars();
        self.flush();
        let summary = self.safe(summary).into_owned();
        let _ = self.term.err.write_all(summary.as_bytes());
    }

    fn flush(&mut self) {
        if !self.term.out_broken {
            if let Err(e) = self.term.out.flush() {
                self.stdout_failed(&e);
            }
        }
        let _ = self.term.err.flush();
    }
}

/// Writes task output to its stream; an error is stdout's (stderr is where errors are
/// said, so there is nowhere to say its own). Stdout is not written once it failed.
fn write_stream(
    stream: Stream,
    text: &[u8],
    out: &mut BufWriter<io::Stdout>,
    err: &mut BufWriter<io::Stderr>,
    out_broken: bool,
    flush: bool,
) -> io::Result<()> {
    match stream {
        Stream::Stdout if out_broken => Ok(()),
        Stream::Stdout => {
            out.write_all(text)?;
            if flush {
                out.flush()?;
            }
            Ok(())
        }
        Stream::Stderr => {
            let _ = err.write_all(text);
            if flush {
                let _ = err.flush();
            }
            Ok(())
        }
    }
}

/// Puts the `[job:label] ` prefix before each line of a task's output as it passes in
/// pieces (a piece may end mid-line); an empty line gets the label alone.
///
/// In GitHub Actions it also keeps a labelled line from being read as a workflow
/// command. The Actions runner takes a line starting with `::` as a command (the label
/// comes first, so that is covered), but also `##[` anywhere in a line (the legacy
/// form), and it ends lines at a lone CR too. So there `##[` is written with a zero-width
/// space after `##`, and a lone CR starts a new labelled line.
struct Labeller<'p> {
    prefix: Option<&'p [u8]>,
    github: bool,
    at_start: bool,
    /// `#`s just passed on this line (at most 2 counted).
    hashes: u8,
    after_cr: bool,
}

impl<'p> Labeller<'p> {
    fn new(prefix: Option<&'p [u8]>, github: bool) -> Labeller<'p> {
        Labeller {
            prefix,
            github,
            at_start: true,
            hashes: 0,
            after_cr: false,
        }
    }

    fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) {
        let Some(prefix) = self.prefix else {
            out.extend_from_slice(data);
            if let Some(&last) = data.last() {
                self.at_start = last == b'\n';
            }
            return;
        };
        if !self.github {
            // Line ends found by memchr (the hot path of a task that prints a flood of
            // short lines); room made once for the piece and a good share of prefixes.
            out.reserve(data.len() + data.len() / 4 + prefix.len() + 1);
            let mut start = 0;
            let ends = memchr::memchr_iter(b'\n', data).map(|i| i + 1);
            for end in ends.chain((!data.is_empty()).then_some(data.len())) {
                if end <= start {
                    continue;
                }
                let line = &data[start..end];
                start = end;
                if self.at_start {
                    out.extend_from_slice(prefix);
                    if line[0] != b'\n' {
                        out.push(b' ');
                    }
                }
                out.extend_from_slice(line);
                self.at_start = line[line.len() - 1] == b'\n';
            }
            return;
        }
        for &b in data {
            if std::mem::take(&mut self.after_cr) && b != b'\n' {
                out.extend_from_slice(prefix);
                out.push(b' ');
                self.hashes = 0;
            }
            if self.at_start {
                out.extend_from_slice(prefix);
                if b != b'\n' {
                    out.push(b' ');
                }
                self.at_start = false;
                self.hashes = 0;
            }
            // (The Actions runner's search for `##[` is culture-aware and skips the
            // zero-width space, so it still finds a `##[`; what follows it then reads
            // as the command `[name`, which is no command. Either way, nothing runs.)
            if b == b'[' && self.hashes >= 2 {
                out.extend_from_slice("\u{200B}".as_bytes());
            }
            out.push(b);
            self.hashes = if b == b'#' {
                (self.hashes + 1).min(2)
            } else {
                0
            };
            match b {
                b'\n' => self.at_start = true,
                b'\r' => self.after_cr = true,
                _ => {}
            }
        }
    }
}

/// Text after a workflow command's `::`: `%`, CR and LF escaped.
fn github_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// A property value of a workflow command: also `:` and `,` escaped.
fn github_property(text: &str) -> String {
    github_data(text).replace(':', "%3A").replace(',', "%2C")
}

/// `title=` of a task's annotation: `JOB:LABEL`, the job's colon kept (a job name holds
/// neither `:` nor `,`), the item's escaped.
fn github_title(label: &str) -> String {
    match label.split_once(':') {
        Some((job, item)) => format!("{job}:{}", github_property(item)),
        None => github_property(label),
    }
}

/// A part of the waiting file, read at its own offset (clones of a file share theirs).
struct Slice {
    file: File,
    at: u64,
    end: u64,
}

impl Read for Slice {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let want = buf
            .len()
            .min(usize::try_from(self.end - self.at).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod labeller_tests {
    use super::Labeller;

    /// The labelled text of `data` fed in pieces cut at every `step` bytes.
    fn labelled(data: &[u8], step: usize, github: bool) -> Vec<u8> {
        let mut labeller = Labeller::new(Some(b"[j:a]"), github);
        let mut out = Vec::new();
        for piece in data.chunks(step) {
            labeller.feed(piece, &mut out);
        }
        out
    }

    #[test]
    fn every_line_gets_the_label_however_the_pieces_are_cut() {
        let data = b"one\n\ntwo words\nthree";
        let want = b"[j:a] one\n[j:a]\n[j:a] two words\n[j:a] three".to_vec();
        for step in 1..=data.len() {
            assert_eq!(labelled(data, step, false), want, "pieces of {step}");
            assert_eq!(labelled(data, step, true), want, "pieces of {step}, GitHub");
        }
    }
}
