//! The front page's charts, drawn here as SVG from PostgreSQL's counts (no Grafana needed):
//! deliveries per bucket stacked by source, the refused (4xx) and failed ones marked, and the
//! time to store them (p50, p99).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Duration, Utc};

use crate::store::console::ChartBucket;

const WIDTH: f64 = 960.0;
const LEFT: f64 = 48.0;
const RIGHT: f64 = 120.0;
const PANEL: f64 = 130.0;
const GAP: f64 = 40.0;
const PALETTE: [&str; 6] = [
    "#2457c5", "#1f9d8a", "#c47f17", "#8e44ad", "#5d6778", "#d35400",
];

/// The SVG of the last `span` in `buckets` buckets ending now.
pub fn svg(rows: &[ChartBucket], span: Duration, buckets: u32, now: DateTime<Utc>) -> String {
    let width = span / buckets as i32;
    let start = now - span;
    let index = |at: DateTime<Utc>| -> Option<usize> {
        let i = (at - start).num_milliseconds() / width.num_milliseconds().max(1);
        (0..i64::from(buckets)).contains(&i).then_some(i as usize)
    };
    let mut sources: Vec<&str> = rows.iter().map(|r| r.source.as_str()).collect();
    sources.sort_unstable();
    sources.dedup();
    let n = buckets as usize;
    let mut counts: BTreeMap<&str, Vec<i64>> = sources.iter().map(|s| (*s, vec![0; n])).collect();
    let (mut refused, mut failed) = (vec![0i64; n], vec![0i64; n]);
    let (mut p50, mut p99) = (vec![None::<f64>; n], vec![None::<f64>; n]);
    for row in rows {
        // A bucket starts at a multiple of its width since the epoch: the nearest slot.
        let Some(i) = index(row.at + width / 2).or_else(|| index(row.at)) else {
            continue;
        };
        counts.get_mut(row.source.as_str()).expect("listed")[i] += row.deliveries;
        refused[i] += row.refused;
        failed[i] += row.failed;
        p50[i] = max(p50[i], row.p50_ms);
        p99[i] = max(p99[i], row.p99_ms);
    }
    let totals: Vec<i64> = (0..n)
        .map(|i| counts.values().map(|c| c[i]).sum())
        .collect();
    let top = totals.iter().copied().max().unwrap_or(0).max(1) as f64;
    let slowest = p99.iter().flatten().copied().fold(1.0_f64, f64::max);
    let plot = WIDTH - LEFT - RIGHT;
    let bar = plot / n as f64;
    let height = 2.0 * PANEL + GAP + 40.0;
    let mut out = String::new();
    let _ = write!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="11"><rect width="100%" height="100%" fill="#fff"/>"##
    );
    // Deliveries per bucket, stacked by source; refused and failed as red ticks on top.
    let _ = write!(
        out,
        r##"<text x="{LEFT}" y="14" font-weight="bold">deliveries per {}</text>"##,
        label(width)
    );
    let base = 20.0 + PANEL;
    axis(&mut out, 20.0, top, "");
    for i in 0..n {
        let x = LEFT + i as f64 * bar;
        let mut y = base;
        for (k, source) in sources.iter().enumerate() {
            let h = counts[source][i] as f64 / top * PANEL;
            if h > 0.0 {
                y -= h;
                let _ = write!(
                    out,
                    r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{h:.1}" fill="{}"><title>{source}: {}</title></rect>"#,
                    (bar - 1.0).max(0.5),
                    PALETTE[k % PALETTE.len()],
                    counts[source][i]
                );
            }
        }
        let bad = refused[i] + failed[i];
        if bad > 0 {
            let _ = write!(
                out,
                r##"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="3" fill="#b3261e"><title>refused {} · failed {}</title></rect>"##,
                y - 4.0,
                (bar - 1.0).max(0.5),
                refused[i],
                failed[i]
            );
        }
    }
    for (k, source) in sources.iter().enumerate() {
        let y = 30.0 + k as f64 * 16.0;
        let _ = write!(
            out,
            r#"<rect x="{}" y="{}" width="10" height="10" fill="{}"/><text x="{}" y="{}">{source}</text>"#,
            WIDTH - RIGHT + 12.0,
            y - 9.0,
            PALETTE[k % PALETTE.len()],
            WIDTH - RIGHT + 28.0,
            y
        );
    }
    let y = 30.0 + sources.len() as f64 * 16.0;
    let _ = write!(
        out,
        r##"<rect x="{}" y="{}" width="10" height="3" fill="#b3261e"/><text x="{}" y="{y}">4xx / failed</text>"##,
        WIDTH - RIGHT + 12.0,
        y - 5.0,
        WIDTH - RIGHT + 28.0
    );
    // Time to store: p50 and p99 per bucket.
    let top2 = 20.0 + PANEL + GAP;
    let _ = write!(
        out,
        r#"<text x="{LEFT}" y="{}" font-weight="bold">time to store (ms): p50, p99</text>"#,
        top2 - 6.0
    );
    axis(&mut out, top2, slowest, " ms");
    for (series, color, name) in [(&p50, "#1f9d8a", "p50"), (&p99, "#c47f17", "p99")] {
        let points: Vec<String> = series
            .iter()
            .enumerate()
            .filter_map(|(i, v)| {
                v.map(|v| {
                    format!(
                        "{:.1},{:.1}",
                        LEFT + (i as f64 + 0.5) * bar,
                        top2 + PANEL - v / slowest * PANEL
                    )
                })
            })
            .collect();
        if !points.is_empty() {
            let _ = write!(
                out,
                r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="1.5"/>"#,
                points.join(" ")
            );
        }
        let y = top2 + if name == "p50" { 12.0 } else { 28.0 };
        let _ = write!(
            out,
            r#"<rect x="{}" y="{}" width="10" height="3" fill="{color}"/><text x="{}" y="{y}">{name}</text>"#,
            WIDTH - RIGHT + 12.0,
            y - 5.0,
            WIDTH - RIGHT + 28.0
        );
    }
    // The time axis: its start, middle and end.
    let bottom = top2 + PANEL + 16.0;
    for (x, at) in [
        (LEFT, start),
        (LEFT + plot / 2.0, start + span / 2),
        (LEFT + plot, now),
    ] {
        let _ = write!(
            out,
            r#"<text x="{x:.1}" y="{bottom}" text-anchor="middle">{}</text>"#,
            at.format("%m-%d %H:%M")
        );
    }
    out.push_str("</svg>");
    out
}

