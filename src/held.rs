//! Output held back until a task's attempt ends (`--quiet`, grouped output): whole
//! lines, in memory up to 64 KiB, then in an unnamed temporary file, so that a task
//! printing a gigabyte costs the runner disk, not memory. Read back in pieces by the
//! terminal writer.

use std::fs::File;
use std::io::{self, Read, Seek, Write};

/// The most temporary files of grouped output on their way to the terminal writer
/// (in `Event::Group`s not yet printed): a slot thread with more to send waits
/// ([`board`]), so a slow stdout cannot make the runner run out of descriptors
/// (`fds::RESERVE` counts these).
pub const FLIGHT: usize = 16;

static IN_FLIGHT: std::sync::Mutex<usize> = std::sync::Mutex::new(0);
static LANDED: std::sync::Condvar = std::sync::Condvar::new();

/// Before sending output holding `files` temporary files to the writer: waits until
/// there is room for them (or nothing else is in flight), then counts them.
pub fn board(files: usize) {
    if files == 0 {
        return;
    }
    let mut in_flight = IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner());
    while *in_flight > 0 && *in_flight + files > FLIGHT {
        in_flight = LANDED.wait(in_flight).unwrap_or_else(|e| e.into_inner());
    }
    *in_flight += files;
}

/// The writer took output holding `files` temporary files off the channel and is done
/// with them.
pub fn landed(files: usize) {
    if files == 0 {
        return;
    }
    let mut in_flight = IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner());
    *in_flight = in_flight.saturating_sub(files);
    LANDED.notify_all();
}

/// Held in memory up to this many bytes; past it, in a temporary file. Also the size
/// of the pieces it is read back in.
pub const PIECE: usize = 64 * 1024;

/// Output held back (`--quiet`, grouped output): in memory, then in an unnamed
/// temporary file once it grows past [`PIECE`]. Whole lines only.
#[derive(Default)]
pub struct Held {
    memory: Vec<u8>,
    file: Option<File>,
    len: u64,
    /// Why some of it could not be kept (the temporary file failed).
    error: Option<String>,
}

impl Held {
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// It holds a temporary file (it grew past [`PIECE`]).
    pub fn has_file(&self) -> bool {
        self.file.is_some()
    }

    /// Why part of it was lost, if it was.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    pub fn write(&mut self, data: &[u8]) {
        self.len += data.len() as u64;
        if self.file.is_none() && self.memory.len() + data.len() > PIECE {
            match tempfile::tempfile().and_then(|mut file| {
                file.write_all(&self.memory)?;
                Ok(file)
            }) {
                Ok(file) => {
                    self.memory = Vec::new();
                    self.file = Some(file);
                }
                Err(e) => self.lose(&e),
            }
        }
        match &mut self.file {
            Some(file) => {
                if let Err(e) = file.write_all(data) {
                    self.lose(&e);
                }
            }
            // Past the memory it may take and without a file, it is dropped.
            None if self.error.is_some() => {}
            None => self.memory.extend_from_slice(data),
        }
    }

    fn lose(&mut self, e: &std::io::Error) {
        self.error
            .get_or_insert_with(|| format!("its temporary file failed: {e}"));
    }

    /// Appends what `from` reads.
    pub fn copy(&mut self, from: &mut dyn Read) {
        let mut buf = vec![0u8; PIECE];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            self.write(&buf[..n]);
        }
    }

    /// What is held, to be read from its start.
    pub fn into_reader(self) -> io::Result<Box<dyn Read + Send>> {
        match self.file {
            Some(mut file) => {
                file.rewind()?;
                Ok(Box::new(file.take(self.len)))
            }
            None => Ok(Box::new(io::Cursor::new(self.memory))),
        }
    }

    /// Passes what is held on, in pieces of at most `PIECE` bytes.
    pub fn replay(&mut self, send: &mut dyn FnMut(&[u8])) {
        if let Some(mut file) = self.file.take() {
            if file.rewind().is_ok() {
                let mut buf = vec![0u8; PIECE];
                while let Ok(n) = file.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    send(&buf[..n]);
                }
            }
        } else {
            for piece in self.memory.chunks(PIECE) {
                send(piece);
            }
        }
    }
}
