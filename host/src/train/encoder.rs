//! The training loop for the ID encoders.
//!
//! Whole-sequence training: each training sequence is cut, from its end, into windows of at most
//! `max_len` inputs, and the loss is taken at every position at once (next item for SASRec and
//! GRU4Rec; masked items for BERT4Rec). RecBole instead turns every prefix into its own padded
//! sample; with absolute positions counted from the window's start, the supervision is the same
//! for windows shorter than `max_len`, at a fraction of the compute. The cloze objective is the
//! exception: RecBole's prefixes are masked independently, so each position is a target many
//! times per epoch; BERT4Rec's `mask_copies` puts that many independently masked copies of each
//! window into an epoch, and its next-item (`ft_ratio`) batches cut each copy to a random prefix.
//!
//! `train.batch_size` counts targets, as RecBole's `train_batch_size` counts its one-target
//! samples, so a config copied from RecBole takes RecBole's number of optimizer steps per epoch
//! ([`plan_steps`]): a next-item window is split between two steps where the count runs out (the
//! second part re-reads the items before its first target as context). Counting windows instead
//! (`batch_unit = "windows"`, the meaning before #15) made a step of 256 about 11,000 targets on
//! RecBole's parity data: 5 steps per epoch against RecBole's 214, far from converged in 10 epochs.
//!
//! Everything random (initialisation, shuffling, dropout, masks, negatives) derives from the
//! config's seed and the epoch number, so a rerun on CPU gives identical metrics, and a run
//! resumed from an epoch checkpoint continues exactly as if it had never stopped.
use super::checkpoint::{self, Meta};
use super::loss::{bce_sampled, linear_cross_entropy, IGNORE};
use super::optim::{AdamW, ParamsAdamW};
use super::scoring::{evaluate, NativeSink, ValidMetric};
use super::{BatchUnit, LossKind, SequenceData, TrainConfig, TrainError};
use crate::models::{layers::embed, Completion, Objective, Params, SeqEncoder, TrainCtx};
use candle_core::{Device, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::path::PathBuf;
use std::time::Instant;

/// How a training run behaves, beyond its config.
#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    /// Where checkpoints go (`DIR/checkpoints/epoch-NNNN.*`, `DIR/best.*`); none: no checkpoints.
    pub out_dir: Option<PathBuf>,
    /// Continue from the last complete checkpoint in `out_dir`, if there is one.
    pub resume: bool,
    /// Show a progress bar.
    pub progress: bool,
    /// The fusion plan and modality vectors, prepared by [`super::fusion::prepare`] when the
    /// config has `[fusion]`.
    pub fusion: Option<crate::models::FusionSpec>,
}

/// A trained encoder with its best weights loaded, and the run's record.
pub struct Trained {
    /// The encoder.
    pub model: Box<dyn SeqEncoder>,
    /// Its weights.
    pub params: Params,
    /// Best validation value and its epoch (1-based), when there was validation.
    pub best: Option<(f64, usize)>,
    /// Epochs completed, counting those before a resume.
    pub epochs: usize,
    /// The epoch training resumed after (0 for a fresh run).
    pub resumed_from: usize,
    /// Validation values, one per validation.
    pub valid_history: Vec<f64>,
    /// Mean training loss of each epoch run in this process.
    pub losses: Vec<f64>,
    /// Wall time of each epoch run in this process, in seconds (training only, no validation).
    pub epoch_seconds: Vec<f64>,
    /// Wall time of each validation run in this process, in seconds.
    pub valid_seconds: Vec<f64>,
}

