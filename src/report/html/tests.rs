use super::super::fixtures::{info, ran, records, stopped_records};
use super::*;
use crate::task::Try;

const JOBS: [&str; 4] = ["build", "test", "lint", "deploy"];

fn jobs() -> Vec<String> {
    JOBS.iter().map(|j| j.to_string()).collect()
}

fn page(records: &Vec<TaskRecord>, info: &RunInfo) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("page.html");
    write_html(&path, &jobs(), records, info).unwrap();
    std::fs::read_to_string(path).unwrap()
}

/// The fixtures' records, test:b with its two attempts listed (the first retried).
fn with_tries() -> Vec<TaskRecord> {
    let mut records = records();
    let b = &mut records[2];
    let started = b.started.unwrap();
    b.tries = vec![
        Try {
            started,
            duration: Duration::from_millis(100),
            pid: Some(7),
            end: End::Exited(2),
        },
        Try {
            started: started + Duration::from_millis(200),
            duration: Duration::from_millis(100),
            pid: Some(8),
            end: End::Exited(2),
        },
    ];
    records
}

/// The values of attribute `name` of the elements whose opening tag starts `open`.
fn attrs<'a>(page: &'a str, open: &str, name: &str) -> Vec<&'a str> {
    page.split(open)
        .skip(1)
        .filter_map(|rest| {
            let tag = &rest[..rest.find('>')?];
            let at = tag.find(&format!(" {name}=\""))? + name.len() + 3;
            Some(&tag[at..at + tag[at..].find('"')?])
        })
        .collect()
}

#[test]
fn a_bar_per_attempt_coloured_by_what_became_of_it() {
    let page = page(&with_tries(), &info(1, None));
    let bars: Vec<(&str, &str, &str)> = attrs(&page, "<rect class=\"bar ", "data-label")
        .into_iter()
        .zip(attrs(&page, "<rect class=\"bar ", "data-attempt"))
        .zip(attrs(&page, "<rect class=\"bar ", "data-outcome"))
        .map(|((l, a), o)| (l, a, o))
        .collect();
    assert_eq!(
        bars,
        [
            ("build", "1", "succeeded"),
            ("test:a", "1", "succeeded"),
            ("test:b", "1", "retried"),
            ("test:b", "2", "failed"),
            ("test:c", "1", "failed"),
            ("lint", "1", "allowed-failure"),
        ]
    );
    assert!(
        page.contains("<title>test:b — attempt 1 of 2: exit 2, 100ms (here · slot 0, started +1000.10s)</title>")
            || page.contains("<title>test:b — attempt 1 of 2: exit 2, 100ms (here · slot 0, started +16m40s)</title>"),
        "{page}"
    );
    // One lane per (host, slot), the run's own host first.
    assert_eq!(
        attrs(&page, "<text class=\"lane\"", "x").len(),
        2,
        "lanes: here · slot 0, elsewhere · slot 0"
    );
    let here = page.find(">here · slot 0<title>").unwrap();
    let elsewhere = page.find(">elsewhere · slot 0<title>").unwrap();
    assert!(here < elsewhere);
    assert!(!page.contains("id=\"aggregated\""));
}

#[test]
fn the_page_fetches_nothing_and_runs_nothing() {
    let page = page(&records(), &info(1, None));
    assert!(page.contains(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">"
    ));
    for forbidden in [
        "<script", "<link", " src=", " href=", "url(", "http:", "https:", "@import",
    ] {
        assert!(!page.contains(forbidden), "{forbidden} in the page");
    }
}

#[test]
fn every_item_is_escaped() {
    let mut records = records();
    records[1].item = "<script>alert(1)</script>&\"'\u{1b}[31m".into();
    records[2].stderr_tail = vec!["\u{1b}[31m<b>red</b>\u{1b}[0m & more".into()];
    let page = page(&records, &info(1, None));
    assert!(
        !page.contains("<script>") && !page.contains("<b>red"),
        "{page}"
    );
    assert!(page.contains("test:&lt;script&gt;alert(1)&lt;/script&gt;&amp;&quot;&#39;?[31m"));
    assert!(page.contains("<pre class=\"tail\">&lt;b&gt;red&lt;/b&gt; &amp; more</pre>"));
    assert_eq!(
        Esc("a\u{0}b\tc\nd").to_string(),
        "a\u{FFFD}b\tc\nd",
        "control characters a page cannot hold"
    );
}

#[test]
fn failures_with_their_tails_and_stopped_tasks_apart() {
    let page = page(
        &stopped_records(),
        &info(143, Some("interrupted (SIGTERM)")),
    );
    let failures = &page[page.find("<section id=\"failures\">").unwrap()..];
    let failures = &failures[..failures.find("</section>").unwrap()];
    assert_eq!(
        attrs(failures, "<li class=\"failure", "data-label"),
        ["test:b", "lint"]
    );
    assert!(failures.contains("<h3>test:b: exit 2</h3>"), "{failures}");
    assert!(failures.contains("earlier stderr cut"));
    assert!(failures.contains("<pre class=\"tail\">oops\nbad</pre>"));
    assert!(failures.contains("<pre class=\"tail\">warn</pre>"));
    let stopped = &page[page.find("<section id=\"stopped\">").unwrap()..];
    assert_eq!(
        attrs(stopped, "<li class=\"stopped\"", "data-label"),
        ["test:c"]
    );
    assert!(
        stopped.contains("test:c: killed by SIGTERM, 1 attempt, 50ms, pid 102, elsewhere · slot 0")
    );
    assert!(page.contains("<dt>interrupted</dt><dd>interrupted (SIGTERM)</dd>"));
    assert!(page.contains("<h1 class=\"bad\">x.toml: interrupted (SIGTERM); exit status 143</h1>"));
}

