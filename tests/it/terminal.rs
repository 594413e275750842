//! The runner in a real terminal (tmux): live bars, task lines above them, Ctrl-C typed
//! as a person would, and the screen afterwards.
//!
//! They need tmux, so they are `#[ignore]`d: `cargo nextest run --run-ignored all` (or
//! `cargo test -- --include-ignored`, as `scripts/test` does) runs them, and they fail,
//! never pass, when tmux is missing.

use crate::util::{marker, processes_with, wait_for, Test, BIN};
use std::process::Command;
use std::time::Duration;

/// A tmux server of our own, killed when the test ends.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(name: &str, dir: &std::path::Path, command: &str) -> Tmux {
        assert!(
            Command::new("tmux").arg("-V").output().is_ok(),
            "tmux is not installed: run scripts/test, which installs it"
        );
        let tmux = Tmux {
            socket: format!("runner-test-{name}-{}", std::process::id()),
        };
        let shell = format!("cd '{}' && env -u CI -u NO_COLOR TERM=xterm-256color {command}; echo EXIT=$?; sleep 600", dir.display());
        let ok = tmux
            .cmd(&[
                "new-session",
                "-d",
                "-s",
                "t",
                "-x",
                "110",
                "-y",
                "30",
                &shell,
            ])
            .status()
            .unwrap()
            .success();
        assert!(ok, "tmux starts");
        tmux
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket, "-f", "/dev/null"]).args(args);
        c
    }

    fn screen(&self) -> String {
        let out = self
            .cmd(&["capture-pane", "-p", "-t", "t"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn wait_for_screen(&self, text: &str) -> String {
        self.wait_for_screen_with(&[text])
    }

    /// Waits until the screen shows every one of `texts` at once, and returns it.
    fn wait_for_screen_with(&self, texts: &[&str]) -> String {
        let mut screen = String::new();
        let found = wait_for(Duration::from_secs(20), || {
            screen = self.screen();
            texts.iter().all(|text| screen.contains(text))
        });
        let missing: Vec<&&str> = texts.iter().filter(|t| !screen.contains(**t)).collect();
        assert!(found, "{missing:?} never appeared on screen:\n{screen}");
        screen
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]).status();
    }
}

#[test]
#[ignore = "needs tmux; scripts/test runs ignored tests"]
fn live_bars_then_ctrl_c_then_the_summary() {
    let mark = marker("tty");
    let t = Test::new("");
    std::fs::copy("/bin/sleep", t.path(&format!("sleep-{mark}"))).unwrap();
    t.write(
        "jobs.toml",
        &format!(
            "pool = 3\n[jobs.quick]\ncommand = 'echo hello from {{item}}'\nitems = [1, 2, 3]\n[jobs.eof]\ncommand = 'cat; echo stdin-closed'\n[jobs.long]\ncommand = './sleep-{mark} 1000'\nitems = {{ range = [0, 4] }}\nneeds = ['quick']\n"
        ),
    );
    let tmux = Tmux::start("bars", t.dir.path(), &format!("{BIN} jobs.toml --grace 2s"));
    // Task lines above the bars; a task reading stdin sees its end, even in a terminal;
    // the overall line; a bar for the running job. (The bar of `long` may show before
    // `eof` ends: wait for all of them rather than for the first.)
    let live = tmux.wait_for_screen_with(&[
        "[quick:2] hello from 2",
        "[eof] stdin-closed",
        "tasks done",
        "long ",
        "/4",
    ]);
    let bars = live.lines().position(|l| l.contains("tasks done"));
    let above = live
        .lines()
        .position(|l| l.contains("[quick:2] hello from 2"));
    assert!(above < bars, "task lines above the bars:\n{live}");
    assert!(wait_for(Duration::from_secs(10), || processes_with(&mark)
        .len()
        >= 2));
    tmux.cmd(&["send-keys", "-t", "t", "C-c"]).status().unwrap();
    let end = tmux.wait_for_screen("EXIT=");
    assert!(end.contains("EXIT=130"), "{end}");
    assert!(end.contains("interrupted (SIGINT)"), "{end}");
    assert!(
        end.lines().any(|l| l.starts_with("long ")),
        "the summary table:\n{end}"
    );
    assert!(
        !end.contains("tasks done"),
        "bars are cleared at the end:\n{end}"
    );
    let gone = wait_for(Duration::from_secs(3), || processes_with(&mark).is_empty());
    assert!(gone, "left behind: {:?}", processes_with(&mark));
    std::fs::write(t.path("screen.txt"), &end).unwrap();
}

