//! The results cache (cache.md): what a task of a job with `sources` and `outputs`
//! produced (its output files and what it printed), kept where every machine can reach
//! it, keyed by what the task read, so that a task done once anywhere is restored
//! everywhere instead of run.
//!
//! One door per store: [`Store`] is the small trait every store implements (look an
//! entry up, fetch a blob, store a blob, store an entry), one file per store (`folder`,
//! `http`, `redis`). The key ([`key`]) and the entry format ([`entry`], Bazel's
//! `ActionResult` for every store) live here, beside the trait, never in a store: a
//! store only moves bytes. Only `redis.rs` imports redis, only `http.rs` an HTTP client.

// The skeleton: the stores and the run's use of them come next.
#![allow(dead_code)]

pub mod entry;
pub mod folder;
pub mod http;
pub mod key;
pub mod prune;
#[cfg(feature = "distributed")]
pub mod redis;
pub mod run;
pub mod verify;

use std::io::Read;
use std::sync::Arc;

/// The cache format version: part of every key, so that a runner that writes entries
/// another way never reads this one's.
pub const FORMAT: u32 = 1;

/// A blob's name: its SHA-256 and its size, as Bazel's `Digest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest {
    pub sha256: [u8; 32],
    pub size: u64,
}

impl Digest {
    /// The SHA-256 in lowercase hex: the blob's name in every store (`cas/HEX`).
    pub fn hex(&self) -> String {
        hex::encode(self.sha256)
    }

    /// The digest of `bytes` held in memory.
    pub fn of(bytes: &[u8]) -> Digest {
        use sha2::Digest as _;
        Digest {
            sha256: sha2::Sha256::digest(bytes).into(),
            size: bytes.len() as u64,
        }
    }
}

/// An entry's name: the task's cache key, 64 lowercase hex digits (a SHA-256, as
/// Bazel's action digests are, so that a server that checks `ac/` names accepts it).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key(pub String);

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A blob being read from a store. The caller verifies its digest as it reads.
pub type BlobReader = Box<dyn Read + Send>;

/// One store of entries and blobs. A store only moves bytes: it never decodes an
/// entry, never checks a digest (the caller does, as it reads), never decides what is
/// cached. Every method is bounded in time (a store that hangs is a [`StoreError`]).
/// Implementations are shared by the run's threads.
pub trait Store: Send + Sync {
    /// The entry stored under `key`, if there is one.
    fn lookup(&self, key: &Key) -> Result<Option<Vec<u8>>, StoreError>;
    /// A blob by its digest, if the store has it, as a reader of its bytes.
    fn fetch_blob(&self, digest: &Digest) -> Result<Option<BlobReader>, StoreError>;
    /// Stores a blob: exactly `digest.size` bytes read from `data`. A blob already
    /// there may be left as it is (same digest, same bytes).
    fn store_blob(&self, digest: &Digest, data: &mut dyn Read) -> Result<(), StoreError>;
    /// Stores a blob read once from `data`, named by what was read: its digest, or
    /// `None` when this store needs a blob's name before its bytes (the caller then
    /// hashes the file, and stores it with [`Store::store_blob`]). Nothing is read from
    /// `data` when `None` is returned.
    fn store_read(&self, _data: &mut verify::Hashing<'_>) -> Result<Option<Digest>, StoreError> {
        Ok(None)
    }
    /// Stores an entry under `key`, replacing any (two writers of one key write the
    /// same content). Called only once every blob it names is stored.
    fn store_entry(&self, key: &Key, entry: &[u8]) -> Result<(), StoreError>;
    /// The store as messages name it: its URL with any password hidden.
    fn describe(&self) -> String;
    /// How many threads store entries at once: a store that waits on a network is
    /// kept busy by two; see [`folder::Folder`] for one.
    fn uploaders(&self) -> usize {
        2
    }
}

/// What a store could not do. Any of these makes the run say so once and leave the
/// cache alone for the rest of the run (cache.md, When the store fails).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached, or stopped answering.
    #[error("cannot reach {store}: {why}")]
    Unreachable { store: String, why: String },
    /// A request took longer than its bound.
    #[error("{store} did not answer within {seconds} s")]
    TimedOut { store: String, seconds: u64 },
    /// The store answered with a refusal or an error (an HTTP status, a Redis error).
    #[error("{store} refused: {why}")]
    Refused { store: String, why: String },
    /// Reading or writing the store's files (the folder store), or the task's.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// Which way a run uses the cache (`--cache-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Mode {
    /// Restore hits; store nothing (a pull request reading what main wrote).
    Read,
    /// Store successes; restore nothing.
    Write,
    /// Both (the default).
    #[default]
    ReadWrite,
}

impl Mode {
    pub fn reads(self) -> bool {
        matches!(self, Mode::Read | Mode::ReadWrite)
    }

    pub fn writes(self) -> bool {
        matches!(self, Mode::Write | Mode::ReadWrite)
    }
}

/// `--cache URL` that cannot be used: exit 2 before anything runs.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("--cache {url}: {why}")]
    Invalid { url: String, why: String },
    #[error("--cache {url}: Redis stores need the `distributed` feature, which this runner was built without")]
    NoRedis { url: String },
}

/// The store a `--cache` URL names: a path or `file://PATH` (a folder), `redis://` or
/// `rediss://` (Redis), `http://` or `https://` (Bazel's HTTP cache protocol; `token`:
/// `RUNNER_CACHE_TOKEN`). Opening checks the URL only; a store that cannot be reached is
/// found by its first use (and said once).
pub fn open(url: &str, token: Option<&str>) -> Result<Arc<dyn Store>, OpenError> {
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("http" | "https") => Ok(Arc::new(http::Http::open(url, token)?)),
        Some("redis" | "rediss") => {
            #[cfg(feature = "distributed")]
            return Ok(Arc::new(redis::RedisStore::open(url)?));
            #[cfg(not(feature = "distributed"))]
            return Err(OpenError::NoRedis { url: url.to_string() });
        }
        Some("file") => Ok(Arc::new(folder::Folder::open(&url["file://".len()..])?)),
        Some(other) if !other.contains(['/', '\\']) && other.len() > 1 => Err(OpenError::Invalid {
            url: url.to_string(),
            why: format!("unknown scheme `{other}://` (a folder, file://, redis://, rediss://, http:// or https://)"),
        }),
        _ => Ok(Arc::new(folder::Folder::open(url)?)),
    }
}
