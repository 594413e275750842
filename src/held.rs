//! Output held back until a task's attempt ends (`--quiet`, grouped output): whole
//! lines, in memory up to 64 KiB, then in an unnamed temporary file, so that a task
//! printing a gigabyte costs the runner disk, not memory. Read back in pieces by the
//! terminal writer.

use std::fs::File;
use std::io::{self, Read, Seek, Write};

/// The most temporary files of grouped output on their way to the terminal writer
/// (in `Event::Group`s not yet printed): a slot thread with more to send waits
/// ([`Flight::board`]), so a slow stdout cannot make the runner run out of descriptors
/// (`fds::RESERVE` counts these).
pub const FLIGHT: usize = 16;

static IN_FLIGHT: std::sync::Mutex<usize> = std::sync::Mutex::new(0);
static LANDED: std::sync::Condvar = std::sync::Condvar::new();

/// Temporary files of grouped output counted as in flight to the writer, from
/// [`Flight::board`] until it is dropped (printed, set aside, or lost with its event:
/// a send that failed or a writer that died must not keep them counted, or every slot
/// thread would wait forever).
pub struct Flight(usize);

impl Flight {
    /// Before sending output holding `files` temporary files to the writer: waits until
    /// there is room for them (or nothing else is in flight), then counts them.
    pub fn board(files: usize) -> Flight {
        if files > 0 {
            let mut in_flight = IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner());
            while *in_flight > 0 && *in_flight + files > FLIGHT {
                in_flight = LANDED.wait(in_flight).unwrap_or_else(|e| e.into_inner());
            }
            *in_flight += files;
        }
        Flight(files)
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        if self.0 == 0 {
            return;
        }
        let mut in_flight = IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner());
        *in_flight = in_flight.saturating_sub(self.0);
        LANDED.notify_all();
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn in_flight() -> usize {
        *IN_FLIGHT.lock().unwrap()
    }

    #[test]
    fn files_in_flight_are_counted_until_dropped_and_a_full_flight_waits() {
        let full = Flight::board(FLIGHT);
        assert_eq!(in_flight(), FLIGHT);
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let one = Flight::board(1);
            tx.send(()).unwrap();
            drop(one);
        });
        // No room until the full flight lands.
        assert!(rx
            .recv_timeout(std::time::Duration::from_millis(200))
            .is_err());
        drop(full);
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("room once the others landed");
        waiter.join().unwrap();
        assert_eq!(in_flight(), 0);
        // Nothing in flight: one larger than the flight still goes.
        drop(Flight::board(FLIGHT + 1));
        assert_eq!(in_flight(), 0);
    }

    #[test]
    fn held_output_spills_past_a_piece_and_reads_back_whole() {
        let mut held = Held::default();
        assert!(held.is_empty());
        let line = vec![b'x'; 1000];
        for _ in 0..200 {
            held.write(&line);
            held.write(b"\n");
        }
        assert!(held.has_file());
        let mut back = Vec::new();
        held.into_reader().unwrap().read_to_end(&mut back).unwrap();
        assert_eq!(back.len(), 200 * 1001);
    }
}
