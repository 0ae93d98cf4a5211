//! One SASRec training step with a fused item table, for bench/fusion/run.sh: the weighted-sum
//! plan built by the host from the `weighted-sum` plugin, against the same fusion written by hand
//! in candle ops, against ID-only SASRec. Steps alternate between the three; the medians are
//! compared, so load on a shared machine hits each side alike.
//!
//! Usage: fusion_step PLUGIN_DIR [STEPS] [N_ITEMS] [LEN]
//! Prints one JSON line per side (median and quartiles in ms) and the ratios.
use candle_core::{Device, Tensor, D};
use encore::models::fusion_plan::ModalityInput;
use encore::models::layers::{Init, Linear};
use encore::models::{EncoderConfig, FusionSpec, Params, SasRecConfig, SeqEncoder, TrainCtx};
use encore::plugins::{fusion, PluginKind, Runtime, SandboxConfig};
use encore::train::loss::linear_cross_entropy;
use encore::train::optim::{AdamW, ParamsAdamW};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Instant;

const DIMS: [(&str, usize); 3] = [("mgphot", 58), ("audio-dsp", 99), ("lyrics", 384)];
const HIDDEN: usize = 64;
const BATCH: usize = 128;

/// The weighted-sum fusion written by hand: per-input Linear, L2 norm of the content parts (the
/// `id` part keeps its length), softmax weights.
struct HandWritten {
    id: Tensor,
    lins: Vec<Linear>,
    logits: Tensor,
    mods: Vec<Tensor>,
}

