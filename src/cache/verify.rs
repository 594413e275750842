//! A reader that checks a blob against its digest as it is read, used both ways: a
//! restore copies a blob from the store through it (so a missing, short, long or wrong
//! blob is an error before any file is renamed into place), and a store uploads an
//! output file through it (so a file changed since it was hashed is never stored under
//! the old name). The check happens on the read that reaches the digest's size, so a
//! reader that stops there (`Read::take`) still sees the error.

use super::Digest;
use sha2::{Digest as _, Sha256};
use std::io::{self, Read};

/// Why a blob read does not match its digest.
#[derive(Debug, thiserror::Error)]
pub enum Mismatch {
    #[error("it ended after {read} of its {size} bytes")]
    Short { read: u64, size: u64 },
    #[error("it is longer than its {size} bytes")]
    Long { size: u64 },
    #[error("its content does not have its SHA-256 {expected}")]
    Content { expected: String },
}

impl Mismatch {
    fn error(self) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, self)
    }
}

/// `inner`, read only as far as `digest` says, checked.
pub struct Verifying<R> {
    inner: R,
    digest: Digest,
    hasher: Sha256,
    read: u64,
    checked: bool,
}

impl<R: Read> Verifying<R> {
    pub fn new(inner: R, digest: Digest) -> Verifying<R> {
        Verifying {
            inner,
            digest,
            hasher: Sha256::new(),
            read: 0,
            checked: false,
        }
    }

    /// Once every byte was read: the content's hash against the digest's.
    fn check(&mut self) -> io::Result<()> {
        if self.checked {
            return Ok(());
        }
        let hash: [u8; 32] = std::mem::take(&mut self.hasher).finalize().into();
        if hash != self.digest.sha256 {
            return Err(Mismatch::Content {
                expected: self.digest.hex(),
            }
            .error());
        }
        self.checked = true;
        Ok(())
    }
}

impl<R: Read> Read for Verifying<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let size = self.digest.size;
        let left = size - self.read;
        if left == 0 {
            self.check()?;
            // Nothing more may come.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(Mismatch::Long { size }.error()),
            };
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(Mismatch::Short {
                read: self.read,
                size,
            }
            .error());
        }
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        if self.read == size {
            self.check()?;
        }
        Ok(n)
    }
}

/// The digest of what `reader` gives, read in pieces (never whole in memory).
/// A reader that hashes what passes through it: a blob stored as it is read, named by
/// what was read. An error of the reader underneath is kept ([`Hashing::failed`]), so
/// that the caller tells it from one of the store it writes to.
pub struct Hashing<'a> {
    inner: &'a mut dyn Read,
    hasher: Sha256,
    size: u64,
    failed: bool,
}

impl<'a> Hashing<'a> {
    pub fn new(inner: &'a mut dyn Read) -> Hashing<'a> {
        Hashing {
            inner,
            hasher: Sha256::new(),
            size: 0,
            failed: false,
        }
    }

    /// Whether reading failed (rather than whatever the bytes were written to).
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// The digest of every byte read so far.
    pub fn digest(&self) -> Digest {
        Digest {
            sha256: self.hasher.clone().finalize().into(),
            size: self.size,
        }
    }
}

impl Read for Hashing<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.hasher.update(&buf[..n]);
                self.size += n as u64;
                Ok(n)
            }
            Err(e) => {
                if e.kind() != io::ErrorKind::Interrupted {
                    self.failed = true;
                }
                Err(e)
            }
        }
    }
}

pub fn digest_of(reader: &mut dyn Read) -> io::Result<Digest> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok(Digest {
        sha256: hasher.finalize().into(),
        size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(bytes: &[u8], digest: Digest) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        Verifying::new(bytes, digest).read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn a_blob_reads_only_when_it_is_its_digest() {
        let digest = Digest::of(b"hello world");
        assert_eq!(read_all(b"hello world", digest).unwrap(), b"hello world");
        assert!(read_all(b"hello", digest).is_err());
        assert!(read_all(b"hello world!", digest).is_err());
        assert!(read_all(b"hello WORLD", digest).is_err());
        let empty = Digest::of(b"");
        assert_eq!(read_all(b"", empty).unwrap(), b"");
        assert!(read_all(b"x", empty).is_err());
        // Read through `take` (as a store does): the last piece carries the error.
        let mut out = Vec::new();
        let wrong = Verifying::new(&b"hello WORLD"[..], digest);
        assert!(wrong.take(digest.size).read_to_end(&mut out).is_err());
        assert_eq!(
            digest_of(&mut &b"hello world"[..]).unwrap(),
            Digest::of(b"hello world")
        );
    }
}
