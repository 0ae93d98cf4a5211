//! The paper's table, drawn from [`ResultRow`]s: rows LLM × encoder, columns the variants (ID only,
//! +A/L/M, …), each cell the mean over seeds with its relative change against the row's ID-only
//! value, the best of each column marked, and each change's significance over every seed.
use crate::results::ResultRow;

/// The protocol every plot of intervals is drawn for.
pub(crate) const FULL: &str = "full";

/// The significance level a comparison's adjusted p is held to.
const ALPHA: f64 = 0.05;

/// How a cell's change against its row's ID-only cell held up, over every seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The ID-only column itself, or a baseline: nothing is compared.
    Reference,
    /// Every seed: adjusted p < 0.05 and a positive difference.
    Gain,
    /// Every seed: adjusted p < 0.05 and a negative difference.
    Loss,
    /// Anything else, a comparison missing in some seed included.
    NotSignificant,
}

/// One cell of the paper's table.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Cell {
    /// The mean over the seeds.
    pub value: f64,
    /// Relative change against the same row's ID-only value (0.043: +4.3%).
    pub change: Option<f64>,
    /// Its significance.
    pub verdict: Verdict,
    /// The best of its column (ties: all of them).
    pub best: bool,
}

/// One row of the paper's table: an LLM × encoder, or a baseline.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    /// The LLM (`-`: none).
    pub llm: String,
    /// The encoder, or the baseline's name.
    pub encoder: String,
    /// A baseline (variant `-`): its one value sits in the ID-only column.
    pub baseline: bool,
    /// One per column; `None` where the grid has no such cell.
    pub cells: Vec<Option<Cell>>,
}

/// The paper's table for one protocol × metric@k.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PaperTable {
    /// `full` or `1+N`.
    pub protocol: String,
    /// The metric.
    pub metric: String,
    /// Its cutoff.
    pub k: u32,
    /// The variants, in order of first appearance.
    pub columns: Vec<String>,
    /// The ID-only column that changes are measured against.
    pub reference: usize,
    /// LLM × encoder rows in order of first appearance, then the baselines.
    pub rows: Vec<Row>,
}

/// A baseline (MostPop, Random): no variant.
pub(crate) fn is_baseline(r: &ResultRow) -> bool {
    r.variant == "-"
}

