//! `encore train` end to end: a run killed with SIGKILL resumes from its last complete checkpoint
//! and ends exactly where an uninterrupted run ends.
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

fn write_inputs(dir: &Path) -> std::path::PathBuf {
    // 200 sequences where item i is mostly followed by i + 1 (mod 40).
    let mut text = String::new();
    let mut x: u64 = 12345;
    for _ in 0..200 {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let mut item = (x >> 33) % 40;
        let mut line = Vec::new();
        for _ in 0..12 {
            line.push(item.to_string());
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            item = if (x >> 33).is_multiple_of(10) { (x >> 40) % 40 } else { (item + 1) % 40 };
        }
        text.push_str(&line.join(" "));
        text.push('\n');
    }
    std::fs::write(dir.join("seqs.txt"), text).unwrap();
    let cfg = dir.join("run.toml");
    std::fs::write(
        &cfg,
        r#"
[data]
sequences = "seqs.txt"

[encoder]
kind = "sasrec"
hidden_size = 32
inner_size = 64
max_len = 10
hidden_dropout = 0.1
attn_dropout = 0.1

[train]
epochs = 12
batch_size = 16
lr = 0.005
seed = 3
valid_metric = "ndcg@10"

[eval]
ks = [5, 10, 20]
"#,
    )
    .unwrap();
    cfg
}

#[test]
fn a_killed_training_run_resumes_and_matches_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_inputs(dir.path());
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));

    let out = common::encore().args(["train", cfg.to_str().unwrap(), "--quiet", "--out", a.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("recall") && stdout.contains("ndcg") && stdout.contains("mrr"), "{stdout}");
    for f in ["summary.toml", "best.safetensors", "best.toml", "item_embeddings.safetensors", "item_embeddings.parquet", "test_metrics.parquet"] {
        assert!(a.join(f).is_file(), "{f} missing");
    }

    let mut child = common::encore()
        .args(["train", cfg.to_str().unwrap(), "--quiet", "--out", b.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !b.join("checkpoints/epoch-0002.toml").exists() {
        assert!(started.elapsed() < Duration::from_secs(120), "no checkpoint after 120 s");
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(child.try_wait().unwrap().is_none(), "the run finished before it could be killed");
    // A second run on the same --out while the first one trains: refused at once (it used to
    // exit 0 too, and one run's results silently vanished).
    let second = common::encore().args(["train", cfg.to_str().unwrap(), "--quiet", "--out", b.to_str().unwrap()]).output().unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success() && err.contains("another encore process") && err.contains("encore train"), "{err}");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(!b.join("summary.toml").exists());

    let out = common::encore().args(["train", cfg.to_str().unwrap(), "--quiet", "--resume", "--out", b.to_str().unwrap()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("resumed after epoch"), "{stderr}");
    let read = |d: &Path| std::fs::read_to_string(d.join("summary.toml")).unwrap();
    assert_eq!(read(&a), read(&b));

    // A truncated checkpoint is named when resuming.
    let ckpt =
        std::fs::read_dir(b.join("checkpoints")).unwrap().map(|e| e.unwrap().path()).find(|p| p.extension().is_some_and(|e| e == "safetensors")).unwrap();
    let len = std::fs::metadata(&ckpt).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&ckpt).unwrap().set_len(len / 3).unwrap();
    let out = common::encore().args(["train", cfg.to_str().unwrap(), "--quiet", "--resume", "--out", b.to_str().unwrap()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains(ckpt.file_name().unwrap().to_str().unwrap()), "{stderr}");
}
