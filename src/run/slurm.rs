//! `run --broker URL --slurm N`: the run's workers as one Slurm job array.
//!
//! The array is submitted (`sbatch`, its batch script on sbatch's stdin) before the run
//! is announced, so that a refusal stops the run before anything is written to the
//! broker. Each element runs `runner worker FILE --once --idle-exit …` with this very
//! executable and the job file's absolute path (both must be the same on the nodes: a
//! shared file system, as Slurm users have). The broker URL and the authkey reach the
//! workers through the job's environment (`--export=ALL`, sbatch's own environment):
//! never its command line nor its script, which `squeue`/`scontrol` show others. A
//! thread polls `squeue` every few seconds and says the array's counts when they change;
//! [`Array::cancel`] (also on drop: every path out of the run) cancels what is left.

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the array's state is asked of `squeue`.
const POLL: Duration = Duration::from_secs(3);
/// A worker of the array exits after serving nothing this long (`--idle-exit`): one
/// that started after the run ended does not sleep in its allocation.
pub const IDLE_EXIT: &str = "60s";
/// At the end of a run, how long the array's running workers are given to end by
/// themselves (`--once`) before they are cancelled.
const WORKERS_END: Duration = Duration::from_secs(5);

/// `--slurm N` and its `--slurm-arg`s.
#[derive(Debug, Clone)]
pub struct Options {
    pub workers: u32,
    pub args: Vec<String>,
}

/// Why the array could not be submitted (exit 2; nothing ran).
#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    #[error(
        "--slurm: no `sbatch` on PATH: run the coordinator where Slurm's commands are \
         installed (a login node)"
    )]
    NoSbatch,
    #[error("--slurm: cannot run sbatch: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("--slurm: sbatch refused the job array ({status}): {message}")]
    Refused { status: String, message: String },
    #[error("--slurm: sbatch printed no job id (it printed {0:?})")]
    NoJobId(String),
    #[error("--slurm: cannot find {what}: {source}")]
    Path {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("--slurm: {what} {} is not UTF-8, which the batch script cannot hold", .path.display())]
    NotUtf8 { what: &'static str, path: PathBuf },
    #[error("--slurm: the authkey holds a NUL byte, which cannot be passed through the job's environment")]
    NulInAuthkey,
    /// At the end of the run (said as a warning, not an exit status).
    #[error("cannot run scancel: {0}")]
    ScancelSpawn(#[source] std::io::Error),
    #[error("scancel refused ({status}): {message}")]
    ScancelRefused { status: String, message: String },
}

type Say = Arc<dyn Fn(String) + Send + Sync>;

/// A submitted array: cancelled when the run ends, by any path.
pub struct Array {
    id: String,
    say: Say,
    /// The `squeue` poller: a sender whose drop stops it, and its thread.
    poller: Option<(Sender<()>, JoinHandle<()>)>,
}

/// The batch script of the array: no secret in it.
fn script(exe: &str, file: &str, run: &str) -> String {
    let q = crate::template::shell_quote;
    format!(
        "#!/bin/sh\n\
         # runner: a worker of run {run} (written by `runner run --slurm`).\n\
         # The broker URL and the authkey come from the job's environment.\n\
         exec {} worker {} --once --idle-exit {IDLE_EXIT} --pool \"${{SLURM_CPUS_ON_NODE:-1}}\"\n",
        q(exe),
        q(file),
    )
}

/// Submits `options.workers` workers of `file` for the run `run` as one job array.
pub fn submit(
    file: &Path,
    run: &str,
    url: &str,
    key: Option<&[u8]>,
    options: &Options,
    say: Say,
    status: Say,
) -> Result<Array, SlurmError> {
    let exe = std::env::current_exe().map_err(|source| SlurmError::Path {
        what: "the runner's own executable",
        source,
    })?;
    let file = std::fs::canonicalize(file).map_err(|source| SlurmError::Path {
        what: "the job file",
        source,
    })?;
    let utf8 = |what, path: &Path| {
        path.to_str()
            .map(str::to_string)
            .ok_or_else(|| SlurmError::NotUtf8 {
                what,
                path: path.to_path_buf(),
            })
    };
    let script = script(
        &utf8("the runner's executable", &exe)?,
        &utf8("the job file", &file)?,
        run,
    );
    let mut command = Command::new("sbatch");
    command
        .arg("--parsable")
        .arg(format!("--array=0-{}", options.workers - 1))
        .arg(format!("--job-name=runner-{}", job_name(&file)))
        .arg("--export=ALL")
        .args(&options.args)
        .env("RUNNER_BROKER_URL", url)
        .env_remove("RUNNER_AUTHKEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(key) = key {
        if key.contains(&0) {
            return Err(SlurmError::NulInAuthkey);
        }
        command.env("RUNNER_AUTHKEY", std::ffi::OsStr::from_bytes(key));
    }
    let mut child = command.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => SlurmError::NoSbatch,
        _ => SlurmError::Spawn(e),
    })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A refusal before reading the script shows in its status and message.
        let _ = stdin.write_all(script.as_bytes());
    }
    let output = child.wait_with_output().map_err(SlurmError::Spawn)?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let message = String::from_utf8_lossy(&output.stderr);
        let message = message.trim();
        return Err(SlurmError::Refused {
            status: output.status.to_string(),
            message: if message.is_empty() {
                stdout.trim().to_string()
            } else {
                message.lines().collect::<Vec<_>>().join("; ")
            },
        });
    }
    // `--parsable`: `ID` or `ID;CLUSTER`.
    let id = stdout
        .lines()
        .last()
        .and_then(|line| line.split(';').next())
        .map(str::trim)
        .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| SlurmError::NoJobId(stdout.trim().to_string()))?
        .to_string();
    say(format!(
        "submitted {} as Slurm job {id} (sbatch --array=0-{})",
        crate::task::plural(u64::from(options.workers), "worker"),
        options.workers - 1
    ));
    let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
    let poller = {
        let (id, say) = (id.clone(), say.clone());
        std::thread::Builder::new()
            .name("slurm-poll".into())
            .spawn(move || poll(&id, &stopped, &say, &status))
            .ok()
            .map(|thread| (stop, thread))
    };
    Ok(Array { id, say, poller })
}