/// `values`, each once, in order of first appearance.
pub(crate) fn unique<T: PartialEq>(values: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut out = Vec::new();
    for v in values {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

/// The protocols present: `full` first, then the sampled ones in order of first appearance.
pub(crate) fn protocols(rows: &[ResultRow]) -> Vec<String> {
    let mut all = unique(rows.iter().map(|r| r.protocol.clone()));
    all.sort_by_key(|p| p != FULL);
    all
}

/// The metric@k present under `protocol`, in order of first appearance.
pub(crate) fn metrics(rows: &[ResultRow], protocol: &str) -> Vec<(String, u32)> {
    unique(rows.iter().filter(|r| r.protocol == protocol).map(|r| (r.metric.clone(), r.k)))
}

/// The corrections named by the rows' comparisons (normally one, `holm`).
pub(crate) fn corrections(rows: &[ResultRow]) -> Vec<String> {
    unique(rows.iter().filter(|r| !r.correction.is_empty()).map(|r| r.correction.clone()))
}

/// The number of seeds per cell (baselines aside, unless there is nothing else): the fewest and
/// the most.
pub(crate) fn seeds(all: &[ResultRow]) -> (usize, usize) {
    let cells: Vec<&ResultRow> = all.iter().filter(|r| !is_baseline(r)).collect();
    let rows = if cells.is_empty() { all.iter().collect() } else { cells };
    let groups = unique(rows.iter().map(|r| (&r.llm, &r.encoder, &r.variant, &r.protocol, &r.metric, r.k)));
    let counts =
        groups.iter().map(|g| unique(rows.iter().filter(|r| (&r.llm, &r.encoder, &r.variant, &r.protocol, &r.metric, r.k) == *g).map(|r| r.seed)).len());
    counts.fold((usize::MAX, 0), |(lo, hi), n| (lo.min(n), hi.max(n)))
}

/// A paper cell's name in plots and small tables: its non-empty parts joined.
pub(crate) fn label(llm: &str, encoder: &str, variant: &str) -> String {
    [llm, encoder, variant].into_iter().filter(|s| *s != "-" && !s.is_empty()).collect::<Vec<_>>().join(" · ")
}

fn mean(values: impl IntoIterator<Item = f64>) -> f64 {
    let (sum, n) = values.into_iter().fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    sum / n as f64
}

/// The column changes are measured against: the variant of the cells that other rows name as
/// their `baseline`; failing that, a column called "ID only"; failing that, the first.
fn reference_column(all: &[ResultRow], rows: &[&ResultRow], columns: &[String]) -> usize {
    let named = unique(rows.iter().filter_map(|r| r.baseline.as_deref()));
    let referenced: Vec<&String> = all.iter().filter(|r| named.contains(&r.cell.as_str())).map(|r| &r.variant).collect();
    let mut best = None;
    for (i, c) in columns.iter().enumerate() {
        let n = referenced.iter().filter(|v| **v == c).count();
        if n > 0 && best.is_none_or(|(_, m)| n > m) {
            best = Some((i, n));
        }
    }
    best.map(|(i, _)| i).or_else(|| columns.iter().position(|c| c.eq_ignore_ascii_case("ID only"))).unwrap_or(0)
}

/// The verdict over every seed's comparison.
fn verdict(rows: &[&ResultRow]) -> Verdict {
    let significant = |r: &&ResultRow| r.p_adjusted.is_some_and(|p| p < ALPHA);
    if rows.iter().all(|r| significant(r) && r.diff.is_some_and(|d| d > 0.0)) {
        Verdict::Gain
    } else if rows.iter().all(|r| significant(r) && r.diff.is_some_and(|d| d < 0.0)) {
        Verdict::Loss
    } else {
        Verdict::NotSignificant
    }
}

/// The paper's table of `protocol` × `metric`@`k`.
pub(crate) fn paper_table(all: &[ResultRow], protocol: &str, metric: &str, k: u32) -> PaperTable {
    let rows: Vec<&ResultRow> = all.iter().filter(|r| r.protocol == protocol && r.metric == metric && r.k == k).collect();
    let mut columns = unique(rows.iter().filter(|r| !is_baseline(r)).map(|r| r.variant.clone()));
    if columns.is_empty() {
        // Baselines alone: their one column.
        columns.push("value".to_string());
    }
    let reference = reference_column(all, &rows, &columns);
    let keys = |baseline: bool| unique(rows.iter().filter(|r| is_baseline(r) == baseline).map(|r| (r.llm.clone(), r.encoder.clone())));
    let group = |llm: &str, encoder: &str, variant: &str| -> Vec<&ResultRow> {
        rows.iter().copied().filter(|r| r.llm == llm && r.encoder == encoder && r.variant == variant).collect()
    };
    let mut table_rows = Vec::new();
    for (llm, encoder) in keys(false) {
        let means: Vec<Option<f64>> =
            columns.iter().map(|v| Some(group(&llm, &encoder, v)).filter(|g| !g.is_empty()).map(|g| mean(g.iter().map(|r| r.value)))).collect();
        let base = means.get(reference).copied().flatten();
        let cells = columns
            .iter()
            .zip(&means)
            .enumerate()
            .map(|(i, (v, m))| {
                let value = (*m)?;
                let compared = i != reference;
                Some(Cell {
                    value,
                    change: base.filter(|b| compared && *b != 0.0).map(|b| (value - b) / b),
                    verdict: if compared { verdict(&group(&llm, &encoder, v)) } else { Verdict::Reference },
                    best: false,
                })
            })
            .collect();
        table_rows.push(Row { llm, encoder, baseline: false, cells });
    }
    for (llm, encoder) in keys(true) {
        let value = mean(group(&llm, &encoder, "-").iter().map(|r| r.value));
        let mut cells = vec![None; columns.len()];
        cells[reference] = Some(Cell { value, change: None, verdict: Verdict::Reference, best: false });
        table_rows.push(Row { llm, encoder, baseline: true, cells });
    }
    for c in 0..columns.len() {
        let best = table_rows.iter().filter_map(|r| r.cells[c].as_ref()).map(|x| x.value).filter(|v| !v.is_nan()).fold(f64::NEG_INFINITY, f64::max);
        for r in &mut table_rows {
            if let Some(x) = r.cells[c].as_mut() {
                x.best = x.value == best;
            }
        }
    }
    PaperTable { protocol: protocol.to_string(), metric: metric.to_string(), k, columns, reference, rows: table_rows }
}

/// One paper cell under full ranking and under a sampled protocol (means over seeds).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pair {
    /// The LLM, encoder and variant.
    pub key: (String, String, String),
    /// Full ranking.
    pub full: f64,
    /// The sampled protocol.
    pub sampled: f64,
}

impl Pair {
    /// Sampled ÷ full; `None` when full ranking scored 0.
    pub fn inflation(&self) -> Option<f64> {
        (self.full > 0.0).then(|| self.sampled / self.full)
    }

    /// Its name in plots and tables.
    pub fn label(&self) -> String {
        label(&self.key.0, &self.key.1, &self.key.2)
    }
}

/// Each paper cell's full-ranking value next to its value under `protocol`, where it has both.
pub(crate) fn full_vs_sampled(all: &[ResultRow], protocol: &str, metric: &str, k: u32) -> Vec<Pair> {
    let rows: Vec<&ResultRow> = all.iter().filter(|r| r.metric == metric && r.k == k).collect();
    let keys = unique(rows.iter().filter(|r| r.protocol == FULL).map(|r| (r.llm.clone(), r.encoder.clone(), r.variant.clone())));
    let value = |p: &str, key: &(String, String, String)| {
        let g: Vec<f64> = rows.iter().filter(|r| r.protocol == p && (&r.llm, &r.encoder, &r.variant) == (&key.0, &key.1, &key.2)).map(|r| r.value).collect();
        (!g.is_empty()).then(|| mean(g))
    };
    keys.into_iter().filter_map(|key| Some(Pair { full: value(FULL, &key)?, sampled: value(protocol, &key)?, key })).collect()
}

/// Four decimals, without a "-0.0000" for a value that rounds to zero.
pub(crate) fn num(v: f64) -> String {
    format!("{:.4}", if v.abs() < 5e-5 { 0.0 } else { v })
}

/// A relative change as a signed percentage: `+4.3%`.
pub(crate) fn percent(change: f64) -> String {
    let pct = change * 100.0;
    format!("{:+.1}%", if pct.abs() < 0.05 { 0.0 } else { pct })
}

/// The mark a verdict puts after a change (`*`, `n.s.`, `sig. loss`), empty for the reference.
pub(crate) fn mark(v: Verdict) -> &'static str {
    match v {
        Verdict::Reference => "",
        Verdict::Gain => "*",
        Verdict::Loss => "sig. loss",
        Verdict::NotSignificant => "n.s.",
    }
}

