//! `--trace FILE`: the run's timeline in the Chrome trace event format (`{"traceEvents":
//! [...]}`), which Perfetto (ui.perfetto.dev) and `chrome://tracing` open.
//!
//! One complete event (`"ph": "X"`) per attempt, named by the task's whole name
//! (`JOB:ITEM`, the item uncut: `args.index` tells equal items apart), with `cat` its
//! job, `ts`/`dur` in microseconds from the run's start, `pid` the process that ran it
//! (this runner, or a worker: each named by a metadata event) and `tid` its slot (named
//! `slot N`). The coordinator's own share of a distributed run is this runner too: its
//! slots are threads of this runner's process, named `own share, slot N` (from
//! [`SHARE_TIDS`] on, since the runner's slots for local jobs run beside them). Written
//! as tasks end, a line per event: a run of 100,000 tasks
//! does not hold its trace in memory, only the names of the hosts and slots seen.

use crate::task::{describe_end, TaskRecord, Try};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The first thread id of the coordinator's own share (its slot 0): past any pool.
pub const SHARE_TIDS: usize = 1 << 20;

pub struct Trace {
    path: PathBuf,
    out: BufWriter<File>,
    origin: SystemTime,
    /// Trace processes by name: this runner's host, and each worker (`host:pid`).
    processes: HashMap<String, u32>,
    /// This runner's host: its process.
    host: String,
    /// The worker name of this runner's own share of a distributed run.
    own_share: String,
    /// Slots already named, by process.
    threads: HashSet<(u32, usize)>,
    /// Events written so far (a comma goes before every one but the first).
    events: u64,
    /// The first write that failed: nothing more is written.
    error: Option<io::Error>,
}

impl Trace {
    /// Creates the file (an error here is the user's: exit 2 before anything runs);
    /// `host` is this machine, the first process of the trace.
    pub fn create(path: &Path, origin: SystemTime, host: &str) -> io::Result<Trace> {
        let mut out = BufWriter::new(File::create(path)?);
        out.write_all(b"{\"displayTimeUnit\": \"ms\", \"traceEvents\": [\n")?;
        let mut trace = Trace {
            path: path.to_path_buf(),
            out,
            origin,
            processes: HashMap::new(),
            host: host.to_string(),
            own_share: crate::task::own_share(host),
            threads: HashSet::new(),
            events: 0,
            error: None,
        };
        trace.process(host);
        Ok(trace)
    }

    /// The path it writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A task's attempts. `job` is its job's name, `name` the task's (`task::name`).
    pub fn add(&mut self, job: &str, name: &str, r: &TaskRecord) {
        let mut tries = r.each_try();
        // Restored from the cache: its slot was busy restoring, one event says so.
        let restored = tries.is_empty() && r.status == crate::task::Status::Cached;
        if let (true, Some(started)) = (restored, r.started) {
            tries.push(Try {
                started,
                duration: r.duration,
                pid: None,
                end: crate::task::End::Exited(0),
            });
        }
        if tries.is_empty() || self.error.is_some() {
            return;
        }
        let slot = if r.slot == usize::MAX { 0 } else { r.slot };
        let (pid, tid, thread) = if r.worker.as_deref() == Some(self.own_share.as_str()) {
            let host = self.host.clone();
            let tid = SHARE_TIDS.saturating_add(slot);
            (self.process(&host), tid, format!("own share, slot {slot}"))
        } else {
            (self.process(r.ran_on()), slot, format!("slot {slot}"))
        };
        if self.threads.insert((pid, tid)) {
            self.event(
                json!({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid,
                "args": {"name": thread}}),
            );
            self.event(
                json!({"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": tid,
                "args": {"sort_index": tid}}),
            );
        }
        let last = tries.len();
        for (n, t) in tries.iter().enumerate() {
            let outcome = if n + 1 < last {
                "retried"
            } else {
                r.outcome().words()
            };
            self.event(json!({
                "name": name,
                "cat": job,
                "ph": "X",
                "ts": micros(self.origin, t.started),
                "dur": t.duration.as_micros() as u64,
                "pid": pid,
                "tid": tid,
                "cname": colour(outcome),
                "args": {
                    "item": crate::secrets::redact(&r.item),
                    "index": r.index,
                    "attempt": n + 1,
                    "attempts": last,
                    "end": if restored {
                        "restored from cache".to_string()
                    } else {
                        describe_end(&t.end)
                    },
                    "outcome": outcome,
                    "os_pid": t.pid,
                },
            }));
        }
        // A service: an instant event when it became ready, on its own lane.
        if let Some(at) = r.service.as_ref().and_then(|s| s.ready_at) {
            let check = r.service.as_ref().and_then(|s| s.check.clone());
            self.event(json!({
                "name": format!("{name} ready"),
                "cat": job,
                "ph": "i",
                "s": "t",
                "ts": micros(self.origin, at),
                "pid": pid,
                "tid": tid,
                "args": { "check": check.as_deref().map(crate::secrets::redact) },
            }));
        }
    }

