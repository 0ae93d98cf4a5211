//! The MGPHot annotation schema: 58 genes in 7 groups, each rated 0–5 by an annotator and stored
//! divided by 5, in [0, 1]. The reference repository's gene names are not available offline, so
//! encore ships its own names and descriptions in `configs/mgphot/genes.tsv`, in the seven groups
//! and index ranges of the schema (vocals 0–6, harmony 7–8, rhythm 9–18, instrumentation 19–34,
//! lyrics 35–42, sonority 43–48, composition 49–57).

/// One gene of the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gene {
    /// Position in the 58-vector.
    pub index: usize,
    /// Its group.
    pub group: &'static str,
    /// A short snake_case name.
    pub name: &'static str,
    /// What an annotator rates.
    pub description: &'static str,
}

/// The seven groups in order, with their index ranges.
pub const GROUPS: [(&str, std::ops::Range<usize>); 7] =
    [("vocals", 0..7), ("harmony", 7..9), ("rhythm", 9..19), ("instrumentation", 19..35), ("lyrics", 35..43), ("sonority", 43..49), ("composition", 49..58)];

/// Number of genes.
pub const N_GENES: usize = 58;

const TABLE: &str = include_str!("../../../configs/mgphot/genes.tsv");

/// The 58 genes, from `configs/mgphot/genes.tsv` (checked by a test to match [`GROUPS`]).
pub fn genes() -> Vec<Gene> {
    TABLE
        .lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<&'static str> = l.splitn(4, '\t').collect();
            Gene { index: f[0].parse().expect("gene table index"), group: f[1], name: f[2], description: f[3] }
        })
        .collect()
}

/// The usual three-way reading of a gene value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bin {
    /// Below 0.33.
    Low,
    /// From 0.33 to below 0.66.
    Moderate,
    /// 0.66 and above.
    High,
}

/// Bins a gene value: Low < 0.33 ≤ Moderate < 0.66 ≤ High.
pub fn bin(value: f32) -> Bin {
    if value < 0.33 {
        Bin::Low
    } else if value < 0.66 {
        Bin::Moderate
    } else {
        Bin::High
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_58_genes_in_the_schemas_groups() {
        let g = genes();
        assert_eq!(g.len(), N_GENES);
        for (i, gene) in g.iter().enumerate() {
            assert_eq!(gene.index, i);
            let (group, _) = GROUPS.iter().find(|(_, r)| r.contains(&i)).unwrap();
            assert_eq!(gene.group, *group, "gene {i} {}", gene.name);
            assert!(!gene.name.is_empty() && !gene.description.is_empty());
        }
        let mut names: Vec<_> = g.iter().map(|g| g.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), N_GENES, "names are unique");
    }

    #[test]
    fn bins_follow_the_thresholds() {
        assert_eq!(bin(0.0), Bin::Low);
        assert_eq!(bin(0.329), Bin::Low);
        assert_eq!(bin(0.33), Bin::Moderate);
        assert_eq!(bin(0.659), Bin::Moderate);
        assert_eq!(bin(0.66), Bin::High);
        assert_eq!(bin(1.0), Bin::High);
    }
}
