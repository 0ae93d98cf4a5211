//! Fusion plans built as candle modules: every op's forward against a hand-written reference,
//! every op's gradients against central finite differences, missing modalities left out of the
//! fusion (never filled in), and the weighted-sum plugin's plan equal to the same fusion written
//! by hand in candle, in outputs and gradients.
mod common;

use candle_core::{Device, Tensor, Var, D};
use encore::models::fusion_plan::{FusionModule, ModalityInput};
use encore::models::{Params, TrainCtx};
use encore::plugins::fusion::{self as pf, Activation, Op, Plan};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const N: usize = 5;
const D_ID: usize = 4;

fn dev() -> Device {
    Device::Cpu
}

fn randn(rng: &mut StdRng, n: usize, d: usize) -> Tensor {
    let v: Vec<f32> = (0..n * d).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    Tensor::from_vec(v, (n, d), &dev()).unwrap()
}

/// Two modalities, `a` (width 3, item 1 missing) and `b` (width 4, items 2 and 3 missing), with
/// missing rows zeroed as the loader leaves them.
fn modalities(seed: u64, masked: bool) -> Vec<ModalityInput> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mk = |rng: &mut StdRng, name: &str, d: usize, missing: &[usize]| {
        let mut v: Vec<f32> = (0..N * d).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        for &i in missing {
            v[i * d..(i + 1) * d].iter_mut().for_each(|x| *x = 0.0);
        }
        let present: Vec<f32> = (0..N).map(|i| if missing.contains(&i) { 0.0 } else { 1.0 }).collect();
        ModalityInput {
            name: name.into(),
            values: Tensor::from_vec(v, (N, d), &dev()).unwrap(),
            present: masked.then(|| Tensor::from_vec(present, (N, 1), &dev()).unwrap()),
        }
    };
    vec![mk(&mut rng, "a", 3, &[1]), mk(&mut rng, "b", 4, &[2, 3])]
}

/// A plan from ops; the widths are inferred by the host's validator's rules (here by hand).
fn plan(nodes: Vec<Op>, dims: Vec<usize>) -> Plan {
    let output = nodes.len() - 1;
    Plan { nodes, dims, output }
}

/// Input nodes 0..3: id (4), a (3), b (4); node 3: a projected to 4; node 4: b projected to 4.
fn base() -> (Vec<Op>, Vec<usize>) {
    (
        vec![
            Op::Input("id".into()),
            Op::Input("a".into()),
            Op::Input("b".into()),
            Op::Linear { src: 1, out_dim: 4, bias: true },
            Op::Linear { src: 2, out_dim: 4, bias: false },
        ],
        vec![4, 3, 4, 4, 4],
    )
}

fn with(op: Op, dim: usize) -> Plan {
    let (mut nodes, mut dims) = base();
    nodes.push(op);
    dims.push(dim);
    plan(nodes, dims)
}

/// Every op of `fusion.wit`, each on top of the base nodes.
fn every_op() -> Vec<(&'static str, Plan)> {
    vec![
        ("linear", with(Op::Linear { src: 0, out_dim: 4, bias: true }, 4)),
        ("layer-norm", with(Op::LayerNorm(3), 4)),
        ("l2-norm", with(Op::L2Norm(4), 4)),
        ("concat", with(Op::Concat(vec![0, 1, 4]), 11)),
        ("add", with(Op::Add(vec![0, 3, 4]), 4)),
        ("mul", with(Op::Mul(3, 4), 4)),
        ("weighted-sum learned", with(Op::WeightedSum { srcs: vec![0, 3, 4], fixed: None }, 4)),
        ("weighted-sum fixed", with(Op::WeightedSum { srcs: vec![0, 3, 4], fixed: Some(vec![0.5, 0.3, 0.2]) }, 4)),
        ("gate", with(Op::Gate(vec![0, 3, 4]), 4)),
        ("attention", with(Op::Attention { query: 0, keys: vec![3, 4], heads: 2 }, 4)),
        ("film", with(Op::Film { target: 0, condition: 1 }, 4)),
        ("dropout", with(Op::Dropout { src: 3, p: 0.3 }, 4)),
        ("relu", with(Op::Activation { src: 3, f: Activation::Relu }, 4)),
        ("gelu", with(Op::Activation { src: 3, f: Activation::Gelu }, 4)),
        ("tanh", with(Op::Activation { src: 3, f: Activation::Tanh }, 4)),
        ("sigmoid", with(Op::Activation { src: 3, f: Activation::Sigmoid }, 4)),
        ("silu", with(Op::Activation { src: 3, f: Activation::Silu }, 4)),
    ]
}

