//! The JUnit XML (`--junit FILE`): a testsuite per job, a testcase per task, written
//! with quick-xml so that it validates against the Jenkins xUnit plugin's
//! `junit-10.xsd` (tests/junit-10.xsd) and reads the same in GitHub, GitLab and
//! junitparser:
//!
//! - a failed task has `<failure>`; a failure that was allowed passes, its end in
//!   `<system-out>`, its stderr tail in `<system-err>`, and its suite says
//!   `allowed_failure` in `<properties>` (the schema has no properties on a testcase);
//! - a testcase is named `JOB:ITEM`, the item whole (GitLab keys results by name), and
//!   a name already given in its suite (equal items) gets the task's index after it:
//!   `JOB:x (index 1)`; tabs and line ends in attributes are written as character
//!   references, so that a reader's attribute normalization keeps them;
//! - a passing task's `<system-out>` holds its stdout tail (its last 10 lines), and
//!   `<system-err>` its stderr tail;
//! - a failed task's `<failure>` holds its stderr tail, or its stdout tail when it
//!   printed nothing on stderr (as the summary and the JSON report show it);
//! - a task stopped by the run is `<skipped message="stopped by the run (SIGTERM)">`,
//!   and a task that never started is `<skipped>` with why (`a needed job failed: …`);
//! - suites count `tests`, `failures`, `errors` and `skipped` (never `disabled`, which
//!   the schema refuses), and times have at most three decimals, as it requires;
//! - text XML 1.0 cannot carry (control characters other than tab and newline) becomes
//!   U+FFFD, as invalid UTF-8 already has.

use super::json::shown_stdout_tail;
use super::tally::{Records, Tally, Totals};
use super::{time, RunInfo};
use crate::jobfile::{Job, JobFile};
use crate::task::{duration, name, plural, End, Outcome, TaskRecord};
use quick_xml::events::attributes::Attribute;
use quick_xml::events::{BytesDecl, BytesText, Event};
use quick_xml::name::QName;
use quick_xml::Writer;
use std::borrow::Cow;
use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::io::{self, Write};
use std::path::Path;
use std::time::Duration;

pub fn write_junit(
    path: &Path,
    file: &JobFile,
    tally: &Tally,
    records: &dyn Records,
    info: &RunInfo,
) -> io::Result<()> {
    let out = io::BufWriter::new(std::fs::File::create(path)?);
    write(out, file, tally, records, info)?.flush()
}

/// Writes the report to `out`, a suite at a time (the counts from `tally`, the cases
/// read from `records`); returns `out` for flushing.
fn write<W: Write>(
    out: W,
    file: &JobFile,
    tally: &Tally,
    records: &dyn Records,
    info: &RunInfo,
) -> io::Result<W> {
    let mut w = Writer::new_with_indent(out, b' ', 2);
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    let all = &tally.all;
    w.create_element("testsuites")
        .with_attributes([
            ("name", "runner"),
            ("tests", all.tasks.to_string().as_str()),
            (
                "failures",
                all.of(Some(Outcome::Failed)).to_string().as_str(),
            ),
            ("errors", "0"),
            ("time", seconds(info.duration).as_str()),
        ])
        .write_inner_content(|w| {
            for job in &file.jobs {
                suite(w, job, &tally.jobs[job.id], records, info)?;
            }
            Ok(())
        })?;
    let mut out = w.into_inner();
    out.write_all(b"\n")?;
    Ok(out)
}

/// A job's testsuite: its counts, when its first task started and the time from then to
/// its last task's end, and a testcase per task.
fn suite<W: Write>(
    w: &mut Writer<W>,
    job: &Job,
    totals: &Totals,
    records: &dyn Records,
    info: &RunInfo,
) -> io::Result<()> {
    let count = |outcomes: &[Outcome]| {
        outcomes
            .iter()
            .map(|o| totals.of(Some(*o)))
            .sum::<u64>()
            .to_string()
    };
    let allowed = count(&[Outcome::AllowedFailure]);
    // A suite none of whose tasks started "starts" with the run, and takes no time.
    let (start, took) = totals.span().unwrap_or((info.started, Duration::ZERO));
    w.create_element("testsuite")
        .with_attributes([
            ("name", clean(&job.name).as_ref()),
            ("tests", totals.tasks.to_string().as_str()),
            ("failures", count(&[Outcome::Failed]).as_str()),
            ("errors", "0"),
            (
                "skipped",
                count(&[Outcome::Stopped, Outcome::Skipped]).as_str(),
            ),
            ("time", seconds(took).as_str()),
            ("timestamp", time(start).as_str()),
        ])
        .write_inner_content(|w| {
            if job.allow_failure {
                w.create_element("properties").write_inner_content(|w| {
                    property(w, "allowed_failure", "true")?;
                    property(w, "allowed_failures", &allowed)
                })?;
            }
            let mut names = Names::default();
            records.each(job.id, &mut |r| case(w, job, r, info, &mut names))
        })?;
    Ok(())
}

