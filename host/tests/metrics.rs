//! The built-in metric plugins against hand-computed values (RecBole's definitions), to 1e-9.
mod common;

use candle_core::Device;
use encore::eval::{bootstrap::Bootstrap, full_ranking, native, DotScorer, EvalUser, MetricSuite, RankOptions};
use encore::plugins::metric::Ranking;

/// Four users over a catalog of 10 items:
/// - A: hits at ranks 2 and 4, two targets;
/// - B: no hit, and a list (3 items) shorter than K;
/// - C: six targets, more than K; hits at ranks 1, 3, 4, 5;
/// - D: one item ranked, and it is the target.
fn fixture() -> Vec<Ranking> {
    vec![
        Ranking { ranked: vec![3, 1, 4, 5, 8], targets: vec![1, 5] },
        Ranking { ranked: vec![0, 2, 6], targets: vec![7] },
        Ranking { ranked: vec![8, 2, 7, 0, 1], targets: vec![0, 1, 6, 7, 8, 9] },
        Ranking { ranked: vec![6], targets: vec![6] },
    ]
}

fn g(rank: f64) -> f64 {
    1.0 / (rank + 1.0).log2()
}

/// Per-user values written out by hand, at K = 3 and K = 5 (as hits / targets, hence `2.0 / 2.0`).
#[allow(clippy::eq_op)]
fn expected(metric: &str, k: u32) -> [f64; 4] {
    match (metric, k) {
        ("recall", 3) => [1.0 / 2.0, 0.0, 2.0 / 6.0, 1.0],
        ("recall", 5) => [2.0 / 2.0, 0.0, 4.0 / 6.0, 1.0],
        ("precision", 3) => [1.0 / 3.0, 0.0, 2.0 / 3.0, 1.0 / 3.0],
        ("precision", 5) => [2.0 / 5.0, 0.0, 4.0 / 5.0, 1.0 / 5.0],
        ("hit", _) => [1.0, 0.0, 1.0, 1.0],
        ("mrr", _) => [1.0 / 2.0, 0.0, 1.0, 1.0],
        ("ndcg", 3) => [g(2.0) / (g(1.0) + g(2.0)), 0.0, (g(1.0) + g(3.0)) / (g(1.0) + g(2.0) + g(3.0)), 1.0],
        ("ndcg", 5) => [(g(2.0) + g(4.0)) / (g(1.0) + g(2.0)), 0.0, (g(1.0) + g(3.0) + g(4.0) + g(5.0)) / (g(1.0) + g(2.0) + g(3.0) + g(4.0) + g(5.0)), 1.0],
        ("map", 3) => [(1.0 / 2.0) / 2.0, 0.0, (1.0 + 2.0 / 3.0) / 3.0, 1.0],
        ("map", 5) => [(1.0 / 2.0 + 2.0 / 4.0) / 2.0, 0.0, (1.0 + 2.0 / 3.0 + 3.0 / 4.0 + 4.0 / 5.0) / 5.0, 1.0],
        _ => unreachable!(),
    }
}

#[test]
fn per_user_metrics_equal_hand_computed_values() {
    for metric in ["recall", "precision", "hit", "mrr", "ndcg", "map"] {
        let plugin = common::load(metric);
        let mut suite = MetricSuite::new(&[plugin], &[3, 5], 10).unwrap();
        suite.add(&fixture()).unwrap();
        for k in [3, 5] {
            let want = expected(metric, k);
            let got = suite.per_user(metric, k).unwrap();
            assert_eq!(got.len(), 4, "{metric}@{k}");
            for (u, (g, w)) in got.iter().zip(want).enumerate() {
                assert!((g - w).abs() < 1e-9, "{metric}@{k} user {u}: plugin {g}, by hand {w}");
            }
        }
        let report = suite.finish(None).unwrap();
        for k in [3, 5] {
            let mean = expected(metric, k).iter().sum::<f64>() / 4.0;
            let got = report.get(metric, k).unwrap();
            assert!((got - mean).abs() < 1e-9, "{metric}@{k}: plugin {got}, by hand {mean}");
        }
    }
}

#[test]
fn coverage_counts_distinct_items_in_anyones_top_k() {
    let mut suite = MetricSuite::new(&[common::load("coverage")], &[3, 5], 10).unwrap();
    suite.add(&fixture()).unwrap();
    assert!(suite.per_user("coverage", 3).unwrap().is_empty(), "coverage has no per-user value");
    let report = suite.finish(Some(Bootstrap::default())).unwrap();
    // @3: {3,1,4} ∪ {0,2,6} ∪ {8,2,7} ∪ {6} = 8 items; @5 adds 5: 9 items (9 is never ranked).
    assert!((report.get("coverage", 3).unwrap() - 0.8).abs() < 1e-9);
    assert!((report.get("coverage", 5).unwrap() - 0.9).abs() < 1e-9);
    assert!(report.results.iter().all(|r| r.ci.is_none()), "no interval for a global metric");
}

