//! The page's timeline: an inline SVG with a lane per (host, slot), the run's own host
//! first, a time axis, and a bar per attempt coloured by its [`Kind`], with its label,
//! attempt, end and duration in an SVG `<title>` (hover text without a script).
//!
//! Past [`DRAWN_UP_TO`] attempts a bar each would make a page of tens of MB that no
//! browser draws quickly, so each lane becomes time buckets (colour: the worst kind in
//! the bucket; opacity: how busy the slot was), with the attempts that did not simply
//! succeed still drawn one by one on top (the first [`NOTABLE_UP_TO`]), and a note
//! saying so.
//!
//! Longer than 400 lines: the two drawings of a lane (a bar per attempt, time buckets)
//! share its scale, its lookup and the bar itself, which are private to this file.

use super::{end_words, label, offset, place, secs, thousands, Esc, Survey};
use crate::report::tally::Records;
use crate::report::RunInfo;
use crate::task::{duration, printable, Outcome, TaskRecord, Try};
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::time::SystemTime;

/// The most attempts drawn a bar each; past it, the timeline is aggregated.
pub const DRAWN_UP_TO: u64 = 5000;
/// In an aggregated timeline, the most attempts that failed, were retried or were
/// stopped still drawn a bar each.
pub const NOTABLE_UP_TO: u64 = 2000;
/// Time buckets over all the lanes of an aggregated timeline (each lane gets 30 to 300).
const BUCKETS: usize = 12_000;

/// The SVG's coordinates: its width, where the plot starts (lane labels left of it),
/// its width, and the axis's height above the lanes.
const WIDTH: f64 = 1200.0;
const X0: f64 = 178.0;
const PLOT: f64 = WIDTH - X0 - 14.0;
const AXIS: f64 = 26.0;

/// What became of an attempt, worst last (a bucket takes its worst attempt's colour).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Succeeded,
    /// It failed, and the task tried again.
    Retried,
    AllowedFailure,
    /// The run stopped it (Ctrl-C, SIGTERM, fail-fast).
    Stopped,
    Failed,
}

/// Each kind: its class name (`k-NAME`, `data-outcome`), colour and words, in the
/// legend's order.
const KINDS: [(Kind, &str, &str, &str); 5] = [
    (Kind::Succeeded, "succeeded", "#2da44e", "succeeded"),
    (Kind::Failed, "failed", "#cf222e", "failed"),
    (
        Kind::AllowedFailure,
        "allowed-failure",
        "#d4a72c",
        "failed (allowed)",
    ),
    (Kind::Stopped, "stopped", "#8c959f", "stopped by the run"),
    (Kind::Retried, "retried", "#fb8f44", "failed, then retried"),
];

impl Kind {
    /// Attempt `i` of the `n` of `r`: every attempt but the last was retried; the last
    /// is what the task came to.
    pub fn of(r: &TaskRecord, i: usize, n: usize) -> Kind {
        if i + 1 < n {
            return Kind::Retried;
        }
        match r.outcome() {
            Outcome::Succeeded
            | Outcome::UpToDate
            | Outcome::DoneEarlier
            | Outcome::Unchanged
            | Outcome::Cached => Kind::Succeeded,
            Outcome::Failed => Kind::Failed,
            Outcome::AllowedFailure => Kind::AllowedFailure,
            Outcome::Stopped | Outcome::Skipped => Kind::Stopped,
        }
    }

    fn class(self) -> &'static str {
        KINDS
            .iter()
            .find(|k| k.0 == self)
            .map_or("succeeded", |k| k.1)
    }
}

