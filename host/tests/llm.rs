//! The trainable decoder (`llm::llama`, `llm::qwen2`), LoRA and E4SRec on tiny random-weight HF
//! folders written here: kernels for training and inference agree, the shared-instruction cache
//! gives what one full pass gives, an untrained adapter changes nothing, gradients reach every
//! adapter, projection and head tensor, PEFT's file layout, and E4SRec learning a planted
//! transition rule well above popularity.
#[path = "common/tiny_models.rs"]
mod tiny_models;

use candle_core::{DType, Device, Tensor};
use encore::llm::e4srec::{E4SRec, PromptConfig};
use encore::llm::{self, LoraConfig, Mode};
use encore::models::{Params, TrainCtx};
use encore::train::e4srec::{self as e4, E4SRecConfig, LlmTrainParams};
use encore::train::{EvalCase, SequenceData};
use std::path::Path;

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

fn inputs(b: usize, t: usize, h: usize, seed: u64) -> Tensor {
    let mut s = seed | 1;
    let v: Vec<f32> = (0..b * t * h)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    Tensor::from_vec(v, (b, t, h), &Device::Cpu).unwrap()
}

#[test]
fn training_and_inference_kernels_agree_and_the_cache_equals_one_pass() {
    for qwen2 in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        tiny_models::write_llama(dir.path(), qwen2, 3);
        let mut vars = Params::new(0, &Device::Cpu);
        let m = llm::load_decoder(dir.path(), &Device::Cpu, None, &mut vars).unwrap();
        assert_eq!(m.config().attention_bias, qwen2);
        let x = inputs(2, 7, tiny_models::LLAMA_DIM, 5);
        let keys = Tensor::new(&[[0f32, 0., 1., 1., 1., 1., 1.], [1., 1., 1., 1., 1., 1., 1.]], &Device::Cpu).unwrap();
        let ctx = TrainCtx::new(0);
        let (slow, _) = m.forward(&x, &keys, None, Mode::Train(&ctx)).unwrap();
        let (fast, _) = m.forward(&x, &keys, None, Mode::Infer).unwrap();
        // Padding positions (row 0, positions 0-1) attend to nothing real; compare the rest.
        let d = max_abs_diff(&slow.narrow(1, 2, 5).unwrap(), &fast.narrow(1, 2, 5).unwrap());
        assert!(d < 1e-4, "qwen2={qwen2}: training and inference kernels differ by {d}");
        // Three positions, then four more after the cache: the same as seven at once.
        let (_, cache) = m.forward(&x.narrow(1, 0, 3).unwrap(), &keys.narrow(1, 0, 3).unwrap(), None, Mode::Infer).unwrap();
        let (rest, _) = m.forward(&x.narrow(1, 3, 4).unwrap(), &keys, Some(&cache), Mode::Infer).unwrap();
        let d = max_abs_diff(&rest, &fast.narrow(1, 3, 4).unwrap());
        assert!(d < 1e-4, "qwen2={qwen2}: cached continuation differs by {d}");
        // A padded row's real positions equal the same row without padding, shifted: positions
        // count the padding (as transformers without position_ids), so only the unpadded row
        // is checked against a batch of one.
        let (one, _) = m.forward(&x.narrow(0, 1, 1).unwrap(), &keys.narrow(0, 1, 1).unwrap(), None, Mode::Infer).unwrap();
        assert!(max_abs_diff(&one, &fast.narrow(0, 1, 1).unwrap()) < 1e-5);
    }
}

