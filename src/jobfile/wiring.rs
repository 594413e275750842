//! Rules that span jobs, checked at load time once every job is valid on its own: queue
//! wiring (one consumer, at least one producer, no consumer fed by a job it needs) and
//! cycles through `needs` and queues. Also the graph's edges, which `graph` draws.

use super::{each_map, Items, JobFile, JobId, When};
use crate::diagnostic::Diagnostic;

/// Item-by-item `needs`: both jobs have their items in the file (no items file, no
/// queue), the same labels (in any order), and the job runs on success only.
fn each(file: &JobFile) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for job in &file.jobs {
        for &dep in &job.each {
            let Some(at) = job.needs.iter().position(|&n| n == dep) else {
                continue;
            };
            let span = job.needs_spans[at].clone();
            let (name, other) = (&job.name, &file.jobs[dep].name);
            let held = |j: JobId| match file.jobs[j].items {
                Items::Queue(_) => Some("its items come from a queue"),
                Items::File { .. } => Some("its items are read from a file as tasks start"),
                _ => None,
            };
            let problem = [(job.id, name), (dep, other)]
                .into_iter()
                .find_map(|(j, n)| held(j).map(|why| (n, why)));
            let d = if let Some((n, why)) = problem {
                Diagnostic::at(
                    format!("job `{name}` needs `{other}` item by item, but `{n}` cannot be matched item by item: {why}"),
                    span,
                )
                .with_note("item by item works between jobs whose items are in the file (a list, a range, tables or a matrix); use a plain `needs` entry")
            } else if job.when != When::Success {
                Diagnostic::at(
                    format!("job `{name}` needs `{other}` item by item and has `when = \"{}\"`: a job needed item by item runs on success only", job.when.name()),
                    span,
                )
                .with_note("use a plain `needs` entry with `when`")
            } else if each_map(file, job.id, dep).is_none() {
                Diagnostic::at(
                    format!("job `{name}` needs `{other}` item by item, but their items differ: {}", label_difference(file, job.id, dep)),
                    span,
                )
                .with_note("item by item links the task of each label to the task of the same label: both jobs need the same labels (in any order)")
            } else {
                continue;
            };
            out.push(d);
        }
    }
    out
}

/// How the labels of two jobs' items differ, in words: a label one has and the other
/// lacks, or their counts.
fn label_difference(file: &JobFile, a: JobId, b: JobId) -> String {
    let (ja, jb) = (&file.jobs[a], &file.jobs[b]);
    let labels = |items: &Items| -> Vec<String> {
        let n = items.count().unwrap_or(0);
        (0..n).filter_map(|i| items.in_memory(i)).collect()
    };
    let (la, lb) = (labels(&ja.items), labels(&jb.items));
    let only = |x: &[String], y: &[String]| {
        let mut counts: std::collections::HashMap<&str, i64> = Default::default();
        for l in y {
            *counts.entry(l.as_str()).or_default() += 1;
        }
        x.iter()
            .find(|l| {
                let c = counts.entry(l.as_str()).or_default();
                *c -= 1;
                *c < 0
            })
            .cloned()
    };
    let shown = |l: &str| {
        if l.is_empty() {
            "(no item)".to_string()
        } else {
            format!("`{l}`")
        }
    };
    if let Some(l) = only(&la, &lb) {
        format!(
            "{} is an item of `{}` but not of `{}`",
            shown(&l),
            ja.name,
            jb.name
        )
    } else if let Some(l) = only(&lb, &la) {
        format!(
            "{} is an item of `{}` but not of `{}`",
            shown(&l),
            jb.name,
            ja.name
        )
    } else {
        format!(
            "`{}` has {} items, `{}` has {}",
            ja.name,
            la.len(),
            jb.name,
            lb.len()
        )
    }
}

/// An edge of the run order: `from` must finish (needs) or feeds (queue) `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edge {
    Needs {
        from: JobId,
        to: JobId,
        /// Item by item (`each = true`).
        each: bool,
    },
    Queue {
        from: JobId,
        to: JobId,
        queue: usize,
    },
}

impl Edge {
    fn ends(&self) -> (JobId, JobId) {
        match self {
            Edge::Needs { from, to, .. } | Edge::Queue { from, to, .. } => (*from, *to),
        }
    }
}

pub fn edges(file: &JobFile) -> Vec<Edge> {
    let mut edges = Vec::new();
    for job in &file.jobs {
        for &dep in &job.needs {
            edges.push(Edge::Needs {
                from: dep,
                to: job.id,
                each: job.each.contains(&dep),
            });
        }
    }
    for (q, queue) in file.queues.iter().enumerate() {
        if let Some(consumer) = queue.consumer {
            for &producer in &queue.producers {
                edges.push(Edge::Queue {
                    from: producer,
                    to: consumer,
                    queue: q,
                });
            }
        }
    }
    edges
}