fn mix(seed: u64, epoch: usize, stream: u64) -> u64 {
    // SplitMix64 finaliser over (seed, epoch, stream): independent-looking seeds per use.
    let mut z = seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Cuts sequences into training windows, from the end. Next-item windows hold up to
/// `max_len + 1` items (inputs and the shifted targets); cloze windows up to `max_len`.
pub fn windows(train: &[Vec<u32>], objective: Objective, max_len: usize) -> Vec<Vec<u32>> {
    window_spans(train, objective, max_len).into_iter().map(|(s, a, b)| train[s][a..b].to_vec()).collect()
}

/// [`windows`] as `(sequence, start, end)` spans, so parallel data (completion ratios) is cut
/// the same way.
pub fn window_spans(train: &[Vec<u32>], objective: Objective, max_len: usize) -> Vec<(usize, usize, usize)> {
    context_spans(train, objective, max_len, 0).into_iter().map(|(s, a, b, _)| (s, a, b)).collect()
}

/// [`window_spans`] where each next-item target sees at least `context` items before it (or every
/// item before it, near the sequence's start): windows overlap by `context + 1` items, and each
/// span's fourth field is its first scored target (the `context` before it are inputs only).
/// RecBole's samples give each target `max_len` items of context; `context = 0` gives the last
/// target of each window `max_len` and its first one a single item.
pub fn context_spans(train: &[Vec<u32>], objective: Objective, max_len: usize, context: usize) -> Vec<(usize, usize, usize, usize)> {
    // Next-item windows overlap by one item: the last input of one is the first of the next,
    // so every target is trained on exactly once.
    let (span, min, overlap, context) = match objective {
        Objective::NextItem => (max_len + 1, 2, 1 + context.min(max_len.saturating_sub(1)), context.min(max_len.saturating_sub(1))),
        Objective::Cloze { .. } => (max_len, 1, 0, 0),
    };
    let mut out = Vec::new();
    for (i, s) in train.iter().enumerate() {
        let mut end = s.len();
        while end >= min {
            let start = end.saturating_sub(span);
            out.push((i, start, end, if start == 0 { 0 } else { context }));
            if start == 0 {
                break;
            }
            end = start + overlap;
        }
    }
    out
}

/// An epoch's optimizer steps, from the number of targets of each window in epoch order: each
/// step lists `(window, first target, end target)`, the half-open range of that window's targets
/// it trains. With [`BatchUnit::Targets`] every step holds `batch_size` targets (the last one of
/// the epoch the rest): a window that does not fit is split where the count runs out when
/// `splittable` (next-item windows: a causal model scores a target from the items before it
/// alone), and otherwise starts the next step whole (cloze windows, whose targets read both
/// sides), so a step holds at most `batch_size` targets unless one window alone holds more. With
/// [`BatchUnit::Windows`], `batch_size` whole windows per step.
pub fn plan_steps(targets: &[usize], unit: BatchUnit, batch_size: usize, splittable: bool) -> Vec<Vec<(usize, usize, usize)>> {
    let batch_size = batch_size.max(1);
    let whole = |i: usize| (i, 0, targets[i]);
    if unit == BatchUnit::Windows {
        return (0..targets.len()).collect::<Vec<_>>().chunks(batch_size).map(|c| c.iter().map(|&i| whole(i)).collect()).collect();
    }
    let (mut steps, mut cur, mut room) = (Vec::new(), Vec::new(), batch_size);
    for (i, &n) in targets.iter().enumerate() {
        if n == 0 {
            continue;
        }
        if splittable {
            let mut a = 0;
            while a < n {
                let b = n.min(a + room);
                cur.push((i, a, b));
                room -= b - a;
                a = b;
                if room == 0 {
                    steps.push(std::mem::take(&mut cur));
                    room = batch_size;
                }
            }
        } else {
            if n > room && !cur.is_empty() {
                steps.push(std::mem::take(&mut cur));
                room = batch_size;
            }
            cur.push(whole(i));
            room = room.saturating_sub(n);
            if room == 0 {
                steps.push(std::mem::take(&mut cur));
                room = batch_size;
            }
        }
    }
    if !cur.is_empty() {
        steps.push(cur);
    }
    steps
}

/// Targets a window trains: every item after the first for next-item windows, every position
/// for cloze windows (RecBole's samples: one prefix each, masked or not).
fn targets_of(w: &[u32], objective: Objective) -> usize {
    match objective {
        Objective::NextItem => w.len().saturating_sub(1),
        Objective::Cloze { .. } => w.len(),
    }
}

/// One batch, ready for the model: inputs, lengths, completion ratios when the model reads
/// them, and the flat positions with their labels.
struct Batch {
    ids: Tensor,
    lens: Vec<usize>,
    completion: Option<Completion>,
    rows: Vec<u32>,
    labels: Vec<u32>,
}

/// Windows of items, each with its completion ratios when the model reads them.
type Window<'a> = (&'a [u32], Option<&'a [Option<f32>]>);

/// The part of a window one step trains: the window cut after its last target in the step, and
/// the first target the step scores (next-item: targets before it are context only).
type Piece<'a> = (Window<'a>, usize);

