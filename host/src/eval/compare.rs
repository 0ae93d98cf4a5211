//! Models compared case by case: each model's mean on subsets of the test cases (all of them,
//! the cases whose target is in the less popular half of the catalog, and the cases whose target
//! was never played in training), with a bootstrap interval, and the paired bootstrap difference
//! against its baseline on the same cases, with its p-value and the Holm–Bonferroni adjusted
//! p-value over every comparison of the run.
use super::bootstrap::Bootstrap;
use crate::train::EvalCase;
use std::path::Path;

/// A named subset of the test cases.
#[derive(Debug, Clone, PartialEq)]
pub struct Subset {
    /// `all`, `tail` or `cold`.
    pub name: &'static str,
    /// Indices into the test cases.
    pub cases: Vec<usize>,
}

/// `all`; `tail`: cases whose (first) target is a long-tail item: the catalog sorted by training
/// plays, most played first (ties by index), the head is the shortest prefix holding half of all
/// plays and the tail is the rest; `cold`: cases whose target has no training play.
pub fn subsets(test: &[EvalCase], train_plays: &[f32]) -> Vec<Subset> {
    let mut order: Vec<usize> = (0..train_plays.len()).collect();
    order.sort_by(|&a, &b| train_plays[b].total_cmp(&train_plays[a]).then(a.cmp(&b)));
    let total: f64 = train_plays.iter().map(|&x| x as f64).sum();
    let mut tail = vec![true; train_plays.len()];
    let mut head = 0.0;
    for &i in &order {
        if head >= total / 2.0 {
            break;
        }
        head += train_plays[i] as f64;
        tail[i] = false;
    }
    let target = |c: &EvalCase| c.targets.first().map(|&t| t as usize);
    let pick = |f: &dyn Fn(usize) -> bool| test.iter().enumerate().filter(|(_, c)| target(c).is_some_and(f)).map(|(i, _)| i).collect();
    vec![
        Subset { name: "all", cases: (0..test.len()).collect() },
        Subset { name: "tail", cases: pick(&|t| tail[t]) },
        Subset { name: "cold", cases: pick(&|t| train_plays[t] == 0.0) },
    ]
}

/// One model × subset × metric@k.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The model.
    pub model: String,
    /// The subset of test cases.
    pub subset: &'static str,
    /// The metric.
    pub metric: String,
    /// Its cutoff.
    pub k: u32,
    /// Cases in the subset.
    pub n_cases: usize,
    /// The mean over the subset.
    pub value: f64,
    /// Its bootstrap interval.
    pub ci: Option<(f64, f64)>,
    /// The baseline it is compared with (the ID-only model of the same encoder).
    pub baseline: Option<String>,
    /// The baseline's mean over the same cases.
    pub baseline_value: Option<f64>,
    /// Mean per-case difference, model − baseline.
    pub diff: Option<f64>,
    /// Its paired bootstrap interval.
    pub diff_ci: Option<(f64, f64)>,
    /// Two-sided paired bootstrap p-value.
    pub p_value: Option<f64>,
    /// The p-value adjusted by Holm–Bonferroni over every comparison in the rows.
    pub p_holm: Option<f64>,
}

/// Per-case values of one model: `(metric, k, one value per test case)`.
pub type PerCase = Vec<(String, u32, Vec<f64>)>;

