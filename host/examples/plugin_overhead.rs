//! Benchmark: what running metrics as sandboxed Wasm plugins costs.
//!
//! 1. Full-ranking evaluation of U users × N items (dot-product scores, seen items masked, top-K),
//!    with the 7 built-in metric plugins at K = 5, 10, 20, against the same pipeline with the same
//!    metrics in plain Rust (`encore::eval::native`). The headline figure comes from one pass in
//!    which every batch of rankings goes to both sinks, each timed: shared scoring/top-K time S,
//!    native metrics N, plugin metrics P, ratio (S + P) / (S + N). Load on a shared machine then
//!    hits both sides alike. Separate alternating runs are reported too. Values must agree to 1e-9.
//! 2. The metric step alone, on pre-computed rankings.
//! 3. `list<f32>` throughput across the component boundary, host → guest and back.
//!
//!     bench/plugin_overhead/run.sh          (builds in release, then runs this)
use anyhow::{ensure, Context};
use candle_core::Device;
use encore::eval::{full_ranking, native, DotScorer, EvalUser, MetricSuite, RankOptions, RankingSink};
use encore::plugins::extractor::ExtractorInstance;
use encore::plugins::metric::Ranking;
use encore::plugins::{discover, ParamValue, PluginKind, Runtime, SandboxConfig, Track};
use rand::{Rng, SeedableRng};
use std::time::Instant;

const METRICS: [&str; 7] = ["recall", "ndcg", "mrr", "hit", "precision", "map", "coverage"];
const KS: [u32; 3] = [5, 10, 20];

/// The same seven metrics in plain Rust, keeping per-user values as the plugin path does.
struct NativeSink {
    n_items: u32,
    per_user: Vec<Vec<Vec<f64>>>,
    coverage: Vec<native::Coverage>,
    rankings: Option<Vec<Ranking>>,
}

impl NativeSink {
    fn new(n_items: u32, keep: bool) -> Self {
        NativeSink {
            n_items,
            per_user: vec![vec![Vec::new(); KS.len()]; 6],
            coverage: KS.iter().map(|_| native::Coverage::new(n_items as usize)).collect(),
            rankings: keep.then(Vec::new),
        }
    }
    fn values(&self) -> Vec<f64> {
        let mut out = Vec::new();
        for m in 0..7 {
            for ki in 0..KS.len() {
                out.push(if m == 6 {
                    self.coverage[ki].value()
                } else {
                    let v = &self.per_user[m][ki];
                    v.iter().sum::<f64>() / v.len().max(1) as f64
                });
            }
        }
        out
    }
}

impl RankingSink for NativeSink {
    fn n_items(&self) -> u32 {
        self.n_items
    }
    fn max_k(&self) -> u32 {
        20
    }
    fn add(&mut self, batch: &[Ranking]) -> anyhow::Result<()> {
        for r in batch {
            for (ki, &k) in KS.iter().enumerate() {
                let k = k as usize;
                let top = &r.ranked[..r.ranked.len().min(k)];
                let t = &r.targets;
                let v = [
                    native::recall(top, t),
                    native::ndcg(top, t, k),
                    native::mrr(top, t),
                    native::hit(top, t),
                    native::precision(top, t, k),
                    native::map(top, t, k),
                ];
                for (m, x) in v.into_iter().enumerate() {
                    self.per_user[m][ki].push(x);
                }
                self.coverage[ki].add(top);
            }
        }
        if let Some(keep) = &mut self.rankings {
            keep.extend_from_slice(batch);
        }
        Ok(())
    }
}

/// Sends every batch to both sinks and times each.
struct Both {
    native: NativeSink,
    plugins: MetricSuite,
    native_s: f64,
    plugin_s: f64,
}

impl RankingSink for Both {
    fn n_items(&self) -> u32 {
        self.native.n_items
    }
    fn max_k(&self) -> u32 {
        20
    }
    fn add(&mut self, batch: &[Ranking]) -> anyhow::Result<()> {
        let t = Instant::now();
        self.native.add(batch)?;
        self.native_s += t.elapsed().as_secs_f64();
        let t = Instant::now();
        self.plugins.add(batch)?;
        self.plugin_s += t.elapsed().as_secs_f64();
        Ok(())
    }
}