fn make_batch(ws: &[Piece], model: &dyn SeqEncoder, cfg_mask: Option<(f32, bool)>, rng: &mut StdRng, device: &Device) -> Result<Batch, TrainError> {
    let pad = model.pad();
    let mut inputs: Vec<Vec<u32>> = Vec::with_capacity(ws.len());
    let mut targets: Vec<Vec<u32>> = Vec::with_capacity(ws.len());
    let mut ratios: Vec<Vec<Option<f32>>> = Vec::with_capacity(ws.len());
    let ratios_of = |r: Option<&[Option<f32>]>, n: usize| -> Vec<Option<f32>> { r.map_or_else(|| vec![None; n], |r| r[..n].to_vec()) };
    match (model.objective(), cfg_mask) {
        (Objective::NextItem, _) | (Objective::Cloze { .. }, None) => {
            for &((w, r), from) in ws {
                inputs.push(w[..w.len() - 1].to_vec());
                targets.push(w[1..].iter().enumerate().map(|(t, &y)| if t < from { IGNORE } else { y }).collect());
                ratios.push(ratios_of(r, w.len() - 1));
            }
        }
        (Objective::Cloze { mask }, Some((ratio, last_only))) => {
            for &((w, r), _) in ws {
                let mut inp = w.to_vec();
                if last_only {
                    // Next-item fine-tuning on a random prefix, as RecBole's per-prefix samples.
                    let cut = rng.random_range(1..=w.len());
                    inp.truncate(cut);
                }
                let mut rat = ratios_of(r, inp.len());
                let mut tgt = vec![IGNORE; inp.len()];
                for t in 0..inp.len() {
                    let hit = if last_only { t == inp.len() - 1 } else { rng.random::<f32>() < ratio };
                    if hit {
                        tgt[t] = w[t];
                        inp[t] = mask;
                        // A target's own ratio is never an input.
                        rat[t] = None;
                    }
                }
                inputs.push(inp);
                targets.push(tgt);
                ratios.push(rat);
            }
        }
    }
    let width = inputs.iter().map(Vec::len).max().unwrap_or(1).max(1);
    let mut data = Vec::with_capacity(inputs.len() * width);
    let (mut rows, mut labels) = (Vec::new(), Vec::new());
    for (b, (inp, tgt)) in inputs.iter().zip(&targets).enumerate() {
        data.extend_from_slice(inp);
        data.extend(std::iter::repeat_n(pad, width - inp.len()));
        for (t, &y) in tgt.iter().enumerate() {
            if y != IGNORE {
                rows.push((b * width + t) as u32);
                labels.push(y);
            }
        }
    }
    let ids = Tensor::from_vec(data, (inputs.len(), width), device)?;
    let completion = match model.reads_completion() {
        true => Some(Completion::from_rows(&ratios.iter().map(Vec::as_slice).collect::<Vec<_>>(), width, device)?),
        false => None,
    };
    Ok(Batch { ids, lens: inputs.iter().map(|i| i.len().max(1)).collect(), completion, rows, labels })
}

