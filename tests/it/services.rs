//! Services (`service = true`, `ready`, `ready_timeout`): real servers started by the
//! runner (redis-server, Python HTTP servers), their readiness checks, their release
//! when nothing needing them is left, and their failures. Servers listen on loopback,
//! on ports found free; every test checks that no process of it is left.

use crate::util::{marker, processes_with, wait_for, Collected, Test};
use std::time::Duration;

/// A port nothing listens on now.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().unwrap().port()
}

#[track_caller]
fn assert_none_left(mark: &str) {
    let gone = wait_for(Duration::from_secs(10), || processes_with(mark).is_empty());
    let left = processes_with(mark);
    for pid in &left {
        // SAFETY: killing what this test started, so that a failure leaves nothing behind.
        unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
    }
    assert!(gone, "left behind: {left:?}");
}

/// A copy of `sleep` whose name carries `mark`, so that its processes can be found.
fn marked_sleep(t: &Test, mark: &str) -> String {
    let name = format!("sleep-{mark}");
    std::fs::copy("/bin/sleep", t.path(&name)).unwrap();
    format!("./{name}")
}

/// A Python HTTP server that opens its port after `delay` seconds, its command line
/// marked with `mark`.
const SLOW_SERVER: &str = r#"import http.server, sys, time
time.sleep(float(sys.argv[2]))
server = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), http.server.SimpleHTTPRequestHandler)
print("serving on", sys.argv[1], flush=True)
server.serve_forever()
"#;

#[test]
fn redis_as_a_service_serves_its_clients_in_a_pool_of_one_and_is_released() {
    let port = free_port();
    let mark = format!("127.0.0.1:{port}");
    let t = Test::new(&format!(
        r#"pool = 1
[jobs.redis]
service = true
command = "exec redis-server --port {port} --bind 127.0.0.1 --save '' --appendonly no"
ready = {{ tcp = "127.0.0.1:{port}" }}

[jobs.write]
needs = ["redis"]
items = ["a", "b"]
command = "redis-cli -p {port} set key-{{item}} value-{{item}}"

[jobs.read]
needs = ["redis", "write"]
command = "redis-cli -p {port} mget key-a key-b"
"#
    ))
    .args(&[
        "--report",
        "report.json",
        "--junit",
        "junit.xml",
        "--trace",
        "trace.json",
    ]);
    let out = t.run();
    out.assert_code(0);
    let junit = t.read("junit.xml");
    assert!(junit.contains("service released (ready after "), "{junit}");
    let trace = t.read("trace.json");
    assert!(trace.contains("\"name\":\"redis ready\""), "{trace}");
    assert_eq!(out.lines_of("write:a"), ["OK"]);
    assert_eq!(out.lines_of("write:b"), ["OK"]);
    assert_eq!(out.lines_of("read"), ["value-a", "value-b"]);
    out.assert_stderr_has("redis: ready after ")
        .assert_stderr_has(&format!("(tcp 127.0.0.1:{port})"))
        .assert_stderr_has("done redis pid ")
        .assert_stderr_has("released (ready after ")
        .assert_stderr_has("4 tasks: 4 succeeded")
        .assert_stderr_has("service redis: started ")
        .assert_stderr_has("ready after ");
    assert_none_left(&mark);
    // The report: each service's start, ready time and stop.
    let report: serde_json::Value = serde_json::from_str(&t.read("report.json")).unwrap();
    let task = report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["job"] == "redis")
        .expect("the service's task");
    assert_eq!(task["status"], "succeeded", "{task}");
    let service = &task["service"];
    assert_eq!(service["check"], format!("tcp 127.0.0.1:{port}"), "{task}");
    assert_eq!(service["released"], true, "{task}");
    assert!(service["ready_after_s"].as_f64().unwrap() < 10.0, "{task}");
    assert!(service["ready_at"].is_string(), "{task}");
    assert!(service["stopped_at"].is_string(), "{task}");
    assert!(task["start"].is_string(), "{task}");
}

