//! The runner's own secrets, hidden from its tasks and from other local users: the
//! broker password, a cache URL's password and the authkey.
//!
//! A task can read its parent's `/proc/PID/environ` and `/proc/PID/cmdline` (same uid,
//! or root), and every local user can read the command line (`ps`). Removing a variable
//! with `std::env::remove_var` does not change what `/proc/PID/environ` shows: the
//! kernel shows the process's original environment block (`env_start..env_end`,
//! fields 50–51 of `/proc/self/stat`), and the command line from `arg_start..arg_end`
//! (fields 48–49). So at start, once the command line was parsed, [`hide`] keeps the
//! authkey for the broker, overwrites the secrets in place in those two blocks with
//! `*`, and removes the variables from the environment.
//!
//! It also marks the process non-dumpable (`PR_SET_DUMPABLE` 0): its `/proc/PID` files
//! then belong to root, so a task of the same non-root user cannot read its
//! environment or memory, nor trace it. That does not stop a task running as root,
//! which is why the blocks are overwritten too; `cmdline` stays readable by everyone
//! (hence the overwrite), and the flag is reset at `exec`, so tasks are not affected.
//!
//! All `unsafe` code of this is here, in [`overwrite`].

use std::sync::OnceLock;

/// The variables whose values are secret.
const SECRET_VARS: [&str; 4] = [
    "RUNNER_AUTHKEY",
    "RUNNER_BROKER_URL",
    "RUNNER_CACHE_KEY",
    "RUNNER_CACHE_TOKEN",
];

static AUTHKEY: OnceLock<Option<Vec<u8>>> = OnceLock::new();
static CACHE_KEY: OnceLock<Option<Vec<u8>>> = OnceLock::new();
static CACHE_TOKEN: OnceLock<Option<String>> = OnceLock::new();

/// The results cache's HMAC secret from `RUNNER_CACHE_KEY`, as it was at start (the
/// variable is gone since: tasks never see it).
pub fn cache_key() -> Option<Vec<u8>> {
    CACHE_KEY
        .get_or_init(|| std::env::var_os("RUNNER_CACHE_KEY").map(|k| k.into_encoded_bytes()))
        .clone()
        .filter(|k| !k.is_empty())
}

/// The HTTP cache's bearer token from `RUNNER_CACHE_TOKEN`, as it was at start.
pub fn cache_token() -> Option<String> {
    CACHE_TOKEN
        .get_or_init(|| std::env::var("RUNNER_CACHE_TOKEN").ok())
        .clone()
        .filter(|t| !t.is_empty())
}

/// The authkey from `RUNNER_AUTHKEY`, as it was at start (the variable is gone since).
#[cfg_attr(not(feature = "distributed"), allow(dead_code))]
pub fn authkey() -> Option<Vec<u8>> {
    AUTHKEY
        .get_or_init(|| std::env::var_os("RUNNER_AUTHKEY").map(|k| k.into_encoded_bytes()))
        .clone()
        .filter(|k| !k.is_empty())
}

/// Hides the secrets (see the module's comment). Call once, after the command line was
/// parsed (clap reads `RUNNER_BROKER_URL` from the environment) and before any thread
/// or task starts. Returns a warning to print when a password was on the command line.
pub fn hide() -> Option<String> {
    authkey();
    cache_key();
    cache_token();
    let holders = holders(&std::env::args_os().collect::<Vec<_>>());
    // A cache URL with a password in the environment goes the way of the broker's.
    let cache_password = std::env::var_os("RUNNER_CACHE")
        .is_some_and(|url| !password_spans(url.as_encoded_bytes()).is_empty());
    let blocks = Blocks::of_this_process();
    let mut warning = None;
    if blocks.is_none()
        && std::env::args_os().any(|a| !password_spans(a.as_encoded_bytes()).is_empty())
    {
        // Where the blocks cannot be found (macOS: docs/platforms.md), they stay as
        // they are, and so does what `ps` shows.
        warning = Some(visible(&holders, Hidden::Never));
    }
    if let Some(b) = &blocks {
        if overwrite(b.args, password_spans) {
            warning = Some(visible(&holders, Hidden::Now));
        }
        overwrite(b.env, secret_values);
        if cache_password {
            overwrite(b.env, cache_url_password);
        }
    }
    for var in SECRET_VARS {
        // No other thread runs yet (see above), so changing the environment is sound.
        std::env::remove_var(var);
    }
    if cache_password {
        std::env::remove_var("RUNNER_CACHE");
    }
    // Without it, only the overwrite protects; nothing else to do about a failure.
    crate::sys::make_undumpable();
    warning
}

