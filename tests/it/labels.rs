//! Workers with labels and jobs with `runs_on` (issue 30), and a run that no worker
//! serves saying so: a real `redis-server`, real `runner worker` processes.

use crate::distributed::{wait_child, Redis, Worker};
use crate::util::{wait_for, Collected, Test};
use std::time::Duration;

/// A fan-out job `train` on `gpu` workers and a job `plain` anyone may run, each task
/// leaving `ran-JOB-ITEM` holding the name of the worker (`WHO`) that ran it.
const FILE: &str = "[jobs.train]\ncommand = 'echo \"$WHO\" > ran-train-{item}; sleep 0.05'\nitems = { range = [0, 6] }\nruns_on = [\"gpu\"]\n[jobs.plain]\ncommand = 'echo \"${WHO:-coordinator}\" > ran-plain-{item}; sleep 0.05'\nitems = { range = [0, 6] }\n";

#[test]
fn runs_on_tasks_run_only_on_workers_with_every_label() {
    let redis = Redis::start(&[]);
    // 30 gpu tasks: the worker without the label (started first, with more slots) and
    // the coordinator's own share read many of them, and give each back.
    let t = Test::new(&FILE.replacen("range = [0, 6]", "range = [0, 30]", 1)).args(&[
        "--broker",
        &redis.url(),
        "--lease",
        "1s",
        "--report",
        "report.json",
    ]);
    let before = redis.clients();
    let cpu = Worker::start(
        &t,
        "jobs.toml",
        &redis.url(),
        &["--pool", "4"],
        &[("WHO", "cpu")],
    );
    let gpu = Worker::start(
        &t,
        "jobs.toml",
        &redis.url(),
        &["--pool", "1", "--label", "gpu", "--label", "big"],
        &[("WHO", "gpu")],
    );
    assert!(wait_for(Duration::from_secs(10), || redis.clients() >= before + 2));
    let out = t.run();
    out.assert_code(0);
    for item in 0..30 {
        assert_eq!(
            t.read(&format!("ran-train-{item}")).trim(),
            "gpu",
            "train/{item}"
        );
    }
    let report: serde_json::Value = serde_json::from_str(&t.read("report.json")).unwrap();
    let gpu_name = format!(":{}", gpu.0.id());
    for task in report["tasks"].as_array().unwrap() {
        if task["job"] != "train" {
            continue;
        }
        assert_eq!(task["status"], "succeeded", "{task}");
        let worker = task["worker"].as_str().unwrap();
        assert!(worker.ends_with(&gpu_name), "ran on the gpu worker: {task}");
        assert_eq!(
            task["worker_labels"],
            serde_json::json!(["gpu", "big"]),
            "{task}"
        );
    }
    drop((gpu, cpu));
}

#[test]
fn a_run_whose_labels_no_worker_has_says_so_in_the_heartbeat() {
    let redis = Redis::start(&[]);
    let t = Test::new(FILE).args(&["--broker", &redis.url(), "--lease", "1s"]);
    let before = redis.clients();
    let cpu = Worker::start(
        &t,
        "jobs.toml",
        &redis.url(),
        &["--pool", "2"],
        &[("WHO", "cpu")],
    );
    assert!(wait_for(Duration::from_secs(10), || redis.clients() > before));
    let mut runner = t.spawn();
    let err = Collected::start(runner.stderr.take().unwrap());
    // The coordinator's own share and the worker serve the run; neither has `gpu`.
    let said = err.wait_for(
        Duration::from_secs(20),
        "6 tasks wait for a worker with label gpu (1 worker serves this run, none with it)",
    );
    // SAFETY: signalling the runner this test started, by its pid.
    unsafe { libc::kill(runner.id() as i32, libc::SIGTERM) };
    let status = wait_child(&mut runner, Duration::from_secs(30));
    let err = err.finish();
    assert!(said, "{err}");
    assert!(status.is_some_and(|s| s != 0), "{status:?}: {err}");
    // The tasks anyone may run ran; none of the gpu ones did.
    for item in 0..6 {
        assert!(t.path(&format!("ran-plain-{item}")).exists(), "{err}");
        assert!(!t.path(&format!("ran-train-{item}")).exists(), "{err}");
    }
    drop(cpu);
}