#[test]
fn an_http_service_that_opens_its_port_late_is_waited_for() {
    let port = free_port();
    let mark = marker("httplate");
    let t = Test::new(&format!(
        r#"[jobs.web]
service = true
command = ["python3", "server.py", "{port}", "0.7", "{mark}"]
ready = {{ http = "http://127.0.0.1:{port}/" }}

[jobs.get]
needs = ["web"]
command = ["python3", "-c", "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:{port}/index.txt').read().decode())"]
"#
    ));
    t.write("server.py", SLOW_SERVER)
        .write("index.txt", "hello\n");
    let out = t.run();
    out.assert_code(0);
    assert_eq!(out.lines_of("get"), ["hello"]);
    out.assert_stderr_has(&format!("(http http://127.0.0.1:{port}/)"));
    assert_none_left(&mark);
}

#[test]
fn a_line_of_output_makes_a_service_ready_and_grouped_output_shows_it_as_it_comes() {
    let mark = marker("lineready");
    let t0 = Test::new("");
    let sleep = marked_sleep(&t0, &mark);
    t0.write(
        "jobs.toml",
        &format!(
            r#"output = "grouped"
[jobs.svc]
service = true
command = "sleep 0.3; echo 'listening on port 7'; exec {sleep} 30"
ready = {{ line = 'listening on port \d+' }}

[jobs.user]
needs = ["svc"]
command = "echo used"
"#
        ),
    );
    let t = t0;
    let out = t.run();
    out.assert_code(0);
    out.assert_stderr_has("svc: ready after ")
        .assert_stderr_has("(line /listening on port \\d+/)");
    // Shown as it came, before the task that needed it printed (in grouped output a
    // task's lines wait for its end; a service ends only after its users).
    let svc = out
        .stdout
        .find("[svc] listening on port 7")
        .expect(&out.stdout);
    let user = out.stdout.find("[user] used").expect(&out.stdout);
    assert!(svc < user, "{}", out.stdout);
    assert_none_left(&mark);
}

