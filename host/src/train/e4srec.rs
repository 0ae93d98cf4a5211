//! Training E4SRec (`llm::e4srec`): LoRA adapters, the item projection and the scoring head,
//! trained with full softmax cross-entropy over all items (fused, as the encoders' loss), AdamW,
//! gradient accumulation and a cosine schedule with linear warmup; validated on a seeded subset
//! of the validation cases, the best validation state kept; evaluated by full ranking (the head is
//! a dot-product scorer) or sampled, through the same sinks as the encoders.
//!
//! Each training example is one target position of a training sequence, given up to
//! `max_items` items before it. The examples are shuffled per pass from the seed, and step `s`
//! takes the next `batch_size × grad_accum` of them, so a step's batch depends only on the seed
//! and `s`: a run resumed from a checkpoint continues with the batches it would have seen.
use super::optim::{AdamW, ParamsAdamW};
use super::scoring::{NativeSink, ValidMetric};
use super::{EvalCase, EvalParams, SequenceData, TrainError};
use crate::eval::{self, RankOptions, RankingSink, Scorer};
use crate::llm::e4srec::{E4SRec, PromptConfig};
use crate::llm::{KvCache, LoraConfig, Mode};
use crate::models::{Params, TrainCtx};
use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// `[llm.train]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlmTrainParams {
    /// Optimizer steps.
    pub steps: usize,
    /// Examples per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Linear warmup steps, then cosine decay to 0 at `steps`.
    pub warmup_steps: usize,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// Seed of initialisation, batches and dropout.
    pub seed: u64,
    /// Validate every this many steps (and after the last).
    pub eval_every: usize,
    /// Validation cases used (a seeded subset; 0: all).
    pub valid_cases: usize,
    /// The validation metric that selects the kept state.
    pub valid_metric: String,
    /// 0 (the default): full softmax cross-entropy over every item. N > 0: sampled softmax, the
    /// target against N items drawn uniformly (seeded; never the target), as the reference
    /// fork's 128 negatives; the head's other rows get no gradient that step.
    pub negatives: usize,
}

impl Default for LlmTrainParams {
    fn default() -> Self {
        LlmTrainParams {
            steps: 200,
            batch_size: 8,
            grad_accum: 1,
            lr: 1e-3,
            warmup_steps: 10,
            weight_decay: 0.0,
            seed: 2020,
            eval_every: 50,
            valid_cases: 256,
            valid_metric: "ndcg@10".into(),
            negatives: 0,
        }
    }
}

/// An E4SRec model and how to train it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct E4SRecConfig {
    /// An HF folder (llama or qwen2) or a llama GGUF file.
    pub model: PathBuf,
    /// The adapters.
    #[serde(default)]
    pub lora: LoraConfig,
    /// The prompt around the items.
    #[serde(default)]
    pub prompt: PromptConfig,
    /// Optimisation.
    #[serde(default)]
    pub train: LlmTrainParams,
}

impl E4SRecConfig {
    /// Range checks, naming the key.
    pub fn check(&self) -> Result<(), TrainError> {
        self.lora.check().map_err(TrainError::Config)?;
        let t = &self.train;
        if t.batch_size == 0 || t.grad_accum == 0 || t.eval_every == 0 {
            return Err(TrainError::Config(format!(
                "llm.train batch_size = {}, grad_accum = {}, eval_every = {}: each must be at least 1",
                t.batch_size, t.grad_accum, t.eval_every
            )));
        }
        if !(t.lr.is_finite() && t.lr > 0.0 && t.weight_decay.is_finite() && t.weight_decay >= 0.0) {
            return Err(TrainError::Config(format!("llm.train lr = {} must be positive and weight_decay = {} ≥ 0, both finite", t.lr, t.weight_decay)));
        }
        if self.prompt.max_items == 0 || self.prompt.max_items > 4096 {
            return Err(TrainError::Config(format!("llm.prompt.max_items = {} must be in 1..=4096", self.prompt.max_items)));
        }
        ValidMetric::parse(&t.valid_metric)?;
        if t.negatives > 1 << 20 {
            return Err(TrainError::Config(format!("llm.train.negatives = {}: at most 2^20 (0: full softmax)", t.negatives)));
        }
        Ok(())
    }
}

/// The learning rate at step `s` (0-based): linear warmup to `lr`, then cosine to 0.
pub fn lr_at(p: &LlmTrainParams, s: usize) -> f64 {
    if s < p.warmup_steps {
        return p.lr * (s + 1) as f64 / p.warmup_steps as f64;
    }
    let span = p.steps.saturating_sub(p.warmup_steps).max(1) as f64;
    let t = ((s - p.warmup_steps) as f64 / span).min(1.0);
    p.lr * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
}