#[test]
fn an_untrained_adapter_changes_nothing_and_peft_files_are_written() {
    let dir = tempfile::tempdir().unwrap();
    tiny_models::write_llama(dir.path(), false, 4);
    let x = inputs(1, 5, tiny_models::LLAMA_DIM, 9);
    let keys = Tensor::ones((1, 5), DType::F32, &Device::Cpu).unwrap();
    let mut plain = Params::new(0, &Device::Cpu);
    let base = llm::load_decoder(dir.path(), &Device::Cpu, None, &mut plain).unwrap();
    assert!(plain.named_vars().is_empty(), "no adapter, no trainable tensor");
    let lora = LoraConfig { r: 4, alpha: 8.0, ..LoraConfig::default() };
    let mut vars = Params::new(0, &Device::Cpu);
    let with = llm::load_decoder(dir.path(), &Device::Cpu, Some(&lora), &mut vars).unwrap();
    // 2 layers × 7 projections × (A, B).
    assert_eq!(vars.named_vars().len(), 28);
    let (a, _) = base.forward(&x, &keys, None, Mode::Infer).unwrap();
    let (b, _) = with.forward(&x, &keys, None, Mode::Infer).unwrap();
    assert_eq!(max_abs_diff(&a, &b), 0.0, "B starts at zero");
    let out = tempfile::tempdir().unwrap();
    llm::lora::save_peft(out.path(), &lora, &with.adapters(), "tiny").unwrap();
    let st = candle_core::safetensors::load(out.path().join("adapter_model.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(st.len(), 28);
    let a0 = &st["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"];
    assert_eq!(a0.dims(), [4, tiny_models::LLAMA_DIM]);
    assert_eq!(st["base_model.model.model.layers.1.mlp.down_proj.lora_B.weight"].dims(), [tiny_models::LLAMA_DIM, 4]);
    let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.path().join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(cfg["peft_type"], "LORA");
    assert_eq!(cfg["r"], 4);
    assert_eq!(cfg["lora_alpha"], 8.0);
}

fn e4srec(dir: &Path, n_items: usize, lora: &LoraConfig, seed: u64) -> (E4SRec, Params) {
    e4srec_with(dir, n_items, lora, seed, encore::llm::e4srec::PromptCompletion::None)
}

fn e4srec_with(dir: &Path, n_items: usize, lora: &LoraConfig, seed: u64, completion: encore::llm::e4srec::PromptCompletion) -> (E4SRec, Params) {
    let mut vars = Params::new(seed, &Device::Cpu);
    let loaded = llm::load(dir, &Device::Cpu, Some(lora), &mut vars).unwrap();
    // A frozen item table: random vectors, as an encoder's table would be.
    let items = inputs(1, n_items, 16, seed + 1).squeeze(0).unwrap();
    let prompt = PromptConfig {
        instruction: "Below is an instruction ### Instruction: Given the tracks Input:".into(),
        response: "### Response:".into(),
        max_items: 6,
        completion,
    };
    let m = E4SRec::new(loaded.model, &loaded.tokenizer, items, &prompt, &mut vars).unwrap();
    (m, vars)
}

#[test]
fn gradients_reach_every_adapter_projection_and_head_tensor() {
    let dir = tempfile::tempdir().unwrap();
    tiny_models::write_llama(dir.path(), true, 5);
    let lora = LoraConfig { r: 4, alpha: 8.0, dropout: 0.1, ..LoraConfig::default() };
    let (m, vars) = e4srec_with(dir.path(), 30, &lora, 1, encore::llm::e4srec::PromptCompletion::Embed);
    assert!(m.reads_completion());
    // B starts at zero, so A's gradient is zero on the first step (as in PEFT): take one step
    // first, then check every tensor.
    let named = vars.named_vars();
    let mut opt = encore::train::optim::AdamW::new(named.clone(), encore::train::optim::ParamsAdamW { lr: 1e-2, ..Default::default() }).unwrap();
    let hist: Vec<&[u32]> = vec![&[1, 2, 3], &[4, 5], &[7, 8, 9, 10, 11, 12, 13, 14]];
    let labels = [4u32, 6, 15];
    // Known, null and missing ratios: the completion weight, bias and "unknown" vector all train.
    let ratios: Vec<&[Option<f32>]> = vec![&[Some(0.2), None, Some(1.0)], &[], &[Some(0.5); 8]];
    for step in 0..2 {
        let ctx = TrainCtx::new(step);
        let prefix = m.instruction_cache(Mode::Train(&ctx)).unwrap();
        let users = m.user_vectors(&hist, &ratios, &prefix, Mode::Train(&ctx)).unwrap();
        let loss = encore::train::loss::linear_cross_entropy(&users, m.head(), None, &labels).unwrap();
        let grads = loss.backward().unwrap();
        if step == 1 {
            for (name, var) in &named {
                let g = grads.get(var).unwrap_or_else(|| panic!("{name} got no gradient"));
                let norm = g.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
                assert!(norm > 0.0 && norm.is_finite(), "{name}: gradient norm {norm}");
            }
        }
        opt.step(&grads).unwrap();
    }
    assert!(named.iter().any(|(n, _)| n == "item_proj.weight") && named.iter().any(|(n, _)| n == "score.weight"));
    assert_eq!(named.iter().filter(|(n, _)| n.contains(".lora_")).count(), 28);
    // Frozen weights are plain tensors (never variables), so no step can change them.
    assert_eq!(named.iter().filter(|(n, _)| n.starts_with("completion.")).count(), 3);
    assert!(
        named.iter().all(|(n, _)| n.contains(".lora_") || n.starts_with("item_proj.") || n.starts_with("completion.") || n == "score.weight"),
        "only adapters, the completion input and heads train"
    );
}

/// `completion = "prompt"`: each item is followed by the text of its ratio. A row gives the same
/// user vector in either batch order (offsets are right), another ratio gives another vector, and
/// gradients reach the adapters, projection and head through the text.
#[test]
fn completion_as_prompt_text_is_read_and_batches_like_one_row() {
    let dir = tempfile::tempdir().unwrap();
    tiny_models::write_llama(dir.path(), false, 5);
    let lora = LoraConfig { r: 4, alpha: 8.0, dropout: 0.0, ..LoraConfig::default() };
    let (m, vars) = e4srec_with(dir.path(), 30, &lora, 1, encore::llm::e4srec::PromptCompletion::Prompt);
    assert!(m.reads_completion());
    assert!(vars.named_vars().iter().all(|(n, _)| !n.starts_with("completion.")), "the prompt mode adds no weights");
    let ctx = TrainCtx::new(0);
    let prefix = m.instruction_cache(Mode::Infer).unwrap();
    let long: &[u32] = &[3, 4, 5, 6, 7, 8, 9];
    let ratios: &[Option<f32>] = &[Some(1.0), Some(0.33), None, Some(0.5), Some(0.0), Some(0.75), Some(0.9)];
    let short: (&[u32], &[Option<f32>]) = (&[1, 2], &[Some(0.2), None]);
    // Position ids count the left padding (as E4SRec's reference calls transformers), so compare
    // a row with itself in another batch order: each row's items and texts are gathered right.
    let ab = m.user_vectors(&[long, short.0], &[ratios, short.1], &prefix, Mode::Infer).unwrap();
    let ba = m.user_vectors(&[short.0, long], &[short.1, ratios], &prefix, Mode::Infer).unwrap();
    for (i, j) in [(0, 1), (1, 0)] {
        let d = max_abs_diff(&ab.narrow(0, i, 1).unwrap(), &ba.narrow(0, j, 1).unwrap());
        assert!(d < 1e-4, "row {i} differs by {d} in the other batch order");
    }
    let same = m.user_vectors(&[short.0, short.0], &[short.1, short.1], &prefix, Mode::Infer).unwrap();
    let other = m.user_vectors(&[short.0, short.0], &[short.1, &[Some(0.9), None]], &prefix, Mode::Infer).unwrap();
    assert!(max_abs_diff(&same.narrow(0, 0, 1).unwrap(), &same.narrow(0, 1, 1).unwrap()) < 1e-5);
    assert!(max_abs_diff(&other.narrow(0, 0, 1).unwrap(), &other.narrow(0, 1, 1).unwrap()) > 1e-4, "the ratio text changes the user vector");
    let unknown = m.user_vectors(&[short.0, short.0], &[short.1, &[Some(0.2), Some(0.0)]], &prefix, Mode::Infer).unwrap();
    assert!(max_abs_diff(&unknown.narrow(0, 0, 1).unwrap(), &unknown.narrow(0, 1, 1).unwrap()) > 1e-4, "unknown is not 0.00");
    let prefix = m.instruction_cache(Mode::Train(&ctx)).unwrap();
    let users = m.user_vectors(&[long, &[1, 2]], &[ratios, &[Some(0.2), None]], &prefix, Mode::Train(&ctx)).unwrap();
    let loss = encore::train::loss::linear_cross_entropy(&users, m.head(), None, &[4, 9]).unwrap();
    let grads = loss.backward().unwrap();
    for (name, var) in vars.named_vars() {
        // B is zero before the first step, so A's gradient is zero too (as in PEFT).
        if !name.contains("lora_A") {
            let g = grads.get(&var).unwrap_or_else(|| panic!("{name} got no gradient"));
            assert!(g.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() > 0.0, "{name}: zero gradient");
        }
    }
}

/// Sessions following a planted rule: after item i comes i+1 (mod n), with random starts.
fn planted(n: usize, sessions: usize, len: usize) -> SequenceData {
    let mut s = 12345u64;
    let mut next = move |m: usize| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s % m as u64) as usize
    };
    let mut train = Vec::new();
    for _ in 0..sessions {
        let start = next(n);
        train.push((0..len).map(|j| ((start + j) % n) as u32).collect::<Vec<u32>>());
    }
    let case =
        |start: usize| EvalCase { history: (0..4).map(|j| ((start + j) % n) as u32).collect(), targets: vec![((start + 4) % n) as u32], completion: vec![] };
    let valid = (0..40).map(|i| case(i * 7 % n)).collect();
    let test = (0..60).map(|i| case(i * 11 % n)).collect();
    SequenceData { n_items: n, train, train_completion: vec![], valid, test, digest: String::new() }
}

