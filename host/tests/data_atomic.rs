//! Outputs are atomic: `encore data ingest` killed with SIGKILL at any moment leaves no partial
//! file under a final name (only hidden `.NAME.tmp-PID` files).
use encore::data::synth::{synth, SynthConfig};
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
                assert!(name.contains(".tmp-"), "{name}");
                continue;
            }
            let f = std::fs::File::open(&p).unwrap();
            let r = parquet::file::reader::SerializedFileReader::new(f);
            assert!(r.is_ok(), "{} is a partial file under its final name", p.display());
        }
    }
    assert!(killed >= 3, "only {killed} runs were killed before they finished");
}
