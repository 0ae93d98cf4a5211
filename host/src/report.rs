//! `report.md`: what `encore run` measured, as a researcher reads it. Every number comes from
//! the same reports and comparisons as `results.parquet` and `comparisons.parquet`; nothing is
//! computed here but ratios.
//!
//! A grid's report ([`grid_markdown`], [`html()`]) is drawn from its [`ResultRow`]s alone: the
//! paper's table ([`table`]), its plots ([`plots`]) and `report.html` ([`html()`]'s page).
use crate::eval::compare::Row;
use crate::eval::EvalReport;
use crate::results::ResultRow;
use std::fmt::Write;

mod html;
mod plots;
mod table;

/// What a grid's report is drawn from.
pub struct GridReport<'a> {
    /// The report's title.
    pub title: &'a str,
    /// The config that ran (its path).
    pub config: &'a str,
    /// One line on the data (items, training sequences, test cases).
    pub data: &'a str,
    /// One row per cell × protocol × metric@k.
    pub rows: &'a [ResultRow],
    /// Lines the report shows under its title (cells that failed, caveats).
    pub notes: &'a [String],
    /// Per-case comparisons (`comparisons.parquet`): the long-tail and cold-start subsets.
    pub comparisons: &'a [Row],
}

/// A markdown table cell: `|` and line breaks would end it.
fn md(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// A grid's `report.md`: the paper's table per protocol × metric@k, and how much each sampled
/// protocol inflates the numbers. The plots are in [`html()`].
pub fn grid_markdown(r: &GridReport) -> String {
    let rows = r.rows;
    let mut out = String::new();
    let _ = writeln!(out, "# {}\n\nConfig: `{}`. {}\n", r.title.replace('\n', " "), r.config.replace('`', "'"), r.data);
    for n in r.notes {
        let _ = writeln!(out, "- {}", n.replace('\n', " "));
    }
    if !r.notes.is_empty() {
        out.push('\n');
    }
    let protocols = table::protocols(rows);
    for p in &protocols {
        let tables: Vec<table::PaperTable> = table::metrics(rows, p).iter().map(|(m, k)| table::paper_table(rows, p, m, *k)).collect();
        let Some(first) = tables.first() else { continue };
        let reference = first.columns.get(first.reference).map_or("ID only", String::as_str);
        let _ = writeln!(out, "## The paper's table: {}\n\n{}\n", html::protocol_name(p), table::caption(rows, reference));
        for t in &tables {
            let _ = writeln!(out, "### {}@{} ({})\n", md(&t.metric), t.k, md(p));
            let _ = writeln!(out, "| LLM | encoder | {} |", t.columns.iter().map(|c| md(c)).collect::<Vec<_>>().join(" | "));
            let _ = writeln!(out, "|---|---|{}", "---|".repeat(t.columns.len()));
            for row in &t.rows {
                let cells: Vec<String> = row
                    .cells
                    .iter()
                    .map(|c| {
                        let Some(c) = c else { return "–".into() };
                        let value = if c.best { format!("**{}**", table::num(c.value)) } else { table::num(c.value) };
                        let mark = table::mark(c.verdict);
                        match c.change {
                            Some(ch) if mark == "*" => format!("{value} ({}*)", table::percent(ch)),
                            Some(ch) if !mark.is_empty() => format!("{value} ({}, {mark})", table::percent(ch)),
                            Some(ch) => format!("{value} ({})", table::percent(ch)),
                            None if mark == "n.s." => format!("{value} (n.s.)"),
                            None => value,
                        }
                    })
                    .collect();
                let _ = writeln!(out, "| {} | {} | {} |", md(&row.llm), md(&row.encoder), cells.join(" | "));
            }
            out.push('\n');
        }
    }
    let full = table::metrics(rows, table::FULL);
    subsets_markdown(&mut out, r, &full);
    let other = table::other_comparisons(rows, r.comparisons);
    if !other.is_empty() {
        let _ = writeln!(
            out,
            "## The completion input on its own (full ranking)\n\nEach `+CR` cell against the same cell without the completion input, case by case (paired bootstrap, Holm within these comparisons of one subset and metric@k).\n"
        );
        let _ = writeln!(out, "| cell | against | subset | metric | n | value | difference [95% CI] | p (Holm) |\n|---|---|---|---|---|---|---|---|");
        for (cell, base, c) in other {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {}@{} | {} | {} | {} | {} |",
                md(&cell),
                md(&base),
                c.subset,
                md(&c.metric),
                c.k,
                c.n_cases,
                table::num(c.value),
                c.diff.map_or("–".into(), |d| format!("{d:+.4}{}", c.diff_ci.map_or(String::new(), |(a, b)| format!(" [{a:+.4}, {b:+.4}]")))),
                c.p_holm.map_or("–".into(), |p| format!("{p:.4}"))
            );
        }
        out.push('\n');
    }
    for p in protocols.iter().filter(|p| *p != table::FULL) {
        let metrics: Vec<(String, u32)> = table::metrics(rows, p).into_iter().filter(|mk| full.contains(mk)).collect();
        if metrics.is_empty() {
            continue;
        }
        let pairs: Vec<Vec<table::Pair>> = metrics.iter().map(|(m, k)| table::full_vs_sampled(rows, p, m, *k)).collect();
        let _ = writeln!(out, "## How much {p} inflates the numbers (sampled ÷ full ranking, means over seeds)\n");
        let _ = writeln!(out, "| cell | {} |", metrics.iter().map(|(m, k)| format!("{}@{k}", md(m))).collect::<Vec<_>>().join(" | "));
        let _ = writeln!(out, "|---|{}", "---|".repeat(metrics.len()));
        for key in table::unique(pairs.iter().flatten().map(|x| x.key.clone())) {
            let cells: Vec<String> =
                pairs.iter().map(|ps| ps.iter().find(|x| x.key == key).and_then(|x| x.inflation()).map_or("–".into(), |f| format!("{f:.2}×"))).collect();
            let _ = writeln!(out, "| {} | {} |", md(&table::label(&key.0, &key.1, &key.2)), cells.join(" | "));
        }
        out.push('\n');
    }
    out
}

