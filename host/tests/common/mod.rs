//! Test support: builds every plugin from source once per test binary, and finds the files.
#![allow(dead_code)]
use encore::plugins::{Plugin, Runtime, SandboxConfig, Track};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// A path as `&str`, for command-line arguments (test paths are UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace().join("target"))
}

/// `target/wasm32-wasip2/release`, after `cargo plugins` built every plugin crate in the workspace
/// (built-in and hostile). Cargo's own lock makes concurrent test binaries wait for each other.
pub fn plugin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let out = Command::new(cargo).arg("plugins").current_dir(workspace()).output().expect("running `cargo plugins`");
        assert!(
            out.status.success(),
            "`cargo plugins` failed (is the wasm32-wasip2 target installed? `rustup target add wasm32-wasip2`):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        target_dir().join("wasm32-wasip2/release")
    })
}

pub fn plugin_file(name: &str) -> PathBuf {
    let f = plugin_dir().join(format!("{}.wasm", name.replace('-', "_")));
    assert!(f.is_file(), "{} was not built", f.display());
    f
}

/// A runtime with a private compilation cache, so tests never share state with a user's cache.
pub fn runtime(cfg: SandboxConfig) -> Runtime {
    static CACHE: OnceLock<tempfile::TempDir> = OnceLock::new();
    let cache = CACHE.get_or_init(|| tempfile::tempdir().unwrap());
    Runtime::new(cfg, Some(cache.path().to_path_buf())).unwrap()
}

pub fn load(name: &str) -> Plugin {
    runtime(SandboxConfig::default()).load(&plugin_file(name)).unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

/// The `encore` binary with a private cache and the built plugins on its search path.
pub fn encore() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_encore"));
    static CACHE: OnceLock<tempfile::TempDir> = OnceLock::new();
    let cache = CACHE.get_or_init(|| tempfile::tempdir().unwrap());
    c.env("ENCORE_CACHE_DIR", cache.path()).env("ENCORE_PLUGIN_PATH", plugin_dir());
    c
}

/// A track with index `i`, placeholder names and no optional metadata.
pub fn track(i: u32) -> Track {
    Track { index: i, track_id: format!("t{i}"), artist: "a".into(), title: "t".into(), duration_s: None, tags: vec![], lyrics: None, mgphot: None }
}
