//! ID encoders: gradients reach every parameter, training learns a planted pattern and beats
//! popularity, reruns are identical, checkpoints resume exactly and refuse what does not match,
//! and the metric plugins evaluate a trained encoder.
mod common;

use candle_core::{Device, Tensor};
use encore::eval::MetricSuite;
use encore::models::{Bert4RecConfig, EncoderConfig, Gru4RecConfig, Params, SasRecConfig, TrainCtx};
use encore::train::loss::{cross_entropy, IGNORE};
use encore::train::scoring::{evaluate, MetricKind, NativeSink, ValidMetric};
use encore::train::{self, BatchUnit, EvalParams, SequenceData, TrainConfig, TrainError, TrainOptions, TrainParams};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const N_ITEMS: usize = 40;

fn sasrec() -> EncoderConfig {
    EncoderConfig::SasRec(SasRecConfig {
        hidden_size: 32,
        n_layers: 2,
        n_heads: 2,
        inner_size: 64,
        hidden_dropout: 0.1,
        attn_dropout: 0.1,
        max_len: 10,
        ..Default::default()
    })
}
fn bert4rec() -> EncoderConfig {
    // One masked copy per window (the default is 4) keeps these tests' time.
    EncoderConfig::Bert4Rec(Bert4RecConfig {
        hidden_size: 32,
        n_layers: 2,
        n_heads: 2,
        inner_size: 64,
        hidden_dropout: 0.1,
        attn_dropout: 0.1,
        max_len: 10,
        mask_copies: 1,
        ..Default::default()
    })
}
fn gru4rec() -> EncoderConfig {
    EncoderConfig::Gru4Rec(Gru4RecConfig { embedding_size: 32, hidden_size: 32, dropout_prob: 0.1, max_len: 10, ..Default::default() })
}

/// Sequences where item i is followed by (i + 1) mod n nine times in ten.
fn pattern_data(n_seqs: usize, len: usize, seed: u64) -> SequenceData {
    let mut rng = StdRng::seed_from_u64(seed);
    let seqs = (0..n_seqs)
        .map(|_| {
            let mut s = vec![rng.random_range(0..N_ITEMS as u32)];
            while s.len() < len {
                let last = *s.last().unwrap();
                s.push(if rng.random::<f32>() < 0.9 { (last + 1) % N_ITEMS as u32 } else { rng.random_range(0..N_ITEMS as u32) });
            }
            s
        })
        .collect();
    SequenceData::leave_one_out(N_ITEMS, seqs)
}

fn config(encoder: EncoderConfig, epochs: usize) -> TrainConfig {
    TrainConfig {
        data: None,
        encoder,
        // 32 whole windows per step (≈ 250 targets): the step size these tests were tuned at.
        train: TrainParams {
            epochs,
            batch_size: 32,
            batch_unit: BatchUnit::Windows,
            lr: 5e-3,
            seed: 7,
            valid_metric: "recall@10".into(),
            patience: 50,
            ..Default::default()
        },
        eval: EvalParams { mask_history: false, ..Default::default() },
        fusion: None,
    }
}

fn recall10(model: &dyn encore::models::SeqEncoder, data: &SequenceData) -> f64 {
    let mut sink = NativeSink::new(ValidMetric { kind: MetricKind::Recall, k: 10 }, data.n_items as u32);
    evaluate(model, &data.test, &EvalParams { mask_history: false, ..Default::default() }, &mut sink, &Device::Cpu).unwrap();
    sink.value()
}

/// Recall@10 of ranking items by training popularity.
fn popularity_recall10(data: &SequenceData) -> f64 {
    let mut count = vec![0usize; data.n_items];
    for s in &data.train {
        for &i in s {
            count[i as usize] += 1;
        }
    }
    let mut order: Vec<u32> = (0..data.n_items as u32).collect();
    order.sort_by(|&a, &b| count[b as usize].cmp(&count[a as usize]).then(a.cmp(&b)));
    let top = &order[..10];
    data.test.iter().map(|c| encore::eval::native::recall(top, &c.targets)).sum::<f64>() / data.test.len() as f64
}

