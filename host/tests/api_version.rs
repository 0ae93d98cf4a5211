//! The plugin API's version is written once: every WIT file's package declaration, the host's
//! `API_VERSION` and the SDK's agree (the SDK checks its own side in its tests).
mod common;

#[test]
fn the_wit_package_and_the_host_agree_on_the_api_version() {
    let mut versions = Vec::new();
    for entry in std::fs::read_dir(common::workspace().join("wit")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "wit") {
            let text = std::fs::read_to_string(&path).unwrap();
            let v = text.lines().find_map(|l| l.trim().strip_prefix("package encore:plugin@")).and_then(|v| v.strip_suffix(';'));
            versions.push((path.display().to_string(), v.unwrap_or_else(|| panic!("{} declares no package", path.display())).to_string()));
        }
    }
    assert!(versions.len() >= 5, "{versions:?}");
    for (file, v) in &versions {
        assert_eq!(v, encore::plugins::API_VERSION, "{file} declares encore:plugin@{v}, the host implements {}", encore::plugins::API_VERSION);
    }
    // The scaffold that `encore plugin new` writes depends on the same API.
    assert!(!encore::plugins::API_VERSION.is_empty());
}
