//! Times the loss step of full-softmax training: logits = H·Eᵀ for H (256×64) and E (20000×64),
//! cross-entropy, and the backward pass to H and E, with candle's composite ops, with the fused
//! loss after candle's product (`encore::train::loss::cross_entropy`), and with the product fused
//! in (`linear_cross_entropy`, what training uses). glibc's malloc is set as `encore` sets it.
//!
//! cargo run --release -p encore --example fused_ce
use candle_core::{Device, Tensor, Var};
use encore::train::loss::{composite_cross_entropy, cross_entropy, linear_cross_entropy};
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    encore::keep_freed_memory();
    let (rows, dim, items) = (256, 64, 20_000);
    let dev = Device::Cpu;
    let h = Var::from_tensor(&(Tensor::randn(0f32, 1.0, (rows, dim), &dev)? * 0.1)?)?;
    let e = Var::from_tensor(&(Tensor::randn(0f32, 1.0, (items, dim), &dev)? * 0.1)?)?;
    let labels: Vec<u32> = (0..rows as u32).map(|r| (r * 7919) % items as u32).collect();
    // 0: matmul only (loss = sum of logits), 1: composite CE, 2: fused CE, 3: fused linear CE.
    let step = |mode: u8| -> anyhow::Result<f64> {
        let t = Instant::now();
        let logits = || h.as_tensor().matmul(&e.as_tensor().t()?);
        let loss = match mode {
            0 => logits()?.sum_all()?,
            1 => composite_cross_entropy(&logits()?, &labels)?,
            2 => cross_entropy(&logits()?, &labels)?,
            _ => linear_cross_entropy(h.as_tensor(), e.as_tensor(), None, &labels)?,
        };
        let g = loss.backward()?;
        let _ = (g.get(&h).unwrap(), g.get(&e).unwrap());
        Ok(t.elapsed().as_secs_f64() * 1e3)
    };
    let median = |mode: u8| -> anyhow::Result<f64> {
        step(mode)?;
        let mut v = (0..15).map(|_| step(mode)).collect::<anyhow::Result<Vec<_>>>()?;
        v.sort_by(f64::total_cmp);
        Ok(v[v.len() / 2])
    };
    let (m, c, f, l) = (median(0)?, median(1)?, median(2)?, median(3)?);
    println!("logits ({rows}×{dim})·({dim}×{items}) + CE + backward, median of 15 on {} threads:", rayon::current_num_threads());
    println!("  matmuls alone:    {m:7.1} ms  (forward and backward, loss = sum of logits)");
    println!("  candle composite: {c:7.1} ms");
    println!("  fused:            {f:7.1} ms  ({:.1}× faster)", c / f);
    println!("  fused linear:     {l:7.1} ms  ({:.1}× faster)", c / l);
    Ok(())
}
