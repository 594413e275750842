//! `run --broker URL --slurm N`: workers as a Slurm job array, against a real
//! single-node Slurm cluster (Debian's `slurm-wlm` and `munge`) that each test starts
//! as root in a temporary folder: munged with its own key and socket, slurmctld and
//! slurmd in the foreground on free loopback ports, `SLURM_CONF` pointing `sbatch`,
//! `squeue` and `scancel` at it. They need root and Slurm, so they are `#[ignore]`d
//! (`scripts/test` installs Slurm and runs ignored tests, as root in CI).

use crate::distributed::{stderr_of, wait_child, Redis};
use crate::util::{wait_for, Test};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A Slurm cluster of one node (this machine), stopped by pid when dropped.
pub struct Slurm {
    dir: tempfile::TempDir,
    children: Vec<Child>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn hostname() -> String {
    let out = Command::new("hostname").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Slurm {
    pub fn start() -> Slurm {
        for program in ["munged", "slurmctld", "slurmd", "sbatch"] {
            assert!(
                Command::new("sh")
                    .args(["-c", &format!("PATH=$PATH:/usr/sbin command -v {program}")])
                    .stdout(Stdio::null())
                    .status()
                    .unwrap()
                    .success(),
                "{program} is not installed: run scripts/test, which installs slurm-wlm and munge"
            );
        }
        assert_eq!(
            rustix::process::geteuid().as_raw(),
            0,
            "the Slurm tests start slurmd, which needs root"
        );
        let dir = tempfile::tempdir().unwrap();
        // munged refuses a socket folder others cannot search, and a key others can read.
        let munge = dir.path().join("munge");
        for sub in ["munge", "state", "spool"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&munge, std::fs::Permissions::from_mode(0o711)).unwrap();
        let key: Vec<u8> = (0..1024).map(|i| (i * 7919 % 251) as u8).collect();
        std::fs::write(munge.join("munge.key"), key).unwrap();
        std::fs::set_permissions(
            munge.join("munge.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let mut slurm = Slurm {
            dir,
            children: Vec::new(),
        };
        let socket = munge.join("socket");
        slurm.spawn(
            Command::new("/usr/sbin/munged")
                .args(["-F", "--force"])
                .arg(format!("--socket={}", socket.display()))
                .arg(format!("--key-file={}", munge.join("munge.key").display()))
                .arg(format!("--log-file={}", munge.join("log").display()))
                .arg(format!("--pid-file={}", munge.join("pid").display()))
                .arg(format!("--seed-file={}", munge.join("seed").display())),
        );
        assert!(
            wait_for(Duration::from_secs(10), || socket.exists()),
            "munged made its socket"
        );
        let d = slurm.dir.path().to_path_buf();
        let host = hostname();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let conf = format!(
            "ClusterName=runnertest\n\
             SlurmctldHost={host}(127.0.0.1)\n\
             SlurmUser=root\nSlurmdUser=root\n\
             SlurmctldPort={}\nSlurmdPort={}\n\
             AuthType=auth/munge\nAuthInfo=socket={}\nCredType=cred/munge\n\
             StateSaveLocation={d}/state\nSlurmdSpoolDir={d}/spool\n\
             SlurmctldPidFile={d}/slurmctld.pid\nSlurmdPidFile={d}/slurmd.pid\n\
             SlurmctldLogFile={d}/slurmctld.log\nSlurmdLogFile={d}/slurmd.log\n\
             ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n\
             SwitchType=switch/none\nMpiDefault=none\nReturnToService=2\n\
             SchedulerType=sched/backfill\nSelectType=select/cons_tres\n\
             SelectTypeParameters=CR_Core\nJobCompType=jobcomp/none\n\
             AccountingStorageType=accounting_storage/none\n\
             JobAcctGatherType=jobacct_gather/none\n\
             KillWait=5\nMinJobAge=5\n\
             NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN\n\
             PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP\n",
            free_port(),
            free_port(),
            socket.display(),
            d = d.display(),
        );
        std::fs::write(d.join("slurm.conf"), conf).unwrap();
        let conf = slurm.conf();
        slurm.spawn(
            Command::new("/usr/sbin/slurmctld")
                .args(["-D", "-i"])
                .env("SLURM_CONF", &conf),
        );
        slurm.spawn(
            Command::new("/usr/sbin/slurmd")
                .arg("-D")
                .env("SLURM_CONF", &conf),
        );
        let idle = wait_for(Duration::from_secs(30), || {
            slurm.client("sinfo", &["-h", "-o", "%t"]).trim() == "idle"
        });
        assert!(
            idle,
            "the Slurm node is idle within 30 s; slurmctld.log:\n{}\nslurmd.log:\n{}",
            std::fs::read_to_string(d.join("slurmctld.log")).unwrap_or_default(),
            std::fs::read_to_string(d.join("slurmd.log")).unwrap_or_default()
        );
        slurm
    }

    fn spawn(&mut self, command: &mut Command) {
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.children.push(child);
    }

    pub fn conf(&self) -> String {
        self.dir.path().join("slurm.conf").display().to_string()
    }

    /// A Slurm command's stdout, against this cluster.
    pub fn client(&self, program: &str, args: &[&str]) -> String {
        let out = Command::new(program)
            .args(args)
            .env("SLURM_CONF", self.conf())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The jobs `squeue` shows (one line per array element), as `ID STATE`.
    pub fn queue(&self) -> Vec<String> {
        self.client("squeue", &["-h", "-r", "-o", "%i %T"])
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Slurm {
    fn drop(&mut self) {
        // A job step outlives slurmd: whatever a failed test left is cancelled first.
        if !self.queue().is_empty() {
            let _ = self.client("scancel", &["--user=root"]);
            wait_for(Duration::from_secs(15), || self.queue().is_empty());
        }
        // slurmd first (its job steps end with it), then slurmctld, then munged.
        for child in self.children.iter_mut().rev() {
            // SAFETY: terminating a daemon this test started, by its pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() {
                if std::time::Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Each task says which element of which Slurm job array ran it (a worker's Slurm
/// variables are its tasks').
const FAN: &str = "[jobs.fan]\ncommand = 'echo {item} \"$SLURM_ARRAY_JOB_ID\" \"$SLURM_ARRAY_TASK_ID\" >> ran.log; sleep 0.2'\nitems = { range = [0, 8] }\n";

fn slurm_run(t: &Test, slurm: &Slurm, redis: &Redis, extra: &[&str]) -> Command {
    let mut cmd = t.command();
    cmd.args(["--broker", &redis.url(), "--no-local"])
        .args(extra)
        .env("SLURM_CONF", slurm.conf())
        .env("RUNNER_HEARTBEAT", "1s");
    cmd
}

#[test]
#[ignore = "needs root, slurm-wlm and munge (scripts/test installs them)"]
fn a_run_with_slurm_workers_completes_on_the_arrays_workers() {
    let slurm = Slurm::start();
    let redis = Redis::start(&[]);
    let t = Test::new(FAN);
    let out = slurm_run(
        &t,
        &slurm,
        &redis,
        &["--slurm", "2", "--report", "report.json"],
    )
    .env("RUNNER_AUTHKEY", "a-shared-secret")
    .stdin(Stdio::null())
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");
    assert!(
        stderr.contains("submitted 2 workers as Slurm job"),
        "{stderr}"
    );
    assert!(
        stderr.contains(": 2 pending"),
        "the array's counts: {stderr}"
    );
    let report: serde_json::Value = serde_json::from_str(&t.read("report.json")).unwrap();
    let tasks = report["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 8);
    // Every task ran on a worker of the array, none in the coordinator (`--no-local`).
    let workers: std::collections::BTreeSet<String> = tasks
        .iter()
        .map(|t| t["worker"].as_str().unwrap_or_default().to_string())
        .collect();
    let id = stderr
        .split("as Slurm job ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap();
    // The heartbeat line carries the array's counts (RUNNER_HEARTBEAT=1s).
    let slurm_job = format!(" — Slurm job {id}: ");
    assert!(
        stderr
            .lines()
            .any(|l| l.contains(" done, ") && l.contains(&slurm_job) && l.ends_with(" elapsed")),
        "a heartbeat with the array's counts: {stderr}"
    );
    let ran = t.read("ran.log");
    assert_eq!(ran.lines().count(), 8, "{ran}");
    for line in ran.lines() {
        let words: Vec<&str> = line.split(' ').collect();
        assert_eq!(words[1], id, "run by an element of the array: {line}");
        assert!(["0", "1"].contains(&words[2]), "{line}");
    }
    // The workers' own output is in Slurm's files: they served the run, then ended.
    let logs: String = std::fs::read_dir(t.dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("slurm-"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    assert!(logs.contains("serving run"), "worker logs:\n{logs}");
    // Each task's worker (`host:pid` in the report) is one of the array's.
    let pids: Vec<&str> = logs
        .split("(pid ")
        .skip(1)
        .filter_map(|rest| rest.split(')').next())
        .collect();
    assert_eq!(pids.len(), 2, "two workers started: {logs}");
    for worker in &workers {
        let pid = worker.rsplit(':').next().unwrap();
        assert!(
            pids.contains(&pid),
            "{worker} is not a worker of the array: {logs}"
        );
    }
    assert!(!logs.contains("a-shared-secret"));
    assert!(
        wait_for(Duration::from_secs(20), || slurm.queue().is_empty()),
        "nothing left queued: {:?}",
        slurm.queue()
    );
}

/// A run that ends mid-way, stopped by `signal` (or by a failure with `--fail-fast`
/// when None), with one worker of its array running and one pending: it exits with
/// `status`, cancels the pending one and leaves no job in `squeue`.
fn stopped_mid_run_leaves_no_job_in_squeue(signal: Option<i32>, status: i32) {
    let slurm = Slurm::start();
    let redis = Redis::start(&[]);
    let t = Test::new(
        "[jobs.slow]\ncommand = 'echo {item} >> started.log; for i in $(seq 600); do [ -e fail ] && exit 3; sleep 0.1; done'\nitems = { range = [0, 8] }\n",
    );
    // Each worker asks for every CPU of the node: one runs, the other stays pending.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut runner = slurm_run(
        &t,
        &slurm,
        &redis,
        &[
            "--slurm",
            "2",
            &format!("--slurm-arg=--cpus-per-task={cpus}"),
        ],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let stderr = crate::util::Collected::start(runner.stderr.take().unwrap());
    assert!(
        wait_for(Duration::from_secs(30), || t.lines_in("started.log") >= 1),
        "a worker of the array started a task; queue: {:?}\n{}",
        slurm.queue(),
        stderr.now()
    );
    assert!(
        stderr.wait_for(Duration::from_secs(20), ": 1 pending, 1 running"),
        "the array's counts in the progress:\n{}",
        stderr.now()
    );
    match signal {
        // SAFETY: signalling the runner this test started, by its pid.
        Some(signal) => unsafe { libc::kill(runner.id() as i32, signal) },
        // The running tasks fail: --fail-fast stops the run.
        None => {
            t.write("fail", "");
            0
        }
    };
    let want = status;
    let status = wait_child(&mut runner, Duration::from_secs(40));
    let stderr = stderr.finish();
    assert_eq!(status, Some(want), "stderr:\n{stderr}");
    assert!(
        stderr.contains("cancelled 1 pending worker that never started"),
        "{stderr}"
    );
    assert!(
        wait_for(Duration::from_secs(20), || slurm.queue().is_empty()),
        "no job left in squeue: {:?}\nstderr:\n{stderr}",
        slurm.queue()
    );
}

#[test]
#[ignore = "needs root, slurm-wlm and munge (scripts/test installs them)"]
fn ctrl_c_mid_run_leaves_no_job_in_squeue() {
    stopped_mid_run_leaves_no_job_in_squeue(Some(libc::SIGINT), 130);
}

#[test]
#[ignore = "needs root, slurm-wlm and munge (scripts/test installs them)"]
fn term_mid_run_leaves_no_job_in_squeue() {
    stopped_mid_run_leaves_no_job_in_squeue(Some(libc::SIGTERM), 143);
}

#[test]
#[ignore = "needs root, slurm-wlm and munge (scripts/test installs them)"]
fn a_failure_with_fail_fast_leaves_no_job_in_squeue() {
    stopped_mid_run_leaves_no_job_in_squeue(None, 1);
}

#[test]
#[ignore = "needs root, slurm-wlm and munge (scripts/test installs them)"]
fn a_refused_sbatch_exits_2_with_its_message() {
    let slurm = Slurm::start();
    let redis = Redis::start(&[]);
    let t = Test::new(FAN);
    let out = slurm_run(
        &t,
        &slurm,
        &redis,
        &["--slurm", "2", "--slurm-arg=--partition=nope"],
    )
    .stdin(Stdio::null())
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{stderr}");
    assert!(
        stderr.contains("sbatch refused the job array")
            && stderr.contains("Invalid partition name specified"),
        "{stderr}"
    );
    assert!(!Path::new(&t.path("ran.log")).exists(), "nothing ran");
    assert_eq!(redis.newest_run(), "", "nothing announced");
    assert!(slurm.queue().is_empty());
}

#[test]
fn no_sbatch_on_path_exits_2() {
    let t = Test::new(FAN).args(&["--broker", "redis://127.0.0.1:1", "--slurm", "2"]);
    let out = t
        .command()
        .env("PATH", "/nonexistent")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{stderr}");
    assert!(
        stderr.contains("error: --slurm: no `sbatch` on PATH"),
        "{stderr}"
    );
    assert!(!t.path("ran.log").exists(), "nothing ran");
}

#[test]
fn slurm_needs_a_broker() {
    let out = Test::new(FAN).args(&["--slurm", "2"]).run();
    out.assert_code(2).assert_stderr_has("--broker");
}

#[test]
fn a_worker_given_idle_exit_exits_0_after_serving_nothing_that_long() {
    let redis = Redis::start(&[]);
    let t = Test::new(FAN);
    let started = std::time::Instant::now();
    let out = t.run_with(&[
        "worker",
        "jobs.toml",
        "--broker",
        &redis.url(),
        "--idle-exit",
        "1s",
    ]);
    out.assert_code(0)
        .assert_stderr_has("no run served for 1s (--idle-exit): exiting");
    assert!(started.elapsed() >= Duration::from_secs(1));
}

#[test]
fn idle_exit_counts_from_the_end_of_the_last_run_served() {
    let redis = Redis::start(&[]);
    let t = Test::new(
        "[jobs.slow]\ncommand = 'sleep 4; echo {item} >> ran.log'\nitems = { range = [0, 2] }\n",
    )
    .args(&["--broker", &redis.url(), "--no-local"]);
    let mut worker = crate::distributed::Worker::start(
        &t,
        "jobs.toml",
        &redis.url(),
        &["--idle-exit", "3s"],
        &[],
    );
    // The run starts well before the worker's 3 s are over, and lasts 4 s: serving it,
    // the worker is not idle.
    let out = t.run();
    out.assert_code(0);
    assert_eq!(t.lines_in("ran.log"), 2);
    let status = wait_child(&mut worker.0, Duration::from_secs(20));
    let stderr = stderr_of(&mut worker.0);
    assert_eq!(status, Some(0), "{stderr}");
    let served = stderr.find("serving run").expect("served the run");
    let exited = stderr.find("no run served for 3s").expect("idle exit");
    assert!(served < exited, "{stderr}");
}