fn plugin_values(report: &encore::eval::EvalReport) -> Vec<f64> {
    METRICS.iter().flat_map(|m| KS.iter().map(move |&k| report.get(m, k).unwrap())).collect()
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    let (n_users, n_items, dim, reps) = (arg("--users", 100_000), arg("--items", 20_000), arg("--dim", 64), arg("--reps", 2));
    let runtime = Runtime::new(SandboxConfig::default(), encore::plugins::runtime::default_cache_dir())?;
    let dirs = discover::search_path(&[]);
    let plugins = METRICS.iter().map(|m| discover::find(&runtime, &dirs, m, PluginKind::Metric)).collect::<anyhow::Result<Vec<_>>>()?;

    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let users: Vec<f32> = (0..n_users * dim).map(|_| rng.random::<f32>() - 0.5).collect();
    let items: Vec<f32> = (0..n_items * dim).map(|_| rng.random::<f32>() - 0.5).collect();
    let eval_users: Vec<EvalUser> = (0..n_users)
        .map(|_| EvalUser {
            seen: (0..5).map(|_| rng.random_range(0..n_items as u32)).collect(),
            targets: (0..rng.random_range(1..4)).map(|_| rng.random_range(0..n_items as u32)).collect(),
        })
        .collect();
    let scorer = DotScorer::from_vecs(users, items, dim, &Device::Cpu)?;
    let opts = RankOptions { batch_users: 1024, mask_seen: true };
    println!("full ranking: {n_users} users × {n_items} items, dim {dim}, metrics {METRICS:?} at K = {KS:?}");

    let mut both =
        Both { native: NativeSink::new(n_items as u32, false), plugins: MetricSuite::new(&plugins, &KS, n_items as u32)?, native_s: 0.0, plugin_s: 0.0 };
    let t = Instant::now();
    full_ranking(&scorer, &eval_users, &mut both, opts)?;
    let total = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let report = both.plugins.finish(None)?;
    let finish_s = t.elapsed().as_secs_f64();
    for (a, b) in both.native.values().iter().zip(plugin_values(&report)) {
        ensure!((a - b).abs() < 1e-9, "native {a} and plugin {b} disagree");
    }
    let shared = total - both.native_s - both.plugin_s;
    let (n, p) = (shared + both.native_s, shared + both.plugin_s + finish_s);
    println!("one pass, both sinks: scoring + top-K {shared:.3} s, native metrics {:.3} s, plugin metrics {:.3} s", both.native_s, both.plugin_s + finish_s);
    println!("end to end: native {n:.3} s, plugins {p:.3} s, ratio {:.4} (overhead {:+.2}%)", p / n, (p / n - 1.0) * 100.0);

    let (mut best_native, mut best_plugin) = (f64::MAX, f64::MAX);
    let mut rankings = Vec::new();
    let (mut native_vals, mut plugin_vals) = (Vec::new(), Vec::new());
    for rep in 0..reps {
        let mut sink = NativeSink::new(n_items as u32, rep == 0);
        let t = Instant::now();
        full_ranking(&scorer, &eval_users, &mut sink, opts)?;
        let s = t.elapsed().as_secs_f64();
        best_native = best_native.min(s);
        native_vals = sink.values();
        if let Some(r) = sink.rankings.take() {
            rankings = r;
        }

        let mut suite = MetricSuite::new(&plugins, &KS, n_items as u32)?;
        let t = Instant::now();
        full_ranking(&scorer, &eval_users, &mut suite, opts)?;
        let report = suite.finish(None)?;
        let p = t.elapsed().as_secs_f64();
        best_plugin = best_plugin.min(p);
        plugin_vals = plugin_values(&report);
        println!("  rep {rep}: native {s:.2} s, plugins {p:.2} s");
    }
    for (a, b) in native_vals.iter().zip(&plugin_vals) {
        ensure!((a - b).abs() < 1e-9, "native {a} and plugin {b} disagree");
    }
    println!(
        "separate runs (best of {reps}, noisier): native {best_native:.3} s, plugins {best_plugin:.3} s, ratio {:.4} (overhead {:+.2}%)",
        best_plugin / best_native,
        (best_plugin / best_native - 1.0) * 100.0
    );

    // The metric step alone, on the same rankings.
    let (mut mn, mut mp) = (f64::MAX, f64::MAX);
    for _ in 0..3 {
        let mut sink = NativeSink::new(n_items as u32, false);
        let t = Instant::now();
        for c in rankings.chunks(1024) {
            sink.add(c)?;
        }
        mn = mn.min(t.elapsed().as_secs_f64());
        let mut suite = MetricSuite::new(&plugins, &KS, n_items as u32)?;
        let t = Instant::now();
        for c in rankings.chunks(1024) {
            suite.add(c)?;
        }
        suite.finish(None)?;
        mp = mp.min(t.elapsed().as_secs_f64());
    }
    println!(
        "metrics alone ({} users × 7 metrics × 3 cutoffs): native {:.1} ms, plugins {:.1} ms, ratio {:.2}, {:.0} ns per plugin call per user",
        rankings.len(),
        mn * 1e3,
        mp * 1e3,
        mp / mn,
        mp * 1e9 / (rankings.len() * 7) as f64
    );

    // list<f32> across the boundary.
    let echo = discover::find(&runtime, &dirs, "echo", PluginKind::Extractor).context("the bench plugin `echo` (run `cargo plugins`)")?;
    let n = 16usize;
    let tracks: Vec<Track> = (0..n as u32)
        .map(|i| Track {
            index: i,
            track_id: format!("t{i}"),
            artist: String::new(),
            title: String::new(),
            duration_s: None,
            tags: vec![],
            lyrics: None,
            mgphot: None,
        })
        .collect();
    let audio: Vec<Option<Vec<f32>>> = (0..n).map(|i| Some(vec![i as f32; 65536])).collect();
    let bytes = (n * 65536 * 4) as f64;
    for echo_back in [false, true] {
        let mut x = ExtractorInstance::new(&echo, &[("echo".into(), ParamValue::Boolean(echo_back))])?;
        let mut best = f64::MAX;
        for _ in 0..30 {
            let t = Instant::now();
            let out = x.extract(&tracks, &audio)?;
            best = best.min(t.elapsed().as_secs_f64());
            ensure!(out.len() == n);
        }
        let moved = if echo_back { 2.0 * bytes } else { bytes };
        println!(
            "list<f32> {}: {:.1} MiB per call in {:.2} ms = {:.2} GB/s",
            if echo_back { "in and back out" } else { "host → guest" },
            moved / (1 << 20) as f64,
            best * 1e3,
            moved / best / 1e9
        );
    }
    Ok(())
}
