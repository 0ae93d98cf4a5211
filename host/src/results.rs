//! The results of a run or a grid, one row per cell × protocol × metric@k: what `results.csv`
//! and `results.parquet` hold, and what `report.md` and `report.html` are drawn from.
use std::path::Path;

/// One cell × protocol × metric@k. `Default` fills no comparison (and empty names).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResultRow {
    /// The cell (or model) it belongs to, unique in the file, e.g. `smollm2/sasrec/alm/seed2020`.
    pub cell: String,
    /// The LLM of the cell (`"-"`: the ID encoder alone, or a baseline).
    pub llm: String,
    /// The ID encoder (`SASRec`, `BERT4Rec`, `GRU4Rec`), or a baseline's name (`MostPop`).
    pub encoder: String,
    /// The column of the paper's table: `ID only`, `+A/L/M`, `+A/L/M+CR`, …
    pub variant: String,
    /// The training seed.
    pub seed: u64,
    /// `full` (all items ranked) or `1+N` (the target among N sampled negatives).
    pub protocol: String,
    /// The metric plugin.
    pub metric: String,
    /// Its cutoff.
    pub k: u32,
    /// The mean over the test cases.
    pub value: f64,
    /// Its bootstrap 95% interval over test cases.
    pub ci: Option<(f64, f64)>,
    /// Test cases.
    pub n_cases: usize,
    /// The cell it is compared with: the ID-only cell of the same LLM × encoder × seed.
    pub baseline: Option<String>,
    /// Mean per-case difference, this cell − baseline.
    pub diff: Option<f64>,
    /// Its paired bootstrap 95% interval.
    pub diff_ci: Option<(f64, f64)>,
    /// Two-sided paired bootstrap p-value.
    pub p_value: Option<f64>,
    /// The p-value after the correction named in `correction`, over every comparison in the file.
    pub p_adjusted: Option<f64>,
    /// The multiple-comparison correction (`holm`), empty without a comparison.
    pub correction: String,
}

/// The column of the paper's table a model falls in: `ID only`, or `+` the fused modalities'
/// short names (`+A/L/M`: from `labels`, else each name's first letter, upper-cased), with `+CR`
/// when the completion ratio is an input (`ID+CR` without modalities).
pub fn variant(modalities: &[String], completion: bool, labels: &std::collections::BTreeMap<String, String>) -> String {
    let label = |m: &String| labels.get(m).cloned().unwrap_or_else(|| m.chars().take(1).flat_map(char::to_uppercase).collect());
    match (modalities.is_empty(), completion) {
        (true, false) => "ID only".into(),
        (true, true) => "ID+CR".into(),
        (false, cr) => format!("+{}{}", modalities.iter().map(label).collect::<Vec<_>>().join("/"), if cr { "+CR" } else { "" }),
    }
}

/// The columns of `results.csv`, in order.
pub const COLUMNS: [&str; 19] = [
    "cell",
    "llm",
    "encoder",
    "variant",
    "seed",
    "protocol",
    "metric",
    "k",
    "value",
    "ci_low",
    "ci_high",
    "n_cases",
    "baseline",
    "diff",
    "diff_low",
    "diff_high",
    "p_value",
    "p_adjusted",
    "correction",
];

