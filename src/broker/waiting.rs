//! What the coordinator says of tasks that wait on the broker: a run that no worker
//! serves, or whose `runs_on` labels or `uses` no worker can give, is never silent.
//!
//! Every few seconds the heartbeat thread counts the tasks published that no worker
//! started (at most the publishing window), reads who serves the run (`route.rs`), and
//! says, once the run is a few seconds old and then when the situation changes (or
//! every half minute while it lasts): "3 tasks wait for a worker with label gpu (1
//! worker serves this run, none with it)", "12 tasks wait; no worker serves this run
//! (host:41 refused it: …)", "2 tasks wait for a worker with gpu free".

use super::route::{Serving, WorkerInfo};
use super::Broker;
use crate::jobfile::{labels, JobFile, JobId};
use crate::task::{plural, printable};
use std::time::{Duration, Instant};

/// Nothing is said before the run is this old (workers take a moment to find it).
const QUIET_FOR: Duration = Duration::from_secs(3);
/// How often the waiting tasks are counted.
const LOOK_EVERY: Duration = Duration::from_secs(2);
/// The same situation is said again after this long.
const SAY_AGAIN: Duration = Duration::from_secs(30);
/// The most workers named in one line.
const NAMED: usize = 3;

/// The heartbeat's memory of what it said.
pub struct Watch {
    started: Instant,
    looked: Option<Instant>,
    /// What was said last, its numbers left out, and when.
    said: Option<(String, Instant)>,
}

impl Watch {
    pub fn new() -> Watch {
        Watch {
            started: Instant::now(),
            looked: None,
            said: None,
        }
    }

    /// Looks, if it is time, and returns the line to say, if one is due. `waiting`
    /// gives the tasks published and not started, by job.
    pub fn tick(
        &mut self,
        file: &JobFile,
        run: &str,
        broker: &mut Broker,
        waiting: impl FnOnce(&mut Broker) -> Vec<(JobId, u64)>,
    ) -> Option<String> {
        if self.started.elapsed() < QUIET_FOR
            || self.looked.is_some_and(|t| t.elapsed() < LOOK_EVERY)
        {
            return None;
        }
        self.looked = Some(Instant::now());
        let waiting = waiting(broker);
        let line = match waiting.iter().any(|(_, n)| *n > 0) {
            true => broker
                .who_serves(run)
                .ok()
                .and_then(|s| line(file, &waiting, &s)),
            false => None,
        };
        let Some(line) = line else {
            self.said = None;
            return None;
        };
        let shape: String = line.chars().filter(|c| !c.is_ascii_digit()).collect();
        let due = match &self.said {
            Some((said, at)) => *said != shape || at.elapsed() >= SAY_AGAIN,
            None => true,
        };
        if !due {
            return None;
        }
        self.said = Some((shape, Instant::now()));
        Some(line)
    }
}

/// Whether a serving process is the coordinator's own share (not a worker).
fn own_share(w: &WorkerInfo) -> bool {
    w.name.starts_with("coordinator@")
}