#[test]
fn gradients_reach_every_trainable_tensor() {
    for enc in [sasrec(), bert4rec(), gru4rec()] {
        let mut params = Params::new(1, &Device::Cpu);
        let model = enc.build(N_ITEMS, &mut params, None).unwrap();
        let seqs: Vec<Vec<u32>> = vec![vec![1, 2, 3, 4, 5, 6], vec![7, 8, 9], vec![10, 11, 12, 13, 14, 15, 16, 17]];
        let refs: Vec<&[u32]> = seqs.iter().map(|s| s.as_slice()).collect();
        let (mut ids, lens) = encore::models::pad_batch(&refs, 10, model.pad(), &Device::Cpu).unwrap();
        if let encore::models::Objective::Cloze { mask } = model.objective() {
            // Mask one position per sequence so the mask token's embedding is used.
            let mut v = ids.to_vec2::<u32>().unwrap();
            for (row, &l) in v.iter_mut().zip(&lens) {
                row[l / 2] = mask;
            }
            ids = Tensor::new(v, &Device::Cpu).unwrap();
        }
        let ctx = TrainCtx::new(3);
        let table = model.embedding_table(Some(&ctx)).unwrap();
        let hidden = model.forward(&table, &ids, &lens, None, Some(&ctx)).unwrap();
        let (b, l, d) = hidden.dims3().unwrap();
        let mut logits = hidden.reshape((b * l, d)).unwrap().matmul(&model.item_table().unwrap().t().unwrap()).unwrap();
        if let Some(bias) = model.item_bias().unwrap() {
            logits = logits.broadcast_add(&bias).unwrap();
        }
        let labels: Vec<u32> = (0..b * l).map(|r| if r % l < lens[r / l] { (r % N_ITEMS) as u32 } else { IGNORE }).collect();
        let grads = cross_entropy(&logits, &labels).unwrap().backward().unwrap();
        let vars = params.named_vars();
        assert!(vars.len() >= 4);
        for (name, var) in vars {
            let g = grads.get(&var).unwrap_or_else(|| panic!("{}: no gradient reaches {name}", enc.name()));
            let norm = g.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(norm > 0.0 && norm.is_finite(), "{}: gradient of {name} is {norm}", enc.name());
        }
    }
}

#[test]
fn the_last_position_shortcut_equals_the_full_forward() {
    // Evaluation runs the transformers' last layer at each row's last position only, and the
    // GRU's last layer on host buffers.
    let two_grus = EncoderConfig::Gru4Rec(Gru4RecConfig { embedding_size: 16, hidden_size: 24, num_layers: 2, max_len: 10, ..Default::default() });
    for enc in [sasrec(), bert4rec(), gru4rec(), two_grus] {
        let mut params = Params::new(5, &Device::Cpu);
        let model = enc.build(N_ITEMS, &mut params, None).unwrap();
        let seqs: Vec<Vec<u32>> = vec![vec![1, 2, 3, 4, 5, 6], vec![7], vec![10, 11, 12, 13, 14, 15, 16, 17, 18, 19], vec![20, 21, 22]];
        let refs: Vec<&[u32]> = seqs.iter().map(|s| s.as_slice()).collect();
        let (ids, lens) = encore::models::pad_batch(&refs, 10, model.pad(), &Device::Cpu).unwrap();
        let table = model.embedding_table(None).unwrap();
        let full = encore::models::gather_last(&model.forward(&table, &ids, &lens, None, None).unwrap(), &lens).unwrap();
        let last = model.forward_last(&table, &ids, &lens, None).unwrap();
        assert_eq!(full.dims(), last.dims());
        let diff = (full - &last).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        let scale = last.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(scale > 0.1 && diff < 1e-5, "{}: max difference {diff} (values up to {scale})", enc.name());
    }
}

#[test]
fn encoders_learn_a_planted_pattern_and_beat_popularity() {
    let data = pattern_data(300, 12, 1);
    let pop = popularity_recall10(&data);
    // BERT4Rec with its default 4 masked copies per window: one copy learns the pattern too slowly.
    let bert4 = match bert4rec() {
        EncoderConfig::Bert4Rec(c) => EncoderConfig::Bert4Rec(Bert4RecConfig { mask_copies: 4, ..c }),
        _ => unreachable!(),
    };
    for (enc, epochs) in [(sasrec(), 8), (gru4rec(), 8), (bert4, 12)] {
        let name = enc.name();
        let started = std::time::Instant::now();
        let t = train::train(&config(enc, epochs), &data, &Device::Cpu, &TrainOptions::default()).unwrap();
        let r = recall10(t.model.as_ref(), &data);
        let per_epoch = t.epoch_seconds.iter().sum::<f64>() / t.epoch_seconds.len() as f64;
        eprintln!(
            "{name}: loss {:.3} → {:.3}, test Recall@10 {r:.3} (popularity {pop:.3}), {per_epoch:.3} s/epoch, {:.1} s in all",
            t.losses[0],
            t.losses.last().unwrap(),
            started.elapsed().as_secs_f64()
        );
        assert!(t.losses.last().unwrap() < &(t.losses[0] * 0.9), "{name}: loss did not fall: {:?}", t.losses);
        assert!(r > pop + 0.3, "{name}: Recall@10 {r} does not beat popularity {pop}");
    }
}

