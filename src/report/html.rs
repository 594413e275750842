//! The HTML page of a run (`run --html FILE`, and `runner report RUN.json --html FILE`
//! from a JSON report): one self-contained file, with no script at all and nothing
//! fetched (a Content-Security-Policy says so to the browser): the run, a table per job
//! and its tasks, the timeline ([`timeline`]: an inline SVG, one lane per slot, one bar
//! per attempt, hover text through SVG `<title>`), and each failure with its tail.
//!
//! Memory stays bounded whatever the number of tasks: the records are read three times
//! through [`Records`] (a survey of counts, lanes and the first failures; the timeline;
//! the task tables), never held as a list. Tables list at most [`jobs::ROWS`] tasks
//! per job, the failures section the first [`SHOWN`] whole, and the timeline turns into
//! time buckets past [`timeline::DRAWN_UP_TO`] attempts, so that a page of 100,000
//! tasks stays a few MB.
//!
//! This file holds the page's frame (the head, the run's header) and the words every
//! part shares; [`failures`], [`jobs`] and [`timeline`] write the rest.

mod failures;
mod jobs;
mod timeline;

#[cfg(test)]
use jobs::ROWS;

use super::json::EndFields;
use super::tally::{Records, Totals, SHOWN};
use super::{time, RunInfo};
use crate::task::{duration, printable, thousands, End, Outcome, TaskRecord};
use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

/// The outcomes, in the order the page shows them, with their class names (their
/// words are `Outcome::words`).
const OUTCOMES: [(Outcome, &str); 9] = [
    (Outcome::Succeeded, "succeeded"),
    (Outcome::Failed, "failed"),
    (Outcome::AllowedFailure, "allowed-failure"),
    (Outcome::Stopped, "stopped"),
    (Outcome::Skipped, "skipped"),
    (Outcome::UpToDate, "up-to-date"),
    (Outcome::DoneEarlier, "done-earlier"),
    (Outcome::Unchanged, "unchanged"),
    (Outcome::Cached, "cached"),
];

fn outcome_name(outcome: Outcome) -> (&'static str, &'static str) {
    let class = OUTCOMES
        .iter()
        .find(|(o, _)| *o == outcome)
        .map_or("succeeded", |(_, class)| class);
    (class, outcome.words())
}

/// Writes the page of a run to `path`. `jobs` are the run's job names, indexed by
/// `TaskRecord::job`; `records` are read three times, a job at a time.
pub fn write_html(
    path: &Path,
    jobs: &[String],
    records: &dyn Records,
    info: &RunInfo,
) -> io::Result<()> {
    let survey = Survey::take(jobs, records, info)?;
    let mut w = io::BufWriter::new(std::fs::File::create(path)?);
    head(&mut w, info, &survey)?;
    header(&mut w, info, &survey)?;
    timeline::write(&mut w, jobs, records, info, &survey)?;
    failures::write(&mut w, jobs, info, &survey)?;
    jobs::write(&mut w, jobs, records, info, &survey)?;
    w.write_all(b"</main>\n</body>\n</html>\n")?;
    w.flush()
}

/// What the first pass over the records finds: counts, the timeline's lanes and span,
/// and the first failures and stopped tasks, whole.
struct Survey {
    jobs: Vec<Totals>,
    all: Totals,
    /// Attempts of each kind, indexed by [`timeline::Kind`].
    kinds: [u64; 5],
    /// Every (host, slot) an attempt ran in: the run's own host first, then by name.
    lanes: Vec<(String, usize)>,
    /// The timeline's span: the run's start (or an earlier attempt's) to the last end.
    from: SystemTime,
    to: SystemTime,
    failures: Vec<TaskRecord>,
    failures_unshown: u64,
    stopped: Vec<TaskRecord>,
    stopped_unshown: u64,
}

