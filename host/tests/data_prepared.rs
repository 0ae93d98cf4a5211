//! What `encore data prepare` and `encore data export recbole` promise about their files, on the
//! embedded sample: every Parquet file carries the catalog sizes in its metadata, and RecBole's
//! benchmark parts hold exactly encore's training, validation and test cases.
use encore::data::command::prepare_into;
use encore::data::config::{DataConfig, Protocol};
use encore::data::export;
use encore::data::schema::read_splits;
use encore::train::{EvalCase, SequenceData};
use std::collections::{HashMap, HashSet};
use std::path::Path;

fn prepare(protocol: Protocol, out: &Path) -> encore::data::sessions::Dataset {
    let mut cfg = DataConfig::default();
    cfg.split.protocol = protocol;
    prepare_into(None, &cfg, None, out).unwrap().dataset
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

/// One line of a benchmark part, as RecBole 1.2.1 reads it with `benchmark_filename` set: a
/// prepared sample, `item_id_list` the history and `item_id` the target (no augmentation).
#[derive(Debug)]
struct Line {
    user: u32,
    history: Vec<u32>,
    target: u32,
    ts: i64,
}

fn part(path: &Path) -> Vec<Line> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("user_id:token\titem_id_list:token_seq\titem_id:token\ttimestamp:float\tcompletion:float"), "{}", path.display());
    lines
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 5, "{}: {l:?}", path.display());
            let history = f[1].split(' ').filter(|s| !s.is_empty()).map(|s| s.parse().unwrap()).collect();
            Line { user: f[0].parse().unwrap(), history, target: f[2].parse().unwrap(), ts: f[3].parse().unwrap() }
        })
        .collect()
}

fn cut(history: &[u32], max_history: usize) -> Vec<u32> {
    history[if max_history == 0 { 0 } else { history.len().saturating_sub(max_history) }..].to_vec()
}

/// The parts used to be cumulative event lists (each holding the one before); RecBole reads each
/// line of a part as one case, so they must hold encore's cases, one line per target, disjoint.
#[test]
fn recbole_parts_are_encores_cases() {
    for (protocol, max_history) in [(Protocol::Temporal, 0), (Protocol::Session, 50), (Protocol::Loo, 0), (Protocol::Loo, 3)] {
        let case = format!("{protocol:?}, max_history {max_history}");
        let dir = tempfile::tempdir().unwrap();
        let d = prepare(protocol, dir.path());
        let out = dir.path().join("recbole/encore");
        export::recbole(dir.path(), &d, &out, max_history).unwrap();
        let encore::data::schema::PreparedSplits { n_items, splits, .. } = read_splits(dir.path()).unwrap();
        let ours = SequenceData::from_splits(n_items, &splits);
        let [train, valid, test] = ["train", "valid", "test"].map(|s| part(&out.join(format!("encore.{s}.inter"))));
        assert!(!valid.is_empty() && !test.is_empty(), "{case}");

        // Validation and test: the same cases, in the same order (histories cut to the newest).
        let as_cases = |p: &[Line]| p.iter().map(|l| EvalCase { history: l.history.clone(), targets: vec![l.target], completion: vec![] }).collect::<Vec<_>>();
        let cut_cases = |c: &[EvalCase]| {
            c.iter().map(|c| EvalCase { history: cut(&c.history, max_history), targets: c.targets.clone(), completion: vec![] }).collect::<Vec<_>>()
        };
        assert_eq!(as_cases(&valid), cut_cases(&ours.valid), "{case}: valid");
        assert_eq!(as_cases(&test), cut_cases(&ours.test), "{case}: test");
        // Training: every position after the first of every training sequence, as RecBole's own
        // augmentation would give.
        let augmented: Vec<EvalCase> = ours
            .train
            .iter()
            .flat_map(|s| (1..s.len()).map(|p| EvalCase { history: cut(&s[..p], max_history), targets: vec![s[p]], completion: vec![] }))
            .collect();
        assert_eq!(as_cases(&train), augmented, "{case}: train");
        assert!(train.iter().chain(&valid).chain(&test).all(|l| !l.history.is_empty() && (max_history == 0 || l.history.len() <= max_history)), "{case}");

        // Disjoint: each target event is in one part, once.
        let mut seen = HashSet::new();
        for l in train.iter().chain(&valid).chain(&test) {
            assert!(seen.insert((l.user, l.target, l.ts)), "{case}: the target {l:?} is in the parts twice");
        }
        // Leave-one-out, whole histories: a user's first history, then the targets of train,
        // valid and test in turn, is the user's whole sequence.
        if protocol == Protocol::Loo && max_history == 0 {
            let mut rebuilt: HashMap<u32, Vec<u32>> = HashMap::new();
            for l in train.iter().chain(&valid).chain(&test) {
                rebuilt.entry(l.user).or_insert_with(|| l.history.clone()).push(l.target);
            }
            let mut whole: HashMap<u32, Vec<u32>> = HashMap::new();
            for i in 0..d.sessions.len() {
                whole.entry(d.sessions.user[i]).or_default().extend(d.sessions.range(i).map(|e| d.sessions.item[e]));
            }
            whole.retain(|_, s| s.len() >= 2);
            assert_eq!(rebuilt, whole, "{case}: the parts rebuild each user's sequence");
        }
    }
}

/// A single flipped bit in any file of a prepared directory used to change results silently; now
/// every reader (`train`'s `read_splits`, `data stats`' `read_dataset`) refuses it, naming the file.
#[test]
fn a_flipped_bit_in_any_prepared_file_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    prepare(Protocol::Temporal, dir.path());
    let digest = read_splits(dir.path()).unwrap().digest;
    for name in encore::data::schema::PREPARED_FILES {
        let p = dir.path().join(name);
        let bytes = std::fs::read(&p).unwrap();
        let mut flipped = bytes.clone();
        // A bit in the middle: in the data pages, where the Parquet reader itself does not look.
        flipped[bytes.len() / 2] ^= 0x10;
        std::fs::write(&p, &flipped).unwrap();
        let e = format!("{:#}", read_splits(dir.path()).unwrap_err());
        assert!(e.contains(name) && e.contains("SHA-256"), "{name}: {e}");
        let e = format!("{:#}", encore::data::schema::read_dataset(dir.path()).unwrap_err());
        assert!(e.contains(name), "{name}: {e}");
        std::fs::write(&p, &bytes).unwrap();
        assert_eq!(read_splits(dir.path()).unwrap().digest, digest);
    }
    // A file from another run (here: valid.parquet replaced by test.parquet) is refused too.
    std::fs::copy(dir.path().join("test.parquet"), dir.path().join("valid.parquet")).unwrap();
    assert!(format!("{:#}", read_splits(dir.path()).unwrap_err()).contains("valid.parquet"));
}
