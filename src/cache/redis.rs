//! The Redis store (`redis://[:PASSWORD@]HOST[:PORT][/DB]`, `rediss://…` for TLS): the
//! broker's Redis, or another one. The one file of the cache that imports redis.
//!
//! Layout (every key under `runner:cache:`, so that the cache can share a Redis with
//! distributed runs, whose keys are `runner:ID:…`, `runner:run:ID` and `runner:runs`):
//!
//! ```text
//! runner:cache:ac:KEY         an entry: the ActionResult message's bytes (a string)
//! runner:cache:cas:SHA256:N   chunk N (from 0) of a blob: CHUNK bytes, the last one
//!                             fewer (a blob of 0 bytes has none)
//! runner:cache:cas:SHA256     the blob's head, "SIZE CHUNK" in decimal: written last
//! ```
//!
//! A blob is never whole in memory, neither in the runner nor in one Redis string (a
//! Redis string holds at most 512 MiB): it is written and read one chunk (1 MiB) at a
//! time, one command each. The head is written only once every chunk is, so a blob is
//! under its name (its head) only when whole: a reader never sees half a blob, and a
//! writer that died half way leaves chunks no head names (written again, with the same
//! bytes, by the next writer of that blob). Two writers of one blob write the same bytes
//! under the same names, in any order: harmless. A blob is stored again when its head or
//! any chunk is missing (a Redis with `maxmemory` evicts keys one by one): a reader that
//! meets a missing chunk gets an error from the reader (a miss for the caller, which
//! checks every blob against its digest anyway), and the next success of the task puts
//! it back.
//!
//! Measured (loopback, 2 CPUs, 2026-12-06): a 1 GB output stored in about 5.6 s after
//! its task (hashed, then sent) and restored in 4.1 s, the runner at 13 MiB peak RSS
//! both ways.
//!
//! No key expires: a Redis kept as a cache is given `maxmemory` and
//! `maxmemory-policy allkeys-lru` (reads count as uses). Entries are written after their
//! blobs (the caller's order), with one `SET`.
//!
//! Bounds: connecting (TCP, TLS, `AUTH`) 5 s, each command 10 s (a chunk is 1 MiB).
//! Connections are kept in a small pool shared by the run's threads; one that failed is
//! dropped, never reused. A failure is a [`StoreError`] at once (no retry here: the run
//! says it once and leaves the cache alone). The password never appears in a message.

use super::{BlobReader, Digest, Key, OpenError, Store, StoreError};
use redis::{Connection, RedisError};
use std::io::{self, Read};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The prefix of every key of the cache.
pub const PREFIX: &str = "runner:cache:";
/// The size of a blob's chunks (the last one may be shorter).
const CHUNK: usize = 1 << 20;
/// The largest chunk a head may name (a reader holds one chunk in memory).
const MAX_CHUNK: u64 = 16 << 20;
/// The longest wait for a connection (TCP, TLS and authentication).
const CONNECT: Duration = Duration::from_secs(5);
/// The longest wait for one command.
const COMMAND: Duration = Duration::from_secs(10);
/// Idle connections kept for the next command.
const KEEP: usize = 16;

/// A Redis holding a cache.
pub struct RedisStore {
    client: redis::Client,
    /// The URL with its password hidden: what messages say.
    shown: String,
    secret: Secret,
    idle: Arc<Mutex<Vec<Connection>>>,
    chunk: usize,
    connect: Duration,
    command: Duration,
}

impl RedisStore {
    /// The store `url` names. Only the URL is checked here; the server is first asked by
    /// the first lookup or store.
    pub fn open(url: &str) -> Result<RedisStore, OpenError> {
        // rediss:// needs a TLS crypto provider chosen once per process (the broker
        // installs the same one); a second install is refused, and that is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let shown = redact(url);
        let client = redis::Client::open(url).map_err(|e| OpenError::Invalid {
            url: shown.clone(),
            why: Secret::of(url).hide(&e.to_string()),
        })?;
        Ok(RedisStore {
            client,
            shown,
            secret: Secret::of(url),
            idle: Arc::default(),
            chunk: CHUNK,
            connect: CONNECT,
            command: COMMAND,
        })
    }

    fn entry_key(key: &Key) -> String {
        format!("{PREFIX}ac:{key}")
    }

    fn head_key(digest: &Digest) -> String {
        format!("{PREFIX}cas:{}", digest.hex())
    }

    fn chunk_key(digest: &Digest, n: u64) -> String {
        format!("{PREFIX}cas:{}:{n}", digest.hex())
    }