impl Survey {
    fn take(jobs: &[String], records: &dyn Records, info: &RunInfo) -> io::Result<Survey> {
        let mut s = Survey {
            jobs: vec![Totals::default(); jobs.len()],
            all: Totals::default(),
            kinds: [0; 5],
            lanes: Vec::new(),
            from: info.started,
            to: info.started + info.duration,
            failures: Vec::new(),
            failures_unshown: 0,
            stopped: Vec::new(),
            stopped_unshown: 0,
        };
        // Local first: `false` sorts before `true`.
        let mut lanes = BTreeMap::new();
        for job in 0..jobs.len() {
            records.each(job, &mut |r| {
                let name = || label(jobs, r);
                s.jobs[job].add(r, name);
                s.all.add(r, name);
                let tries = r.each_try();
                for (i, t) in tries.iter().enumerate() {
                    s.kinds[timeline::Kind::of(r, i, tries.len()) as usize] += 1;
                    s.from = s.from.min(t.started);
                    s.to = s.to.max(t.started + t.duration);
                    lanes.insert(
                        (r.ran_on() != info.host, r.ran_on().to_string(), r.slot),
                        (),
                    );
                }
                let (list, unshown) = match r.outcome() {
                    Outcome::Failed | Outcome::AllowedFailure => {
                        (&mut s.failures, &mut s.failures_unshown)
                    }
                    Outcome::Stopped => (&mut s.stopped, &mut s.stopped_unshown),
                    _ => return Ok(()),
                };
                if list.len() < SHOWN {
                    let mut kept = r.clone();
                    kept.queue_lines = Vec::new();
                    kept.outputs = None;
                    list.push(kept);
                } else {
                    *unshown += 1;
                }
                Ok(())
            })?;
        }
        s.lanes = lanes
            .into_keys()
            .map(|(_, host, slot)| (host, slot))
            .collect();
        Ok(s)
    }

    fn attempts(&self) -> u64 {
        self.kinds.iter().sum()
    }
}

/// "job" for a task of a job without items (its item is empty), "job:item" otherwise,
/// the item made printable and shortened.
fn label(jobs: &[String], r: &TaskRecord) -> String {
    let job = jobs.get(r.job).map_or("?", String::as_str);
    if r.item.is_empty() {
        job.to_string()
    } else {
        format!("{job}:{}", printable(&r.item, 120))
    }
}

/// "exit 3", "killed by SIGTERM", "timed out", or the error: the parts the JSON report
/// keeps, so that a page made from the report says the same.
fn end_words(end: &End) -> String {
    let f = EndFields::of(Some(end));
    match (f.exit_code, f.signal, f.timed_out, f.error) {
        (Some(code), ..) => format!("exit {code}"),
        (_, Some(signal), ..) => format!("killed by {signal}"),
        (_, _, true, _) => "timed out".to_string(),
        (.., error) => error.unwrap_or_default(),
    }
}

/// Where an attempt ran: "host · slot 3".
fn place(host: &str, slot: usize) -> String {
    format!("{} · slot {slot}", printable(host, 40))
}

/// The time from `from` to `t`, as "+1.25s".
fn offset(from: SystemTime, t: SystemTime) -> String {
    format!("+{}", duration(t.duration_since(from).unwrap_or_default()))
}

/// Text escaped for HTML (text and attribute values alike). Control characters other
/// than tab and newline, which a page cannot carry, become U+FFFD.
struct Esc<'a>(&'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(|c: char| {
            matches!(c, '&' | '<' | '>' | '"' | '\'') || c.is_control() && c != '\n' && c != '\t'
        }) {
            f.write_str(&rest[..at])?;
            let c = rest[at..].chars().next().unwrap_or(' ');
            f.write_str(match c {
                '&' => "&amp;",
                '<' => "&lt;",
                '>' => "&gt;",
                '"' => "&quot;",
                '\'' => "&#39;",
                _ => "\u{FFFD}",
            })?;
            rest = &rest[at + c.len_utf8()..];
        }
        f.write_str(rest)
    }
}

/// A line of a task's output without its terminal escape sequences (colours, cursor
/// moves): `ESC [ … final` and `ESC x` are dropped.
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        if chars.next_if_eq(&'[').is_some() {
            while chars
                .next_if(|c| !('\u{40}'..='\u{7e}').contains(c))
                .is_some()
            {}
        }
        chars.next();
    }
    out
}

/// The document's head: the policy that forbids every fetch and script, and the style.
fn head(w: &mut dyn Write, info: &RunInfo, s: &Survey) -> io::Result<()> {
    write!(
        w,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'; img-src data:\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"generator\" content=\"runner {}\">\n<title>runner: {} — {}</title>\n\
         <style>\n{}{}</style>\n</head>\n<body>\n<main>\n",
        env!("CARGO_PKG_VERSION"),
        Esc(&info.file),
        Esc(&verdict(info, &s.all)),
        STYLE,
        timeline::style()
    )
}

