//! The HTML page (`run --html`, `runner report --html`): what it holds, the JSON it is
//! remade from, the errors of `runner report`, a page of 100,000 tasks; and the page in
//! a real browser, Debian's chromium, headless: the DOM after load, a screenshot, no
//! console message, no network request.
//!
//! The browser tests need chromium, so they are `#[ignore]`d: `cargo nextest run
//! --run-ignored all` (or `scripts/test`, which installs chromium) runs them, and they
//! fail, never pass, when it is missing.

use crate::util::{wait_for, Test};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Successes on several slots, a failure with stderr, a task that fails its first
/// attempt and succeeds its second, an allowed failure, and an item made to break a page.
const MIXED: &str = r#"pool = 3
[jobs.build]
command = "echo built"
[jobs.test]
command = "sleep 0.2; echo testing {item}"
items = ["unit", "integration", "docs", "<script>alert(1)</script>&\"'"]
needs = ["build"]
[jobs.flaky]
command = 'test "$RUNNER_ATTEMPT" = 2 || { echo "first attempt fails" >&2; exit 1; }'
retries = 1
retry_delay = "100ms"
[jobs.broken]
command = "sleep 0.1; echo 'assertion failed: left == right' >&2; exit 3"
needs = ["build"]
[jobs.optional]
command = "echo 'warning: deprecated' >&2; exit 1"
allow_failure = true
"#;

const NASTY: &str = "<script>alert(1)</script>&\"'";

/// The identity of every attempt bar of a page: (job, label, attempt, outcome).
fn bars(page: &str) -> Vec<(String, String, String, String)> {
    page.split("<rect class=\"bar ")
        .skip(1)
        .map(|rest| {
            let tag = &rest[..rest.find('>').unwrap()];
            let attr = |name: &str| {
                let at = tag.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
                tag[at..at + tag[at..].find('"').unwrap()].to_string()
            };
            (
                attr("data-job"),
                attr("data-label"),
                attr("data-attempt"),
                attr("data-outcome"),
            )
        })
        .collect()
}

fn bar(job: &str, label: &str, attempt: &str, outcome: &str) -> (String, String, String, String) {
    (job.into(), label.into(), attempt.into(), outcome.into())
}

/// The run of [`MIXED`] with `--html page.html --report run.json`.
fn mixed_run() -> Test {
    let t = Test::new(MIXED).args(&["--html", "page.html", "--report", "run.json"]);
    t.run().assert_code(1);
    t
}

#[test]
fn the_page_has_a_bar_per_attempt_the_failures_and_a_table_per_job() {
    let t = mixed_run();
    let page = t.read("page.html");
    let mut bars = bars(&page);
    bars.sort();
    let nasty = format!(
        "test:{}",
        "&lt;script&gt;alert(1)&lt;/script&gt;&amp;&quot;&#39;"
    );
    assert_eq!(
        bars,
        [
            bar("broken", "broken", "1", "failed"),
            bar("build", "build", "1", "succeeded"),
            bar("flaky", "flaky", "1", "retried"),
            bar("flaky", "flaky", "2", "succeeded"),
            bar("optional", "optional", "1", "allowed-failure"),
            bar("test", &nasty, "1", "succeeded"),
            bar("test", "test:docs", "1", "succeeded"),
            bar("test", "test:integration", "1", "succeeded"),
            bar("test", "test:unit", "1", "succeeded"),
        ]
    );
    assert!(!page.contains(NASTY), "the item is escaped everywhere");
    assert!(page.contains("<h3>broken: exit 3</h3>"));
    assert!(page.contains("<pre class=\"tail\">assertion failed: left == right</pre>"));
    assert!(page.contains("<pre class=\"tail\">warning: deprecated</pre>"));
    assert_eq!(page.matches("<section class=\"job\"").count(), 5);
    // Three slots of this host, each a lane.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    for slot in 0..3 {
        let lane = format!(" · slot {slot}<title>{} · slot {slot}</title>", host.trim());
        assert!(page.contains(&lane), "no lane {lane}");
    }
}

