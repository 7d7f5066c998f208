//! Results as a table (default) or JSON.

use anyhow::Result;
use serde::Serialize;

use crate::Common;
use crate::procstat::Usage;

/// One measured line.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Row {
    pub name: String,
    pub records: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub mb_per_s: Option<f64>,
    pub records_per_s: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p999_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub errors: u64,
    pub broker: Option<Usage>,
    pub note: String,
}

impl Row {
    pub fn throughput(name: &str, records: u64, bytes: u64, seconds: f64) -> Self {
        let s = seconds.max(1e-9);
        Row {
            name: name.to_string(),
            records,
            bytes,
            seconds,
            mb_per_s: Some(bytes as f64 / s / 1e6),
            records_per_s: Some(records as f64 / s),
            ..Row::default()
        }
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map(|v| format!("{v:.digits$}"))
        .unwrap_or_else(|| "-".into())
}

/// A Markdown table (readable as plain text too).
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| run | records | MB/s | records/s | p50 ms | p99 ms | p99.9 ms | max ms | errors | broker peak RSS MiB | broker CPU s | broker CPU % of a core | note |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for r in rows {
        let (rss, cpu, pct) = match &r.broker {
            Some(u) => (
                format!("{:.1}", u.peak_rss_bytes as f64 / (1 << 20) as f64),
                format!("{:.2}", u.cpu_seconds),
                format!("{:.2}", u.cpu_percent),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.name,
            r.records,
            opt(r.mb_per_s, 1),
            opt(r.records_per_s, 0),
            opt(r.p50_ms, 3),
            opt(r.p99_ms, 3),
            opt(r.p999_ms, 3),
            opt(r.max_ms, 3),
            r.errors,
            rss,
            cpu,
            pct,
            r.note
        ));
    }
    out
}

pub fn print(common: &Common, rows: &[Row]) -> Result<()> {
    if common.json {
        println!("{}", serde_json::to_string_pretty(rows)?);
    } else {
        print!("{}", table(rows));
    }
    Ok(())
}
