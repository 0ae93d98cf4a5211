//! Host-side numeric kernels shared by training and evaluation: a matrix product into a buffer
//! the caller keeps, and `exp`, sigmoid and tanh written so that the compiler vectorises them
//! (libm's are a call per element).

/// `exp(x)` for `x ≤ 0`, within 2e-7 relative (Cephes' `expf`: a degree-6 polynomial after
/// reduction by powers of 2), written without branches or calls so that it vectorises; libm's
/// `expf` is a call per element, and was most of the kernel's time. Below -87 it returns
/// `exp(-87)` ≈ 1.6e-38, which is 0 for a softmax that holds a 1 (its maximum).
#[inline(always)]
pub fn exp_nonpositive(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5·2^23 rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    let x = if x < -87.0 { -87.0 } else { x };
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let k = shifted - ROUND;
    let r = x - k * LN2_HI - k * LN2_LO;
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 5e-1;
    let e = p * r * r + r + 1.0;
    // 2^k from the exponent bits; k lies in [-126, 0]. The integer k is read from the rounded
    // sum's low mantissa bits, not by a float-to-int cast, whose saturating semantics keep the
    // compiler from vectorising.
    let k = shifted.to_bits() as i32 - ROUND.to_bits() as i32;
    e * f32::from_bits(((k + 127) as u32) << 23)
}

/// The logistic function, within 3e-7 absolute.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    let e = exp_nonpositive(-x.abs());
    let s = 1.0 / (1.0 + e);
    if x >= 0.0 {
        s
    } else {
        e * s
    }
}

/// The hyperbolic tangent, within 3e-7 absolute.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let e = exp_nonpositive(-2.0 * x.abs());
    let t = (1.0 - e) / (1.0 + e);
    if x >= 0.0 {
        t
    } else {
        -t
    }
}

/// `dst (m × n) = [dst +] scale · op(lhs) · op(rhs)`, everything row-major, where `op(lhs)` is
/// `m × k`: `lhs` itself, or the transpose of a `k × m` `lhs` when `lhs_t`; likewise `op(rhs)`
/// is `k × n`: `rhs`, or the transpose of an `n × k` `rhs` when `rhs_t`.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    dst: &mut [f32],
    lhs: &[f32],
    lhs_t: bool,
    rhs: &[f32],
    rhs_t: bool,
    (m, n, k): (usize, usize, usize),
    scale: f32,
    accumulate: bool,
    par: gemm::Parallelism,
) {
    assert!(dst.len() == m * n && lhs.len() == m * k && rhs.len() == k * n, "matmul: shapes do not match the buffers");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst.fill(0.0);
        }
        return;
    }
    // Element (i, c) of op(lhs) is at i·k + c, or c·m + i when transposed; (c, j) of op(rhs) at
    // c·n + j, or j·k + c when transposed.
    let (lhs_cs, lhs_rs) = if lhs_t { (m as isize, 1) } else { (1, k as isize) };
    let (rhs_cs, rhs_rs) = if rhs_t { (k as isize, 1) } else { (1, n as isize) };
    // SAFETY: the assert above keeps every index in bounds (see the layout just above); the
    // three slices do not overlap (`dst` is borrowed mutably).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs,
            lhs_rs,
            rhs.as_ptr(),
            rhs_cs,
            rhs_rs,
            1.0,
            scale,
            false,
            false,
            false,
            par,
        );
    }
}

/// `dst (m × n) = [dst +] lhs (m × d) · rhsᵀ`, where `rhs` is `n × d`; everything row-major.
pub fn matmul_nt(dst: &mut [f32], lhs: &[f32], rhs: &[f32], m: usize, n: usize, d: usize, accumulate: bool, par: gemm::Parallelism) {
    matmul(dst, lhs, false, rhs, true, (m, n, d), 1.0, accumulate, par);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_matches_libm() {
        let mut worst = 0f64;
        for i in 0..=200_000 {
            let x = -(i as f32) * 90.0 / 200_000.0;
            let (got, want) = (exp_nonpositive(x) as f64, (x as f64).exp());
            if x > -87.0 {
                worst = worst.max((got - want).abs() / want);
            } else {
                assert!(got < 2e-38, "exp({x}) = {got}");
            }
        }
        assert!(worst < 5e-7, "largest relative error {worst}");
    }

    #[test]
    fn sigmoid_and_tanh_match_libm() {
        let (mut ws, mut wt) = (0f64, 0f64);
        for i in -200_000..=200_000 {
            let x = i as f32 * 1e-4;
            let xd = x as f64;
            ws = ws.max((sigmoid(x) as f64 - 1.0 / (1.0 + (-xd).exp())).abs());
            wt = wt.max((tanh(x) as f64 - xd.tanh()).abs());
        }
        assert!(ws < 3e-7 && wt < 3e-7, "largest errors: sigmoid {ws}, tanh {wt}");
        assert_eq!((sigmoid(-200.0), sigmoid(200.0), tanh(-200.0), tanh(200.0)), (exp_nonpositive(-200.0), 1.0, -1.0, 1.0));
    }

    #[test]
    fn matmul_transposes_and_scales() {
        let (m, n, k) = (4, 3, 5);
        let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 - 3.0).collect(); // m × k
        let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 - 2.0).collect(); // k × n
        let t = |x: &[f32], r: usize, c: usize| (0..c * r).map(|i| x[(i % r) * c + i / r]).collect::<Vec<f32>>();
        let want: Vec<f32> = (0..m * n).map(|i| 0.5 * (0..k).map(|c| a[i / n * k + c] * b[c * n + i % n]).sum::<f32>()).collect();
        for (lt, rt) in [(false, false), (true, false), (false, true), (true, true)] {
            let lhs = if lt { t(&a, m, k) } else { a.clone() };
            let rhs = if rt { t(&b, k, n) } else { b.clone() };
            let mut dst = vec![f32::NAN; m * n];
            matmul(&mut dst, &lhs, lt, &rhs, rt, (m, n, k), 0.5, false, gemm::Parallelism::None);
            assert_eq!(dst, want, "lhs_t {lt}, rhs_t {rt}");
        }
    }

    #[test]
    fn matmul_nt_matches_the_definition_and_accumulates() {
        let (m, n, d) = (3, 5, 4);
        let lhs: Vec<f32> = (0..m * d).map(|i| (i % 5) as f32 - 2.0).collect();
        let rhs: Vec<f32> = (0..n * d).map(|i| (i % 3) as f32 - 1.0).collect();
        let want = |i: usize, j: usize| (0..d).map(|c| lhs[i * d + c] * rhs[j * d + c]).sum::<f32>();
        let mut dst = vec![f32::NAN; m * n];
        matmul_nt(&mut dst, &lhs, &rhs, m, n, d, false, gemm::Parallelism::None);
        let mut acc = vec![10.0; m * n];
        matmul_nt(&mut acc, &lhs, &rhs, m, n, d, true, gemm::Parallelism::Rayon(2));
        for i in 0..m {
            for j in 0..n {
                assert_eq!(dst[i * n + j], want(i, j));
                assert_eq!(acc[i * n + j], 10.0 + want(i, j));
            }
        }
    }
}