#[test]
fn e4srec_learns_a_planted_rule_and_resumes_to_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    tiny_models::write_llama(dir.path(), false, 6);
    let n = 40;
    let data = planted(n, 200, 8);
    let lora = LoraConfig { r: 4, alpha: 8.0, dropout: 0.0, ..LoraConfig::default() };
    let train = LlmTrainParams { steps: 60, batch_size: 16, lr: 5e-3, warmup_steps: 5, eval_every: 30, valid_cases: 0, ..LlmTrainParams::default() };
    let cfg = E4SRecConfig { model: dir.path().to_path_buf(), lora: lora.clone(), prompt: PromptConfig::default(), train };
    let (m, vars) = e4srec(dir.path(), n, &lora, 2);
    let out = tempfile::tempdir().unwrap();
    let opts =
        |dir: &Path, resume: bool, stop_after: Option<usize>| e4::E4SRecOptions { out_dir: Some(dir.to_path_buf()), resume, progress: false, stop_after };
    let trained = e4::train(&cfg, m, vars, &data, &opts(out.path(), false, None)).unwrap();
    let mut sink = encore::train::scoring::NativeSink::new(encore::train::scoring::ValidMetric::parse("recall@10").unwrap(), n as u32);
    let params = encore::train::EvalParams { mask_history: false, ..Default::default() };
    e4::evaluate(&trained.model, &data.test, &params, &mut sink).unwrap();
    // Every item is equally popular here: recall@10 of any fixed ranking is about 10/40.
    let r = sink.value();
    assert!(r > 0.6, "E4SRec recall@10 {r:.3} on a deterministic rule (popularity: 0.25); losses {:?}", trained.losses);
    assert!(trained.losses.first() > trained.losses.last(), "loss went down: {:?}", trained.losses);
    e4::save(&trained, &cfg, out.path()).unwrap();
    assert!(out.path().join("adapter/adapter_model.safetensors").is_file() && out.path().join("e4srec_heads.safetensors").is_file());

    // A run stopped after its step-30 checkpoint (as a kill there would leave it), then resumed,
    // ends in exactly the state of the uninterrupted run.
    let half = tempfile::tempdir().unwrap();
    let (m, vars) = e4srec(dir.path(), n, &lora, 2);
    e4::train(&cfg, m, vars, &data, &opts(half.path(), false, Some(30))).unwrap();
    assert!(std::fs::read_to_string(half.path().join("checkpoint.toml")).unwrap().contains("steps = 30"));
    let (m, vars) = e4srec(dir.path(), n, &lora, 2);
    let resumed = e4::train(&cfg, m, vars, &data, &opts(half.path(), true, None)).unwrap();
    assert_eq!(resumed.best, trained.best);
    let d = max_abs_diff(resumed.model.head(), trained.model.head());
    assert_eq!(d, 0.0, "resumed head differs by {d}");
    // A checkpoint of another config is refused, naming it.
    let mut other = cfg.clone();
    other.train.lr = 1e-3;
    let (m, vars) = e4srec(dir.path(), n, &lora, 2);
    let err = e4::train(&other, m, vars, &data, &opts(half.path(), true, None)).err().expect("another config's checkpoint is refused");
    assert!(err.to_string().contains("another config"), "{err}");
}

