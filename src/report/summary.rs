//! The end-of-run summary: a table per job, the tasks the run stopped, every failed
//! task with its stderr tail, and a last line with the counts and the verdict.
//!
//! Longer than 400 lines because of its unit tests, which hold whole summaries.

use super::tally::{Tally, Totals};
use super::RunInfo;
use crate::jobfile::JobFile;
use crate::task::{describe_end, duration, label, name, plural, titled, Outcome, TaskRecord};
use std::fmt::Write as _;

/// How the summary counts tasks: the table's column and the last line's words for each
/// outcome (`None`: every task). An `optional` one is shown only when some task has it,
/// so a plain run reads as it always did. A new outcome is one more line here.
struct Count {
    outcome: Option<Outcome>,
    column: &'static str,
    words: &'static str,
    optional: bool,
}

const COUNTS: [Count; 10] = [
    Count::always(None, "tasks", "tasks"),
    Count::always(Some(Outcome::Succeeded), "ok", "succeeded"),
    Count::optional(Outcome::UpToDate, "up to date", "up to date"),
    Count::optional(Outcome::DoneEarlier, "earlier", "done earlier"),
    Count::optional(Outcome::Unchanged, "unchanged", "unchanged"),
    Count::optional(Outcome::Cached, "cached", "cached"),
    Count::always(Some(Outcome::Failed), "failed", "failed"),
    Count::optional(Outcome::AllowedFailure, "allowed", "failed (allowed)"),
    Count::optional(Outcome::Stopped, "stopped", "stopped"),
    Count::always(Some(Outcome::Skipped), "skipped", "skipped"),
];

impl Count {
    const fn always(outcome: Option<Outcome>, column: &'static str, words: &'static str) -> Self {
        Count {
            outcome,
            column,
            words,
            optional: false,
        }
    }

    const fn optional(outcome: Outcome, column: &'static str, words: &'static str) -> Self {
        Count {
            outcome: Some(outcome),
            column,
            words,
            optional: true,
        }
    }

    /// The column's width: its header's, and at least 6.
    fn width(&self) -> usize {
        self.column.len().max(6)
    }
}

/// The end-of-run summary.
pub fn summary(file: &JobFile, tally: &Tally, info: &RunInfo, color: bool) -> String {
    let mut out = String::new();
    let all = &tally.all;
    let shown: Vec<&Count> = COUNTS
        .iter()
        .filter(|c| !c.optional || all.of(c.outcome) > 0)
        .collect();
    job_table(&mut out, file, &tally.jobs, &shown, color);
    reason_lines(&mut out, file, tally);
    skip_lines(&mut out, file, tally);
    service_lines(&mut out, tally);
    queue_lines(&mut out, info);
    stopped_lines(&mut out, file, &tally.stopped, &info.host, color);
    if tally.stopped_unshown > 0 {
        let _ = writeln!(
            out,
            "(and {} more stopped; --report lists them all)",
            tally.stopped_unshown
        );
    }
    for outcome in [Outcome::AllowedFailure, Outcome::Failed] {
        for r in tally.failures.iter().filter(|r| r.outcome() == outcome) {
            failure(&mut out, file, r, &info.host, color);
        }
    }
    if tally.failures_unshown > 0 {
        let _ = writeln!(
            out,
            "\n(and {} more failed tasks, not shown; --report lists them all)",
            tally.failures_unshown
        );
    }
    verdict(&mut out, all, &shown, info);
    out
}

/// The table: a header, then a row per job (red when it has failures and `color`).
fn job_table(out: &mut String, file: &JobFile, totals: &[Totals], shown: &[&Count], color: bool) {
    let width = file
        .jobs
        .iter()
        .map(|j| j.name.len())
        .max()
        .unwrap_or(3)
        .max(3);
    let mut header = format!("\n{:<width$}", "job");
    for c in shown {
        let _ = write!(header, "  {:>w$}", c.column, w = c.width());
    }
    let _ = writeln!(out, "{header}  {:>9}  slowest", "time");
    for (job, t) in file.jobs.iter().zip(totals) {
        let time = match (t.first, t.last) {
            (Some(f), Some(l)) => duration(l.duration_since(f).unwrap_or_default()),
            _ => "-".to_string(),
        };
        let slowest = t
            .slowest
            .as_ref()
            .map(|(d, label)| format!("{label} {}", duration(*d)))
            .unwrap_or_else(|| "-".into());
        let mut line = format!("{:<width$}", job.name);
        for c in shown {
            let _ = write!(line, "  {:>w$}", t.of(c.outcome), w = c.width());
        }
        let _ = write!(line, "  {time:>9}  {slowest}");
        let line = if t.of(Some(Outcome::Failed)) > 0 && color {
            console::style(line).red().force_styling(true).to_string()
        } else {
            line
        };
        let _ = writeln!(out, "{line}");
    }
}