fn property<W: Write>(w: &mut Writer<W>, name: &str, value: &str) -> io::Result<()> {
    w.create_element("property")
        .with_attributes([("name", name), ("value", value)])
        .write_empty()?;
    Ok(())
}

/// The testcase names given so far in one suite, by hash (a collision only adds a
/// suffix that was not needed; names are never equal unseen): 8 bytes a task, for the
/// time one suite is written.
#[derive(Default)]
struct Names {
    seen: HashSet<u64>,
    hasher: RandomState,
}

impl Names {
    /// `name` (made fit for XML), or, when a task of the suite already has it, with
    /// ` (index N)` after it until it is one no other task has.
    fn unique(&mut self, name: &str, index: u64) -> String {
        let mut name = clean(name).into_owned();
        while !self.seen.insert(self.hasher.hash_one(&name)) {
            name.push_str(&format!(" (index {index})"));
        }
        name
    }
}

/// An attribute whose value keeps every character: escaped as XML needs (`<`, `&`,
/// quotes), and tab, line feed and carriage return as character references, which a
/// reader's attribute-value normalization would otherwise turn into spaces.
fn attr(key: &'static str, value: &str) -> Attribute<'static> {
    let escaped = quick_xml::escape::escape(clean(value).as_ref())
        .replace('\t', "&#9;")
        .replace('\n', "&#10;")
        .replace('\r', "&#13;");
    Attribute {
        key: QName(key.as_bytes()),
        value: Cow::Owned(escaped.into_bytes()),
    }
}

/// A task's testcase; what is inside depends on its outcome.
fn case<W: Write>(
    w: &mut Writer<W>,
    job: &Job,
    r: &TaskRecord,
    info: &RunInfo,
    names: &mut Names,
) -> io::Result<()> {
    let name = names.unique(&name(job, &r.item), r.index);
    // (A service says how it ended as a service: released, not ready, ended early.)
    let end = r.end_words().unwrap_or_default();
    let stderr = r.stderr_tail.join("\n");
    let stdout = stdout_of(r, &end);
    let element = w
        .create_element("testcase")
        .with_attribute(attr("name", &name))
        .with_attribute(attr("classname", &job.name))
        .with_attribute(("time", seconds(r.duration).as_str()));
    if r.outcome() == Outcome::Succeeded && stderr.is_empty() && stdout.is_empty() {
        // (A task done earlier says so in `system-out`.)
        element.write_empty()?;
        return Ok(());
    }
    element.write_inner_content(|w| {
        match r.outcome() {
            Outcome::Succeeded => {}
            // A passed test: it succeeded in the run this one resumed.
            Outcome::DoneEarlier => {
                let earlier = r
                    .id
                    .as_ref()
                    .map_or("done earlier", |id| id.reason.as_str());
                text(w, "system-out", &format!("{earlier}: it succeeded in the run this one resumed, and was not run again"))?;
            }
            // A passed test: its sources and outputs did not change since it passed.
            Outcome::UpToDate => {
                text(w, "system-out", "up to date: its sources and outputs are as its last success left them, and it was not run")?;
            }
            // A passed test: `--changed-since`, and no source of it changed.
            Outcome::Unchanged => {
                text(
                    w,
                    "system-out",
                    &format!("unchanged: {}; it was not run", r.reason),
                )?;
            }
            // A passed test: restored from the results cache (what it printed, replayed,
            // is in its tails).
            Outcome::Cached => {
                let mut out = format!("{}; it was not run", r.reason);
                if !r.stdout_tail.is_empty() {
                    out.push('\n');
                    out.push_str(&r.stdout_tail.join("\n"));
                }
                text(w, "system-out", &out)?;
            }
            Outcome::Failed => {
                let failure = w
                    .create_element("failure")
                    .with_attribute(attr("message", &end))
                    .with_attribute(("type", kind(r)));
                let tail = if stderr.is_empty() { &stdout } else { &stderr };
                if tail.is_empty() {
                    failure.write_empty()?;
                } else {
                    failure.write_text_content(BytesText::new(&clean(tail)))?;
                }
            }
            Outcome::AllowedFailure => {
                let mut told = format!(
                    "failed, allowed by allow_failure: {end}, {}",
                    plural(r.attempts, "attempt")
                );
                if !stdout.is_empty() {
                    told.push('\n');
                    told.push_str(&stdout);
                }
                text(w, "system-out", &told)?;
            }
            Outcome::Stopped => {
                let why = match info.stopped_by {
                    Some(cause) => format!("stopped by the run ({cause})"),
                    None => "stopped by the run".to_string(),
                };
                let how = match &r.end {
                    Some(_) => format!("{end} after {}", duration(r.duration)),
                    None => "sent to a worker, no result came back".to_string(),
                };
                w.create_element("skipped")
                    .with_attribute(("message", why.as_str()))
                    .write_text_content(BytesText::new(&clean(&how)))?;
            }
            // Why it never started: a job it needs failed, or the run stopped first.
            Outcome::Skipped if r.reason.is_empty() => {
                w.create_element("skipped").write_empty()?;
            }
            Outcome::Skipped => {
                w.create_element("skipped")
                    .with_attribute(attr("message", &r.reason))
                    .write_empty()?;
            }
        }
        if !stdout.is_empty() && r.outcome() != Outcome::AllowedFailure {
            text(w, "system-out", &stdout)?;
        }
        if !stderr.is_empty() {
            text(w, "system-err", &stderr)?;
        }
        Ok(())
    })?;
    Ok(())
}

/// `<tag>text</tag>`, the text made fit for XML.
fn text<W: Write>(w: &mut Writer<W>, tag: &str, text: &str) -> io::Result<()> {
    w.create_element(tag)
        .write_text_content(BytesText::new(&clean(text)))?;
    Ok(())
}

/// A passing task: its last lines of stdout (the tail the runner keeps of every task:
/// 10 lines, 8 KiB), after `service released …` for a service; a failed task that
/// printed nothing on stderr: the same, in place of its stderr.
fn stdout_of(r: &TaskRecord, end: &str) -> String {
    match r.outcome() {
        Outcome::Succeeded if r.service.is_some() => {
            let mut said = format!("service {end}");
            for line in &r.stdout_tail {
                said.push('\n');
                said.push_str(line);
            }
            said
        }
        Outcome::Succeeded => r.stdout_tail.join("\n"),
        _ => shown_stdout_tail(r).join("\n"),
    }
}

/// The failure's `type`: how the task ended.
fn kind(r: &TaskRecord) -> &'static str {
    match &r.end {
        Some(End::TimedOut) => "timeout",
        Some(End::Signaled(_)) => "signal",
        Some(End::SpawnFailed { .. }) => "spawn",
        Some(End::OutputRefused { .. }) => "output",
        Some(End::Internal { .. }) => "internal",
        Some(End::Lost { .. }) => "lost",
        Some(End::NotReady { .. }) => "not-ready",
        _ => "exit",
    }
}