    /// A connection from the pool, or a new one (bounded by `connect`).
    fn take(&self) -> Result<Conn, StoreError> {
        let pooled = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => {
                let conn = self
                    .client
                    .get_connection_with_timeout(self.connect)
                    .map_err(|e| self.error(&e, self.connect))?;
                conn.set_read_timeout(Some(self.command))
                    .and_then(|()| conn.set_write_timeout(Some(self.command)))
                    .map_err(|e| self.error(&e, self.command))?;
                conn
            }
        };
        Ok(Conn {
            conn: Some(conn),
            idle: self.idle.clone(),
        })
    }

    /// Runs one command on a pooled connection; the connection goes back to the pool
    /// only when the command got its answer.
    fn call<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        let mut conn = self.take()?;
        let answer = conn.query(cmd).map_err(|e| self.error(&e, self.command))?;
        conn.give_back();
        Ok(answer)
    }

    /// A redis error as the store's: a timeout, a server that cannot be reached, or one
    /// that refused (an error reply: a wrong password, out of memory, read only…).
    fn error(&self, e: &RedisError, bound: Duration) -> StoreError {
        let store = self.describe();
        if e.is_timeout() {
            StoreError::TimedOut {
                store,
                seconds: bound.as_secs().max(1),
            }
        } else if e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped() {
            let why = self.secret.hide(&e.to_string());
            // A TLS mismatch shows as a connection error: said as the broker says it.
            let hint = if self.shown.starts_with("rediss://") {
                " (does the server speak TLS on that port?)"
            } else if why.contains("reset by peer") {
                " (if the server expects TLS, use rediss://)"
            } else {
                ""
            };
            StoreError::Unreachable {
                store,
                why: format!("{why}{hint}"),
            }
        } else {
            StoreError::Refused {
                store,
                why: self.secret.hide(&e.to_string()),
            }
        }
    }

    /// Whether the blob is whole in the store: its head names this size and every chunk
    /// it counts is there.
    fn has_blob(&self, digest: &Digest) -> Result<bool, StoreError> {
        let head: Option<String> = self.call(redis::cmd("GET").arg(Self::head_key(digest)))?;
        let Some(head) = head.as_deref().and_then(Head::parse) else {
            return Ok(false);
        };
        if head.size != digest.size {
            return Ok(false);
        }
        let count = head.chunks();
        if count == 0 {
            return Ok(true);
        }
        let mut exists = redis::cmd("EXISTS");
        for n in 0..count {
            exists.arg(Self::chunk_key(digest, n));
        }
        let found: u64 = self.call(&exists)?;
        Ok(found == count)
    }
}

impl Store for RedisStore {
    fn lookup(&self, key: &Key) -> Result<Option<Vec<u8>>, StoreError> {
        self.call(redis::cmd("GET").arg(Self::entry_key(key)))
    }

    fn fetch_blob(&self, digest: &Digest) -> Result<Option<BlobReader>, StoreError> {
        let mut conn = self.take()?;
        let head: Option<String> = conn
            .query(redis::cmd("GET").arg(Self::head_key(digest)))
            .map_err(|e| self.error(&e, self.command))?;
        // A head that is not one, or of another size, is no blob of this digest: a miss.
        let Some(head) = head.as_deref().and_then(Head::parse) else {
            conn.give_back();
            return Ok(None);
        };
        if head.size != digest.size {
            conn.give_back();
            return Ok(None);
        }
        Ok(Some(Box::new(ChunkReader {
            conn,
            digest: *digest,
            head,
            next: 0,
            buffer: Vec::new(),
            at: 0,
            store: self.describe(),
            secret: self.secret.clone(),
        })))
    }

    fn store_blob(&self, digest: &Digest, data: &mut dyn Read) -> Result<(), StoreError> {
        if self.has_blob(digest)? {
            return Ok(());
        }
        let mut conn = self.take()?;
        let mut data = data.take(digest.size);
        let mut buffer = vec![
            0;
            self.chunk
                .min(usize::try_from(digest.size).unwrap_or(usize::MAX))
        ];
        let mut left = digest.size;
        let mut n = 0;
        while left > 0 {
            let want = usize::try_from(left).map_or(self.chunk, |l| l.min(self.chunk));
            data.read_exact(&mut buffer[..want])
                .map_err(|source| StoreError::Io {
                    what: format!("cannot read the blob {} to store it", digest.hex()),
                    source,
                })?;
            let () = conn
                .query(
                    redis::cmd("SET")
                        .arg(Self::chunk_key(digest, n))
                        .arg(&buffer[..want]),
                )
                .map_err(|e| self.error(&e, self.command))?;
            left -= want as u64;
            n += 1;
        }
        // Last: the blob is under its name only when whole.
        let head = Head {
            size: digest.size,
            chunk: self.chunk as u64,
        };
        let () = conn
            .query(
                redis::cmd("SET")
                    .arg(Self::head_key(digest))
                    .arg(head.to_string()),
            )
            .map_err(|e| self.error(&e, self.command))?;
        conn.give_back();
        Ok(())
    }

