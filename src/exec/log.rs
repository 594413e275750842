//! A task's log file (`--logs DIR`): created when the task's process has started (a
//! task that never started has no files), appended to by retries. A write that fails is
//! a lost write (`lost.rs`): said once, counted, and the file is not written further;
//! the task itself goes on.

use crate::lost::{Kind, LostWrites};
use crate::task::Event;
use crossbeam_channel::Sender;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A task's log file (`--logs`). A write that fails is a lost write (see `lost.rs`):
/// said once, counted, and the file is not written further; the task goes on.
pub struct Log {
    path: PathBuf,
    /// A retry appends to its first attempt's file.
    append: bool,
    file: Option<File>,
    opened: bool,
    lost: Arc<LostWrites>,
    events: Sender<Event>,
}

impl Log {
    pub fn new(path: PathBuf, append: bool, lost: Arc<LostWrites>, events: Sender<Event>) -> Log {
        Log {
            path,
            append,
            file: None,
            opened: false,
            lost,
            events,
        }
    }

    /// Its path, once the process started and it was opened (or tried to be).
    pub fn opened_path(&self) -> Option<&Path> {
        self.opened.then_some(self.path.as_path())
    }

    pub(super) fn open(&mut self) {
        self.opened = true;
        let opened = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(self.append)
            .truncate(!self.append)
            .open(&self.path);
        match opened {
            Ok(file) => self.file = Some(file),
            Err(e) => self.lose(&e),
        }
    }

    pub(super) fn write(&mut self, data: &[u8]) {
        if let Some(file) = &mut self.file {
            if let Err(e) = file.write_all(data) {
                self.lose(&e);
            }
        }
    }

    pub(super) fn flush(&mut self) {
        if let Some(file) = &mut self.file {
            if let Err(e) = file.flush() {
                self.lose(&e);
            }
        }
    }

    fn lose(&mut self, e: &std::io::Error) {
        self.file = None;
        let path = &self.path;
        if let Some(message) = self.lost.record(Kind::Logs, || {
            format!("cannot write {}: {e}", path.display())
        }) {
            let _ = self.events.send(Event::Note(message));
        }
    }
}