fn opt(v: Option<f64>) -> String {
    v.map(|v| format!("{v}")).unwrap_or_default()
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

impl ResultRow {
    fn csv_fields(&self) -> Vec<String> {
        vec![
            field(&self.cell),
            field(&self.llm),
            field(&self.encoder),
            field(&self.variant),
            self.seed.to_string(),
            field(&self.protocol),
            field(&self.metric),
            self.k.to_string(),
            format!("{}", self.value),
            opt(self.ci.map(|c| c.0)),
            opt(self.ci.map(|c| c.1)),
            self.n_cases.to_string(),
            field(self.baseline.as_deref().unwrap_or("")),
            opt(self.diff),
            opt(self.diff_ci.map(|c| c.0)),
            opt(self.diff_ci.map(|c| c.1)),
            opt(self.p_value),
            opt(self.p_adjusted),
            field(&self.correction),
        ]
    }
}

/// `results.csv`: a header, then one line per row (written to a temporary file and renamed).
pub fn write_csv(path: &Path, rows: &[ResultRow]) -> anyhow::Result<()> {
    crate::io::write_atomic(path, |w| {
        use std::io::Write;
        writeln!(w, "{}", COLUMNS.join(","))?;
        for r in rows {
            writeln!(w, "{}", r.csv_fields().join(","))?;
        }
        Ok(())
    })
}

/// `results.parquet`: the same columns as the CSV, nulls where the CSV has empty fields.
pub fn write_parquet(path: &Path, rows: &[ResultRow]) -> anyhow::Result<()> {
    use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, UInt32Array, UInt64Array};
    use std::sync::Arc;
    let s = |f: &dyn Fn(&ResultRow) -> &str| Arc::new(StringArray::from_iter_values(rows.iter().map(f))) as ArrayRef;
    let o = |f: &dyn Fn(&ResultRow) -> Option<f64>| Arc::new(Float64Array::from_iter(rows.iter().map(f))) as ArrayRef;
    let batch = RecordBatch::try_from_iter([
        ("cell", s(&|r| &r.cell)),
        ("llm", s(&|r| &r.llm)),
        ("encoder", s(&|r| &r.encoder)),
        ("variant", s(&|r| &r.variant)),
        ("seed", Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.seed))) as ArrayRef),
        ("protocol", s(&|r| &r.protocol)),
        ("metric", s(&|r| &r.metric)),
        ("k", Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.k))) as ArrayRef),
        ("value", Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.value))) as ArrayRef),
        ("ci_low", o(&|r| r.ci.map(|c| c.0))),
        ("ci_high", o(&|r| r.ci.map(|c| c.1))),
        ("n_cases", Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.n_cases as u64))) as ArrayRef),
        ("baseline", Arc::new(StringArray::from_iter(rows.iter().map(|r| r.baseline.as_deref()))) as ArrayRef),
        ("diff", o(&|r| r.diff)),
        ("diff_low", o(&|r| r.diff_ci.map(|c| c.0))),
        ("diff_high", o(&|r| r.diff_ci.map(|c| c.1))),
        ("p_value", o(&|r| r.p_value)),
        ("p_adjusted", o(&|r| r.p_adjusted)),
        ("correction", s(&|r| &r.correction)),
    ])?;
    crate::io::write_parquet(path, &batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> ResultRow {
        ResultRow {
            cell: "smollm2/sasrec/alm/seed2020".into(),
            llm: "smollm2".into(),
            encoder: "SASRec".into(),
            variant: "+A/L/M".into(),
            seed: 2020,
            protocol: "full".into(),
            metric: "recall".into(),
            k: 10,
            value: 0.25,
            ci: Some((0.2, 0.3)),
            n_cases: 100,
            baseline: Some("smollm2/sasrec/id/seed2020".into()),
            diff: Some(0.05),
            diff_ci: Some((0.01, 0.09)),
            p_value: Some(0.01),
            p_adjusted: Some(0.03),
            correction: "holm".into(),
        }
    }

    #[test]
    fn csv_has_a_header_and_one_quoted_line_per_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results.csv");
        let mut r = row();
        r.variant = "a, \"b\"".into();
        write_csv(&path, &[r, ResultRow { ci: None, baseline: None, diff: None, ..row() }]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].split(',').count(), COLUMNS.len());
        assert!(lines[1].contains("\"a, \"\"b\"\"\""), "{}", lines[1]);
        assert!(lines[2].contains(",full,recall,10,0.25,,,100,,,0.01,0.09,"), "{}", lines[2]);
    }

    #[test]
    fn variants_are_the_paper_columns() {
        let m = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let labels = std::collections::BTreeMap::from([("audio-dsp".to_string(), "A".to_string())]);
        assert_eq!(variant(&[], false, &labels), "ID only");
        assert_eq!(variant(&[], true, &labels), "ID+CR");
        assert_eq!(variant(&m(&["audio-dsp", "lyrics", "mgphot"]), false, &labels), "+A/L/M");
        assert_eq!(variant(&m(&["audio-dsp", "lyrics", "mgphot"]), true, &Default::default()), "+A/L/M+CR");
    }

    #[test]
    fn parquet_round_trips_through_arrow() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results.parquet");
        write_parquet(&path, &[row(), row()]).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap();
        let n: usize = reader.map(|b| b.unwrap().num_rows()).sum();
        assert_eq!(n, 2);
    }
}
