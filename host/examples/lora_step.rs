//! One E4SRec/LoRA training step and one evaluation batch on an LLM, timed: the encore side of
//! `bench/lora_step/run.sh`. Usage:
//!   lora_step MODEL [BATCH=8] [ITEMS=10] [STEPS=5] [EVAL_BATCH=64]
//! MODEL is an HF folder or a llama GGUF; a folder without tokenizer.json gets a prompt of fixed
//! token ids (`PROMPT_TOKENS`, default 49 instruction and 6 response tokens). Prints one `key value` per line: load seconds, the
//! median step seconds (forward + backward + AdamW, after one warm-up step), the median
//! evaluation-batch seconds, prompt tokens and peak RSS (MiB).
use candle_core::{Device, Tensor};
use encore::llm::e4srec::{E4SRec, PromptConfig};
use encore::llm::{LoraConfig, Mode};
use encore::models::{Params, TrainCtx};
use std::time::Instant;

fn peak_rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse::<f64>().ok()).map_or(0.0, |kb| kb / 1024.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    encore::keep_freed_memory();
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    let args: Vec<String> = std::env::args().collect();
    let model = args.get(1).ok_or_else(|| anyhow::anyhow!("usage: lora_step MODEL [BATCH] [ITEMS] [STEPS] [EVAL_BATCH]"))?;
    let arg = |i: usize, d: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    let (batch, items, steps, eval_batch) = (arg(2, 8), arg(3, 10), arg(4, 5), arg(5, 64));
    let n_items = 2000;
    let t0 = Instant::now();
    let mut vars = Params::new(0, &Device::Cpu);
    let path = std::path::Path::new(model);
    let table = Tensor::randn(0f32, 1.0, (n_items, 64), &Device::Cpu)?;
    let m = if path.is_dir() && !path.join("tokenizer.json").is_file() {
        let llm = encore::llm::load_decoder(path, &Device::Cpu, Some(&LoraConfig::default()), &mut vars)?;
        let (p, r) = std::env::var("PROMPT_TOKENS")
            .ok()
            .and_then(|v| v.split_once(',').map(|(a, b)| (a.parse().ok(), b.parse().ok())))
            .map_or((49, 6), |(a, b)| (a.unwrap_or(49), b.unwrap_or(6)));
        let ids = |n: usize, off: u32| -> Vec<u32> { (0..n as u32).map(|i| (off + i * 13) % 1000 + 100).collect() };
        E4SRec::from_ids(llm, &ids(p, 0), &ids(r, 500), table, items, &mut vars)?
    } else {
        let loaded = encore::llm::load(path, &Device::Cpu, Some(&LoraConfig::default()), &mut vars)?;
        E4SRec::new(loaded.model, &loaded.tokenizer, table, &PromptConfig { max_items: items, ..Default::default() }, &mut vars)?
    };
    println!("load_s {:.3}", t0.elapsed().as_secs_f64());
    let (p, r) = m.prompt_tokens();
    println!("prompt_tokens {p} response_tokens {r} items {items} batch {batch}");
    let named = vars.named_vars();
    let mut opt = encore::train::optim::AdamW::new(named, encore::train::optim::ParamsAdamW { lr: 1e-4, ..Default::default() })?;
    let hist: Vec<Vec<u32>> = (0..batch).map(|b| (0..items as u32).map(|i| (b as u32 * 31 + i * 7) % n_items as u32).collect()).collect();
    let hist: Vec<&[u32]> = hist.iter().map(|h| h.as_slice()).collect();
    let labels: Vec<u32> = (0..batch as u32).collect();
    let mut times = Vec::new();
    for s in 0..=steps {
        let t = Instant::now();
        let ctx = TrainCtx::new(s as u64);
        let prefix = m.instruction_cache(Mode::Train(&ctx))?;
        let users = m.user_vectors(&hist, &[], &prefix, Mode::Train(&ctx))?;
        let loss = encore::train::loss::linear_cross_entropy(&users, m.head(), None, &labels)?;
        let g = loss.backward()?;
        opt.step(&g)?;
        if s > 0 {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    println!("step_s {:.4}", median(times));
    let ehist: Vec<Vec<u32>> = (0..eval_batch).map(|b| (0..items as u32).map(|i| (b as u32 * 17 + i * 3) % n_items as u32).collect()).collect();
    let ehist: Vec<&[u32]> = ehist.iter().map(|h| h.as_slice()).collect();
    let prefix = m.instruction_cache(Mode::Infer)?;
    let mut times = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let u = m.user_vectors(&ehist, &[], &prefix, Mode::Infer)?;
        let _ = m.scores(&u)?;
        times.push(t.elapsed().as_secs_f64());
    }
    println!("eval_batch_s {:.4}", median(times));
    println!("peak_rss_mib {:.0}", peak_rss_mib());
    Ok(())
}
