//! Writes `data/sample/rankings.parquet`, the shipped sample `encore eval` runs on by default:
//! 1,000 users over 2,000 items, ranked by a noisy latent-factor model (seed 7), with 1–3 held-out
//! targets each drawn from the same model, so the metrics are far from both 0 and 1.
//!
//!     cargo run -p encore --example make_sample_rankings -- data/sample/rankings.parquet
use rand::{Rng, SeedableRng};

fn main() -> anyhow::Result<()> {
    let out = std::env::args().nth(1).unwrap_or_else(|| "data/sample/rankings.parquet".into());
    let (n_users, n_items, dim, k) = (1000usize, 2000usize, 8usize, 50usize);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let normal = |rng: &mut rand::rngs::StdRng| (0..12).map(|_| rng.random::<f32>()).sum::<f32>() - 6.0;
    let items: Vec<f32> = (0..n_items * dim).map(|_| normal(&mut rng)).collect();
    let popularity: Vec<f32> = (0..n_items).map(|i| -((i + 1) as f32).ln() * 0.8).collect();
    let (mut users, mut ranked, mut targets) = (Vec::new(), Vec::new(), Vec::new());
    for u in 0..n_users {
        let taste: Vec<f32> = (0..dim).map(|_| normal(&mut rng)).collect();
        let score = |i: usize, noise: f32| (0..dim).map(|d| taste[d] * items[i * dim + d]).sum::<f32>() * 0.5 + popularity[i] + noise;
        // Targets: what the user "really" plays next, from the true model plus noise.
        let truth: Vec<f32> = (0..n_items).map(|i| score(i, 2.0 * normal(&mut rng))).collect();
        let mut order: Vec<usize> = (0..n_items).collect();
        order.sort_by(|&a, &b| truth[b].total_cmp(&truth[a]));
        let n_targets = 1 + rng.random_range(0..3usize);
        targets.push(order[..n_targets].iter().map(|&i| i as u32).collect::<Vec<_>>());
        // The model's ranking: the same model seen through more noise.
        let est: Vec<f32> = (0..n_items).map(|i| score(i, 2.5 * normal(&mut rng))).collect();
        order.sort_by(|&a, &b| est[b].total_cmp(&est[a]).then(a.cmp(&b)));
        ranked.push(order[..k].iter().map(|&i| i as u32).collect::<Vec<_>>());
        users.push(format!("user_{u:04}"));
    }
    encore::eval::rankings::write(std::path::Path::new(&out), &users, &ranked, &targets, n_items as u32)?;
    println!("wrote {out}");
    Ok(())
}
