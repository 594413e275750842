//! Choosing what runs: `runner run FILE JOB…` runs the named jobs and what they depend
//! on. The selection is closed under `needs` (transitively) and under queues both ways:
//! a producer brings its queue's consumer, a consumer every producer of its queue. The
//! result is a smaller [`JobFile`] holding only the selected jobs and queues (ids
//! renumbered, file order kept), so that everything after loading (the scheduler, the
//! reports, the summary) sees only the selection.

use super::{Items, JobFile, JobId, StdinSpec};
use crate::diagnostic::suggest;
use std::path::PathBuf;

/// The jobs named (in any order, any number of times) and everything they bring; every
/// job when `names` is empty. An unknown name is an error with a suggestion.
pub fn select(file: JobFile, names: &[String]) -> Result<JobFile, UnknownJob> {
    if names.is_empty() {
        return Ok(file);
    }
    let mut chosen = vec![false; file.jobs.len()];
    let mut todo: Vec<JobId> = Vec::new();
    for name in names {
        match file.jobs.iter().find(|j| &j.name == name) {
            Some(job) => todo.push(job.id),
            None => return Err(unknown_job(&file, name)),
        }
    }
    while let Some(j) = todo.pop() {
        if std::mem::replace(&mut chosen[j], true) {
            continue;
        }
        let job = &file.jobs[j];
        todo.extend(&job.needs);
        if let Some(q) = job.to {
            todo.extend(file.queues[q].consumer);
        }
        if let Some(q) = job.consumes() {
            todo.extend(&file.queues[q].producers);
        }
    }
    let mut selection: Vec<String> = Vec::new();
    for name in names {
        if !selection.contains(name) {
            selection.push(name.clone());
        }
    }
    Ok(JobFile {
        selection,
        ..restrict(file, &chosen)
    })
}

/// The names of the jobs, in file order, for messages and completions.
pub fn job_names(file: &JobFile) -> Vec<&str> {
    file.jobs.iter().map(|j| j.name.as_str()).collect()
}

/// A job named on the command line that the file does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{} has no job `{name}`{}; its jobs are {}",
    path.display(),
    suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default(),
    jobs.join(", ")
)]
pub struct UnknownJob {
    pub path: PathBuf,
    /// The name as given, made printable (at most 60 characters).
    pub name: String,
    /// The file's job name closest to it, if one is close.
    pub suggestion: Option<String>,
    /// The file's jobs, in file order.
    pub jobs: Vec<String>,
}

fn unknown_job(file: &JobFile, name: &str) -> UnknownJob {
    let names = job_names(file);
    let name = crate::diagnostic::printable(name, 60);
    UnknownJob {
        path: file.path.clone(),
        suggestion: suggest(&name, names.iter().copied()).map(str::to_string),
        jobs: names.iter().map(|n| n.to_string()).collect(),
        name,
    }
}

/// The file with only the `chosen` jobs and the queues they use, ids renumbered.
fn restrict(mut file: JobFile, chosen: &[bool]) -> JobFile {
    if chosen.iter().all(|c| *c) {
        return file;
    }
    let mut job_id = vec![None; chosen.len()];
    for (new, old) in (0..chosen.len()).filter(|&j| chosen[j]).enumerate() {
        job_id[old] = Some(new);
    }
    let mut queue_id = vec![None; file.queues.len()];
    let mut queues = Vec::new();
    for (old, mut queue) in std::mem::take(&mut file.queues).into_iter().enumerate() {
        // A queue of the selection has all its producers and its consumer in it.
        if !queue.producers.iter().any(|p| chosen[*p]) {
            continue;
        }
        queue_id[old] = Some(queues.len());
        queue.producers = queue.producers.iter().filter_map(|p| job_id[*p]).collect();
        queue.consumer = queue.consumer.and_then(|c| job_id[c]);
        queues.push(queue);
    }
    let jobs = std::mem::take(&mut file.jobs)
        .into_iter()
        .filter(|job| chosen[job.id])
        .map(|mut job| {
            job.id = job_id[job.id].expect("chosen");
            // The selection is closed under `needs`: every job needed is in it.
            job.needs = job.needs.iter().filter_map(|n| job_id[*n]).collect();
            job.each = job.each.iter().filter_map(|n| job_id[*n]).collect();
            job.to = job.to.and_then(|q| queue_id[q]);
            if let Items::Queue(q) = &mut job.items {
                *q = queue_id[*q].expect("a consumer's queue is selected with it");
            }
            if let StdinSpec::Queue(q) = &mut job.stdin {
                *q = queue_id[*q].expect("a consumer's queue is selected with it");
            }
            job
        })
        .collect();
    JobFile {
        jobs,
        queues,
        ..file
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobfile::parse;
    use std::path::Path;

    const FILE: &str = r#"
[jobs.fmt]
command = "true"
[jobs.clippy]
command = "true"
[jobs.lint]
command = "true"
needs = ["fmt", "clippy"]
[jobs.setup]
command = "true"
[jobs.produce]
command = "echo a"
needs = ["setup"]
to = "q"
[jobs.consume]
command = "cat"
stdin = { queue = "q" }
[jobs.report]
command = "true"
needs = ["consume"]
"#;

    fn names(file: &JobFile) -> Vec<String> {
        file.jobs.iter().map(|j| j.name.clone()).collect()
    }

    fn chosen(asked: &[&str]) -> Result<Vec<String>, UnknownJob> {
        let file = parse(Path::new("ci.toml"), FILE.to_string()).unwrap();
        let asked: Vec<String> = asked.iter().map(|s| s.to_string()).collect();
        select(file, &asked).map(|f| names(&f))
    }

    #[test]
    fn needs_are_followed_transitively() {
        assert_eq!(chosen(&["lint"]).unwrap(), ["fmt", "clippy", "lint"]);
        assert_eq!(chosen(&["fmt"]).unwrap(), ["fmt"]);
        assert_eq!(chosen(&["fmt", "fmt"]).unwrap(), ["fmt"]);
    }

    #[test]
    fn queues_bring_their_other_side_both_ways() {
        assert_eq!(
            chosen(&["consume"]).unwrap(),
            ["setup", "produce", "consume"]
        );
        assert_eq!(
            chosen(&["produce"]).unwrap(),
            ["setup", "produce", "consume"]
        );
        assert_eq!(
            chosen(&["report"]).unwrap(),
            ["setup", "produce", "consume", "report"]
        );
    }

    #[test]
    fn ids_and_queues_are_renumbered() {
        let file = parse(Path::new("ci.toml"), FILE.to_string()).unwrap();
        let file = select(file, &["report".to_string()]).unwrap();
        assert_eq!(file.queues.len(), 1);
        assert_eq!(file.queues[0].producers, [1]);
        assert_eq!(file.queues[0].consumer, Some(2));
        assert_eq!(file.jobs[3].needs, [2]);
        assert_eq!(file.jobs[1].to, Some(0));
        for (i, job) in file.jobs.iter().enumerate() {
            assert_eq!(job.id, i);
        }
    }

    #[test]
    fn an_unknown_job_is_refused_with_a_suggestion() {
        let err = chosen(&["lnt"]).unwrap_err();
        assert_eq!(err.suggestion.as_deref(), Some("lint"));
        let err = err.to_string();
        assert!(
            err.contains("has no job `lnt` (did you mean `lint`?)"),
            "{err}"
        );
        assert!(err.contains("its jobs are fmt, clippy, lint"), "{err}");
    }
}
