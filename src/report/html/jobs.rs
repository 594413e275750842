//! The page's jobs: a section per job with its tasks counted by outcome, its span and
//! slowest task, and a table of its tasks, the first [`ROWS`] listed.

use super::{end_words, label, offset, outcome_name, place, thousands, Esc, Survey, OUTCOMES};
use crate::report::tally::Records;
use crate::report::RunInfo;
use crate::task::duration;
use std::io::{self, Write};

/// The most tasks a job's table lists; the rest are counted.
pub const ROWS: u64 = 1000;

/// A section per job: its counts by outcome, its span and slowest task, then its
/// tasks (the first [`ROWS`]; the rest counted).
pub(super) fn write(
    w: &mut dyn Write,
    jobs: &[String],
    records: &dyn Records,
    info: &RunInfo,
    s: &Survey,
) -> io::Result<()> {
    writeln!(w, "<section id=\"jobs\">\n<h2>Jobs</h2>")?;
    for (j, name) in jobs.iter().enumerate() {
        let t = &s.jobs[j];
        writeln!(
            w,
            "<section class=\"job\" id=\"job-{j}\" data-job=\"{}\">\n<h3>{}</h3>",
            Esc(name),
            Esc(name)
        )?;
        write!(w, "<table class=\"job\"><tr><th>tasks</th>")?;
        for (outcome, _) in OUTCOMES {
            write!(w, "<th>{}</th>", outcome.words())?;
        }
        write!(
            w,
            "<th>span</th><th>slowest</th></tr>\n<tr><td class=\"n\">{}</td>",
            thousands(t.tasks)
        )?;
        for (outcome, class) in OUTCOMES {
            let n = t.of(Some(outcome));
            let zero = if n == 0 { " zero" } else { "" };
            write!(
                w,
                "<td class=\"n{zero}\" data-outcome=\"{class}\">{}</td>",
                thousands(n)
            )?;
        }
        let span = t.span().map_or("-".to_string(), |(first, took)| {
            format!("{}, from {}", duration(took), offset(info.started, first))
        });
        let slowest = t.slowest.as_ref().map_or("-".to_string(), |(d, label)| {
            format!("{label} {}", duration(*d))
        });
        writeln!(
            w,
            "<td>{}</td><td class=\"label\">{}</td></tr></table>",
            Esc(&span),
            Esc(&slowest)
        )?;
        task_table(w, jobs, j, records, info)?;
        writeln!(w, "</section>")?;
    }
    writeln!(w, "</section>")
}

/// A job's tasks, a row each, up to [`ROWS`].
fn task_table(
    w: &mut dyn Write,
    jobs: &[String],
    job: usize,
    records: &dyn Records,
    info: &RunInfo,
) -> io::Result<()> {
    writeln!(
        w,
        "<table class=\"tasks\" data-job=\"{}\">\n<tr><th>task</th><th>status</th><th>exit</th>\
         <th>attempts</th><th>duration</th><th>started</th><th>where</th></tr>",
        Esc(&jobs[job])
    )?;
    let mut rows = 0u64;
    records.each(job, &mut |r| {
        rows += 1;
        if rows > ROWS {
            return Ok(());
        }
        let (class, words) = outcome_name(r.outcome());
        let ran = r.started.is_some();
        writeln!(
            w,
            "<tr class=\"task o-{class}\" data-outcome=\"{class}\"><td class=\"label\">{}</td>\
             <td class=\"status\" title=\"{}\">{words}</td><td class=\"end\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            Esc(&label(jobs, r)),
            Esc(&r.reason),
            Esc(&r.end.as_ref().map(end_words).unwrap_or_default()),
            r.attempts,
            if ran {
                duration(r.duration)
            } else {
                "-".into()
            },
            r.started
                .map_or("-".to_string(), |t| offset(info.started, t)),
            if ran {
                Esc(&place(r.ran_on(), r.slot)).to_string()
            } else {
                "-".into()
            }
        )
    })?;
    writeln!(w, "</table>")?;
    if rows > ROWS {
        writeln!(
            w,
            "<p class=\"more\">and {} more tasks of {} (the JSON report, --report, lists them all)</p>",
            thousands(rows - ROWS),
            Esc(&jobs[job])
        )?;
    }
    Ok(())
}