impl HandWritten {
    fn table(&self, n: usize) -> anyhow::Result<Tensor> {
        let xs = std::iter::once(self.id.narrow(0, 0, n)?).chain(self.mods.iter().cloned());
        let parts = xs
            .zip(&self.lins)
            .enumerate()
            .map(|(j, (x, l))| {
                let y = l.forward(&x)?;
                if j == 0 {
                    return Ok(y);
                }
                Ok(y.broadcast_div(&(y.sqr()?.sum_keepdim(D::Minus1)? + 1e-12)?.sqrt()?)?)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let w = candle_nn::ops::softmax(&self.logits.reshape((1, parts.len()))?, 1)?;
        let mut out = parts[0].broadcast_mul(&w.narrow(1, 0, 1)?)?;
        for (j, p) in parts.iter().enumerate().skip(1) {
            out = (out + p.broadcast_mul(&w.narrow(1, j, 1)?)?)?;
        }
        Ok(Tensor::cat(&[&out, &self.id.narrow(0, n, 1)?], 0)?)
    }
}

fn main() -> anyhow::Result<()> {
    encore::keep_freed_memory();
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(args.len() >= 2, "usage: fusion_step PLUGIN_DIR [STEPS] [N_ITEMS]");
    let steps: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(30);
    let n: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(20_000);
    #[allow(non_snake_case)]
    let LEN: usize = args.get(4).map(|s| s.parse()).transpose()?.unwrap_or(50);
    let dev = Device::Cpu;
    let mut rng = StdRng::seed_from_u64(1);
    let mods: Vec<ModalityInput> = DIMS
        .iter()
        .map(|&(name, d)| ModalityInput {
            name: name.into(),
            values: Tensor::from_vec((0..n * d).map(|_| rng.random_range(-1f32..1.0)).collect(), (n, d), &dev).unwrap(),
            present: None,
        })
        .collect();
    let runtime = Runtime::new(SandboxConfig::default(), None)?;
    let plugin = encore::plugins::discover::find(&runtime, &[args[1].clone().into()], "weighted-sum", PluginKind::Fusion)?;
    let inputs: Vec<fusion::Modality> =
        std::iter::once(("id", HIDDEN)).chain(DIMS).map(|(name, dim)| fusion::Modality { name: name.into(), dim: dim as u32 }).collect();
    let plan = fusion::plan(&plugin, &inputs, HIDDEN as u32, &[])?;
    let cfg = EncoderConfig::SasRec(SasRecConfig { hidden_size: HIDDEN, max_len: LEN, hidden_dropout: 0.2, attn_dropout: 0.2, ..Default::default() });

    // Three models, each with its own optimizer.
    let side = |fused: Option<&FusionSpec>, hand: bool| -> anyhow::Result<(Box<dyn SeqEncoder>, Option<HandWritten>, AdamW)> {
        let mut p = Params::new(7, &dev);
        let model = cfg.build(n, &mut p, fused)?;
        let hw = if hand {
            let id = p.named_vars().into_iter().find(|(k, _)| k == "item_embedding.weight").map(|(_, v)| v.as_tensor().clone()).expect("SASRec's table");
            let lins = std::iter::once(HIDDEN)
                .chain(DIMS.iter().map(|d| d.1))
                .enumerate()
                .map(|(i, d)| Linear::torch_default(&mut p, &format!("hand.{i}"), d, HIDDEN))
                .collect::<Result<Vec<_>, _>>()?;
            let logits = p.var("hand.weights", &[DIMS.len() + 1], Init::Zeros)?;
            Some(HandWritten { id, lins, logits, mods: mods.iter().map(|m| m.values.clone()).collect() })
        } else {
            None
        };
        let opt = AdamW::new(p.named_vars(), ParamsAdamW { lr: 1e-3, ..Default::default() })?;
        Ok((model, hw, opt))
    };
    let spec = FusionSpec { plan, inputs: mods.clone(), id_present: None, digest: String::new() };
    let mut sides = [side(Some(&spec), false)?, side(None, true)?, side(None, false)?];
    let names = ["plan", "hand", "id-only"];
    let batch: Vec<u32> = (0..BATCH * (LEN + 1)).map(|_| rng.random_range(0..n as u32)).collect();
    let ids = Tensor::from_vec(batch.iter().enumerate().filter(|(i, _)| i % (LEN + 1) != LEN).map(|(_, &x)| x).collect::<Vec<_>>(), (BATCH, LEN), &dev)?;
    let labels: Vec<u32> = batch.iter().enumerate().filter(|(i, _)| i % (LEN + 1) != 0).map(|(_, &x)| x).collect();
    let lens = vec![LEN; BATCH];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); 3];
    for step in 0..steps + 3 {
        for (s, (model, hw, opt)) in sides.iter_mut().enumerate() {
            let ctx = TrainCtx::new(step as u64);
            let t = Instant::now();
            let table = match hw {
                Some(h) => h.table(n)?,
                None => model.embedding_table(Some(&ctx))?,
            };
            let hidden = model.forward(&table, &ids, &lens, None, Some(&ctx))?;
            let h = hidden.reshape((BATCH * LEN, HIDDEN))?;
            let loss = linear_cross_entropy(&h, &table.narrow(0, 0, n)?, None, &labels)?;
            opt.step(&loss.backward()?)?;
            let secs = t.elapsed().as_secs_f64();
            if step >= 3 {
                times[s].push(secs * 1e3);
            }
        }
    }
    let q = |v: &mut Vec<f64>, f: f64| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[((v.len() - 1) as f64 * f).round() as usize]
    };
    let mut med = [0.0; 3];
    for (s, v) in times.iter_mut().enumerate() {
        med[s] = q(v, 0.5);
        println!(
            "{{\"side\": \"{}\", \"steps\": {}, \"median_ms\": {:.2}, \"q25_ms\": {:.2}, \"q75_ms\": {:.2}}}",
            names[s],
            v.len(),
            med[s],
            q(v, 0.25),
            q(v, 0.75)
        );
    }
    println!(
        "{{\"items\": {n}, \"batch\": {BATCH}, \"len\": {LEN}, \"plan_over_hand\": {:.3}, \"plan_over_id_only\": {:.3}}}",
        med[0] / med[1],
        med[0] / med[2]
    );
    Ok(())
}