/// Seconds with three decimals, the most junit-10.xsd allows.
fn seconds(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

/// The characters XML 1.0 can carry: tab, newline, carriage return, and everything from
/// space up but the surrogates (never in a `str`), U+FFFE and U+FFFF.
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | ' '..='\u{FFFD}' | '\u{10000}'..)
}

/// `s` with every character XML cannot carry made U+FFFD (escaping `<`, `&` and the
/// like is quick-xml's).
fn clean(s: &str) -> Cow<'_, str> {
    if s.chars().all(xml_char) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(
            s.chars()
                .map(|c| if xml_char(c) { c } else { '\u{FFFD}' })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{file, info, records, stopped_records};
    use super::*;

    fn junit(records: &[TaskRecord], info: &RunInfo) -> String {
        let file = file();
        let tally = Tally::of(&file, records);
        let out =
            write(Vec::new(), &file, &tally, &records.to_vec(), info).expect("writes to memory");
        String::from_utf8(out).expect("UTF-8")
    }

    #[test]
    fn the_junit_in_full() {
        let mut records = stopped_records();
        records[1].stderr_tail = vec![
            "a < b && c ]]> d".into(),
            "bell \u{7} esc \u{1b}[31m".into(),
        ];
        let xml = junit(&records, &info(143, Some("terminated (SIGTERM)")));
        let want = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="runner" tests="6" failures="1" errors="0" time="2.000">
  <testsuite name="build" tests="1" failures="0" errors="0" skipped="0" time="1.500" timestamp="1970-01-01T00:16:40.000Z">
    <testcase name="build" classname="build" time="1.500"/>
  </testsuite>
  <testsuite name="test" tests="3" failures="1" errors="0" skipped="1" time="0.300" timestamp="1970-01-01T00:16:40.100Z">
    <testcase name="test:a" classname="test" time="0.200">
      <system-err>a &lt; b &amp;&amp; c ]]&gt; d
