//! Throughput of the host's `embed-text` (the BERT sentence encoder), for bench/embed_text/run.sh.
//! Usage: embed_text MODEL_DIR SENTENCES_FILE [REPS]   (one sentence per line)
//! Prints one JSON line: sentences, reps, best seconds per pass, sentences per second.
use encore::hostmodels::ModelRegistry;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(args.len() >= 3, "usage: embed_text MODEL_DIR SENTENCES_FILE [REPS]");
    let reps: usize = args.get(3).map(|r| r.parse()).transpose()?.unwrap_or(3);
    let sentences: Vec<String> = std::fs::read_to_string(&args[2])?.lines().map(String::from).collect();
    let registry = ModelRegistry::new().env_fallback(false).with("m", &args[1]);
    let t = Instant::now();
    registry.describe("m").map_err(|e| anyhow::anyhow!("{e}"))?;
    let load_s = t.elapsed().as_secs_f64();
    registry.embed_text("m", &sentences[..sentences.len().min(32)]).map_err(|e| anyhow::anyhow!("{e}"))?; // warm-up
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        let v = registry.embed_text("m", &sentences).map_err(|e| anyhow::anyhow!("{e}"))?;
        best = best.min(t.elapsed().as_secs_f64());
        assert_eq!(v.len(), sentences.len());
    }
    println!(
        "{{\"impl\": \"encore\", \"sentences\": {}, \"reps\": {reps}, \"load_s\": {load_s:.3}, \"best_s\": {best:.4}, \"per_s\": {:.1}}}",
        sentences.len(),
        sentences.len() as f64 / best
    );
    Ok(())
}
