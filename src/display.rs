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

use crate::jobfile::JobFile;
use crate::lost::{Kind, LostWrites};
use crate::sys;
use crate::task::{describe_end, duration, printable, Event, Outcome, Status, Stream, TaskRecord};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, Write};
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
}

/// A long line is copied from its file in pieces of this size.
const PIECE: usize = 64 * 1024;

/// How long the writer waits between batches of events while they flow.
const BATCH_WAIT: Duration = Duration::from_millis(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// indicatif bars on a terminal.
    Bars,
    /// Plain lines (CI logs, pipes).
    Plain,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub mode: Mode,
    pub quiet: bool,
    pub color: bool,
    pub heartbeat: Duration,
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
    out: BufWriter<io::Stdout>,
    err: BufWriter<io::Stderr>,
    out_broken: bool,
    /// Where a failed write to stdout is recorded (it makes the run exit 1).
    lost: Arc<LostWrites>,
    /// Plain mode: each running task's start and last line of output, for the heartbeat.
    /// Keyed by label, then pid: two tasks can share a label (equal or long items).
    latest: HashMap<Arc<str>, Vec<Latest>>,
    started: Instant,
    bars: Option<Bars>,
    /// This machine's name, to tell remote tasks apart.
    host: String,
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
        Writer {
            file,
            options,
            counts,
            out: BufWriter::with_capacity(64 * 1024, io::stdout()),
            err: BufWriter::with_capacity(16 * 1024, io::stderr()),
            out_broken: false,
            lost,
            latest: HashMap::new(),
            started: Instant::now(),
            bars,
            host: sys::hostname(),
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
            } => {
                self.counts[job].running += 1;
                if self.options.mode == Mode::Plain {
                    self.latest.entry(label.clone()).or_default().push(Latest {
                        pid,
                        since: Instant::now(),
                        last: String::new(),
                    });
                }
                if !self.options.quiet && self.options.mode == Mode::Plain {
                    let retry = if attempt > 1 {
                        format!(" attempt {attempt}")
                    } else {
                        String::new()
                    };
                    self.note(&format!("start {label} pid {pid}{retry}"));
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
            Event::Skipped { job, count } => self.counts[job].skipped += count,
            Event::NotRun { job, count } => self.counts[job].done += count,
            Event::Taken { job } => self.counts[job].taken += 1,
            Event::Note(text) => self.note(&text),
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
            Outcome::Succeeded | Outcome::Skipped | Outcome::DoneEarlier | Outcome::UpToDate => {
                "done"
            }
        };
        let pid = record.pid.map(|p| format!(" pid {p}")).unwrap_or_default();
        // Tasks that ran on another machine say where.
        let pid = if !record.host.is_empty() && record.host != self.host {
            format!("{pid} on {}", record.host)
        } else {
            pid
        };
        let retry = if retrying {
            format!(" (attempt {}, retrying)", record.attempts)
        } else if record.attempts > 1 {
            format!(" (attempt {})", record.attempts)
        } else {
            String::new()
        };
        let end = record.end.as_ref().map(describe_end).unwrap_or_default();
        let line = format!("{word} {label}{pid} {end} in {}{retry}", duration(took));
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
        let prefix = format!("[{label}]");
        let mut text = Vec::with_capacity(data.len() + 64);
        for line in data.split_inclusive(|&b| b == b'\n') {
            text.extend_from_slice(prefix.as_bytes());
            // An empty line gets the label alone, with no trailing space.
            if line != b"\n" {
                text.push(b' ');
            }
            text.extend_from_slice(line);
        }
        let result = if let Some(bars) = &self.bars {
            let (out, err, broken) = (&mut self.out, &mut self.err, self.out_broken);
            bars.multi
                .suspend(|| write_stream(stream, &text, out, err, broken, true))
        } else {
            write_stream(
                stream,
                &text,
                &mut self.out,
                &mut self.err,
                self.out_broken,
                false,
            )
        };
        if let Err(e) = result {
            self.stdout_failed(&e);
        }
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
        let prefix = format!("[{label}] ");
        let (out, err, broken) = (&mut self.out, &mut self.err, self.out_broken);
        let mut copy = || -> io::Result<()> {
            write_stream(stream, prefix.as_bytes(), out, err, broken, false)?;
            let mut buf = vec![0u8; PIECE];
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
                write_stream(stream, &buf[..n], out, err, broken, false)?;
                left -= n as u64;
            }
            write_stream(stream, b"\n", out, err, broken, true)
        };
        let result = match &self.bars {
            Some(bars) => bars.multi.suspend(copy),
            None => copy(),
        };
        if let Err(e) = result {
            self.stdout_failed(&e);
        }
    }

    /// Stdout cannot be written: stop writing it. A reader that went away (`| head`)
    /// is the user's choice; anything else (a full disk) is a lost write, said once.
    fn stdout_failed(&mut self, e: &io::Error) {
        self.out_broken = true;
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
        let line = format!("[runner] {text}\n");
        if let Some(bars) = &self.bars {
            let err = &mut self.err;
            bars.multi.suspend(|| {
                let _ = err.write_all(line.as_bytes());
                let _ = err.flush();
            });
        } else {
            let _ = self.err.write_all(line.as_bytes());
        }
    }

    fn heartbeat(&mut self) {
        if self.options.mode != Mode::Plain {
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
        if running.is_empty() {
            return;
        }
        let done: u64 = self.counts.iter().map(|c| c.done).sum();
        let total = self.total_label();
        let n: u64 = self.counts.iter().map(|c| c.running).sum();
        let line = format!(
            "{done}/{total} done, {n} running: {} — {} elapsed",
            running.join(", "),
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
                if t.last.is_empty() {
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
        bars.overall.set_message(format!(
            "{done}/{total}{} tasks done, {failed} failed, {running} running",
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

    /// The last words: task output is flushed first (so that a failure to write it is
    /// said before the summary), then the summary.
    fn finish(&mut self, summary: &str) {
        self.clear_bars();
        self.flush();
        let _ = self.err.write_all(summary.as_bytes());
    }

    fn flush(&mut self) {
        if !self.out_broken {
            if let Err(e) = self.out.flush() {
                self.stdout_failed(&e);
            }
        }
        let _ = self.err.flush();
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
