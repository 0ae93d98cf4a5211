//! The plugin API's version is written once, in `wit/encore-plugin.wit`'s package declaration; the
//! host reads it from there at build time (`ENCORE_PLUGIN_API`), as the SDK does.
use std::path::PathBuf;

fn main() {
    let wit = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../wit/encore-plugin.wit");
    println!("cargo:rerun-if-changed={}", wit.display());
    let text = std::fs::read_to_string(&wit).unwrap_or_else(|e| panic!("reading {}: {e}", wit.display()));
    let version = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("package encore:plugin@"))
        .and_then(|v| v.strip_suffix(';'))
        .unwrap_or_else(|| panic!("{} has no `package encore:plugin@X.Y.Z;` line", wit.display()));
    println!("cargo:rustc-env=ENCORE_PLUGIN_API={version}");
}
