//! The page's failures: each failed task (allowed ones after) with its end, facts and
//! the tail of its output, the first [`SHOWN`](crate::report::tally::SHOWN) whole; then the tasks the run stopped.

use super::{end_words, label, offset, outcome_name, place, plain, thousands, Esc, Survey};
use crate::report::json::shown_stdout_tail;
use crate::report::RunInfo;
use crate::task::{duration, plural, Outcome, TaskRecord};
use std::io::{self, Write};

/// A failed task's header line: "test:b: exit 2".
fn failure_title(jobs: &[String], r: &TaskRecord) -> String {
    let end = r.end.as_ref().map(end_words).unwrap_or_default();
    format!("{}: {end}", label(jobs, r))
}

/// Attempts, duration, pid and place of a task that ran.
fn task_facts(r: &TaskRecord) -> String {
    let mut facts = vec![plural(r.attempts, "attempt"), duration(r.duration)];
    if let Some(pid) = r.pid {
        facts.push(format!("pid {pid}"));
    }
    if r.started.is_some() {
        facts.push(place(r.ran_on(), r.slot));
    }
    facts.join(", ")
}

/// Every failed task (allowed or not) with its tail, the first [`SHOWN`](crate::report::tally::SHOWN) whole; then
/// the tasks the run stopped, without tails (theirs is not a failure of their own).
pub(super) fn write(
    w: &mut dyn Write,
    jobs: &[String],
    info: &RunInfo,
    s: &Survey,
) -> io::Result<()> {
    let count = s.failures.len() as u64 + s.failures_unshown;
    writeln!(
        w,
        "<section id=\"failures\">\n<h2>Failures ({})</h2>",
        thousands(count)
    )?;
    if count == 0 {
        writeln!(w, "<p class=\"muted\">No task failed.</p>")?;
    } else {
        writeln!(w, "<ol class=\"failures\">")?;
    }
    for outcome in [Outcome::Failed, Outcome::AllowedFailure] {
        for r in s.failures.iter().filter(|r| r.outcome() == outcome) {
            let (class, words) = outcome_name(outcome);
            let allowed = if outcome == Outcome::AllowedFailure {
                " allowed"
            } else {
                ""
            };
            writeln!(
                w,
                "<li class=\"failure{allowed}\" data-job=\"{}\" data-label=\"{}\" data-outcome=\"{class}\">\
                 <h3>{}</h3>\n<p class=\"muted\">{words}, {}{}</p>",
                Esc(jobs.get(r.job).map_or("?", String::as_str)),
                Esc(&label(jobs, r)),
                Esc(&failure_title(jobs, r)),
                Esc(&task_facts(r)),
                r.started
                    .map(|t| format!(", started {}", offset(info.started, t)))
                    .unwrap_or_default()
            )?;
            tail(w, r)?;
            writeln!(w, "</li>")?;
        }
    }
    if count > 0 {
        writeln!(w, "</ol>")?;
    }
    if s.failures_unshown > 0 {
        writeln!(
            w,
            "<p class=\"more\">and {} more failed tasks, not shown (the JSON report, --report, lists them all)</p>",
            thousands(s.failures_unshown)
        )?;
    }
    writeln!(w, "</section>")?;
    if s.stopped.is_empty() {
        return Ok(());
    }
    writeln!(
        w,
        "<section id=\"stopped\">\n<h2>Stopped by the run ({})</h2>\n<ul>",
        thousands(s.stopped.len() as u64 + s.stopped_unshown)
    )?;
    for r in &s.stopped {
        let what = match &r.end {
            Some(_) => format!("{}, {}", failure_title(jobs, r), task_facts(r)),
            None => format!("{}: sent to a worker, no result came back", label(jobs, r)),
        };
        writeln!(
            w,
            "<li class=\"stopped\" data-job=\"{}\" data-label=\"{}\">{}</li>",
            Esc(jobs.get(r.job).map_or("?", String::as_str)),
            Esc(&label(jobs, r)),
            Esc(&what)
        )?;
    }
    writeln!(w, "</ul>")?;
    if s.stopped_unshown > 0 {
        writeln!(
            w,
            "<p class=\"more\">and {} more stopped</p>",
            thousands(s.stopped_unshown)
        )?;
    }
    writeln!(w, "</section>")
}

/// A failed task's stderr tail, or its stdout tail when it printed nothing on stderr.
fn tail(w: &mut dyn Write, r: &TaskRecord) -> io::Result<()> {
    let stdout = shown_stdout_tail(r);
    let (lines, note) = match (&r.stderr_tail[..], stdout) {
        ([], []) => return writeln!(w, "<p class=\"muted\">(nothing on stderr)</p>"),
        ([], stdout) => (stdout, Some("no stderr; the last lines of stdout:")),
        (stderr, _) if r.tail_cut => (
            stderr,
            Some("… earlier stderr cut (--logs DIR keeps all of it)"),
        ),
        (stderr, _) => (stderr, None),
    };
    if let Some(note) = note {
        writeln!(w, "<p class=\"muted\">({note})</p>")?;
    }
    write!(w, "<pre class=\"tail\">")?;
    for (i, line) in lines.iter().enumerate() {
        let newline = if i + 1 < lines.len() { "\n" } else { "" };
        write!(w, "{}{newline}", Esc(&plain(line)))?;
    }
    writeln!(w, "</pre>")
}
