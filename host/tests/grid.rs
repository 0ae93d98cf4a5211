//! `encore grid`: cells from axes, stages shared and computed once, kill-safe cells, concurrent
//! cells (as a Slurm array runs them), failing cells recorded, the sbatch script.
mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

/// A grid of 4 cells on the embedded sample: tiny SASRec, ID only and fused with MGPHot, each
/// ranked by full ranking and by 1+99 sampled; 2 training stages.
fn grid_config(dir: &Path, extra_modalities: &str) -> PathBuf {
    let ws = common::workspace();
    let path = dir.join("grid.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[data]
config = "{}"

[features]
tracks = "{}"

[[features.extractor]]
plugin = "mgphot"

[[encoder]]
kind = "sasrec"
hidden_size = 16
n_layers = 1
n_heads = 1
max_len = 20

[train]
epochs = 3
batch_size = 1024
seed = 7

[report]
metrics = ["recall", "ndcg"]
bootstrap = 200

[grid]
modalities = [[], ["mgphot"]{extra_modalities}]
protocol = ["full", "1+99"]
"#,
            ws.join("configs/data/sample.toml").display(),
            ws.join("data/sample/tracks.tsv.gz").display()
        ),
    )
    .unwrap();
    path
}

fn grid(cfg: &Path, out: &Path) -> Command {
    let mut c = common::encore();
    c.arg("grid").arg(cfg).arg("--out").arg(out).arg("--quiet");
    c
}

fn run_ok(mut c: Command) -> String {
    let o = c.output().unwrap();
    let text = format!("{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{text}");
    text
}

/// Every cell's result and the results table, as bytes.
fn results(out: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = vec![("results.csv".to_string(), std::fs::read(out.join("results.csv")).unwrap())];
    let mut cells: Vec<_> = std::fs::read_dir(out.join("cells")).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    cells.sort();
    for c in cells.into_iter().filter(|c| !c.starts_with('.')) {
        files.push((c.clone(), std::fs::read(out.join("cells").join(&c).join("cell.toml")).unwrap()));
    }
    files
}

fn log_count(out: &Path, needle: &str) -> usize {
    std::fs::read_to_string(out.join("grid.log")).unwrap_or_default().lines().filter(|l| l.contains(needle)).count()
}

fn kill(mut child: Child) {
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
}