#[test]
fn a_run_no_worker_serves_says_which_refused_it_and_why() {
    let redis = Redis::start(&[]);
    let t = Test::new("[jobs.fan]\ncommand = 'touch ran-{item}'\nitems = { range = [0, 4] }\n")
        .args(&["--broker", &redis.url(), "--no-local"])
        .env("RUNNER_AUTHKEY", "k3y");
    // Nobody connected yet.
    let mut runner = t.spawn();
    let err = Collected::start(runner.stderr.take().unwrap());
    let alone = err.wait_for(
        Duration::from_secs(20),
        "4 tasks wait; no worker serves this run (no worker is connected to the broker)",
    );
    // One worker with another file, one without the authkey.
    t.write(
        "other.toml",
        "[jobs.fan]\ncommand = 'true'\nitems = ['x']\n",
    );
    let other = Worker::start(
        &t,
        "other.toml",
        &redis.url(),
        &[],
        &[("RUNNER_AUTHKEY", "k3y")],
    );
    let keyless = Worker::start(&t, "jobs.toml", &redis.url(), &[], &[]);
    let (other_pid, keyless_pid) = (other.0.id(), keyless.0.id());
    let refused = wait_for(Duration::from_secs(30), || {
        let text = err.now();
        text.lines().any(|l| {
            l.contains("4 tasks wait; no worker serves this run (")
                && l.contains(&format!(":{other_pid} refused it: its job file has digest"))
                && l.contains(&format!(":{keyless_pid} refused it: it has no authkey"))
        })
    });
    // SAFETY: signalling the runner this test started, by its pid.
    unsafe { libc::kill(runner.id() as i32, libc::SIGINT) };
    let status = wait_child(&mut runner, Duration::from_secs(30));
    let err = err.finish();
    assert!(alone, "{err}");
    assert!(refused, "{err}");
    assert_eq!(status, Some(130), "{err}");
    assert!(!t.path("ran-0").exists());
    drop((other, keyless));
}

#[test]
fn a_bad_label_exits_2_and_runs_on_without_a_broker_runs_here() {
    let t = Test::new(FILE);
    for (bad, said) in [("a b", "is not a label"), ("", "a label cannot be empty")] {
        t.run_with(&[
            "worker",
            "jobs.toml",
            "--broker",
            "redis://127.0.0.1:1",
            "--label",
            bad,
        ])
        .assert_code(2)
        .assert_stderr_has(said);
    }
    let out = t.run();
    out.assert_code(0).assert_stderr_has(
        "note: job `train` has `runs_on`, which routes tasks to workers only with --broker: its tasks run here",
    );
    assert!(t.path("ran-train-5").exists());
    let plan = t.run_with(&["plan", "jobs.toml"]);
    plan.assert_code(0).assert_stdout_has("runs_on gpu");
}

#[test]
fn a_quiet_worker_says_only_runs_errors_and_failed_tasks() {
    let redis = Redis::start(&[]);
    let t = Test::new(
        "[jobs.fan]\ncommand = 'echo said-by-{item}; echo warned-by-{item} >&2; test {item} != 3'\nitems = { range = [0, 5] }\n",
    )
    .args(&["--broker", &redis.url(), "--no-local"]);
    let before = redis.clients();
    let mut w = Worker::start(&t, "jobs.toml", &redis.url(), &["--quiet", "--once"], &[]);
    assert!(wait_for(Duration::from_secs(10), || redis.clients() > before));
    t.run().assert_code(1);
    let status = wait_child(&mut w.0, Duration::from_secs(30));
    let mut out = String::new();
    std::io::Read::read_to_string(w.0.stdout.as_mut().unwrap(), &mut out).unwrap();
    let err = crate::distributed::stderr_of(&mut w.0);
    assert_eq!(status, Some(0), "{err}");
    assert!(
        !out.contains("said-by") && !err.contains("said-by"),
        "{out}{err}"
    );
    assert!(!err.contains("warned-by-0"), "{err}");
    assert!(!err.contains("start ") && !err.contains("done "), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines.iter().any(|l| l.contains("serving run")), "{err}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("run ") && l.ends_with(" ended")),
        "{err}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("FAIL") && l.contains("fan")),
        "{err}"
    );
    assert!(lines.len() <= 8, "short: {err}");
}