/// Every graph-level problem of a file whose jobs are individually valid.
pub fn check(file: &JobFile) -> Vec<Diagnostic> {
    let mut out = each(file);
    for queue in &file.queues {
        match (queue.producers.is_empty(), queue.consumer) {
            (true, _) => out.push(
                Diagnostic::at(format!("queue `{}` has no producer", queue.name), queue.span.clone())
                    .with_note(format!("a producer is a job with `to = \"{}\"`", queue.name)),
            ),
            (_, None) => out.push(
                Diagnostic::at(format!("queue `{}` has no consumer", queue.name), queue.span.clone()).with_note(
                    format!(
                        "a consumer is a job with `items = {{ queue = \"{0}\" }}` or `stdin = {{ queue = \"{0}\" }}`",
                        queue.name
                    ),
                ),
            ),
            _ => {}
        }
    }
    for queue in &file.queues {
        let Some(consumer) = queue.consumer else {
            continue;
        };
        for &producer in &queue.producers {
            if producer != consumer && needs_transitively(file, consumer, producer) {
                let job = &file.jobs[consumer];
                out.push(
                    Diagnostic::at(
                        format!(
                            "job `{}` consumes queue `{}` but needs its producer `{}`: it would wait for the queue to be closed before reading it",
                            job.name, queue.name, file.jobs[producer].name
                        ),
                        job.span.clone(),
                    )
                    .with_note("remove the `needs`; a queue consumer starts at once and reads while its producers run"),
                );
            }
        }
    }
    if let Some(cycle) = find_cycle(file) {
        let names: Vec<&str> = cycle.iter().map(|&j| file.jobs[j].name.as_str()).collect();
        out.push(
            Diagnostic::at(
                format!("cycle: {}", names.join(" → ")),
                file.jobs[cycle[0]].span.clone(),
            )
            .with_note("a job cannot wait on (through `needs`) or feed (through a queue) itself"),
        );
    }
    if out.is_empty() {
        if let Some((first, steps)) = wait_cycle(file) {
            out.push(
                Diagnostic::at(
                    format!("these jobs would wait for each other forever once a queue is full: {}", steps.join("; ")),
                    file.jobs[first].span.clone(),
                )
                .with_note("a producer cannot end while its queue is full and unread, and a consumer reads until every producer ended: remove one of these `needs`"),
            );
        }
    }
    out
}

/// A cycle of waits between the starts and ends of jobs, which no run could get out of
/// once a queue is full: a job starts after its `needs` ended; a consumer ends after its
/// queue's producers ended; and a producer (that writes more than the queue holds) ends
/// only after its consumer started. Returns the first job of the cycle and each wait
/// along it, in words. Cycles of `needs` and queues alone are found by [`find_cycle`].
fn wait_cycle(file: &JobFile) -> Option<(JobId, Vec<String>)> {
    let n = file.jobs.len();
    // Events: 2j is the start of job j, 2j+1 its end. Edges: (to, what it says).
    let mut before: Vec<Vec<(usize, Option<String>)>> = vec![Vec::new(); 2 * n];
    let name = |j: JobId| &file.jobs[j].name;
    for (j, job) in file.jobs.iter().enumerate() {
        before[2 * j].push((2 * j + 1, None));
        for &dep in &job.needs {
            before[2 * dep + 1].push((
                2 * j,
                Some(format!("`{}` starts after `{}` ends", name(j), name(dep))),
            ));
        }
    }
    for queue in &file.queues {
        let Some(c) = queue.consumer else { continue };
        for &p in &queue.producers {
            before[2 * p + 1].push((
                2 * c + 1,
                Some(format!(
                    "`{}` reads queue `{}` until `{}` ends",
                    name(c),
                    queue.name,
                    name(p)
                )),
            ));
            before[2 * c].push((
                2 * p + 1,
                Some(format!(
                    "`{}` cannot end until `{}` reads queue `{}`",
                    name(p),
                    name(c),
                    queue.name
                )),
            ));
            // A streaming consumer reads on only while it can write: `p` also waits for
            // the consumers downstream of it to start.
            let mut through = c;
            let mut seen = vec![false; n];
            while file.jobs[through].is_streaming() && !std::mem::replace(&mut seen[through], true)
            {
                let Some(b) = file.jobs[through].to else {
                    break;
                };
                let Some(next) = file.queues[b].consumer else {
                    break;
                };
                before[2 * next].push((2 * p + 1, Some(format!(
                    "`{}` cannot end until `{}` reads queue `{}`, and `{}` reads only while it can write to queue `{}`, read by `{}`",
                    name(p), name(c), queue.name, name(through), file.queues[b].name, name(next)
                ))));
                through = next;
            }
        }
    }
    // Iterative depth-first search with colours; the path is kept to name the cycle.
    let mut colour = vec![0u8; 2 * n];
    for root in 0..2 * n {
        if colour[root] != 0 {
            continue;
        }
        let mut path: Vec<(usize, usize)> = vec![(root, 0)];
        colour[root] = 1;
        while let Some(&mut (node, ref mut next)) = path.last_mut() {
            if let Some((to, _)) = before[node].get(*next).cloned() {
                *next += 1;
                match colour[to] {
                    0 => {
                        colour[to] = 1;
                        path.push((to, 0));
                    }
                    1 => {
                        let from = path
                            .iter()
                            .position(|&(e, _)| e == to)
                            .expect("on the path");
                        let mut steps = Vec::new();
                        for &(e, k) in &path[from..] {
                            if let Some(text) = &before[e][k - 1].1 {
                                steps.push(text.clone());
                            }
                        }
                        return Some((to / 2, steps));
                    }
                    _ => {}
                }
            } else {
                colour[node] = 2;
                path.pop();
            }
        }
    }
    None
}