/// The header says which jobs were named on the command line and which vars `--set`
/// gave, escaped; the page `runner report` remakes from the JSON report says the same.
#[test]
fn the_header_lists_the_selection_and_the_set_vars() {
    let t = Test::new(
        "[vars]\nprofile = 'dev'\nregion = 'eu'\n[jobs.build]\ncommand = 'echo build'\n[jobs.test]\ncommand = 'echo test'\nneeds = ['build']\n[jobs.other]\ncommand = 'echo other'\n",
    )
    .args(&[
        "test",
        "--set",
        "profile=<b>release</b>",
        "--html",
        "page.html",
        "--report",
        "run.json",
    ]);
    t.run().assert_code(0);
    let page = t.read("page.html");
    assert!(page.contains("<dt>selection</dt><dd>test</dd>"), "{page}");
    assert!(
        page.contains("<dt>--set</dt><dd>profile=&lt;b&gt;release&lt;/b&gt;</dd>"),
        "{page}"
    );
    // Only the vars --set gave.
    assert!(!page.contains("region="), "{page}");
    t.run_with(&["report", "run.json", "--html", "again.html"])
        .assert_code(0);
    let again = t.read("again.html");
    assert!(again.contains("<dt>selection</dt><dd>test</dd>"), "{again}");
    assert!(again.contains("<dt>--set</dt><dd>profile=&lt;b&gt;release&lt;/b&gt;</dd>"));
    // A run of every job with no --set says neither.
    let t = Test::new("[jobs.a]\ncommand = 'true'\n").args(&["--html", "page.html"]);
    t.run().assert_code(0);
    let page = t.read("page.html");
    assert!(!page.contains("<dt>selection</dt>") && !page.contains("<dt>--set</dt>"));
}