#[test]
fn a_rerun_gives_identical_results() {
    let data = pattern_data(120, 10, 2);
    for enc in [sasrec(), bert4rec(), gru4rec()] {
        let run = || {
            let t = train::train(&config(enc.clone(), 2), &data, &Device::Cpu, &TrainOptions::default()).unwrap();
            (t.losses, t.valid_history, recall10(t.model.as_ref(), &data))
        };
        assert_eq!(run(), run(), "{}", enc.name());
    }
}

#[test]
fn batch_size_counts_targets_so_an_epoch_takes_recboles_steps() {
    // RecBole's samples are every prefix (one target each); an epoch of `batch_size` of them
    // takes ⌈targets / batch_size⌉ steps, and so does encore's by default. Counting windows
    // instead takes ⌈windows / batch_size⌉.
    let data = pattern_data(60, 10, 5);
    let targets: usize = data.train.iter().map(|s| s.len() - 1).sum();
    for (enc, unit, batch, steps) in [
        (sasrec(), BatchUnit::Targets, 7, targets.div_ceil(7)),
        (gru4rec(), BatchUnit::Targets, 64, targets.div_ceil(64)),
        (gru4rec(), BatchUnit::Windows, 7, data.train.len().div_ceil(7)),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(enc.clone(), 1);
        (cfg.train.batch_unit, cfg.train.batch_size) = (unit, batch);
        let opts = TrainOptions { out_dir: Some(dir.path().to_path_buf()), ..Default::default() };
        train::train(&cfg, &data, &Device::Cpu, &opts).unwrap();
        let meta = std::fs::read_to_string(dir.path().join("checkpoints/epoch-0001.toml")).unwrap();
        assert!(meta.contains(&format!("\nsteps = {steps}\n")), "{} {unit:?} {batch}: expected {steps} steps\n{meta}", enc.name());
    }
}

#[test]
fn resuming_from_a_checkpoint_continues_exactly() {
    let data = pattern_data(120, 10, 3);
    let dir = tempfile::tempdir().unwrap();
    let straight = train::train(&config(sasrec(), 4), &data, &Device::Cpu, &TrainOptions::default()).unwrap();
    let opts = TrainOptions { out_dir: Some(dir.path().to_path_buf()), resume: true, progress: false, fusion: None };
    let first = train::train(&config(sasrec(), 2), &data, &Device::Cpu, &opts).unwrap();
    assert_eq!(first.resumed_from, 0);
    let resumed = train::train(&config(sasrec(), 4), &data, &Device::Cpu, &opts).unwrap();
    assert_eq!(resumed.resumed_from, 2);
    assert_eq!(resumed.valid_history, straight.valid_history);
    assert_eq!(recall10(resumed.model.as_ref(), &data), recall10(straight.model.as_ref(), &data));
    // Only the newest epoch checkpoint is kept.
    let names: Vec<String> =
        std::fs::read_dir(dir.path().join("checkpoints")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().all(|n| n.starts_with("epoch-0004")), "{names:?}");
}