fn needs_transitively(file: &JobFile, job: JobId, target: JobId) -> bool {
    let mut seen = vec![false; file.jobs.len()];
    let mut stack = vec![job];
    while let Some(j) = stack.pop() {
        for &dep in &file.jobs[j].needs {
            if dep == target {
                return true;
            }
            if !std::mem::replace(&mut seen[dep], true) {
                stack.push(dep);
            }
        }
    }
    false
}

/// A cycle through `needs` and queue edges, as the jobs along it (first repeated last).
pub fn find_cycle(file: &JobFile) -> Option<Vec<JobId>> {
    let n = file.jobs.len();
    let mut next: Vec<Vec<JobId>> = vec![Vec::new(); n];
    for edge in edges(file) {
        let (from, to) = edge.ends();
        next[from].push(to);
    }
    // 0 = unseen, 1 = on the current path, 2 = done.
    let mut state = vec![0u8; n];
    let mut path = Vec::new();
    for start in 0..n {
        if state[start] != 0 {
            continue;
        }
        let mut stack = vec![(start, 0usize)];
        state[start] = 1;
        path.push(start);
        while let Some((node, i)) = stack.pop() {
            if let Some(&succ) = next[node].get(i) {
                stack.push((node, i + 1));
                match state[succ] {
                    0 => {
                        state[succ] = 1;
                        path.push(succ);
                        stack.push((succ, 0));
                    }
                    1 => {
                        let at = path.iter().position(|&p| p == succ).expect("on path");
                        let mut cycle = path[at..].to_vec();
                        cycle.push(succ);
                        return Some(cycle);
                    }
                    _ => {}
                }
            } else {
                state[node] = 2;
                path.pop();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use crate::jobfile::parse;
    use std::path::Path;

    fn messages(source: &str) -> Vec<String> {
        match parse(Path::new("t.toml"), source.to_string()) {
            Ok(_) => Vec::new(),
            Err(e) => e.diagnostics().iter().map(|d| d.message.clone()).collect(),
        }
    }

    #[test]
    fn a_cycle_through_needs_is_named() {
        let m = messages(
            "[jobs.a]\ncommand = 'true'\nneeds = ['c']\n[jobs.b]\ncommand = 'true'\nneeds = ['a']\n[jobs.c]\ncommand = 'true'\nneeds = ['b']\n",
        );
        assert_eq!(m, vec!["cycle: a → b → c → a".to_string()]);
    }

    #[test]
    fn a_cycle_through_a_queue_is_named() {
        let m = messages(
            "[jobs.p]\ncommand = 'seq 3'\nto = 'q'\nneeds = ['c']\n[jobs.c]\ncommand = 'cat'\nstdin = { queue = 'q' }\n",
        );
        assert_eq!(m, vec!["cycle: p → c → p".to_string()]);
    }

    #[test]
    fn queue_wiring_errors() {
        let m = messages("[jobs.p]\ncommand = 'seq 3'\nto = 'q'\n");
        assert_eq!(m, vec!["queue `q` has no consumer".to_string()]);
        let m = messages("[jobs.c]\ncommand = 'cat'\nstdin = { queue = 'q' }\n");
        assert_eq!(m, vec!["queue `q` has no producer".to_string()]);
        let m = messages(
            "[jobs.p]\ncommand = 'seq 3'\nto = 'q'\n[jobs.c]\ncommand = 'cat'\nstdin = { queue = 'q' }\nneeds = ['p']\n",
        );
        assert_eq!(m.len(), 1);
        assert!(m[0].contains("needs its producer `p`"), "{m:?}");
        // Through another queue: `c` needs `p`, whose queue feeds `r`, whose queue `c`
        // reads; found by the scheduler's property test (a hang once `b` is full).
        let m = messages(
            "[jobs.p]\ncommand = 'seq 3'\nto = 'a'\n[jobs.r]\ncommand = 'cat'\nstdin = { queue = 'a' }\nto = 'b'\n[jobs.c]\ncommand = 'true {item}'\nitems = { queue = 'b' }\nneeds = ['p']\n",
        );
        assert_eq!(
            m,
            vec!["these jobs would wait for each other forever once a queue is full: `c` starts after `p` ends; `p` cannot end until `r` reads queue `a`, and `r` reads only while it can write to queue `b`, read by `c`".to_string()]
        );
    }
}
