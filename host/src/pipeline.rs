//! The pipeline's stages, one function each, shared by `encore run` and `encore grid`: data →
//! features → fusion plans → ID encoder → E4SRec → evaluation. Each stage reuses what an earlier
//! process finished with the same inputs (a sealed manifest or checkpoint), continues what a
//! killed one left, and sets aside what another config left.
use crate::data::command::{prepare_into, Prepared};
use crate::data::config::DataConfig;
use crate::eval::compare::PerCase;
use crate::eval::{bootstrap::Bootstrap, full_ranking, EvalReport, MetricSuite, RankOptions, Scorer};
use crate::models::FusionSpec;
use crate::plugins::{Plugin, Runtime};
use crate::run::{RunConfig, RunEncoder, RunLlm};
use crate::train::{self, EvalParams, SequenceData, TrainOptions};
use anyhow::{bail, Context};
use candle_core::{Device, Tensor};
use std::path::{Path, PathBuf};

/// The data stage's result: the dataset, its split as training data, and the catalog's ids.
pub struct Data {
    /// Items, users and sessions.
    pub prepared: Prepared,
    /// The split, in item indices, with the prepared directory's digest.
    pub data: SequenceData,
    /// Whether an earlier process's prepared directory was reused.
    pub reused: bool,
}

impl Data {
    /// Track ids in item-index order.
    pub fn catalog(&self) -> Vec<String> {
        self.prepared.dataset.items.iter().map(|i| i.track.id.clone()).collect()
    }
    /// Each item's training plays.
    pub fn counts(&self) -> Vec<f32> {
        play_counts(&self.data)
    }
    /// "N items; …" for logs and reports.
    pub fn summary(&self) -> String {
        format!(
            "{} items; {} training sequences; {} validation and {} test cases (each target position of a valid/test row, given the items before it)",
            self.data.n_items,
            self.data.train.len(),
            self.data.valid.len(),
            self.data.test.len()
        )
    }
}

/// Each item's "Artist – Title", the text a zero-shot LLM scores, in item-index order.
pub fn item_texts(dataset: &crate::data::sessions::Dataset) -> Vec<String> {
    dataset.items.iter().map(|i| format!("{} – {}", i.track.artist, i.track.title)).collect()
}

/// Each item's plays in the training sequences (what MostPop ranks by).
pub fn play_counts(data: &SequenceData) -> Vec<f32> {
    let mut counts = vec![0f32; data.n_items];
    for s in &data.train {
        for &i in s {
            counts[i as usize] += 1.0;
        }
    }
    counts
}

/// Prepares `cfg`'s data into `dir`, or reuses it when its manifest records the same log and
/// data config and every file verifies.
pub fn data(cfg: &RunConfig, dir: &Path) -> anyhow::Result<Data> {
    let mut data_cfg = match &cfg.data.config {
        Some(p) => DataConfig::load(p)?,
        None => DataConfig::default(),
    };
    if let Some(d) = &cfg.data.durations {
        data_cfg.completion.durations = Some(d.clone());
    }
    // The manifest says what the directory was prepared from; loading it verifies every file
    // once. A directory that does not verify is prepared again.
    let same_inputs = crate::artifact::Manifest::read(dir, crate::data::schema::PREPARED)
        .is_ok_and(|m| m.encore == env!("CARGO_PKG_VERSION") && m.inputs == crate::data::command::inputs(cfg.data.log.as_deref(), &data_cfg));
    let loaded = if same_inputs {
        match crate::data::command::load_prepared(dir) {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("data: {} does not verify ({e:#}); preparing it again", dir.display());
                None
            }
        }
    } else {
        None
    };
    let reused = loaded.is_some();
    let prepared = match loaded {
        Some(p) => {
            eprintln!("data: reusing {} (same log and data config; verified)", dir.display());
            p
        }
        None => prepare_into(cfg.data.log.as_deref(), &data_cfg, cfg.data.config.as_deref(), dir)?,
    };
    let data = SequenceData { digest: prepared.digest.clone(), ..SequenceData::from_splits(prepared.dataset.items.len(), &prepared.splits) };
    data.validate()?;
    if data.test.is_empty() || data.valid.is_empty() {
        bail!("the split left {} validation and {} test cases: use more data or other split settings", data.valid.len(), data.test.len());
    }
    Ok(Data { prepared, data, reused })
}

