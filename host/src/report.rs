//! `report.md`: what `encore run` measured, as a researcher reads it. Every number comes from
//! the same reports and comparisons as `results.parquet` and `comparisons.parquet`; nothing is
//! computed here but ratios.
use crate::eval::compare::Row;
use crate::eval::EvalReport;
use std::fmt::Write;

/// What the report is made of.
pub struct ReportInput<'a> {
    /// The config that ran.
    pub config: &'a str,
    /// One line on the data (items, training sequences, test cases).
    pub data: String,
    /// Every model's test report: full-ranking rows, and `"<model> 1+N"` rows when
    /// `sampled_negatives` is N > 0.
    pub results: &'a [(String, EvalReport)],
    /// The sampled protocol's negatives (0: full ranking only).
    pub sampled_negatives: usize,
    /// Per-case comparisons with baselines (`comparisons.parquet`).
    pub comparisons: &'a [Row],
    /// The zero-shot table, on its own subset and candidates.
    pub zero_shot: &'a [(String, EvalReport)],
}

/// Four decimals, without a "-0.0000" for a value that rounds to zero.
fn num(v: f64) -> String {
    format!("{:.4}", if v.abs() < 5e-5 { 0.0 } else { v })
}

fn cell(value: f64, ci: Option<(f64, f64)>) -> String {
    match ci {
        Some((lo, hi)) => format!("{} [{}, {}]", num(value), num(lo), num(hi)),
        None => num(value),
    }
}

/// A markdown table of `reports`, one column per metric@k, the best value of each column in bold.
fn results_table(out: &mut String, reports: &[&(String, EvalReport)]) {
    let Some((_, first)) = reports.first() else { return };
    let cols: Vec<(String, u32)> = first.results.iter().map(|r| (r.metric.clone(), r.k)).collect();
    let best: Vec<f64> = cols
        .iter()
        .map(|(m, k)| reports.iter().filter_map(|(_, r)| r.results.iter().find(|x| &x.metric == m && x.k == *k)).map(|x| x.value).fold(f64::MIN, f64::max))
        .collect();
    let _ = writeln!(out, "| model | {} |", cols.iter().map(|(m, k)| format!("{m}@{k}")).collect::<Vec<_>>().join(" | "));
    let _ = writeln!(out, "|---|{}", "---|".repeat(cols.len()));
    for (name, rep) in reports {
        let cells: Vec<String> = cols
            .iter()
            .zip(&best)
            .map(|((m, k), &b)| match rep.results.iter().find(|x| &x.metric == m && x.k == *k) {
                Some(x) if x.value == b => format!("**{}**", cell(x.value, x.ci)),
                Some(x) => cell(x.value, x.ci),
                None => "–".into(),
            })
            .collect();
        let _ = writeln!(out, "| {name} | {} |", cells.join(" | "));
    }
}

/// The verdict on a paired comparison at α = 0.05 after Holm's correction.
fn verdict(r: &Row) -> &'static str {
    match (r.diff, r.p_holm) {
        (Some(d), Some(p)) if p < 0.05 && d > 0.0 => "significant gain",
        (Some(d), Some(p)) if p < 0.05 && d < 0.0 => "significant loss",
        (Some(_), Some(_)) => "not significant",
        _ => "–",
    }
}

