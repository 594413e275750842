//! The Redis store against a real `redis-server` started by each test on a free loopback
//! port (scripts/test installs it), stopped by its pid when the test ends.

use super::*;
use std::time::Instant;

use crate::test_redis::{free_port, Server};

/// Every key of the cache, sorted.
fn keys(conn: &mut Connection) -> Vec<String> {
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{PREFIX}*"))
        .query(conn)
        .unwrap();
    keys.sort();
    keys
}

fn raw(url: &str) -> Connection {
    redis::Client::open(url).unwrap().get_connection().unwrap()
}

fn read_all(store: &RedisStore, digest: &Digest) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    store
        .fetch_blob(digest)
        .unwrap()
        .expect("the blob is there")
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8).collect()
}

#[test]
fn entries_and_blobs_round_trip_in_chunks_under_the_prefix() {
    let server = Server::start(&[]);
    let mut store = RedisStore::open(&server.url()).unwrap();
    store.chunk = 1000;
    let key = Key("0a".repeat(32));
    assert_eq!(store.lookup(&key).unwrap(), None);
    store.store_entry(&key, b"an entry").unwrap();
    assert_eq!(
        store.lookup(&key).unwrap().as_deref(),
        Some(&b"an entry"[..])
    );

    for size in [0, 10, 1000, 3500] {
        let data = bytes(size);
        let digest = Digest::of(&data);
        assert!(store.fetch_blob(&digest).unwrap().is_none());
        store.store_blob(&digest, &mut &data[..]).unwrap();
        // Stored twice: harmless (and not written again).
        store.store_blob(&digest, &mut &data[..]).unwrap();
        assert_eq!(read_all(&store, &digest).unwrap(), data, "{size} bytes");
    }

    let digest = Digest::of(&bytes(3500));
    let hex = digest.hex();
    let mut conn = raw(&server.url());
    let head: String = redis::cmd("GET")
        .arg(format!("runner:cache:cas:{hex}"))
        .query(&mut conn)
        .unwrap();
    assert_eq!(head, "3500 1000");
    let keys = self::keys(&mut conn);
    for n in 0..4 {
        assert!(
            keys.contains(&format!("runner:cache:cas:{hex}:{n}")),
            "{keys:?}"
        );
    }
    assert!(!keys.contains(&format!("runner:cache:cas:{hex}:4")));
    assert!(keys.contains(&format!("runner:cache:ac:{}", "0a".repeat(32))));
    // 4 blobs: heads 4, chunks 0 + 1 + 1 + 4; one entry.
    assert_eq!(keys.len(), 4 + 6 + 1, "{keys:?}");
}

#[test]
fn a_blob_larger_than_a_redis_string_is_only_ever_one_chunk_in_memory() {
    // The default chunk (1 MiB): a blob of a few chunks stands for one of gigabytes,
    // which no Redis string (512 MiB at most) could hold whole.
    let server = Server::start(&[]);
    let store = RedisStore::open(&server.url()).unwrap();
    let data = bytes(5 * CHUNK + 3);
    let digest = Digest::of(&data);
    store.store_blob(&digest, &mut &data[..]).unwrap();
    let mut conn = raw(&server.url());
    let longest: u64 = (0..6)
        .map(|n| {
            redis::cmd("STRLEN")
                .arg(RedisStore::chunk_key(&digest, n))
                .query::<u64>(&mut conn)
                .unwrap()
        })
        .max()
        .unwrap();
    assert_eq!(longest, CHUNK as u64);
    assert_eq!(read_all(&store, &digest).unwrap(), data);
}

/// Gives `n` bytes, then fails: a task's file that could not be read to its end.
struct Broken(usize);

impl Read for Broken {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.0 == 0 {
            return Err(io::Error::other("the disk went away"));
        }
        let n = out.len().min(self.0);
        out[..n].fill(b'x');
        self.0 -= n;
        Ok(n)
    }
}

