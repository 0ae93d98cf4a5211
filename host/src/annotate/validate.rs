//! `encore annotate validate`: agreement of annotations with a reference, per gene and per group,
//! over the tracks both files hold (by track id), as the paper validates against human MGPHot
//! values.
//!
//! - **Spearman ρ** per gene: Pearson correlation of the average ranks (ties share their mean
//!   rank) of the two value columns. It is undefined (NaN, shown as `n/a`) when either side is
//!   constant, e.g. a model that rates a gene the same for every track. A group's ρ is the mean
//!   of its genes' defined ρ; `genes_with_rho` says how many there were.
//! - **MAE** on the [0, 1] scale (ratings divided by 5): the mean absolute difference over
//!   tracks; a group's MAE is the mean over all its (track, gene) cells.
use crate::features::mgphot::{genes, GROUPS, N_GENES};
use arrow_array::{ArrayRef, Float64Array, StringArray, UInt32Array};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// One row of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// `gene`, `group` or `all`.
    pub level: &'static str,
    /// Gene or group name (`all` for the whole).
    pub name: String,
    /// The gene's group (the group itself for group rows).
    pub group: String,
    /// Tracks compared.
    pub n: usize,
    /// Spearman ρ (NaN when undefined).
    pub rho: f64,
    /// Genes whose ρ is defined (1 or 0 for gene rows).
    pub genes_with_rho: usize,
    /// Mean absolute error on the [0, 1] scale.
    pub mae: f64,
}

/// Average ranks (1-based), ties sharing their mean rank.
pub fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let mean = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            r[k] = mean;
        }
        i = j + 1;
    }
    r
}

/// Spearman's ρ with tie correction; NaN when fewer than two values or either side is constant.
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    if a.len() < 2 || a.len() != b.len() {
        return f64::NAN;
    }
    let (ra, rb) = (ranks(a), ranks(b));
    let n = ra.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in ra.iter().zip(&rb) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    if saa == 0.0 || sbb == 0.0 {
        f64::NAN
    } else {
        sab / (saa * sbb).sqrt()
    }
}

/// The report for `annotated` against `reference` (both track id → 58 values in [0, 1]).
pub fn compare(annotated: &HashMap<String, Vec<f32>>, reference: &HashMap<String, Vec<f32>>) -> anyhow::Result<Vec<Row>> {
    let mut ids: Vec<&String> = annotated.keys().filter(|k| reference.contains_key(*k)).collect();
    ids.sort();
    if ids.is_empty() {
        anyhow::bail!("no track is in both files (annotated {} tracks, reference {}); are they from the same dataset?", annotated.len(), reference.len());
    }
    let col = |m: &HashMap<String, Vec<f32>>, g: usize| -> Vec<f64> { ids.iter().map(|id| m[*id][g] as f64).collect() };
    let n = ids.len();
    let mut rows = Vec::new();
    let mut per_gene = Vec::with_capacity(N_GENES);
    for g in genes() {
        let (a, r) = (col(annotated, g.index), col(reference, g.index));
        let rho = spearman(&a, &r);
        let mae = a.iter().zip(&r).map(|(x, y)| (x - y).abs()).sum::<f64>() / n as f64;
        per_gene.push((rho, mae));
        rows.push(Row { level: "gene", name: g.name.into(), group: g.group.into(), n, rho, genes_with_rho: usize::from(!rho.is_nan()), mae });
    }
    let summary = |level: &'static str, name: &str, range: std::ops::Range<usize>| {
        let defined: Vec<f64> = per_gene[range.clone()].iter().map(|p| p.0).filter(|r| !r.is_nan()).collect();
        let rho = if defined.is_empty() { f64::NAN } else { defined.iter().sum::<f64>() / defined.len() as f64 };
        let mae = per_gene[range.clone()].iter().map(|p| p.1).sum::<f64>() / range.len() as f64;
        Row { level, name: name.into(), group: name.into(), n, rho, genes_with_rho: defined.len(), mae }
    };
    for (name, range) in GROUPS.iter() {
        rows.push(summary("group", name, range.clone()));
    }
    rows.push(summary("all", "all", 0..N_GENES));
    Ok(rows)
}

fn fmt_rho(r: f64) -> String {
    if r.is_nan() {
        "n/a".into()
    } else {
        format!("{r:+.3}")
    }
}