#[test]
fn a_failure_without_stderr_shows_its_stdout() {
    let page = page(&records(), &info(1, None));
    assert!(
        page.contains("<h3>test:c: killed by SIGKILL</h3>"),
        "{page}"
    );
    assert!(page.contains(
        "(no stderr; the last lines of stdout:)</p>\n<pre class=\"tail\">out1\nout2</pre>"
    ));
}

#[test]
fn a_table_per_job_with_its_tasks() {
    let page = page(&records(), &info(1, None));
    assert_eq!(attrs(&page, "<section class=\"job\"", "data-job"), JOBS);
    let test = &page[page.find("data-job=\"test\">").unwrap()..];
    let test = &test[..test.find("</section>").unwrap()];
    assert_eq!(
        attrs(test, "<td class=\"n", "data-outcome")
            .into_iter()
            .zip(
                test.split("data-outcome=\"")
                    .skip(1)
                    .map(|s| &s[s.find('>').unwrap() + 1..s.find('<').unwrap()])
            )
            .filter(|(_, n)| *n != "0")
            .collect::<Vec<_>>(),
        [("succeeded", "1"), ("failed", "2")]
    );
    assert_eq!(
        attrs(test, "<tr class=\"task", "data-outcome"),
        ["succeeded", "failed", "failed"]
    );
    assert!(test.contains("<td class=\"label\">test:b</td><td class=\"status\" title=\"\">failed</td><td class=\"end\">exit 2</td><td class=\"n\">2</td>"));
    let deploy = &page[page.find("data-job=\"deploy\">").unwrap()..];
    assert!(deploy.contains(
        "<tr class=\"task o-skipped\" data-outcome=\"skipped\"><td class=\"label\">deploy</td>"
    ));
    assert!(page.contains(
        "<span class=\"count o-succeeded\" data-outcome=\"succeeded\"><b>2</b> succeeded</span>"
    ));
    assert!(page.contains("<span class=\"count o-allowed-failure\" data-outcome=\"allowed-failure\"><b>1</b> failed (allowed)</span>"));
}

#[test]
fn a_job_lists_its_first_tasks_and_counts_the_rest() {
    let records: Vec<TaskRecord> = (0..ROWS + 20)
        .map(|i| ran(1, i, &format!("i{i}"), i, 1, End::Exited(0)))
        .collect();
    let page = page(&records, &info(0, None));
    assert_eq!(page.matches("<tr class=\"task ").count() as u64, ROWS);
    assert!(page.contains("<p class=\"more\">and 20 more tasks of test"));
    assert!(page.contains("<h1 class=\"ok\">x.toml: all tasks succeeded</h1>"));
}

#[test]
fn many_attempts_are_drawn_as_buckets_and_failures_on_top() {
    let n = timeline::DRAWN_UP_TO + 1000;
    let records: Vec<TaskRecord> = (0..n)
        .map(|i| {
            let end = if i % 100 == 0 {
                End::Exited(1)
            } else {
                End::Exited(0)
            };
            let mut r = ran(1, i, &format!("item {i}"), i / 4, 3, end);
            r.slot = (i % 4) as usize;
            r
        })
        .collect();
    let mut info = info(1, None);
    info.started = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
    let page = page(&records, &info);
    assert!(page.contains("<p class=\"note\" id=\"aggregated\">6,000 attempts, more than 5,000 drawn one by one: each lane is drawn as 300 time buckets of"), "{}", &page[..3000]);
    assert_eq!(
        page.matches("<rect class=\"bar ").count(),
        60,
        "the failures, one by one"
    );
    let buckets = page.matches("<rect class=\"bucket ").count();
    assert!((300..=1200).contains(&buckets), "{buckets} buckets");
    assert!(page.contains(" failed, busy "));
    assert!(page.len() < 1_000_000, "{} bytes", page.len());
}

#[test]
fn ticks_on_round_steps() {
    use timeline::tick;
    assert_eq!(tick(0, 500), "0");
    assert_eq!(tick(250, 50), "0.250s");
    assert_eq!(tick(1500, 500), "1.5s");
    assert_eq!(tick(15_000, 5_000), "15s");
    assert_eq!(tick(90_000, 15_000), "1m30s");
    assert_eq!(tick(120_000, 60_000), "2m");
    assert_eq!(tick(5_400_000, 1_800_000), "1h30m");
    assert_eq!(thousands(100_000), "100,000");
    assert_eq!(thousands(999), "999");
}