#[test]
fn native_metrics_agree_with_the_plugins() {
    for k in [3usize, 5] {
        for (u, r) in fixture().iter().enumerate() {
            let top = &r.ranked[..r.ranked.len().min(k)];
            let t = &r.targets;
            let pairs = [
                ("recall", native::recall(top, t)),
                ("precision", native::precision(top, t, k)),
                ("hit", native::hit(top, t)),
                ("mrr", native::mrr(top, t)),
                ("ndcg", native::ndcg(top, t, k)),
                ("map", native::map(top, t, k)),
            ];
            for (m, v) in pairs {
                let w = expected(m, k as u32)[u];
                assert!((v - w).abs() < 1e-9, "native {m}@{k} user {u}: {v} vs {w}");
            }
        }
    }
}

#[test]
fn full_ranking_breaks_ties_by_item_index_and_masks_seen_items() {
    // One user with vector [1]; items score 1, 2, 2, 0, 2: items 1, 2 and 4 tie.
    let scorer = DotScorer::from_vecs(vec![1.0], vec![1.0, 2.0, 2.0, 0.0, 2.0], 1, &Device::Cpu).unwrap();
    let user = EvalUser { seen: vec![1], targets: vec![4] };
    let run = |mask_seen: bool| {
        let mut suite = MetricSuite::new(&[common::load("recall")], &[1, 2, 3], 5).unwrap();
        let opts = RankOptions { batch_users: 1, mask_seen };
        full_ranking(&scorer, std::slice::from_ref(&user), &mut suite, opts).unwrap();
        let r = suite.finish(None).unwrap();
        [r.get("recall", 1).unwrap(), r.get("recall", 2).unwrap(), r.get("recall", 3).unwrap()]
    };
    // Unmasked ranking: 1, 2, 4 (ties by index), so item 4 is third.
    assert_eq!(run(false), [0.0, 0.0, 1.0]);
    // Masking the seen item 1 gives 2, 4, 0.
    assert_eq!(run(true), [0.0, 1.0, 1.0]);
}

#[test]
fn full_ranking_matches_native_metrics_on_random_scores() {
    let (n_users, n_items, dim) = (300, 500, 8);
    let mut x = 1u64;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Small integers: every dot product is exact in f32 whatever the summation order, and
        // ties are frequent, so the tie rule is exercised too.
        (x % 7) as f32 - 3.0
    };
    let users: Vec<f32> = (0..n_users * dim).map(|_| rnd()).collect();
    let items: Vec<f32> = (0..n_items * dim).map(|_| rnd()).collect();
    let eval_users: Vec<EvalUser> = (0..n_users)
        .map(|u| EvalUser {
            seen: (0..5).map(|j| ((u * 7 + j * 13) % n_items) as u32).collect(),
            targets: (0..1 + u % 3).map(|j| ((u * 31 + j * 17 + 3) % n_items) as u32).collect(),
        })
        .collect();
    let scorer = DotScorer::from_vecs(users.clone(), items.clone(), dim, &Device::Cpu).unwrap();
    let names = ["recall", "ndcg", "mrr", "hit", "precision", "map"];
    let plugins: Vec<_> = names.iter().map(|n| common::load(n)).collect();
    let mut suite = MetricSuite::new(&plugins, &[10, 20], n_items as u32).unwrap();
    full_ranking(&scorer, &eval_users, &mut suite, RankOptions { batch_users: 64, mask_seen: true }).unwrap();
    let report = suite.finish(None).unwrap();

    // The same computation by a plain sort.
    for k in [10usize, 20] {
        let mut sums = [0.0f64; 6];
        for (u, eu) in eval_users.iter().enumerate() {
            let s: Vec<f32> = (0..n_items).map(|i| (0..dim).map(|d| users[u * dim + d] * items[i * dim + d]).sum()).collect();
            let mut idx: Vec<u32> = (0..n_items as u32).filter(|i| !eu.seen.contains(i)).collect();
            idx.sort_by(|&a, &b| s[b as usize].total_cmp(&s[a as usize]).then(a.cmp(&b)));
            let top = &idx[..k];
            let mut t = eu.targets.clone();
            t.sort();
            t.dedup();
            let v = [
                native::recall(top, &t),
                native::ndcg(top, &t, k),
                native::mrr(top, &t),
                native::hit(top, &t),
                native::precision(top, &t, k),
                native::map(top, &t, k),
            ];
            for j in 0..6 {
                sums[j] += v[j];
            }
        }
        for (j, name) in names.iter().enumerate() {
            let want = sums[j] / n_users as f64;
            let got = report.get(name, k as u32).unwrap();
            assert!((got - want).abs() < 1e-9, "{name}@{k}: {got} vs {want}");
        }
    }
}