/// `negatives = N`: sampled softmax (the reference fork's option) learns the same rule.
#[test]
fn sampled_softmax_learns_the_planted_rule() {
    let dir = tempfile::tempdir().unwrap();
    tiny_models::write_llama(dir.path(), false, 6);
    let n = 40;
    let data = planted(n, 200, 8);
    let lora = LoraConfig { r: 4, alpha: 8.0, dropout: 0.0, ..LoraConfig::default() };
    let train =
        LlmTrainParams { steps: 60, batch_size: 16, lr: 5e-3, warmup_steps: 5, eval_every: 30, valid_cases: 0, negatives: 8, ..LlmTrainParams::default() };
    let cfg = E4SRecConfig { model: dir.path().to_path_buf(), lora: lora.clone(), prompt: PromptConfig::default(), train };
    let (m, vars) = e4srec(dir.path(), n, &lora, 2);
    let opts = e4::E4SRecOptions { out_dir: None, resume: false, progress: false, stop_after: None };
    let trained = e4::train(&cfg, m, vars, &data, &opts).unwrap();
    let mut sink = encore::train::scoring::NativeSink::new(encore::train::scoring::ValidMetric::parse("recall@10").unwrap(), n as u32);
    let params = encore::train::EvalParams { mask_history: false, ..Default::default() };
    e4::evaluate(&trained.model, &data.test, &params, &mut sink).unwrap();
    let r = sink.value();
    assert!(r > 0.6, "sampled-softmax E4SRec recall@10 {r:.3} (popularity: 0.25); losses {:?}", trained.losses);
    // As many negatives as items is refused, naming the key.
    let mut bad = cfg.clone();
    bad.train.negatives = n;
    let (m, vars) = e4srec(dir.path(), n, &lora, 2);
    let err = e4::train(&bad, m, vars, &data, &opts).err().expect("negatives >= items is refused");
    assert!(err.to_string().contains("llm.train.negatives = 40"), "{err}");
}

