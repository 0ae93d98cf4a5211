//! Signal: on `encore data synth` data, the extractors' vectors separate the planted styles far
//! better than chance (k-NN style purity, k = 10, cosine), end to end through the CLI:
//! synth → prepare → features extract (mgphot from tracks.tsv, audio-dsp from the WAV clips) →
//! features purity.
mod common;
use common::s;

#[test]
fn mgphot_and_audio_dsp_separate_the_planted_styles() {
    let dir = tempfile::tempdir().unwrap();
    let synth = dir.path().join("synth");
    let prep = dir.path().join("prep");
    let ok = |args: &[&str]| {
        let o = common::encore().args(args).output().unwrap();
        assert!(o.status.success(), "encore {args:?}:\n{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    ok(&["data", "synth", "--users", "20", "--tracks", "400", "--rows", "20000", "--styles", "8", "--clips", "240", "--out", s(&synth)]);
    ok(&["data", "prepare", s(&synth.join("listens.tsv")), "--out", s(&prep)]);
    let out = ok(&[
        "features",
        "extract",
        "--data",
        s(&prep),
        "--tracks",
        s(&synth.join("tracks.tsv")),
        "--audio",
        s(&synth.join("clips")),
        "--plugin",
        "mgphot",
        "--plugin",
        "audio-dsp",
        "--quiet",
    ]);
    eprint!("{out}");
    let table = ok(&[
        "features",
        "purity",
        s(&prep.join("features/mgphot.parquet")),
        s(&prep.join("features/audio-dsp.parquet")),
        "--labels",
        s(&synth.join("tracks.tsv")),
    ]);
    eprint!("{table}");
    let row = |name: &str| -> Vec<f64> {
        let line = table.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} not in\n{table}"));
        line.split_whitespace().skip(1).map(|x| x.parse().unwrap()).collect()
    };
    // n, k, classes, raw, standardized, 1/classes, random(prior)
    let m = row("mgphot");
    let a = row("audio-dsp");
    assert_eq!((m[1], m[2]), (10.0, 8.0));
    assert!(a[0] >= 200.0, "audio-dsp vectors for {} tracks; the synth wrote 240 clips", a[0]);
    for (name, r) in [("mgphot", &m), ("audio-dsp", &a)] {
        let chance = r[5].max(r[6]);
        assert!(r[4] > 0.6 && r[4] > 4.0 * chance, "{name}: standardized purity {} vs chance {chance}", r[4]);
    }
}
