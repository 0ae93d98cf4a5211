//! encore's decoder and LoRA against Hugging Face transformers and PEFT, on tiny random-weight
//! models that transformers itself writes (`host/tests/python/hf_llm.py`, run in the venv that
//! `scripts/hf-venv.sh` makes: torch, transformers, peft from PyPI; a failed install fails the
//! test). Checked within 1e-4:
//! - hidden states and logits of LLaMA-2-style, Llama-3-style (GQA, llama3 rope scaling) and
//!   Qwen2 (biases, tied embeddings) models, one of them sharded, given input embeddings and a
//!   left-padding mask, with both the training and the inference kernels;
//! - an adapter saved by encore, loaded by `PeftModel.from_pretrained` on the same base, gives
//!   the outputs encore computes with it.
use candle_core::{Device, Tensor};
use encore::llm::{self, LoraConfig, Mode};
use encore::models::{Params, TrainCtx};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The venv's python, made (once per machine) by scripts/hf-venv.sh.
fn python() -> &'static Path {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        let o = Command::new("bash").arg(workspace().join("scripts/hf-venv.sh")).output().expect("running scripts/hf-venv.sh");
        assert!(o.status.success(), "scripts/hf-venv.sh failed:\n{}", String::from_utf8_lossy(&o.stderr));
        PathBuf::from(String::from_utf8(o.stdout).unwrap().trim())
    })
}

fn script(args: &[&str]) {
    let o = Command::new(python()).arg(workspace().join("host/tests/python/hf_llm.py")).args(args).output().expect("running hf_llm.py");
    assert!(o.status.success(), "hf_llm.py {args:?} failed:\n{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Largest |a - b| over the positions whose mask is 1.
fn masked_diff(a: &Tensor, b: &Tensor, mask: &Tensor) -> f32 {
    let m = mask.unsqueeze(2).unwrap();
    (a - b).unwrap().abs().unwrap().broadcast_mul(&m).unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

/// Compares with the inference kernels, and with the training kernels when `train_too` (not
/// with adapter dropout on, which training mode applies).
fn check(dir: &Path, model: &llm::Llama, reference: &std::collections::HashMap<String, Tensor>, what: &str, train_too: bool) {
    let x = &reference["inputs_embeds"];
    let mask = &reference["attention_mask"];
    let ctx = TrainCtx::new(0);
    let modes = if train_too { vec![(Mode::Infer, "inference"), (Mode::Train(&ctx), "training")] } else { vec![(Mode::Infer, "inference")] };
    for (mode, name) in modes {
        let (h, _) = model.forward(x, mask, None, mode).unwrap();
        let dh = masked_diff(&h, &reference["hidden"], mask);
        let logits = model.logits(&h).unwrap();
        let dl = masked_diff(&logits, &reference["logits"], mask);
        assert!(dh < 1e-4 && dl < 1e-4, "{what} ({}), {name} kernels: max |Δhidden| {dh}, max |Δlogits| {dl}", dir.display());
    }
}

#[test]
fn decoders_match_transformers() {
    let tmp = tempfile::tempdir().unwrap();
    for (arch, shard) in [("llama", false), ("llama3", false), ("qwen2", false), ("llama", true)] {
        let dir = tmp.path().join(format!("{arch}-{shard}"));
        let mut args = vec!["make", "--arch", arch, "--out", s(&dir)];
        if shard {
            args.push("--shard");
        }
        script(&args);
        if shard {
            assert!(dir.join("model.safetensors.index.json").is_file(), "the sharded variant has an index");
        }
        let reference = candle_core::safetensors::load(dir.join("reference.safetensors"), &Device::Cpu).unwrap();
        let model = llm::load_decoder(&dir, &Device::Cpu, None, &mut Params::new(0, &Device::Cpu)).unwrap();
        check(&dir, &model, &reference, arch, true);
        // Token ids through the embedding, every position.
        let ids = reference["input_ids"].to_dtype(candle_core::DType::U32).unwrap();
        let x = model.embed_ids(&ids).unwrap();
        let keys = Tensor::ones(ids.dims(), candle_core::DType::F32, &Device::Cpu).unwrap();
        let (h, _) = model.forward(&x, &keys, None, Mode::Infer).unwrap();
        let d = masked_diff(&model.logits(&h).unwrap(), &reference["ids_logits"], &keys);
        assert!(d < 1e-4, "{arch}: logits from token ids differ by {d}");
    }
}

#[test]
fn an_encore_adapter_loads_in_peft_with_the_same_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    script(&["make", "--arch", "llama3", "--out", s(&base)]);
    for rslora in [false, true] {
        let lora = LoraConfig { r: 4, alpha: 8.0, dropout: 0.1, use_rslora: rslora, ..LoraConfig::default() };
        let mut vars = Params::new(3, &Device::Cpu);
        let model = llm::load_decoder(&base, &Device::Cpu, Some(&lora), &mut vars).unwrap();
        // Trained-looking adapters: B away from zero.
        for (i, (name, var)) in vars.named_vars().into_iter().enumerate() {
            if name.contains("lora_B") {
                let (o, r) = var.dims2().unwrap();
                let v: Vec<f32> = (0..o * r).map(|j| (((j * 7 + i * 13) % 17) as f32 - 8.0) * 0.02).collect();
                var.set(&Tensor::from_vec(v, (o, r), &Device::Cpu).unwrap()).unwrap();
            }
        }
        let adapter = tmp.path().join(format!("adapter-{rslora}"));
        llm::lora::save_peft(&adapter, &lora, &model.adapters(), s(&base)).unwrap();
        let out = tmp.path().join(format!("peft-{rslora}.safetensors"));
        script(&["peft", "--base", s(&base), "--adapter", s(&adapter), "--out", s(&out)]);
        let mut reference = candle_core::safetensors::load(base.join("reference.safetensors"), &Device::Cpu).unwrap();
        let peft = candle_core::safetensors::load(&out, &Device::Cpu).unwrap();
        reference.insert("hidden".into(), peft["hidden"].clone());
        reference.insert("logits".into(), peft["logits"].clone());
        // Without the adapter the outputs differ: the comparison is not vacuous.
        let (h0, _) = llm::load_decoder(&base, &Device::Cpu, None, &mut Params::new(0, &Device::Cpu))
            .unwrap()
            .forward(&reference["inputs_embeds"], &reference["attention_mask"], None, Mode::Infer)
            .unwrap();
        assert!(masked_diff(&h0, &reference["hidden"], &reference["attention_mask"]) > 1e-2, "the adapter changes the outputs");
        check(&adapter, &model, &reference, if rslora { "PEFT adapter (rsLoRA)" } else { "PEFT adapter" }, false);
    }
}