/// The sentence under every paper table: what a cell holds and what its marks mean.
pub(crate) fn caption(rows: &[ResultRow], reference: &str) -> String {
    let (lo, hi) = seeds(rows);
    let seeds = if lo == hi { format!("{hi}") } else { format!("{lo}–{hi}") };
    let correction = match corrections(rows).as_slice() {
        [] => "no correction (the rows hold no comparison)".to_string(),
        names => {
            let cap = |n: &String| n.chars().take(1).flat_map(char::to_uppercase).chain(n.chars().skip(1)).collect::<String>();
            format!(
                "{}'s correction within each protocol and metric@k (the comparisons of one table column)",
                names.iter().map(cap).collect::<Vec<_>>().join(" / ")
            )
        }
    };
    format!(
        "Each cell: the mean over seeds ({seeds} per cell) and, in brackets, the relative change against the same row's \
         {reference} value. Bold: the best of each column. Significance: a paired bootstrap over test cases against the \
         same seed's {reference} cell, p adjusted by {correction}; * marks a gain with adjusted p < 0.05 in every seed, \
         n.s. a change that is not significant in every seed (or was not tested), sig. loss a significant loss in every \
         seed. Intervals are bootstrap 95% intervals over test cases."
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// One synthetic row: `p` is the adjusted p-value of its comparison (none for ID only).
    pub(crate) fn row(llm: &str, encoder: &str, variant: &str, seed: u64, protocol: &str, metric: &str, k: u32, value: f64, p: Option<f64>) -> ResultRow {
        let id = |v: &str| format!("{llm}/{encoder}/{v}/seed{seed}");
        let compared = p.is_some();
        ResultRow {
            cell: id(variant),
            llm: llm.into(),
            encoder: encoder.into(),
            variant: variant.into(),
            seed,
            protocol: protocol.into(),
            metric: metric.into(),
            k,
            value,
            ci: Some((value - 0.02, value + 0.02)),
            n_cases: 100,
            baseline: compared.then(|| id("ID only")),
            diff: None,
            diff_ci: None,
            p_value: p,
            p_adjusted: p,
            correction: if compared { "holm".into() } else { String::new() },
        }
    }

    /// Two seeds of `llm` × `encoder`: ID only at `id`, and each variant at its values per seed
    /// with its adjusted p-values per seed (diff = value − ID only).
    pub(crate) fn cell_rows(llm: &str, encoder: &str, protocol: &str, id: [f64; 2], variants: &[(&str, [f64; 2], [f64; 2])]) -> Vec<ResultRow> {
        let mut out = Vec::new();
        for s in 0..2 {
            out.push(row(llm, encoder, "ID only", s as u64, protocol, "recall", 10, id[s], None));
            for (v, values, ps) in variants {
                let mut r = row(llm, encoder, v, s as u64, protocol, "recall", 10, values[s], Some(ps[s]));
                r.diff = Some(values[s] - id[s]);
                out.push(r);
            }
        }
        out
    }

    fn grid() -> Vec<ResultRow> {
        let mut rows = cell_rows("qwen", "SASRec", FULL, [0.20, 0.22], &[("+A/L/M", [0.22, 0.24], [0.01, 0.02]), ("+A/L/M+CR", [0.25, 0.25], [0.01, 0.30])]);
        rows.extend(cell_rows("qwen", "GRU4Rec", FULL, [0.10, 0.10], &[("+A/L/M", [0.09, 0.09], [0.001, 0.001]), ("+A/L/M+CR", [0.30, 0.22], [0.04, 0.04])]));
        rows.push(row("-", "MostPop", "-", 0, FULL, "recall", 10, 0.12, None));
        rows
    }

    #[test]
    fn rows_are_llm_by_encoder_then_baselines_and_columns_the_variants_in_order() {
        let t = paper_table(&grid(), FULL, "recall", 10);
        assert_eq!(t.columns, ["ID only", "+A/L/M", "+A/L/M+CR"]);
        assert_eq!(t.reference, 0);
        let names: Vec<(&str, &str, bool)> = t.rows.iter().map(|r| (r.llm.as_str(), r.encoder.as_str(), r.baseline)).collect();
        assert_eq!(names, [("qwen", "SASRec", false), ("qwen", "GRU4Rec", false), ("-", "MostPop", true)]);
        // The baseline's one value sits in the ID-only column.
        assert_eq!(t.rows[2].cells[0].as_ref().unwrap().value, 0.12);
        assert!(t.rows[2].cells[1].is_none() && t.rows[2].cells[2].is_none());
    }

    #[test]
    fn cells_are_seed_means_with_their_change_against_id_only() {
        let t = paper_table(&grid(), FULL, "recall", 10);
        let sas = &t.rows[0].cells;
        let id = sas[0].as_ref().unwrap();
        assert!((id.value - 0.21).abs() < 1e-12 && id.change.is_none() && id.verdict == Verdict::Reference);
        let alm = sas[1].as_ref().unwrap();
        assert!((alm.value - 0.23).abs() < 1e-12);
        assert_eq!(percent(alm.change.unwrap()), "+9.5%");
        let gru = t.rows[1].cells[1].as_ref().unwrap();
        assert_eq!(percent(gru.change.unwrap()), "-10.0%");
    }

    #[test]
    fn a_gain_is_significant_only_in_every_seed_and_a_loss_is_named() {
        let t = paper_table(&grid(), FULL, "recall", 10);
        let v = |r: usize, c: usize| t.rows[r].cells[c].as_ref().unwrap().verdict;
        assert_eq!(v(0, 1), Verdict::Gain);
        assert_eq!(v(0, 2), Verdict::NotSignificant, "p = 0.30 in one seed");
        assert_eq!(v(1, 1), Verdict::Loss);
        assert_eq!(v(1, 2), Verdict::Gain);
        let mut rows = grid();
        rows.iter_mut().filter(|r| r.encoder == "GRU4Rec" && r.variant == "+A/L/M+CR" && r.seed == 1).for_each(|r| r.p_adjusted = None);
        assert_eq!(paper_table(&rows, FULL, "recall", 10).rows[1].cells[2].as_ref().unwrap().verdict, Verdict::NotSignificant, "untested in one seed");
    }

    #[test]
    fn the_best_of_each_column_is_marked_baselines_included() {
        let t = paper_table(&grid(), FULL, "recall", 10);
        let best: Vec<Vec<bool>> = t.rows.iter().map(|r| r.cells.iter().map(|c| c.as_ref().is_some_and(|c| c.best)).collect()).collect();
        assert_eq!(best, [vec![true, true, false], vec![false, false, true], vec![false, false, false]]);
        let mut rows = grid();
        rows.last_mut().unwrap().value = 0.5;
        let t = paper_table(&rows, FULL, "recall", 10);
        assert!(t.rows[2].cells[0].as_ref().unwrap().best && !t.rows[0].cells[0].as_ref().unwrap().best);
    }

    #[test]
    fn the_reference_is_the_column_other_cells_are_compared_with() {
        // ID only named otherwise and appearing second: still the reference, found through `baseline`.
        let mut rows = grid();
        for r in &mut rows {
            if r.variant == "ID only" {
                r.variant = "IDs".into();
            }
        }
        rows.rotate_left(1);
        let t = paper_table(&rows, FULL, "recall", 10);
        assert_eq!(t.columns[t.reference], "IDs");
        assert_ne!(t.reference, 0);
    }

    #[test]
    fn baselines_alone_make_a_one_column_table() {
        let rows = [row("-", "MostPop", "-", 0, FULL, "recall", 10, 0.1, None), row("-", "Random", "-", 0, FULL, "recall", 10, 0.01, None)];
        let t = paper_table(&rows, FULL, "recall", 10);
        assert_eq!(t.columns, ["value"]);
        assert_eq!(t.rows.iter().map(|r| r.cells.len()).collect::<Vec<_>>(), [1, 1]);
        assert!(t.rows[0].cells[0].as_ref().unwrap().best);
    }

    #[test]
    fn protocols_put_full_first_and_inflation_is_sampled_over_full() {
        let mut rows = cell_rows("qwen", "SASRec", "1+199", [0.60, 0.62], &[("+A/L/M", [0.7, 0.7], [0.01, 0.01])]);
        rows.extend(grid());
        assert_eq!(protocols(&rows), [FULL, "1+199"]);
        let pairs = full_vs_sampled(&rows, "1+199", "recall", 10);
        assert_eq!(pairs.len(), 2, "only the cells with both protocols");
        assert_eq!(pairs[0].label(), "qwen · SASRec · ID only");
        assert!((pairs[0].inflation().unwrap() - 0.61 / 0.21).abs() < 1e-12);
    }
}

/// The subsets beyond "all" that the report shows, with what each holds.
pub(crate) const SUBSETS: [(&str, &str); 2] =
    [("tail", "long-tail targets (the items holding the less-played half of training plays)"), ("cold", "cold-start targets (items never played in training)")];

/// One cell's value on a subset of test cases, with its paired comparison, if any.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SubsetLine {
    /// The cell's label (LLM · encoder · variant, or the baseline's name).
    pub label: String,
    /// Its variant (`-` for a baseline).
    pub series: String,
    /// Cases in the subset.
    pub n_cases: usize,
    /// The mean over the subset's cases, and its interval.
    pub value: f64,
    pub ci: Option<(f64, f64)>,
    /// The paired difference against the cell's ID-only cell, its interval and adjusted p.
    pub diff: Option<f64>,
    pub diff_ci: Option<(f64, f64)>,
    pub p_adjusted: Option<f64>,
}