/// A line per job with `sources`: how many tasks were up to date, how many ran, and
/// why (`build: 12 up to date, 3 ran: source changed: data/b.csv, data/c.csv`).
fn reason_lines(out: &mut String, file: &JobFile, tally: &Tally) {
    for (j, job) in file.jobs.iter().enumerate() {
        if job.sources.is_empty() {
            continue;
        }
        let t = &tally.jobs[j];
        let reasons = &tally.reasons[j];
        let ran: u64 = t.tasks
            - t.of(Some(Outcome::Skipped))
            - t.of(Some(Outcome::UpToDate))
            - t.of(Some(Outcome::DoneEarlier))
            - t.of(Some(Outcome::Unchanged))
            - t.of(Some(Outcome::Cached));
        let unchanged = match t.of(Some(Outcome::Unchanged)) {
            0 => String::new(),
            n => format!("{n} unchanged, "),
        };
        let unchanged = match t.of(Some(Outcome::Cached)) {
            0 => unchanged,
            n => format!("{unchanged}{n} cached, "),
        };
        let mut line = format!(
            "{}: {unchanged}{} up to date, {} ran",
            job.name,
            t.of(Some(Outcome::UpToDate)),
            ran
        );
        let parts: Vec<String> = reasons
            .kinds
            .iter()
            .map(|(kind, names, tasks, named)| {
                if names.is_empty() {
                    return if *tasks > 1 {
                        format!("{kind} ({tasks})")
                    } else {
                        kind.clone()
                    };
                }
                let more = named.saturating_sub(names.len() as u64);
                let more = if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                };
                format!("{kind}: {}{more}", names.join(", "))
            })
            .collect();
        if !parts.is_empty() {
            let _ = write!(line, ": {}", parts.join("; "));
        }
        if reasons.others > 0 {
            let _ = write!(
                line,
                "; {} more (--report has every reason)",
                reasons.others
            );
        }
        let _ = writeln!(out, "{}", crate::diagnostic::printable(&line, 4096));
    }
}

/// Why tasks were skipped: a line per job and reason (`skipped process:7: `download:7`
/// failed`, `skipped 50 tasks of `deploy`: a needed job failed: `build``).
fn skip_lines(out: &mut String, file: &JobFile, tally: &Tally) {
    for skip in &tally.skips {
        let what = if skip.count == 1 {
            skip.first.clone()
        } else {
            format!(
                "{} of `{}`",
                plural(skip.count, "task"),
                file.jobs[skip.job].name
            )
        };
        let line = format!("skipped {what}: {}", skip.reason);
        let _ = writeln!(out, "{}", crate::diagnostic::printable(&line, 4096));
    }
    if tally.skips_unshown > 0 {
        let _ = writeln!(
            out,
            "(and {} more skipped; --report has every reason)",
            tally.skips_unshown
        );
    }
}

/// A line per service task: when it started, was ready and stopped.
fn service_lines(out: &mut String, tally: &Tally) {
    for line in &tally.services {
        let line = format!("service {line}");
        let _ = writeln!(out, "{}", crate::diagnostic::printable(&line, 4096));
    }
    if tally.services_unshown > 0 {
        let _ = writeln!(
            out,
            "(and {} more service tasks; --report lists them all)",
            tally.services_unshown
        );
    }
}

/// A line per queue that dropped items because their consumer was gone.
fn queue_lines(out: &mut String, info: &RunInfo) {
    for (name, stats) in &info.queues {
        if stats.dropped > 0 {
            let _ = writeln!(
                out,
                "queue `{name}`: {} passed, {} dropped (their consumer was gone)",
                plural(stats.taken, "item"),
                stats.dropped
            );
        }
    }
}

