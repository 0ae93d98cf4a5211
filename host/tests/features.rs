//! `encore features extract`: the features file and manifest, the cache (a rerun computes
//! nothing; a new parameter or plugin file recomputes), trapping tracks recorded as failed without
//! losing the others, and resuming after SIGKILL.
mod common;
use common::s;

use encore::data::ingest::Track as LogTrack;
use encore::data::sessions::{Dataset, Item, Sessions};
use encore::features::store::{self, Status};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

/// A prepared-dataset directory whose catalog has these titles (track ids `t0`, `t1`, ...).
fn catalog(dir: &Path, titles: &[String]) {
    let items = titles
        .iter()
        .enumerate()
        .map(|(i, t)| Item { track: LogTrack { id: format!("t{i}"), artist_id: "a".into(), artist: "A".into(), title: t.clone() }, plays: 1, duration_s: None })
        .collect();
    encore::data::schema::write_dataset(dir, &Dataset { items, sessions: Sessions { offsets: vec![0], ..Sessions::default() }, ..Dataset::default() }, &[])
        .unwrap();
}

fn run(args: &[&str]) -> Output {
    let out = common::encore().args(args).output().unwrap();
    assert!(out.status.success(), "encore {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn vectors_mask_and_manifest_then_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let prep = dir.path().join("prep");
    let titles: Vec<String> = (0..40).map(|i| if i == 7 { "NONE".into() } else { "x".repeat(i % 5 + 1) }).collect();
    catalog(&prep, &titles);
    let side = dir.path().join("tracks.tsv");
    std::fs::write(&side, "track_id\ttags\tother\nt1\trock,pop\tz\nt2\t\tz\n").unwrap();

    let o = run(&["features", "extract", "--data", s(&prep), "--plugin", "hostile-picky", "--tracks", s(&side), "--batch", "8", "--quiet"]);
    assert!(stdout(&o).contains("picky: 40 items, dim 3: 39 done, 1 missing, 0 failed; computed 40"), "{}", stdout(&o));
    let file = prep.join("features/picky.parquet");
    let f = store::read(&file).unwrap();
    assert_eq!(f.dim, 3);
    assert_eq!(f.rows.len(), 40);
    for (i, r) in f.rows.iter().enumerate() {
        assert_eq!((r.item as usize, r.track_id.as_str()), (i, format!("t{i}").as_str()));
        if i == 7 {
            assert_eq!((r.status, r.vector.as_ref()), (Status::Missing, None));
            assert!(r.reason.as_ref().unwrap().contains("returned none"), "{:?}", r.reason);
        } else {
            let tags = if i == 1 { 2.0 } else { 0.0 };
            assert_eq!(r.vector.as_deref(), Some(&[(i % 5 + 1) as f32, tags, -1.0][..]), "row {i}");
        }
    }
    let manifest: toml::Table = std::fs::read_to_string(prep.join("features/picky.manifest.toml")).unwrap().parse().unwrap();
    assert_eq!(manifest["plugin"].as_str(), Some("hostile-picky"));
    assert_eq!(manifest["plugin_version"].as_str(), Some("0.1.0"));
    assert_eq!(manifest["dim"].as_integer(), Some(3));
    assert_eq!(manifest["wasm_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(manifest["counts"]["missing"].as_integer(), Some(1));
    assert_eq!(manifest["counts"]["done"].as_integer(), Some(39));
    assert!(!prep.join("features/.picky.parts").exists(), "parts are removed after the merge");

    // Same plugin, parameters and inputs: nothing is computed and the file is not rewritten.
    let before = std::fs::metadata(&file).unwrap().modified().unwrap();
    let o = run(&["features", "extract", "--data", s(&prep), "--plugin", "hostile-picky", "--tracks", s(&side), "--quiet"]);
    assert!(stdout(&o).contains("computed 0 (0.0 tracks/s), cached 40 (unchanged)"), "{}", stdout(&o));
    assert_eq!(std::fs::metadata(&file).unwrap().modified().unwrap(), before);

    // A flipped bit in the features file: readers refuse it by name, and a rerun recomputes and
    // rewrites it instead of calling it "(unchanged)".
    let good = std::fs::read(&file).unwrap();
    let mut bad = good.clone();
    bad[good.len() / 3] ^= 0x04;
    std::fs::write(&file, &bad).unwrap();
    let e = format!("{:#}", store::read_verified(&file).unwrap_err());
    assert!(e.contains("picky.parquet") && e.contains("SHA-256"), "{e}");
    let o = run(&["features", "extract", "--data", s(&prep), "--plugin", "hostile-picky", "--tracks", s(&side), "--quiet"]);
    assert!(stdout(&o).contains("computed 40 ") && !stdout(&o).contains("unchanged"), "{}", stdout(&o));
    assert_eq!(std::fs::read(&file).unwrap(), good, "the same features again");
    store::read_verified(&file).unwrap();

    // A changed input (t2 gains tags) recomputes that track only.
    std::fs::write(&side, "track_id\ttags\tother\nt1\trock,pop\tz\nt2\tjazz\tz\n").unwrap();
    let o = run(&["features", "extract", "--data", s(&prep), "--plugin", "hostile-picky", "--tracks", s(&side), "--quiet"]);
    assert!(stdout(&o).contains("computed 1 "), "{}", stdout(&o));
    assert_eq!(store::read(&file).unwrap().rows[2].vector.as_deref(), Some(&[3.0, 1.0, -1.0][..]));

    // A changed parameter recomputes everything.
    let cfg = dir.path().join("run.toml");
    std::fs::write(
        &cfg,
        format!(
            "[features]\nprepared = {:?}\ntracks = {:?}\n\n[[features.extractor]]\nplugin = \"hostile-picky\"\nparams = {{ scale = 2.0 }}\n",
            s(&prep),
            s(&side)
        ),
    )
    .unwrap();
    let o = run(&["features", "extract", "--config", s(&cfg), "--quiet"]);
    assert!(stdout(&o).contains("computed 40 "), "{}", stdout(&o));
    assert_eq!(store::read(&file).unwrap().rows[1].vector.as_deref(), Some(&[4.0, 4.0, -1.0][..]));
    let manifest: toml::Table = std::fs::read_to_string(prep.join("features/picky.manifest.toml")).unwrap().parse().unwrap();
    assert_eq!(manifest["params"]["scale"].as_float(), Some(2.0));

    // Another plugin file (a new build: same code, one more custom section) recomputes everything.
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let mut wasm = std::fs::read(common::plugin_file("hostile-picky")).unwrap();
    wasm.extend_from_slice(&[0, 6, 5, b'b', b'u', b'i', b'l', b'd']); // custom section "build", empty
    std::fs::write(plugins.join("hostile_picky.wasm"), wasm).unwrap();
    let o = run(&["--plugins", s(&plugins), "features", "extract", "--config", s(&cfg), "--quiet"]);
    assert!(stdout(&o).contains("computed 40 "), "{}", stdout(&o));

    // A typo in [features] is an error naming the key and the file.
    std::fs::write(&cfg, "[features]\nprepard = \"x\"\n").unwrap();
    let o = common::encore().args(["features", "extract", "--config", s(&cfg)]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("prepard") && err.contains("run.toml"), "{err}");
}

#[test]
fn a_trapping_track_fails_alone_and_the_others_keep_their_vectors() {
    let dir = tempfile::tempdir().unwrap();
    let prep = dir.path().join("prep");
    let titles: Vec<String> = (0..20)
        .map(|i| match i {
            5 => "LOOP".into(),
            13 => "PANIC".into(),
            _ => "ab".into(),
        })
        .collect();
    catalog(&prep, &titles);
    let o = run(&["--fuel", "100000000", "features", "extract", "--data", s(&prep), "--plugin", "hostile-picky", "--batch", "4", "--quiet"]);
    assert!(stdout(&o).contains("18 done, 0 missing, 2 failed"), "{}", stdout(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("failed t5:") && err.contains("failed t13:"), "{err}");
    let f = store::read(&prep.join("features/picky.parquet")).unwrap();
    for (i, r) in f.rows.iter().enumerate() {
        match i {
            5 => {
                assert_eq!(r.status, Status::Failed);
                assert!(r.reason.as_ref().unwrap().contains("fuel"), "{:?}", r.reason);
            }
            13 => {
                assert_eq!(r.status, Status::Failed);
                assert!(r.reason.as_ref().unwrap().contains("picky panics on t13"), "{:?}", r.reason);
            }
            _ => assert_eq!(r.vector.as_deref(), Some(&[2.0, 0.0, -1.0][..]), "row {i}"),
        }
    }
    // Failed tracks are retried by the next run; the others come from the cache.
    let o = run(&["--fuel", "100000000", "features", "extract", "--data", s(&prep), "--plugin", "hostile-picky", "--batch", "4", "--quiet"]);
    assert!(stdout(&o).contains("computed 2 ") && stdout(&o).contains("cached 18"), "{}", stdout(&o));
    // Beyond --max-failed the run stops, naming the plugin and the track.
    let o = common::encore()
        .args([
            "--fuel",
            "100000000",
            "features",
            "extract",
            "--data",
            s(&prep),
            "--plugin",
            "hostile-picky",
            "--max-failed",
            "1",
            "--out",
            s(&dir.path().join("f2")),
            "--quiet",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("`hostile-picky` failed on 2 tracks") && err.contains("t13"), "{err}");
}

fn vectors(p: &Path) -> Vec<(String, Option<Vec<f32>>)> {
    store::read(p).unwrap().rows.into_iter().map(|r| (r.track_id, r.vector)).collect()
}

#[test]
fn sigkill_mid_run_resumes_from_committed_batches() {
    let dir = tempfile::tempdir().unwrap();
    let prep = dir.path().join("prep");
    let titles: Vec<String> = (0..1200).map(|i| "t".repeat(i % 7 + 1)).collect();
    catalog(&prep, &titles);
    let cfg = |out: &PathBuf| {
        let c = dir.path().join(format!("{}.toml", out.file_name().unwrap().to_string_lossy()));
        std::fs::write(
            &c,
            format!(
                "[features]\nprepared = {:?}\nout = {:?}\nbatch = 16\n\n[[features.extractor]]\nplugin = \"hostile-picky\"\nparams = {{ spin = 1000000 }}\n",
                s(&prep),
                s(out)
            ),
        )
        .unwrap();
        c
    };
    let full_out = dir.path().join("full");
    let t = Instant::now();
    run(&["features", "extract", "--config", s(&cfg(&full_out)), "--quiet"]);
    let full = t.elapsed();
    let reference = vectors(&full_out.join("picky.parquet"));
    let mut resumed = 0;
    for k in 1..=4 {
        let out = dir.path().join(format!("out{k}"));
        let c = cfg(&out);
        let mut child = common::encore().args(["features", "extract", "--config", s(&c), "--quiet"]).spawn().unwrap();
        std::thread::sleep(full.mul_f64(k as f64 / 5.0) + Duration::from_millis(5));
        if child.try_wait().unwrap().is_some() {
            continue;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        if out.join("picky.parquet").exists() {
            store::read(&out.join("picky.parquet")).expect("a final file is whole");
        }
        // Only whole part files under their final names.
        for e in std::fs::read_dir(out.join(".picky.parts")).into_iter().flatten() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if !name.starts_with('.') {
                store::read(&p).unwrap_or_else(|e| panic!("{} is a partial part file: {e:#}", p.display()));
            }
        }
        let o = run(&["features", "extract", "--config", s(&c), "--quiet"]);
        let text = stdout(&o);
        let cached: usize = text.split("cached ").nth(1).unwrap().split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap();
        if cached > 0 {
            resumed += 1;
        }
        assert!(text.contains("1200 done"), "{text}");
        assert_eq!(vectors(&out.join("picky.parquet")), reference, "a resumed run ends where an uninterrupted one does");
        assert!(!out.join(".picky.parts").exists());
    }
    assert!(resumed >= 2, "only {resumed} killed runs had committed batches to resume from (full run: {full:?})");
}