/// The report's markdown.
pub fn markdown(r: &ReportInput) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# encore report\n\nConfig: `{}`. {}\n", r.config, r.data);
    let suffix = format!(" 1+{}", r.sampled_negatives);
    let full: Vec<&(String, EvalReport)> = r.results.iter().filter(|(n, _)| r.sampled_negatives == 0 || !n.ends_with(&suffix)).collect();
    if let Some((_, first)) = full.first() {
        let _ = writeln!(
            out,
            "## Full ranking over all {} items\n\n{} test cases. Brackets: the 95% bootstrap interval over cases{}. Bold: the best of each column.\n",
            first.n_items,
            first.n_users,
            first.bootstrap.map_or(String::new(), |b| format!(" ({} resamples, seed {})", b.resamples, b.seed)),
        );
        results_table(&mut out, &full);
    }
    if r.sampled_negatives > 0 {
        let sampled: Vec<&(String, EvalReport)> = r.results.iter().filter(|(n, _)| n.ends_with(&suffix)).collect();
        if !sampled.is_empty() {
            let _ = writeln!(out, "\n## The sampled protocol (1 positive + {} negatives)\n", r.sampled_negatives);
            results_table(&mut out, &sampled);
            let _ = writeln!(out, "\nHow much sampling inflates each model's numbers (sampled ÷ full ranking):\n");
            let metrics: Vec<(String, u32)> = sampled[0].1.results.iter().map(|x| (x.metric.clone(), x.k)).collect();
            let _ = writeln!(out, "| model | {} |", metrics.iter().map(|(m, k)| format!("{m}@{k}")).collect::<Vec<_>>().join(" | "));
            let _ = writeln!(out, "|---|{}", "---|".repeat(metrics.len()));
            for (name, s) in &sampled {
                let base = name.trim_end_matches(&suffix);
                let Some((_, f)) = full.iter().find(|(n, _)| n == base) else { continue };
                let cells: Vec<String> = metrics
                    .iter()
                    .map(|(m, k)| match (f.get(m, *k), s.get(m, *k)) {
                        (Some(a), Some(b)) if a > 0.0 => format!("{:.1}×", b / a),
                        _ => "–".into(),
                    })
                    .collect();
                let _ = writeln!(out, "| {base} | {} |", cells.join(" | "));
            }
        }
    }
    let compared: Vec<&Row> = r.comparisons.iter().filter(|c| c.baseline.is_some()).collect();
    if !compared.is_empty() {
        let _ = writeln!(
            out,
            "\n## Against each model's baseline, case by case\n\nPaired bootstrap of the per-case difference; p adjusted by Holm–Bonferroni over the comparisons of the same subset and metric@k (one column); a gain is significant when the adjusted p < 0.05. Subsets: all test cases, long-tail targets, cold-start targets (never played in training).\n"
        );
        let _ = writeln!(out, "| model | subset | metric | n | value | baseline | difference [95% CI] | p (Holm) | verdict |");
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
        for c in compared {
            let _ = writeln!(
                out,
                "| {} | {} | {}@{} | {} | {} | {} {} | {} | {} | {} |",
                c.model,
                c.subset,
                c.metric,
                c.k,
                c.n_cases,
                cell(c.value, c.ci),
                c.baseline.as_deref().unwrap_or(""),
                c.baseline_value.map_or("–".into(), num),
                c.diff.map_or("–".into(), |d| cell(d, c.diff_ci)),
                c.p_holm.map_or("–".into(), |p| format!("{p:.4}")),
                verdict(c)
            );
        }
    }
    if !r.zero_shot.is_empty() {
        let first = &r.zero_shot[0].1;
        let _ = writeln!(
            out,
            "\n## Zero-shot, next to every model\n\nA seeded subset of {} test cases. Rows \"(zs N, 1+M)\": each target among the same M sampled candidates for every model. Rows \"(zs N, top T of E)\": full ranking, the LLM ordering encoder E's best T items, next to E's own order.\n",
            first.n_users
        );
        results_table(&mut out, &r.zero_shot.iter().collect::<Vec<_>>());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::report::MetricResult;

    fn report(values: &[(&str, u32, f64)]) -> EvalReport {
        EvalReport {
            results: values
                .iter()
                .map(|&(m, k, v)| MetricResult { metric: m.into(), k, value: v, ci: Some((v - 0.01, v + 0.01)), n_users: 100, plugin_version: "1".into() })
                .collect(),
            n_users: 100,
            n_items: 50,
            bootstrap: None,
        }
    }

    #[test]
    fn the_best_is_bold_sampling_inflation_is_a_ratio_and_verdicts_follow_holm() {
        let results = vec![
            ("MostPop".to_string(), report(&[("recall", 10, 0.15)])),
            ("SASRec".to_string(), report(&[("recall", 10, 0.41)])),
            ("SASRec 1+99".to_string(), report(&[("recall", 10, 0.82)])),
        ];
        let row = |diff: f64, p: f64| Row {
            model: "SASRec+x".into(),
            subset: "all",
            metric: "recall".into(),
            k: 10,
            n_cases: 100,
            value: 0.42,
            ci: None,
            baseline: Some("SASRec".into()),
            baseline_value: Some(0.41),
            diff: Some(diff),
            diff_ci: Some((diff - 0.01, diff + 0.01)),
            p_value: Some(p),
            p_holm: Some(p),
        };
        let comparisons = vec![row(0.01, 0.01), row(0.01, 0.2), row(-0.02, 0.001)];
        let md = markdown(&ReportInput {
            config: "c.toml",
            data: "50 items.".into(),
            results: &results,
            sampled_negatives: 99,
            comparisons: &comparisons,
            zero_shot: &[],
        });
        assert!(md.contains("| SASRec | **0.4100 [0.4000, 0.4200]** |"), "{md}");
        assert!(md.contains("| MostPop | 0.1500 [0.1400, 0.1600] |"), "{md}");
        assert!(md.contains("| SASRec | 2.0× |"), "{md}");
        assert!(!md.contains("| SASRec 1+99 | 2"), "{md}");
        let verdicts: Vec<&str> = md.lines().filter(|l| l.starts_with("| SASRec+x")).map(|l| l.rsplit('|').nth(1).unwrap().trim()).collect();
        assert_eq!(verdicts, ["significant gain", "not significant", "significant loss"]);
        assert!(!md.contains("Zero-shot"));
    }
}