#[test]
fn a_corrupt_or_mismatched_checkpoint_is_refused() {
    let data = pattern_data(60, 8, 4);
    let dir = tempfile::tempdir().unwrap();
    let opts = TrainOptions { out_dir: Some(dir.path().to_path_buf()), resume: true, progress: false, fusion: None };
    train::train(&config(sasrec(), 1), &data, &Device::Cpu, &opts).unwrap();

    // Another hidden size: refused, naming the key.
    let mut other = config(sasrec(), 2);
    if let EncoderConfig::SasRec(c) = &mut other.encoder {
        c.hidden_size = 16;
    }
    let err = train::train(&other, &data, &Device::Cpu, &opts).err().expect("mismatched config must be refused");
    assert!(matches!(err, TrainError::Mismatch { .. }) && err.to_string().contains("hidden_size"), "{err}");

    // Another item count: refused.
    let mut bigger = data.clone();
    bigger.n_items += 5;
    let err = train::train(&config(sasrec(), 2), &bigger, &Device::Cpu, &opts).err().expect("item count mismatch must be refused");
    assert!(err.to_string().contains("items"), "{err}");

    // Other data with the same item count: refused (it used to resume and report the other
    // data's best validation score).
    let mut other_data = pattern_data(60, 8, 5);
    other_data.n_items = data.n_items;
    other_data.digest = "b".repeat(64);
    let err = train::train(&config(sasrec(), 2), &other_data, &Device::Cpu, &opts).err().expect("other data must be refused");
    assert!(matches!(err, TrainError::Mismatch { .. }) && err.to_string().contains("other data"), "{err}");

    // An edited epoch, best or step count: refused, not believed.
    let meta = dir.path().join("checkpoints/epoch-0001.toml");
    let text = std::fs::read_to_string(&meta).unwrap();
    for (from, to) in [("epoch = 1", "epoch = 7"), ("steps = ", "steps = 9"), ("bad_evals = 0", "bad_evals = 1")] {
        assert!(text.contains(from), "{text}");
        std::fs::write(&meta, text.replacen(from, to, 1)).unwrap();
        let err = train::train(&config(sasrec(), 2), &data, &Device::Cpu, &opts).err().expect("an edited checkpoint must be refused");
        assert!(matches!(err, TrainError::Corrupt { .. }) && err.to_string().contains("seal"), "{from} -> {to}: {err}");
    }
    std::fs::write(&meta, &text).unwrap();
    // `weights` naming a file elsewhere is refused before it is opened (it read /dev/zero until
    // memory ran out), even with a matching seal.
    for bad in ["/dev/zero", "../../etc/hostname", "sub/x.safetensors", ""] {
        let mut m: encore::train::checkpoint::Meta = toml::from_str(&text).unwrap();
        m.weights = bad.into();
        std::fs::write(&meta, encore::train::checkpoint::sealed_text(&mut m, |m: &mut encore::train::checkpoint::Meta| &mut m.seal).unwrap()).unwrap();
        let err = train::train(&config(sasrec(), 2), &data, &Device::Cpu, &opts).err().expect("a weights path elsewhere must be refused");
        assert!(err.to_string().contains("must name a file next to it"), "{bad}: {err}");
    }
    std::fs::write(&meta, &text).unwrap();

    // A truncated weights file: named in the error.
    let weights = dir.path().join("checkpoints/epoch-0001.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    let err = train::train(&config(sasrec(), 2), &data, &Device::Cpu, &opts).err().expect("a truncated checkpoint must be refused");
    // Named by its versioned file (epoch-0001.<sha>.safetensors; epoch-0001.safetensors links to it).
    assert!(matches!(err, TrainError::Corrupt { .. }) && err.to_string().contains("epoch-0001.") && err.to_string().contains(".safetensors"), "{err}");

    // A flipped byte with the length intact: still caught.
    let mut flipped = bytes.clone();
    let at = flipped.len() - 3;
    flipped[at] ^= 0x40;
    std::fs::write(&weights, &flipped).unwrap();
    let err = train::train(&config(sasrec(), 2), &data, &Device::Cpu, &opts).err().expect("a corrupt checkpoint must be refused");
    assert!(err.to_string().contains("epoch-0001.") && err.to_string().contains(".safetensors"), "{err}");
}

#[test]
fn metric_plugins_evaluate_a_trained_encoder_and_sampling_is_seeded() {
    let data = pattern_data(150, 10, 5);
    let t = train::train(&config(gru4rec(), 3), &data, &Device::Cpu, &TrainOptions::default()).unwrap();
    let plugins = [common::load("recall"), common::load("ndcg")];
    let params = EvalParams { mask_history: false, ..Default::default() };
    let mut suite = MetricSuite::new(&plugins, &[10], N_ITEMS as u32).unwrap();
    evaluate(t.model.as_ref(), &data.test, &params, &mut suite, &Device::Cpu).unwrap();
    let report = suite.finish(None).unwrap();
    let native = recall10(t.model.as_ref(), &data);
    assert!((report.get("recall", 10).unwrap() - native).abs() < 1e-12);

    let sampled = EvalParams { sampled_negatives: 20, sample_seed: 9, mask_history: false, ..Default::default() };
    let run = || {
        let mut sink = NativeSink::new(ValidMetric { kind: MetricKind::Recall, k: 10 }, N_ITEMS as u32);
        evaluate(t.model.as_ref(), &data.test, &sampled, &mut sink, &Device::Cpu).unwrap();
        sink.value()
    };
    let s = run();
    assert_eq!(s, run());
    assert!(s >= native, "ranking among 21 candidates ({s}) should be easier than among all {N_ITEMS} ({native})");
}

#[test]
fn configs_refuse_unknown_keys() {
    let ok = "[encoder]\nkind = \"sasrec\"\nhidden_size = 32\n[train]\nepochs = 3\n";
    let cfg = TrainConfig::from_toml(ok).unwrap();
    assert_eq!(cfg.encoder.max_len(), 50);
    for (bad, key) in [
        ("[encoder]\nkind = \"sasrec\"\nhiden_size = 32\n", "hiden_size"),
        ("[encoder]\nkind = \"gru4rec\"\n[train]\nepoch = 3\n", "epoch"),
        ("[encoder]\nkind = \"bert4rec\"\n[eval]\nks = [10]\nmask = true\n", "mask"),
    ] {
        let err = TrainConfig::from_toml(bad).unwrap_err().to_string();
        assert!(err.contains(key), "{err}");
    }
    assert!(TrainConfig::from_toml("[encoder]\nkind = \"lstm\"\n").is_err());
    assert!(TrainConfig::from_toml("[encoder]\nkind = \"sasrec\"\n[train]\nvalid_metric = \"auc@3\"\n").is_err());
}

#[test]
fn the_completion_input_gets_gradients_and_unknown_ratios_use_their_own_vector() {
    use encore::models::{Completion, CompletionMode};
    let embed = |e: EncoderConfig| match e {
        EncoderConfig::SasRec(c) => EncoderConfig::SasRec(SasRecConfig { completion: CompletionMode::Embed, ..c }),
        EncoderConfig::Bert4Rec(c) => EncoderConfig::Bert4Rec(Bert4RecConfig { completion: CompletionMode::Embed, ..c }),
        EncoderConfig::Gru4Rec(c) => EncoderConfig::Gru4Rec(Gru4RecConfig { completion: CompletionMode::Embed, ..c }),
    };
    for enc in [embed(sasrec()), embed(bert4rec()), embed(gru4rec())] {
        let mut params = Params::new(1, &Device::Cpu);
        let model = enc.build(N_ITEMS, &mut params, None).unwrap();
        assert!(model.reads_completion(), "{}", enc.name());
        let seqs: Vec<Vec<u32>> = vec![vec![1, 2, 3, 4, 5, 6], vec![7, 8, 9]];
        let ratios: Vec<Vec<Option<f32>>> = vec![vec![Some(0.9), None, Some(0.1), Some(1.0), Some(0.5), None], vec![Some(0.2), Some(0.3), None]];
        let refs: Vec<&[u32]> = seqs.iter().map(|s| s.as_slice()).collect();
        let (ids, lens) = encore::models::pad_batch(&refs, 10, model.pad(), &Device::Cpu).unwrap();
        let c = Completion::from_rows(&ratios.iter().map(Vec::as_slice).collect::<Vec<_>>(), ids.dim(1).unwrap(), &Device::Cpu).unwrap();
        let table = model.embedding_table(None).unwrap();
        assert!(model.forward(&table, &ids, &lens, None, None).is_err(), "{}: ratios are required", enc.name());
        let hidden = model.forward(&table, &ids, &lens, Some(&c), Some(&TrainCtx::new(2))).unwrap();
        let grads = hidden.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        for (name, var) in params.named_vars().into_iter().filter(|(n, _)| n.starts_with("completion.")) {
            let g = grads.get(&var).unwrap_or_else(|| panic!("{}: no gradient reaches {name}", enc.name()));
            assert!(g.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() > 0.0, "{}: {name}", enc.name());
        }
        // The ratio changes the user vector; an unknown ratio is not the same as a ratio of 0.
        let hist: Vec<&[u32]> = vec![&[1, 2, 3]];
        let uv =
            |r: Vec<Option<f32>>| model.user_vectors(&table, &hist, &[r.as_slice()], &Device::Cpu).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let (high, zero, unknown) = (uv(vec![Some(1.0); 3]), uv(vec![Some(0.0); 3]), uv(vec![None; 3]));
        assert!(high != zero && zero != unknown, "{}", enc.name());
    }
    // A sequences file has no ratios: training with completion = "embed" is refused, not guessed.
    let data = pattern_data(20, 8, 3);
    let err = match train::train(&config(embed(sasrec()), 1), &data, &Device::Cpu, &TrainOptions::default()) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("trained without ratios"),
    };
    assert!(err.contains("completion ratios"), "{err}");
}