/// The report as a text table: the groups and the whole first, then every gene.
pub fn table(rows: &[Row]) -> String {
    let mut s = format!("{:<16} {:>6} {:>8} {:>7} {:>6}\n", "group", "tracks", "rho", "genes", "MAE");
    for r in rows.iter().filter(|r| r.level != "gene") {
        s.push_str(&format!(
            "{:<16} {:>6} {:>8} {:>4}/{:<2} {:>6.3}\n",
            r.name,
            r.n,
            fmt_rho(r.rho),
            r.genes_with_rho,
            if r.level == "all" { N_GENES } else { rows.iter().filter(|g| g.level == "gene" && g.group == r.name).count() },
            r.mae
        ));
    }
    s.push_str(&format!("\n{:<26} {:<16} {:>8} {:>6}\n", "gene", "group", "rho", "MAE"));
    for r in rows.iter().filter(|r| r.level == "gene") {
        s.push_str(&format!("{:<26} {:<16} {:>8} {:>6.3}\n", r.name, r.group, fmt_rho(r.rho), r.mae));
    }
    s
}

/// Writes the report: TSV when the file name ends in `.tsv`, else Parquet (`level`, `name`,
/// `group` utf8, `n` uint32, `spearman` f64 (null when undefined), `genes_with_rho` uint32,
/// `mae` f64). Atomic either way.
pub fn write(path: &Path, rows: &[Row]) -> anyhow::Result<()> {
    if path.extension().is_some_and(|e| e == "tsv") {
        return crate::io::write_atomic(path, |w| {
            use std::io::Write;
            writeln!(w, "level\tname\tgroup\tn\tspearman\tgenes_with_rho\tmae")?;
            for r in rows {
                let rho = if r.rho.is_nan() { String::new() } else { format!("{}", r.rho) };
                writeln!(w, "{}\t{}\t{}\t{}\t{rho}\t{}\t{}", r.level, r.name, r.group, r.n, r.genes_with_rho, r.mae)?;
            }
            Ok(())
        });
    }
    let strs = |f: &dyn Fn(&Row) -> String| -> ArrayRef { Arc::new(StringArray::from_iter_values(rows.iter().map(f))) };
    let cols: Vec<(&str, ArrayRef)> = vec![
        ("level", strs(&|r| r.level.to_string())),
        ("name", strs(&|r| r.name.clone())),
        ("group", strs(&|r| r.group.clone())),
        ("n", Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.n as u32)))),
        ("spearman", Arc::new(Float64Array::from_iter(rows.iter().map(|r| (!r.rho.is_nan()).then_some(r.rho))))),
        ("genes_with_rho", Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.genes_with_rho as u32)))),
        ("mae", Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.mae)))),
    ];
    crate::data::schema::write(path, cols, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_matches_hand_computed_values() {
        assert!((spearman(&[1.0, 2.0, 3.0, 4.0], &[10.0, 20.0, 30.0, 40.0]) - 1.0).abs() < 1e-12);
        assert!((spearman(&[1.0, 2.0, 3.0, 4.0], &[4.0, 3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        // Ties: ranks [1.5, 1.5, 3] and [1, 2, 3] give ρ = 0.866 (scipy.stats.spearmanr).
        assert!((spearman(&[1.0, 1.0, 2.0], &[1.0, 2.0, 3.0]) - 0.8660254037844387).abs() < 1e-12);
        assert!(spearman(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]).is_nan());
        assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
    }

    #[test]
    fn groups_average_genes_and_skip_undefined_rho() {
        let mk = |f: &dyn Fn(usize, usize) -> f32| -> HashMap<String, Vec<f32>> {
            (0..5).map(|t| (format!("t{t}"), (0..N_GENES).map(|g| f(t, g)).collect())).collect()
        };
        let reference = mk(&|t, _| t as f32 / 5.0);
        // Gene 0 is constant (ρ undefined); the others follow the reference exactly but 0.2 higher.
        let annotated = mk(&|t, g| if g == 0 { 0.4 } else { (t as f32 + 1.0) / 5.0 });
        let rows = compare(&annotated, &reference).unwrap();
        let vocals = rows.iter().find(|r| r.level == "group" && r.name == "vocals").unwrap();
        assert_eq!((vocals.genes_with_rho, vocals.n), (6, 5));
        assert!((vocals.rho - 1.0).abs() < 1e-9);
        let all = rows.last().unwrap();
        assert_eq!(all.level, "all");
        assert!((all.mae - 0.2).abs() < 0.01, "{}", all.mae);
        assert!(table(&rows).contains("n/a"));
    }
}