/// Runs `[features]`' extractors over the prepared catalog in `prepared` (each cached: an
/// unchanged extractor reruns nothing).
pub fn features(cfg: &RunConfig, runtime: &Runtime, dirs: &[PathBuf], prepared: &Path, progress: bool) -> anyhow::Result<()> {
    if let Some(fc) = &cfg.features {
        let max_failed = crate::features::extract::ExtractOptions::default().max_failed;
        crate::features::command::extract_all(runtime, dirs, fc, prepared, max_failed, progress)?;
    }
    Ok(())
}

/// Each encoder's fusion plan and features, checked against the catalog (none for ID only).
pub fn fusion_specs(
    cfg: &RunConfig,
    data: &Data,
    prepared: &Path,
    runtime: &Runtime,
    dirs: &[PathBuf],
    device: &Device,
) -> anyhow::Result<Vec<Option<FusionSpec>>> {
    let catalog = data.catalog();
    cfg.encoder
        .iter()
        .map(|enc| match &enc.fusion {
            Some(f) => {
                let features = f.features.clone().unwrap_or_else(|| prepared.join("features"));
                train::fusion::prepare(f, &features, &catalog, enc.model.item_dim(), runtime, dirs, device)
                    .map(Some)
                    .with_context(|| format!("[[encoder]] `{}`", enc.name()))
            }
            None => Ok(None),
        })
        .collect()
}

/// Trains `enc` into `dir`, or reuses (or continues) the checkpoints there of the same config and
/// data; another run's are set aside (`.stale-N/`) and training starts anew. The flag says whether
/// any epoch ran in this process.
pub fn encoder(
    enc: &RunEncoder,
    cfg: &RunConfig,
    data: &SequenceData,
    fusion: Option<FusionSpec>,
    dir: &Path,
    device: &Device,
    progress: bool,
) -> anyhow::Result<(train::Trained, bool)> {
    let name = enc.name();
    let tc = enc.train_config(cfg);
    let opts = TrainOptions { out_dir: Some(dir.to_path_buf()), resume: true, progress, fusion };
    let trained = match train::train(&tc, data, device, &opts) {
        Err(train::TrainError::Mismatch { path, reason }) => {
            eprintln!("{name}: {} is another run's ({reason}); training anew", path.display());
            clear_stage(dir)?;
            train::train(&tc, data, device, &opts)
        }
        r => r,
    }
    .with_context(|| format!("training {name}"))?;
    if trained.resumed_from > 0 && trained.losses.is_empty() {
        eprintln!("{name}: finished before (epoch {} of {}); reusing {}", trained.resumed_from, tc.train.epochs, dir.display());
    } else if trained.resumed_from > 0 {
        eprintln!("{name}: continued after epoch {} of {}, from {}", trained.resumed_from, tc.train.epochs, dir.display());
    }
    if let Some((v, e)) = trained.best {
        eprintln!("{name}: best validation {} {v:.4} at epoch {e} of {}", cfg.train.valid_metric, trained.epochs);
    }
    let computed = !trained.losses.is_empty();
    Ok((trained, computed))
}

/// Trains E4SRec `l` over the item table `items` into `dir`, or reuses (or continues) a
/// checkpoint there of the same config, data and table. The flag says whether it trained here.
pub fn e4srec(
    l: &RunLlm,
    items: Tensor,
    data: &SequenceData,
    dir: &Path,
    device: &Device,
    progress: bool,
) -> anyhow::Result<(train::e4srec::TrainedE4SRec, bool)> {
    let name = l.name();
    let ecfg = l.e4srec_config()?;
    let mut vars = crate::models::Params::new(ecfg.train.seed, device);
    let loaded = crate::llm::load(&ecfg.model, device, Some(&ecfg.lora), &mut vars).with_context(|| format!("[[llm]] `{name}`"))?;
    let model = crate::llm::e4srec::E4SRec::new(loaded.model, &loaded.tokenizer, items, &ecfg.prompt, &mut vars)?;
    let opts = train::e4srec::E4SRecOptions { out_dir: Some(dir.to_path_buf()), resume: true, progress, stop_after: None };
    if let Err(reason) = train::e4srec::check_resumable(&ecfg, &model, data, dir) {
        eprintln!("{name}: {reason}; training anew");
        clear_stage(dir)?;
    }
    let trained = train::e4srec::train(&ecfg, model, vars, data, &opts).with_context(|| format!("training {name}"))?;
    if let Some((v, s)) = trained.best {
        eprintln!("{name}: best validation {} {v:.4} at step {s} of {} ({:.0} s)", ecfg.train.valid_metric, ecfg.train.steps, trained.seconds);
    }
    train::e4srec::save(&trained, &ecfg, dir)?;
    let computed = !trained.losses.is_empty();
    Ok((trained, computed))
}