bell � esc �[31m</system-err>
    </testcase>
    <testcase name="test:b" classname="test" time="0.300">
      <failure message="exit 2" type="exit">oops
bad</failure>
      <system-err>oops
bad</system-err>
    </testcase>
    <testcase name="test:c" classname="test" time="0.050">
      <skipped message="stopped by the run (SIGTERM)">killed by SIGTERM after 50ms</skipped>
      <system-out>out1
out2</system-out>
    </testcase>
  </testsuite>
  <testsuite name="lint" tests="1" failures="0" errors="0" skipped="0" time="0.005" timestamp="1970-01-01T00:16:40.000Z">
    <properties>
      <property name="allowed_failure" value="true"/>
      <property name="allowed_failures" value="1"/>
    </properties>
    <testcase name="lint" classname="lint" time="0.005">
      <system-out>failed, allowed by allow_failure: exit 1, 1 attempt</system-out>
      <system-err>warn</system-err>
    </testcase>
  </testsuite>
  <testsuite name="deploy" tests="1" failures="0" errors="0" skipped="1" time="0.000" timestamp="1970-01-01T00:00:00.000Z">
    <testcase name="deploy" classname="deploy" time="0.000">
      <skipped/>
    </testcase>
  </testsuite>
</testsuites>
"#;
        assert_eq!(xml, want);
    }

    #[test]
    fn a_task_stopped_by_fail_fast_says_so() {
        let mut info = info(1, None);
        info.stopped_by = Some("fail-fast");
        let xml = junit(&stopped_records(), &info);
        assert!(
            xml.contains(r#"<skipped message="stopped by the run (fail-fast)">"#),
            "{xml}"
        );
    }

    #[test]
    fn a_plain_failure_is_a_failure_with_its_type() {
        let xml = junit(&records(), &info(1, None));
        assert!(
            xml.contains(
                "<failure message=\"killed by SIGKILL\" type=\"signal\">out1\nout2</failure>"
            ),
            "{xml}"
        );
        assert!(xml.contains(r#"tests="6" failures="2""#), "{xml}");
    }

    #[test]
    fn names_are_unique_in_a_suite_and_attributes_keep_tabs() {
        let mut names = Names::default();
        assert_eq!(names.unique("j:x", 0), "j:x");
        assert_eq!(names.unique("j:x (index 2)", 1), "j:x (index 2)");
        assert_eq!(names.unique("j:x", 2), "j:x (index 2) (index 2)");
        assert_eq!(names.unique("j:\u{1}", 3), "j:\u{fffd}");
        assert_eq!(names.unique("j:\u{2}", 4), "j:\u{fffd} (index 4)");
        let a = attr("name", "a\tb\nc\r<&\"");
        assert_eq!(&*a.value, b"a&#9;b&#10;c&#13;&lt;&amp;&quot;");
    }

    #[test]
    fn only_xml_characters_are_left() {
        assert_eq!(clean("tab\tnl\ncr\r"), "tab\tnl\ncr\r");
        assert_eq!(clean("\u{0}\u{8}\u{b}\u{1f}\u{fffe}\u{ffff}"), "������");
        assert_eq!(clean("\u{7f}é\u{10ffff}"), "\u{7f}é\u{10ffff}");
    }
}