impl SubsetLine {
    /// `*` for a significant gain, `sig. loss`, `n.s.`, or empty where nothing was compared.
    pub fn mark(&self) -> &'static str {
        match (self.diff, self.p_adjusted) {
            (Some(d), Some(p)) if p < ALPHA && d > 0.0 => mark(Verdict::Gain),
            (Some(d), Some(p)) if p < ALPHA && d < 0.0 => mark(Verdict::Loss),
            (Some(_), _) => mark(Verdict::NotSignificant),
            _ => mark(Verdict::Reference),
        }
    }
}

/// Every full-ranking cell's value on `subset` for metric@k, from the per-case comparisons, in
/// the order of `rows` (the paper table's rows, baselines last). Cells without per-case values
/// on that subset are left out.
pub(crate) fn subset_lines(rows: &[ResultRow], comparisons: &[crate::eval::compare::Row], subset: &str, metric: &str, k: u32) -> Vec<SubsetLine> {
    let mut cells: Vec<&ResultRow> = rows.iter().filter(|r| r.protocol == FULL && r.metric == metric && r.k == k).collect();
    cells.sort_by_key(|r| is_baseline(r));
    let (lo, hi) = seeds(rows);
    cells
        .into_iter()
        .filter_map(|r| {
            let c = comparisons
                .iter()
                .find(|c| c.model == r.cell && c.subset == subset && c.metric == metric && c.k == k && (c.baseline.is_none() || c.baseline == r.baseline))?;
            let seed = if lo == hi || is_baseline(r) { String::new() } else { format!(" (seed {})", r.seed) };
            Some(SubsetLine {
                label: label(&r.llm, &r.encoder, &r.variant) + &seed,
                series: if is_baseline(r) { r.encoder.clone() } else { r.variant.clone() },
                n_cases: c.n_cases,
                value: c.value,
                ci: c.ci,
                diff: c.diff,
                diff_ci: c.diff_ci,
                p_adjusted: c.p_holm,
            })
        })
        .collect()
}

/// Comparisons of a cell with a baseline other than its ID-only cell (the completion input: a
/// `+CR` cell against the same cell without it), full ranking: (cell label, baseline label, row).
pub(crate) fn other_comparisons<'a>(rows: &[ResultRow], comparisons: &'a [crate::eval::compare::Row]) -> Vec<(String, String, &'a crate::eval::compare::Row)> {
    let label_of = |cell: &str| rows.iter().find(|r| r.cell == cell).map(|r| label(&r.llm, &r.encoder, &r.variant));
    comparisons
        .iter()
        .filter_map(|c| {
            let base = c.baseline.as_deref()?;
            let r = rows.iter().find(|r| r.protocol == FULL && r.cell == c.model && r.metric == c.metric && r.k == c.k)?;
            (r.baseline.as_deref() != Some(base)).then(|| (label(&r.llm, &r.encoder, &r.variant), label_of(base).unwrap_or_else(|| base.to_string()), c))
        })
        .collect()
}