/// A trained model.
pub struct TrainedE4SRec {
    /// The model with its kept (best-validation) state.
    pub model: E4SRec,
    /// Its trainable tensors (adapters, projection, head).
    pub vars: Params,
    /// Best validation value and the step it came from.
    pub best: Option<(f64, usize)>,
    /// Training loss, mean per validation interval.
    pub losses: Vec<f64>,
    /// Wall seconds spent training (validation included).
    pub seconds: f64,
}

/// Every (sequence, position) pair with a target: positions ≥ 1.
fn examples(train: &[Vec<u32>]) -> Vec<(u32, u32)> {
    train.iter().enumerate().flat_map(|(s, seq)| (1..seq.len()).map(move |p| (s as u32, p as u32))).collect()
}

/// The examples of step `step`, micro-batch by micro-batch.
fn step_batches(all: &[(u32, u32)], p: &LlmTrainParams, step: usize) -> Vec<Vec<(u32, u32)>> {
    let per_step = p.batch_size * p.grad_accum;
    let n = all.len();
    let mut out = Vec::with_capacity(p.grad_accum);
    let mut cur = Vec::with_capacity(p.batch_size);
    let mut cached: Option<(usize, Vec<usize>)> = None;
    for j in 0..per_step {
        let g = step * per_step + j;
        let (pass, at) = (g / n, g % n);
        if cached.as_ref().is_none_or(|(c, _)| *c != pass) {
            let mut order: Vec<usize> = (0..n).collect();
            order.shuffle(&mut StdRng::seed_from_u64(p.seed ^ (pass as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)));
            cached = Some((pass, order));
        }
        cur.push(all[cached.as_ref().map_or(at, |(_, o)| o[at])]);
        if cur.len() == p.batch_size {
            out.push(std::mem::take(&mut cur));
        }
    }
    out
}

/// What a checkpoint's TOML holds; sealed as the encoders' checkpoints are
/// ([`super::checkpoint::parse_sealed`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointMeta {
    steps: usize,
    best: Option<(f64, usize)>,
    losses: Vec<f64>,
    n_items: usize,
    model: String,
    /// The weights file next to it (`checkpoint.<sha>.safetensors`), and its SHA-256.
    weights: String,
    sha256: String,
    /// The data it was trained on ([`SequenceData::digest`]).
    data: String,
    seal: String,
    config: E4SRecConfig,
}

/// Sampled softmax: each row's user vector scores its target (column 0) and `k` uniform
/// negatives other than the target, gathered from `head`; cross-entropy with label 0.
fn sampled_softmax(users: &Tensor, head: &Tensor, labels: &[u32], k: usize, rng: &mut StdRng) -> Result<Tensor, TrainError> {
    use rand::Rng;
    let (n, (b, h)) = (head.dims()[0], users.dims2()?);
    let mut ids = Vec::with_capacity(b * (k + 1));
    for &l in labels {
        ids.push(l);
        for _ in 0..k {
            // Uniform over the n - 1 items other than the target.
            let j = rng.random_range(0..n as u32 - 1);
            ids.push(if j >= l { j + 1 } else { j });
        }
    }
    let rows = head.index_select(&Tensor::from_vec(ids, b * (k + 1), head.device())?, 0)?.reshape((b, k + 1, h))?;
    let logits = users.unsqueeze(1)?.matmul(&rows.transpose(1, 2)?)?.squeeze(1)?;
    Ok(super::loss::cross_entropy(&logits, &vec![0; b])?)
}

/// What a checkpoint records as the data it was trained on: the split data and the encoder's
/// item table the model reads (a retrained encoder makes an old checkpoint another run's).
fn trained_on(model: &E4SRec, data: &SequenceData) -> Result<String, TrainError> {
    let table: Vec<f32> = model.item_table().flatten_all()?.to_vec1()?;
    let bytes: Vec<u8> = table.iter().flat_map(|x| x.to_le_bytes()).collect();
    Ok(crate::artifact::sha256_hex(format!("{} {}", data.digest, crate::artifact::sha256_hex(&bytes)).as_bytes()))
}

fn read_meta(meta_path: &Path) -> Result<CheckpointMeta, TrainError> {
    let text = std::fs::read_to_string(meta_path).map_err(|e| TrainError::Io { context: format!("reading {}", meta_path.display()), cause: e })?;
    super::checkpoint::parse_sealed(&text, meta_path, |m: &mut CheckpointMeta| &mut m.seal)
}

