//! The bad-input corpus: every malformed input gives its documented outcome (docs/data.md) and
//! never a panic.
use parquet::file::reader::{FileReader, SerializedFileReader};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};

fn encore() -> Command {
    Command::new(env!("CARGO_BIN_EXE_encore"))
}

fn row(u: &str, t: &str, artist: &str, track: &str) -> String {
    format!("{u}\t{t}\t\t{artist}\tmbid-{track}\t{track}\n")
}

fn good() -> String {
    let mut s = String::new();
    for (i, t) in ["2009-05-04T23:08:57Z", "2009-05-04T23:12:57Z", "2009-05-04T23:16:57Z"].iter().enumerate() {
        s += &row("user_000001", t, "Artist", &format!("t{i}"));
    }
    s
}

struct Run {
    out: Output,
    dir: tempfile::TempDir,
}

impl Run {
    fn ok(&self) -> bool {
        self.out.status.success()
    }
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
    fn events(&self) -> i64 {
        let f = std::fs::File::open(self.dir.path().join("out/events.parquet")).expect("events.parquet");
        SerializedFileReader::new(f).unwrap().metadata().file_metadata().num_rows()
    }
}

fn ingest(bytes: &[u8], name: &str, args: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(name);
    std::fs::write(&file, bytes).unwrap();
    let out = encore().args(["data", "ingest"]).arg(&file).arg("--out").arg(dir.path().join("out")).args(args).output().unwrap();
    let r = Run { out, dir };
    assert!(!r.stderr().contains("panicked"), "{name}: {}", r.stderr());
    r
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

#[test]
fn clean_file_plain_gz_header_crlf_agree() {
    let g = good();
    let header = format!("userid\ttimestamp\tmusicbrainz-artist-id\tartist-name\tmusicbrainz-track-id\ttrack-name\n{g}");
    let crlf = g.replace('\n', "\r\n");
    for (name, bytes) in [
        ("plain.tsv", g.clone().into_bytes()),
        ("a.tsv.gz", gzip(g.as_bytes())),
        ("no-ext", gzip(g.as_bytes())),
        ("header.tsv", header.into_bytes()),
        ("crlf.tsv", crlf.into_bytes()),
    ] {
        let r = ingest(&bytes, name, &["--on-bad-row", "error"]);
        assert!(r.ok(), "{name}: {}", r.stderr());
        assert_eq!(r.events(), 3, "{name}");
        assert!(r.stderr().contains("0 malformed rows"), "{name}: {}", r.stderr());
    }
}

/// A log with no valid row used to exit 0 with empty outputs; it is an error naming the file.
#[test]
fn empty_file_is_an_error_naming_it() {
    for bytes in [Vec::new(), gzip(b""), b"\n\n".to_vec()] {
        let r = ingest(&bytes, "empty.tsv", &["--on-bad-row", "error"]);
        assert!(!r.ok() && r.stderr().contains("empty.tsv: no valid row to ingest"), "{}", r.stderr());
    }
}

#[test]
fn malformed_rows_skip_with_examples_or_stop_at_file_line() {
    let cases: [(&str, String, &str); 4] = [
        ("wrong-columns.tsv", format!("{}user_000001\t2009-05-04T23:20:57Z\tonly three\n", good()), ":4: 3 tab-separated fields, expected 6"),
        ("bad-timestamp.tsv", format!("{}{}", good(), row("user_000001", "2009-02-30T10:00:00Z", "A", "x")), ":4: bad timestamp \"2009-02-30T10:00:00Z\""),
        ("truncated.tsv", format!("{}user_000001\t2009-05-04T23:2", good()), ":4: 2 tab-separated fields"),
        ("empty-user.tsv", format!("{}{}", good(), row("", "2009-05-04T23:20:57Z", "A", "x")), ":4: empty user id"),
    ];
    for (name, text, what) in cases {
        let r = ingest(text.as_bytes(), name, &[]);
        assert!(r.ok(), "{name}: skip is the default: {}", r.stderr());
        assert_eq!(r.events(), 3, "{name}");
        assert!(r.stderr().contains("1 malformed rows skipped"), "{name}: {}", r.stderr());
        assert!(r.stderr().contains(&format!("{name}{what}")), "{name}: the report shows the example: {}", r.stderr());
        let r = ingest(text.as_bytes(), name, &["--on-bad-row", "error"]);
        assert!(!r.ok(), "{name}");
        assert!(r.stderr().contains(&format!("{name}{what}")), "{name}: {}", r.stderr());
        assert!(!r.dir.path().join("out/events.parquet").exists(), "{name}: nothing written on error");
    }
}

#[test]
fn truncated_gzip_is_reported_not_a_panic() {
    let mut text = String::new();
    for i in 0..2000 {
        text += &row("user_000001", &format!("2009-05-04T{:02}:{:02}:00Z", i / 60 % 24, i % 60), "Artist", &format!("t{i}"));
    }
    let z = gzip(text.as_bytes());
    let cut = &z[..z.len() / 2];
    let r = ingest(cut, "cut.tsv.gz", &[]);
    assert!(r.ok(), "{}", r.stderr());
    assert!(r.stderr().contains("the input ends early"), "{}", r.stderr());
    assert!(r.events() < 2000);
    let r = ingest(cut, "cut.tsv.gz", &["--on-bad-row", "error"]);
    assert!(!r.ok());
    assert!(r.stderr().contains("cut.tsv.gz:") && r.stderr().contains("ends early"), "{}", r.stderr());
}

#[test]
fn non_utf8_is_decoded_lossily_and_counted() {
    let mut b = good().into_bytes();
    b.extend_from_slice(b"user_000001\t2009-05-04T23:20:57Z\t\tBj\xf6rk\t\tJ\xf3ga\n");
    let r = ingest(&b, "latin1.tsv", &["--on-bad-row", "error"]);
    assert!(r.ok(), "{}", r.stderr());
    assert_eq!(r.events(), 4);
    assert!(r.stderr().contains("1 rows decoded lossily"), "{}", r.stderr());
}

fn prepare(dir: &Path, text: &str) -> encore::data::sessions::Dataset {
    let file = dir.join("log.tsv");
    std::fs::write(&file, text).unwrap();
    let out = dir.join("prep");
    let o = encore().args(["data", "prepare"]).arg(&file).arg("--out").arg(&out).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    encore::data::schema::read_dataset(&out).unwrap()
}

#[test]
fn duplicates_and_out_of_order_rows_give_the_sorted_sessions() {
    let g = good();
    let sorted = prepare(tempfile::tempdir().unwrap().path(), &g);
    let mut lines: Vec<&str> = g.lines().collect();
    lines.reverse(); // newest first, as in LastFM-1K
    let dup = lines[1];
    lines.insert(1, dup); // an exact duplicate
    let shuffled = lines.join("\n") + "\n";
    let d = prepare(tempfile::tempdir().unwrap().path(), &shuffled);
    assert_eq!(d.sessions, sorted.sessions);
    assert_eq!(d.sessions.item.len(), 3);
}