#[test]
fn a_command_check_makes_a_service_ready() {
    let mark = marker("cmdready");
    let t0 = Test::new("");
    let sleep = marked_sleep(&t0, &mark);
    t0.write(
        "jobs.toml",
        &format!(
            r#"[jobs.svc]
service = true
command = "sleep 0.4; touch up; exec {sleep} 30"
ready = {{ command = ["test", "-f", "up"] }}

[jobs.user]
needs = ["svc"]
command = "test -f up && echo saw it up"
"#
        ),
    );
    let t = t0;
    let out = t.run();
    out.assert_code(0);
    assert_eq!(out.lines_of("user"), ["saw it up"]);
    out.assert_stderr_has(r#"(command ["test", "-f", "up"])"#);
    assert_none_left(&mark);
}

#[test]
fn a_service_never_ready_fails_after_its_timeout_and_its_users_are_skipped() {
    let port = free_port();
    let mark = marker("neverready");
    let t0 = Test::new("");
    let sleep = marked_sleep(&t0, &mark);
    t0.write(
        "jobs.toml",
        &format!(
            r#"[jobs.svc]
service = true
command = "echo starting; exec {sleep} 30"
ready = {{ tcp = "127.0.0.1:{port}" }}
ready_timeout = "1s"

[jobs.user]
needs = ["svc"]
command = "echo must not run"
"#
        ),
    );
    let t = t0.args(&["--report", "report.json"]);
    let out = t.run();
    out.assert_code(1);
    assert!(out.lines_of("user").is_empty(), "{}", out.stdout);
    out.assert_stderr_has("FAIL svc pid ")
        .assert_stderr_has(&format!(
            "not ready after 1.00s (tcp 127.0.0.1:{port}; last try: Connection refused"
        ))
        .assert_stderr_has("skipped `user` (1 task): a needed job failed: `svc`");
    assert_none_left(&mark);
    let report: serde_json::Value = serde_json::from_str(&t.read("report.json")).unwrap();
    let task = &report["tasks"][0];
    assert_eq!(task["status"], "failed", "{task}");
    assert!(
        task["error"]
            .as_str()
            .unwrap()
            .starts_with("not ready after 1.00s"),
        "{task}"
    );
    assert_eq!(
        task["service"]["ready_at"],
        serde_json::Value::Null,
        "{task}"
    );
}

#[test]
fn a_service_that_crashes_before_it_is_ready_fails_with_its_exit_and_last_lines() {
    let port = free_port();
    let t = Test::new(&format!(
        r#"[jobs.svc]
service = true
command = "echo 'cannot bind' >&2; exit 3"
ready = {{ tcp = "127.0.0.1:{port}" }}

[jobs.user]
needs = ["svc"]
command = "echo must not run"
"#
    ));
    let out = t.run();
    out.assert_code(1);
    assert!(out.lines_of("user").is_empty(), "{}", out.stdout);
    out.assert_stderr_has("FAIL svc pid ")
        .assert_stderr_has(&format!(
            "exit 3: ended before it was ready (tcp 127.0.0.1:{port}"
        ))
        .assert_stderr_has("  | cannot bind")
        .assert_stderr_has("skipped `user` (1 task)");
}

#[test]
fn a_service_that_crashes_after_it_is_ready_fails_running_users_go_on_waiting_ones_are_skipped() {
    let mark = marker("crashafter");
    let t0 = Test::new("");
    let sleep = marked_sleep(&t0, &mark);
    t0.write(
        "jobs.toml",
        &format!(
            r#"[jobs.svc]
service = true
command = "echo up; sleep 0.5; echo 'segfault' >&2; exit 4"
ready = {{ line = "up" }}

[jobs.slow]
needs = ["svc"]
command = "exec {sleep} 1.5"

[jobs.later]
needs = ["svc", "slow"]
command = "echo must not run"
"#
        ),
    );
    let t = t0;
    let out = t.run();
    out.assert_code(1);
    out.assert_stderr_has("FAIL svc pid ")
        .assert_stderr_has("exit 4: ended while jobs still needed it")
        .assert_stderr_has("done slow pid ")
        .assert_stderr_has("skipped `later` (1 task)");
    assert!(out.lines_of("later").is_empty(), "{}", out.stdout);
    assert_none_left(&mark);
}

#[test]
fn ctrl_c_stops_services_and_their_users_leaving_no_process() {
    let mark = marker("svcctrlc");
    let t0 = Test::new("");
    let sleep = marked_sleep(&t0, &mark);
    t0.write(
        "jobs.toml",
        &format!(
            r#"[jobs.svc]
service = true
command = "exec {sleep} 60"

[jobs.user]
needs = ["svc"]
command = "exec {sleep} 61"
"#
        ),
    );
    let t = t0.args(&["--grace", "2s"]);
    let mut child = t.spawn();
    let stderr = Collected::start(child.stderr.take().unwrap());
    let _stdout = Collected::start(child.stdout.take().unwrap());
    assert!(
        wait_for(Duration::from_secs(10), || processes_with(&mark).len() >= 2),
        "started: {:?}\n{}",
        processes_with(&mark),
        stderr.now()
    );
    // SAFETY: signalling the runner this test started, by its pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{}", stderr.now());
    let text = stderr.finish();
    assert!(text.contains("stopped svc pid "), "{text}");
    assert!(text.contains("stopped user pid "), "{text}");
    assert_none_left(&mark);
}

#[test]
fn two_services_by_items_on_two_ports() {
    let (a, b) = (free_port(), free_port());
    let mark = marker("twoports");
    let t = Test::new(&format!(
        r#"[jobs.web]
service = true
items = [ {{ name = "one", port = {a} }}, {{ name = "two", port = {b} }} ]
command = ["python3", "server.py", "{{item.port}}", "0.2", "{mark}"]
ready = {{ http = "http://127.0.0.1:{{item.port}}/" }}

[jobs.get]
needs = ["web"]
items = [{a}, {b}]
command = ["python3", "-c", "import sys, urllib.request; print(urllib.request.urlopen('http://127.0.0.1:' + sys.argv[1] + '/index.txt').read().decode().strip())", "{{item}}"]
"#
    ));
    t.write("server.py", SLOW_SERVER).write("index.txt", "hi\n");
    let out = t.run();
    out.assert_code(0);
    assert_eq!(out.lines_of(&format!("get:{a}")), ["hi"]);
    assert_eq!(out.lines_of(&format!("get:{b}")), ["hi"]);
    out.assert_stderr_has(&format!("(http http://127.0.0.1:{a}/)"))
        .assert_stderr_has(&format!("(http http://127.0.0.1:{b}/)"));
    assert_none_left(&mark);
}

#[test]
fn a_service_needed_by_two_jobs_in_sequence_is_kept_until_the_second_ends() {
    let port = free_port();
    let mark = format!("127.0.0.1:{port}");
    let t = Test::new(&format!(
        r#"[jobs.redis]
service = true
command = "exec redis-server --port {port} --bind 127.0.0.1 --save '' --appendonly no"
ready = {{ tcp = "127.0.0.1:{port}" }}

[jobs.first]
needs = ["redis"]
command = "redis-cli -p {port} set k 1"

[jobs.pause]
needs = ["first"]
command = "sleep 0.5"

[jobs.second]
needs = ["redis", "pause"]
command = "redis-cli -p {port} incr k"
"#
    ));
    let out = t.run();
    out.assert_code(0);
    assert_eq!(out.lines_of("second"), ["2"]);
    assert_none_left(&mark);
}

#[test]
fn plan_shows_services_and_their_readiness() {
    let t = Test::new(
        r#"[jobs.db]
service = true
items = [ { port = 7001 }, { port = 7002 } ]
command = "redis-server --port {item.port}"
ready = { tcp = "127.0.0.1:{item.port}" }
ready_timeout = "5s"

[jobs.web]
service = true
command = "python3 -m http.server 8000"

[jobs.test]
needs = ["db", "web"]
command = "make test"
"#,
    );
    let out = t.run_with(&["plan", "jobs.toml"]);
    out.assert_code(0);
    out.assert_stdout_has("service, ready: tcp 127.0.0.1:7001 within 5s")
        .assert_stdout_has("service, ready: tcp 127.0.0.1:7002 within 5s")
        .assert_stdout_has("service, ready once started");
    let json = t.run_with(&["plan", "jobs.toml", "--json"]);
    json.assert_code(0);
    let tasks: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let db = &tasks[0];
    assert_eq!(db["job"], "db", "{tasks}");
    assert_eq!(db["service"]["ready"], "tcp 127.0.0.1:7001", "{tasks}");
    assert_eq!(db["service"]["ready_timeout_s"], 5.0, "{tasks}");
    assert_eq!(
        tasks[2]["service"]["ready"],
        serde_json::Value::Null,
        "{tasks}"
    );
    assert_eq!(tasks[3]["service"], serde_json::Value::Null, "{tasks}");
}

#[test]
fn load_errors_about_services_name_the_place_and_what_to_do() {
    let t = Test::new(
        r#"[jobs.a]
command = "true"
ready = { tcp = "127.0.0.1:1" }

[jobs.b]
service = true
command = "true"
ready = { line = "(unclosed" }
retries = 2

[jobs.c]
service = true
command = "true"
ready = { tpc = "x" }
"#,
    );
    let out = t.run_with(&["check", "jobs.toml"]);
    out.assert_code(2);
    out.assert_stderr_has("job `a` has `ready` but is not a service")
        .assert_stderr_has("add `service = true`, or remove `ready`")
        .assert_stderr_has("`ready.line` is not a regular expression")
        .assert_stderr_has("job `b` is a service and cannot have `retries`")
        .assert_stderr_has("unknown key `tpc` in `ready`")
        .assert_stderr_has("did you mean `tcp`?")
        .assert_stderr_has("jobs.toml:3:");
}

/// The shipped example (examples/services.toml) runs as its comment says: a Redis
/// server and two client jobs, on a port given with `--set`.
#[test]
fn the_shipped_services_example_runs() {
    let port = free_port();
    let example = std::fs::read_to_string(crate::util::root().join("examples/services.toml"))
        .expect("the example");
    let t = Test::new(&example).args(&["--set", &format!("port={port}")]);
    let out = t.run();
    out.assert_code(0);
    assert_eq!(out.lines_of("count"), ["3"]);
    out.assert_stderr_has("service redis: started ")
        .assert_stderr_has(&format!("(tcp 127.0.0.1:{port}), released after "));
    assert_none_left(&format!("127.0.0.1:{port}"));
}

#[test]
fn a_sigkilled_runner_leaves_no_service_behind() {
    let mark = marker("svckilled");
    let t0 = Test::new("");
    let sleep = marked_sleep(&t0, &mark);
    t0.write(
        "jobs.toml",
        &format!(
            "[jobs.svc]\nservice = true\ncommand = \"exec {sleep} 60\"\n\
             [jobs.user]\nneeds = [\"svc\"]\ncommand = \"exec {sleep} 61\"\n"
        ),
    );
    let t = t0.args(&["--grace", "1s"]);
    let mut child = t.spawn();
    assert!(
        wait_for(Duration::from_secs(10), || processes_with(&mark).len() >= 2),
        "started: {:?}",
        processes_with(&mark)
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert_none_left(&mark);
}

#[test]
fn fail_fast_stops_the_services_too() {
    let mark = marker("svcfailfast");
    let t0 = Test::new("");
    let sleep = marked_sleep(&t0, &mark);
    t0.write(
        "jobs.toml",
        &format!(
            "fail_fast = true\n[jobs.svc]\nservice = true\ncommand = \"exec {sleep} 60\"\n\
             [jobs.bad]\nneeds = [\"svc\"]\ncommand = \"exit 1\"\n\
             [jobs.long]\nneeds = [\"svc\"]\ncommand = \"exec {sleep} 61\"\n"
        ),
    );
    let out = t0.run();
    out.assert_code(1);
    out.assert_stderr_has("fail-fast: a task of `bad` failed")
        .assert_stderr_has("stopped svc pid ")
        .assert_stderr_has("stopped long pid ");
    assert_none_left(&mark);
}

/// The HTML page marks when a service became ready, and its bar's hover text says its
/// check, the time it took and that it was released; the page made again from the JSON
/// report says the same.
#[test]
fn the_html_page_marks_a_services_readiness_and_release() {
    let mark = marker("html-ready");
    let t = Test::new("");
    let sleep = marked_sleep(&t, &mark);
    t.write(
        "jobs.toml",
        &format!(
            "[jobs.up]\nservice = true\ncommand = 'echo listening; exec {sleep} 30'\nready = {{ line = 'listening' }}\n\
             [jobs.use]\ncommand = 'true'\nneeds = ['up']\n"
        ),
    );
    t.run_with(&[
        "run",
        "jobs.toml",
        "--html",
        "page.html",
        "--report",
        "run.json",
    ])
    .assert_code(0);
    t.run_with(&["report", "run.json", "--html", "again.html"])
        .assert_code(0);
    for page in ["page.html", "again.html"] {
        let html = t.read(page);
        assert!(
            html.contains("<rect class=\"ready\""),
            "{page}: no readiness mark"
        );
        assert!(
            html.contains("up: ready at +"),
            "{page}: no readiness title"
        );
        assert!(
            html.contains("service (line /listening/): ready after") && html.contains(", released"),
            "{page}: the service's bar does not say its life"
        );
    }
    assert_none_left(&mark);
}

/// With `--broker`, services run on the coordinator only: a fan-out service (its items
/// would go to workers were it not a service) runs here, its users on the worker.
#[cfg(feature = "distributed")]
#[test]
fn with_a_broker_services_run_on_the_coordinator_and_their_users_on_workers() {
    use crate::distributed::{Redis, Worker};
    let mark = marker("svc-broker");
    let t = Test::new("");
    let sleep = marked_sleep(&t, &mark);
    t.write(
        "jobs.toml",
        &format!(
            "[jobs.up]\nservice = true\nitems = ['a', 'b']\ncommand = 'echo listening {{item}}; exec {sleep} 30'\nready = {{ line = 'listening' }}\n\
             [jobs.use]\nitems = ['x', 'y', 'z']\nneeds = ['up']\ncommand = 'echo used {{item}}'\n"
        ),
    );
    let redis = Redis::start(&[]);
    let worker = Worker::start(&t, "jobs.toml", &redis.url(), &["--pool", "2"], &[]);
    t.run_with(&[
        "run",
        "jobs.toml",
        "--broker",
        &redis.url(),
        "--no-local",
        "--report",
        "r.json",
    ])
    .assert_code(0);
    drop(worker);
    let report: serde_json::Value = serde_json::from_str(&t.read("r.json")).unwrap();
    let tasks = report["tasks"].as_array().unwrap();
    let of = |job: &'static str| tasks.iter().filter(move |r| r["job"] == job);
    assert_eq!(of("up").count(), 2);
    for r in of("up") {
        assert!(r["worker"].is_null(), "a service ran on a worker: {r}");
        assert_eq!(r["service"]["released"], true, "{r}");
    }
    assert_eq!(of("use").count(), 3);
    for r in of("use") {
        assert!(
            r["worker"].is_string(),
            "a user of the service ran here, not on the worker: {r}"
        );
    }
    assert_none_left(&mark);
}