#[test]
fn bad_model_folders_are_refused_naming_the_file() {
    let err = |dir: &Path| -> String {
        match llm::load(dir, &Device::Cpu, None, &mut Params::new(0, &Device::Cpu)) {
            Ok(_) => panic!("{} loaded", dir.display()),
            Err(e) => e.to_string(),
        }
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    tiny_models::write_llama(&dir, false, 1);
    // An architecture this decoder is not.
    let cfg = std::fs::read_to_string(dir.join("config.json")).unwrap();
    std::fs::write(dir.join("config.json"), cfg.replace("\"llama\"", "\"mistral\"")).unwrap();
    let e = err(&dir);
    assert!(e.contains("config.json") && e.contains("mistral") && e.contains("not supported"), "{e}");
    std::fs::write(dir.join("config.json"), &cfg).unwrap();
    // A tokenizer with more tokens than the embedding has rows.
    let tok = std::fs::read_to_string(dir.join("tokenizer.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&tok).unwrap();
    let vocab = v["model"]["vocab"].as_object_mut().unwrap();
    let base = vocab.len();
    for i in 0..100 {
        vocab.insert(format!("extra{i}"), serde_json::json!(base + i));
    }
    std::fs::write(dir.join("tokenizer.json"), v.to_string()).unwrap();
    let e = err(&dir);
    assert!(e.contains("tokenizer.json") && e.contains(&format!("{} tokens", base + 100)) && e.contains("64"), "{e}");
    std::fs::write(dir.join("tokenizer.json"), &tok).unwrap();
    // A sharded folder whose index names a shard that is not there.
    std::fs::write(dir.join("model.safetensors.index.json"), r#"{"weight_map": {"model.norm.weight": "model-00002-of-00002.safetensors"}}"#).unwrap();
    let e = err(&dir);
    assert!(e.contains("model-00002-of-00002.safetensors") && e.contains("index.json"), "{e}");
    std::fs::remove_file(dir.join("model.safetensors.index.json")).unwrap();
    // A missing tensor names itself and the folder.
    let st = candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
    let kept: std::collections::HashMap<String, Tensor> = st.into_iter().filter(|(k, _)| k != "model.layers.1.mlp.up_proj.weight").collect();
    candle_core::safetensors::save(&kept, dir.join("model.safetensors")).unwrap();
    let e = err(&dir);
    assert!(e.contains("model.layers.1.mlp.up_proj.weight") && e.contains("missing"), "{e}");
    assert!(err(&tmp.path().join("nothing")).contains("config.json"));
}