const STYLE: &str = "body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1f2328;background:#fff}
main{max-width:1240px;margin:0 auto;padding:12px 24px 48px}
h1{font-size:22px;margin:10px 0 6px}h1.ok{color:#1a7f37}h1.bad{color:#cf222e}
h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 4px;font-family:ui-monospace,monospace}
dl.run{display:grid;grid-template-columns:max-content 1fr;gap:1px 16px;margin:6px 0}
dt{color:#59636e}dd{margin:0;font-family:ui-monospace,monospace;word-break:break-all}
table{border-collapse:collapse;margin:4px 0 8px;font-size:13px}
th,td{padding:2px 10px;text-align:left;border-bottom:1px solid #eaeef2;white-space:nowrap;vertical-align:top}
th{color:#59636e;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}
td.label,td.end{white-space:normal;word-break:break-all;font-family:ui-monospace,monospace;max-width:460px}
td.zero{color:#afb8c1}
tr.o-failed td.status{color:#cf222e;font-weight:600}tr.o-allowed-failure td.status{color:#9a6700;font-weight:600}
tr.o-stopped td.status,tr.o-skipped td.status{color:#59636e}
p.counts span{margin-right:14px}p.counts b{font-variant-numeric:tabular-nums}
.more,.muted{color:#59636e}
ol.failures{padding-left:20px}li.failure,li.stopped{margin:10px 0}
li.failure h3,li.stopped h3{margin:0}li.failure p{margin:2px 0}li.failure.allowed h3{color:#9a6700}li.failure h3{color:#cf222e}
pre{background:#f6f8fa;border:1px solid #d0d7de;border-radius:6px;padding:6px 10px;font-size:12px;margin:4px 0;white-space:pre-wrap;word-break:break-all}
";

/// "all tasks succeeded", "exit status 1", … as the summary's last line says it.
fn verdict(info: &RunInfo, all: &Totals) -> String {
    super::verdict(info, all)
}

/// The run: its verdict, file, id, host, times, pool, and its tasks counted by outcome.
fn header(w: &mut dyn Write, info: &RunInfo, s: &Survey) -> io::Result<()> {
    let ok = info.exit == 0 && info.interrupted.is_none();
    writeln!(
        w,
        "<header id=\"run\">\n<h1 class=\"{}\">{}: {}</h1>\n<dl class=\"run\">",
        if ok { "ok" } else { "bad" },
        Esc(&info.file),
        Esc(&verdict(info, &s.all))
    )?;
    let mut rows = vec![
        ("file", info.file.clone()),
        ("run id", info.id.clone()),
        ("host", info.host.clone()),
        ("started", time(info.started)),
        ("duration", duration(info.duration)),
        ("exit status", info.exit.to_string()),
        ("pool", info.pool.to_string()),
    ];
    if let Some(why) = &info.interrupted {
        rows.push(("interrupted", why.clone()));
    }
    if !info.selection.is_empty() {
        rows.push(("selection", info.selection.join(" ")));
    }
    for (name, value) in &info.set {
        rows.push(("--set", format!("{name}={value}")));
    }
    for (name, queue) in &info.queues {
        rows.push((
            "queue",
            format!(
                "{name}: {} pushed, {} taken, {} dropped",
                queue.pushed, queue.taken, queue.dropped
            ),
        ));
    }
    for (name, value) in rows {
        writeln!(w, "<dt>{name}</dt><dd>{}</dd>", Esc(&value))?;
    }
    write!(
        w,
        "</dl>\n<p class=\"counts\" id=\"counts\" data-tasks=\"{}\"><span><b>{}</b></span>",
        s.all.tasks,
        if s.all.tasks == 1 {
            "1 task".to_string()
        } else {
            format!("{} tasks", thousands(s.all.tasks))
        }
    )?;
    for (outcome, class) in OUTCOMES {
        let words = outcome.words();
        let n = s.all.of(Some(outcome));
        // Succeeded and failed always; the others when some task has them.
        if n > 0 || matches!(outcome, Outcome::Succeeded | Outcome::Failed) {
            write!(
                w,
                "<span class=\"count o-{class}\" data-outcome=\"{class}\"><b>{}</b> {words}</span>",
                thousands(n)
            )?;
        }
    }
    writeln!(w, "</p>\n</header>")
}

/// The duration of `secs` seconds, for the timeline's hover text and buckets.
fn secs(secs: f64) -> Duration {
    Duration::try_from_secs_f64(secs).unwrap_or_default()
}

#[cfg(test)]
mod tests;