/// A job name from the file's name (Slurm shows it in `squeue`).
fn job_name(file: &Path) -> String {
    file.file_stem()
        .map(|s| s.to_string_lossy())
        .unwrap_or_default()
        .chars()
        .map(|c| match c {
            c if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' => c,
            _ => '_',
        })
        .take(40)
        .collect()
}

/// The states of the array's elements now (`squeue -r`: one line each), or None when
/// `squeue` cannot tell.
fn states(id: &str) -> Option<Vec<String>> {
    let output = Command::new("squeue")
        .args(["-j", id, "-h", "-r", "-o", "%T"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    // A job slurmctld forgot already is "Invalid job id": nothing left.
    if !output.status.success() {
        return None;
    }
    Some(
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|l| l.trim().to_lowercase())
            .filter(|l| !l.is_empty())
            .collect(),
    )
}

/// `1 pending, 1 running`: the counts by state, in the order states come.
fn counts(states: &[String]) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for state in states {
        match counts.iter_mut().find(|(s, _)| s == state) {
            Some((_, n)) => *n += 1,
            None => counts.push((state, 1)),
        }
    }
    counts.sort_by_key(|(s, _)| match *s {
        "pending" => 0,
        "running" => 1,
        _ => 2,
    });
    counts
        .iter()
        .map(|(s, n)| format!("{n} {s}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Says the array's counts when they change (a note), and gives them to `status` (the
/// heartbeat line's), until told to stop.
fn poll(id: &str, stop: &Receiver<()>, say: &Say, status: &Say) {
    let mut said = String::new();
    loop {
        if let Some(states) = states(id) {
            let now = match states.is_empty() {
                true => "no worker left in the queue".to_string(),
                false => counts(&states),
            };
            if now != said {
                say(format!("Slurm job {id}: {now}"));
                status(format!("Slurm job {id}: {now}"));
                said = now;
            }
        }
        match stop.recv_timeout(POLL) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

impl Array {
    /// The run is ending: its workers that did not start yet never will (said).
    pub fn cancel_pending(&self) {
        let pending = states(&self.id)
            .unwrap_or_default()
            .iter()
            .filter(|s| *s == "pending")
            .count();
        if pending > 0 && scancel(&self.id, Some("PENDING")).is_ok() {
            (self.say)(format!(
                "Slurm job {}: cancelled {} that never started",
                self.id,
                crate::task::plural(pending as u64, "pending worker")
            ));
        }
    }

    /// Ends the array: pending workers cancelled now, running ones given a few seconds
    /// to end by themselves (the run is over: `--once`), then cancelled.
    pub fn cancel(&mut self) {
        let Some((stop, thread)) = self.poller.take() else {
            return;
        };
        drop(stop);
        let _ = thread.join();
        self.cancel_pending();
        let deadline = Instant::now() + WORKERS_END;
        let mut left = states(&self.id).unwrap_or_default();
        while !left.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
            left = states(&self.id).unwrap_or_default();
        }
        if left.is_empty() {
            return;
        }
        match scancel(&self.id, None) {
            Ok(()) => (self.say)(format!(
                "Slurm job {}: cancelled ({})",
                self.id,
                counts(&left)
            )),
            Err(why) => (self.say)(format!(
                "warning: Slurm job {}: scancel failed: {why}; cancel it yourself: scancel {}",
                self.id, self.id
            )),
        }
    }
}

impl Drop for Array {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// `scancel ID` (only the elements in `state`, if given); its message on failure.
fn scancel(id: &str, state: Option<&str>) -> Result<(), SlurmError> {
    let mut command = Command::new("scancel");
    if let Some(state) = state {
        command.arg(format!("--state={state}"));
    }
    let output = command
        .arg(id)
        .stdin(Stdio::null())
        .output()
        .map_err(SlurmError::ScancelSpawn)?;
    match output.status.success() {
        true => Ok(()),
        false => Err(SlurmError::ScancelRefused {
            status: output.status.to_string(),
            message: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_are_pending_then_running() {
        let states = ["running", "pending", "running", "completing"].map(String::from);
        assert_eq!(super::counts(&states), "1 pending, 2 running, 1 completing");
    }

    #[test]
    fn the_script_holds_no_secret_and_quotes_paths() {
        let script = super::script("/opt/run ner/runner", "/home/a/jobs.toml", "r1");
        assert!(script.contains(
            "exec '/opt/run ner/runner' worker /home/a/jobs.toml --once --idle-exit 60s"
        ));
        assert!(!script.contains("redis"));
    }

    #[test]
    fn job_names_are_plain() {
        assert_eq!(
            super::job_name(std::path::Path::new("/a/my jobs.toml")),
            "my_jobs"
        );
    }
}
