//! Evaluation results: a printed table and a Parquet file.
use super::bootstrap::Bootstrap;
use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, UInt32Array, UInt64Array};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use std::path::Path;
use std::sync::Arc;

/// One metric at one cutoff.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricResult {
    /// The metric plugin's name.
    pub metric: String,
    /// The cutoff.
    pub k: u32,
    /// Its value over all evaluated users.
    pub value: f64,
    /// Bootstrap confidence interval, for per-user metrics.
    pub ci: Option<(f64, f64)>,
    /// Users evaluated.
    pub n_users: usize,
    /// The plugin's version.
    pub plugin_version: String,
}

/// All results of one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalReport {
    /// One row per metric and cutoff.
    pub results: Vec<MetricResult>,
    /// Users evaluated.
    pub n_users: usize,
    /// Catalog size.
    pub n_items: u32,
    /// The bootstrap used for intervals, if any.
    pub bootstrap: Option<Bootstrap>,
}

impl EvalReport {
    /// The value of `metric` at `k`.
    pub fn get(&self, metric: &str, k: u32) -> Option<f64> {
        self.results.iter().find(|r| r.metric == metric && r.k == k).map(|r| r.value)
    }

    /// A plain-text table: one row per metric, one column per cutoff, with intervals.
    pub fn table(&self) -> String {
        let mut ks: Vec<u32> = self.results.iter().map(|r| r.k).collect();
        ks.sort_unstable();
        ks.dedup();
        let mut metrics: Vec<&str> = Vec::new();
        for r in &self.results {
            if !metrics.contains(&r.metric.as_str()) {
                metrics.push(&r.metric);
            }
        }
        let cell = |r: &MetricResult| match r.ci {
            Some((lo, hi)) => format!("{:.4} [{:.4}, {:.4}]", r.value, lo, hi),
            None => format!("{:.4}", r.value),
        };
        let mut rows = vec![std::iter::once("metric".to_string()).chain(ks.iter().map(|k| format!("@{k}"))).collect::<Vec<_>>()];
        for m in &metrics {
            let mut row = vec![m.to_string()];
            for k in &ks {
                row.push(self.results.iter().find(|r| r.metric == *m && r.k == *k).map_or(String::new(), cell));
            }
            rows.push(row);
        }
        // Padded by characters: metric names from plugins may be any UTF-8.
        let mut out = crate::io::text_table_ruled(&rows);
        let ci = match self.bootstrap {
            Some(b) if b.resamples > 0 => {
                format!("; [lo, hi] = {:.0}% bootstrap interval over users ({} resamples, seed {})", b.level * 100.0, b.resamples, b.seed)
            }
            _ => String::new(),
        };
        out.push_str(&format!("{} users, {} items{ci}\n", self.n_users, self.n_items));
        out
    }

    /// Writes the results atomically: metric, k, value, ci_low, ci_high, n_users, plugin_version.
    pub fn write_parquet(&self, path: &Path) -> anyhow::Result<()> {
        let r = &self.results;
        let batch = RecordBatch::try_from_iter([
            ("metric", Arc::new(StringArray::from_iter_values(r.iter().map(|x| x.metric.as_str()))) as ArrayRef),
            ("k", Arc::new(UInt32Array::from_iter_values(r.iter().map(|x| x.k))) as ArrayRef),
            ("value", Arc::new(Float64Array::from_iter_values(r.iter().map(|x| x.value))) as ArrayRef),
            ("ci_low", Arc::new(Float64Array::from_iter(r.iter().map(|x| x.ci.map(|c| c.0)))) as ArrayRef),
            ("ci_high", Arc::new(Float64Array::from_iter(r.iter().map(|x| x.ci.map(|c| c.1)))) as ArrayRef),
            ("n_users", Arc::new(UInt64Array::from_iter_values(r.iter().map(|x| x.n_users as u64))) as ArrayRef),
            ("plugin_version", Arc::new(StringArray::from_iter_values(r.iter().map(|x| x.plugin_version.as_str()))) as ArrayRef),
        ])?;
        crate::io::write_atomic_file(path, |file| {
            let mut w = ArrowWriter::try_new(file, batch.schema(), Some(WriterProperties::builder().set_compression(Compression::SNAPPY).build()))?;
            w.write(&batch)?;
            w.close()?;
            Ok(())
        })
    }
}