    /// Ends the file; the first error of any write, if one failed.
    pub fn finish(mut self) -> io::Result<()> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.out.write_all(b"\n]}\n")?;
        self.out.flush()
    }

    /// The trace process of `name`, named by a metadata event the first time.
    fn process(&mut self, name: &str) -> u32 {
        if let Some(&pid) = self.processes.get(name) {
            return pid;
        }
        let pid = self.processes.len() as u32 + 1;
        self.processes.insert(name.to_string(), pid);
        self.event(json!({"name": "process_name", "ph": "M", "pid": pid,
            "args": {"name": name}}));
        self.event(json!({"name": "process_sort_index", "ph": "M", "pid": pid,
            "args": {"sort_index": pid}}));
        pid
    }

    fn event(&mut self, event: serde_json::Value) {
        if self.error.is_some() {
            return;
        }
        let written = (|| -> io::Result<()> {
            if self.events > 0 {
                self.out.write_all(b",\n")?;
            }
            serde_json::to_writer(&mut self.out, &event)?;
            Ok(())
        })();
        self.events += 1;
        if let Err(e) = written {
            self.error = Some(e);
        }
    }
}

/// Microseconds from `origin` to `t` (negative for a worker whose clock is behind).
fn micros(origin: SystemTime, t: SystemTime) -> i64 {
    match t.duration_since(origin) {
        Ok(d) => d.as_micros() as i64,
        Err(e) => -(e.duration().as_micros() as i64),
    }
}

/// The trace viewer's reserved colour names.
fn colour(outcome: &str) -> &'static str {
    match outcome {
        "succeeded" | "cached" => "good",
        "failed" => "terrible",
        "retried" => "bad",
        "failed (allowed)" => "yellow",
        _ => "grey",
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::records;
    use super::*;
    use crate::task::{End, Try};
    use std::time::Duration;

    #[test]
    fn one_event_per_attempt_with_hosts_and_slots_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        let origin = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let mut trace = Trace::create(&path, origin, "here").unwrap();
        let mut records = records();
        // test:b: two attempts, the first failed and retried.
        let b = &mut records[2];
        let first = b.started.unwrap();
        b.tries = vec![
            Try {
                started: first,
                duration: Duration::from_millis(100),
                pid: Some(7),
                end: End::Exited(2),
            },
            Try {
                started: first + Duration::from_millis(150),
                duration: Duration::from_millis(150),
                pid: Some(8),
                end: End::Exited(2),
            },
        ];
        // test:c ran on a worker.
        records[3].worker = Some("elsewhere:42".into());
        records[3].slot = 3;
        for r in &records {
            trace.add("job", &format!("l{}", r.index), r);
        }
        trace.finish().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        let events = doc["traceEvents"].as_array().unwrap();
        let x: Vec<&serde_json::Value> = events.iter().filter(|e| e["ph"] == "X").collect();
        // build, a, b twice, c, lint (no process, but it ran); deploy never ran.
        assert_eq!(x.len(), 6, "{text}");
        let b: Vec<_> = x.iter().filter(|e| e["args"]["index"] == 1).collect();
        assert_eq!(b[0]["args"]["outcome"], "retried");
        assert_eq!(b[1]["args"]["outcome"], "failed");
        assert_eq!(
            b[1]["ts"].as_i64().unwrap() - b[0]["ts"].as_i64().unwrap(),
            150_000
        );
        assert_eq!(b[1]["dur"], 150_000);
        let names: Vec<(&serde_json::Value, &serde_json::Value)> = events
            .iter()
            .filter(|e| e["name"] == "process_name")
            .map(|e| (&e["pid"], &e["args"]["name"]))
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert_eq!(names[1].1, "elsewhere:42");
        let c = x.iter().find(|e| e["args"]["index"] == 2).unwrap();
        assert_eq!((&c["pid"], &c["tid"]), (names[1].0, &json!(3)));
        assert!(events
            .iter()
            .any(|e| e["name"] == "thread_name" && e["args"]["name"] == "slot 3"));
    }

    #[test]
    fn the_own_share_is_this_runner_with_slots_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        let mut trace = Trace::create(&path, SystemTime::UNIX_EPOCH, "here").unwrap();
        let mut records = records();
        records[0].slot = 1;
        records[3].slot = 1;
        records[3].worker = Some(crate::task::own_share("here"));
        trace.add("job", "local", &records[0]);
        trace.add("job", "shared", &records[3]);
        trace.finish().unwrap();
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let events = doc["traceEvents"].as_array().unwrap();
        let names: Vec<&serde_json::Value> = events
            .iter()
            .filter(|e| e["name"] == "process_name")
            .collect();
        assert_eq!(names.len(), 1, "{doc}");
        let x = |name: &str| events.iter().find(|e| e["name"] == name).unwrap();
        assert_eq!(x("shared")["pid"], x("local")["pid"]);
        assert_eq!(x("local")["tid"], 1);
        assert_eq!(x("shared")["tid"], SHARE_TIDS + 1);
        assert!(events.iter().any(|e| e["name"] == "thread_name"
            && e["tid"] == SHARE_TIDS + 1
            && e["args"]["name"] == "own share, slot 1"));
    }
}