/// Moves a stage directory's checkpoints aside (`DIR/.stale-N/`) before it is trained anew: they
/// belong to another config or data, and are kept rather than deleted.
pub fn clear_stage(dir: &Path) -> anyhow::Result<()> {
    let stale = (0..).map(|i| dir.join(format!(".stale-{i}"))).find(|p| !p.exists()).context("a free .stale-N name")?;
    let names: Vec<String> = std::fs::read_dir(dir)
        .map(|es| es.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n == "checkpoints" || n.starts_with("best.") || n.starts_with("checkpoint."))
        .collect();
    for name in names {
        let p = dir.join(&name);
        if p.exists() {
            std::fs::create_dir_all(&stale).with_context(|| format!("creating {}", stale.display()))?;
            std::fs::rename(&p, stale.join(&name)).with_context(|| format!("moving {} into {}", p.display(), stale.display()))?;
        }
    }
    Ok(())
}

/// Scores every item by its number of training plays, the same for every user: a user vector
/// `[1]` against the counts as 1-d item vectors.
pub struct Popularity {
    counts: Tensor,
}

impl Popularity {
    /// Popularity by `counts` (training plays per item).
    pub fn new(counts: &[f32]) -> anyhow::Result<Self> {
        Ok(Popularity { counts: Tensor::from_vec(counts.to_vec(), (counts.len(), 1), &Device::Cpu)? })
    }
}

impl Scorer for Popularity {
    fn item_table(&self) -> &Tensor {
        &self.counts
    }
    fn user_vectors(&self, users: &[usize]) -> anyhow::Result<Tensor> {
        Ok(Tensor::ones((users.len(), 1), candle_core::DType::F32, self.counts.device())?)
    }
}

/// A seeded random ranking: random user and item vectors.
pub fn random_scorer(n_users: usize, n_items: usize, seed: u64) -> anyhow::Result<crate::eval::DotScorer> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut draw = |n: usize| -> Vec<f32> { (0..n * 16).map(|_| rng.random::<f32>() - 0.5).collect() };
    let items = draw(n_items);
    crate::eval::DotScorer::from_vecs(draw(n_users), items, 16, &Device::Cpu)
}

/// The zero-shot protocol's two baselines on `cases`, each target among the sampled negatives of
/// `params`: MostPop by `counts` and a random ranking seeded by `seed`, labelled by `label`.
pub fn sampled_baselines(
    plugins: &[Plugin],
    cases: &[train::EvalCase],
    params: &EvalParams,
    counts: &[f32],
    seed: u64,
    bootstrap: Option<Bootstrap>,
    label: &dyn Fn(&str) -> String,
) -> anyhow::Result<Vec<(String, EvalReport)>> {
    let n_items = counts.len();
    let pop = Popularity::new(counts)?;
    let random = random_scorer(cases.len(), n_items, seed)?;
    let mut out = Vec::new();
    for (name, scorer) in [("MostPop", &pop as &dyn Scorer), ("Random", &random)] {
        let mut s = MetricSuite::new(plugins, &params.ks, n_items as u32)?;
        train::scoring::sampled(scorer, cases, params, &mut s, &Device::Cpu)?;
        out.push((label(name), s.finish(bootstrap)?));
    }
    Ok(out)
}

