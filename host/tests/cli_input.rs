//! Input the command line must refuse, by name, instead of running on a wrong reading of it: a
//! `--memory-mib` whose byte count wraps to 0, rankings with a null list, rankings with no user.
mod common;

use arrow_array::builder::{ListBuilder, StringBuilder, UInt32Builder};
use arrow_array::{ArrayRef, RecordBatch};
use std::path::Path;
use std::sync::Arc;

fn run(args: &[&str]) -> (bool, String, String) {
    let out = common::encore().args(args).output().expect("running encore");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_memory_cap_that_overflows_or_exceeds_the_machine_is_refused_naming_the_flag() {
    // 2^44 MiB is 2^64 bytes: it wrapped to a 0-byte cap.
    let (ok, _, err) = run(&["--memory-mib", "17592186044416", "plugin", "list"]);
    assert!(!ok && err.contains("--memory-mib") && err.contains("does not fit in 64 bits"), "{err}");
    let (ok, _, err) = run(&["--memory-mib", "1099511627776", "plugin", "list"]);
    assert!(!ok && err.contains("--memory-mib") && err.contains("more than this machine's"), "{err}");
    let (ok, _, err) = run(&["--memory-mib", "0", "plugin", "list"]);
    assert!(!ok && err.contains("--memory-mib"), "{err}");
    let (ok, _, err) = run(&["--memory-mib", "64", "plugin", "list"]);
    assert!(ok, "{err}");
}

/// Rankings with `None` for a null list.
fn rankings(path: &Path, rows: &[(&str, Option<&[u32]>, Option<&[u32]>)]) {
    let mut u = StringBuilder::new();
    let mut r = ListBuilder::new(UInt32Builder::new());
    let mut t = ListBuilder::new(UInt32Builder::new());
    for (user, ranked, targets) in rows {
        u.append_value(user);
        for (b, l) in [(&mut r, ranked), (&mut t, targets)] {
            if let Some(l) = l {
                b.values().append_slice(l);
            }
            b.append(l.is_some());
        }
    }
    let batch = RecordBatch::try_from_iter([
        ("user", Arc::new(u.finish()) as ArrayRef),
        ("ranked", Arc::new(r.finish()) as ArrayRef),
        ("targets", Arc::new(t.finish()) as ArrayRef),
    ])
    .unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(path).unwrap(), batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

#[test]
fn a_null_ranking_is_an_error_naming_the_file_row_and_user() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("null.parquet");
    rankings(&f, &[("u0", Some(&[1, 2]), Some(&[2])), ("u1", None, Some(&[1]))]);
    let e = format!("{:#}", encore::eval::rankings::read(&f, Some(10)).unwrap_err());
    assert!(e.contains("null.parquet") && e.contains("row 1 (user u1)") && e.contains("`ranked` is null"), "{e}");
    rankings(&f, &[("u0", Some(&[1, 2]), None)]);
    let e = format!("{:#}", encore::eval::rankings::read(&f, Some(10)).unwrap_err());
    assert!(e.contains("row 0 (user u0)") && e.contains("`targets` is null"), "{e}");
    // An empty list is not null: a ranking of nothing, or a user without targets.
    rankings(&f, &[("u0", Some(&[]), Some(&[3])), ("u1", Some(&[1]), Some(&[]))]);
    let file = encore::eval::rankings::read(&f, Some(10)).unwrap();
    assert_eq!((file.rankings.len(), file.skipped_no_targets), (1, 1));
}

#[test]
fn rankings_without_a_single_user_to_evaluate_are_an_error_not_zeros() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("none.parquet");
    for rows in [vec![], vec![("u0", Some(&[1u32, 2][..]), Some(&[][..]))]] {
        rankings(&f, &rows);
        let e = format!("{:#}", encore::eval::rankings::read(&f, Some(10)).unwrap_err());
        assert!(e.contains("none.parquet") && e.contains("no user to evaluate"), "{e}");
        let (ok, out, err) = run(&["eval", "--n-items", "10", "--rankings", common::s(&f)]);
        assert!(!ok && err.contains("no user to evaluate") && !out.contains("0.0000"), "{out}{err}");
    }
}

#[test]
fn a_missing_input_names_the_os_error_once() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("train.toml");
    std::fs::write(&cfg, "[data]\nsequences = \"no-such.txt\"\n\n[encoder]\nkind = \"sasrec\"\n").unwrap();
    let o = common::encore().args(["train"]).arg(&cfg).arg("--out").arg(dir.path().join("out")).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("no-such.txt"), "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    let o = common::encore().args(["data", "prepare"]).arg(dir.path().join("no-log.tsv")).arg("--out").arg(dir.path().join("prep")).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("no-log.tsv"), "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
}

#[test]
fn a_log_with_no_valid_row_or_filters_that_keep_nothing_are_errors_not_empty_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("bad.tsv");
    std::fs::write(&log, "not a log\nstill not\n").unwrap();
    let (ok, _, err) = run(&["data", "prepare", common::s(&log), "--out", common::s(&dir.path().join("a"))]);
    assert!(!ok && err.contains("no valid row"), "{err}");
    assert!(!dir.path().join("a/items.parquet").exists());
    let good = dir.path().join("good.tsv");
    std::fs::write(&good, "u1\t2009-05-04T23:08:57Z\t\tA\t\tT1\nu1\t2009-05-04T23:12:57Z\t\tA\t\tT2\n").unwrap();
    let cfg = dir.path().join("strict.toml");
    std::fs::write(&cfg, "[filters]\nmin_user_streams = 1000\n").unwrap();
    let (ok, _, err) = run(&["data", "prepare", common::s(&good), "--config", common::s(&cfg), "--out", common::s(&dir.path().join("b"))]);
    assert!(!ok && err.contains("the filters kept no session"), "{err}");
    assert!(!dir.path().join("b/items.parquet").exists());
}