fn check_meta(meta: &CheckpointMeta, meta_path: &Path, cfg: &E4SRecConfig, model: &E4SRec, trained_on: &str) -> Result<(), TrainError> {
    let mismatch = |reason: String| TrainError::Mismatch { path: meta_path.to_path_buf(), reason };
    if meta.config != *cfg || meta.n_items != model.n_items() {
        return Err(mismatch(format!("it was written by another config or catalog ({} items, here {})", meta.n_items, model.n_items())));
    }
    if meta.data != trained_on {
        return Err(mismatch("it was trained on other data or another encoder's item table".into()));
    }
    Ok(())
}

/// Whether `dir`'s checkpoint (if any) can be resumed by `cfg` over `model` and `data`: `Err`
/// says why not (another config, catalog, data or item table, or a damaged file).
pub fn check_resumable(cfg: &E4SRecConfig, model: &E4SRec, data: &SequenceData, dir: &Path) -> Result<(), String> {
    let meta_path = dir.join("checkpoint.toml");
    if !meta_path.is_file() {
        return Ok(());
    }
    let trained_on = trained_on(model, data).map_err(|e| e.to_string())?;
    read_meta(&meta_path).and_then(|m| check_meta(&m, &meta_path, cfg, model, &trained_on)).map_err(|e| e.to_string())
}

/// How [`train`] runs.
#[derive(Debug, Clone, Default)]
pub struct E4SRecOptions {
    /// Where checkpoints go (`checkpoint.safetensors` + `checkpoint.toml`, written at each
    /// validation).
    pub out_dir: Option<PathBuf>,
    /// Continue from the checkpoint in `out_dir`, if there is one.
    pub resume: bool,
    /// A progress bar.
    pub progress: bool,
    /// Stop (after its validation and checkpoint) once this many steps are done, as a run
    /// killed there would; the schedule still spans `steps`.
    pub stop_after: Option<usize>,
}