/// Honest zero-shot: the LLM at `model` (an HF folder, a GGUF, or `smollm2`) ranks each case's
/// target among `params`' sampled negatives by its likelihood of the items' texts. Returns the
/// LLM's name, its report and the candidates scored per second.
#[allow(clippy::too_many_arguments)]
pub fn zero_shot(
    plugins: &[Plugin],
    model: &Path,
    texts: &[String],
    max_items: usize,
    cases: &[train::EvalCase],
    params: &EvalParams,
    device: &Device,
    bootstrap: Option<Bootstrap>,
    progress: bool,
) -> anyhow::Result<(String, EvalReport, f64)> {
    let path = crate::run::resolve_model(model)?;
    let mut vars = crate::models::Params::new(0, device);
    let loaded = crate::llm::load(&path, device, None, &mut vars).with_context(|| format!("zero-shot model {}", model.display()))?;
    let zs = crate::llm::zero_shot::ZeroShot::new(&loaded.model, &loaded.tokenizer, texts, max_items)?;
    eprintln!(
        "zero-shot: {} test cases, each target among {} sampled negatives, ranked by {}'s likelihood",
        cases.len(),
        params.sampled_negatives,
        loaded.name
    );
    let t0 = std::time::Instant::now();
    let mut s = MetricSuite::new(plugins, &params.ks, texts.len() as u32)?;
    crate::llm::zero_shot::evaluate(&zs, cases, params, &mut s, progress)?;
    let secs = t0.elapsed().as_secs_f64();
    let rate = (cases.len() * (params.sampled_negatives + 1)) as f64 / secs.max(1e-9);
    eprintln!("zero-shot: {secs:.0} s, {rate:.1} candidates/s");
    Ok((loaded.name.clone(), s.finish(bootstrap)?, rate))
}

/// The per-case series a finished suite kept, for paired comparisons.
pub fn per_case(suite: &MetricSuite, metrics: &[String], ks: &[u32]) -> PerCase {
    let mut out = Vec::new();
    for m in metrics {
        for &k in ks {
            if let Some(v) = suite.per_user(m, k).filter(|v| !v.is_empty()) {
                out.push((m.clone(), k, v.to_vec()));
            }
        }
    }
    out
}

/// What one model is evaluated with: the metric plugins, the cutoffs and the intervals.
pub struct Evaluation<'a> {
    /// Metric plugins.
    pub plugins: &'a [Plugin],
    /// `[eval]`: cutoffs, history masking, batch size; `sampled_negatives` picks the protocol.
    pub params: EvalParams,
    /// The metrics whose per-case series are kept.
    pub metrics: &'a [String],
    /// Bootstrap intervals, if any.
    pub bootstrap: Option<Bootstrap>,
}

/// A model under evaluation.
pub enum Ranker<'a> {
    /// An ID encoder (full ranking, or its sampled protocol).
    Encoder(&'a dyn crate::models::SeqEncoder),
    /// E4SRec.
    E4SRec(&'a crate::llm::e4srec::E4SRec),
    /// Any scorer of users by index (popularity, random).
    Scorer(&'a dyn Scorer),
}

impl Evaluation<'_> {
    /// `ranker` on the test cases: its report and its per-case series.
    pub fn run(&self, ranker: Ranker, cases: &[crate::train::EvalCase], n_items: usize, device: &Device) -> anyhow::Result<(EvalReport, PerCase)> {
        let ks = &self.params.ks;
        let mut suite = MetricSuite::new(self.plugins, ks, n_items as u32)?;
        match ranker {
            Ranker::Encoder(m) => train::scoring::evaluate(m, cases, &self.params, &mut suite, device)?,
            Ranker::E4SRec(m) => train::e4srec::evaluate(m, cases, &self.params, &mut suite)?,
            Ranker::Scorer(s) if self.params.sampled_negatives > 0 => train::scoring::sampled(s, cases, &self.params, &mut suite, &Device::Cpu)?,
            Ranker::Scorer(s) => {
                let users = train::scoring::eval_users(cases);
                let opts = RankOptions { batch_users: self.params.batch_users.max(1), mask_seen: self.params.mask_history };
                full_ranking(s, &users, &mut suite, opts)?;
            }
        }
        let cases = per_case(&suite, self.metrics, ks);
        Ok((suite.finish(self.bootstrap)?, cases))
    }
}

/// A name like "SASRec+A/L/M" becomes the directory `sasrec-a-l-m`.
pub fn dir_name(name: &str) -> String {
    name.to_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect()
}
