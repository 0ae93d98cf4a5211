//! Tiny random-weight HF folders the tests write themselves: a BERT sentence encoder (config.json,
//! model.safetensors, tokenizer.json, sentence_bert_config.json) and an EnCodec model (config.json,
//! model.safetensors). The weights are seeded, so a folder is the same on every run.
#![allow(dead_code)] // each test binary uses some of these folders
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use serde_json::json;
use std::path::Path;

/// Words of the tiny BERT's vocabulary (one token each, after `[PAD] [UNK] [CLS] [SEP] [MASK]`).
pub const WORDS: [&str; 24] = [
    "the", "a", "quiet", "piano", "ballad", "loud", "guitar", "drums", "song", "love", "night", "rain", "dance", "hello", "world", "rock", "jazz", "artist",
    "title", "tags", "-", ".", ",", ":",
];
/// Hidden size of the tiny BERT.
pub const BERT_DIM: usize = 32;
/// `max_seq_length` of the tiny BERT (tokens, including `[CLS]` and `[SEP]`).
pub const BERT_MAX_LEN: usize = 16;
/// Hidden size (embedding width) of the tiny EnCodec.
pub const ENCODEC_DIM: usize = 8;
/// Sample rate of the tiny EnCodec.
pub const ENCODEC_RATE: u32 = 8000;

/// Overwrites every variable with seeded values from N(0, std²) (a xorshift and Box-Muller), like
/// a trained network's scales: biases 10× smaller, weight-norm gains (`weight_g`) 1 + |N|, so the
/// signal, not the last bias, dominates the output.
fn randomize(vm: &VarMap, seed: u64, std: f32) {
    let mut s = seed | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    let data = vm.data().lock().unwrap();
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for name in names {
        let var = &data[name];
        let n = var.elem_count();
        let v: Vec<f32> = (0..n)
            .map(|_| {
                let z = ((-2.0 * next().ln()).sqrt() * (std::f64::consts::TAU * next()).cos()) as f32;
                if name.ends_with("weight_g") {
                    1.0 + z.abs()
                } else if name.ends_with("bias") {
                    z * std * 0.1
                } else {
                    z * std
                }
            })
            .collect();
        var.set(&Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap()).unwrap();
    }
}

/// Writes a 2-layer BERT (hidden 32, 4 heads) with a WordPiece tokenizer into `dir`.
pub fn write_bert(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let config = json!({
        "architectures": ["BertModel"], "model_type": "bert", "vocab_size": 5 + WORDS.len(),
        "hidden_size": BERT_DIM, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
        "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": 64, "type_vocab_size": 2, "initializer_range": 0.02, "layer_norm_eps": 1e-12,
        "pad_token_id": 0, "position_embedding_type": "absolute"
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    std::fs::write(dir.join("sentence_bert_config.json"), json!({ "max_seq_length": BERT_MAX_LEN }).to_string()).unwrap();
    let cfg: candle_transformers::models::bert::Config = serde_json::from_value(config).unwrap();
    let vm = VarMap::new();
    candle_transformers::models::bert::BertModel::load(VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu), &cfg).unwrap();
    randomize(&vm, 7, 0.5);
    vm.save(dir.join("model.safetensors")).unwrap();

    let mut vocab = serde_json::Map::new();
    for (i, w) in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"].iter().chain(WORDS.iter()).enumerate() {
        vocab.insert(w.to_string(), json!(i));
    }
    let special = |id: u32, content: &str| json!({"id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true});
    let tokenizer = json!({
        "version": "1.0",
        "truncation": {"direction": "Right", "max_length": 8, "strategy": "LongestFirst", "stride": 0},
        "padding": {"strategy": {"Fixed": 8}, "direction": "Right", "pad_to_multiple_of": null, "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"},
        "added_tokens": [special(0, "[PAD]"), special(1, "[UNK]"), special(2, "[CLS]"), special(3, "[SEP]"), special(4, "[MASK]")],
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true, "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##", "max_input_chars_per_word": 100, "vocab": vocab}
    });
    std::fs::write(dir.join("tokenizer.json"), tokenizer.to_string()).unwrap();
}

/// Writes a mono EnCodec (8 kHz, 4 filters, strides 2 and 4, one LSTM layer, 8 dims) into `dir`,
/// with an HF-style config.json (weight norm, reflect padding, and keys the encoder ignores).
pub fn write_encodec(dir: &Path) {
    use candle_transformers::models::encodec::{Config, Encoder, NormType, PadMode};
    std::fs::create_dir_all(dir).unwrap();
    let cfg = Config {
        sampling_rate: ENCODEC_RATE as usize,
        audio_channels: 1,
        normalize: false,
        hidden_size: ENCODEC_DIM,
        num_filters: 4,
        num_residual_layers: 1,
        upsampling_ratios: vec![4, 2],
        norm_type: NormType::WeightNorm,
        kernel_size: 7,
        last_kernel_size: 7,
        residual_kernel_size: 3,
        dilation_growth_rate: 2,
        use_causal_conv: true,
        pad_mode: PadMode::Replicate,
        compress: 2,
        num_lstm_layers: 1,
        use_conv_shortcut: true,
        ..Config::default()
    };
    let hf = json!({
        "architectures": ["EncodecModel"], "model_type": "encodec", "transformers_version": "4.31.0",
        "sampling_rate": cfg.sampling_rate, "audio_channels": 1, "normalize": false, "chunk_length_s": null,
        "overlap": null, "hidden_size": cfg.hidden_size, "num_filters": cfg.num_filters,
        "num_residual_layers": cfg.num_residual_layers, "upsampling_ratios": cfg.upsampling_ratios,
        "norm_type": "weight_norm", "kernel_size": cfg.kernel_size, "last_kernel_size": cfg.last_kernel_size,
        "residual_kernel_size": cfg.residual_kernel_size, "dilation_growth_rate": cfg.dilation_growth_rate,
        "use_causal_conv": true, "pad_mode": "reflect", "compress": cfg.compress,
        "num_lstm_layers": cfg.num_lstm_layers, "trim_right_ratio": 1.0, "codebook_size": 16,
        "codebook_dim": null, "use_conv_shortcut": true, "target_bandwidths": [1.5]
    });
    std::fs::write(dir.join("config.json"), hf.to_string()).unwrap();
    let vm = VarMap::new();
    Encoder::new(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu).pp("encoder")).unwrap();
    randomize(&vm, 11, 0.4);
    vm.save(dir.join("model.safetensors")).unwrap();
}