#[test]
fn a_grid_killed_three_times_and_cells_run_at_once_both_match_a_serial_run() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = grid_config(dir.path(), "");

    // The plan: 4 cells, 2 shared training stages.
    let plan = run_ok({
        let mut c = grid(&cfg, &dir.path().join("serial"));
        c.arg("--dry-run");
        c
    });
    assert!(plan.contains("4 cells") && plan.contains("2 shared training stages"), "{plan}");
    assert_eq!(plan.matches("to run").count(), 4, "{plan}");

    // Serial and uninterrupted.
    let serial = dir.path().join("serial");
    let t0 = std::time::Instant::now();
    let text = run_ok(grid(&cfg, &serial));
    let took = t0.elapsed();
    assert!(text.contains("4 of 4 cells finished") && text.contains(&format!("report: {}", serial.join("report.md").display())), "{text}");
    let html = std::fs::read_to_string(serial.join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("+M") && html.contains("MostPop"), "{html}");
    assert_eq!(log_count(&serial, "data computed"), 1);
    assert_eq!(log_count(&serial, " computed"), 3, "data and two encoder stages");
    let reference = results(&serial);
    assert_eq!(reference.len(), 5);
    let csv = String::from_utf8(reference[0].1.clone()).unwrap();
    // MostPop and 4 cells, each at 2 metrics × 3 cutoffs; the fused cells compared with ID only.
    assert_eq!(csv.lines().count(), 1 + (2 + 4) * 6, "{csv}");
    assert!(csv.lines().filter(|l| l.contains("+M,")).all(|l| l.ends_with(",holm") && l.contains("none-sasrec-id-none-")), "{csv}");
    let dry = run_ok({
        let mut c = grid(&cfg, &serial);
        c.arg("--dry-run");
        c
    });
    assert_eq!(dry.matches(" done").count(), 4, "{dry}");

    // Killed with SIGKILL three times at seeded random points of its run, then resumed.
    let killed = dir.path().join("killed");
    let mut seed: u64 = 0x5eed;
    for round in 0..3 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let frac = 0.15 + 0.7 * ((seed >> 33) as f64 / (1u64 << 31) as f64);
        let child = grid(&cfg, &killed).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
        std::thread::sleep(took.mul_f64(frac * (round + 1) as f64 / 3.0));
        kill(child);
    }
    run_ok(grid(&cfg, &killed));
    assert_eq!(results(&killed), reference, "the killed and resumed grid differs from the uninterrupted one");
    let leftovers: Vec<_> =
        std::fs::read_dir(killed.join("cells")).unwrap().flatten().map(|e| e.file_name()).filter(|n| n.to_string_lossy().starts_with('.')).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Every cell in its own process, all started at once (as a Slurm array's tasks), then collected.
    let parallel = dir.path().join("parallel");
    let children: Vec<Child> = (0..4)
        .map(|i| {
            let mut c = grid(&cfg, &parallel);
            c.arg("--cell").arg(i.to_string()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
            c.spawn().unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let text = run_ok({
        let mut c = grid(&cfg, &parallel);
        c.arg("--collect");
        c
    });
    assert!(text.contains("4 of 4 cells finished"), "{text}");
    assert_eq!(results(&parallel), reference, "cells run at once differ from the serial run");
    let log = std::fs::read_to_string(parallel.join("grid.log")).unwrap();
    assert_eq!(log_count(&parallel, "data computed"), 1, "{log}");
    assert_eq!(log_count(&parallel, "data reused"), 3, "{log}");
    let stages: std::collections::BTreeSet<String> =
        log.lines().filter_map(|l| l.split_once("stage stages/")).map(|(_, s)| s.split_whitespace().next().unwrap().to_string()).collect();
    assert_eq!(stages.len(), 2, "{log}");
    for s in &stages {
        assert_eq!(log_count(&parallel, &format!("stages/{s} computed")), 1, "{s} computed more than once:\n{log}");
        assert_eq!(log_count(&parallel, &format!("stages/{s} reused")), 1, "{log}");
    }
}

#[test]
fn a_failing_cell_is_recorded_and_the_grid_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = grid_config(dir.path(), r#", ["no-such-modality"]"#);
    let out = dir.path().join("out");
    let o = grid(&cfg, &out).output().unwrap();
    let text = format!("{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(!o.status.success(), "{text}");
    assert!(text.contains("4 of 6 cells finished") && text.contains("2 cells have no result"), "{text}");
    let failed: Vec<_> = std::fs::read_dir(out.join("failed")).unwrap().flatten().map(|e| e.path()).collect();
    assert_eq!(failed.len(), 2, "{failed:?}");
    let why = std::fs::read_to_string(&failed[0]).unwrap();
    assert!(why.contains("no-such-modality"), "{why}");
    // The finished cells are in the results; the report names the missing ones.
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + (2 + 4) * 6, "{csv}");
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("no-such-modality") && md.contains("has no result"), "{md}");
}

#[test]
fn grid_configs_are_checked_and_slurm_gets_one_array_task_per_cell() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = grid_config(dir.path(), "");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let bad = |from: &str, to: &str, expect: &str| {
        let p = dir.path().join("bad.toml");
        std::fs::write(&p, text.replace(from, to)).unwrap();
        let o = grid(&p, &dir.path().join("bad")).arg("--dry-run").output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(expect), "{from} -> {to}: {err}");
    };
    bad("protocol = [\"full\", \"1+99\"]", "protocol = [\"all\"]", "protocol `all`: use `full` or `1+N`");
    bad("[grid]", "[grid]\nllm = [\"qwen\"]", "llm `qwen` is not an [[llm]] template");
    bad("[grid]", "[grid]\nencoder = [\"GRU4Rec\"]", "encoder `GRU4Rec` is not an [[encoder]] template (they are `SASRec`)");
    bad("[grid]", "[grid]\nseeds = [1]", "unknown field `seeds`");
    bad("[grid]", "[grid]\ncompletion = []", "[grid] completion is empty");
    bad("[grid]\n", "", "no [grid] table");
    bad("modalities = [[], [\"mgphot\"]]", "variants = [{ modalities = [\"mgphot\"], fusion = [] }]", "a variant's `fusion` is empty");
    let o = grid(&cfg, &dir.path().join("out")).args(["--cell", "9"]).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("has 4 cells (0 to 3); there is no cell 9"));

    let out = dir.path().join("out");
    let text = run_ok({
        let mut c = grid(&cfg, &out);
        c.args(["--slurm", "--fuel", "123456"]);
        c
    });
    assert!(text.contains("sbatch "), "{text}");
    let script = std::fs::read_to_string(out.join("grid.sbatch")).unwrap();
    assert!(script.starts_with("#!/bin/bash\n") && script.contains("#SBATCH --array=0-3\n") && script.contains("#SBATCH --cpus-per-task=8"), "{script}");
    assert!(script.contains("--cell \"$SLURM_ARRAY_TASK_ID\"") && script.contains("--fuel=123456") && script.contains("CANDLE_NUM_THREADS=1"), "{script}");
    assert!(!out.join("cells").exists(), "--slurm runs nothing");
    assert!(out.join("slurm").is_dir(), "the tasks' output directory exists before sbatch opens it");
}

/// `encore grid CONFIG --dry-run` on a config of the repository: its cell table.
fn dry_run(config: &str) -> String {
    let o = common::encore().args(["grid"]).arg(common::workspace().join(config)).args(["--out", "/nonexistent/grid", "--dry-run"]).output().unwrap();
    assert!(o.status.success(), "{config}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn the_paper_grid_config_expands() {
    let text = dry_run("configs/paper.toml");
    // {Qwen2.5-7B, LLaMA-2-13B, LLaMA-3-70B} × {SASRec, BERT4Rec, GRU4Rec} × {ID only, +A/L/M,
    // +A/L/M+CR} × {full, 1+199}.
    assert!(text.contains("54 cells"), "{text}");
    for v in ["ID only", "+A/L/M", "+A/L/M+CR"] {
        assert_eq!(text.lines().filter(|l| l.split("  ").any(|c| c.trim() == v)).count(), 18, "{v}: {text}");
    }
}

/// #11's grid on planted-signal data: five plugins × three encoders, and the completion input
/// pinned to one plugin by its variant.
#[test]
fn the_synth_grid_config_expands_with_a_variant_pinned_to_one_plugin() {
    let text = dry_run("configs/synth-grid.toml");
    assert!(text.contains("21 cells"), "{text}");
    let count = |v: &str| text.lines().filter(|l| l.split("  ").any(|c| c.trim() == v)).count();
    assert_eq!(count("ID only"), 3, "{text}");
    for plugin in ["weighted-sum", "concat", "gated", "cross-attention", "film"] {
        assert_eq!(count(&format!("+A/L/T/M ({plugin})")), 3, "{plugin}: {text}");
    }
    assert_eq!(count("+A/L/T/M+CR (weighted-sum)"), 3, "{text}");
}