/// `Σ out ⊙ R` for a fixed random `R`: a scalar whose gradient reaches every output element.
fn probe(out: &Tensor, seed: u64) -> Tensor {
    let mut rng = StdRng::seed_from_u64(seed);
    let (n, d) = out.dims2().unwrap();
    (out * randn(&mut rng, n, d)).unwrap().sum_all().unwrap()
}

fn vals(t: &Tensor) -> Vec<Vec<f32>> {
    t.to_vec2().unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
}

#[test]
fn every_op_has_gradients_that_match_finite_differences() {
    for masked in [true, false] {
        for (name, plan) in every_op() {
            let mut p = Params::new(11, &dev());
            let id = Var::from_tensor(&randn(&mut StdRng::seed_from_u64(3), N, D_ID)).unwrap();
            let m = FusionModule::new(&plan, modalities(5, masked), &mut p).unwrap();
            let loss = |ctx: Option<&TrainCtx>| probe(&m.forward(Some(id.as_tensor()), ctx).unwrap(), 9);
            // Dropout draws the same mask from the same seed, so differences see one function.
            let ctx = || (name == "dropout").then(|| TrainCtx::new(1));
            let grads = loss(ctx().as_ref()).backward().unwrap();
            let mut vars: Vec<(String, Var)> = p.named_vars();
            vars.push(("id".into(), id.clone()));
            for (vname, var) in vars {
                let reads_id = plan.nodes[5..].iter().any(|op| encore::models::fusion_plan::sources(op).contains(&0));
                if vname == "id" && !reads_id {
                    assert!(grads.get(&var).is_none(), "{name}: a gradient reaches id, which it does not read");
                    continue;
                }
                let g = grads.get(&var).unwrap_or_else(|| panic!("{name}: no gradient reaches {vname}"));
                let g: Vec<f32> = g.flatten_all().unwrap().to_vec1().unwrap();
                let x0: Vec<f32> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
                let shape = var.as_tensor().shape().clone();
                let h = 1e-2f32;
                for j in (0..x0.len()).step_by(x0.len().div_ceil(6)) {
                    let mut x = x0.clone();
                    x[j] = x0[j] + h;
                    var.set(&Tensor::from_vec(x.clone(), &shape, &dev()).unwrap()).unwrap();
                    let up: f32 = loss(ctx().as_ref()).to_scalar().unwrap();
                    x[j] = x0[j] - h;
                    var.set(&Tensor::from_vec(x, &shape, &dev()).unwrap()).unwrap();
                    let down: f32 = loss(ctx().as_ref()).to_scalar().unwrap();
                    var.set(&Tensor::from_vec(x0.clone(), &shape, &dev()).unwrap()).unwrap();
                    let fd = (up - down) / (2.0 * h);
                    assert!(
                        (fd - g[j]).abs() <= 3e-3 + 3e-2 * fd.abs(),
                        "{name} (masked {masked}): d/d{vname}[{j}]: backward {} vs finite difference {fd}",
                        g[j]
                    );
                }
            }
        }
    }
}

