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
    println!("cargo:rerun-if-changed=src/macros.rs.in");
    let template = fs::read_to_string(manifest.join("src/macros.rs.in")).unwrap();
    let path = wit.to_str().expect("WIT path is not UTF-8").replace('\\', "/");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("macros.rs");
    fs::write(out, template.replace("@WIT_PATH@", &path)).unwrap();
}
