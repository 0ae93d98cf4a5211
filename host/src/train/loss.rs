//! Losses: softmax cross-entropy over the full item set (fused on CPU) and BCE with sampled
//! negatives.
//!
//! The fused cross-entropy computes, in one pass per row (rows in parallel with rayon), the
//! max-subtracted softmax, `-log p[label]`, and the gradient `(softmax - onehot) / n_valid`,
//! which it keeps for the backward pass. candle's composite version materialises the softmax,
//! its log, a gather and their backward graph over the same `rows × n_items` matrix several
//! times; this one touches it twice (forward and gradient scaling).
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor, D};
use rayon::prelude::*;
use crate::math::exp_nonpositive;
use std::sync::Mutex;

/// A label that contributes nothing (padding positions).
pub const IGNORE: u32 = u32::MAX;

/// Mean softmax cross-entropy of `logits` (`rows × classes`, f32) against `labels` (one per row,
/// [`IGNORE`] to skip a row), averaged over the rows not ignored (0 when all are). Fused on CPU;
/// composite candle ops elsewhere.
pub fn cross_entropy(logits: &Tensor, labels: &[u32]) -> candle_core::Result<Tensor> {
    let (rows, classes) = logits.dims2()?;
    if labels.len() != rows {
        candle_core::bail!("cross_entropy: {} labels for {rows} rows", labels.len());
    }
    if let Some(&l) = labels.iter().find(|&&l| l != IGNORE && l as usize >= classes) {
        candle_core::bail!("cross_entropy: label {l} outside {classes} classes");
    }
    if logits.device().is_cpu() && logits.dtype() == DType::F32 {
        logits.contiguous()?.apply_op1(FusedCrossEntropy { labels: labels.to_vec(), grad: Mutex::new(None) })
    } else {
        composite_cross_entropy(logits, labels)
    }
}

/// The same loss from candle's composite ops (log-softmax and gather), which have a backward on
/// every device. The reference the fused version is tested against.
pub fn composite_cross_entropy(logits: &Tensor, labels: &[u32]) -> candle_core::Result<Tensor> {
    let keep: Vec<u32> = (0..labels.len() as u32).filter(|&i| labels[i as usize] != IGNORE).collect();
    if keep.is_empty() {
        return (logits.sum_all()? * 0.0)?.to_dtype(DType::F32);
    }
    let dev = logits.device();
    let rows = logits.index_select(&Tensor::new(keep.as_slice(), dev)?, 0)?;
    let targets: Vec<u32> = keep.iter().map(|&i| labels[i as usize]).collect();
    let targets = Tensor::new(targets.as_slice(), dev)?;
    let logp = candle_nn::ops::log_softmax(&rows, D::Minus1)?;
    let picked = logp.gather(&targets.unsqueeze(1)?, 1)?;
    picked.sum_all()?.affine(-1.0 / keep.len() as f64, 0.0)
}

/// Binary cross-entropy with one sampled negative per position: `softplus(-s⁺) + softplus(s⁻)`,
/// averaged (RecBole's BCE for sequential models). `pos` and `neg` are scores of equal shape.
pub fn bce_sampled(pos: &Tensor, neg: &Tensor) -> candle_core::Result<Tensor> {
    (softplus(&pos.neg()?)? + softplus(neg)?)?.mean_all()
}

/// `log(1 + exp(x))`, stable for large |x|, from ops with a backward.
fn softplus(x: &Tensor) -> candle_core::Result<Tensor> {
    x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?
}

/// Lanes the row loops keep apart, so that the compiler vectorises them.
const LANES: usize = 8;

/// The largest value of `row`.
fn row_max(row: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = row.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for j in 0..LANES {
            acc[j] = if c[j] > acc[j] { c[j] } else { acc[j] };
        }
    }
    rest.iter().chain(&acc).copied().fold(f32::NEG_INFINITY, f32::max)
}

/// Writes `exp(row - max)` into `out` and returns its sum.
fn exp_shifted(row: &[f32], max: f32, out: &mut [f32]) -> f64 {
    let mut acc = [0f32; LANES];
    let mut out_chunks = out.chunks_exact_mut(LANES);
    let chunks = row.chunks_exact(LANES);
    let rest = chunks.remainder();
    for (o, c) in (&mut out_chunks).zip(chunks) {
        for j in 0..LANES {
            let e = exp_nonpositive(c[j] - max);
            o[j] = e;
            acc[j] += e;
        }
    }
    let mut sum: f64 = acc.iter().map(|&a| a as f64).sum();
    for (o, &x) in out_chunks.into_remainder().iter_mut().zip(rest) {
        *o = exp_nonpositive(x - max);
        sum += *o as f64;
    }
    sum
}

/// The CPU kernel: forward computes the loss and stores the gradient for `bwd`.
struct FusedCrossEntropy {
    labels: Vec<u32>,
    grad: Mutex<Option<Vec<f32>>>,
}