/// Rows for every model and subset; `baselines` names each model's baseline, if any.
pub fn compare(models: &[(String, PerCase)], baselines: &[(String, Option<String>)], subsets: &[Subset], bootstrap: Bootstrap) -> Vec<Row> {
    let mut rows = Vec::new();
    for (model, series) in models {
        let base_name = baselines.iter().find(|(m, _)| m == model).and_then(|(_, b)| b.clone());
        let base = base_name.as_ref().and_then(|b| models.iter().find(|(m, _)| m == b));
        for sub in subsets.iter().filter(|s| !s.cases.is_empty()) {
            for (metric, k, values) in series {
                let pick = |v: &[f64]| -> Vec<f64> { sub.cases.iter().filter_map(|&i| v.get(i).copied()).collect() };
                let x = pick(values);
                if x.len() != sub.cases.len() {
                    continue;
                }
                let mean = x.iter().sum::<f64>() / x.len() as f64;
                let b = base.and_then(|(_, s)| s.iter().find(|(m, kk, _)| m == metric && kk == k)).map(|(_, _, v)| pick(v)).filter(|v| v.len() == x.len());
                let paired = b.as_ref().and_then(|b| bootstrap.paired(b, &x));
                rows.push(Row {
                    model: model.clone(),
                    subset: sub.name,
                    metric: metric.clone(),
                    k: *k,
                    n_cases: x.len(),
                    value: mean,
                    ci: bootstrap.intervals(&[&x])[0],
                    baseline: b.as_ref().and(base_name.clone()),
                    baseline_value: b.as_ref().map(|b| b.iter().sum::<f64>() / b.len() as f64),
                    diff: paired.map(|p| p.mean_diff),
                    diff_ci: paired.map(|p| p.ci),
                    p_value: paired.map(|p| p.p_value),
                    p_holm: None,
                });
            }
        }
    }
    holm(&mut rows);
    rows
}

