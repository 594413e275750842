//! The entry format: one Bazel `ActionResult` message (remote_execution.proto, v2) for
//! every store, so that an HTTP cache that validates entries (bazel-remote) accepts
//! them and the folder and Redis stores need no format of their own. The messages are
//! written as prost derive structs holding only the fields the runner uses, with the
//! official field numbers (a decoder of the official proto reads them; a test checks).
//!
//! What the runner adds travels in fields the protocol has for it: the host that stored
//! the entry in `execution_metadata.worker` (`runner@HOST`), the time in
//! `worker_completed_timestamp`, and, with `RUNNER_CACHE_KEY`, an HMAC-SHA256 in
//! `auxiliary_metadata` (an `Any` of type [`MAC_TYPE`]) over the entry's key and the
//! message encoded without it, so that an entry cannot be forged, changed, or copied
//! under another key by whoever can write the store but does not hold the secret.

use super::{Digest, Key};
use hmac::{Hmac, Mac};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The `Any` type URL of the runner's MAC.
pub const MAC_TYPE: &str = "type.googleapis.com/runner.cache.v1.Mac";

/// `build.bazel.remote.execution.v2.Digest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireDigest {
    #[prost(string, tag = "1")]
    pub hash: String,
    #[prost(int64, tag = "2")]
    pub size_bytes: i64,
}

/// `build.bazel.remote.execution.v2.OutputFile` (the fields used).
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireOutputFile {
    #[prost(string, tag = "1")]
    pub path: String,
    #[prost(message, optional, tag = "2")]
    pub digest: Option<WireDigest>,
    #[prost(bool, tag = "4")]
    pub is_executable: bool,
}

/// `build.bazel.remote.execution.v2.ExecutedActionMetadata` (the fields used).
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireMetadata {
    #[prost(string, tag = "1")]
    pub worker: String,
    #[prost(message, optional, tag = "4")]
    pub worker_completed_timestamp: Option<prost_types::Timestamp>,
    #[prost(message, repeated, tag = "11")]
    pub auxiliary_metadata: Vec<prost_types::Any>,
}

/// `build.bazel.remote.execution.v2.ActionResult` (the fields used).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ActionResult {
    #[prost(message, repeated, tag = "2")]
    pub output_files: Vec<WireOutputFile>,
    #[prost(int32, tag = "4")]
    pub exit_code: i32,
    #[prost(message, optional, tag = "6")]
    pub stdout_digest: Option<WireDigest>,
    #[prost(message, optional, tag = "8")]
    pub stderr_digest: Option<WireDigest>,
    #[prost(message, optional, tag = "9")]
    pub execution_metadata: Option<WireMetadata>,
}

/// One output file of an entry: its path relative to the task's cwd, where its `outputs`
/// patterns are matched (always
/// `/`-separated UTF-8, never absolute, never `..`), its blob, its executable bit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFile {
    pub path: PathBuf,
    pub digest: Digest,
    pub executable: bool,
}

/// What a task left, as the runner reads an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub files: Vec<OutputFile>,
    /// What it printed, as shown (secrets redacted); `None` when nothing.
    pub stdout: Option<Digest>,
    pub stderr: Option<Digest>,
    /// The host that stored it, and when.
    pub host: String,
    pub stored: SystemTime,
}

/// Why an entry is not used: each is a miss (cache.md, Trust).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EntryError {
    #[error("the entry is damaged ({0})")]
    Damaged(String),
    #[error("the entry is not signed (RUNNER_CACHE_KEY is set)")]
    Unsigned,
    #[error("the entry's signature is wrong (stored with another RUNNER_CACHE_KEY, or changed)")]
    WrongSignature,
}

impl Entry {
    /// The entry as stored under `key`, signed with `secret` when there is one.
    pub fn encode(&self, key: &Key, secret: Option<&[u8]>) -> Vec<u8> {
        use prost::Message as _;
        let since = self.stored.duration_since(UNIX_EPOCH).unwrap_or_default();
        let mut message = ActionResult {
            output_files: self
                .files
                .iter()
                .map(|f| WireOutputFile {
                    path: f.path.to_string_lossy().into_owned(),
                    digest: Some(wire(&f.digest)),
                    is_executable: f.executable,
                })
                .collect(),
            exit_code: 0,
            stdout_digest: self.stdout.as_ref().map(wire),
            stderr_digest: self.stderr.as_ref().map(wire),
            execution_metadata: Some(WireMetadata {
                worker: format!("runner@{}", self.host),
                worker_completed_timestamp: Some(prost_types::Timestamp {
                    seconds: since.as_secs() as i64,
                    nanos: since.subsec_nanos() as i32,
                }),
                auxiliary_metadata: Vec::new(),
            }),
        };
        if let Some(secret) = secret {
            let tag = mac(secret, key, &message.encode_to_vec());
            if let Some(meta) = &mut message.execution_metadata {
                meta.auxiliary_metadata.push(prost_types::Any {
                    type_url: MAC_TYPE.to_string(),
                    value: tag,
                });
            }
        }
        message.encode_to_vec()
    }