/// Whether a password on the command line was overwritten (`Now`), or stays visible
/// while the runner runs (`Never`: the platform does not say where it is).
#[derive(Clone, Copy)]
enum Hidden {
    Now,
    Never,
}

/// The warning for passwords that were on the command line, naming the options that
/// held them and the variable to use instead.
fn visible(holders: &[&str], hidden: Hidden) -> String {
    let seen = match hidden {
        Hidden::Now => "was visible to other local users (ps, /proc) until now",
        Hidden::Never => "is visible to other local users (ps) while the runner runs",
    };
    let mut told = Vec::new();
    for holder in holders {
        let (what, instead) = match *holder {
            "--broker" => (
                "the broker password given with --broker",
                "RUNNER_BROKER_URL",
            ),
            "--cache" => (
                "the cache password given with --cache",
                "RUNNER_CACHE (or RUNNER_CACHE_TOKEN for an HTTP store)",
            ),
            _ => ("a password in a URL on the command line", ""),
        };
        let line = if instead.is_empty() {
            format!("warning: {what} {seen}")
        } else {
            format!(
                "warning: {what} {seen}; \
                 prefer {instead} or a URL without password on the command line"
            )
        };
        if !told.contains(&line) {
            told.push(line);
        }
    }
    if told.is_empty() {
        told.push(visible(&["another"], hidden));
    }
    told.join("\n")
}

/// The options whose value is a URL with a password (`--broker URL`, `--cache=URL`…):
/// `--broker`, `--cache`, or `another` for any other argument.
fn holders(args: &[std::ffi::OsString]) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut previous: &[u8] = b"";
    for arg in args {
        let bytes = arg.as_encoded_bytes();
        if !password_spans(bytes).is_empty() {
            let option = |name: &str| {
                previous == name.as_bytes() || bytes.starts_with(format!("{name}=").as_bytes())
            };
            out.push(if option("--broker") {
                "--broker"
            } else if option("--cache") {
                "--cache"
            } else {
                "another"
            });
        }
        previous = bytes;
    }
    out
}

/// Where the command line and the environment block are in this process's memory.
struct Blocks {
    args: (usize, usize),
    env: (usize, usize),
}

impl Blocks {
    fn of_this_process() -> Option<Blocks> {
        let (args, env) = crate::sys::argument_blocks()?;
        Some(Blocks { args, env })
    }
}

/// Overwrites with `*` the byte ranges `spans` finds in the block `start..end` of this
/// process's memory; true if there were any.
fn overwrite(block: (usize, usize), spans: fn(&[u8]) -> Vec<(usize, usize)>) -> bool {
    let (start, end) = block;
    if end <= start || end - start > 1 << 24 {
        return false;
    }
    // SAFETY: the kernel reports `start..end` (`sys::argument_blocks`: /proc/self/stat) as this process's
    // argument or environment block, which stays mapped and writable for the process's
    // life (it is the top of the main thread's stack, set up by `execve`). No other
    // thread runs yet, and Rust holds no reference into it: std copied the arguments at
    // start, and the environment's strings are only read through libc's `environ`,
    // whose entries keep their length (bytes are replaced, never NUL-terminated anew).
    let block = unsafe { std::slice::from_raw_parts_mut(start as *mut u8, end - start) };
    let found = spans(block);
    for &(from, to) in &found {
        block[from..to].fill(b'*');
    }
    !found.is_empty()
}

/// The passwords of Redis URLs in a NUL-separated argument block: in
/// `redis://USER:PASSWORD@host`, the bytes after the first `:` of the user part.
fn password_spans(block: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut offset = 0;
    for arg in block.split(|b| *b == 0) {
        if let Some(scheme) = find(arg, b"://") {
            let rest = &arg[scheme + 3..];
            let authority = rest.split(|b| *b == b'/').next().unwrap_or_default();
            if let Some(at) = authority.iter().rposition(|b| *b == b'@') {
                if let Some(colon) = authority[..at].iter().position(|b| *b == b':') {
                    let base = offset + scheme + 3;
                    if colon + 1 < at {
                        out.push((base + colon + 1, base + at));
                    }
                }
            }
        }
        offset += arg.len() + 1;
    }
    out
}