#[test]
fn every_op_matches_a_hand_written_reference() {
    let mut rng = StdRng::seed_from_u64(21);
    let id = randn(&mut rng, N, D_ID);
    let mods = modalities(5, true);
    let (a, b) = (mods[0].values.clone(), mods[1].values.clone());
    let (ma, mb) = (mods[0].present.clone().unwrap(), mods[1].present.clone().unwrap());
    for (name, plan) in every_op() {
        let mut p = Params::new(11, &dev());
        let m = FusionModule::new(&plan, mods.clone(), &mut p).unwrap();
        let out = m.forward(Some(&id), None).unwrap();
        let w = |n: &str| p.named_vars().into_iter().find(|(k, _)| k == n).unwrap_or_else(|| panic!("{name}: no {n}")).1.as_tensor().clone();
        let lin = |x: &Tensor, node: usize, bias: bool| {
            let y = x.matmul(&w(&format!("fusion.n{node}.linear.weight")).t().unwrap()).unwrap();
            if bias {
                y.broadcast_add(&w(&format!("fusion.n{node}.linear.bias"))).unwrap()
            } else {
                y
            }
        };
        // The projections exist only where the op reads them.
        let pa = || lin(&a, 3, true);
        let pb = || lin(&b, 4, false);
        let lin5 = |x: &Tensor, what: &str| {
            x.matmul(&w(&format!("fusion.n5.{what}.weight")).t().unwrap()).unwrap().broadcast_add(&w(&format!("fusion.n5.{what}.bias"))).unwrap()
        };
        let any = ma.maximum(&mb).unwrap();
        let want = match name {
            "linear" => lin5(&id, "linear"),
            "layer-norm" => {
                let mu = pa().mean_keepdim(D::Minus1).unwrap();
                let xc = pa().broadcast_sub(&mu).unwrap();
                let var = xc.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
                xc.broadcast_div(&(var + 1e-5).unwrap().sqrt().unwrap()).unwrap()
            }
            "l2-norm" => pb().broadcast_div(&pb().sqr().unwrap().sum_keepdim(1).unwrap().sqrt().unwrap().clamp(1e-6, f64::MAX).unwrap()).unwrap(),
            "concat" => Tensor::cat(&[id.clone(), a.broadcast_mul(&ma).unwrap(), pb().broadcast_mul(&mb).unwrap()], 1).unwrap(),
            "add" => (&id + pa().broadcast_mul(&ma).unwrap() + pb().broadcast_mul(&mb).unwrap()).unwrap(),
            "mul" => {
                // A missing factor is the identity.
                let one = |x: &Tensor, m: &Tensor| x.broadcast_mul(m).unwrap().broadcast_add(&(1.0 - m).unwrap()).unwrap();
                (one(&pa(), &ma) * one(&pb(), &mb)).unwrap()
            }
            "weighted-sum learned" | "weighted-sum fixed" => {
                // Weights renormalised per item over what is present, to the same total.
                let base: Vec<f32> = if name.ends_with("fixed") { vec![0.5, 0.3, 0.2] } else { vec![1.0 / 3.0; 3] };
                let (mav, mbv): (Vec<f32>, Vec<f32>) = (ma.flatten_all().unwrap().to_vec1().unwrap(), mb.flatten_all().unwrap().to_vec1().unwrap());
                let total: f32 = base.iter().sum();
                let mut rows = Vec::new();
                for i in 0..N {
                    let ws = [base[0], base[1] * mav[i], base[2] * mbv[i]];
                    let s: f32 = ws.iter().sum();
                    rows.extend(ws.iter().map(|x| x * total / s));
                }
                let wt = Tensor::from_vec(rows, (N, 3), &dev()).unwrap();
                let col = |j: usize| wt.narrow(1, j, 1).unwrap();
                (id.broadcast_mul(&col(0)).unwrap() + pa().broadcast_mul(&col(1)).unwrap() + pb().broadcast_mul(&col(2)).unwrap()).unwrap()
            }
            "gate" => {
                let parts = [id.clone(), pa().broadcast_mul(&ma).unwrap(), pb().broadcast_mul(&mb).unwrap()];
                let z =
                    Tensor::cat(&parts, 1).unwrap().matmul(&w("fusion.n5.gate.weight").t().unwrap()).unwrap().broadcast_add(&w("fusion.n5.gate.bias")).unwrap();
                let g = (z.neg().unwrap().exp().unwrap() + 1.0).unwrap().recip().unwrap();
                let mut y = (g.narrow(1, 0, 4).unwrap() * &parts[0]).unwrap();
                for (j, part) in parts.iter().enumerate().skip(1) {
                    y = (y + (g.narrow(1, 4 * j, 4).unwrap() * part).unwrap()).unwrap();
                }
                y
            }
            "attention" => {
                // Per item and head: softmax over the keys present, then the output projection.
                let q = lin5(&id, "attention.query");
                let keys = [(&pa(), &ma), (&pb(), &mb)];
                let k: Vec<Tensor> = keys.iter().map(|(x, _)| lin5(x, "attention.key")).collect();
                let v: Vec<Tensor> = keys.iter().map(|(x, _)| lin5(x, "attention.value")).collect();
                let (qv, kv, vv) = (vals(&q), k.iter().map(vals).collect::<Vec<_>>(), v.iter().map(vals).collect::<Vec<_>>());
                let present = [vals(&ma), vals(&mb)];
                let mut y = vec![0f32; N * 4];
                for i in 0..N {
                    for h in 0..2 {
                        let r = h * 2..h * 2 + 2;
                        let s: Vec<f32> = (0..2).map(|j| r.clone().map(|c| qv[i][c] * kv[j][i][c]).sum::<f32>() / 2f32.sqrt()).collect();
                        let e: Vec<f32> = (0..2).map(|j| if present[j][i][0] > 0.0 { s[j].exp() } else { 0.0 }).collect();
                        let z: f32 = e.iter().sum();
                        for c in r {
                            y[i * 4 + c] = if z > 0.0 { (0..2).map(|j| e[j] / z * vv[j][i][c]).sum() } else { 0.0 };
                        }
                    }
                }
                let y = Tensor::from_vec(y, (N, 4), &dev()).unwrap();
                lin5(&y, "attention.out").broadcast_mul(&any).unwrap()
            }
            "film" => {
                // A missing condition leaves the target as it is.
                let gb = lin5(&a, "film").broadcast_mul(&ma).unwrap();
                ((&id * (gb.narrow(1, 0, 4).unwrap() + 1.0).unwrap()).unwrap() + gb.narrow(1, 4, 4).unwrap()).unwrap()
            }
            "dropout" => pa().clone(), // off in evaluation
            "relu" => pa().relu().unwrap(),
            "gelu" => pa().gelu_erf().unwrap(),
            "tanh" => pa().tanh().unwrap(),
            "sigmoid" => (pa().neg().unwrap().exp().unwrap() + 1.0).unwrap().recip().unwrap(),
            "silu" => (&pa() * (pa().neg().unwrap().exp().unwrap() + 1.0).unwrap().recip().unwrap()).unwrap(),
            other => panic!("no reference for {other}"),
        };
        assert_eq!(out.dims(), want.dims(), "{name}");
        let d = max_diff(&out, &want);
        assert!(d < 1e-5, "{name}: max difference {d} from the reference\n{out}\n{want}");
    }
}