/// ", pid 42", or ", pid 42 on HOST" for a task that ran on another machine than `host`.
fn pid_and_host(r: &TaskRecord, host: &str) -> String {
    let pid = r.pid.map(|p| format!(", pid {p}")).unwrap_or_default();
    if r.host.is_empty() || r.host == host {
        pid
    } else {
        format!("{pid} on {}", r.host)
    }
}

/// A line per task the run stopped (Ctrl-C, SIGTERM, fail-fast): not failures of their
/// own, so no stderr tail.
fn stopped_lines(
    out: &mut String,
    file: &JobFile,
    records: &[TaskRecord],
    host: &str,
    color: bool,
) {
    let mut first = true;
    for r in records {
        if std::mem::take(&mut first) {
            out.push('\n');
        }
        let label = label(&file.jobs[r.job], &r.item);
        let line = match &r.end {
            Some(end) => format!(
                "STOPPED {label}: {} after {}{}",
                describe_end(end),
                duration(r.duration),
                pid_and_host(r, host)
            ),
            None => format!("STOPPED {label}: sent to a worker, no result came back"),
        };
        let line = if color {
            console::style(line)
                .yellow()
                .force_styling(true)
                .to_string()
        } else {
            line
        };
        let _ = writeln!(out, "{line}");
    }
}

/// A failed task: how it ended, then its stderr tail (or its stdout tail when it printed
/// nothing on stderr; a producer's stdout went to its queue, and it says so). `host` is
/// the coordinator's; another one is named.
fn failure(out: &mut String, file: &JobFile, r: &TaskRecord, host: &str, color: bool) {
    let label = label(&file.jobs[r.job], &r.item);
    let end = r.end.as_ref().map(describe_end).unwrap_or_default();
    let allowed = r.outcome() == Outcome::AllowedFailure;
    let header = format!(
        "FAILED{} {label}: {end}{}, {}, {}",
        if allowed { " (allowed)" } else { "" },
        pid_and_host(r, host),
        plural(r.attempts, "attempt"),
        duration(r.duration)
    );
    let header = match (color, allowed) {
        (false, _) => header,
        (true, true) => console::style(header)
            .yellow()
            .force_styling(true)
            .to_string(),
        (true, false) => console::style(header)
            .red()
            .bold()
            .force_styling(true)
            .to_string(),
    };
    let _ = writeln!(out, "\n{header}");
    if let Some(q) = file.jobs[r.job].to {
        // A producer's stdout is its queue's items, not something to show here.
        let queue = &file.queues[q].name;
        let none = if r.stderr_tail.is_empty() {
            "; no stderr"
        } else {
            ""
        };
        let _ = writeln!(out, "  (its stdout went to queue `{queue}`{none})");
    }
    if r.tail_cut {
        let _ = writeln!(out, "  … (earlier stderr cut; --logs DIR keeps all of it)");
    }
    for line in &r.stderr_tail {
        let _ = writeln!(out, "  | {line}");
    }
    if r.stderr_tail.is_empty() && !r.stdout_tail.is_empty() && file.jobs[r.job].to.is_none() {
        let _ = writeln!(out, "  (no stderr; the last lines of stdout:)");
        for line in &r.stdout_tail {
            let _ = writeln!(out, "  | {line}");
        }
    }
}

/// The last line: counts, the run's time, and why it ended as it did
/// ([`super::verdict`]).
fn verdict(out: &mut String, all: &Totals, shown: &[&Count], info: &RunInfo) {
    let verdict = super::verdict(info, all);
    let counts: Vec<String> = shown
        .iter()
        .filter(|c| c.outcome.is_some())
        .map(|c| format!("{} {}", all.of(c.outcome), c.words))
        .collect();
    let _ = writeln!(
        out,
        "\n{}: {} in {} — {verdict}",
        plural(all.tasks, "task"),
        counts.join(", "),
        duration(info.duration)
    );
}