/// `seconds` of a sine at `hz`, sampled at `rate`.
pub fn sine(hz: f32, seconds: f32, rate: u32) -> Vec<f32> {
    (0..(seconds * rate as f32) as usize).map(|i| 0.5 * (std::f32::consts::TAU * hz * i as f32 / rate as f32).sin()).collect()
}

/// Seeded white noise in [-0.5, 0.5).
pub fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

/// Words of the tiny llama's word-level vocabulary (after `<unk>`), enough for E4SRec's prompt
/// and a few of its completion texts (" [completion: 0.20]").
pub const LLAMA_WORDS: [&str; 25] = [
    "Below",
    "is",
    "an",
    "instruction",
    "###",
    "Instruction:",
    "Input:",
    "Response:",
    "Given",
    "the",
    "tracks",
    "of",
    "a",
    "user's",
    "session,",
    "predict",
    "next",
    "track",
    "play.",
    "Hi",
    "[completion:",
    "0.00]",
    "0.20]",
    "0.90]",
    "unknown]",
];
/// Hidden size of the tiny llama.
pub const LLAMA_DIM: usize = 32;

/// Writes a tiny random-weight llama (hidden 32, 2 layers, 4 query and 2 key/value heads, vocab
/// 64) as an HF folder: config.json, model.safetensors (weights N(0, 0.2²), norms 1 + noise) and
/// a word-level tokenizer.json. `qwen2`: Qwen2's model_type, query/key/value biases and tied
/// embeddings.
pub fn write_llama(dir: &Path, qwen2: bool, seed: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let (h, inter, layers, heads, kv, vocab) = (LLAMA_DIM, 48usize, 2usize, 4usize, 2usize, 64usize);
    let hd = h / heads;
    let config = json!({
        "architectures": [if qwen2 { "Qwen2ForCausalLM" } else { "LlamaForCausalLM" }],
        "model_type": if qwen2 { "qwen2" } else { "llama" },
        "hidden_size": h, "intermediate_size": inter, "num_hidden_layers": layers, "num_attention_heads": heads,
        "num_key_value_heads": kv, "vocab_size": vocab, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "max_position_embeddings": 256, "tie_word_embeddings": qwen2, "hidden_act": "silu", "torch_dtype": "float32"
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
    let add = |name: &str, shape: &[usize]| {
        vb.get_with_hints(shape, name, candle_nn::Init::Const(0.0)).unwrap();
    };
    add("model.embed_tokens.weight", &[vocab, h]);
    for i in 0..layers {
        let p = format!("model.layers.{i}");
        for (m, o, inp) in [("q_proj", heads * hd, h), ("k_proj", kv * hd, h), ("v_proj", kv * hd, h), ("o_proj", h, heads * hd)] {
            add(&format!("{p}.self_attn.{m}.weight"), &[o, inp]);
            if qwen2 && m != "o_proj" {
                add(&format!("{p}.self_attn.{m}.bias"), &[o]);
            }
        }
        add(&format!("{p}.mlp.gate_proj.weight"), &[inter, h]);
        add(&format!("{p}.mlp.up_proj.weight"), &[inter, h]);
        add(&format!("{p}.mlp.down_proj.weight"), &[h, inter]);
        add(&format!("{p}.input_layernorm.weight"), &[h]);
        add(&format!("{p}.post_attention_layernorm.weight"), &[h]);
    }
    add("model.norm.weight", &[h]);
    if !qwen2 {
        add("lm_head.weight", &[vocab, h]);
    }
    randomize(&vm, seed, 0.2);
    {
        // RMS norm gains near 1.
        let data = vm.data().lock().unwrap();
        for (name, var) in data.iter().filter(|(n, _)| n.ends_with("norm.weight")) {
            let _ = name;
            var.set(&(var.as_tensor().abs().unwrap() + 1.0).unwrap()).unwrap();
        }
    }
    vm.save(dir.join("model.safetensors")).unwrap();
    let mut words = serde_json::Map::new();
    words.insert("<unk>".into(), json!(0));
    for (i, w) in LLAMA_WORDS.iter().enumerate() {
        words.insert(w.to_string(), json!(i + 1));
    }
    let tokenizer = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [], "normalizer": null,
        "pre_tokenizer": {"type": "WhitespaceSplit"}, "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "vocab": words, "unk_token": "<unk>"}
    });
    std::fs::write(dir.join("tokenizer.json"), tokenizer.to_string()).unwrap();
}