/// The long-tail and cold-start table: each full-ranking cell's value on those test cases, and
/// its paired difference against its ID-only cell.
fn subsets_markdown(out: &mut String, r: &GridReport, metrics: &[(String, u32)]) {
    let ci = |c: Option<(f64, f64)>| c.map_or(String::new(), |(a, b)| format!(" [{}, {}]", table::num(a), table::num(b)));
    for (m, k) in metrics {
        let columns: Vec<(&str, Vec<table::SubsetLine>)> =
            table::SUBSETS.iter().map(|(s, _)| (*s, table::subset_lines(r.rows, r.comparisons, s, m, *k))).filter(|(_, l)| !l.is_empty()).collect();
        if columns.is_empty() {
            continue;
        }
        let labels = table::unique(columns.iter().flat_map(|(_, l)| l.iter().map(|x| x.label.clone())));
        let _ = writeln!(out, "## Long tail and cold start: {}@{k} (full ranking)\n", md(m));
        for (s, what) in table::SUBSETS.iter().filter(|(s, _)| columns.iter().any(|c| c.0 == *s)) {
            let _ = writeln!(out, "- {s}: {what}");
        }
        let _ = writeln!(out, "\nEach value is the mean over those cases with its bootstrap 95% interval; Δ is the paired difference against the same row's ID-only cell, `*` a gain and `sig. loss` a loss whose Holm-adjusted p is below 0.05.\n");
        let head: Vec<String> = columns.iter().map(|(s, l)| format!("{s} (n = {})", l.first().map_or(0, |x| x.n_cases))).collect();
        let _ = writeln!(out, "| cell | {} |\n|---|{}", head.join(" | "), "---|".repeat(columns.len()));
        for label in &labels {
            let cells: Vec<String> = columns
                .iter()
                .map(|(_, l)| match l.iter().find(|x| x.label == *label) {
                    None => "–".into(),
                    Some(x) => match x.diff {
                        Some(d) => format!("{}{} (Δ {d:+.4}{} {})", table::num(x.value), ci(x.ci), ci(x.diff_ci), x.mark()),
                        None => format!("{}{}", table::num(x.value), ci(x.ci)),
                    },
                })
                .collect();
            let _ = writeln!(out, "| {} | {} |", md(label), cells.join(" | "));
        }
        out.push('\n');
    }
}