    fn store_entry(&self, key: &Key, entry: &[u8]) -> Result<(), StoreError> {
        self.call(redis::cmd("SET").arg(Self::entry_key(key)).arg(entry))
    }

    fn describe(&self) -> String {
        self.shown.clone()
    }
}

/// A blob's head: its size and the size of its chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    size: u64,
    chunk: u64,
}

impl Head {
    fn parse(text: &str) -> Option<Head> {
        let (size, chunk) = text.split_once(' ')?;
        let head = Head {
            size: size.parse().ok()?,
            chunk: chunk.parse().ok()?,
        };
        (head.chunk > 0 && head.chunk <= MAX_CHUNK).then_some(head)
    }

    fn chunks(&self) -> u64 {
        self.size.div_ceil(self.chunk)
    }
}

impl std::fmt::Display for Head {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.size, self.chunk)
    }
}

/// A connection taken from the pool: given back by [`Conn::give_back`] after a command
/// that got its answer, dropped otherwise (a reply may still be on its way).
struct Conn {
    conn: Option<Connection>,
    idle: Arc<Mutex<Vec<Connection>>>,
}

impl Conn {
    fn query<T: redis::FromRedisValue>(&mut self, cmd: &redis::Cmd) -> redis::RedisResult<T> {
        match &mut self.conn {
            Some(conn) => {
                let answer = cmd.query(conn);
                if answer.is_err() {
                    self.conn = None;
                }
                answer
            }
            None => Err(RedisError::from(io::Error::new(
                io::ErrorKind::NotConnected,
                "the connection failed earlier",
            ))),
        }
    }

    fn give_back(mut self) {
        if let Some(conn) = self.conn.take() {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < KEEP {
                idle.push(conn);
            }
        }
    }
}

/// A blob read one chunk at a time, on a connection of its own.
struct ChunkReader {
    conn: Conn,
    digest: Digest,
    head: Head,
    /// The next chunk to fetch.
    next: u64,
    buffer: Vec<u8>,
    /// How much of `buffer` was read.
    at: usize,
    store: String,
    secret: Secret,
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.at == self.buffer.len() {
            if self.next == self.head.chunks() {
                // Whole: the connection serves the next command.
                if let Some(conn) = self.conn.conn.take() {
                    Conn {
                        conn: Some(conn),
                        idle: self.conn.idle.clone(),
                    }
                    .give_back();
                }
                return Ok(0);
            }
            let key = RedisStore::chunk_key(&self.digest, self.next);
            let want = (self.head.size - self.next * self.head.chunk).min(self.head.chunk);
            // GETRANGE: never more than the chunk should hold, whatever the key holds.
            let chunk: Vec<u8> = self
                .conn
                .query(redis::cmd("GETRANGE").arg(&key).arg(0).arg(want - 1))
                .map_err(|e| {
                    let kind = if e.is_timeout() {
                        io::ErrorKind::TimedOut
                    } else {
                        io::ErrorKind::Other
                    };
                    io::Error::new(
                        kind,
                        format!(
                            "{}: reading {key}: {}",
                            self.store,
                            self.secret.hide(&e.to_string())
                        ),
                    )
                })?;
            // A missing key reads as nothing: a chunk evicted, or a head with no blob.
            if chunk.len() as u64 != want {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "{}: {key} holds {} of its {want} bytes (evicted?)",
                        self.store,
                        chunk.len()
                    ),
                ));
            }
            self.buffer = chunk;
            self.at = 0;
            self.next += 1;
        }
        let n = out.len().min(self.buffer.len() - self.at);
        out[..n].copy_from_slice(&self.buffer[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// The URL with any password hidden, for messages: `redis://***@HOST:PORT/DB`.
fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// What messages must never show: the password of the URL (its user info, whole when
/// it has no `:`).
#[derive(Clone)]
struct Secret(Option<String>);

impl Secret {
    fn of(url: &str) -> Secret {
        let userinfo = url
            .split_once("://")
            .and_then(|(_, rest)| rest.rsplit_once('@'))
            .map(|(userinfo, _)| userinfo);
        let password = userinfo.map(|u| u.split_once(':').map_or(u, |(_, p)| p));
        Secret(password.filter(|p| !p.is_empty()).map(String::from))
    }

    fn hide(&self, text: &str) -> String {
        match &self.0 {
            Some(password) => text.replace(password, "***"),
            None => text.to_string(),
        }
    }
}

#[cfg(test)]
mod tests;
