//! Where plugins are found: `--plugins DIR` flags, then `$ENCORE_PLUGIN_PATH` (`:`-separated), then
//! the directory cargo builds them into next to this executable (`target/wasm32-wasip2/release`).
use super::runtime::{Plugin, PluginKind, Runtime};
use super::PluginError;
use std::path::{Path, PathBuf};

/// The directories searched for `.wasm` plugins, in order.
pub fn search_path(extra: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = extra.to_vec();
    if let Some(p) = std::env::var_os("ENCORE_PLUGIN_PATH") {
        dirs.extend(std::env::split_paths(&p).filter(|d| !d.as_os_str().is_empty()));
    }
    if let Ok(exe) = std::env::current_exe() {
        // target/<profile>/encore (or target/<profile>/deps/<test>) → target/wasm32-wasip2/release
        for up in exe.ancestors().skip(1).take(3) {
            let d = up.join("wasm32-wasip2/release");
            if d.is_dir() {
                dirs.push(d);
                break;
            }
        }
    }
    dirs
}

/// Every `.wasm` file in `dirs`, sorted by path within each directory.
pub fn wasm_files(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for d in dirs {
        let Ok(entries) = std::fs::read_dir(d) else { continue };
        let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "wasm")).collect();
        files.sort();
        out.extend(files);
    }
    out
}

/// Loads the plugin named `name` (a path to a `.wasm`, or a plugin name looked up as `NAME.wasm`
/// with `-` read as `_`, in the search path) and checks its kind.
pub fn find(runtime: &Runtime, dirs: &[PathBuf], name: &str, kind: PluginKind) -> anyhow::Result<Plugin> {
    let as_path = Path::new(name);
    let file = if name.ends_with(".wasm") || as_path.components().count() > 1 {
        as_path.to_path_buf()
    } else {
        let stem = name.replace('-', "_");
        match dirs.iter().map(|d| d.join(format!("{stem}.wasm"))).find(|p| p.is_file()) {
            Some(p) => p,
            None => anyhow::bail!(
                "no {kind} plugin named `{name}`: looked for {stem}.wasm in {}. Build the built-in plugins with `cargo plugins`, or pass --plugins DIR",
                if dirs.is_empty() {
                    "no directory (set --plugins or ENCORE_PLUGIN_PATH)".to_string()
                } else {
                    dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
                }
            ),
        }
    };
    let plugin = runtime.load(&file)?;
    plugin.expect_kind(kind).map_err(anyhow::Error::from)?;
    Ok(plugin)
}

/// Loads every plugin in `dirs`, keeping failures next to their file.
pub fn load_all(runtime: &Runtime, dirs: &[PathBuf]) -> Vec<(PathBuf, Result<Plugin, PluginError>)> {
    wasm_files(dirs).into_iter().map(|f| (f.clone(), runtime.load(&f))).collect()
}