#[test]
fn the_json_report_lists_each_attempt() {
    let t = mixed_run();
    let report: serde_json::Value = serde_json::from_str(&t.read("run.json")).unwrap();
    let task = |job: &str| {
        report["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|task| task["job"] == job)
            .unwrap()
            .clone()
    };
    let flaky = task("flaky");
    let tries = flaky["tries"].as_array().unwrap();
    assert_eq!(tries.len(), 2, "{flaky}");
    assert_eq!(
        (&tries[0]["exit_code"], &tries[1]["exit_code"]),
        (&1.into(), &0.into())
    );
    assert!(tries[0]["start"].as_str() < tries[1]["start"].as_str());
    assert!(tries[0]["pid"].is_u64() && tries[0]["pid"] != tries[1]["pid"]);
    assert_eq!(tries[1]["pid"], flaky["pid"]);
    assert_eq!(tries[0]["start"], flaky["start"]);
    let broken = task("broken");
    assert_eq!(broken["tries"].as_array().unwrap().len(), 1);
    assert_eq!(broken["tries"][0]["exit_code"], 3);
    assert_eq!(broken["stdout_tail"], serde_json::json!([]));
}

#[test]
fn runner_report_makes_the_same_page_from_the_json_report() {
    let t = mixed_run();
    let out = t.run_with(&["report", "run.json", "--html", "again.html"]);
    out.assert_code(0);
    assert_eq!(bars(&t.read("again.html")), bars(&t.read("page.html")));
    let again = t.read("again.html");
    assert!(again.contains("<pre class=\"tail\">assertion failed: left == right</pre>"));
    assert!(again.contains("<h1 class=\"bad\">jobs.toml: exit status 1</h1>"));
}

#[test]
fn runner_report_says_what_is_wrong_and_exits_2() {
    let t = Test::new("[jobs.a]\ncommand = 'true'\n");
    t.write("page.html", "<html>")
        .write("empty.json", "{}")
        .write("nojobs.json", r#"{"run": {"id": "x"}, "tasks": []}"#);
    let cases = [
        ("missing.json", "out.html", "cannot read missing.json: No such file or directory"),
        ("page.html", "out.html", "page.html is not valid JSON: expected value at line 1 column 1"),
        ("empty.json", "out.html", "empty.json is not a runner report (one written by `runner run --report FILE`): missing field `run`"),
        ("nojobs.json", "out.html", "in `run`: missing field `file`"),
    ];
    for (report, html, message) in cases {
        let out = t.run_with(&["report", report, "--html", html]);
        out.assert_code(2).assert_stderr_has(message);
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
        assert!(!t.path(html).exists());
    }
    let run = mixed_run();
    run.run_with(&["report", "run.json", "--html", "no/such/dir/page.html"])
        .assert_code(2)
        .assert_stderr_has("cannot write no/such/dir/page.html: No such file or directory");
    run.run_with(&["report", "run.json"])
        .assert_code(2)
        .assert_stderr_has("--html <FILE>");
}

#[test]
fn an_unwritable_page_is_refused_before_anything_runs_and_a_lost_one_is_said() {
    let t =
        Test::new("[jobs.a]\ncommand = 'touch ran'\n").args(&["--html", "no/such/dir/page.html"]);
    t.run()
        .assert_code(2)
        .assert_stderr_has("cannot write no/such/dir/page.html");
    assert!(!t.path("ran").exists());
    let t = Test::new("[jobs.a]\ncommand = 'true'\n").args(&["--html", "page.html"]);
    std::os::unix::fs::symlink("/dev/full", t.path("page.html")).unwrap();
    t.run()
        .assert_code(1)
        .assert_stderr_has("cannot write page.html: No space left on device")
        .assert_stderr_has("exit status 1: not everything asked for was written");
}

/// A JSON report of `tasks` tasks in two jobs over 8 slots of this host and 8 of
/// another, one in 200 failed (with a first attempt that failed too), written as
/// `runner run --report` writes one.
fn big_report(path: &Path, tasks: u64) {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(
        w,
        r#"{{"run": {{"id": "big", "file": "big.toml", "jobs": ["compile", "check"], "vars": {{}}, "start": "2026-11-27T10:00:00.000Z", "duration_s": 1000.0, "exit_status": 1, "pool": 8, "interrupted": null, "host": "here"}},"#
    )
    .unwrap();
    write!(w, "\"tasks\": [").unwrap();
    for i in 0..tasks {
        let (job, index) = if i < tasks * 9 / 10 {
            ("compile", i)
        } else {
            ("check", i - tasks * 9 / 10)
        };
        let slot = i % 16;
        let host = if slot < 8 { "here" } else { "worker-1" };
        // Each slot runs its tasks one after another over the 1,000 s.
        let start_ms = (i / 16) as f64 * 1000.0 * 16.0 / tasks as f64 * 1000.0;
        let start = |ms: f64| {
            let ms = ms as u64;
            format!(
                "2026-11-27T10:{:02}:{:02}.{:03}Z",
                ms / 60_000,
                ms / 1000 % 60,
                ms % 1000
            )
        };
        let failed = i % 200 == 7;
        let (status, code, tries) = if failed {
            (
                "failed",
                1,
                format!(
                    r#"[{{"start": "{}", "duration_s": 0.05, "pid": 1, "exit_code": 1, "signal": null, "timed_out": false, "error": null}}, {{"start": "{}", "duration_s": 0.05, "pid": 2, "exit_code": 1, "signal": null, "timed_out": false, "error": null}}]"#,
                    start(start_ms),
                    start(start_ms + 60.0)
                ),
            )
        } else {
            (
                "succeeded",
                0,
                format!(
                    r#"[{{"start": "{}", "duration_s": 0.12, "pid": 3, "exit_code": 0, "signal": null, "timed_out": false, "error": null}}]"#,
                    start(start_ms)
                ),
            )
        };
        write!(
            w,
            r#"{}{{"job": "{job}", "item": "file-{index}.c", "index": {index}, "status": "{status}", "reason": "never ran", "pid": 3, "host": "{host}", "slot": {slot}, "exit_code": {code}, "signal": null, "timed_out": false, "error": null, "stopped": false, "allowed_failure": false, "attempts": {}, "start": "{}", "duration_s": 0.12, "stderr_tail": {}, "stdout_tail": [], "stdout_log": null, "stderr_log": null, "tries": {tries}}}"#,
            if i == 0 { "\n" } else { ",\n" },
            if failed { 2 } else { 1 },
            start(start_ms),
            if failed { r#"["error: it broke"]"# } else { "[]" }
        )
        .unwrap();
    }
    writeln!(w, "\n], \"queues\": []}}").unwrap();
    w.flush().unwrap();
}

#[test]
fn a_page_of_100000_tasks_is_aggregated_and_stays_small() {
    let t = Test::new_in_target("");
    big_report(&t.path("big.json"), 100_000);
    let began = Instant::now();
    t.run_with(&["report", "big.json", "--html", "big.html"])
        .assert_code(0);
    let took = began.elapsed();
    let page = t.read("big.html");
    assert!(
        page.contains("<p class=\"note\" id=\"aggregated\">100,500 attempts, more than 5,000 drawn one by one:"),
        "{}",
        &page[..4000.min(page.len())]
    );
    assert!(page.contains("were retried or were stopped are drawn one by one on top.</p>"));
    // 500 failed tasks, each two attempts (one retried), drawn one by one.
    assert_eq!(page.matches("<rect class=\"bar ").count(), 1000);
    assert!(page.matches("<rect class=\"bucket ").count() >= 16 * 100);
    assert_eq!(
        page.matches("<tr class=\"task ").count(),
        2000,
        "1,000 rows per job"
    );
    assert!(page.contains("and 89,000 more tasks of compile"));
    assert!(page.contains("and 450 more failed tasks, not shown"));
    assert!(page.len() < 4_000_000, "{} bytes", page.len());
    assert!(
        took < Duration::from_secs(60),
        "runner report took {took:?}"
    );
}

// The browser.

/// Debian's chromium, or a clear failure.
fn require_chromium() {
    let found = Command::new("chromium")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "chromium is not installed: run scripts/test, which installs it (apt-get install chromium)"
    );
}

/// Hosts Chromium itself calls on start even with `--disable-background-networking`
/// (its component updater and sign-in): not the page's doing.
const BROWSER_OWN: [&str; 4] = [
    "update.googleapis.com",
    "redirector.gvt1.com",
    "accounts.google.com",
    "clients2.google.com",
];

/// A listener the browser is told is its proxy for everything, loopback included:
/// every request the browser makes arrives here and is recorded (its first line),
/// then refused.
struct Proxy {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Proxy {
    fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false).unwrap();
                    stream
                        .set_read_timeout(Some(Duration::from_secs(1)))
                        .unwrap();
                    let mut line = String::new();
                    let _ = BufReader::new(stream.take(4096)).read_line(&mut line);
                    seen2.lock().unwrap().push(line.trim_end().to_string());
                }
                // Stopped, and nothing more waiting: done.
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if stop2.load(Ordering::SeqCst) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("the proxy's listener: {e}"),
            }
        });
        Proxy {
            port,
            seen,
            stop,
            thread,
        }
    }

    /// The first line of every request made through the proxy.
    fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap();
        Arc::try_unwrap(self.seen).unwrap().into_inner().unwrap()
    }

    /// The requests that were not Chromium's own: what a page asked for. A connection
    /// that sent no request line (Chromium opens the proxy's socket ahead of need, and
    /// may close it unused) fetched nothing.
    fn of_the_page(requests: &[String]) -> Vec<&String> {
        requests
            .iter()
            .filter(|line| !line.is_empty())
            .filter(|line| {
                let target = line.split(' ').nth(1).unwrap_or("");
                let host = target
                    .trim_start_matches("http://")
                    .trim_start_matches("https://");
                let host = host.split([':', '/']).next().unwrap_or("");
                !BROWSER_OWN.contains(&host)
            })
            .collect()
    }
}