/// Trains `model` (already built over its item table, adapters and heads in `vars`) on `data`.
pub fn train(cfg: &E4SRecConfig, model: E4SRec, vars: Params, data: &SequenceData, opts: &E4SRecOptions) -> Result<TrainedE4SRec, TrainError> {
    let (out_dir, resume, progress) = (opts.out_dir.as_deref(), opts.resume, opts.progress);
    let t = &cfg.train;
    let started = Instant::now();
    if t.negatives >= data.n_items {
        return Err(TrainError::Config(format!("llm.train.negatives = {} must be below the {} items (0: full softmax)", t.negatives, data.n_items)));
    }
    let all = examples(&data.train);
    if all.is_empty() {
        return Err(TrainError::Data("no training sequence has two items: E4SRec has nothing to learn from".into()));
    }
    let metric = ValidMetric::parse(&t.valid_metric)?;
    let valid: Vec<EvalCase> = super::scoring::subset(&data.valid, t.valid_cases, t.seed);
    let named = vars.named_vars();
    let mut opt = AdamW::new(named.clone(), ParamsAdamW { lr: t.lr, weight_decay: t.weight_decay, ..Default::default() })?;
    let mut best: Option<(f64, usize)> = None;
    let mut best_state: Option<Vec<(String, Tensor)>> = None;
    let mut losses = Vec::new();
    let mut start = 0;
    let ckpt = out_dir.map(|d| d.join("checkpoint.toml"));
    let trained_on = trained_on(&model, data)?;
    if resume {
        if let Some(meta_path) = ckpt.as_ref().filter(|p| p.is_file()) {
            let meta = read_meta(meta_path)?;
            check_meta(&meta, meta_path, cfg, &model, &trained_on)?;
            if std::path::Path::new(&meta.weights).file_name().is_none_or(|n| n != meta.weights.as_str()) {
                return Err(TrainError::Corrupt { path: meta_path.clone(), reason: format!("`weights = {:?}` must name a file next to it", meta.weights) });
            }
            let st = meta_path.with_file_name(&meta.weights);
            let (sha, _) = crate::artifact::sha256_file(&st).map_err(|e| TrainError::Corrupt { path: st.clone(), reason: format!("cannot read it: {e}") })?;
            if sha != meta.sha256 {
                return Err(TrainError::Corrupt {
                    path: st.clone(),
                    reason: format!("its SHA-256 is {sha}, but {} records {}", meta_path.display(), meta.sha256),
                });
            }
            let tensors = candle_core::safetensors::load(&st, model.device()).map_err(|e| TrainError::Corrupt { path: st.clone(), reason: e.to_string() })?;
            for (name, var) in &named {
                let v = tensors.get(name).ok_or_else(|| TrainError::Corrupt { path: st.clone(), reason: format!("no tensor {name}") })?;
                var.set(v)?;
            }
            opt.load_state(&tensors, meta.steps).map_err(|reason| TrainError::Corrupt { path: st.clone(), reason })?;
            let kept: Vec<(String, Tensor)> = named.iter().filter_map(|(n, _)| tensors.get(&format!("best.{n}")).map(|t| (n.clone(), t.clone()))).collect();
            best_state = (kept.len() == named.len()).then_some(kept);
            best = meta.best;
            losses = meta.losses;
            start = meta.steps;
            eprintln!("resuming E4SRec from step {start} ({})", meta_path.display());
        }
    }
    let bar = progress.then(|| {
        let b = indicatif::ProgressBar::new(t.steps as u64);
        b.set_style(indicatif::ProgressStyle::with_template("E4SRec {bar:30} {pos}/{len} steps {msg} [{elapsed}<{eta}]").expect("template"));
        b.set_position(start as u64);
        b
    });
    let mut interval = (0.0, 0usize);
    for step in start..t.steps {
        opt.set_lr(lr_at(t, step));
        let ctx = TrainCtx::new(t.seed ^ (step as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03));
        let mut grads: Option<candle_core::backprop::GradStore> = None;
        // Negatives of this step, from its own seed: a resumed run draws the same ones.
        let mut negatives = StdRng::seed_from_u64(t.seed ^ (step as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        for batch in step_batches(&all, t, step) {
            let prefix = model.instruction_cache(Mode::Train(&ctx))?;
            let hist: Vec<&[u32]> = batch.iter().map(|&(s, p)| &data.train[s as usize][..p as usize]).collect();
            let labels: Vec<u32> = batch.iter().map(|&(s, p)| data.train[s as usize][p as usize]).collect();
            let empty: &[Option<f32>] = &[];
            let ratios: Vec<&[Option<f32>]> =
                batch.iter().map(|&(s, p)| data.train_completion.get(s as usize).map_or(empty, |c| &c[..(p as usize).min(c.len())])).collect();
            let users = model.user_vectors(&hist, &ratios, &prefix, Mode::Train(&ctx))?;
            let loss = match t.negatives {
                0 => super::loss::linear_cross_entropy(&users, model.head(), None, &labels)?,
                k => sampled_softmax(&users, model.head(), &labels, k, &mut negatives)?,
            };
            let loss = (loss / t.grad_accum as f64)?;
            interval.0 += loss.to_scalar::<f32>()? as f64;
            let g = loss.backward()?;
            grads = Some(match grads {
                None => g,
                Some(mut acc) => {
                    for (_, var) in &named {
                        if let Some(new) = g.get(var) {
                            let sum = match acc.get(var) {
                                Some(old) => (old + new)?,
                                None => new.clone(),
                            };
                            acc.insert(var, sum);
                        }
                    }
                    acc
                }
            });
        }
        interval.1 += 1;
        if let Some(g) = &grads {
            opt.step(g)?;
        }
        if let Some(b) = &bar {
            b.inc(1);
            b.set_message(format!("loss {:.3}", interval.0 / interval.1.max(1) as f64));
        }
        let done = step + 1;
        if done % t.eval_every == 0 || done == t.steps {
            losses.push(interval.0 / interval.1.max(1) as f64);
            interval = (0.0, 0);
            let mut sink = NativeSink::new(metric, model.n_items() as u32);
            evaluate_full(&model, &valid, &mut sink, RankOptions { batch_users: 64, mask_seen: false })?;
            let v = sink.value();
            if best.is_none_or(|(b, _)| v > b) {
                best = Some((v, done));
                best_state = Some(named.iter().map(|(n, var)| Ok((n.clone(), var.as_tensor().copy()?))).collect::<candle_core::Result<Vec<_>>>()?);
            }
            let msg = format!("step {done}: loss {:.4}, validation {} {v:.4} ({} cases)", losses.last().unwrap_or(&0.0), t.valid_metric, valid.len());
            match &bar {
                Some(b) => b.println(msg),
                None => eprintln!("{msg}"),
            }
            if let (Some(meta_path), Some(dir)) = (&ckpt, out_dir) {
                let mut tensors: Vec<(String, Tensor)> = named.iter().map(|(n, v)| (n.clone(), v.as_tensor().clone())).collect();
                tensors.extend(opt.state());
                if let Some(bs) = &best_state {
                    tensors.extend(bs.iter().map(|(n, t)| (format!("best.{n}"), t.clone())));
                }
                let (weights, sha256) = super::checkpoint::write_weights(dir, "checkpoint", &tensors)?;
                let mut meta = CheckpointMeta {
                    steps: done,
                    best,
                    losses: losses.clone(),
                    n_items: model.n_items(),
                    model: model_name(cfg),
                    weights: weights.clone(),
                    sha256,
                    data: trained_on.clone(),
                    seal: String::new(),
                    config: cfg.clone(),
                };
                let text = super::checkpoint::sealed_text(&mut meta, |m: &mut CheckpointMeta| &mut m.seal)?;
                crate::io::write_atomic(meta_path, |w| std::io::Write::write_all(w, text.as_bytes()))
                    .map_err(|e| TrainError::Io { context: format!("writing {}", meta_path.display()), cause: std::io::Error::other(format!("{e:#}")) })?;
                super::checkpoint::finish_weights(dir, "checkpoint", &weights);
            }
            if opts.stop_after.is_some_and(|s| done >= s) {
                break;
            }
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if let Some(bs) = best_state {
        for ((_, var), (_, t)) in named.iter().zip(bs) {
            var.set(&t)?;
        }
    }
    Ok(TrainedE4SRec { model, vars, best, losses, seconds: started.elapsed().as_secs_f64() })
}

fn model_name(cfg: &E4SRecConfig) -> String {
    cfg.model.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default()
}

/// E4SRec as a full-ranking scorer: user vectors are last hidden states, items the head's rows.
pub struct E4SRecScorer<'a> {
    model: &'a E4SRec,
    cases: &'a [EvalCase],
    prefix: KvCache,
}

impl<'a> E4SRecScorer<'a> {
    /// A scorer over `cases`, in their order; the instruction runs once, here.
    pub fn new(model: &'a E4SRec, cases: &'a [EvalCase]) -> Result<Self, TrainError> {
        Ok(E4SRecScorer { model, cases, prefix: model.instruction_cache(Mode::Infer)? })
    }
}

impl Scorer for E4SRecScorer<'_> {
    fn item_table(&self) -> &Tensor {
        self.model.head()
    }
    fn user_vectors(&self, users: &[usize]) -> anyhow::Result<Tensor> {
        let hist: Vec<&[u32]> = users.iter().map(|&u| self.cases[u].history.as_slice()).collect();
        let ratios: Vec<&[Option<f32>]> = users.iter().map(|&u| self.cases[u].completion.as_slice()).collect();
        Ok(self.model.user_vectors(&hist, &ratios, &self.prefix, Mode::Infer)?)
    }
    fn batch_key(&self, user: usize) -> usize {
        self.cases[user].history.len().min(self.model.max_items())
    }
}

fn evaluate_full(model: &E4SRec, cases: &[EvalCase], sink: &mut dyn RankingSink, opts: RankOptions) -> Result<(), TrainError> {
    let scorer = E4SRecScorer::new(model, cases)?;
    let users = super::scoring::eval_users(cases);
    eval::full_ranking(&scorer, &users, sink, opts).map_err(TrainError::Eval)
}

/// Evaluates `model` on `cases` into `sink`: full ranking, or sampled when
/// `params.sampled_negatives > 0`.
pub fn evaluate(model: &E4SRec, cases: &[EvalCase], params: &EvalParams, sink: &mut dyn RankingSink) -> Result<(), TrainError> {
    if params.sampled_negatives > 0 {
        let scorer = E4SRecScorer::new(model, cases)?;
        let device: Device = model.device().clone();
        // The LLM runs a batch of users at once: keep batches as small as full ranking's.
        let params = EvalParams { batch_users: params.batch_users.clamp(1, 64), ..params.clone() };
        return super::scoring::sampled(&scorer, cases, &params, sink, &device);
    }
    evaluate_full(model, cases, sink, RankOptions { batch_users: params.batch_users.clamp(1, 64), mask_seen: params.mask_history })
}

/// Writes the kept state: `adapter/` (PEFT's `adapter_model.safetensors` and
/// `adapter_config.json`) and `e4srec_heads.safetensors` (`item_proj.*`, `score.weight`).
pub fn save(trained: &TrainedE4SRec, cfg: &E4SRecConfig, dir: &Path) -> anyhow::Result<()> {
    let adapters = trained.model.llm().adapters();
    crate::llm::lora::save_peft(&dir.join("adapter"), &cfg.lora, &adapters, &model_name(cfg))?;
    let heads: Vec<(String, Tensor)> =
        trained.vars.named_vars().into_iter().filter(|(n, _)| !n.contains(".lora_")).map(|(n, v)| (n, v.as_tensor().clone())).collect();
    super::checkpoint::save_tensors(&dir.join("e4srec_heads.safetensors"), &heads)?;
    Ok(())
}
