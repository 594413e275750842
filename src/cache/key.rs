//! The cache key of a task (cache.md, Which tasks, and the key): everything that
//! decides its result, and nothing that differs between two checkouts of one project.
//! SHA-256 over a length-prefixed encoding (no two different inputs encode alike), in
//! lowercase hex. Never an absolute path: paths are relative to the job file's folder.

use super::{Key, FORMAT};
use sha2::{Digest as _, Sha256};

/// What enters a task's key.
pub struct Inputs<'a> {
    /// The task's identity (state.md): job, command, stdin, env, cwd, label, vars.
    pub identity: u128,
    /// Each matched source: its path (relative, as found) and its content hash.
    pub sources: &'a [(&'a [u8], [u8; 32])],
    /// The `outputs` patterns, as declared after substitution.
    pub outputs: &'a [String],
    /// `cache_env`: each name and the host's value (`None` when unset).
    pub env: &'a [(String, Option<String>)],
}

/// The key of a task with these inputs, on this operating system and architecture.
pub fn of(inputs: &Inputs<'_>) -> Key {
    of_on(inputs, std::env::consts::OS, std::env::consts::ARCH)
}

/// [`of`] for another platform: the platform is part of the key.
pub fn of_on(inputs: &Inputs<'_>, os: &str, arch: &str) -> Key {
    let mut h = Sha256::new();
    h.update(b"runner cache");
    h.update(FORMAT.to_le_bytes());
    field(&mut h, os.as_bytes());
    field(&mut h, arch.as_bytes());
    h.update(inputs.identity.to_le_bytes());
    count(&mut h, inputs.sources.len());
    let mut sources: Vec<&(&[u8], [u8; 32])> = inputs.sources.iter().collect();
    sources.sort();
    for (path, hash) in sources {
        field(&mut h, path);
        h.update(hash);
    }
    count(&mut h, inputs.outputs.len());
    for pattern in inputs.outputs {
        field(&mut h, pattern.as_bytes());
    }
    let mut env: Vec<&(String, Option<String>)> = inputs.env.iter().collect();
    env.sort();
    count(&mut h, env.len());
    for (name, value) in env {
        field(&mut h, name.as_bytes());
        match value {
            None => h.update([0u8]),
            Some(value) => {
                h.update([1u8]);
                field(&mut h, value.as_bytes());
            }
        }
    }
    Key(hex::encode(h.finalize()))
}

fn count(h: &mut Sha256, n: usize) {
    h.update((n as u64).to_le_bytes());
}

fn field(h: &mut Sha256, bytes: &[u8]) {
    count(h, bytes.len());
    h.update(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs<'a>(
        sources: &'a [(&'a [u8], [u8; 32])],
        outputs: &'a [String],
        env: &'a [(String, Option<String>)],
    ) -> Inputs<'a> {
        Inputs {
            identity: 7,
            sources,
            outputs,
            env,
        }
    }

    #[test]
    fn every_input_changes_the_key_and_order_does_not() {
        let a: &[u8] = b"a.txt";
        let b: &[u8] = b"b.txt";
        let sources = [(a, [1u8; 32]), (b, [2u8; 32])];
        let swapped = [(b, [2u8; 32]), (a, [1u8; 32])];
        let outputs = ["out/a".to_string()];
        let env = [("CC".to_string(), Some("gcc".to_string()))];
        let base = of(&inputs(&sources, &outputs, &env));
        assert_eq!(base.0.len(), 64);
        assert_eq!(base, of(&inputs(&swapped, &outputs, &env)));
        let changed = [(a, [1u8; 32]), (b, [3u8; 32])];
        assert_ne!(base, of(&inputs(&changed, &outputs, &env)));
        assert_ne!(base, of(&inputs(&sources, &["out/b".to_string()], &env)));
        let unset = [("CC".to_string(), None)];
        assert_ne!(base, of(&inputs(&sources, &outputs, &unset)));
        let empty = [("CC".to_string(), Some(String::new()))];
        assert_ne!(
            of(&inputs(&sources, &outputs, &unset)),
            of(&inputs(&sources, &outputs, &empty))
        );
        let mut other = inputs(&sources, &outputs, &env);
        other.identity = 8;
        assert_ne!(base, of(&other));
        assert_ne!(
            base,
            of_on(
                &inputs(&sources, &outputs, &env),
                "macos",
                std::env::consts::ARCH
            )
        );
        assert_ne!(
            base,
            of_on(
                &inputs(&sources, &outputs, &env),
                std::env::consts::OS,
                "riscv64"
            )
        );
    }
}
