//! What `encore data prepare` promises about its files, on the embedded sample: every Parquet file
//! carries the catalog sizes in its metadata.
use encore::data::command::prepare_into;
use encore::data::config::{DataConfig, Protocol};
use std::collections::HashMap;
use std::path::Path;

fn prepare(protocol: Protocol, out: &Path) -> encore::data::sessions::Dataset {
    let mut cfg = DataConfig::default();
    cfg.split.protocol = protocol;
    prepare_into(None, &cfg, None, out).unwrap().0
}

fn key_values(path: &Path) -> HashMap<String, String> {
    use parquet::file::reader::FileReader;
    let r = parquet::file::reader::SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let kv = r.metadata().file_metadata().key_value_metadata().cloned().unwrap_or_default();
    kv.into_iter().map(|e| (e.key, e.value.unwrap_or_default())).collect()
}

/// docs/data.md: every file's metadata has `encore.n_items`, `encore.n_users`, `encore.source` and
/// `encore.split`. The split files used to lack `encore.n_users`.
#[test]
fn every_prepared_file_carries_the_counts() {
    let dir = tempfile::tempdir().unwrap();
    let d = prepare(Protocol::Temporal, dir.path());
    for f in ["items", "users", "sessions", "train", "valid", "test"] {
        let kv = key_values(&dir.path().join(format!("{f}.parquet")));
        assert_eq!(kv.get("encore.n_users"), Some(&d.users.len().to_string()), "{f}.parquet: {kv:?}");
        assert_eq!(kv.get("encore.n_items"), Some(&d.items.len().to_string()), "{f}.parquet: {kv:?}");
        assert_eq!(kv.get("encore.split").map(String::as_str), Some("temporal"), "{f}.parquet");
        assert!(kv.get("encore.source").is_some_and(|s| s.contains("embedded")), "{f}.parquet: {kv:?}");
        assert!(kv.contains_key("encore.t_valid") && kv.contains_key("encore.t_test"), "{f}.parquet: {kv:?}");
    }
}