fn max(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn axis(out: &mut String, top: f64, most: f64, unit: &str) {
    let _ = write!(
        out,
        r##"<line x1="{LEFT}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#d9dee7"/><text x="{}" y="{:.1}" text-anchor="end">{}{unit}</text><text x="{}" y="{:.1}" text-anchor="end">0</text>"##,
        top + PANEL,
        WIDTH - RIGHT,
        top + PANEL,
        LEFT - 4.0,
        top + 8.0,
        round(most),
        LEFT - 4.0,
        top + PANEL
    );
}

fn round(value: f64) -> String {
    if value >= 10.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

fn label(width: Duration) -> String {
    match width.num_minutes() {
        0 => format!("{} s", width.num_seconds()),
        1 => "minute".into(),
        m if m < 60 => format!("{m} minutes"),
        m => format!("{} hours", m / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bucket_is_drawn_where_its_time_is() {
        let now = DateTime::parse_from_rfc3339("2026-12-04T12:00:00Z")
            .unwrap()
            .to_utc();
        let row = |minutes_ago: i64, source: &str, deliveries: i64| ChartBucket {
            at: now - Duration::minutes(minutes_ago),
            source: source.into(),
            deliveries,
            refused: 0,
            failed: 0,
            p50_ms: Some(5.0),
            p99_ms: Some(20.0),
        };
        let drawn = svg(
            &[row(59, "fal", 10), row(1, "fal", 5), row(1, "github", 5)],
            Duration::hours(1),
            60,
            now,
        );
        assert!(drawn.starts_with("<svg") && drawn.ends_with("</svg>"));
        assert!(
            drawn.contains("<title>fal: 10</title>") && drawn.contains("<title>github: 5</title>")
        );
        assert!(drawn.contains("deliveries per minute"));
        // The busiest bucket (10) is the whole panel's height.
        assert!(
            drawn.contains(&format!(r#"height="{PANEL:.1}" fill="{}""#, PALETTE[0])),
            "{drawn}"
        );
        let empty = svg(&[], Duration::days(1), 48, now);
        assert!(empty.contains("deliveries per 30 minutes") && !empty.contains("<title>"));
    }
}