/// The summary as Markdown, for GitHub Actions' job summary (`$GITHUB_STEP_SUMMARY`):
/// the verdict, the table per job, and the failed tasks with their ends and last line
/// of stderr. Every text from a task is escaped, so none of it becomes Markdown.
pub fn markdown(file: &JobFile, tally: &Tally, info: &RunInfo) -> String {
    let mut out = String::new();
    let all = &tally.all;
    let verdict = md(&super::verdict(info, all));
    let _ = writeln!(out, "### runner: {} — {verdict}\n", md(&info.file));
    let shown: Vec<&Count> = COUNTS
        .iter()
        .filter(|c| !c.optional || all.of(c.outcome) > 0)
        .collect();
    let mut header = String::from("| job |");
    let mut rule = String::from("|---|");
    for c in &shown {
        let _ = write!(header, " {} |", c.column);
        rule.push_str("---:|");
    }
    let _ = writeln!(out, "{header} time | slowest |\n{rule}---:|---|");
    let rows = file.jobs.iter().map(|j| md(&j.name)).zip(&tally.jobs);
    for (name, t) in rows.chain([("**all**".to_string(), all)]) {
        let mut line = format!("| {name} |");
        for c in &shown {
            let _ = write!(line, " {} |", t.of(c.outcome));
        }
        let time = t.span().map_or("-".to_string(), |(_, d)| duration(d));
        let slowest = t.slowest.as_ref().map_or("-".to_string(), |(d, label)| {
            format!("{} {}", md(label), duration(*d))
        });
        let _ = writeln!(out, "{line} {time} | {slowest} |");
    }
    if !tally.failures.is_empty() {
        let _ = writeln!(
            out,
            "\n#### Failed tasks\n\n| task | end | last line of output |\n|---|---|---|"
        );
        for r in &tally.failures {
            let job = &file.jobs[r.job];
            let allowed = if r.outcome() == Outcome::AllowedFailure {
                " (allowed)"
            } else {
                ""
            };
            let end = r.end.as_ref().map(describe_end).unwrap_or_default();
            let last = r.last_line().map_or(String::new(), md);
            // The task's whole name: three long items must not read as one.
            let _ = writeln!(
                out,
                "| {}{allowed} | {} | {last} |",
                md(&titled(&name(job, &r.item))),
                md(&end)
            );
        }
        if tally.failures_unshown > 0 {
            let _ = writeln!(out, "\n(and {} more)", tally.failures_unshown);
        }
    }
    out.push('\n');
    out
}