impl FusedCrossEntropy {
    /// Loss and gradient (for an upstream gradient of 1) from row-major logits.
    fn run(&self, x: &[f32], classes: usize) -> (f32, Vec<f32>) {
        let n_valid = self.labels.iter().filter(|&&l| l != IGNORE).count();
        let mut grad = vec![0f32; x.len()];
        if n_valid == 0 {
            return (0.0, grad);
        }
        let inv_n = 1.0 / n_valid as f64;
        let losses: Vec<f64> = grad
            .par_chunks_mut(classes)
            .zip(x.par_chunks(classes))
            .zip(self.labels.par_iter())
            .map(|((g, row), &label)| {
                if label == IGNORE {
                    return 0.0;
                }
                let max = row_max(row);
                let sum = exp_shifted(row, max, g);
                let scale = (inv_n / sum) as f32;
                for gi in g.iter_mut() {
                    *gi *= scale;
                }
                g[label as usize] -= inv_n as f32;
                sum.ln() + (max - row[label as usize]) as f64
            })
            .collect();
        // Summed in row order, so the value never depends on the thread count.
        ((losses.iter().sum::<f64>() * inv_n) as f32, grad)
    }
}

impl CustomOp1 for FusedCrossEntropy {
    fn name(&self) -> &'static str {
        "fused-softmax-cross-entropy"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (_, classes) = layout.shape().dims2()?;
        let CpuStorage::F32(data) = storage else { candle_core::bail!("fused cross-entropy takes f32 logits") };
        let Some((start, end)) = layout.contiguous_offsets() else { candle_core::bail!("fused cross-entropy takes contiguous logits") };
        let (loss, grad) = self.run(&data[start..end], classes);
        *self.grad.lock().expect("grad lock") = Some(grad);
        Ok((CpuStorage::F32(vec![loss]), Shape::from(())))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let (_, classes) = arg.dims2()?;
        let mut grad = match self.grad.lock().expect("grad lock").take() {
            Some(g) => g,
            // A second backward through the same graph: recompute.
            None => self.run(&arg.flatten_all()?.to_vec1::<f32>()?, classes).1,
        };
        let upstream = grad_res.to_dtype(DType::F32)?.to_scalar::<f32>()?;
        if upstream != 1.0 {
            grad.par_iter_mut().for_each(|g| *g *= upstream);
        }
        Ok(Some(Tensor::from_vec(grad, arg.shape(), arg.device())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn logits(rows: usize, classes: usize) -> Vec<f32> {
        (0..rows * classes).map(|i| (((i * 7919 + 13) % 1009) as f32 / 1009.0 - 0.5) * 8.0).collect()
    }

    #[test]
    fn fused_matches_composite_in_value_and_gradient() {
        let (rows, classes) = (37, 301);
        let labels: Vec<u32> = (0..rows as u32).map(|r| if r % 5 == 3 { IGNORE } else { (r * 31) % classes as u32 }).collect();
        let x = Var::from_vec(logits(rows, classes), (rows, classes), &Device::Cpu).unwrap();
        let fused = cross_entropy(x.as_tensor(), &labels).unwrap();
        let comp = composite_cross_entropy(x.as_tensor(), &labels).unwrap();
        let (f, c) = (fused.to_scalar::<f32>().unwrap(), comp.to_scalar::<f32>().unwrap());
        assert!((f - c).abs() < 1e-5, "loss {f} vs {c}");
        // A non-unit upstream gradient exercises the scaling in `bwd`.
        let gf = (fused * 3.0).unwrap().backward().unwrap().get(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let gc = (comp * 3.0).unwrap().backward().unwrap().get(&x).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let worst = gf.iter().zip(&gc).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst < 1e-5, "largest gradient difference {worst}");
        assert!(gf.iter().any(|&g| g != 0.0));
    }

    #[test]
    fn all_ignored_gives_zero() {
        let x = Tensor::new(&[[1f32, 2.0], [3.0, 4.0]], &Device::Cpu).unwrap();
        assert_eq!(cross_entropy(&x, &[IGNORE, IGNORE]).unwrap().to_scalar::<f32>().unwrap(), 0.0);
        assert!(cross_entropy(&x, &[0, 2]).is_err());
    }

    #[test]
    fn bce_is_softplus() {
        let p = Tensor::new(&[2f32, -30.0], &Device::Cpu).unwrap();
        let n = Tensor::new(&[-1f32, 40.0], &Device::Cpu).unwrap();
        let got = bce_sampled(&p, &n).unwrap().to_scalar::<f32>().unwrap();
        let sp = |x: f64| (1.0 + x.exp()).ln();
        let want = ((sp(-2.0) + sp(-1.0)) + (sp(30.0) + sp(40.0))) / 2.0;
        assert!((got as f64 - want).abs() < 1e-4, "{got} vs {want}");
    }
}