/// Holm–Bonferroni within each family of comparisons: the rows of one subset and metric@k (one
/// column of a results table). In a family of m p-values the i-th smallest is multiplied by
/// (m − i), made monotone.
fn holm(rows: &mut [Row]) {
    let mut families: Vec<(&'static str, String, u32)> = rows.iter().map(|r| (r.subset, r.metric.clone(), r.k)).collect();
    families.sort();
    families.dedup();
    for (subset, metric, k) in families {
        let mut idx: Vec<usize> =
            (0..rows.len()).filter(|&i| rows[i].p_value.is_some() && rows[i].subset == subset && rows[i].metric == metric && rows[i].k == k).collect();
        idx.sort_by(|&a, &b| rows[a].p_value.unwrap_or(1.0).total_cmp(&rows[b].p_value.unwrap_or(1.0)));
        let m = idx.len();
        let mut running: f64 = 0.0;
        for (rank, &i) in idx.iter().enumerate() {
            let adj = (rows[i].p_value.unwrap_or(1.0) * (m - rank) as f64).min(1.0);
            running = running.max(adj);
            rows[i].p_holm = Some(running);
        }
    }
}

/// The rows as a text table: value [interval], and for compared models the difference with its
/// interval and adjusted p-value.
pub fn table(rows: &[Row]) -> String {
    let ci = |c: Option<(f64, f64)>| c.map_or(String::new(), |(l, h)| format!(" [{l:.4}, {h:.4}]"));
    let mut out = String::from("per-case comparison (95% bootstrap intervals; diff is paired, p Holm-adjusted within each subset × metric@k)\n");
    for r in rows {
        let vs = match (&r.baseline, r.diff) {
            (Some(b), Some(d)) => format!("  vs {b}: {d:+.4}{} p={:.4}", ci(r.diff_ci), r.p_holm.unwrap_or(1.0)),
            _ => String::new(),
        };
        out.push_str(&format!("{:<24} {:<5} {:>6}@{:<3} n={:<6} {:.4}{}{vs}\n", r.model, r.subset, r.metric, r.k, r.n_cases, r.value, ci(r.ci)));
    }
    out
}

/// Writes the rows to `path` (Parquet, atomically, with the schema version, through
/// [`crate::data::schema::write`]).
pub fn write_parquet(path: &Path, rows: &[Row]) -> anyhow::Result<()> {
    use arrow_array::{ArrayRef, Float64Array, StringArray, UInt32Array, UInt64Array};
    use std::sync::Arc;
    let f = |g: &dyn Fn(&Row) -> Option<f64>| Arc::new(Float64Array::from_iter(rows.iter().map(g))) as ArrayRef;
    let cols: Vec<(&str, ArrayRef)> = vec![
        ("model", Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.model.as_str())))),
        ("subset", Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.subset)))),
        ("metric", Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.metric.as_str())))),
        ("k", Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.k)))),
        ("n_cases", Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.n_cases as u64)))),
        ("value", f(&|r| Some(r.value))),
        ("ci_low", f(&|r| r.ci.map(|c| c.0))),
        ("ci_high", f(&|r| r.ci.map(|c| c.1))),
        ("baseline", Arc::new(StringArray::from_iter(rows.iter().map(|r| r.baseline.as_deref())))),
        ("baseline_value", f(&|r| r.baseline_value)),
        ("diff", f(&|r| r.diff)),
        ("diff_ci_low", f(&|r| r.diff_ci.map(|c| c.0))),
        ("diff_ci_high", f(&|r| r.diff_ci.map(|c| c.1))),
        ("p_value", f(&|r| r.p_value)),
        ("p_holm", f(&|r| r.p_holm)),
    ];
    crate::data::schema::write(path, cols, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_split_by_training_popularity() {
        let case = |t: u32| EvalCase { history: vec![0], targets: vec![t], completion: vec![] };
        let test = vec![case(0), case(1), case(2), case(3)];
        // 10 plays in all: item 0 (5) is the head; items 1, 2 and 3 (never played) the tail.
        let s = subsets(&test, &[5.0, 4.0, 1.0, 0.0]);
        assert_eq!(s[0].cases, vec![0, 1, 2, 3]);
        assert_eq!((s[1].name, s[1].cases.clone()), ("tail", vec![1, 2, 3]));
        assert_eq!((s[2].name, s[2].cases.clone()), ("cold", vec![3]));
    }

    #[test]
    fn a_model_is_compared_with_its_baseline_on_the_same_cases() {
        let a: Vec<f64> = (0..100).map(|i| (i % 3 == 0) as u8 as f64).collect();
        let b: Vec<f64> = (0..100).map(|i| (i % 3 == 0 || i % 7 == 0) as u8 as f64).collect();
        let models = vec![("ID".to_string(), vec![("recall".to_string(), 10, a)]), ("Fused".to_string(), vec![("recall".to_string(), 10, b)])];
        let baselines = vec![("ID".to_string(), None), ("Fused".to_string(), Some("ID".to_string()))];
        let subs = vec![Subset { name: "all", cases: (0..100).collect() }];
        let rows = compare(&models, &baselines, &subs, Bootstrap::default());
        assert_eq!(rows.len(), 2);
        let f = &rows[1];
        assert_eq!((f.model.as_str(), f.baseline.as_deref()), ("Fused", Some("ID")));
        assert!((f.diff.unwrap() - 0.10).abs() < 1e-12, "{f:?}");
        assert!(f.diff_ci.unwrap().0 > 0.0 && f.p_value.unwrap() < 0.05 && f.p_holm == f.p_value, "{f:?}");
        assert!(rows[0].diff.is_none());
    }

    #[test]
    fn holm_multiplies_by_the_number_left_and_stays_monotone() {
        let row = |p: f64| Row {
            model: String::new(),
            subset: "all",
            metric: String::new(),
            k: 1,
            n_cases: 1,
            value: 0.0,
            ci: None,
            baseline: None,
            baseline_value: None,
            diff: None,
            diff_ci: None,
            p_value: Some(p),
            p_holm: None,
        };
        let mut rows = vec![row(0.04), row(0.01), row(0.03)];
        holm(&mut rows);
        let adj: Vec<f64> = rows.iter().map(|r| r.p_holm.unwrap()).collect();
        assert!((adj[1] - 0.03).abs() < 1e-12 && (adj[2] - 0.06).abs() < 1e-12 && (adj[0] - 0.06).abs() < 1e-12, "{adj:?}");
        // Another metric@k is another family: its p-values do not count against these.
        let mut rows = vec![row(0.01), Row { k: 2, ..row(0.01) }, Row { subset: "tail", ..row(0.01) }];
        holm(&mut rows);
        assert!(rows.iter().all(|r| r.p_holm == Some(0.01)), "{rows:?}");
        let mut rows = vec![row(0.01), row(0.01)];
        holm(&mut rows);
        assert!(rows.iter().all(|r| r.p_holm == Some(0.02)), "{rows:?}");
    }
}