#[test]
fn a_blob_is_under_its_name_only_when_whole_and_a_lost_chunk_is_stored_again() {
    let server = Server::start(&[]);
    let mut store = RedisStore::open(&server.url()).unwrap();
    store.chunk = 1000;
    let data = bytes(3500);
    let digest = Digest::of(&data);

    // A writer that failed half way: chunks, no head; no reader sees the blob.
    let failed = store.store_blob(&digest, &mut Broken(1500));
    assert!(matches!(failed, Err(StoreError::Io { .. })), "{failed:?}");
    assert!(store.fetch_blob(&digest).unwrap().is_none());
    // Short data is refused the same way.
    let short = store.store_blob(&digest, &mut &data[..10]);
    assert!(matches!(short, Err(StoreError::Io { .. })), "{short:?}");
    assert!(store.fetch_blob(&digest).unwrap().is_none());

    store.store_blob(&digest, &mut &data[..]).unwrap();
    // A chunk evicted: reading the blob fails (the caller's miss), never gives less.
    let mut conn = raw(&server.url());
    let () = redis::cmd("DEL")
        .arg(RedisStore::chunk_key(&digest, 2))
        .query(&mut conn)
        .unwrap();
    let err = read_all(&store, &digest).unwrap_err();
    assert!(
        err.to_string().contains(":2 holds 0 of its 1000 bytes"),
        "{err}"
    );
    // The next store of the blob puts it back.
    store.store_blob(&digest, &mut &data[..]).unwrap();
    assert_eq!(read_all(&store, &digest).unwrap(), data);

    // A head of another size is no blob of this digest.
    let () = redis::cmd("SET")
        .arg(RedisStore::head_key(&digest))
        .arg("12 1000")
        .query(&mut conn)
        .unwrap();
    assert!(store.fetch_blob(&digest).unwrap().is_none());
}

#[test]
fn a_password_is_used_and_never_shown() {
    let server = Server::start(&["--requirepass", "s3cret-pw"]);
    let url = format!("redis://:s3cret-pw@127.0.0.1:{}", server.port);
    let store = RedisStore::open(&url).unwrap();
    assert_eq!(
        store.describe(),
        format!("redis://***@127.0.0.1:{}", server.port)
    );
    let key = Key("0b".repeat(32));
    store.store_entry(&key, b"e").unwrap();
    assert_eq!(store.lookup(&key).unwrap().as_deref(), Some(&b"e"[..]));

    let wrong = RedisStore::open(&format!("redis://:not-it-pw@127.0.0.1:{}", server.port)).unwrap();
    let err = wrong.lookup(&key).unwrap_err();
    assert!(matches!(err, StoreError::Refused { .. }), "{err:?}");
    assert!(!err.to_string().contains("not-it-pw"), "{err}");
    assert!(err.to_string().contains("redis://***@127.0.0.1"), "{err}");
    let none = RedisStore::open(&server.url()).unwrap();
    let err = none.lookup(&key).unwrap_err();
    assert!(matches!(err, StoreError::Refused { .. }), "{err:?}");
}

#[test]
fn a_closed_port_and_a_server_that_never_answers_fail_in_time() {
    let closed = RedisStore::open(&format!("redis://127.0.0.1:{}", free_port())).unwrap();
    let started = Instant::now();
    let err = closed.lookup(&Key("0c".repeat(32))).unwrap_err();
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // Accepts the connection (the kernel does, from the backlog) and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://127.0.0.1:{}", silent.local_addr().unwrap().port());
    let mut store = RedisStore::open(&url).unwrap();
    // Connecting already asks (CLIENT SETINFO): the connect bound ends it.
    store.connect = Duration::from_millis(500);
    store.command = Duration::from_millis(500);
    let started = Instant::now();
    let err = store.lookup(&Key("0c".repeat(32))).unwrap_err();
    assert!(
        matches!(err, StoreError::TimedOut { seconds: 1, .. }),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    let data = bytes(10);
    let err = store
        .store_blob(&Digest::of(&data), &mut &data[..])
        .unwrap_err();
    assert!(matches!(err, StoreError::TimedOut { .. }), "{err:?}");
    drop(silent);
}

#[test]
fn a_url_redis_cannot_parse_is_refused_at_open_without_its_password() {
    let Err(err) = RedisStore::open("redis://:pw-hidden@127.0.0.1:notaport") else {
        panic!("a bad port is refused");
    };
    assert!(!err.to_string().contains("pw-hidden"), "{err}");
    assert!(
        err.to_string().contains("redis://***@127.0.0.1:notaport"),
        "{err}"
    );
}