/// The line for tasks waiting (`waiting`: by job), given who serves the run; none when
/// what waits is only queued for workers that serve it.
pub fn line(file: &JobFile, waiting: &[(JobId, u64)], serving: &Serving) -> Option<String> {
    let workers = serving.serving.iter().filter(|w| !own_share(w)).count() as u64;
    let mut parts = Vec::new();
    if serving.serving.is_empty() {
        let n: u64 = waiting.iter().map(|(_, n)| n).sum();
        return Some(format!(
            "{}; no worker serves this run{}",
            waits(n),
            why_none(serving)
        ));
    }
    // By `runs_on`, in job order: the labels no serving process has all of.
    let mut by_labels: Vec<(&[String], u64)> = Vec::new();
    let mut by_uses: Vec<(String, u64)> = Vec::new();
    for &(job, n) in waiting.iter().filter(|(_, n)| *n > 0) {
        let job = &file.jobs[job];
        let served = serving
            .serving
            .iter()
            .any(|w| labels::missing(&job.runs_on, &w.labels).is_empty());
        if !served {
            match by_labels
                .iter_mut()
                .find(|(l, _)| *l == job.runs_on.as_slice())
            {
                Some((_, count)) => *count += n,
                None => by_labels.push((&job.runs_on, n)),
            }
        } else if !job.uses.is_empty() {
            let names: Vec<&str> = job
                .uses
                .iter()
                .map(|&(r, _)| file.resources[r].name.as_str())
                .collect();
            let names = names.join(" and ");
            match by_uses.iter_mut().find(|(u, _)| *u == names) {
                Some((_, count)) => *count += n,
                None => by_uses.push((names, n)),
            }
        }
    }
    for (wanted, n) in by_labels {
        parts.push(format!(
            "{} for a worker with {} ({} this run, none with {})",
            waits(n),
            labels::words(wanted),
            serve_count(workers),
            if wanted.len() == 1 { "it" } else { "them all" }
        ));
    }
    for (names, n) in by_uses {
        parts.push(format!("{} for a worker with {names} free", waits(n)));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

fn waits(n: u64) -> String {
    format!(
        "{} {}",
        plural(n, "task"),
        if n == 1 { "waits" } else { "wait" }
    )
}

fn serve_count(workers: u64) -> String {
    match workers {
        0 => "no worker serves".to_string(),
        1 => "1 worker serves".to_string(),
        n => format!("{n} workers serve"),
    }
}

/// Why no worker serves the run: none connected, or each connected one refused it
/// (with its words) or serves another run.
fn why_none(serving: &Serving) -> String {
    if serving.connected.is_empty() && serving.refused.is_empty() {
        return " (no worker is connected to the broker)".to_string();
    }
    let mut said: Vec<String> = Vec::new();
    for (name, why) in &serving.refused {
        said.push(format!(
            "{} refused it: {}",
            printable(name, 100),
            printable(why, 300)
        ));
    }
    for w in &serving.connected {
        if !serving.refused.iter().any(|(name, _)| *name == w.name) {
            said.push(format!("{} serves another run", printable(&w.name, 100)));
        }
    }
    let more = said.len().saturating_sub(NAMED);
    said.truncate(NAMED);
    if more > 0 {
        said.push(format!("{} more", plural(more as u64, "worker")));
    }
    format!(" ({})", said.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> JobFile {
        crate::jobfile::parse(
            std::path::Path::new("x.toml"),
            "[resources]\ngpu = 1\n[jobs.cpu]\ncommand = 'true'\nitems = ['1']\n\
             [jobs.train]\ncommand = 'true'\nitems = ['1']\nruns_on = ['gpu']\n\
             [jobs.heavy]\ncommand = 'true'\nitems = ['1']\nuses = { gpu = 1 }\n"
                .to_string(),
        )
        .expect("valid")
    }

    fn worker(name: &str, labels: &[&str]) -> WorkerInfo {
        WorkerInfo {
            name: name.into(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            pool: 1,
        }
    }

    #[test]
    fn says_which_labels_and_resources_tasks_wait_for() {
        let file = file();
        let serving = Serving {
            connected: vec![worker("h:1", &[])],
            serving: vec![worker("h:1", &[]), worker("coordinator@h:9", &[])],
            refused: vec![],
        };
        assert_eq!(
            line(&file, &[(0, 5), (1, 3), (2, 2)], &serving).as_deref(),
            Some(
                "3 tasks wait for a worker with label gpu (1 worker serves this run, none with it); \
                 2 tasks wait for a worker with gpu free"
            )
        );
        // Only queued for workers that serve it: nothing to say.
        assert_eq!(line(&file, &[(0, 5)], &serving), None);
        let gpu = Serving {
            serving: vec![worker("h:2", &["gpu"])],
            ..serving.clone()
        };
        assert_eq!(line(&file, &[(1, 3)], &gpu), None);
    }

    #[test]
    fn says_why_no_worker_serves_the_run() {
        let file = file();
        let none = Serving::default();
        assert_eq!(
            line(&file, &[(0, 12)], &none).as_deref(),
            Some("12 tasks wait; no worker serves this run (no worker is connected to the broker)")
        );
        let refused = Serving {
            connected: vec![worker("h:1", &[]), worker("h:2", &[])],
            serving: vec![],
            refused: vec![("h:1".into(), "it has no authkey".into())],
        };
        assert_eq!(
            line(&file, &[(0, 1)], &refused).as_deref(),
            Some(
                "1 task waits; no worker serves this run (h:1 refused it: it has no authkey; \
                 h:2 serves another run)"
            )
        );
    }
}
