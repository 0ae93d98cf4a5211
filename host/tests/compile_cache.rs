//! The compile cache holds native code: a damaged or planted entry must be caught by its MAC and
//! compiled again, never mapped and run (a flipped bit used to crash the host with SIGSEGV).
mod common;

use encore::eval::MetricSuite;
use encore::plugins::metric::Ranking;
use encore::plugins::{Plugin, Runtime, SandboxConfig};
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};

fn entry(cache: &Path) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(cache).unwrap().flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "cwasm")).collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].clone()
}

fn mac_of(entry: &Path) -> PathBuf {
    entry.with_extension("cwasm.mac")
}

/// The plugin works: `info` was read at load; one metric call on two users.
fn works(p: &Plugin) {
    assert_eq!(p.info().name, "recall");
    let mut suite = MetricSuite::new(std::slice::from_ref(p), &[2], 4).unwrap();
    suite.add(&[Ranking { ranked: vec![0, 1], targets: vec![1] }, Ranking { ranked: vec![2, 3], targets: vec![0] }]).unwrap();
    let report = suite.finish(None).unwrap();
    assert_eq!(report.results[0].value, 0.5);
}

#[test]
fn a_hundred_random_bit_flips_in_a_cached_entry_are_all_recompiled() {
    let cache = tempfile::tempdir().unwrap();
    let rt = Runtime::new(SandboxConfig::default(), Some(cache.path().to_path_buf())).unwrap();
    let wasm = common::plugin_file("recall");
    works(&rt.load(&wasm).unwrap());
    let file = entry(cache.path());
    let original = std::fs::read(&file).unwrap();
    let original_mac = std::fs::read(mac_of(&file)).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(14);
    let mut recompiled = 0;
    for trial in 0..100 {
        let mut bytes = original.clone();
        let bit = rng.random_range(0..bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        std::fs::write(&file, &bytes).unwrap();
        // A fresh runtime, as a new process would make.
        let rt = Runtime::new(SandboxConfig::default(), Some(cache.path().to_path_buf())).unwrap();
        let p = rt.load(&wasm).unwrap_or_else(|e| panic!("trial {trial}, bit {bit}: {e}"));
        works(&p);
        // The tampered entry was replaced by a fresh compilation (wasmtime's output is
        // deterministic, so it is the original again) under a MAC that matches.
        if std::fs::read(&file).unwrap() == original && std::fs::read(mac_of(&file)).unwrap() == original_mac {
            recompiled += 1;
        }
    }
    eprintln!("{recompiled}/100 tampered entries recompiled");
    assert_eq!(recompiled, 100);
}

#[test]
fn a_damaged_mac_or_an_entry_planted_from_another_cache_is_recompiled() {
    let wasm = common::plugin_file("recall");
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    Runtime::new(SandboxConfig::default(), Some(a.path().to_path_buf())).unwrap().load(&wasm).unwrap();
    let rt_b = Runtime::new(SandboxConfig::default(), Some(b.path().to_path_buf())).unwrap();
    rt_b.load(&wasm).unwrap();
    let (fa, fb) = (entry(a.path()), entry(b.path()));
    let mac_b = std::fs::read(mac_of(&fb)).unwrap();

    // A flipped MAC.
    let mut m = mac_b.clone();
    m[0] ^= 1;
    std::fs::write(mac_of(&fb), &m).unwrap();
    works(&rt_b.load(&wasm).unwrap());
    assert_eq!(std::fs::read(mac_of(&fb)).unwrap(), mac_b, "rewritten");

    // Cache A's entry and MAC, copied into B: valid under A's key only.
    std::fs::copy(&fa, &fb).unwrap();
    std::fs::copy(mac_of(&fa), mac_of(&fb)).unwrap();
    assert_ne!(std::fs::read(mac_of(&fb)).unwrap(), mac_b, "the two caches have different keys");
    works(&rt_b.load(&wasm).unwrap());
    assert_eq!(std::fs::read(mac_of(&fb)).unwrap(), mac_b, "rewritten under B's key");

    // An entry without a MAC (a cache from before MACs, or a half-written one).
    std::fs::remove_file(mac_of(&fb)).unwrap();
    works(&rt_b.load(&wasm).unwrap());
    assert_eq!(std::fs::read(mac_of(&fb)).unwrap(), mac_b);
}

#[cfg(unix)]
#[test]
fn the_cache_directory_and_its_key_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("encore/wasm");
    let rt = Runtime::new(SandboxConfig::default(), Some(dir.clone())).unwrap();
    let wasm = common::plugin_file("recall");
    rt.load(&wasm).unwrap();
    let key = dir.join(encore::plugins::runtime::CACHE_KEY_FILE);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&key), 0o600);
    assert_eq!(std::fs::metadata(&key).unwrap().len(), 32);
    let file = entry(&dir);
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(&mac_of(&file)), 0o600);

    // A directory opened to others is closed again.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    Runtime::new(SandboxConfig::default(), Some(dir.clone())).unwrap();
    assert_eq!(mode(&dir), 0o700);

    // A key others could read is not trusted: a new one is made, and the entry compiles again.
    let old_key = std::fs::read(&key).unwrap();
    let old_mac = std::fs::read(mac_of(&file)).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let rt = Runtime::new(SandboxConfig::default(), Some(dir.clone())).unwrap();
    assert_eq!(mode(&key), 0o600);
    assert_ne!(std::fs::read(&key).unwrap(), old_key);
    works(&rt.load(&wasm).unwrap());
    assert_ne!(std::fs::read(mac_of(&file)).unwrap(), old_mac, "the entry was re-signed under the new key");
}