    /// Reads the entry stored under `key`; with `secret`, only a correctly signed one.
    pub fn decode(bytes: &[u8], key: &Key, secret: Option<&[u8]>) -> Result<Entry, EntryError> {
        use prost::Message as _;
        let mut message =
            ActionResult::decode(bytes).map_err(|e| EntryError::Damaged(e.to_string()))?;
        let tag = message.execution_metadata.as_mut().and_then(|meta| {
            let at = meta
                .auxiliary_metadata
                .iter()
                .position(|a| a.type_url == MAC_TYPE)?;
            Some(meta.auxiliary_metadata.remove(at).value)
        });
        if let Some(secret) = secret {
            let tag = tag.ok_or(EntryError::Unsigned)?;
            let mut check = <Hmac<sha2::Sha256>>::new_from_slice(secret).expect("any key length");
            check.update(&signed(key, &message.encode_to_vec()));
            check
                .verify_slice(&tag)
                .map_err(|_| EntryError::WrongSignature)?;
        }
        if message.exit_code != 0 {
            return Err(EntryError::Damaged(format!(
                "exit code {}, not a success",
                message.exit_code
            )));
        }
        let files = message
            .output_files
            .into_iter()
            .map(|f| {
                let digest = digest(f.digest.as_ref())?;
                let path = PathBuf::from(&f.path);
                if !relative_inside(&path) {
                    return Err(EntryError::Damaged(format!(
                        "output path `{}` is not inside the project",
                        f.path
                    )));
                }
                Ok(OutputFile {
                    path,
                    digest,
                    executable: f.is_executable,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let meta = message.execution_metadata.unwrap_or_default();
        let stored = meta
            .worker_completed_timestamp
            .map(|t| UNIX_EPOCH + Duration::new(t.seconds.max(0) as u64, t.nanos.max(0) as u32))
            .unwrap_or(UNIX_EPOCH);
        Ok(Entry {
            files,
            stdout: message
                .stdout_digest
                .as_ref()
                .map(|d| digest(Some(d)))
                .transpose()?,
            stderr: message
                .stderr_digest
                .as_ref()
                .map(|d| digest(Some(d)))
                .transpose()?,
            host: meta
                .worker
                .strip_prefix("runner@")
                .unwrap_or(&meta.worker)
                .to_string(),
            stored,
        })
    }
}

/// A relative path with no `..`, no root and no prefix: it cannot name a file outside
/// the folder it is joined to.
pub fn relative_inside(path: &std::path::Path) -> bool {
    use std::path::Component;
    !path.as_os_str().is_empty()
        && path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

fn wire(d: &Digest) -> WireDigest {
    WireDigest {
        hash: d.hex(),
        size_bytes: d.size as i64,
    }
}

fn digest(d: Option<&WireDigest>) -> Result<Digest, EntryError> {
    let d = d.ok_or_else(|| EntryError::Damaged("an output without a digest".into()))?;
    let mut sha256 = [0u8; 32];
    hex::decode_to_slice(&d.hash, &mut sha256)
        .map_err(|_| EntryError::Damaged(format!("`{}` is not a SHA-256", d.hash)))?;
    let size = u64::try_from(d.size_bytes)
        .map_err(|_| EntryError::Damaged(format!("a negative size {}", d.size_bytes)))?;
    Ok(Digest { sha256, size })
}

/// What the MAC covers: the key (so an entry cannot be copied to another key) and the
/// message without the MAC.
fn signed(key: &Key, message: &[u8]) -> Vec<u8> {
    let mut bytes = b"runner cache mac v1\0".to_vec();
    bytes.extend_from_slice(key.0.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(message);
    bytes
}

fn mac(secret: &[u8], key: &Key, message: &[u8]) -> Vec<u8> {
    let mut m = <Hmac<sha2::Sha256>>::new_from_slice(secret).expect("any key length");
    m.update(&signed(key, message));
    m.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Entry {
        Entry {
            files: vec![OutputFile {
                path: PathBuf::from("out/a.txt"),
                digest: Digest::of(b"hello\n"),
                executable: true,
            }],
            stdout: Some(Digest::of(b"printed\n")),
            stderr: None,
            host: "ci-7".to_string(),
            stored: UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        }
    }

    #[test]
    fn an_entry_reads_back_as_written() {
        let key = Key("ab".repeat(32));
        let bytes = sample().encode(&key, None);
        assert_eq!(Entry::decode(&bytes, &key, None), Ok(sample()));
    }

    #[test]
    fn signatures_bind_the_secret_and_the_key() {
        let key = Key("ab".repeat(32));
        let signed = sample().encode(&key, Some(b"secret one"));
        assert_eq!(
            Entry::decode(&signed, &key, Some(b"secret one")),
            Ok(sample())
        );
        assert_eq!(
            Entry::decode(&signed, &key, Some(b"secret two")),
            Err(EntryError::WrongSignature)
        );
        let other = Key("cd".repeat(32));
        assert_eq!(
            Entry::decode(&signed, &other, Some(b"secret one")),
            Err(EntryError::WrongSignature)
        );
        let unsigned = sample().encode(&key, None);
        assert_eq!(
            Entry::decode(&unsigned, &key, Some(b"secret one")),
            Err(EntryError::Unsigned)
        );
        // Without a secret, a signed entry still reads.
        assert_eq!(Entry::decode(&signed, &key, None), Ok(sample()));
    }

    #[test]
    fn a_path_outside_the_project_is_damage() {
        let key = Key("ab".repeat(32));
        for bad in ["../x", "/etc/passwd", ""] {
            let mut e = sample();
            e.files[0].path = PathBuf::from(bad);
            let bytes = e.encode(&key, None);
            assert!(
                matches!(
                    Entry::decode(&bytes, &key, None),
                    Err(EntryError::Damaged(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            Entry::decode(b"\xff\xff\xff", &key, None),
            Err(EntryError::Damaged(_))
        ));
    }
}
