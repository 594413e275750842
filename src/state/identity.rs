//! Task identity: what a task is, as a hash, so that a later run can tell whether it
//! already did this exact task. A task is its job's name and what it would do: its
//! rendered command (argv, or the shell and its script), its stdin (the payload's bytes,
//! or the stdin file's content), its environment additions, its cwd and its item's
//! label. Change any of them and it is another task. The `RUNNER_*` variables (slot,
//! attempt, run id) are not part of it: they differ from run to run. The vars
//! (`RUNNER_VAR_<NAME>`) are: a script may read one without a placeholder.
//!
//! Hashed with BLAKE3 over a length-prefixed encoding (so that no two different tasks
//! encode alike); 128 bits are kept. A second, shorter hash, the task's *key* (job and
//! label only), tells "this item ran before, but as something else" (`command changed`).

use super::files::{Hashes, Stat};
use crate::render::{Command, Rendered, Stdin};
use std::path::Path;

/// 128 bits of a task's BLAKE3 identity.
pub type Identity = u128;

/// The task's identity. `dir` is the job file's folder: the cwd counts relative to it, so
/// that the same project in another folder (a fresh CI checkout) has the same tasks. A
/// stdin file is read to hash its content (once per run and stat, through `hashes`); one
/// that cannot be read makes an identity of its own (the task will fail to start anyway).
/// The task whose identity is asked for: its job, its item's label, and, for the
/// second and later of equal items, which one it is (0 for the first, which adds
/// nothing: the identities of jobs without equal items are as they always were).
pub struct Task<'a> {
    pub job: &'a str,
    pub label: &'a str,
    pub occurrence: u32,
}

pub fn of(dir: &Path, task: &Task<'_>, rendered: &Rendered, hashes: &Hashes) -> Identity {
    let Task { job, label, .. } = *task;
    let mut h = blake3::Hasher::new();
    h.update(b"runner task v1");
    field(&mut h, job.as_bytes());
    match &rendered.command {
        Command::Argv(argv) => {
            field(&mut h, b"argv");
            list(&mut h, argv);
        }
        Command::Shell { shell, script } => {
            field(&mut h, b"shell");
            list(&mut h, shell);
            field(&mut h, script.as_bytes());
        }
    }
    match &rendered.stdin {
        Stdin::Null => field(&mut h, b"stdin:none"),
        Stdin::Bytes(bytes) => {
            field(&mut h, b"stdin:bytes");
            field(&mut h, bytes);
        }
        Stdin::File(path) => {
            field(&mut h, b"stdin:file");
            // A regular file counts by its content; a FIFO or a device (which may never
            // end, or block until a writer comes) by its path.
            match std::fs::metadata(path) {
                Ok(m) if m.is_file() => match hashes.hash(path, &Stat::of(&m)) {
                    Ok(hash) => field(&mut h, &hash),
                    Err(e) => field(&mut h, format!("unreadable: {e}").as_bytes()),
                },
                Ok(_) => field(&mut h, path.as_os_str().as_encoded_bytes()),
                Err(e) => field(&mut h, format!("unreadable: {e}").as_bytes()),
            }
        }
        Stdin::Queue(q) => {
            field(&mut h, b"stdin:queue");
            field(&mut h, &q.to_le_bytes());
        }
    }
    // By name: the order the job file lists them in changes nothing the task sees.
    let mut env: Vec<&(String, String)> = rendered.env.iter().collect();
    env.sort();
    h.update(&(env.len() as u64).to_le_bytes());
    for (name, value) in env {
        field(&mut h, name.as_bytes());
        field(&mut h, value.as_bytes());
    }
    let cwd = rendered.cwd.strip_prefix(dir).unwrap_or(&rendered.cwd);
    field(&mut h, cwd.as_os_str().as_encoded_bytes());
    field(&mut h, label.as_bytes());
    occurrence(&mut h, task.occurrence);
    vars(&mut h, &rendered.vars);
    first_128(h.finalize())
}

/// The vars every task gets as `RUNNER_VAR_<NAME>`: a script may read one without a
/// placeholder, so a var's value is part of every task of the file. A file without vars
/// adds nothing (its identities are as they were before tasks got vars).
fn vars(h: &mut blake3::Hasher, vars: &[(String, String)]) {
    if vars.is_empty() {
        return;
    }
    field(h, b"vars");
    let mut vars: Vec<&(String, String)> = vars.iter().collect();
    vars.sort();
    h.update(&(vars.len() as u64).to_le_bytes());
    for (name, value) in vars {
        field(h, name.as_bytes());
        field(h, value.as_bytes());
    }
}

/// The task's key: its job and label (and which of equal items), whatever it runs.
pub fn key(task: &Task<'_>) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(b"runner key v1");
    field(&mut h, task.job.as_bytes());
    field(&mut h, task.label.as_bytes());
    occurrence(&mut h, task.occurrence);
    let bytes = h.finalize();
    u64::from_le_bytes(bytes.as_bytes()[..8].try_into().expect("8 bytes"))
}

