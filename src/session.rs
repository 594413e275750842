//! What every driver of tasks shares, set up and torn down in one place: the signal
//! listener, the terminal writer thread, the run-wide stop switch, and the [`Context`]
//! the tasks run in. `run` (local and `--broker`) and `runner worker` both drive their
//! tasks through a `Session`.
//!
//! Invariant: the terminal writer is the only writer of stdout and stderr while a
//! session lives; `finish` prints the last words (the summary) through it and waits for
//! it, so nothing is printed after the process is told to exit.

use crate::display;
use crate::error::Error;
use crate::exec::control::Control;
use crate::exec::{Context, Mode};
use crate::jobfile::JobFile;
use crate::lost::LostWrites;
use crate::queue::Queue;
use crate::signals::{self, Interrupt};
use crate::task::Event;
use crossbeam_channel::{Receiver, Sender};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

pub struct Session {
    pub file: Arc<JobFile>,
    pub control: Arc<Control>,
    /// To the terminal writer; at most 64 events wait (see ARCHITECTURE.md, memory).
    pub events: Sender<Event>,
    /// SIGINT, SIGTERM and SIGHUP, in order of arrival.
    pub signals: Receiver<Interrupt>,
    /// This machine's name.
    pub host: String,
    /// Output, logs and reports the user asked for that could not be written.
    pub lost: Arc<LostWrites>,
    writer: Option<JoinHandle<()>>,
}

impl Session {
    /// Starts listening for signals and starts the terminal writer.
    pub fn start(
        file: Arc<JobFile>,
        display: display::Options,
        grace: Duration,
    ) -> Result<Session, Error> {
        let signals = signals::listen().map_err(Error::system("listen for signals"))?;
        let control = Arc::new(Control::start(grace).map_err(Error::system("set up the run"))?);
        let (events, events_rx) = crossbeam_channel::bounded::<Event>(64);
        let lost = Arc::new(LostWrites::default());
        let writer = display::Writer::new(file.clone(), display, lost.clone());
        let writer = std::thread::Builder::new()
            .name("terminal".into())
            .spawn(move || writer.run(events_rx))
            .map_err(Error::system("start the terminal writer"))?;
        Ok(Session {
            file,
            control,
            events,
            signals,
            host: crate::sys::hostname(),
            lost,
            writer: Some(writer),
        })
    }

    /// Prints a message of the runner's own (`[runner] …` on stderr).
    pub fn say(&self, text: impl Into<String>) {
        let _ = self.events.send(Event::Note(text.into()));
    }

    /// The context for tasks of run `run_id`.
    pub fn context(
        &self,
        run_id: &str,
        queues: Vec<Arc<Queue>>,
        mode: Mode,
        logs: Option<PathBuf>,
    ) -> Context {
        Context {
            file: self.file.clone(),
            queues,
            control: self.control.clone(),
            events: self.events.clone(),
            mode,
            logs,
            run_id: run_id.to_string(),
            host: self.host.clone(),
            lost: self.lost.clone(),
            journal: None,
            memory: None,
            cache: None,
            services: None,
            remote: None,
        }
    }

    /// For a driver without an event loop of its own (the worker): the first signal sets
    /// `stop` and asks the running tasks to stop (TERM, grace, KILL), a second one kills
    /// them at once. The returned cell holds the first signal once it came.
    #[cfg_attr(not(feature = "distributed"), allow(dead_code))]
    pub fn relay_signals(&self, stop: Arc<AtomicBool>) -> Result<Arc<OnceLock<Interrupt>>, Error> {
        let first = Arc::new(OnceLock::new());
        let (signals, control, seen) = (self.signals.clone(), self.control.clone(), first.clone());
        std::thread::Builder::new()
            .name("signal-relay".into())
            .spawn(move || {
                for signal in signals {
                    if seen.set(signal).is_ok() {
                        stop.store(true, Ordering::SeqCst);
                        control.stop();
                    } else {
                        control.kill();
                    }
                }
            })
            .map_err(Error::system("start a thread"))?;
        Ok(first)
    }

    /// Prints `last_words` (the summary, or nothing) after everything sent before, and
    /// waits for the terminal writer to end.
    pub fn finish(mut self, last_words: String) {
        self.end(last_words);
    }

    fn end(&mut self, last_words: String) {
        if let Some(writer) = self.writer.take() {
            let _ = self.events.send(Event::Finish(last_words));
            let _ = writer.join();
        }
    }
}

impl Drop for Session {
    /// A session left on an error path still ends its writer, so what was sent is printed.
    fn drop(&mut self) {
        self.end(String::new());
    }
}