/// A scorer that batches users in reverse order and with a bias, to show that batching, bucketing
/// and thread count change nothing: the per-user values come back in the evaluation set's order.
struct Reversed {
    inner: DotScorer,
    bias: candle_core::Tensor,
}

impl encore::eval::Scorer for Reversed {
    fn item_table(&self) -> &candle_core::Tensor {
        self.inner.item_table()
    }
    fn item_bias(&self) -> Option<&candle_core::Tensor> {
        Some(&self.bias)
    }
    fn user_vectors(&self, users: &[usize]) -> anyhow::Result<candle_core::Tensor> {
        self.inner.user_vectors(users)
    }
    fn batch_key(&self, user: usize) -> usize {
        usize::MAX - user
    }
}

#[test]
fn rankings_do_not_depend_on_batching_and_come_back_in_order() {
    use encore::eval::Scorer;
    let (n_users, n_items, dim) = (97, 300, 4);
    let users: Vec<f32> = (0..n_users * dim).map(|i| ((i * 37) % 11) as f32 - 5.0).collect();
    let items: Vec<f32> = (0..n_items * dim).map(|i| ((i * 53) % 13) as f32 - 6.0).collect();
    let bias: Vec<f32> = (0..n_items).map(|i| (i % 5) as f32).collect();
    let eval_users: Vec<EvalUser> = (0..n_users)
        .map(|u| EvalUser {
            seen: vec![(u % n_items) as u32, ((u * 3) % n_items) as u32],
            targets: if u % 10 == 4 { vec![] } else { vec![((u * 7) % n_items) as u32] },
        })
        .collect();
    let scorer = || Reversed {
        inner: DotScorer::from_vecs(users.clone(), items.clone(), dim, &Device::Cpu).unwrap(),
        bias: candle_core::Tensor::new(bias.as_slice(), &Device::Cpu).unwrap(),
    };
    let run = |batch_users: usize, reversed: bool| {
        let mut suite = MetricSuite::new(&[common::load("ndcg"), common::load("mrr")], &[5, 20], n_items as u32).unwrap();
        let opts = RankOptions { batch_users, mask_seen: true };
        if reversed {
            full_ranking(&scorer(), &eval_users, &mut suite, opts).unwrap();
        } else {
            // The same scores without the reversed batching: the bias folded into a plain scorer
            // by one more dimension (user 1 · item bias).
            let u: Vec<f32> = users.chunks(dim).flat_map(|r| r.iter().copied().chain([1.0])).collect();
            let it: Vec<f32> = items.chunks(dim).zip(&bias).flat_map(|(r, &b)| r.iter().copied().chain([b])).collect();
            let plain = DotScorer::from_vecs(u, it, dim + 1, &Device::Cpu).unwrap();
            assert!(plain.item_bias().is_none());
            full_ranking(&plain, &eval_users, &mut suite, opts).unwrap();
        }
        (suite.per_user("ndcg", 5).unwrap().to_vec(), suite.per_user("mrr", 20).unwrap().to_vec())
    };
    let want = run(1000, false);
    assert_eq!(want.0.len(), n_users - n_users / 10 - 1, "users without targets are skipped");
    assert!(want.0.iter().any(|&v| v > 0.0) && want.0.contains(&0.0));
    for batch in [1, 2, 7, 64, 1000] {
        assert_eq!(run(batch, true), want, "batch of {batch}, reversed");
        assert_eq!(run(batch, false), want, "batch of {batch}");
    }
}

#[test]
fn a_nan_score_names_the_user_and_item() {
    let scorer = DotScorer::from_vecs(vec![1.0, 1.0, f32::NAN], vec![1.0, 2.0, 3.0], 1, &Device::Cpu).unwrap();
    let users = vec![EvalUser { seen: vec![], targets: vec![0] }; 3];
    let mut suite = MetricSuite::new(&[common::load("recall")], &[1], 3).unwrap();
    let err = full_ranking(&scorer, &users, &mut suite, RankOptions::default()).unwrap_err().to_string();
    assert!(err.contains("item 0 as NaN for user 2"), "{err}");
}