fn occurrence(h: &mut blake3::Hasher, n: u32) {
    if n > 0 {
        field(h, b"occurrence");
        h.update(&u64::from(n).to_le_bytes());
    }
}

fn first_128(hash: blake3::Hash) -> Identity {
    u128::from_le_bytes(hash.as_bytes()[..16].try_into().expect("16 bytes"))
}

fn field(h: &mut blake3::Hasher, bytes: &[u8]) {
    h.update(&(bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

fn list(h: &mut blake3::Hasher, items: &[String]) {
    h.update(&(items.len() as u64).to_le_bytes());
    for item in items {
        field(h, item.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn id(job: &str, label: &str, rendered: &Rendered) -> Identity {
        let task = Task {
            job,
            label,
            occurrence: 0,
        };
        of(Path::new("."), &task, rendered, &Hashes::default())
    }

    fn rendered(argv: &[&str]) -> Rendered {
        Rendered {
            command: Command::Argv(argv.iter().map(|s| s.to_string()).collect()),
            env: Vec::new(),
            cwd: PathBuf::from("."),
            stdin: Stdin::Null,
            fields: Vec::new(),
            sources: Vec::new(),
            outputs: Vec::new(),
            vars: Vec::new(),
            secrets: Vec::new(),
        }
    }

    #[test]
    fn vars_are_part_of_it_and_a_file_without_vars_is_as_before() {
        let plain = rendered(&["echo", "a"]);
        // Pinned: a file without vars keeps the identities it had before tasks got
        // `RUNNER_VAR_<NAME>` (no task reruns because of the upgrade).
        let mut h = blake3::Hasher::new();
        h.update(b"runner task v1");
        field(&mut h, b"j");
        field(&mut h, b"argv");
        list(&mut h, &["echo".to_string(), "a".to_string()]);
        field(&mut h, b"stdin:none");
        h.update(&0u64.to_le_bytes());
        field(&mut h, b"");
        field(&mut h, b"a");
        assert_eq!(id("j", "a", &plain), first_128(h.finalize()));
        let with = |value: &str| Rendered {
            vars: vec![("RUNNER_VAR_PROFILE".into(), value.into())],
            ..plain.clone()
        };
        assert_ne!(id("j", "a", &plain), id("j", "a", &with("dev")));
        assert_ne!(id("j", "a", &with("dev")), id("j", "a", &with("release")));
        assert_eq!(id("j", "a", &with("dev")), id("j", "a", &with("dev")));
    }

    #[test]
    fn any_part_changes_the_identity() {
        let base = id("j", "a", &rendered(&["echo", "a"]));
        assert_eq!(base, id("j", "a", &rendered(&["echo", "a"])));
        assert_ne!(base, id("k", "a", &rendered(&["echo", "a"])));
        assert_ne!(base, id("j", "b", &rendered(&["echo", "a"])));
        assert_ne!(base, id("j", "a", &rendered(&["echo", "a", ""])));
        assert_ne!(base, id("j", "a", &rendered(&["echo a"])));
        let mut env = rendered(&["echo", "a"]);
        env.env.push(("X".into(), "1".into()));
        assert_ne!(base, id("j", "a", &env));
        // The order of the variables is not part of it.
        env.env.push(("A".into(), "2".into()));
        let mut sorted = env.clone();
        sorted.env.sort();
        assert_eq!(id("j", "a", &env), id("j", "a", &sorted));
        // The second of two equal items is another task; the first is as before.
        let second = Task {
            job: "j",
            label: "a",
            occurrence: 1,
        };
        let first = Task {
            occurrence: 0,
            ..second
        };
        let plain = rendered(&["echo", "a"]);
        let hashes = Hashes::default();
        assert_eq!(of(Path::new("."), &first, &plain, &hashes), base);
        assert_ne!(of(Path::new("."), &second, &plain, &hashes), base);
        assert_ne!(key(&second), key(&first));
        let mut cwd = rendered(&["echo", "a"]);
        cwd.cwd = PathBuf::from("sub");
        assert_ne!(base, id("j", "a", &cwd));
        let mut stdin = rendered(&["echo", "a"]);
        stdin.stdin = Stdin::Bytes(b"x".to_vec());
        assert_ne!(base, id("j", "a", &stdin));
        // A shell string is not the same as argv with the same words.
        let shell = Rendered {
            command: Command::Shell {
                shell: vec!["sh".into(), "-c".into()],
                script: "echo a".into(),
            },
            ..rendered(&[])
        };
        assert_ne!(
            id("j", "a", &shell),
            id("j", "a", &rendered(&["sh", "-c", "echo a"]))
        );
    }

    #[test]
    fn a_stdin_file_counts_by_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.txt");
        std::fs::write(&path, "one").unwrap();
        let mut task = rendered(&["cat"]);
        task.stdin = Stdin::File(path.clone());
        let first = id("j", "", &task);
        std::fs::write(&path, "two").unwrap();
        assert_ne!(first, id("j", "", &task));
        std::fs::write(&path, "one").unwrap();
        assert_eq!(first, id("j", "", &task));
    }
}