#[test]
fn dropout_is_on_in_training_and_off_in_evaluation() {
    let plan = with(Op::Dropout { src: 3, p: 0.5 }, 4);
    let mut p = Params::new(1, &dev());
    let m = FusionModule::new(&plan, modalities(5, false), &mut p).unwrap();
    let id = randn(&mut StdRng::seed_from_u64(2), N, D_ID);
    let eval = m.forward(Some(&id), None).unwrap();
    let train = m.forward(Some(&id), Some(&TrainCtx::new(4))).unwrap();
    let (e, t): (Vec<f32>, Vec<f32>) = (eval.flatten_all().unwrap().to_vec1().unwrap(), train.flatten_all().unwrap().to_vec1().unwrap());
    let zeros = t.iter().filter(|&&x| x == 0.0).count();
    assert!(zeros > 2 && zeros < t.len() - 2, "{zeros} of {} dropped", t.len());
    for (x, y) in e.iter().zip(&t) {
        assert!(*y == 0.0 || (y - 2.0 * x).abs() < 1e-5, "kept values are scaled by 1/(1-p): {x} → {y}");
    }
}

#[test]
fn weights_are_named_by_node() {
    let (_, plan) = every_op().into_iter().find(|(n, _)| *n == "attention").unwrap();
    let mut p = Params::new(1, &dev());
    FusionModule::new(&plan, modalities(5, true), &mut p).unwrap();
    let names: Vec<String> = p.named_vars().into_iter().map(|(n, _)| n).collect();
    for want in
        ["fusion.n3.linear.weight", "fusion.n3.linear.bias", "fusion.n4.linear.weight", "fusion.n5.attention.query.weight", "fusion.n5.attention.out.bias"]
    {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
    assert!(!names.iter().any(|n| n == "fusion.n4.linear.bias"), "a bias-free linear has no bias");
}

#[test]
fn a_missing_modality_is_left_out_not_filled_in() {
    // The weighted sum of one present and one missing source is the present one, whatever the
    // missing row holds.
    let plan = plan(
        vec![Op::Input("a".into()), Op::Input("b".into()), Op::Linear { src: 0, out_dim: 4, bias: true }, Op::WeightedSum { srcs: vec![2, 1], fixed: None }],
        vec![3, 4, 4, 4],
    );
    let mut mods = modalities(5, true);
    let mut garbage = mods[1].values.to_vec2::<f32>().unwrap();
    garbage[2] = vec![100.0; 4];
    mods[1].values = Tensor::new(garbage, &dev()).unwrap();
    let mut p = Params::new(1, &dev());
    let m = FusionModule::new(&plan, mods.clone(), &mut p).unwrap();
    let out = vals(&m.forward(None, None).unwrap());
    let lin = {
        let w = p.named_vars();
        let get = |n: &str| w.iter().find(|(k, _)| k == n).unwrap().1.as_tensor().clone();
        vals(&mods[0].values.matmul(&get("fusion.n2.linear.weight").t().unwrap()).unwrap().broadcast_add(&get("fusion.n2.linear.bias")).unwrap())
    };
    // Item 2 has `a` only: the output is `a`'s projection with the full weight (1 of 1).
    for (x, y) in out[2].iter().zip(&lin[2]) {
        assert!((x - y).abs() < 1e-5, "item 2: {:?} vs {:?}", out[2], lin[2]);
    }
}

fn weighted_sum_plugin_plan(out_dim: u32) -> Plan {
    let plugin = common::load("weighted-sum");
    let inputs = [pf::Modality { name: "id".into(), dim: D_ID as u32 }, pf::Modality { name: "a".into(), dim: 3 }, pf::Modality { name: "b".into(), dim: 4 }];
    pf::plan(&plugin, &inputs, out_dim, &[]).unwrap()
}

#[test]
fn the_weighted_sum_plugin_equals_the_fusion_written_by_hand() {
    let plan = weighted_sum_plugin_plan(D_ID as u32);
    for masked in [false, true] {
        let mods = modalities(8, masked);
        let mut p = Params::new(3, &dev());
        let m = FusionModule::new(&plan, mods.clone(), &mut p).unwrap();
        let id = Var::from_tensor(&randn(&mut StdRng::seed_from_u64(4), N, D_ID)).unwrap();
        let out = m.forward(Some(id.as_tensor()), None).unwrap();
        let grads = probe(&out, 1).backward().unwrap();

        // By hand: per-input Linear, L2 normalisation of the content parts (not of `id`),
        // softmax weights, renormalised over the inputs present.
        let vars = p.named_vars();
        let get =
            |n: &str| vars.iter().find(|(k, _)| k == n).unwrap_or_else(|| panic!("no {n}: {:?}", vars.iter().map(|v| &v.0).collect::<Vec<_>>())).1.clone();
        let node = |name: &str| plan.nodes.iter().position(|o| matches!(o, Op::Input(n) if n == name)).unwrap();
        let lin_of = |input: usize| plan.nodes.iter().position(|o| matches!(o, Op::Linear { src, .. } if *src == input)).unwrap();
        let ws = plan.nodes.iter().position(|o| matches!(o, Op::WeightedSum { .. })).unwrap();
        let xs = [id.as_tensor().clone(), mods[0].values.clone(), mods[1].values.clone()];
        let names = ["id", "a", "b"];
        let parts: Vec<Tensor> = names
            .iter()
            .zip(&xs)
            .map(|(n, x)| {
                let l = lin_of(node(n));
                let y = x
                    .matmul(&get(&format!("fusion.n{l}.linear.weight")).as_tensor().t().unwrap())
                    .unwrap()
                    .broadcast_add(get(&format!("fusion.n{l}.linear.bias")).as_tensor())
                    .unwrap();
                if *n == "id" {
                    return y;
                }
                y.broadcast_div(&(y.sqr().unwrap().sum_keepdim(1).unwrap() + 1e-12).unwrap().sqrt().unwrap()).unwrap()
            })
            .collect();
        let logits = get(&format!("fusion.n{ws}.weights"));
        let w = candle_nn::ops::softmax(&logits.as_tensor().reshape((1, 3)).unwrap(), 1).unwrap();
        let ones = Tensor::ones((N, 1), candle_core::DType::F32, &dev()).unwrap();
        let masks = [ones.clone(), mods[0].present.clone().unwrap_or(ones.clone()), mods[1].present.clone().unwrap_or(ones)];
        let wm = Tensor::cat(&masks, 1).unwrap().broadcast_mul(&w).unwrap();
        let wm = wm.broadcast_div(&wm.sum_keepdim(1).unwrap()).unwrap();
        let mut hand = parts[0].broadcast_mul(&wm.narrow(1, 0, 1).unwrap()).unwrap();
        for (j, part) in parts.iter().enumerate().skip(1) {
            hand = (hand + part.broadcast_mul(&wm.narrow(1, j, 1).unwrap()).unwrap()).unwrap();
        }
        let hand_grads = probe(&hand, 1).backward().unwrap();
        assert!(max_diff(&out, &hand) < 1e-6, "outputs differ by {}", max_diff(&out, &hand));
        let mut all: Vec<(String, Var)> = vars.clone();
        all.push(("id".into(), id.clone()));
        for (n, v) in all {
            let (g1, g2) = (grads.get(&v).unwrap(), hand_grads.get(&v).unwrap_or_else(|| panic!("the hand-written fusion has no gradient for {n}")));
            assert!(max_diff(g1, g2) < 1e-6, "masked {masked}: gradients of {n} differ by {}", max_diff(g1, g2));
        }
    }
}

#[test]
fn a_plan_too_large_for_memory_is_refused_before_allocating() {
    // Each node within the per-node width limit, 10⁹ parameters in all.
    let mut nodes = vec![Op::Input("id".into())];
    let mut dims = vec![4usize];
    for _ in 0..16 {
        nodes.push(Op::Linear { src: 0, out_dim: 1 << 16, bias: false });
        dims.push(1 << 16);
        nodes.push(Op::Linear { src: nodes.len() - 1, out_dim: 4, bias: false });
        dims.push(4);
    }
    let big = plan(nodes, dims);
    // Each linear here is 4 × 2¹⁶ weights, either way round: 8M in all, within the limit.
    let total: u64 = (1..big.nodes.len()).map(|_| 4u64 << 16).sum();
    assert!(total < 1 << 27, "this plan is small in parameters: {total}");
    // Parameters: a gate over 4 sources of 2¹⁴ = 4·2²⁸ ≈ 10⁹.
    let gate = plan(vec![Op::Input("id".into()), Op::Linear { src: 0, out_dim: 1 << 14, bias: false }, Op::Gate(vec![1, 1, 1, 1])], vec![4, 1 << 14, 1 << 14]);
    let err = encore::models::fusion_plan::check_size(&gate, 10).unwrap_err();
    assert!(err.contains("trainable parameters") && err.contains("node 2 (gate)"), "{err}");
    let mut p = Params::new(1, &dev());
    assert!(FusionModule::new(&gate, vec![], &mut p).is_err());
    assert!(p.named_vars().is_empty(), "nothing was allocated");
    // Activations: 32 nodes of width 2¹⁶ over 10⁶ items.
    let err = encore::models::fusion_plan::check_size(&big, 1_000_000).unwrap_err();
    assert!(err.contains("floats") && err.contains("width 65536"), "{err}");
}