/// Trains the encoder `cfg` describes on `data`, with early stopping on the validation metric,
/// and returns it with its best weights.
pub fn train(cfg: &TrainConfig, data: &SequenceData, device: &Device, opts: &TrainOptions) -> Result<Trained, TrainError> {
    cfg.check()?;
    data.validate()?;
    cfg.check_memory(data.n_items)?;
    let t = &cfg.train;
    let metric = ValidMetric::parse(&t.valid_metric)?;
    let n_items = data.n_items;
    if cfg.fusion.is_some() != opts.fusion.is_some() {
        return Err(TrainError::Config("the config's [fusion] and the prepared fusion inputs must come together (see train::fusion::prepare)".into()));
    }
    let mut fusion = opts.fusion.clone();
    if let (Some(spec), Some(fc)) = (fusion.as_mut(), cfg.fusion.as_ref()) {
        if spec.id_present.is_none() {
            super::fusion::mask_cold_ids(spec, fc, n_items, &data.train, device)?;
        }
    }
    let mut params = Params::new(t.seed, device);
    let model = cfg.encoder.build(n_items, &mut params, fusion.as_ref())?;
    // What the checkpoints record as the data they were trained on: the split data, and for a
    // content-aware encoder also its plan and features.
    let trained_on = match &fusion {
        Some(f) if !f.digest.is_empty() => crate::artifact::sha256_hex(format!("{} {}", data.digest, f.digest).as_bytes()),
        _ => data.digest.clone(),
    };
    let mut opt = AdamW::new(params.named_vars(), ParamsAdamW { lr: t.lr, weight_decay: t.weight_decay, ..ParamsAdamW::default() })?;
    if model.reads_completion() && data.train_completion.len() != data.train.len() {
        return Err(TrainError::Config(
            "completion = \"embed\" needs completion ratios: train on prepared data (`[data] prepared`), not a sequences file".into(),
        ));
    }
    let all_windows: Vec<(Window, usize)> = context_spans(&data.train, model.objective(), model.max_len(), t.min_context)
        .into_iter()
        .map(|(s, a, b, from)| ((&data.train[s][a..b], data.train_completion.get(s).filter(|r| r.len() == data.train[s].len()).map(|r| &r[a..b])), from))
        .collect();
    if all_windows.is_empty() {
        return Err(TrainError::Data("no training sequence has enough items".into()));
    }
    let mask_cfg = match (&cfg.encoder, model.objective()) {
        (crate::models::EncoderConfig::Bert4Rec(c), Objective::Cloze { .. }) => Some((c.mask_ratio, c.ft_ratio)),
        _ => None,
    };
    // BERT4Rec: each window appears `mask_copies` times per epoch, each copy masked on its own.
    let copies = match &cfg.encoder {
        crate::models::EncoderConfig::Bert4Rec(c) => c.mask_copies.max(1),
        _ => 1,
    };

    let ckpt_dir = opts.out_dir.as_ref().map(|d| d.join("checkpoints"));
    let mut start_epoch = 0;
    let mut best: Option<(f64, usize)> = None;
    let mut bad_evals = 0;
    let mut valid_history = Vec::new();
    let mut best_weights: Option<Vec<(String, Tensor)>> = None;
    if opts.resume {
        let dir = ckpt_dir.as_ref().ok_or_else(|| TrainError::Config("--resume needs an output directory".into()))?;
        if let Some(path) = checkpoint::latest(dir)? {
            let (meta, tensors) = checkpoint::read(&path, device)?;
            checkpoint::check_matches(&meta, &path, cfg, n_items, &trained_on)?;
            if meta.epoch > t.epochs {
                return Err(TrainError::Mismatch { path, reason: format!("it has trained {} epochs, more than the {} asked for", meta.epoch, t.epochs) });
            }
            checkpoint::load_params(&params, &tensors, &path)?;
            opt.load_state(&tensors, meta.steps).map_err(|reason| TrainError::Mismatch { path: path.clone(), reason })?;
            start_epoch = meta.epoch;
            best = meta.best;
            bad_evals = meta.bad_evals;
            valid_history = meta.valid_history.clone();
            if best.is_some() {
                let best_path = opts.out_dir.as_ref().expect("checked above").join("best.toml");
                let (bmeta, btensors) = checkpoint::read(&best_path, device)?;
                checkpoint::check_matches(&bmeta, &best_path, cfg, n_items, &trained_on)?;
                let mut w: Vec<(String, Tensor)> = btensors.into_iter().collect();
                w.sort_by(|a, b| a.0.cmp(&b.0));
                best_weights = Some(w);
            }
            tracing::info!("resuming from {} after epoch {start_epoch}", path.display());
        }
    }
    let resumed_from = start_epoch;

    let meta_for = |epoch: usize, steps: usize, best: Option<(f64, usize)>, bad_evals: usize, hist: &[f64]| Meta {
        format: checkpoint::FORMAT,
        encoder: cfg.encoder.name().into(),
        n_items,
        epoch,
        steps,
        best,
        bad_evals,
        valid_history: hist.to_vec(),
        weights: String::new(),
        sha256: String::new(),
        data: trained_on.clone(),
        seal: String::new(),
        config: cfg.clone(),
    };

    let mut losses = Vec::new();
    let mut epoch_seconds = Vec::new();
    let mut valid_seconds = Vec::new();
    let mut epoch = start_epoch;
    let stopped_early = bad_evals >= t.patience && best.is_some();
    while epoch < t.epochs && !stopped_early {
        let mut rng = StdRng::seed_from_u64(mix(t.seed, epoch, 1));
        let ctx = TrainCtx::new(mix(t.seed, epoch, 2));
        let mut order: Vec<(Window, usize)> = (0..copies).flat_map(|_| all_windows.iter().copied()).collect();
        order.shuffle(&mut rng);
        let objective = model.objective();
        let counts: Vec<usize> = order.iter().map(|((w, _), from)| targets_of(w, objective) - from).collect();
        let steps = plan_steps(&counts, t.batch_unit, t.batch_size, objective == Objective::NextItem);
        let n_batches = steps.len();
        let bar = if opts.progress { ProgressBar::new(n_batches as u64) } else { ProgressBar::hidden() };
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} batches {msg} [{elapsed_precise}<{eta_precise}]")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("{} epoch {}", cfg.encoder.name(), epoch + 1));
        let started = Instant::now();
        let (mut loss_sum, mut loss_n, mut n_targets) = (0.0, 0usize, 0usize);
        for step in &steps {
            let chunk: Vec<Piece> = step
                .iter()
                .map(|&(i, a, b)| {
                    let ((w, r), from) = order[i];
                    let (a, b) = (from + a, from + b);
                    // A next-item window cut after target `b - 1`, which is item `b`.
                    let end = if objective == Objective::NextItem { b + 1 } else { w.len() };
                    ((&w[..end], r.map(|r| &r[..end])), a)
                })
                .collect();
            let mask = mask_cfg.map(|(ratio, ft)| (ratio, rng.random::<f32>() < ft));
            let batch = make_batch(&chunk, model.as_ref(), mask, &mut rng, device)?;
            n_targets += step.iter().map(|&(_, a, b)| b - a).sum::<usize>();
            bar.inc(1);
            if batch.labels.is_empty() {
                continue;
            }
            // The item table once per step (a fusion plan runs here), at the input and for scoring.
            let all_rows = model.embedding_table(Some(&ctx))?;
            let hidden = model.forward(&all_rows, &batch.ids, &batch.lens, batch.completion.as_ref(), Some(&ctx))?;
            let (b, l, d) = hidden.dims3()?;
            let rows = Tensor::from_vec(batch.rows.clone(), batch.rows.len(), device)?;
            let h = hidden.reshape((b * l, d))?.index_select(&rows, 0)?;
            let table = all_rows.narrow(0, 0, n_items)?;
            let bias = model.item_bias()?;
            let loss = match t.loss {
                LossKind::Ce => linear_cross_entropy(&h, &table, bias.as_ref(), &batch.labels)?,
                LossKind::Bce => {
                    let negs: Vec<u32> = batch
                        .labels
                        .iter()
                        .map(|&y| loop {
                            let j = rng.random_range(0..n_items as u32);
                            if j != y || n_items == 1 {
                                break j;
                            }
                        })
                        .collect();
                    let pos = embed(&table, &Tensor::new(batch.labels.as_slice(), device)?)?;
                    let neg = embed(&table, &Tensor::new(negs.as_slice(), device)?)?;
                    let (mut sp, mut sn) = ((&h * pos)?.sum(1)?, (&h * neg)?.sum(1)?);
                    if let Some(b) = &bias {
                        sp = (sp + b.index_select(&Tensor::new(batch.labels.as_slice(), device)?, 0)?)?;
                        sn = (sn + b.index_select(&Tensor::new(negs.as_slice(), device)?, 0)?)?;
                    }
                    bce_sampled(&sp, &sn)?
                }
            };
            let grads = loss.backward()?;
            opt.step(&grads)?;
            let v = loss.to_scalar::<f32>()? as f64;
            loss_sum += v;
            loss_n += 1;
            let secs = started.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!("loss {:.4} · {:.0} targets/s", loss_sum / loss_n as f64, n_targets as f64 / secs));
        }
        let secs = started.elapsed().as_secs_f64();
        bar.finish_and_clear();
        let mean_loss = loss_sum / loss_n.max(1) as f64;
        losses.push(mean_loss);
        epoch_seconds.push(secs);
        epoch += 1;

        let validate = !data.valid.is_empty() && (epoch % t.eval_every == 0 || epoch == t.epochs);
        let mut improved = false;
        if validate {
            let valid_started = Instant::now();
            let mut sink = NativeSink::new(metric, n_items as u32);
            evaluate(model.as_ref(), &data.valid, &cfg.eval, &mut sink, device)?;
            valid_seconds.push(valid_started.elapsed().as_secs_f64());
            let v = sink.value();
            valid_history.push(v);
            if best.is_none_or(|(b, _)| v > b) {
                best = Some((v, epoch));
                bad_evals = 0;
                improved = true;
                best_weights = Some(params.named_vars().into_iter().map(|(n, var)| Ok((n, var.as_tensor().copy()?))).collect::<Result<_, TrainError>>()?);
            } else {
                bad_evals += 1;
            }
            tracing::info!("epoch {epoch}: loss {mean_loss:.4}, valid {} {v:.4} ({secs:.2}s)", t.valid_metric);
        } else {
            tracing::info!("epoch {epoch}: loss {mean_loss:.4} ({secs:.2}s)");
        }
        if let (Some(out), Some(dir)) = (&opts.out_dir, &ckpt_dir) {
            if improved {
                let w = best_weights.as_ref().expect("set when improved");
                checkpoint::write(out, "best", w, meta_for(epoch, opt.steps(), best, bad_evals, &valid_history))?;
            }
            let mut tensors: Vec<(String, Tensor)> = params.named_vars().into_iter().map(|(n, v)| (n, v.as_tensor().clone())).collect();
            tensors.extend(opt.state());
            checkpoint::write(dir, &format!("epoch-{epoch:04}"), &tensors, meta_for(epoch, opt.steps(), best, bad_evals, &valid_history))?;
            checkpoint::prune(dir, epoch);
        }
        if best.is_some() && bad_evals >= t.patience {
            tracing::info!("early stop after epoch {epoch}: no improvement in {} validations", t.patience);
            break;
        }
    }
    if let Some(w) = &best_weights {
        let map = w.iter().cloned().collect();
        checkpoint::load_params(&params, &map, std::path::Path::new("best weights"))?;
    }
    Ok(Trained { model, params, best, epochs: epoch, resumed_from, valid_history, losses, epoch_seconds, valid_seconds })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain reference for next-item steps: every target in epoch order, one at a time,
    /// cut into groups of `b`.
    fn reference(targets: &[usize], b: usize) -> Vec<Vec<(usize, usize)>> {
        let all: Vec<(usize, usize)> = targets.iter().enumerate().flat_map(|(i, &n)| (0..n).map(move |t| (i, t))).collect();
        all.chunks(b).map(<[_]>::to_vec).collect()
    }

    fn flatten(steps: &[Vec<(usize, usize, usize)>]) -> Vec<Vec<(usize, usize)>> {
        steps.iter().map(|s| s.iter().flat_map(|&(i, a, b)| (a..b).map(move |t| (i, t))).collect()).collect()
    }

    #[test]
    fn next_item_steps_hold_exactly_batch_size_targets_each_once() {
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..300 {
            let n = rng.random_range(0..40);
            let targets: Vec<usize> = (0..n).map(|_| if rng.random::<f32>() < 0.1 { 0 } else { rng.random_range(1..=50) }).collect();
            let b = rng.random_range(1..200);
            let steps = plan_steps(&targets, BatchUnit::Targets, b, true);
            assert_eq!(flatten(&steps), reference(&targets, b), "targets {targets:?}, batch {b}");
            assert_eq!(steps.len(), targets.iter().sum::<usize>().div_ceil(b));
            // A window appears at most once per step, and only the first and last piece of a step
            // are partial windows.
            for s in &steps {
                for (k, &(i, a, e)) in s.iter().enumerate() {
                    assert!(a < e && e <= targets[i]);
                    assert!(k == 0 || a == 0, "{s:?}");
                    assert!(k + 1 == s.len() || e == targets[i], "{s:?}");
                }
            }
        }
    }

    #[test]
    fn cloze_steps_keep_windows_whole_and_windows_unit_counts_windows() {
        let mut rng = StdRng::seed_from_u64(4);
        for _ in 0..300 {
            let targets: Vec<usize> = (0..rng.random_range(0..40)).map(|_| rng.random_range(1..=50)).collect();
            let b = rng.random_range(1..200);
            let steps = plan_steps(&targets, BatchUnit::Targets, b, false);
            let order: Vec<usize> = steps
                .iter()
                .flatten()
                .map(|&(i, a, e)| {
                    assert_eq!((a, e), (0, targets[i]));
                    i
                })
                .collect();
            assert_eq!(order, (0..targets.len()).collect::<Vec<_>>());
            for s in &steps {
                let n: usize = s.iter().map(|&(_, a, e)| e - a).sum();
                assert!(n <= b || s.len() == 1, "{s:?} over {b}");
            }
            // Greedy: a step closes only when the next window would not fit.
            for w in steps.windows(2) {
                let n: usize = w[0].iter().map(|&(_, a, e)| e - a).sum();
                assert!(n + targets[w[1][0].0] > b, "{:?} then {:?}", w[0], w[1]);
            }
            let steps = plan_steps(&targets, BatchUnit::Windows, b, true);
            assert_eq!(steps.len(), targets.len().div_ceil(b));
            assert!(steps.iter().flatten().enumerate().all(|(k, &(i, a, e))| i == k && a == 0 && e == targets[i]));
        }
    }

    #[test]
    fn context_windows_score_every_target_once_with_enough_items_before_it() {
        let mut rng = StdRng::seed_from_u64(5);
        for _ in 0..200 {
            let train: Vec<Vec<u32>> = (0..rng.random_range(1..6)).map(|_| (0..rng.random_range(0..120)).collect()).collect();
            let max_len = rng.random_range(1..20);
            let context = rng.random_range(0..max_len + 3);
            // (sequence, target position in it) for every scored target, and the items it sees.
            let mut scored: Vec<(usize, usize)> = Vec::new();
            for (s, a, b, from) in context_spans(&train, Objective::NextItem, max_len, context) {
                assert!(b - a <= max_len + 1 && from < b - a, "{a}..{b} from {from}");
                for t in from..b - a - 1 {
                    let pos = a + t + 1;
                    scored.push((s, pos));
                    assert!(t + 1 >= context.min(max_len - 1).min(pos), "target at {pos} sees {} items (context {context}, max_len {max_len})", t + 1);
                }
            }
            scored.sort_unstable();
            let every: Vec<(usize, usize)> = train.iter().enumerate().flat_map(|(s, q)| (1..q.len()).map(move |p| (s, p))).collect();
            assert_eq!(scored, every);
            if context == 0 {
                let plain: Vec<_> = window_spans(&train, Objective::NextItem, max_len).into_iter().map(|(s, a, b)| (s, a, b, 0)).collect();
                assert_eq!(context_spans(&train, Objective::NextItem, max_len, 0), plain);
            }
        }
    }

    #[test]
    fn a_mutated_plan_fails_the_reference() {
        // The checks above can fail: dropping a target or moving one across a step boundary does.
        let targets = [5, 3, 7];
        let mut steps = plan_steps(&targets, BatchUnit::Targets, 4, true);
        assert_eq!(flatten(&steps), reference(&targets, 4));
        steps[1][0].2 -= 1;
        assert_ne!(flatten(&steps), reference(&targets, 4));
    }
}
