//! The folder store (`--cache PATH` or `file://PATH`): a plain folder, for CI caches
//! (`actions/cache`, GitLab's `cache:`) and shared disks.
//!
//! ```text
//! DIR/
//!   ac/KK/KEY      entries (KK: the key's first two hex digits)
//!   cas/KK/SHA256  blobs, named by their SHA-256
//!   tmp/           files being written, renamed into place when whole
//! ```
//!
//! Every file is written under `tmp/` and renamed into place, so a reader (another
//! run, another machine on a shared disk) never sees half of one, and two writers of
//! one name leave one whole file (same name, same content). A lookup that finds an entry
//! sets its modification time to now: `runner cache prune` removes the least recently
//! used first.

use super::verify::Hashing;
use super::{BlobReader, Digest, Key, OpenError, Store, StoreError};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// A folder holding a cache.
pub struct Folder {
    root: PathBuf,
}

impl Folder {
    /// The store in `path` (created on the first write). An empty path is refused.
    pub fn open(path: &str) -> Result<Folder, OpenError> {
        if path.is_empty() {
            return Err(OpenError::Invalid {
                url: path.to_string(),
                why: "an empty path".to_string(),
            });
        }
        Ok(Folder { root: path.into() })
    }

    /// The folder itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the entry of `key` lives.
    pub fn entry_path(&self, key: &Key) -> PathBuf {
        fanned(&self.root.join("ac"), &key.0)
    }

    /// Where the blob `digest` lives.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        fanned(&self.root.join("cas"), &digest.hex())
    }

    /// Writes `path` whole from `data`: to a temporary file under `tmp/`, then renamed.
    fn write_whole(&self, path: &Path, data: &mut dyn Read) -> Result<u64, StoreError> {
        let (temp, written) = self.write_temp(data)?;
        self.rename_into(&temp, path)?;
        Ok(written)
    }

    /// Writes `data` to a new temporary file under `tmp/`; returns its path and size.
    /// Nothing is left behind on an error.
    fn write_temp(&self, data: &mut dyn Read) -> Result<(PathBuf, u64), StoreError> {
        let io = |what: String| move |source| StoreError::Io { what, source };
        let tmp = self.root.join("tmp");
        let temp = tmp.join(temp_name());
        // The folders are made only when missing: a store written to often has them.
        let mut file = match File::create(&temp) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(&tmp).map_err(io(format!("cannot create {}", tmp.display())))?;
                File::create(&temp)
            }
            other => other,
        }
        .map_err(io(format!("cannot write {}", temp.display())))?;
        let written = (|| {
            let n = io::copy(data, &mut file)?;
            file.flush()?;
            Ok::<u64, io::Error>(n)
        })();
        drop(file);
        match written {
            Ok(n) => Ok((temp, n)),
            Err(e) => {
                let _ = fs::remove_file(&temp);
                Err(StoreError::Io {
                    what: format!("cannot write {}", temp.display()),
                    source: e,
                })
            }
        }
    }

    /// Renames a temporary file into `path` (its folder made when missing); on an
    /// error, the temporary file is removed.
    fn rename_into(&self, temp: &Path, path: &Path) -> Result<(), StoreError> {
        let renamed = match fs::rename(temp, path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let parent = path.parent().unwrap_or(&self.root);
                fs::create_dir_all(parent).and_then(|()| fs::rename(temp, path))
            }
            other => other,
        };
        renamed.map_err(|e| {
            let _ = fs::remove_file(temp);
            StoreError::Io {
                what: format!("cannot rename into {}", path.display()),
                source: e,
            }
        })
    }

    /// A blob already here, whole, is touched (so that a prune running now sees it as
    /// just written and keeps it for the entry about to name it): the same name is the
    /// same content (checked as read).
    fn have_blob(&self, digest: &Digest, path: &Path) -> bool {
        if fs::metadata(path).is_ok_and(|m| m.len() == digest.size) {
            if let Ok(file) = File::options().append(true).open(path) {
                let _ = file.set_modified(SystemTime::now());
            }
            return true;
        }
        false
    }
}

