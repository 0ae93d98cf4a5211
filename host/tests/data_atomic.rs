//! Outputs are atomic: `encore data ingest` killed with SIGKILL at any moment leaves no partial
//! file under a final name (only hidden `.NAME.tmp-PID` files), and `encore data prepare` killed
//! at any moment leaves the old dataset whole, the new one whole, or a directory `train` refuses.
use encore::data::synth::{synth, SynthConfig};
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn sigkill_mid_run_leaves_no_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    synth(&SynthConfig { users: 40, tracks: 20_000, rows: Some(400_000), ..SynthConfig::default() }, dir.path()).unwrap();
    let input = dir.path().join("listens.tsv");
    // How long a full run takes, to spread the kills over it.
    let t = Instant::now();
    let ok = Command::new(env!("CARGO_BIN_EXE_encore")).args(["data", "ingest"]).arg(&input).arg("--out").arg(dir.path().join("full")).output().unwrap();
    assert!(ok.status.success());
    let full = t.elapsed();
    let mut killed = 0;
    for k in 1..=12 {
        let out = dir.path().join(format!("out{k}"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_encore")).args(["data", "ingest"]).arg(&input).arg("--out").arg(&out).spawn().unwrap();
        std::thread::sleep(full.mul_f64(k as f64 / 12.0) + Duration::from_millis(5));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL on Unix
            killed += 1;
        }
        child.wait().unwrap();
        for e in std::fs::read_dir(&out).into_iter().flatten() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with('.') {
                assert!(name.contains(".tmp-") || name == ".encore.lock", "{name}");
                continue;
            }
            if name == "manifest.toml" {
                encore::artifact::Manifest::verify(&out, "ingest").unwrap();
                continue;
            }
            let f = std::fs::File::open(&p).unwrap();
            let r = parquet::file::reader::SerializedFileReader::new(f);
            assert!(r.is_ok(), "{} is a partial file under its final name", p.display());
        }
    }
    assert!(killed >= 3, "only {killed} runs were killed before they finished");
}

fn prepare(log: &Path, out: &Path, split: &str) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_encore"))
        .args(["data", "prepare"])
        .arg(log)
        .arg("--out")
        .arg(out)
        .args(["--split", split])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn prepare_killed_at_20_random_moments_leaves_the_old_or_the_new_dataset_whole_or_a_refused_one() {
    let dir = tempfile::tempdir().unwrap();
    synth(&SynthConfig { users: 100, tracks: 5000, rows: Some(600_000), ..SynthConfig::default() }, dir.path()).unwrap();
    let log = dir.path().join("listens.tsv");
    let (old, new) = (dir.path().join("old"), dir.path().join("new"));
    assert!(prepare(&log, &old, "loo").wait().unwrap().success());
    let t = Instant::now();
    assert!(prepare(&log, &new, "temporal").wait().unwrap().success());
    let full = t.elapsed();
    let digest = |d: &Path| encore::data::schema::read_splits(d).map(|p| p.digest);
    let (old_digest, new_digest) = (digest(&old).unwrap(), digest(&new).unwrap());
    assert_ne!(old_digest, new_digest);
    // The same run twice gives the same digest: "new whole" below is well defined.
    let again = dir.path().join("again");
    let t = Instant::now();
    assert!(prepare(&log, &again, "temporal").wait().unwrap().success());
    // The slower of two runs: kills spread over it land mid-run on a loaded machine too.
    let full = full.max(t.elapsed());
    assert_eq!(digest(&again).unwrap(), new_digest, "prepare is deterministic");

    let mut rng = rand::rngs::StdRng::seed_from_u64(14);
    let target = dir.path().join("target");
    let (mut kept_old, mut got_new, mut refused, mut killed) = (0, 0, 0, 0);
    for trial in 0..20 {
        copy_dir(&old, &target);
        let mut child = prepare(&log, &target, "temporal");
        std::thread::sleep(full.mul_f64(rng.random_range(0.0..1.3)));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            killed += 1;
        }
        child.wait().unwrap();
        match digest(&target) {
            Ok(d) if d == old_digest => kept_old += 1,
            Ok(d) if d == new_digest => got_new += 1,
            Ok(d) => panic!("trial {trial}: `train` accepts a dataset that is neither the old nor the new one (digest {d})"),
            Err(e) => {
                let e = format!("{e:#}");
                assert!(e.contains("manifest.toml") || e.contains("SHA-256"), "trial {trial}: unclear refusal: {e}");
                refused += 1;
            }
        }
    }
    eprintln!("20 kills over {full:?}: {killed} killed mid-run; old kept {kept_old}, new whole {got_new}, refused {refused}");
    assert!(killed >= 4, "only {killed} of 20 runs were killed before they finished");
    assert!(refused > 0, "no kill landed while the files were being written");
    // The next run completes, and removes the temporary files killed runs left behind.
    std::fs::write(target.join(".items.parquet.tmp-4000000"), b"left by a killed run").unwrap();
    assert!(prepare(&log, &target, "temporal").wait().unwrap().success());
    assert_eq!(digest(&target).unwrap(), new_digest);
    let left: Vec<String> =
        std::fs::read_dir(&target).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).filter(|n| n.contains(".tmp-")).collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_second_writer_on_the_same_output_fails_at_once_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("prep");
    let _held = encore::artifact::DirLock::exclusive(&out, "encore data prepare (the first run)").unwrap();
    let t = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_encore")).args(["data", "prepare", "--out"]).arg(&out).output().unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("another encore process") && err.contains("the first run"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(20), "it waited for the lock");
    assert!(!out.join("items.parquet").exists());
}