/// A grid's `report.html`: one self-contained page (inline CSS and SVG, no script, no URL) with
/// the paper's tables, each cell's interval per metric@k under full ranking, and full ranking
/// against each sampled protocol. A plot that cannot be drawn is replaced by its error.
pub fn html(r: &GridReport) -> String {
    html::page(r)
}

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
    use super::table::tests::{cell_rows, row};
    use super::*;
    use crate::eval::report::MetricResult;

    /// qwen × SASRec and GRU4Rec under full ranking with MostPop, and qwen × SASRec under 1+199.
    fn grid() -> Vec<ResultRow> {
        let mut rows = cell_rows("qwen", "SASRec", "full", [0.20, 0.22], &[("+A/L/M", [0.22, 0.24], [0.01, 0.02]), ("+A/L/M+CR", [0.25, 0.25], [0.01, 0.30])]);
        rows.extend(cell_rows("qwen", "GRU4Rec", "full", [0.10, 0.10], &[("+A/L/M", [0.09, 0.09], [0.001, 0.001]), ("+A/L/M+CR", [0.30, 0.22], [0.04, 0.04])]));
        rows.push(row("-", "MostPop", "-", 0, "full", "recall", 10, 0.12, None));
        rows.extend(cell_rows("qwen", "SASRec", "1+199", [0.60, 0.62], &[("+A/L/M", [0.7, 0.7], [0.01, 0.01])]));
        rows
    }

    fn grid_report<'a>(rows: &'a [ResultRow], notes: &'a [String]) -> GridReport<'a> {
        GridReport { title: "grid <1>", config: "grid.toml", data: "50 items.", rows, notes, comparisons: &[] }
    }

    fn compared(model: &str, subset: &'static str, n: usize, value: f64, diff: Option<(f64, f64)>) -> Row {
        Row {
            model: model.into(),
            subset,
            metric: "recall".into(),
            k: 10,
            n_cases: n,
            value,
            ci: Some((value - 0.01, value + 0.01)),
            baseline: diff.map(|_| {
                let parts: Vec<&str> = model.split('/').collect();
                format!("{}/{}/ID only/{}", parts[0], parts[1], parts[parts.len() - 1])
            }),
            baseline_value: diff.map(|(d, _)| value - d),
            diff: diff.map(|d| d.0),
            diff_ci: diff.map(|(d, _)| (d - 0.005, d + 0.005)),
            p_value: diff.map(|d| d.1),
            p_holm: diff.map(|d| d.1),
        }
    }

    #[test]
    fn the_long_tail_and_cold_start_table_and_figures_come_from_the_comparisons() {
        let rows: Vec<ResultRow> = grid().into_iter().filter(|r| r.seed == 0 && r.protocol == "full").collect();
        let cmp = vec![
            compared("qwen/SASRec/ID only/seed0", "tail", 40, 0.01, None),
            compared("qwen/SASRec/+A/L/M/seed0", "tail", 40, 0.08, Some((0.07, 0.002))),
            compared("qwen/SASRec/+A/L/M/seed0", "cold", 7, 0.4, Some((0.4, 0.002))),
            compared("qwen/GRU4Rec/+A/L/M/seed0", "tail", 40, 0.02, Some((-0.005, 0.5))),
            compared("-/MostPop/-/seed0", "cold", 7, 0.0, None),
            compared("qwen/SASRec/+A/L/M/seed0", "all", 300, 0.22, Some((0.02, 0.01))),
            Row { baseline: Some("qwen/SASRec/+A/L/M/seed0".into()), ..compared("qwen/SASRec/+A/L/M+CR/seed0", "all", 300, 0.25, Some((0.03, 0.04))) },
        ];
        let report = GridReport { comparisons: &cmp, ..grid_report(&rows, &[]) };
        let md = grid_markdown(&report);
        let lines: Vec<&str> = md.lines().collect();
        let at = |l: &str| lines.iter().position(|x| *x == l).unwrap_or_else(|| panic!("no line {l:?} in\n{md}"));
        let h = at("| cell | tail (n = 40) | cold (n = 7) |");
        assert!(at("## Long tail and cold start: recall@10 (full ranking)") < h);
        assert_eq!(lines[h + 2], "| qwen · SASRec · ID only | 0.0100 [0.0000, 0.0200] | – |");
        assert_eq!(
            lines[h + 3],
            "| qwen · SASRec · +A/L/M | 0.0800 [0.0700, 0.0900] (Δ +0.0700 [0.0650, 0.0750] *) | 0.4000 [0.3900, 0.4100] (Δ +0.4000 [0.3950, 0.4050] *) |"
        );
        assert_eq!(lines[h + 4], "| qwen · GRU4Rec · +A/L/M | 0.0200 [0.0100, 0.0300] (Δ -0.0050 [-0.0100, 0.0000] n.s.) | – |");
        assert_eq!(lines[h + 5], "| MostPop | – | 0.0000 [-0.0100, 0.0100] |");
        at("## The completion input on its own (full ranking)");
        at("| qwen · SASRec · +A/L/M+CR | qwen · SASRec · +A/L/M | all | recall@10 | 300 | 0.2500 | +0.0300 [+0.0250, +0.0350] | 0.0400 |");
        assert!(!md.contains("| qwen · SASRec · ID only | all |"), "comparisons against ID only are not listed again: {md}");
        let page = html(&report);
        for (class, title) in [("tail", "recall@10 on tail cases (n = 40)"), ("cold", "recall@10 on cold cases (n = 7)")] {
            assert!(page.contains(&format!("<figure class=\"plot {class}\" data-metric=\"recall@10\">")), "no {class} figure");
            assert!(page.contains(title), "no {title:?}");
        }
        assert!(page.contains("qwen · SASRec · +A/L/M *"), "the gain is marked on the figure");
        // Without per-case comparisons there is no such section.
        assert!(!grid_markdown(&grid_report(&rows, &[])).contains("Long tail"));
    }

    #[test]
    fn grid_markdown_is_the_paper_table_with_changes_the_best_and_significance() {
        let rows = grid();
        let md = grid_markdown(&grid_report(&rows, &["cell x failed".to_string()]));
        let lines: Vec<&str> = md.lines().collect();
        let at = |l: &str| lines.iter().position(|x| *x == l).unwrap_or_else(|| panic!("no line {l:?} in\n{md}"));
        let header = at("| LLM | encoder | ID only | +A/L/M | +A/L/M+CR |");
        assert_eq!(lines[header + 2], "| qwen | SASRec | **0.2100** | **0.2300** (+9.5%*) | 0.2500 (+19.0%, n.s.) |");
        assert_eq!(lines[header + 3], "| qwen | GRU4Rec | 0.1000 | 0.0900 (-10.0%, sig. loss) | **0.2600** (+160.0%*) |");
        assert_eq!(lines[header + 4], "| - | MostPop | 0.1200 | – | – |");
        assert!(at("### recall@10 (full)") < header && header < at("### recall@10 (1+199)"));
        assert!(md.contains("Holm's correction within each protocol") && md.contains("bootstrap 95%") && md.contains("- cell x failed"), "{md}");
        assert!(at("| LLM | encoder | ID only | +A/L/M |") > header, "the sampled table has its own columns");
        at("| qwen · SASRec · ID only | 2.90× |");
        at("| qwen · SASRec · +A/L/M | 3.04× |");
    }

    #[test]
    fn an_empty_grid_still_makes_both_reports() {
        let page = html(&grid_report(&[], &[]));
        assert!(page.contains("<h1>grid &lt;1&gt;</h1>") && !page.contains("<table") && !page.contains("<svg"));
        assert!(grid_markdown(&grid_report(&[], &[])).starts_with("# grid <1>"));
    }

    #[test]
    fn grid_markdown_keeps_table_cells_whole() {
        let mut rows = grid();
        rows.iter_mut().filter(|r| r.encoder == "GRU4Rec").for_each(|r| r.encoder = "GRU|4\nRec".into());
        let md = grid_markdown(&grid_report(&rows, &[]));
        assert!(md.contains("| qwen | GRU\\|4 Rec | 0.1000 |"), "{md}");
    }

    #[test]
    fn html_is_self_contained_escaped_and_has_one_plot_per_metric_and_protocol() {
        let mut rows = grid();
        rows.iter_mut().filter(|r| r.encoder == "GRU4Rec").for_each(|r| {
            r.llm = "<script>alert(1)</script>".into();
            r.cell = format!("\"{}&'", r.cell);
        });
        let page = html(&grid_report(&rows, &["<b>note</b>".to_string()]));
        assert!(page.starts_with("<!DOCTYPE html>") && page.trim_end().ends_with("</html>"));
        assert!(!page.contains("<script") && !page.contains("<b>"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;") && page.contains("&lt;b&gt;note&lt;/b&gt;") && page.contains("grid &lt;1&gt;"));
        assert!(!page.replace("xmlns=\"http://www.w3.org/2000/svg\"", "").contains("http"), "no URL");
        assert!(!page.contains("src=") && !page.contains("href=") && !page.contains("url("));
        // One interval plot (recall@10, full) and one full-against-sampled plot.
        assert_eq!(page.matches("<svg").count(), 2);
        assert_eq!(page.matches("<figure class=\"plot ci\"").count(), 1);
        assert_eq!(page.matches("<figure class=\"plot full-vs-sampled\"").count(), 1);
        // Two paper tables: 3 rows × 3 columns under full ranking, 1 × 2 under 1+199.
        let tables: Vec<&str> = page.split("<table class=\"paper\"").skip(1).map(|t| &t[..t.find("</table>").unwrap()]).collect();
        assert_eq!(tables.iter().map(|t| t.matches("<td").count()).collect::<Vec<_>>(), [9, 2]);
        assert!(tables[0].contains("<td class=\"best reference\"><strong class=\"best\">0.2100</strong></td>"), "{}", tables[0]);
        assert!(tables[0].contains("0.2500 <span class=\"change\">(+19.0%)</span> <span class=\"ns\">n.s.</span>"), "{}", tables[0]);
        assert!(tables[0].contains("<span class=\"loss\">sig. loss</span>"));
        assert!(page.contains("<td>2.90×</td>"));
        // One dot per full-ranking recall@10 row: 2 encoders × 3 variants × 2 seeds, and MostPop.
        let ci = &page[page.find("plot ci").unwrap()..page.find("plot full-vs-sampled").unwrap()];
        assert_eq!(ci.matches("<circle").count(), 13 + 4, "13 cells and 4 legend marks (3 variants, MostPop)");
    }

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