/// The values of the secret variables in a NUL-separated `NAME=value` block.
fn secret_values(block: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut offset = 0;
    for entry in block.split(|b| *b == 0) {
        for var in SECRET_VARS {
            let name = var.len();
            if entry.len() > name + 1 && entry.starts_with(var.as_bytes()) && entry[name] == b'=' {
                out.push((offset + name + 1, offset + entry.len()));
            }
        }
        offset += entry.len() + 1;
    }
    out
}

/// The password of the URL in `RUNNER_CACHE=URL` in a NUL-separated `NAME=value` block.
fn cache_url_password(block: &[u8]) -> Vec<(usize, usize)> {
    const NAME: &[u8] = b"RUNNER_CACHE=";
    let mut out = Vec::new();
    let mut offset = 0;
    for entry in block.split(|b| *b == 0) {
        if let Some(url) = entry.strip_prefix(NAME) {
            let start = offset + NAME.len();
            out.extend(
                password_spans(url)
                    .into_iter()
                    .map(|(from, to)| (start + from, start + to)),
            );
        }
        offset += entry.len() + 1;
    }
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hidden(block: &[u8], spans: fn(&[u8]) -> Vec<(usize, usize)>) -> String {
        let mut b = block.to_vec();
        for (from, to) in spans(block) {
            b[from..to].fill(b'*');
        }
        String::from_utf8(b).unwrap()
    }

    #[test]
    fn passwords_in_urls_are_found_and_nothing_else() {
        let args = b"runner\0run\0--broker\0redis://:pw1@h:1/0\0--broker=rediss://u:p@ss@h\0x@y:z\0redis://h:6379\0";
        assert_eq!(
            hidden(args, password_spans),
            "runner\0run\0--broker\0redis://:***@h:1/0\0--broker=rediss://u:****@h\0x@y:z\0redis://h:6379\0"
        );
    }

    #[test]
    fn the_warning_names_the_option_that_held_the_password() {
        let args: Vec<std::ffi::OsString> = [
            "runner",
            "run",
            "--broker",
            "redis://:pw@h",
            "--cache=http://u:pw@h/",
            "--cache",
            "/tmp/store",
        ]
        .iter()
        .map(Into::into)
        .collect();
        assert_eq!(holders(&args), ["--broker", "--cache"]);
        let text = visible(&holders(&args), Hidden::Now);
        assert!(text.contains("given with --broker was visible"), "{text}");
        assert!(text.contains("prefer RUNNER_BROKER_URL"), "{text}");
        assert!(
            text.contains("the cache password given with --cache"),
            "{text}"
        );
        assert!(text.contains("prefer RUNNER_CACHE "), "{text}");
        assert_eq!(text.lines().count(), 2);
        let text = visible(&holders(&args), Hidden::Never);
        assert!(
            text.contains("given with --broker is visible to other local users (ps) while the runner runs; prefer RUNNER_BROKER_URL"),
            "{text}"
        );
    }

    #[test]
    fn only_the_password_of_a_cache_url_in_the_environment_is_found() {
        let env = b"HOME=/root\0RUNNER_CACHE=redis://:pw@h:1\0RUNNER_CACHES=http://u:p@h\0";
        assert_eq!(
            hidden(env, cache_url_password),
            "HOME=/root\0RUNNER_CACHE=redis://:**@h:1\0RUNNER_CACHES=http://u:p@h\0"
        );
    }

    #[test]
    fn only_the_values_of_the_secret_variables_are_found() {
        let env = b"HOME=/root\0RUNNER_AUTHKEY=k3y\0RUNNER_BROKER_URL=redis://:p@h\0RUNNER_AUTHKEYS=no\0RUNNER_AUTHKEY=\0";
        assert_eq!(
            hidden(env, secret_values),
            "HOME=/root\0RUNNER_AUTHKEY=***\0RUNNER_BROKER_URL=************\0RUNNER_AUTHKEYS=no\0RUNNER_AUTHKEY=\0"
        );
    }
}