#[test]
#[ignore = "needs tmux; scripts/test runs ignored tests"]
fn more_running_jobs_than_rows_stay_readable() {
    let mark = marker("rows");
    let t = Test::new("");
    std::fs::copy("/bin/sleep", t.path(&format!("sleep-{mark}"))).unwrap();
    let mut jobs = String::from("pool = 80\n");
    for j in 0..30 {
        jobs.push_str(&format!(
            "[jobs.job{j:02}]\ncommand = './sleep-{mark} 1000'\nitems = [1, 2]\n"
        ));
    }
    t.write("jobs.toml", &jobs);
    let tmux = Tmux::start("rows", t.dir.path(), &format!("{BIN} jobs.toml --grace 1s"));
    let live = tmux.wait_for_screen("60 running");
    let bar_lines = live.lines().filter(|l| l.starts_with("  job")).count();
    assert!(
        (1..=28).contains(&bar_lines),
        "bars fit the 30 rows:\n{live}"
    );
    assert!(
        live.lines()
            .any(|l| l.contains("0/60 tasks done, 0 failed, 60 running")),
        "{live}"
    );
    // Nothing starts or ends from here on, yet the bars' clocks keep moving.
    tmux.wait_for_screen("running, 0 failed, 2s");
    tmux.cmd(&["send-keys", "-t", "t", "C-c"]).status().unwrap();
    let end = tmux.wait_for_screen("EXIT=");
    assert!(end.contains("EXIT=130"), "{end}");
    let gone = wait_for(Duration::from_secs(5), || processes_with(&mark).is_empty());
    assert!(gone, "left behind: {:?}", processes_with(&mark));
}

#[test]
#[ignore = "needs tmux; scripts/test runs ignored tests"]
fn grouped_output_waits_while_the_bars_move() {
    // Each task prints a line, then waits for its go file: its output is held, yet the
    // bars show the tasks running and the clock moving; when they end, each task's two
    // lines come together above the bars.
    let t = Test::new(
        "pool = 2\noutput = 'grouped'\n[jobs.g]\ncommand = 'echo first {item}; while [ ! -e go-{item} ]; do sleep 0.05; done; echo second {item}'\nitems = ['a', 'b']\n",
    );
    let tmux = Tmux::start("grouped", t.dir.path(), &format!("{BIN} jobs.toml"));
    let live = tmux.wait_for_screen_with(&[
        "0/2 tasks done, 0 failed, 2 running",
        "2 running, 0 failed, 2s",
    ]);
    assert!(!live.contains("first"), "grouped output waits:\n{live}");
    t.write("go-b", "");
    let after_b = tmux.wait_for_screen_with(&["[g:b] second b", "1/2 tasks done"]);
    let lines: Vec<&str> = after_b.lines().collect();
    let first = lines
        .iter()
        .position(|l| *l == "[g:b] first b")
        .expect("b's first line");
    assert_eq!(lines[first + 1], "[g:b] second b", "{after_b}");
    assert!(!after_b.contains("[g:a]"), "{after_b}");
    t.write("go-a", "");
    let end = tmux.wait_for_screen("EXIT=");
    assert!(end.contains("EXIT=0"), "{end}");
    assert!(end.contains("[g:a] first a\n[g:a] second a"), "{end}");
}
