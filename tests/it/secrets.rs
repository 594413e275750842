//! Secrets of a distributed run (the broker password, the authkey) are not readable by
//! the runner's own tasks: a task reads its parent's `/proc/PID/environ` and
//! `/proc/PID/cmdline`, the places a secret of the runner would show.

use crate::distributed::{Redis, Worker};
use crate::util::Test;

const PASSWORD: &str = "pw-f00dcafe";
const AUTHKEY: &str = "key-beadfeed";

/// A single task (on the coordinator) and a fan-out task (on the worker, `--no-local`),
/// each writing what it can read of its parent's environment and command line.
const PEEK: &str = "[jobs.here]\ncommand = 'tr \"\\\\0\" \"\\\\n\" < /proc/$PPID/environ > here.env; tr \"\\\\0\" \" \" < /proc/$PPID/cmdline > here.cmd'\n[jobs.there]\ncommand = 'tr \"\\\\0\" \"\\\\n\" < /proc/$PPID/environ > there-{item}.env; tr \"\\\\0\" \" \" < /proc/$PPID/cmdline > there-{item}.cmd'\nitems = [1]\n";

fn assert_nothing_secret(t: &Test, files: &[&str]) {
    for file in files {
        let text = t.read(file);
        assert!(!text.is_empty(), "{file}: the task could read it");
        assert!(
            !text.contains(PASSWORD) && !text.contains(AUTHKEY),
            "{file} shows a secret: {text}"
        );
    }
    assert!(t.read("here.cmd").contains("run"), "{}", t.read("here.cmd"));
    assert!(t.read("there-1.cmd").contains("worker"));
    assert!(t.read("here.env").contains("NO_COLOR=1"));
}

/// The password on the coordinator's command line, in the worker's environment.
#[test]
fn tasks_cannot_read_a_password_given_by_argument_or_the_authkey() {
    let redis = Redis::start(&["--requirepass", PASSWORD]);
    let url = format!("redis://:{PASSWORD}@127.0.0.1:{}", redis.port);
    let t = Test::new(PEEK)
        .args(&["--broker", &url, "--no-local"])
        .env("RUNNER_AUTHKEY", AUTHKEY);
    let w = Worker::start(
        &t,
        "jobs.toml",
        "",
        &["--pool", "1"],
        &[("RUNNER_AUTHKEY", AUTHKEY), ("RUNNER_BROKER_URL", &url)],
    );
    let out = t.run();
    out.assert_code(0)
        .assert_stderr_has("visible to other local users");
    assert!(!out.stderr.contains(PASSWORD), "{}", out.stderr);
    let err = w.finish();
    assert!(
        !err.contains("visible to other"),
        "no password in its argv: {err}"
    );
    assert_nothing_secret(&t, &["here.env", "here.cmd", "there-1.env", "there-1.cmd"]);
}

/// The password in the coordinator's environment, on the worker's command line.
#[test]
fn tasks_cannot_read_a_password_given_by_variable_or_the_authkey() {
    let redis = Redis::start(&["--requirepass", PASSWORD]);
    let url = format!("redis://:{PASSWORD}@127.0.0.1:{}", redis.port);
    let t = Test::new(PEEK)
        .args(&["--no-local"])
        .env("RUNNER_BROKER_URL", &url)
        .env("RUNNER_AUTHKEY", AUTHKEY);
    let w = Worker::start(
        &t,
        "jobs.toml",
        &url,
        &["--pool", "1"],
        &[("RUNNER_AUTHKEY", AUTHKEY)],
    );
    let out = t.run();
    out.assert_code(0);
    assert!(!out.stderr.contains("visible to other"), "{}", out.stderr);
    let err = w.finish();
    assert!(err.contains("visible to other local users"), "{err}");
    assert_nothing_secret(&t, &["here.env", "here.cmd", "there-1.env", "there-1.cmd"]);
}

/// A cache URL's password on the command line: the warning names `--cache` and
/// `RUNNER_CACHE`, never the broker; in `RUNNER_CACHE`, no warning, and neither the task's
/// environment nor its parent's shows it. (The job is not cacheable: no store is asked.)
#[test]
fn a_cache_password_is_said_as_the_caches_and_hidden_from_tasks() {
    const PEEK_CACHE: &str = "[jobs.here]\ncommand = 'env > mine.env; tr \"\\\\0\" \"\\\\n\" < /proc/$PPID/environ > here.env; tr \"\\\\0\" \" \" < /proc/$PPID/cmdline > here.cmd'\n";
    let url = format!("http://user:{PASSWORD}@127.0.0.1:9/");
    let t = Test::new(PEEK_CACHE).args(&["--cache", &url]);
    let out = t.run();
    out.assert_code(0).assert_stderr_has(
        "warning: the cache password given with --cache was visible to other local users",
    );
    out.assert_stderr_has("prefer RUNNER_CACHE");
    assert!(!out.stderr.contains("broker"), "{}", out.stderr);
    assert!(
        !t.read("here.cmd").contains(PASSWORD),
        "{}",
        t.read("here.cmd")
    );

    let t = Test::new(PEEK_CACHE).env("RUNNER_CACHE", &url);
    let out = t.run();
    out.assert_code(0);
    assert!(!out.stderr.contains("visible to other"), "{}", out.stderr);
    for file in ["mine.env", "here.env"] {
        let text = t.read(file);
        assert!(text.contains("NO_COLOR=1"), "{file}: {text}");
        assert!(
            !text.contains(PASSWORD),
            "{file} shows the password: {text}"
        );
    }
}