impl Store for Folder {
    fn lookup(&self, key: &Key) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.entry_path(key);
        match fs::read(&path) {
            Ok(bytes) => {
                // Used now: the last to be pruned. A store on a read-only disk is
                // still read.
                if let Ok(file) = File::options().append(true).open(&path) {
                    let _ = file.set_modified(SystemTime::now());
                }
                Ok(Some(bytes))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::Io {
                what: format!("cannot read {}", path.display()),
                source: e,
            }),
        }
    }

    fn fetch_blob(&self, digest: &Digest) -> Result<Option<BlobReader>, StoreError> {
        let path = self.blob_path(digest);
        match File::open(&path) {
            Ok(file) => Ok(Some(Box::new(file))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::Io {
                what: format!("cannot read {}", path.display()),
                source: e,
            }),
        }
    }

    fn store_blob(&self, digest: &Digest, data: &mut dyn Read) -> Result<(), StoreError> {
        let path = self.blob_path(digest);
        if self.have_blob(digest, &path) {
            return Ok(());
        }
        self.write_whole(&path, &mut data.take(digest.size))?;
        Ok(())
    }

    /// Copied to a temporary file as it is hashed, then renamed to its name: an output
    /// is read once, not once to name it and again to store it.
    fn store_read(&self, data: &mut Hashing<'_>) -> Result<Option<Digest>, StoreError> {
        let (temp, _) = self.write_temp(data)?;
        let digest = data.digest();
        let path = self.blob_path(&digest);
        if self.have_blob(&digest, &path) {
            let _ = fs::remove_file(&temp);
        } else {
            self.rename_into(&temp, &path)?;
        }
        Ok(Some(digest))
    }

    fn store_entry(&self, key: &Key, entry: &[u8]) -> Result<(), StoreError> {
        let path = self.entry_path(key);
        self.write_whole(&path, &mut &entry[..])?;
        Ok(())
    }

    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    /// One: storing here is work for the CPU (and the disk), not a wait on a network,
    /// so a second thread would take a core from the run's tasks. Measured on 2 cores
    /// (docs/benchmarks.md): 1,000 tasks storing 10 KiB each took 0.85 of the time
    /// without a cache with two threads, 0.89–1.02 with one.
    fn uploaders(&self) -> usize {
        1
    }
}

/// `dir/KK/NAME`, KK the name's first two characters (so no folder holds millions).
fn fanned(dir: &Path, name: &str) -> PathBuf {
    dir.join(name.get(..2).unwrap_or("__")).join(name)
}

/// A name no other writer uses: this process, and a counter.
fn temp_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    format!(
        "{}.{}.{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        HOST.get_or_init(crate::sys::hostname)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_and_entries_read_back_and_leave_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Folder::open(dir.path().to_str().unwrap()).unwrap();
        let digest = Digest::of(b"some bytes");
        assert!(store.fetch_blob(&digest).unwrap().is_none());
        store.store_blob(&digest, &mut &b"some bytes"[..]).unwrap();
        // Stored twice: harmless.
        store.store_blob(&digest, &mut &b"some bytes"[..]).unwrap();
        let mut read = Vec::new();
        store
            .fetch_blob(&digest)
            .unwrap()
            .unwrap()
            .read_to_end(&mut read)
            .unwrap();
        assert_eq!(read, b"some bytes");
        let key = Key("0a".repeat(32));
        assert_eq!(store.lookup(&key).unwrap(), None);
        store.store_entry(&key, b"entry").unwrap();
        assert_eq!(store.lookup(&key).unwrap().as_deref(), Some(&b"entry"[..]));
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        assert!(dir
            .path()
            .join("cas")
            .join(&digest.hex()[..2])
            .join(digest.hex())
            .is_file());
    }

    #[test]
    fn a_blob_stored_as_it_is_read_is_named_by_its_sha256_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Folder::open(dir.path().to_str().unwrap()).unwrap();
        let bytes = b"an output, read once".repeat(1000);
        for _ in 0..2 {
            // The second time, the blob is there already: the copy is dropped.
            let mut source = &bytes[..];
            let mut hashing = Hashing::new(&mut source);
            let digest = store.store_read(&mut hashing).unwrap().unwrap();
            assert_eq!(digest, Digest::of(&bytes));
            assert_eq!(fs::read(store.blob_path(&digest)).unwrap(), bytes);
        }
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        let blobs: Vec<_> = walkdir::WalkDir::new(dir.path().join("cas"))
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file())
            .collect();
        assert_eq!(blobs.len(), 1);
    }

    #[test]
    fn an_output_that_cannot_be_read_while_stored_is_told_from_the_store_and_leaves_nothing() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("input/output error"))
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let store = Folder::open(dir.path().to_str().unwrap()).unwrap();
        let mut source = Failing;
        let mut hashing = Hashing::new(&mut source);
        assert!(store.store_read(&mut hashing).is_err());
        // The caller's cue that the output, not the store, failed: the cache stays on.
        assert!(hashing.failed());
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        assert!(!dir.path().join("cas").exists());
    }

    #[test]
    fn a_blob_stored_again_is_touched_so_that_a_prune_running_now_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Folder::open(dir.path().to_str().unwrap()).unwrap();
        let digest = Digest::of(b"shared output");
        store
            .store_blob(&digest, &mut &b"shared output"[..])
            .unwrap();
        let path = store.blob_path(&digest);
        let old = SystemTime::now() - std::time::Duration::from_secs(86_400);
        File::options()
            .append(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let before = SystemTime::now() - std::time::Duration::from_secs(1);
        store
            .store_blob(&digest, &mut &b"shared output"[..])
            .unwrap();
        let modified = fs::metadata(&path).unwrap().modified().unwrap();
        assert!(modified > before, "{modified:?}");
    }
}
