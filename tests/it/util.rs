//! A small builder that drives the real `runner` binary on a job file in a temporary
//! folder, and helpers that look at what a user would: exit status, lines, files and
//! processes left behind.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_runner");

pub struct Test {
    pub dir: tempfile::TempDir,
    args: Vec<String>,
    env: Vec<(String, String)>,
    stdin: Option<Vec<u8>>,
}

pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Lines of stdout that a task printed, label removed, for tasks whose label is `label`.
    pub fn lines_of(&self, label: &str) -> Vec<String> {
        let prefix = format!("[{label}] ");
        self.stdout
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .map(str::to_string)
            .collect()
    }

    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Output {
        assert_eq!(
            self.code,
            Some(code),
            "exit status\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    #[track_caller]
    pub fn assert_stderr_has(&self, text: &str) -> &Output {
        assert!(
            self.stderr.contains(text),
            "stderr lacks {text:?}:\n{}",
            self.stderr
        );
        self
    }

    #[track_caller]
    pub fn assert_stdout_has(&self, text: &str) -> &Output {
        assert!(
            self.stdout.contains(text),
            "stdout lacks {text:?}:\n{}",
            self.stdout
        );
        self
    }
}

impl Test {
    pub fn new(jobfile: &str) -> Test {
        let t = Test {
            dir: tempfile::tempdir().expect("temp dir"),
            args: Vec::new(),
            env: Vec::new(),
            stdin: None,
        };
        t.write("jobs.toml", jobfile);
        t
    }

    /// Like `new`, in cargo's temporary folder for tests (in the target folder): on this
    /// machine's /tmp, creating many files costs twenty times as much.
    pub fn new_in_target(jobfile: &str) -> Test {
        let t = Test {
            dir: tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir"),
            args: Vec::new(),
            env: Vec::new(),
            stdin: None,
        };
        t.write("jobs.toml", jobfile);
        t
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, content: &str) -> &Test {
        let path = self.path(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(path, content).unwrap();
        self
    }

    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }

    pub fn args(mut self, args: &[&str]) -> Test {
        self.args.extend(args.iter().map(|s| s.to_string()));
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Test {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn stdin(mut self, data: &[u8]) -> Test {
        self.stdin = Some(data.to_vec());
        self
    }

    /// The command that `run` runs: `runner run jobs.toml ARGS…` unless ARGS name a
    /// command.
    pub fn command(&self) -> Command {
        self.command_for(&self.args)
    }

    fn command_for(&self, args: &[String]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.current_dir(self.dir.path());
        let has_command = args.first().is_some_and(|a| {
            [
                "run",
                "check",
                "plan",
                "graph",
                "report",
                "cache",
                "worker",
                "schema",
                "completions",
            ]
            .contains(&a.as_str())
        });
        if has_command {
            cmd.args(args);
        } else {
            cmd.arg("run").arg("jobs.toml").args(args);
        }
        cmd.env_remove("CI")
            .env_remove("GITHUB_ACTIONS")
            .env_remove("GITHUB_STEP_SUMMARY")
            .env_remove("GITLAB_CI")
            .env_remove("RUNNER_BROKER_URL")
            .env_remove("RUNNER_AUTHKEY")
            .env_remove("RUNNER_CACHE")
            .env_remove("RUNNER_CACHE_KEY")
            .env_remove("RUNNER_CACHE_TOKEN");
        cmd.env("NO_COLOR", "1");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Starts the runner with stdout and stderr piped, for tests that act while it runs.
    pub fn spawn(&self) -> std::process::Child {
        let mut cmd = self.command();
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.spawn().expect("runner starts")
    }

    /// The JSON report a run was asked for (`--report FILE`), when it wrote one: checked
    /// against docs/runner-report.schema.json, so that every report the suite writes
    /// has only the keys the schema lists, of the types it says.
    fn check_report(&self, args: &[String]) {
        let named = args
            .iter()
            .enumerate()
            .find_map(|(i, a)| match a.strip_prefix("--report=") {
                Some(path) => Some(path.to_string()),
                None if a == "--report" => args.get(i + 1).cloned(),
                None => None,
            });
        if let Some(path) = named {
            let path = self.dir.path().join(path);
            // Only a file: a test may point the report at /dev/full, which reads for ever.
            if !std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
                return;
            }
            if let Ok(text) = std::fs::read_to_string(&path) {
                if let Ok(report) = serde_json::from_str(&text) {
                    assert_report_fits(&report, &path);
                }
            }
        }
    }

    /// How many lines a file (written by tasks) has now.
    pub fn lines_in(&self, name: &str) -> usize {
        self.read(name).lines().count()
    }

    /// Runs `runner ARGS…` (as `command` builds it) in the test's folder, stdin empty.
    pub fn run_with(&self, args: &[&str]) -> Output {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let out = self
            .command_for(&args)
            .stdin(Stdio::null())
            .output()
            .expect("runner runs");
        self.check_report(&args);
        Output {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub fn run(&self) -> Output {
        let mut cmd = self.command();
        cmd.stdin(if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("runner starts");
        if let Some(data) = &self.stdin {
            use std::io::Write;
            let mut pipe = child.stdin.take().unwrap();
            let data = data.clone();
            std::thread::spawn(move || pipe.write_all(&data));
        }
        let out = child.wait_with_output().expect("runner ends");
        self.check_report(&self.args);
        Output {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// Waits for `cond` up to `limit`; true if it held in time.
pub fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// What a child prints on a pipe, read by a thread as it comes, so that a test can wait
/// for a line while the child runs and still get all of it at the end.
pub struct Collected {
    text: std::sync::Arc<std::sync::Mutex<String>>,
    reader: std::thread::JoinHandle<()>,
}

impl Collected {
    pub fn start(mut pipe: impl std::io::Read + Send + 'static) -> Collected {
        let text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let shared = text.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                shared
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Collected { text, reader }
    }

    pub fn now(&self) -> String {
        self.text.lock().unwrap().clone()
    }

    /// Waits up to `limit` for `needle` to have been printed; true if it was.
    pub fn wait_for(&self, limit: Duration, needle: &str) -> bool {
        wait_for(limit, || self.text.lock().unwrap().contains(needle))
    }

    /// Everything, once the pipe closed (the child ended).
    pub fn finish(self) -> String {
        self.reader.join().unwrap();
        std::sync::Arc::try_unwrap(self.text)
            .map(|m| m.into_inner().unwrap())
            .unwrap_or_else(|shared| shared.lock().unwrap().clone())
    }
}

/// Pids of live processes whose command line contains `marker` (zombies excluded).
pub fn processes_with(marker: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    let me = std::process::id();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if cmdline.is_empty() {
            continue; // kernel thread or zombie
        }
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        if stat
            .rsplit(')')
            .next()
            .is_some_and(|s| s.trim_start().starts_with('Z'))
        {
            continue;
        }
        if String::from_utf8_lossy(&cmdline).contains(marker) {
            pids.push(pid);
        }
    }
    pids
}

/// A marker unique to this test, to find its processes by.
pub fn marker(name: &str) -> String {
    format!("mk{}x{}", name, std::process::id())
}

/// Peak number of tasks running at once, from a log where each task appended
/// "start" and "end" lines (`echo start >> log; …; echo end >> log`).
pub fn peak_concurrency(log: &str) -> usize {
    let mut now = 0usize;
    let mut peak = 0;
    for line in log.lines() {
        match line.split_whitespace().next() {
            Some("start") => {
                now += 1;
                peak = peak.max(now);
            }
            Some("end") => now = now.saturating_sub(1),
            _ => {}
        }
    }
    peak
}

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// True (and said on stderr) when the suite runs through the portable paths
/// (`RUNNER_PORTABLE=1`, as scripts/test's second pass does) and the calling test checks
/// a promise those paths do not make (docs/platforms.md lists them): the test then
/// returns at once. The variable reaches the runner the tests start by inheritance.
pub fn skipped_when_portable(why: &str) -> bool {
    let portable = std::env::var_os("RUNNER_PORTABLE").is_some_and(|v| v == "1");
    if portable {
        eprintln!("skipped under RUNNER_PORTABLE=1: {why}");
    }
    portable
}

/// docs/runner-report.schema.json, compiled once per test binary.
pub fn report_schema() -> &'static jsonschema::Validator {
    static SCHEMA: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
    SCHEMA.get_or_init(|| {
        let text = std::fs::read_to_string(root().join("docs/runner-report.schema.json"))
            .expect("docs/runner-report.schema.json");
        let schema: serde_json::Value = serde_json::from_str(&text).expect("the schema is JSON");
        jsonschema::validator_for(&schema).expect("the report schema is a valid JSON Schema")
    })
}

/// Fails the test, naming each key and place, when a report does not fit the schema.
pub fn assert_report_fits(report: &serde_json::Value, path: &Path) {
    let mut errors: Vec<String> = report_schema()
        .iter_errors(report)
        .map(|e| format!("  at {}: {e}", e.instance_path))
        .collect();
    if errors.len() > 10 {
        let more = errors.len() - 10;
        errors.truncate(10);
        errors.push(format!("  … and {more} more"));
    }
    assert!(
        errors.is_empty(),
        "{} does not fit docs/runner-report.schema.json (a key the report gained goes into the schema, and into docs/reports.md):\n{}",
        path.display(),
        errors.join("\n")
    );
}
