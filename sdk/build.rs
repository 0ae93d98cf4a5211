//! Writes the export macros with the absolute path of the WIT package baked in, so the bindings are
//! generated inside each plugin crate (one world per plugin) while the plugin author never sees them.
use std::{env, fs, path::PathBuf};

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    // A packaged SDK carries its own copy under `sdk/wit`; in the repository the canonical one is `../wit`.
    let wit = [manifest.join("wit"), manifest.join("../wit")]
        .into_iter()
        .find(|p| p.join("encore-plugin.wit").exists())
        .expect("encore-sdk: cannot find the WIT package (wit/encore-plugin.wit)");
    let wit = wit.canonicalize().unwrap();
    for entry in fs::read_dir(&wit).unwrap() {
        println!("cargo:rerun-if-changed={}", entry.unwrap().path().display());
    }
    // The API version is written once, in the WIT package declaration; the SDK reads it from there.
    println!("cargo:rustc-env=ENCORE_PLUGIN_API={}", package_version(&wit.join("encore-plugin.wit")));
    println!("cargo:rerun-if-changed=src/macros.rs.in");
    let template = fs::read_to_string(manifest.join("src/macros.rs.in")).unwrap();
    let path = wit.to_str().expect("WIT path is not UTF-8").replace('\\', "/");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("macros.rs");
    fs::write(out, template.replace("@WIT_PATH@", &path)).unwrap();
}

/// `X.Y.Z` of `package encore:plugin@X.Y.Z;` in `file`.
fn package_version(file: &std::path::Path) -> String {
    let text = fs::read_to_string(file).unwrap();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("package encore:plugin@"))
        .and_then(|v| v.strip_suffix(';'))
        .unwrap_or_else(|| panic!("encore-sdk: {} has no `package encore:plugin@X.Y.Z;` line", file.display()))
        .to_string()
}