/// Headless chromium with a profile of its own, every request through `proxy`, its
/// log (console messages included) on stderr; waited for up to `limit`.
/// Returns (stdout, stderr).
fn chromium(
    dir: &Path,
    proxy: &Proxy,
    args: &[&str],
    page: &Path,
    limit: Duration,
) -> (String, String) {
    require_chromium();
    let profile = tempfile::tempdir_in(dir).unwrap();
    let (out, err) = (dir.join("chromium.out"), dir.join("chromium.err"));
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-features=NetworkTimeServiceQuerying",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--proxy-server=http://127.0.0.1:{}", proxy.port))
        .arg("--proxy-bypass-list=<-loopback>")
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("chromium starts");
    let ended = wait_for(limit, || child.try_wait().unwrap().is_some());
    if !ended {
        let _ = child.kill();
        let _ = child.wait();
        panic!("chromium did not finish within {limit:?}");
    }
    let status = child.wait().unwrap();
    let (out, err) = (
        std::fs::read_to_string(out).unwrap(),
        std::fs::read_to_string(err).unwrap(),
    );
    assert!(status.success(), "chromium: {status}\n{err}");
    (out, err)
}

/// The console messages of a chromium log: what a page printed, and every policy
/// violation.
fn console(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains(":CONSOLE") || l.contains("Content Security Policy"))
        .collect()
}

