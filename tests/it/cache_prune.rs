//! `runner cache stats DIR` and `runner cache prune DIR --max-size SIZE` (cache.md,
//! Local folder store): the numbers a user reads, what a prune removes and keeps, and
//! folders that are not a cache.
//!
//! Stores are laid out by hand as the folder store writes them (`ac/KK/KEY` entries,
//! Bazel `ActionResult` messages; `cas/KK/SHA256` blobs; `tmp/`), so that each file's
//! age is what the test says.

use crate::util::*;
use sha2::Digest as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// `build.bazel.remote.execution.v2.Digest`, with the official field numbers.
#[derive(Clone, PartialEq, prost::Message)]
struct WireDigest {
    #[prost(string, tag = "1")]
    hash: String,
    #[prost(int64, tag = "2")]
    size_bytes: i64,
}

/// `OutputFile` (path, digest).
#[derive(Clone, PartialEq, prost::Message)]
struct WireOutputFile {
    #[prost(string, tag = "1")]
    path: String,
    #[prost(message, optional, tag = "2")]
    digest: Option<WireDigest>,
}

/// `ActionResult` (output files, stdout).
#[derive(Clone, PartialEq, prost::Message)]
struct ActionResult {
    #[prost(message, repeated, tag = "2")]
    output_files: Vec<WireOutputFile>,
    #[prost(message, optional, tag = "6")]
    stdout_digest: Option<WireDigest>,
}

