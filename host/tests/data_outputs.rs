//! The outputs on the embedded sample: every Parquet file is readable by polars (installed into a
//! venv here, idempotently; a failed install fails the test), `stats` prints the counts, and the
//! RecBole export has one line per event (one per case in its benchmark parts).
use std::path::{Path, PathBuf};
use std::process::Command;

fn encore() -> Command {
    Command::new(env!("CARGO_BIN_EXE_encore"))
}

fn run(c: &mut Command) -> String {
    let o = c.output().unwrap();
    assert!(o.status.success(), "{c:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `$ENCORE_VENV`, or `~/.cache/encore-venv`, with polars in it.
fn python_with_polars() -> PathBuf {
    let venv =
        std::env::var_os("ENCORE_VENV").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/encore-venv"));
    let py = venv.join("bin/python");
    let has = |py: &Path| Command::new(py).args(["-c", "import polars"]).output().is_ok_and(|o| o.status.success());
    if !has(&py) {
        let o = Command::new("python3").arg("-m").arg("venv").arg(&venv).output().expect("python3 is needed for the polars readability test");
        assert!(o.status.success(), "python3 -m venv {}: {}", venv.display(), String::from_utf8_lossy(&o.stderr));
        let o = Command::new(venv.join("bin/pip")).args(["install", "-q", "polars"]).output().expect("running pip");
        assert!(o.status.success(), "pip install polars into {} failed:\n{}", venv.display(), String::from_utf8_lossy(&o.stderr));
        assert!(has(&py), "polars does not import after installing it into {}", venv.display());
    }
    py
}

#[test]
fn outputs_are_read_by_polars_and_tools() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = d.join("small.toml");
    std::fs::write(&cfg, "[filters]\nmin_user_streams = 100\nmin_track_plays = 2\nmin_session_len = 3\nmax_session_len = 20\nmin_user_sessions = 5\n[completion]\nlast_event = \"zero\"\n").unwrap();
    for p in ["temporal", "loo", "session"] {
        run(encore().args(["data", "prepare", "--config"]).arg(&cfg).args(["--split", p, "--out"]).arg(d.join(p)));
    }
    let log = d.join("log.tsv.gz");
    std::fs::write(&log, encore::data::command::SAMPLE_LISTENS).unwrap();
    run(encore().args(["data", "ingest"]).arg(&log).arg("--out").arg(d.join("ingest")));

    let mut files: Vec<(PathBuf, usize)> = Vec::new();
    for p in ["temporal", "loo", "session"] {
        let ds = encore::data::schema::read_dataset(&d.join(p)).unwrap();
        assert!(ds.sessions.len() > 100 && ds.items.len() > 100, "{p}");
        files.push((d.join(p).join("items.parquet"), ds.items.len()));
        files.push((d.join(p).join("users.parquet"), ds.users.len()));
        files.push((d.join(p).join("sessions.parquet"), ds.sessions.len()));
        let mut events = 0;
        for s in ["train", "valid", "test"] {
            let rows = encore::data::schema::read_sessions(&d.join(p).join(format!("{s}.parquet"))).unwrap();
            assert!(!rows.is_empty(), "{p}/{s}");
            events += rows.item.len();
            files.push((d.join(p).join(format!("{s}.parquet")), rows.len()));
        }
        if p == "temporal" {
            assert_eq!(events, ds.sessions.item.len(), "the temporal split partitions the sessions");
        }
    }
    let ingest = d.join("ingest");
    let n_events = {
        parquet::file::reader::FileReader::metadata(
            &parquet::file::reader::SerializedFileReader::new(std::fs::File::open(ingest.join("events.parquet")).unwrap()).unwrap(),
        )
        .file_metadata()
        .num_rows() as usize
    };
    assert!(n_events > 40_000);
    files.push((ingest.join("events.parquet"), n_events));

    let py = python_with_polars();
    let script = "import sys, polars as pl\nfor f in sys.argv[1:]:\n    df = pl.read_parquet(f)\n    print(df.height, dict(df.schema).get('items'))\n";
    let mut c = Command::new(py);
    c.args(["-c", script]).args(files.iter().map(|(f, _)| f));
    let out = run(&mut c);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), files.len(), "{out}");
    for ((f, n), line) in files.iter().zip(&lines) {
        let (rows, items) = line.split_once(' ').unwrap();
        assert_eq!(rows.parse::<usize>().unwrap(), *n, "polars reads {} rows of {}", rows, f.display());
        if f.file_name().unwrap() != "items.parquet" && f.to_string_lossy().contains("sessions") {
            assert_eq!(items, "List(UInt32)", "{}", f.display());
        }
    }

    // stats and the RecBole export.
    let t = d.join("temporal");
    let ds = encore::data::schema::read_dataset(&t).unwrap();
    let stats = run(encore().args(["data", "stats"]).arg(&t));
    assert!(stats.contains(&format!("sessions      {}", ds.sessions.len())), "{stats}");
    assert!(stats.contains(&format!("interactions  {}", ds.sessions.item.len())), "{stats}");
    assert!(stats.contains("plays per track") && stats.contains("session length"), "{stats}");
    run(encore().args(["data", "export", "recbole"]).arg(&t));
    let lines = |f: &str| std::fs::read_to_string(t.join("recbole/encore").join(f)).unwrap().lines().count();
    assert_eq!(lines("encore.inter"), ds.sessions.item.len() + 1);
    assert_eq!(lines("encore.item"), ds.items.len() + 1);
    // The benchmark parts hold one case per target: every event but each temporal session's first.
    assert_eq!(lines("encore.train.inter") + lines("encore.valid.inter") + lines("encore.test.inter"), ds.sessions.item.len() - ds.sessions.len() + 3);
}