/// Text that stays text in a Markdown table cell: HTML and Markdown characters escaped,
/// `|` too (it would end the cell even in code), lines joined.
fn md(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '|' => out.push_str("\\|"),
            '`' => out.push_str("&#96;"),
            // Math and mentions stay text too.
            '$' => out.push_str("&#36;"),
            '@' => out.push_str("&#64;"),
            '\\' | '*' | '_' | '[' | ']' | '#' | '~' | '!' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{file, info, records, stopped_records};
    use super::*;
    use crate::task::Status;

    fn summary(file: &JobFile, records: &[TaskRecord], info: &RunInfo, color: bool) -> String {
        super::summary(file, &Tally::of(file, records), info, color)
    }

    #[test]
    fn the_summary_in_full() {
        let text = summary(&file(), &records(), &info(1, None), false);
        let want = "
job      tasks      ok  failed  allowed  skipped       time  slowest
build        1       1       0        0        0      1.50s  build 1.50s
test         3       1       2        0        0      300ms  test:b 300ms
lint         1       0       0        1        0        5ms  lint 5ms
deploy       1       0       0        0        1          -  -
queue `lossy`: 5 items passed, 3 dropped (their consumer was gone)

FAILED (allowed) lint: exit 1, 1 attempt, 5ms
  | warn

FAILED test:b: exit 2, pid 101, 2 attempts, 300ms
  … (earlier stderr cut; --logs DIR keeps all of it)
  | oops
  | bad

FAILED test:c: killed by SIGKILL, pid 102 on elsewhere, 1 attempt, 50ms
  (no stderr; the last lines of stdout:)
  | out1
  | out2

6 tasks: 2 succeeded, 2 failed, 1 failed (allowed), 1 skipped in 2.00s — exit status 1
";
        assert_eq!(text, want);
    }

    #[test]
    fn a_stopped_task_is_counted_apart_and_not_a_failure() {
        let text = summary(
            &file(),
            &stopped_records(),
            &info(143, Some("terminated (SIGTERM)")),
            false,
        );
        assert!(
            text.starts_with(
                "\njob      tasks      ok  failed  allowed  stopped  skipped       time  slowest\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("\ntest         3       1       1        0        1        0      300ms  test:b 300ms\n"),
            "{text}"
        );
        assert!(
            text.contains("\n\nSTOPPED test:c: killed by SIGTERM after 50ms, pid 102 on elsewhere\n\nFAILED (allowed) lint"),
            "{text}"
        );
        assert!(!text.contains("FAILED test:c"), "{text}");
        assert!(!text.contains("out1"), "{text}");
        assert!(text.ends_with(
            "\n6 tasks: 2 succeeded, 1 failed, 1 failed (allowed), 1 stopped, 1 skipped in 2.00s — terminated (SIGTERM); exit status 143\n"
        ), "{text}");
    }

    #[test]
    fn a_plain_run_has_todays_columns_and_says_all_succeeded() {
        let ok: Vec<TaskRecord> = records()
            .into_iter()
            .filter(|r| r.status == Status::Succeeded)
            .collect();
        let text = summary(&file(), &ok, &info(0, None), false);
        assert!(
            text.starts_with("\njob      tasks      ok  failed  skipped       time  slowest\n"),
            "{text}"
        );
        assert!(
            text.ends_with(
                "\n2 tasks: 2 succeeded, 0 failed, 0 skipped in 2.00s — all tasks succeeded\n"
            ),
            "{text}"
        );
        assert!(!text.contains("FAILED"), "{text}");
        let one = summary(&file(), &ok[..1], &info(0, None), false);
        assert!(one.contains("\n1 task: 1 succeeded, "), "{one}");
        let text = summary(
            &file(),
            &ok,
            &info(130, Some("interrupted (SIGINT)")),
            false,
        );
        assert!(
            text.ends_with("— interrupted (SIGINT); exit status 130\n"),
            "{text}"
        );
    }

    #[test]
    fn an_allowed_failure_is_no_reason_to_say_all_succeeded() {
        let some: Vec<TaskRecord> = records()
            .into_iter()
            .filter(|r| r.status == Status::Succeeded || r.allowed_failure)
            .collect();
        let text = summary(&file(), &some, &info(0, None), false);
        assert!(
            text.ends_with("\n3 tasks: 2 succeeded, 0 failed, 1 failed (allowed), 0 skipped in 2.00s — succeeded with 1 allowed failure\n"),
            "{text}"
        );
    }

    #[test]
    fn color_marks_failed_jobs_and_failures_only() {
        let text = summary(&file(), &records(), &info(1, None), true);
        let red = |needle: &str| {
            text.lines()
                .find(|l| l.contains(needle))
                .is_some_and(|l| l.contains("\u{1b}[31"))
        };
        assert!(red("test         3"), "{text}");
        assert!(red("FAILED test:b"), "{text}");
        assert!(!red("build        1"), "{text}");
        assert!(!red("deploy"), "{text}");
        assert!(!red("  | oops"), "{text}");
        assert!(!red("lint "), "an allowed failure is not red: {text}");
    }

    #[test]
    fn the_markdown_summary_escapes_what_tasks_said() {
        let mut records = records();
        records[2].stderr_tail = vec!["a|b <script> *x* `y` $x^2$ @octo".into(), "  ".into()];
        let tally = Tally::of(&file(), &records);
        let text = markdown(&file(), &tally, &info(1, None));
        assert!(
            text.starts_with("### runner: x.toml — exit status 1\n"),
            "{text}"
        );
        assert!(
            text.contains("| job | tasks | ok | failed | allowed | skipped | time | slowest |"),
            "{text}"
        );
        assert!(text.contains("| test | 3 | 1 | 2 | 0 | 0 |"), "{text}");
        assert!(
            text.contains("| test:b | exit 2 | a\\|b &lt;script&gt; \\*x\\* &#96;y&#96; &#36;x^2&#36; &#64;octo |"),
            "{text}"
        );
        assert!(
            text.contains("| lint (allowed) | exit 1 | warn |"),
            "{text}"
        );
    }
}
