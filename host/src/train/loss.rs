//! Losses: softmax cross-entropy over the full item set (fused on CPU) and BCE with sampled
//! negatives.
//!
//! The fused cross-entropy computes, in one pass per row (rows in parallel with rayon), the
//! max-subtracted softmax, `-log p[label]`, and the gradient `(softmax - onehot) / n_valid`,
//! which it keeps for the backward pass. candle's composite version materialises the softmax,
//! its log, a gather and their backward graph over the same `rows × n_items` matrix several
//! times; this one touches it twice (forward and gradient scaling).
//!
//! [`linear_cross_entropy`] also fuses the scoring layer, `logits = h · tableᵀ + bias`: the
//! logits are computed into the buffer that becomes the gradient, and the backward pass is two
//! matrix products (`G · table`, `Gᵀ · h`) and a column sum, with no transposed copies and no
//! other `rows × n_items` tensor.
use crate::math::{exp_nonpositive, matmul, matmul_nt};
use candle_core::{CpuStorage, CustomOp1, CustomOp3, DType, Layout, Shape, Storage, Tensor, D};
use rayon::prelude::*;
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

/// Mean softmax cross-entropy of the logits `h · tableᵀ (+ bias)` against `labels`: `h` is
/// `rows × d`, `table` `classes × d`, `bias` `classes`; rows labelled [`IGNORE`] are skipped.
/// Equal to [`cross_entropy`] of those logits, with gradients to `h`, `table` and `bias`. Fused
/// on CPU for f32 (see the module doc); composite candle ops elsewhere.
pub fn linear_cross_entropy(h: &Tensor, table: &Tensor, bias: Option<&Tensor>, labels: &[u32]) -> candle_core::Result<Tensor> {
    let (rows, d) = h.dims2()?;
    let (classes, d2) = table.dims2()?;
    if d != d2 {
        candle_core::bail!("linear_cross_entropy: hidden size {d} but item vectors of size {d2}");
    }
    if let Some(b) = bias {
        if b.dims1()? != classes {
            candle_core::bail!("linear_cross_entropy: {} biases for {classes} items", b.dims1()?);
        }
    }
    if labels.len() != rows {
        candle_core::bail!("linear_cross_entropy: {} labels for {rows} rows", labels.len());
    }
    if let Some(&l) = labels.iter().find(|&&l| l != IGNORE && l as usize >= classes) {
        candle_core::bail!("linear_cross_entropy: label {l} outside {classes} classes");
    }
    let f32_cpu = |t: &Tensor| t.device().is_cpu() && t.dtype() == DType::F32;
    if f32_cpu(h) && f32_cpu(table) && bias.is_none_or(f32_cpu) {
        let bias = match bias {
            Some(b) => b.contiguous()?,
            None => Tensor::zeros(classes, DType::F32, h.device())?,
        };
        h.contiguous()?.apply_op3(&table.contiguous()?, &bias, FusedLinearCrossEntropy { labels: labels.to_vec(), grad: Mutex::new(None) })
    } else {
        let logits = h.matmul(&table.t()?)?;
        let logits = match bias {
            Some(b) => logits.broadcast_add(b)?,
            None => logits,
        };
        composite_cross_entropy(&logits, labels)
    }
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

/// Replaces `row` by `exp(row - max)` and returns its sum.
fn exp_shifted(row: &mut [f32], max: f32) -> f64 {
    let mut acc = [0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for j in 0..LANES {
            let e = exp_nonpositive(c[j] - max);
            c[j] = e;
            acc[j] += e;
        }
    }
    let mut sum: f64 = acc.iter().map(|&a| a as f64).sum();
    for x in chunks.into_remainder() {
        *x = exp_nonpositive(*x - max);
        sum += *x as f64;
    }
    sum
}

/// Turns `rows × classes` logits, in place, into the gradient of the mean cross-entropy (for an
/// upstream gradient of 1), and returns the loss. Rows labelled [`IGNORE`] get a zero gradient.
fn softmax_cross_entropy_in_place(g: &mut [f32], classes: usize, labels: &[u32]) -> f32 {
    let n_valid = labels.iter().filter(|&&l| l != IGNORE).count();
    if n_valid == 0 {
        g.fill(0.0);
        return 0.0;
    }
    let inv_n = 1.0 / n_valid as f64;
    let losses: Vec<f64> = g
        .par_chunks_mut(classes)
        .zip(labels.par_iter())
        .map(|(g, &label)| {
            if label == IGNORE {
                g.fill(0.0);
                return 0.0;
            }
            let max = row_max(g);
            let picked = g[label as usize];
            let sum = exp_shifted(g, max);
            let scale = (inv_n / sum) as f32;
            // Probabilities below f32's normal range are flushed to zero: they change no
            // gradient, and subnormal operands made the backward products up to 5× slower when
            // logits spread widely (e.g. an unnormalised content fusion).
            for gi in g.iter_mut() {
                let v = *gi * scale;
                *gi = if v < f32::MIN_POSITIVE { 0.0 } else { v };
            }
            g[label as usize] -= inv_n as f32;
            sum.ln() + (max - picked) as f64
        })
        .collect();
    // Summed in row order, so the value never depends on the thread count.
    (losses.iter().sum::<f64>() * inv_n) as f32
}

/// The CPU kernel: forward computes the loss and stores the gradient for `bwd`.
struct FusedCrossEntropy {
    labels: Vec<u32>,
    grad: Mutex<Option<Vec<f32>>>,
}

impl FusedCrossEntropy {
    /// Loss and gradient (for an upstream gradient of 1) from row-major logits.
    fn run(&self, x: &[f32], classes: usize) -> (f32, Vec<f32>) {
        let mut grad = x.to_vec();
        let loss = softmax_cross_entropy_in_place(&mut grad, classes, &self.labels);
        (loss, grad)
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

/// The CPU kernel of [`linear_cross_entropy`]; forward keeps the gradient `G` of the logits.
struct FusedLinearCrossEntropy {
    labels: Vec<u32>,
    grad: Mutex<Option<Vec<f32>>>,
}

/// A contiguous f32 CPU tensor's values.
fn f32_slice<'a>(storage: &'a CpuStorage, layout: &Layout) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else { candle_core::bail!("fused linear cross-entropy takes f32 tensors") };
    let Some((start, end)) = layout.contiguous_offsets() else { candle_core::bail!("fused linear cross-entropy takes contiguous tensors") };
    Ok(&data[start..end])
}

impl FusedLinearCrossEntropy {
    /// Loss and the logits' gradient, for `h` (`rows × d`), `table` (`classes × d`), `bias`.
    fn run(&self, h: &[f32], table: &[f32], bias: &[f32]) -> (f32, Vec<f32>) {
        let (rows, classes) = (self.labels.len(), bias.len());
        let d = h.len() / rows.max(1);
        let mut g = vec![0f32; rows * classes];
        g.par_chunks_mut(classes.max(1)).for_each(|r| r.copy_from_slice(bias));
        matmul_nt(&mut g, h, table, rows, classes, d, true, gemm::Parallelism::Rayon(rayon::current_num_threads()));
        let loss = softmax_cross_entropy_in_place(&mut g, classes, &self.labels);
        (loss, g)
    }
}

impl CustomOp3 for FusedLinearCrossEntropy {
    fn name(&self) -> &'static str {
        "fused-linear-softmax-cross-entropy"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (loss, grad) = self.run(f32_slice(s1, l1)?, f32_slice(s2, l2)?, f32_slice(s3, l3)?);
        *self.grad.lock().expect("grad lock") = Some(grad);
        Ok((CpuStorage::F32(vec![loss]), Shape::from(())))
    }

    fn bwd(
        &self,
        h: &Tensor,
        table: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let ((rows, d), classes) = (h.dims2()?, bias.dims1()?);
        let (hs, hl) = h.storage_and_layout();
        let (ts, tl) = table.storage_and_layout();
        let (Storage::Cpu(hs), Storage::Cpu(ts)) = (&*hs, &*ts) else { candle_core::bail!("fused linear cross-entropy runs on the CPU") };
        let (hv, tv) = (f32_slice(hs, hl)?, f32_slice(ts, tl)?);
        let g = match self.grad.lock().expect("grad lock").take() {
            Some(g) => g,
            // A second backward through the same graph: recompute.
            None => self.run(hv, tv, &bias.to_vec1::<f32>()?).1,
        };
        let up = grad_res.to_dtype(DType::F32)?.to_scalar::<f32>()?;
        let par = gemm::Parallelism::Rayon(rayon::current_num_threads());
        let dev = h.device();
        // Each gradient only for an input that the graph tracks: `up · lhs · rhs` into `shape`.
        let grad = |t: &Tensor, shape: (usize, usize), lhs: &[f32], lhs_t: bool, rhs: &[f32], k: usize| -> candle_core::Result<Option<Tensor>> {
            if !t.track_op() {
                return Ok(None);
            }
            let mut out = vec![0f32; shape.0 * shape.1];
            matmul(&mut out, lhs, lhs_t, rhs, false, (shape.0, shape.1, k), up, false, par);
            Ok(Some(Tensor::from_vec(out, t.shape(), dev)?))
        };
        let dh = grad(h, (rows, d), &g, false, tv, classes)?; // G · table
        let dt = grad(table, (classes, d), &g, true, hv, rows)?; // Gᵀ · h
        let db = grad(bias, (1, classes), &vec![1f32; rows], false, &g, rows)?; // column sums of G
        Ok((dh, dt, db))
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

    /// The fused scoring layer + loss equals `cross_entropy(h · tableᵀ + bias)` from composite
    /// ops, in value and in the gradients to `h`, `table` and `bias`, with and without a bias,
    /// and again on a second backward through the same graph (recomputed).
    #[test]
    fn linear_matches_composite_in_value_and_gradients() {
        let (rows, classes, d) = (29, 203, 12);
        let dev = Device::Cpu;
        let labels: Vec<u32> = (0..rows as u32).map(|r| if r % 7 == 2 { IGNORE } else { (r * 53) % classes as u32 }).collect();
        let h = Var::from_vec(logits(rows, d).iter().map(|x| x * 0.3).collect(), (rows, d), &dev).unwrap();
        let table = Var::from_vec(logits(classes, d).iter().rev().map(|x| x * 0.2).collect(), (classes, d), &dev).unwrap();
        let bias = Var::from_vec((0..classes).map(|i| (i % 11) as f32 * 0.1 - 0.5).collect(), classes, &dev).unwrap();
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let close = |a: &[f32], b: &[f32], what: &str| {
            let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
            assert!(worst < 2e-5 && a.len() == b.len(), "{what}: largest difference {worst}");
            assert!(a.iter().any(|&x| x != 0.0), "{what}: all zero");
        };
        for with_bias in [true, false] {
            let b = with_bias.then_some(bias.as_tensor());
            let fused = linear_cross_entropy(h.as_tensor(), table.as_tensor(), b, &labels).unwrap();
            let logits = h.as_tensor().matmul(&table.as_tensor().t().unwrap()).unwrap();
            let logits = if with_bias { logits.broadcast_add(bias.as_tensor()).unwrap() } else { logits };
            let comp = composite_cross_entropy(&logits, &labels).unwrap();
            let (f, c) = (fused.to_scalar::<f32>().unwrap(), comp.to_scalar::<f32>().unwrap());
            assert!((f - c).abs() < 1e-5, "bias {with_bias}: loss {f} vs {c}");
            let gc = (comp * 3.0).unwrap().backward().unwrap();
            let scaled = (fused * 3.0).unwrap();
            for pass in 0..2 {
                let gf = scaled.backward().unwrap();
                close(&flat(gf.get(&h).unwrap()), &flat(gc.get(&h).unwrap()), &format!("bias {with_bias}, pass {pass}: d h"));
                close(&flat(gf.get(&table).unwrap()), &flat(gc.get(&table).unwrap()), &format!("bias {with_bias}, pass {pass}: d table"));
                match with_bias {
                    true => close(&flat(gf.get(&bias).unwrap()), &flat(gc.get(&bias).unwrap()), &format!("pass {pass}: d bias")),
                    false => assert!(gf.get(&bias).is_none()),
                }
            }
        }
        assert!(linear_cross_entropy(h.as_tensor(), table.as_tensor(), None, &[0]).is_err(), "one label for 29 rows");
        assert!(linear_cross_entropy(h.as_tensor(), &table.as_tensor().narrow(1, 0, 5).unwrap(), None, &labels).is_err(), "sizes differ");
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