fn sha(bytes: &[u8]) -> String {
    hex(&sha2::Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn fanned(dir: &Path, kind: &str, name: &str) -> PathBuf {
    dir.join(kind).join(&name[..2]).join(name)
}

fn put(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// Stores a blob; its path.
fn blob(dir: &Path, bytes: &[u8]) -> PathBuf {
    let path = fanned(dir, "cas", &sha(bytes));
    put(&path, bytes);
    path
}

/// Stores an entry named after `label` naming `files` (path, content) and `stdout`;
/// the blobs are stored too. The entry's path.
fn entry(dir: &Path, label: &str, files: &[(&str, &[u8])], stdout: Option<&[u8]>) -> PathBuf {
    use prost::Message as _;
    let digest = |bytes: &[u8]| WireDigest {
        hash: sha(bytes),
        size_bytes: bytes.len() as i64,
    };
    let message = ActionResult {
        output_files: files
            .iter()
            .map(|(path, bytes)| {
                blob(dir, bytes);
                WireOutputFile {
                    path: path.to_string(),
                    digest: Some(digest(bytes)),
                }
            })
            .collect(),
        stdout_digest: stdout.map(|bytes| {
            blob(dir, bytes);
            digest(bytes)
        }),
    };
    let path = fanned(dir, "ac", &sha(label.as_bytes()));
    put(&path, &message.encode_to_vec());
    path
}

/// Sets a file's modification time to `ago` before now.
fn age(path: &Path, ago: Duration) {
    let file = std::fs::File::options().append(true).open(path).unwrap();
    file.set_modified(SystemTime::now() - ago).unwrap();
}

/// 1234567 as "1,234,567", as the runner prints sizes.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

const DAY: Duration = Duration::from_secs(86_400);

fn size_of(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

fn stats_json(t: &Test, dir: &str) -> serde_json::Value {
    let out = t.run_with(&["cache", "stats", dir, "--json"]);
    out.assert_code(0);
    serde_json::from_str(&out.stdout).expect("stats --json is JSON")
}

#[test]
fn cache_stats_counts_entries_blobs_unreferenced_blobs_and_temporary_files() {
    let t = Test::new("");
    let dir = t.path("store");
    let shared = vec![b's'; 3000];
    let a = entry(
        &dir,
        "a",
        &[("out/a", &[b'a'; 1000]), ("out/s", &shared)],
        Some(b"hi\n"),
    );
    let b = entry(
        &dir,
        "b",
        &[("out/b", &[b'b'; 2000]), ("out/s", &shared)],
        None,
    );
    let loose = blob(&dir, &[b'x'; 500]);
    let damaged = fanned(&dir, "ac", &sha(b"damaged"));
    put(&damaged, b"\xff\xff\xff not an ActionResult");
    put(&dir.join("tmp/123.0.host"), &[0; 700]);
    age(&dir.join("tmp/123.0.host"), Duration::from_secs(7200));
    put(&dir.join("tmp/124.0.host"), &[0; 10]);

    let entries = size_of(&a) + size_of(&b) + size_of(&damaged);
    // Blobs: a's 1000, b's 2000, the shared 3000 once, "hi\n", the loose 500.
    let blobs = 1000 + 2000 + 3000 + 3 + 500;
    let json = stats_json(&t, "store");
    assert_eq!(json["entries"]["files"], 3, "{json:#}");
    assert_eq!(json["entries"]["bytes"], entries);
    assert_eq!(json["damaged_entries"]["files"], 1);
    assert_eq!(json["blobs"]["files"], 5);
    assert_eq!(json["blobs"]["bytes"], blobs);
    assert_eq!(json["unreferenced_blobs"]["files"], 1);
    assert_eq!(json["unreferenced_blobs"]["bytes"], size_of(&loose));
    assert_eq!(json["temporary_files"]["files"], 2);
    assert_eq!(json["temporary_files"]["bytes"], 710);
    assert_eq!(json["stale_temporary_files"]["files"], 1);
    assert_eq!(json["total_bytes"], entries + blobs + 710);

    // The text: exact bytes beside human sizes.
    let out = t.run_with(&["cache", "stats", "store"]);
    out.assert_code(0);
    let line = |name: &str| {
        out.stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no `{name}` line:\n{}", out.stdout))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(line("blobs"), "blobs 5 6.4 KiB (6,503 bytes)");
    assert_eq!(
        line("  unreferenced"),
        "unreferenced 1 500 B (500 bytes) (no entry names them)"
    );
    assert!(line("entries ").starts_with("entries 3 "), "{}", out.stdout);
    assert!(line("temporary files").starts_with("temporary files 2 710 B (710 bytes)"));
    assert!(
        line("total").ends_with(&format!("({} bytes)", grouped(entries + blobs + 710))),
        "{}",
        out.stdout
    );
    // Nothing was changed by looking.
    assert!(loose.is_file() && damaged.is_file());
}

#[test]
fn cache_stats_of_an_empty_folder_is_an_empty_cache() {
    let t = Test::new("");
    std::fs::create_dir(t.path("store")).unwrap();
    let json = stats_json(&t, "store");
    assert_eq!(json["entries"]["files"], 0);
    assert_eq!(json["total_bytes"], 0);
}

#[test]
fn cache_prune_keeps_the_newest_entries_and_their_blobs_and_removes_the_rest() {
    let t = Test::new("");
    let dir = t.path("store");
    // Ten entries, each with its own 10 KiB output; entry i last used 10 - i days ago,
    // so entry 9 is the newest. Entries 8 and 9 share a file with entry 0.
    let shared = vec![b'S'; 4096];
    let mut entries = Vec::new();
    let mut outputs = Vec::new();
    for i in 0..10u8 {
        let content = vec![b'0' + i; 10 * 1024];
        let mut files: Vec<(&str, &[u8])> = vec![("out/file", &content)];
        if [0, 8, 9].contains(&i) {
            files.push(("out/shared", &shared));
        }
        let path = entry(&dir, &format!("task {i}"), &files, None);
        age(&path, DAY * (10 - i as u32));
        entries.push(path);
        outputs.push(fanned(&dir, "cas", &sha(&content)));
    }
    for blob in &outputs {
        age(blob, DAY * 20);
    }
    let shared_blob = fanned(&dir, "cas", &sha(&shared));
    age(&shared_blob, DAY * 20);
    // A blob no entry names, old: removed. One written just now (its entry may be on
    // its way): kept.
    let old_loose = blob(&dir, b"old and named by nothing");
    age(&old_loose, DAY * 3);
    let new_loose = blob(&dir, b"just written, its entry on its way");
    // A temporary file a dead writer left two hours ago: removed; one being written: kept.
    put(&dir.join("tmp/1.0.host"), &[0; 100]);
    age(&dir.join("tmp/1.0.host"), Duration::from_secs(7200));
    put(&dir.join("tmp/2.0.host"), &[0; 100]);

    // Room for four entries with their outputs, the shared output, and what is new.
    let entry_bytes = size_of(&entries[9]);
    let max = 4 * (entry_bytes + 10 * 1024) + 4096 + size_of(&new_loose) + 100 + 64;
    let out = t.run_with(&["cache", "prune", "store", "--max-size", &max.to_string()]);
    out.assert_code(0);
    out.assert_stdout_has("removed 6 entries least recently used")
        .assert_stdout_has("removed 7 blobs no entry names")
        .assert_stdout_has("removed 1 temporary files older than an hour");

    for (i, path) in entries.iter().enumerate() {
        assert_eq!(path.is_file(), i >= 6, "entry {i}:\n{}", out.stdout);
        assert_eq!(outputs[i].is_file(), i >= 6, "blob of entry {i}");
    }
    assert!(shared_blob.is_file(), "entries 8 and 9 still name it");
    assert!(!old_loose.exists());
    assert!(
        new_loose.is_file(),
        "a blob written since the start is kept"
    );
    assert!(!dir.join("tmp/1.0.host").exists());
    assert!(dir.join("tmp/2.0.host").exists());
    let json = stats_json(&t, "store");
    assert!(json["total_bytes"].as_u64().unwrap() <= max, "{json:#}");
    assert_eq!(json["entries"]["files"], 4);
    assert_eq!(json["unreferenced_blobs"]["files"], 1, "the new one");
    let left = json["total_bytes"].as_u64().unwrap();
    let said = "store: 4 entries, 6 blobs, ";
    assert!(
        out.stdout.contains(said) && out.stdout.contains(&format!("({} bytes)", grouped(left))),
        "the size left is said:\n{}",
        out.stdout
    );

    // Again with room for everything: nothing more goes.
    let out = t.run_with(&["cache", "prune", "store", "--max-size", "1GiB"]);
    out.assert_code(0).assert_stdout_has("nothing to remove");
    assert!(entries[6].is_file());

    // Size 0: every entry goes, and every blob but the new one.
    let out = t.run_with(&["cache", "prune", "store", "--max-size", "0"]);
    out.assert_code(0)
        .assert_stdout_has("removed 4 entries least recently used");
    let json = stats_json(&t, "store");
    assert_eq!(json["entries"]["files"], 0);
    assert_eq!(json["blobs"]["files"], 1);
    // What cannot go yet is said.
    out.assert_stderr_has("warning:")
        .assert_stderr_has("over 0 B");
}

#[test]
fn cache_prune_removes_damaged_and_broken_entries_and_keeps_entries_used_now() {
    let t = Test::new("");
    let dir = t.path("store");
    let damaged = fanned(&dir, "ac", &sha(b"damaged"));
    put(&damaged, b"\xff\xff\xff not an ActionResult");
    age(&damaged, DAY);
    let broken = entry(&dir, "broken", &[("out/x", b"lost blob")], None);
    std::fs::remove_file(fanned(&dir, "cas", &sha(b"lost blob"))).unwrap();
    age(&broken, DAY);
    // Used just now (a lookup touched it): kept even at size 0.
    let used = entry(&dir, "used", &[("out/y", b"in use")], None);
    let used_blob = fanned(&dir, "cas", &sha(b"in use"));
    age(&used_blob, DAY);
    // An empty output needs no blob: not broken.
    let empty = entry(&dir, "empty", &[("out/empty", b"")], None);
    std::fs::remove_file(fanned(&dir, "cas", &sha(b""))).unwrap();
    age(&empty, DAY);

    let out = t.run_with(&["cache", "prune", "store", "--max-size", "1GiB"]);
    out.assert_code(0)
        .assert_stdout_has("removed 1 damaged entries")
        .assert_stdout_has("removed 1 broken entries");
    assert!(!damaged.exists() && !broken.exists());
    assert!(empty.is_file());

    let out = t.run_with(&["cache", "prune", "store", "--max-size", "0"]);
    out.assert_code(0);
    assert!(used.is_file() && used_blob.is_file(), "{}", out.stdout);
    assert!(!empty.exists());
    out.assert_stderr_has("1 entries used since the prune started");
}

#[test]
fn cache_prune_and_stats_of_what_is_not_a_cache_folder_exit_2() {
    let t = Test::new("");
    t.write("notes/readme.txt", "not a cache");
    t.write("file", "a file");
    for (dir, says) in [
        ("missing", "missing: no such folder"),
        ("file", "file is not a folder"),
        ("notes", "notes is not a cache folder"),
    ] {
        for command in [
            &["cache", "stats", dir][..],
            &["cache", "prune", dir, "--max-size", "1G"],
        ] {
            let out = t.run_with(command);
            out.assert_code(2).assert_stderr_has(says);
            assert_eq!(out.stdout, "", "{command:?}");
        }
    }
    assert_eq!(t.read("notes/readme.txt"), "not a cache");
    assert!(
        !t.path("notes/tmp").exists(),
        "nothing written in a folder that is not a cache"
    );

    std::fs::create_dir(t.path("store")).unwrap();
    let out = t.run_with(&["cache", "prune", "store", "--max-size", "lots"]);
    out.assert_code(2)
        .assert_stderr_has("write e.g. 500M, 2GiB");
    let out = t.run_with(&["cache", "prune", "store"]);
    out.assert_code(2).assert_stderr_has("--max-size");
}

#[test]
fn cache_prune_and_stats_of_an_unreadable_store_exit_2() {
    let t = Test::new("");
    // `ac` is a file where the entries' folder should be: it cannot be listed (root,
    // which these tests may run as, reads folders whatever their mode).
    t.write("store/ac", "not a folder");
    let blob = blob(&t.path("store"), b"kept");
    age(&blob, DAY);
    for command in [
        &["cache", "stats", "store"][..],
        &["cache", "prune", "store", "--max-size", "0"],
    ] {
        let out = t.run_with(command);
        out.assert_code(2)
            .assert_stderr_has("cannot read store/ac: ");
    }
    assert!(
        blob.is_file(),
        "nothing removed from a store that cannot be read whole"
    );
}

/// A project of `n` tasks, each writing `out/I.txt` (`seq 1 I00`, I from 1) from its
/// source `src/I.txt`.
fn seq_project(n: u32) -> Test {
    let t = Test::new_in_target(&format!(
        "[jobs.t]\nitems = {{ range = [1, {}] }}\ncommand = 'mkdir -p out && seq 1 \"$RUNNER_ITEM\"00 > out/\"$RUNNER_ITEM\".txt'\nsources = ['src/{{item}}.txt']\noutputs = ['out/{{item}}.txt']\n",
        n + 1
    ));
    for i in 1..=n {
        t.write(&format!("src/{i}.txt"), &format!("source {i}\n"));
    }
    t
}

fn expected_output(i: u32) -> String {
    (1..=i * 100).map(|k| format!("{k}\n")).collect()
}

/// Runs `runner cache prune DIR --max-size SIZE` over and over until `stop`; how many
/// times it ran, each asserted to exit 0.
fn prune_loop(
    dir: PathBuf,
    max: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<u32> {
    std::thread::spawn(move || {
        let mut times = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) || times == 0 {
            let out = std::process::Command::new(BIN)
                .args(["cache", "prune"])
                .arg(&dir)
                .args(["--max-size", &max])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "prune: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            times += 1;
        }
        times
    })
}

#[test]
fn cache_prune_in_a_loop_never_breaks_a_restore_running_at_the_same_time() {
    const N: u32 = 100;
    let first = seq_project(N);
    let store = first.path("store");
    first
        .run_with(&["run", "jobs.toml", "--cache", store.to_str().unwrap()])
        .assert_code(0);
    // Everything stored is a day old; junk older still (two days), which a prune to
    // the store's real size must remove first.
    let mut real = 0;
    for kind in ["ac", "cas"] {
        for fan in std::fs::read_dir(store.join(kind)).unwrap() {
            for file in std::fs::read_dir(fan.unwrap().path()).unwrap() {
                let path = file.unwrap().path();
                real += size_of(&path);
                age(&path, DAY);
            }
        }
    }
    for i in 0..200 {
        let junk = entry(
            &store,
            &format!("junk {i}"),
            &[("out/junk", &[b'j'; 2048])],
            None,
        );
        age(&junk, DAY * 2);
    }
    age(&fanned(&store, "cas", &sha(&[b'j'; 2048])), DAY * 2);
    let max = (real + 1024).to_string();

    // While prunes down to the real size run in a loop, a fresh copy restores every
    // task: none of what it uses goes.
    let second = seq_project(N);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pruning = prune_loop(store.clone(), max, stop.clone());
    let out = second.run_with(&["run", "jobs.toml", "--cache", store.to_str().unwrap()]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(pruning.join().unwrap() >= 1);
    out.assert_code(0)
        .assert_stderr_has(&format!("cache: {N} restored"));
    for i in 1..=N {
        assert_eq!(
            second.read(&format!("out/{i}.txt")),
            expected_output(i),
            "out/{i}.txt"
        );
    }
    let json = stats_json(&first, "store");
    assert_eq!(
        json["entries"]["files"], N,
        "the junk went, the real entries stayed: {json:#}"
    );

    // Prunes to size 0 in a loop: what a run has not found yet may go, and is then run
    // instead; whatever happens, every file is right and the run succeeds.
    for kind in ["ac", "cas"] {
        for fan in std::fs::read_dir(store.join(kind)).unwrap() {
            for file in std::fs::read_dir(fan.unwrap().path()).unwrap() {
                age(&file.unwrap().path(), DAY);
            }
        }
    }
    let third = seq_project(N);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pruning = prune_loop(store.clone(), "0".into(), stop.clone());
    let out = third.run_with(&["run", "jobs.toml", "--cache", store.to_str().unwrap()]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(pruning.join().unwrap() >= 1);
    out.assert_code(0);
    for i in 1..=N {
        assert_eq!(
            third.read(&format!("out/{i}.txt")),
            expected_output(i),
            "out/{i}.txt"
        );
    }
    let names: Vec<_> = std::fs::read_dir(third.path("out"))
        .unwrap()
        .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), N as usize, "no temporary file left: {names:?}");
}