/// The timeline's part of the page's style: a colour per kind.
pub fn style() -> String {
    let mut css = String::from(
        "svg.timeline{width:100%;height:auto;display:block;border:1px solid #d0d7de;border-radius:6px;background:#fff}
svg.timeline text{font:11px ui-monospace,monospace;fill:#59636e}
svg.timeline .grid{stroke:#d8dee4;stroke-width:.6}svg.timeline .stripe{fill:#f6f8fa}
svg.timeline .wait{fill:#bf8700;fill-opacity:.45}
svg.timeline .ready{fill:#0969da}
rect.bar:hover,rect.bucket:hover{stroke:#1f2328;stroke-width:1}
ul.legend{list-style:none;padding:0;margin:6px 0;display:flex;gap:18px;flex-wrap:wrap}
span.sw{display:inline-block;width:12px;height:12px;border-radius:2px;vertical-align:-1px;margin-right:5px}
p.note{background:#fff8c5;border:1px solid #e6d28f;padding:6px 10px;border-radius:6px}
",
    );
    for (_, class, colour, _) in KINDS {
        css.push_str(&format!(
            ".k-{class}{{fill:{colour}}}span.sw.k-{class}{{background:{colour}}}\n"
        ));
    }
    css
}

/// Where things go in the SVG.
struct Scale {
    from: SystemTime,
    /// The span drawn, in seconds (never zero).
    span: f64,
    lane_height: f64,
    height: f64,
}

impl Scale {
    fn new(s: &Survey) -> Scale {
        let span =
            s.to.duration_since(s.from)
                .unwrap_or_default()
                .as_secs_f64()
                .max(0.001);
        // Lanes get thinner as they get many; labels are drawn while they fit.
        let lane_height = match s.lanes.len() {
            0..=16 => 22.0,
            17..=48 => 18.0,
            49..=200 => 11.0,
            _ => 4.0,
        };
        Scale {
            from: s.from,
            span,
            lane_height,
            height: AXIS + lane_height * s.lanes.len() as f64 + 6.0,
        }
    }

    /// Seconds from the start of the timeline.
    fn at(&self, t: SystemTime) -> f64 {
        t.duration_since(self.from)
            .map_or(0.0, |d| d.as_secs_f64())
            .min(self.span)
    }

    fn x(&self, seconds: f64) -> f64 {
        X0 + seconds / self.span * PLOT
    }

    fn lane_y(&self, lane: usize) -> f64 {
        AXIS + lane as f64 * self.lane_height
    }

    /// A bar's top and height in its lane.
    fn bar_y(&self, lane: usize) -> (f64, f64) {
        let pad = if self.lane_height > 8.0 { 3.0 } else { 0.5 };
        (self.lane_y(lane) + pad, self.lane_height - 2.0 * pad)
    }
}

/// The lanes by host and slot, to find an attempt's lane without allocating.
struct Lanes<'a>(BTreeMap<&'a str, BTreeMap<usize, usize>>);

impl<'a> Lanes<'a> {
    fn new(lanes: &'a [(String, usize)]) -> Lanes<'a> {
        let mut map: BTreeMap<&str, BTreeMap<usize, usize>> = BTreeMap::new();
        for (i, (host, slot)) in lanes.iter().enumerate() {
            map.entry(host.as_str()).or_default().insert(*slot, i);
        }
        Lanes(map)
    }

    fn of(&self, r: &TaskRecord) -> Option<usize> {
        self.0.get(r.ran_on())?.get(&r.slot).copied()
    }
}

/// The timeline section: a legend, the note when aggregated, and the SVG.
pub(super) fn write(
    w: &mut dyn Write,
    jobs: &[String],
    records: &dyn Records,
    info: &RunInfo,
    s: &Survey,
) -> io::Result<()> {
    writeln!(w, "<section id=\"timeline\">\n<h2>Timeline</h2>")?;
    if s.lanes.is_empty() {
        return writeln!(w, "<p class=\"muted\">No task ran.</p>\n</section>");
    }
    write!(w, "<ul class=\"legend\">")?;
    for (kind, class, _, words) in KINDS {
        write!(
            w,
            "<li data-outcome=\"{class}\"><span class=\"sw k-{class}\"></span>{words} ({})</li>",
            thousands(s.kinds[kind as usize])
        )?;
    }
    writeln!(w, "</ul>")?;
    let scale = Scale::new(s);
    let attempts = s.attempts();
    let aggregated = attempts > DRAWN_UP_TO;
    let per_lane = (BUCKETS / s.lanes.len()).clamp(30, 300);
    if aggregated {
        let notable = attempts - s.kinds[Kind::Succeeded as usize];
        let drawn = if notable > NOTABLE_UP_TO {
            format!(
                " (the first {} of {})",
                thousands(NOTABLE_UP_TO),
                thousands(notable)
            )
        } else {
            String::new()
        };
        writeln!(
            w,
            "<p class=\"note\" id=\"aggregated\">{} attempts, more than {} drawn one by one: each \
             lane is drawn as {per_lane} time buckets of {} (colour: the worst outcome in the \
             bucket; opacity: how busy its slot was; hover for the counts). The attempts that \
             failed, were retried or were stopped are drawn one by one on top{drawn}.</p>",
            thousands(attempts),
            thousands(DRAWN_UP_TO),
            duration(secs(scale.span / per_lane as f64))
        )?;
    }
    writeln!(
        w,
        "<svg class=\"timeline\" viewBox=\"0 0 {WIDTH} {:.0}\" \
         role=\"img\" aria-label=\"timeline: one lane per slot, one bar per attempt\">",
        scale.height
    )?;
    axis(w, &scale)?;
    lane_labels(w, s, &scale)?;
    writeln!(w, "<g class=\"bars\">")?;
    let lanes = Lanes::new(&s.lanes);
    if aggregated {
        buckets(w, jobs, records, info, s, &scale, &lanes, per_lane)?;
    } else {
        for job in 0..jobs.len() {
            records.each(job, &mut |r| {
                let Some(lane) = lanes.of(r) else {
                    return Ok(());
                };
                let tries = r.each_try();
                for (i, t) in tries.iter().enumerate() {
                    bar(w, jobs, info, &scale, lane, r, (i, tries.len()), t)?;
                }
                Ok(())
            })?;
        }
    }
    writeln!(w, "</g>\n</svg>\n</section>")
}

/// Ticks on a round step (1, 2, 5 × a power of ten below a second, then round seconds,
/// minutes and hours), about ten across, with a grid line each.
fn axis(w: &mut dyn Write, scale: &Scale) -> io::Result<()> {
    const STEPS_MS: [u64; 22] = [
        1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000,
        120_000, 300_000, 600_000, 900_000, 1_800_000, 3_600_000,
    ];
    let span_ms = scale.span * 1000.0;
    let step = STEPS_MS
        .iter()
        .copied()
        .find(|s| span_ms / *s as f64 <= 10.0)
        .unwrap_or_else(|| {
            // Hours: the smallest whole number of them that leaves about ten ticks.
            let hours = (span_ms / 3_600_000.0 / 10.0).ceil().max(1.0) as u64;
            hours * 3_600_000
        });
    writeln!(w, "<g class=\"axis\">")?;
    let mut t = 0u64;
    while t as f64 <= span_ms {
        let x = scale.x(t as f64 / 1000.0);
        let anchor = if t == 0 { "start" } else { "middle" };
        writeln!(
            w,
            "<line class=\"grid\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{:.0}\" y2=\"{:.0}\"/>\
             <text x=\"{x:.1}\" y=\"{:.0}\" text-anchor=\"{anchor}\">{}</text>",
            AXIS - 6.0,
            scale.height - 4.0,
            AXIS - 10.0,
            tick(t, step)
        )?;
        t += step;
    }
    writeln!(w, "</g>")
}

/// A tick's words: "0", "0.25s", "15s", "1m30s", "2m", "1h30m".
pub(super) fn tick(ms: u64, step: u64) -> String {
    match (ms, step) {
        (0, _) => "0".to_string(),
        (_, 0..100) => format!("{:.3}s", ms as f64 / 1000.0),
        (_, 100..1_000) => format!("{:.1}s", ms as f64 / 1000.0),
        (0..60_000, _) => format!("{}s", ms / 1000),
        (_, 1_000..60_000) => format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60),
        (0..3_600_000, _) => format!("{}m", ms / 60_000),
        _ if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        _ => format!("{}h{:02}m", ms / 3_600_000, ms / 60_000 % 60),
    }
}

/// A stripe on every other lane, and each lane's "host · slot N".
fn lane_labels(w: &mut dyn Write, s: &Survey, scale: &Scale) -> io::Result<()> {
    writeln!(w, "<g class=\"lanes\">")?;
    for (i, (host, slot)) in s.lanes.iter().enumerate() {
        let y = scale.lane_y(i);
        if i % 2 == 0 {
            write!(
                w,
                "<rect class=\"stripe\" x=\"0\" y=\"{y:.1}\" width=\"{WIDTH}\" height=\"{:.1}\"/>",
                scale.lane_height
            )?;
        }
        if scale.lane_height >= 10.0 {
            write!(
                w,
                "<text class=\"lane\" x=\"{:.0}\" y=\"{:.1}\" text-anchor=\"end\">{}<title>{}</title></text>",
                X0 - 6.0,
                y + scale.lane_height / 2.0 + 4.0,
                Esc(&format!("{} · slot {slot}", printable(host, 16))),
                Esc(&place(host, *slot))
            )?;
        }
        writeln!(w)?;
    }
    writeln!(w, "</g>")
}

/// One attempt's bar: attempt `i` of `n` of task `r`, `t`.
#[allow(clippy::too_many_arguments)]
fn bar(
    w: &mut dyn Write,
    jobs: &[String],
    info: &RunInfo,
    scale: &Scale,
    lane: usize,
    r: &TaskRecord,
    (i, n): (usize, usize),
    t: &Try,
) -> io::Result<()> {
    let kind = Kind::of(r, i, n).class();
    let start = scale.at(t.started);
    let end = scale.at(t.started + t.duration);
    // A gap after a bar wide enough to spare one, so that two attempts in a row show
    // as two; a narrow one keeps its width, and at least 0.8 to be seen.
    let wide = scale.x(end) - scale.x(start);
    let (x, width) = (
        scale.x(start),
        if wide > 3.0 {
            wide - 0.8
        } else {
            wide.max(0.8)
        },
    );
    let (y, height) = scale.bar_y(lane);
    let label = label(jobs, r);
    // A worker's result may not list its attempts: the one bar then spans them all.
    let which = if !r.tries.is_empty() || r.attempts <= 1 {
        format!("attempt {} of {n}", i + 1)
    } else {
        format!("{} attempts, drawn as one", r.attempts)
    };
    let mut title = format!(
        "{label} — {which}: {}, {} ({}, started {})",
        end_words(&t.end),
        duration(t.duration),
        place(r.ran_on(), r.slot),
        offset(info.started, t.started)
    );
    // Held back by a resource or a rate before it started: a thin bar before its own,
    // in its lane (the lane's slot was free or taken by others meanwhile).
    if i == 0 && !r.waited.is_zero() {
        title.push_str(&format!(
            "; waited {} for a resource or a rate",
            duration(r.waited)
        ));
        let from = scale.x((start - r.waited.as_secs_f64()).max(0.0));
        write!(
            w,
            "<rect class=\"wait\" x=\"{from:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\"><title>{}</title></rect>",
            y + height * 0.4,
            (x - from).max(0.0),
            (height * 0.2).max(1.0),
            Esc(&format!("{label}: waited {} for a resource or a rate", duration(r.waited)))
        )?;
    }
    // A service: when it became ready, a mark across its bar.
    if let Some(service) = r.service.as_ref().filter(|_| i + 1 == n) {
        title.push_str(&service_words(service));
        if let Some(ready) = service.ready_at {
            let at = scale.x(scale.at(ready));
            write!(
                w,
                "<rect class=\"ready\" x=\"{:.1}\" y=\"{:.1}\" width=\"1.6\" height=\"{:.1}\"><title>{}</title></rect>",
                at - 0.8,
                y - height * 0.15,
                height * 1.3,
                Esc(&format!(
                    "{label}: ready at {}{}",
                    offset(info.started, ready),
                    service.ready_after.map_or(String::new(), |d| format!(" ({} after it started)", duration(d)))
                ))
            )?;
        }
    }
    writeln!(
        w,
        "<rect class=\"bar k-{kind}\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{width:.1}\" height=\"{height:.1}\" \
         data-job=\"{}\" data-label=\"{}\" data-attempt=\"{}\" data-outcome=\"{kind}\"><title>{}</title></rect>",
        Esc(jobs.get(r.job).map_or("?", String::as_str)),
        Esc(&label),
        i + 1,
        Esc(&title)
    )
}

/// A service's life in words, for its bar's hover text.
fn service_words(service: &crate::task::ServiceLife) -> String {
    let check = service.check.as_deref().unwrap_or("its process started");
    let ready = service.ready_after.map_or_else(
        || "never ready".to_string(),
        |d| format!("ready after {}", duration(d)),
    );
    let end = match (&service.problem, service.released) {
        (Some(problem), _) => format!(", failed: {problem}"),
        (None, true) => ", released".to_string(),
        (None, false) => ", stopped".to_string(),
    };
    format!("; service ({check}): {ready}{end}")
}

/// A time bucket of one lane.
#[derive(Clone, Copy, Default)]
struct Bucket {
    /// Attempts that started in it, and how many of them did not succeed.
    started: u32,
    failed: u32,
    stopped: u32,
    /// Seconds of it that the slot was running an attempt.
    busy: f64,
    worst: Option<Kind>,
}

/// The aggregated timeline: every lane as `per_lane` buckets, then the attempts that
/// did not succeed (the first [`NOTABLE_UP_TO`]) drawn one by one on top.
#[allow(clippy::too_many_arguments)]
fn buckets(
    w: &mut dyn Write,
    jobs: &[String],
    records: &dyn Records,
    info: &RunInfo,
    s: &Survey,
    scale: &Scale,
    lanes: &Lanes<'_>,
    per_lane: usize,
) -> io::Result<()> {
    let mut grid = vec![Bucket::default(); s.lanes.len() * per_lane];
    let width = scale.span / per_lane as f64;
    let mut notable = Vec::new();
    let mut drawn = 0u64;
    for job in 0..jobs.len() {
        records.each(job, &mut |r| {
            let Some(lane) = lanes.of(r) else {
                return Ok(());
            };
            let row = &mut grid[lane * per_lane..(lane + 1) * per_lane];
            let tries = r.each_try();
            for (i, t) in tries.iter().enumerate() {
                let kind = Kind::of(r, i, tries.len());
                let start = scale.at(t.started);
                let end = scale.at(t.started + t.duration);
                let first = ((start / width) as usize).min(per_lane - 1);
                let last = ((end / width) as usize).min(per_lane - 1);
                row[first].started += 1;
                match kind {
                    Kind::Succeeded => {}
                    Kind::Stopped => row[first].stopped += 1,
                    _ => row[first].failed += 1,
                }
                for (b, bucket) in row.iter_mut().enumerate().take(last + 1).skip(first) {
                    let (from, to) = (b as f64 * width, (b + 1) as f64 * width);
                    bucket.busy += (end.min(to) - start.max(from)).max(0.0);
                    bucket.worst = bucket.worst.max(Some(kind));
                }
                if kind != Kind::Succeeded && drawn < NOTABLE_UP_TO {
                    drawn += 1;
                    bar(
                        &mut notable,
                        jobs,
                        info,
                        scale,
                        lane,
                        r,
                        (i, tries.len()),
                        t,
                    )?;
                }
            }
            Ok(())
        })?;
    }
    for (lane, row) in grid.chunks(per_lane).enumerate() {
        let (y, height) = scale.bar_y(lane);
        let (host, slot) = &s.lanes[lane];
        for (b, bucket) in row.iter().enumerate() {
            let Some(worst) = bucket.worst else { continue };
            let busy = bucket.busy / width;
            let from = b as f64 * width;
            let mut counts = format!(
                "{}, {} failed",
                crate::task::plural(bucket.started, "attempt"),
                bucket.failed
            );
            if bucket.stopped > 0 {
                counts.push_str(&format!(", {} stopped", bucket.stopped));
            }
            writeln!(
                w,
                "<rect class=\"bucket k-{}\" x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{height:.1}\" \
                 fill-opacity=\"{:.2}\"><title>{}, +{}–+{}: {counts}, busy {:.0}%</title></rect>",
                worst.class(),
                scale.x(from),
                PLOT / per_lane as f64,
                busy.clamp(0.15, 1.0),
                Esc(&place(host, *slot)),
                duration(secs(from)),
                duration(secs(from + width)),
                busy * 100.0
            )?;
        }
    }
    w.write_all(&notable)
}