#[test]
#[ignore = "needs chromium (scripts/test installs it)"]
fn in_a_browser_the_page_loads_whole_quietly_and_fetches_nothing() {
    let t = mixed_run();
    let proxy = Proxy::start();
    let (dom, log) = chromium(
        t.dir.path(),
        &proxy,
        &["--dump-dom"],
        &t.path("page.html"),
        Duration::from_secs(60),
    );
    let requests = proxy.finish();
    assert_eq!(
        Proxy::of_the_page(&requests),
        Vec::<&String>::new(),
        "the page asked the network for something"
    );
    assert_eq!(console(&log), Vec::<&str>::new(), "console messages");
    // The DOM after load: every attempt, the failures, the jobs, the item inert.
    assert!(
        dom.contains("content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\"")
    );
    assert_eq!(bars(&dom).len(), 9, "{dom}");
    assert_eq!(
        bars(&dom).iter().filter(|b| b.0 == "flaky").count(),
        2,
        "the retried task has two bars"
    );
    assert!(!dom.contains("<script"), "no element was injected:\n{dom}");
    assert!(
        dom.contains("<td class=\"label\">test:&lt;script&gt;alert(1)&lt;/script&gt;&amp;\"'</td>")
    );
    let failures = &dom[dom.find("<section id=\"failures\">").unwrap()..];
    let failures = &failures[..failures.find("</section>").unwrap()];
    assert_eq!(
        failures.matches("<li class=\"failure").count(),
        2,
        "{failures}"
    );
    assert!(failures.contains("data-job=\"broken\""));
    assert!(failures.contains("<pre class=\"tail\">assertion failed: left == right</pre>"));
    for job in ["build", "test", "flaky", "broken", "optional"] {
        assert!(
            dom.contains(&format!("<table class=\"tasks\" data-job=\"{job}\">")),
            "no table of {job}"
        );
    }
}

#[test]
#[ignore = "needs chromium (scripts/test installs it)"]
fn the_browser_checks_would_see_a_fetch_and_a_violation() {
    // What the test above asserts absent, made present: a page that loads an image
    // over the network, and one whose policy refuses an image and a script.
    let t = Test::new("");
    t.write("fetches.html", "<!DOCTYPE html><img src=\"http://example.invalid/x.png\">")
        .write(
            "violates.html",
            "<!DOCTYPE html><meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'\">\
             <img src=\"http://example.invalid/y.png\"><script>console.log('ran')</script>",
        );
    let proxy = Proxy::start();
    chromium(
        t.dir.path(),
        &proxy,
        &["--dump-dom"],
        &t.path("fetches.html"),
        Duration::from_secs(60),
    );
    let requests = proxy.finish();
    assert!(
        Proxy::of_the_page(&requests)
            .iter()
            .any(|r| r.contains("example.invalid/x.png")),
        "{requests:?}"
    );
    let proxy = Proxy::start();
    let (_, log) = chromium(
        t.dir.path(),
        &proxy,
        &["--dump-dom"],
        &t.path("violates.html"),
        Duration::from_secs(60),
    );
    proxy.finish();
    assert_eq!(console(&log).len(), 2, "{log}");
}

#[test]
#[ignore = "needs chromium (scripts/test installs it)"]
fn a_screenshot_of_the_page() {
    let t = mixed_run();
    let proxy = Proxy::start();
    let shot = t.path("shot.png");
    chromium(
        t.dir.path(),
        &proxy,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1400,1000",
        ],
        &t.path("page.html"),
        Duration::from_secs(60),
    );
    assert_eq!(Proxy::of_the_page(&proxy.finish()), Vec::<&String>::new());
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    // A blank page of that size compresses to a few KB; this one has a timeline, tables
    // and text.
    assert!(png.len() > 30_000, "{} bytes", png.len());
}

#[test]
#[ignore = "needs chromium (scripts/test installs it)"]
fn in_a_browser_a_page_of_100000_tasks_loads_in_seconds() {
    let t = Test::new_in_target("");
    big_report(&t.path("big.json"), 100_000);
    t.run_with(&["report", "big.json", "--html", "big.html"])
        .assert_code(0);
    let proxy = Proxy::start();
    let began = Instant::now();
    let (dom, log) = chromium(
        t.dir.path(),
        &proxy,
        &["--dump-dom"],
        &t.path("big.html"),
        Duration::from_secs(120),
    );
    let took = began.elapsed();
    assert_eq!(Proxy::of_the_page(&proxy.finish()), Vec::<&String>::new());
    assert_eq!(console(&log), Vec::<&str>::new());
    assert!(dom.contains("id=\"aggregated\""));
    assert_eq!(bars(&dom).len(), 1000);
    assert!(took < Duration::from_secs(30), "{took:?} to load");
}
