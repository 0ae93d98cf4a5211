//! The six targets: each has valid seed inputs built here, a dictionary of its format's tokens,
//! and a harness that feeds one input to every reader of that format, the way encore reads it
//! (from a file where encore reads a file).
use super::Target;
use crate::data::ingest::{self, IngestOptions, OnBadRow};
use crate::models::fusion_plan::{check_size, FusionModule, ModalityInput};
use crate::models::{Params, TrainCtx};
use crate::plugins::bindings::fusion::exports::encore::plugin::fusion as wit;
use crate::plugins::fusion::{self, Modality, Op, Plan};
use crate::train::checkpoint::{self, Meta};
use crate::train::optim::{AdamW, ParamsAdamW};
use crate::train::TrainConfig;
use arrow_array::builder::{Int32Builder, LargeListBuilder, LargeStringBuilder, ListBuilder, UInt64Builder};
use arrow_array::{ArrayRef, Int64Array, RecordBatch};
use candle_core::{DType, Device, Tensor};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A valid input, named for reports.
#[derive(Debug, Clone)]
pub struct Seed {
    /// What it is.
    pub name: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

fn seed(name: &str, bytes: impl Into<Vec<u8>>) -> Seed {
    Seed { name: name.into(), bytes: bytes.into() }
}

/// How one input went.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A reader accepted it.
    Ok,
    /// Every reader refused it with an error (the message of the first).
    Error(String),
    /// The code under test caught a panic of a dependency and returned it as an error (audio
    /// decoding does this for symphonia and rubato): not a crash, but worth a look.
    Contained(String),
}

/// The largest input each target makes.
pub(super) fn max_len(t: Target) -> usize {
    match t {
        Target::Tsv | Target::Config => 16 << 10,
        Target::FusionPlan => 16 << 10,
        Target::Rankings | Target::Wav | Target::Checkpoint => 64 << 10,
    }
}

/// Whether the text mutations (numbers, lines) apply.
pub(super) fn is_text(t: Target) -> bool {
    matches!(t, Target::Tsv | Target::Config | Target::Checkpoint)
}

/// Tokens of each format, for the mutator to insert.
pub(super) fn dictionary(t: Target) -> &'static [&'static [u8]] {
    match t {
        Target::Tsv => &[
            b"\t",
            b"\t\t",
            b"\n",
            b"\r\n",
            b"\r",
            b"\0",
            b"\xef\xbb\xbf",
            b"\xff\xfe",
            b"\xc3",
            b"\xe2\x82",
            b"user_000001",
            b"2009-05-04T23:08:57Z",
            b"1970-01-01T00:00:00Z",
            b"9999-12-31T23:59:59Z",
            b"0000-01-01T00:00:00Z",
            b"2008-02-29T24:60:60Z",
            b"2009-13-32T25:61:61Z",
            b"-2009-05-04T23:08:57Z",
            b"+275760-09-13T00:00:00Z",
            b"2009-05-04T23:08:57+99:99",
            b"2009-05-04T23:08:57.999999999999Z",
            b"2009-05-04 23:08:57",
            b"userid\ttimestamp\tmusicbrainz-artist-id\tartist-name\tmusicbrainz-track-id\ttrack-name\n",
            b"track_id\tduration_s\n",
            b"track_id\tduration_s\ttags\tlyrics\tmgphot\n",
            b"track_id",
            b"duration_s",
            b"mgphot",
            b"h64:",
            b"f1b1cf71-bd35-4e99-8624-24a6e15f133a",
            b",",
            b"\x1f\x8b",
            b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff",
        ],
        Target::Config | Target::Checkpoint => &[
            b"[",
            b"]",
            b"[[",
            b"]]",
            b" = ",
            b"\"",
            b"'",
            b"\"\"\"",
            b"'''",
            b"#",
            b",",
            b"{",
            b"}",
            b"{ }",
            b"[ ]",
            b"\n",
            b"\\u0000",
            b"\\UFFFFFFFF",
            b".",
            b"true",
            b"false",
            b"1979-05-27T07:32:00Z",
            b"[data]\n",
            b"[encoder]\n",
            b"[[encoder]]\n",
            b"[train]\n",
            b"[eval]\n",
            b"[fusion]\n",
            b"[features]\n",
            b"[[features.extractor]]\n",
            b"[[llm]]\n",
            b"[[zero_shot]]\n",
            b"[ingest]\n",
            b"[filters]\n",
            b"[completion]\n",
            b"[split]\n",
            b"[report]\n",
            b"kind = \"sasrec\"\n",
            b"kind = \"bert4rec\"\n",
            b"kind = \"gru4rec\"\n",
            b"hidden_size = ",
            b"n_layers = ",
            b"n_heads = ",
            b"max_len = ",
            b"epochs = ",
            b"batch_size = ",
            b"eval_every = ",
            b"lr = ",
            b"ks = []\n",
            b"ks = [0]\n",
            b"valid_metric = \"ndcg@0\"\n",
            b"valid_metric = \"recall@4294967296\"\n",
            b"session_gap_minutes = ",
            b"test_quantile = ",
            b"max_session_len = ",
            b"max_seconds = ",
            b"protocol = \"loo\"\n",
            b"fusion = { plugin = \"weighted-sum\", modalities = [\"mgphot\"] }\n",
            b"model = \"smollm2\"\n",
            b"encoder = \"SASRec\"\n",
            b"name = \"SASRec\"\n",
            b"format = 1\n",
            b"weights = \"\"\n",
            b"weights = \"..\"\n",
            b"weights = \"seed.toml\"\n",
            b"sha256 = \"\"\n",
            b"best = [nan, 18446744073709551615]\n",
            b"{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}",
            b"\"dtype\":\"BF16\"",
            b"\"dtype\":\"F16\"",
            b"\"dtype\":\"F64\"",
            b"\"dtype\":\"I64\"",
            b"\"dtype\":\"U8\"",
            b"\"dtype\":\"BOOL\"",
            b"\"dtype\":\"F8_E4M3\"",
            b"\"shape\":[]",
            b"\"shape\":[0]",
            b"\"shape\":[4294967295,4294967295]",
            b"\"shape\":[18446744073709551615]",
            b"\"data_offsets\":[0,0]",
            b"\"data_offsets\":[18446744073709551615,0]",
            b"\"__metadata__\":{}",
        ],
        Target::Rankings => &[b"PAR1", b"encore.n_items", b"user", b"ranked", b"targets", b"item", b"element", b"\x15\x00", b"\x19\x1c"],
        Target::Wav => &[
            b"RIFF",
            b"WAVE",
            b"fmt ",
            b"data",
            b"LIST",
            b"INFO",
            b"fact",
            b"RF64",
            b"ds64",
            b"\x01\x00",
            b"\x02\x00",
            b"\x03\x00",
            b"\x06\x00",
            b"\x07\x00",
            b"\x11\x00",
            b"\xfe\xff",
            b"\x10\x00\x00\x00",
            b"\x12\x00\x00\x00",
            b"\x28\x00\x00\x00",
            b"\x44\xac\x00\x00",
            b"\x00\x00\x00\x00",
            b"\xff\xff\xff\xff",
            b"fLaC",
            b"OggS",
            b"ID3",
            b"\xff\xfb",
        ],
        Target::FusionPlan => &[],
    }
}

/// The valid inputs each target starts from.
pub fn seeds(t: Target) -> Vec<Seed> {
    match t {
        Target::Tsv => tsv_seeds(),
        Target::Config => config_seeds(),
        Target::Rankings => rankings_seeds(),
        Target::FusionPlan => plan_seeds(),
        Target::Wav => wav_seeds(),
        Target::Checkpoint => Checkpoints::new(&Scratch::new("seeds")).expect("writing the seed checkpoint").seeds,
    }
}

/// A directory of its own under `/dev/shm` (or the system's temporary directory), removed on drop.
pub(super) struct Scratch(PathBuf);

impl Scratch {
    pub(super) fn new(what: &str) -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        // In memory where Linux offers it: a write to a busy disk can stall for seconds, which
        // would show as a slow case.
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
        let dir = base.join(format!("encore-fuzz-{}-{what}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        Scratch(dir)
    }

    pub(super) fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", p.display()));
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs inputs of one target.
pub(super) enum Harness {
    Tsv(Scratch),
    Config(Scratch),
    Rankings(Scratch),
    FusionPlan,
    Wav(Scratch),
    Checkpoint(Box<Checkpoints>, Scratch),
}

impl Harness {
    pub(super) fn new(t: Target) -> Self {
        match t {
            Target::Tsv => Harness::Tsv(Scratch::new("tsv")),
            Target::Config => Harness::Config(Scratch::new("config")),
            Target::Rankings => Harness::Rankings(Scratch::new("rankings")),
            Target::FusionPlan => Harness::FusionPlan,
            Target::Wav => Harness::Wav(Scratch::new("wav")),
            Target::Checkpoint => {
                let dir = Scratch::new("checkpoint");
                let c = Checkpoints::new(&dir).expect("writing the seed checkpoint");
                Harness::Checkpoint(Box::new(c), dir)
            }
        }
    }

    /// Feeds `input` to every reader of the format. Panics are the caller's to catch.
    pub(super) fn run(&mut self, input: &[u8]) -> Outcome {
        match self {
            Harness::Tsv(dir) => tsv_case(dir, input),
            Harness::Config(dir) => config_case(dir, input),
            Harness::Rankings(dir) => rankings_case(dir, input),
            Harness::FusionPlan => plan_case(input),
            Harness::Wav(dir) => wav_case(dir, input),
            Harness::Checkpoint(c, dir) => c.case(dir, input),
        }
    }
}

/// The first accepted reader makes the case `Ok`; otherwise the first error is kept.
fn first_ok(results: impl IntoIterator<Item = Result<(), String>>) -> Outcome {
    let mut first = None;
    for r in results {
        match r {
            Ok(()) => return Outcome::Ok,
            Err(e) => {
                first.get_or_insert(e);
            }
        }
    }
    Outcome::Error(first.unwrap_or_default())
}

// ---------------------------------------------------------------------------------------------
// TSV: the listening log (streamed and mapped, plain and gzip), the duration table, the side-car.

/// Rows in LastFM-1K's format (user, timestamp, artist MBID, artist, track MBID, track).
const LISTENS: &str = "user_000001\t2009-05-04T23:08:57Z\tf1b1cf71-bd35-4e99-8624-24a6e15f133a\tDeep Dish\t\tFuck Me Im Famous (Pacha Ibiza)-09-28-2007
user_000001\t2009-05-04T13:54:10Z\ta7f7df4a-77d8-4f12-8acd-5c60c93f4de8\t坂本龍一\t\tComposition 0919 (Live_2009_4_15)
user_000001\t2009-05-04T13:52:04Z\ta7f7df4a-77d8-4f12-8acd-5c60c93f4de8\t坂本龍一\t\tMc2 (Live_2009_4_15)
user_000001\t2007-04-22T00:00:25Z\t389e4de7-0419-46ea-a5e6-48105738e0b4\tThe Reras\t632cfa53-66f9-4f14-83db-841cd394b8bb\tOrto Zoli
user_000002\t2007-04-21T23:59:54Z\t1d74ce79-a8ea-4f4b-9512-9393038292bd\tElka Sutofe\tecbc45fe-8904-43d5-80d1-76aeb3232327\tVirenu Gutire
user_000002\t2007-04-21T23:55:53Z\t\tKasu Lofera\t\tFelo Nevi Monuka
";

fn tsv_seeds() -> Vec<Seed> {
    let header = "userid\ttimestamp\tmusicbrainz-artist-id\tartist-name\tmusicbrainz-track-id\ttrack-name\n";
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(LISTENS.as_bytes()).expect("gzip in memory");
    let mgphot: Vec<String> = (0..crate::features::mgphot::N_GENES).map(|i| format!("{:.1}", (i % 6) as f32 / 5.0)).collect();
    vec![
        seed("listens", LISTENS),
        seed("listens with a header and CRLF", format!("{header}{}", LISTENS.replace('\n', "\r\n"))),
        seed("listens, gzip", gz.finish().expect("gzip in memory")),
        seed(
            "durations",
            "track_id\tduration_s\n632cfa53-66f9-4f14-83db-841cd394b8bb\t269\necbc45fe-8904-43d5-80d1-76aeb3232327\t221.5\nh64:0123456789abcdef\t\n",
        ),
        seed(
            "side-car",
            format!(
                "track_id\tduration_s\ttags\tlyrics\tmgphot\n632cfa53-66f9-4f14-83db-841cd394b8bb\t269\torchestral,noisy\ttiko reti\t{}\necbc45fe-8904-43d5-80d1-76aeb3232327\t\t\t\t\n",
                mgphot.join(",")
            ),
        ),
    ]
}

fn tsv_case(dir: &Scratch, input: &[u8]) -> Outcome {
    let p = dir.write("listens.tsv", input);
    let strict = IngestOptions { on_bad_row: OnBadRow::Error, max_examples: 10 };
    // Streamed through a reader (gunzipped when it is gzip), and from the file: mapped when plain.
    let streamed = ingest::open(&p).and_then(|r| ingest::ingest_reader(r, &p, strict, &mut |_| {}));
    let mapped = ingest::ingest(&p, strict, &mut |_| {});
    if let (Ok(a), Ok(b)) = (&streamed, &mapped) {
        assert_eq!((&a.user, &a.ts, &a.track), (&b.user, &b.ts, &b.track), "the streamed and the mapped parse of a clean log differ");
    }
    // As `encore data prepare` reads by default: bad rows skipped.
    let _ = ingest::ingest(&p, IngestOptions::default(), &mut |_| {});
    first_ok([
        streamed.map(drop).map_err(|e| e.to_string()),
        crate::data::sessions::parse_durations(input, &p).map(drop).map_err(|e| e.to_string()),
        crate::features::items::read_sidecar(&p).map(drop).map_err(|e| format!("{e:#}")),
    ])
}

// ---------------------------------------------------------------------------------------------
// Configs: data, training, run and features configs, as their loaders read them.

/// An `encore train` config (bench/encoders writes these).
const TRAIN_TOML: &str = "[data]
sequences = \"seqs.txt\"
n_items = 50

[encoder]
kind = \"sasrec\"
hidden_size = 8
n_layers = 1
n_heads = 1
max_len = 4

[train]
epochs = 2
batch_size = 4
lr = 0.001
seed = 7
valid_metric = \"recall@10\"
patience = 1000

[eval]
ks = [5, 10]
mask_history = false
";

/// A features config with extractor parameters of every kind.
const FEATURES_TOML: &str = "[features]
prepared = \"prep\"
tracks = \"tracks.tsv\"
audio = \"clips\"
max_seconds = 30.0
batch = 16

[[features.extractor]]
plugin = \"mgphot\"

[[features.extractor]]
plugin = \"plugins/tags.wasm\"
name = \"tags\"
params = { dim = 64, scale = 0.5, lower = true, model = \"minilm\", ks = [1, 2, 3], nested = { a = \"x\" } }
";

fn config_seeds() -> Vec<Seed> {
    vec![
        seed("configs/default.toml", include_str!("../../../configs/default.toml")),
        seed("configs/e4srec.toml", include_str!("../../../configs/e4srec.toml")),
        seed("configs/data/paper.toml", include_str!("../../../configs/data/paper.toml")),
        seed("configs/data/sample.toml", include_str!("../../../configs/data/sample.toml")),
        seed("a train config", TRAIN_TOML),
        seed("a features config", FEATURES_TOML),
    ]
}

fn config_case(dir: &Scratch, input: &[u8]) -> Outcome {
    let p = dir.write("config.toml", input);
    let text = std::str::from_utf8(input).map_err(|e| e.to_string());
    let features = || -> anyhow::Result<()> {
        let cfg = crate::features::config::FeaturesConfig::load(&p)?;
        for e in &cfg.extractor {
            crate::features::config::params_from_toml(&e.params)?;
        }
        if let Some(s) = cfg.max_seconds {
            crate::features::audio::check_max_seconds(s).map_err(anyhow::Error::msg)?;
        }
        Ok(())
    };
    first_ok([
        crate::run::RunConfig::load(&p).map(drop).map_err(|e| format!("{e:#}")),
        features().map_err(|e| format!("{e:#}")),
        crate::data::config::DataConfig::load(&p).map(drop).map_err(|e| e.to_string()),
        text.clone().and_then(|t| TrainConfig::from_toml(t).map(drop).map_err(|e| e.to_string())),
        text.and_then(crate::data::config::DataConfig::parse).map(drop),
    ])
}

// ---------------------------------------------------------------------------------------------
// Rankings: the Parquet files `encore eval --rankings` reads.

fn parquet(batch: &RecordBatch, props: WriterProperties) -> Vec<u8> {
    let mut w = ArrowWriter::try_new(Vec::new(), batch.schema(), Some(props)).expect("a parquet writer");
    w.write(batch).expect("writing parquet in memory");
    w.into_inner().expect("closing parquet in memory")
}

fn rankings_seeds() -> Vec<Seed> {
    let dir = Scratch::new("rankings-seed");
    let p = dir.path("rankings.parquet");
    let users: Vec<String> = (0..4).map(|u| format!("user_{u:04}")).collect();
    let ranked = vec![vec![3, 1, 4, 0, 5], vec![9, 2, 6], vec![5, 3], vec![]];
    let targets = vec![vec![1], vec![2, 7, 2], vec![], vec![8]];
    crate::eval::rankings::write(&p, &users, &ranked, &targets, 10).expect("writing the seed rankings");
    let written = std::fs::read(&p).expect("reading the seed rankings");
    let meta = |n: &str| Some(vec![KeyValue::new(crate::eval::rankings::N_ITEMS_KEY.to_string(), n.to_string())]);
    // Plain pages, no compression or dictionary: mutations reach the values themselves.
    let plain =
        |n: &str| WriterProperties::builder().set_compression(Compression::UNCOMPRESSED).set_dictionary_enabled(false).set_key_value_metadata(meta(n)).build();
    let mut r = ListBuilder::new(Int32Builder::new());
    let mut t = ListBuilder::new(Int32Builder::new());
    for (a, b) in ranked.iter().zip(&targets) {
        r.values().extend(a.iter().map(|&x| Some(x as i32)));
        r.append(true);
        t.values().extend(b.iter().map(|&x| Some(x as i32)));
        t.append(true);
    }
    let int_users = RecordBatch::try_from_iter([
        ("user", Arc::new(Int64Array::from(vec![1i64, 2, 3, 4])) as ArrayRef),
        ("ranked", Arc::new(r.finish()) as ArrayRef),
        ("targets", Arc::new(t.finish()) as ArrayRef),
    ])
    .expect("a record batch");
    let mut u = LargeStringBuilder::new();
    let mut r = LargeListBuilder::new(UInt64Builder::new());
    let mut t = LargeListBuilder::new(UInt64Builder::new());
    for ((user, a), b) in users.iter().zip(&ranked).zip(&targets) {
        u.append_value(user);
        r.values().extend(a.iter().map(|&x| Some(u64::from(x))));
        r.append(true);
        t.values().extend(b.iter().map(|&x| Some(u64::from(x))));
        t.append(true);
    }
    let large = RecordBatch::try_from_iter([
        ("user", Arc::new(u.finish()) as ArrayRef),
        ("ranked", Arc::new(r.finish()) as ArrayRef),
        ("targets", Arc::new(t.finish()) as ArrayRef),
    ])
    .expect("a record batch");
    vec![
        seed("rankings::write (snappy)", written),
        seed("int64 users, list<int32>, plain", parquet(&int_users, plain("10"))),
        seed("large utf8 users, large_list<uint64>, plain", parquet(&large, plain("12"))),
    ]
}

fn rankings_case(dir: &Scratch, input: &[u8]) -> Outcome {
    let p = dir.write("rankings.parquet", input);
    first_ok([crate::eval::rankings::read(&p, None).map(drop).map_err(|e| format!("{e:#}"))])
}

// ---------------------------------------------------------------------------------------------
// Fusion plans: what a plugin may return, validated, size-checked, and (when small) built and run.

/// Names of inputs that plans refer to by index; other bytes make names of their own.
const INPUT_NAMES: [&str; 5] = ["id", "audio", "text", "lyrics", "mgphot"];
/// Most list elements a decoded plan holds (a list repeats its last element past the input's end).
const MAX_ELEMENTS: usize = 1 << 21;
/// Plans at most this large (parameters, and widths summed over nodes) are built and run.
const BUILD_PARAMS: u64 = 1 << 16;
const BUILD_WIDTH: u64 = 1 << 12;

/// Reads plan bytes; past the end every read is 0.
struct PlanReader<'a> {
    bytes: &'a [u8],
    at: usize,
    elements: usize,
}

impl PlanReader<'_> {
    fn u8(&mut self) -> u8 {
        let b = self.bytes.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn f32(&mut self) -> f32 {
        f32::from_bits(self.u32())
    }
    fn done(&self) -> bool {
        self.at >= self.bytes.len()
    }
    fn name(&mut self) -> String {
        let b = self.u8();
        if b < 0xf0 {
            return INPUT_NAMES[b as usize % INPUT_NAMES.len()].to_string();
        }
        let n = (b & 0x0f) as usize;
        String::from_utf8_lossy(&(0..n).map(|_| self.u8()).collect::<Vec<_>>()).into_owned()
    }
    fn list<T: Copy>(&mut self, read: impl Fn(&mut Self) -> T) -> Vec<T> {
        let n = (self.u32() as usize).min(MAX_ELEMENTS - self.elements);
        self.elements += n;
        let mut v = Vec::with_capacity(n);
        while v.len() < n && !self.done() {
            v.push(read(self));
        }
        let last = v.last().copied().unwrap_or_else(|| read(self));
        v.resize(n, last);
        v
    }
}

/// Writes plan bytes in the layout [`PlanReader`] reads (for the seeds).
#[derive(Default)]
struct PlanWriter(Vec<u8>);

impl PlanWriter {
    fn u8(&mut self, b: u8) -> &mut Self {
        self.0.push(b);
        self
    }
    fn u32(&mut self, x: u32) -> &mut Self {
        self.0.extend_from_slice(&x.to_le_bytes());
        self
    }
    fn f32(&mut self, x: f32) -> &mut Self {
        self.u32(x.to_bits())
    }
    fn list(&mut self, v: &[u32]) -> &mut Self {
        self.u32(v.len() as u32);
        v.iter().for_each(|&x| {
            self.u32(x);
        });
        self
    }
    fn name(&mut self, n: &str) -> &mut Self {
        self.u8(INPUT_NAMES.iter().position(|&m| m == n).expect("a known input name") as u8)
    }
}

/// A decoded case: the host's inputs and request, and the plugin's plan.
struct PlanCase {
    n_items: u32,
    masks: bool,
    training: bool,
    inputs: Vec<Modality>,
    out_dim: u32,
    plan: wit::FusionPlan,
}

fn decode_plan(bytes: &[u8]) -> PlanCase {
    let mut r = PlanReader { bytes, at: 0, elements: 0 };
    let n_items = r.u32();
    let flags = r.u8();
    let n_inputs = r.u8() % 5;
    let inputs = (0..n_inputs).map(|_| Modality { name: r.name(), dim: r.u32() }).collect();
    let out_dim = r.u32();
    let output = r.u32();
    let mut nodes = Vec::new();
    while !r.done() && nodes.len() <= 2 * fusion::MAX_NODES {
        let op = match r.u8() % 13 {
            0 => wit::Op::Input(r.name()),
            1 => wit::Op::Linear(wit::LinearOp { src: r.u32(), out_dim: r.u32(), bias: r.u8() & 1 == 1 }),
            2 => wit::Op::LayerNorm(r.u32()),
            3 => wit::Op::L2Norm(r.u32()),
            4 => wit::Op::Concat(r.list(PlanReader::u32)),
            5 => wit::Op::Add(r.list(PlanReader::u32)),
            6 => wit::Op::Mul((r.u32(), r.u32())),
            7 => {
                let srcs = r.list(PlanReader::u32);
                let fixed = (r.u8() & 1 == 1).then(|| r.list(PlanReader::f32));
                wit::Op::WeightedSum(wit::WeightedSumOp { srcs, fixed })
            }
            8 => wit::Op::Gate(r.list(PlanReader::u32)),
            9 => wit::Op::Attention(wit::AttentionOp { query: r.u32(), keys: r.list(PlanReader::u32), heads: r.u32() }),
            10 => wit::Op::Film(wit::FilmOp { target: r.u32(), condition: r.u32() }),
            11 => wit::Op::Dropout(wit::DropoutOp { src: r.u32(), p: r.f32() }),
            _ => {
                let src = r.u32();
                let f =
                    [wit::Activation::Relu, wit::Activation::Gelu, wit::Activation::Tanh, wit::Activation::Sigmoid, wit::Activation::Silu][r.u8() as usize % 5];
                wit::Op::Activation(wit::ActivationOp { src, f })
            }
        };
        nodes.push(op);
    }
    PlanCase { n_items, masks: flags & 1 == 1, training: flags & 2 == 2, inputs, out_dim, plan: wit::FusionPlan { nodes, output } }
}

fn plan_seeds() -> Vec<Seed> {
    let head = |w: &mut PlanWriter, flags: u8, inputs: &[(&str, u32)], out_dim: u32, output: u32| {
        w.u32(3).u8(flags).u8(inputs.len() as u8);
        for (n, d) in inputs {
            w.name(n).u32(*d);
        }
        w.u32(out_dim).u32(output);
    };
    // Tags as `decode_plan` reads them.
    let (input, linear, layer_norm, l2, concat, add, mul, wsum, gate, attention, film, dropout, act) = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12);
    // The weighted-sum plugin: l2(id), l2(linear(audio)), learned weights.
    let mut a = PlanWriter::default();
    head(&mut a, 0, &[("id", 8), ("audio", 16)], 8, 5);
    a.u8(input).name("id").u8(input).name("audio");
    a.u8(linear).u32(1).u32(8).u8(1).u8(l2).u32(0).u8(l2).u32(2);
    a.u8(wsum).list(&[3, 4]).u8(0);
    // Concatenation, a projection, layer norm, GELU and dropout, with presence masks, training.
    let mut b = PlanWriter::default();
    head(&mut b, 3, &[("id", 8), ("text", 4)], 8, 6);
    b.u8(input).name("id").u8(input).name("text");
    b.u8(concat).list(&[0, 1]).u8(linear).u32(2).u32(8).u8(0).u8(layer_norm).u32(3);
    b.u8(act).u32(4).u8(1).u8(dropout).u32(5).f32(0.1);
    // Gate, product, sum and a fixed weighted sum, masked.
    let mut c = PlanWriter::default();
    head(&mut c, 1, &[("id", 8), ("audio", 8)], 8, 5);
    c.u8(input).name("id").u8(input).name("audio");
    c.u8(gate).list(&[0, 1]).u8(mul).u32(0).u32(1).u8(add).list(&[2, 3]);
    c.u8(wsum).list(&[2, 4]).u8(1).u32(2).f32(0.25).f32(0.75);
    // Attention over two modalities, FiLM and tanh, without the id input.
    let mut d = PlanWriter::default();
    head(&mut d, 1, &[("audio", 8), ("text", 8), ("lyrics", 4)], 8, 5);
    d.u8(input).name("audio").u8(input).name("text").u8(input).name("lyrics");
    d.u8(attention).u32(0).list(&[0, 1]).u32(2).u8(film).u32(3).u32(2).u8(act).u32(4).u8(2);
    vec![seed("weighted sum", a.0), seed("concat, layer norm, dropout", b.0), seed("gate, mul, add, fixed weights", c.0), seed("attention, film", d.0)]
}

/// Parameters and summed widths of a plan, saturating (the fuzzer's own count, independent of
/// the one `check_size` makes).
fn plan_cost(plan: &Plan) -> (u64, u64) {
    let d = |n: usize| plan.dims[n] as u64;
    let mut params = 0u64;
    for op in &plan.nodes {
        params = params.saturating_add(match op {
            Op::Linear { src, out_dim, .. } => d(*src).saturating_mul(*out_dim as u64 + 1),
            Op::LayerNorm(s) => 2 * d(*s),
            Op::WeightedSum { srcs, .. } => srcs.len() as u64,
            Op::Gate(srcs) => {
                let w = (srcs.len() as u64).saturating_mul(d(srcs[0]));
                w.saturating_mul(w).saturating_add(w)
            }
            Op::Attention { query, .. } => d(*query).saturating_mul(d(*query) + 1).saturating_mul(4),
            Op::Film { target, condition } => (d(*condition) + 1).saturating_mul(2 * d(*target)),
            _ => 0,
        });
    }
    (params, plan.dims.iter().fold(0u64, |a, &w| a.saturating_add(w as u64)))
}

fn plan_case(input: &[u8]) -> Outcome {
    let c = decode_plan(input);
    let plan = match fusion::validate(&c.plan, &c.inputs, c.out_dim as usize) {
        Ok(p) => p,
        Err(e) => return Outcome::Error(e),
    };
    if let Err(e) = check_size(&plan, c.n_items as usize) {
        return Outcome::Error(e);
    }
    let (params, width) = plan_cost(&plan);
    if params > BUILD_PARAMS || width > BUILD_WIDTH {
        return Outcome::Ok;
    }
    match run_plan(&c, &plan) {
        Ok(()) => Outcome::Ok,
        Err(e) => Outcome::Error(format!("building or running the plan: {e}")),
    }
}

/// Builds the validated plan over a few items and runs it once; its output must be as wide as
/// was asked.
fn run_plan(c: &PlanCase, plan: &Plan) -> crate::models::Result<()> {
    let n = 1 + c.n_items as usize % 4;
    let dev = Device::Cpu;
    let mut rng = StdRng::seed_from_u64(u64::from(c.n_items));
    let mut values = |w: usize| Tensor::from_vec((0..n * w).map(|_| rng.random_range(-1.0f32..1.0)).collect::<Vec<_>>(), (n, w), &dev);
    let mask = |k: usize| Tensor::from_vec((0..n).map(|i| ((i + k) % 2) as f32).collect::<Vec<_>>(), (n, 1), &dev);
    let mut inputs: Vec<ModalityInput> = Vec::new();
    let mut id = None;
    for (i, op) in plan.nodes.iter().enumerate() {
        let Op::Input(name) = op else { continue };
        if name == "id" {
            if id.is_none() {
                id = Some(values(plan.dims[i])?);
            }
        } else if !inputs.iter().any(|m| &m.name == name) {
            let present = if c.masks { Some(mask(inputs.len())?) } else { None };
            inputs.push(ModalityInput { name: name.clone(), values: values(plan.dims[i])?, present });
        }
    }
    let mut p = Params::new(0, &dev);
    let mut m = FusionModule::new(plan, inputs, &mut p)?;
    if c.masks {
        m = m.with_id_presence(Some(mask(7)?));
    }
    let ctx = TrainCtx::new(1);
    let y = m.forward(id.as_ref(), c.training.then_some(&ctx))?;
    // Every node descends from an input, so the output has a row per item.
    assert_eq!(y.dims2()?, (n, c.out_dim as usize), "a validated plan's output is one row per item, as wide as was asked");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// WAV: clip headers and samples, decoded and resampled as extractors get them.

/// A RIFF/WAVE file of `frames` frames of a 440 Hz sine.
fn wav(tag: u16, channels: u16, rate: u32, bits: u16, frames: usize, extensible: bool) -> Vec<u8> {
    let block = channels * bits.div_ceil(8);
    let mut data = Vec::new();
    for i in 0..frames {
        let x = (std::f64::consts::TAU * 440.0 * i as f64 / f64::from(rate)).sin() * 0.5;
        for _ in 0..channels {
            match (tag, bits) {
                (3, 32) => data.extend_from_slice(&(x as f32).to_le_bytes()),
                (3, _) => data.extend_from_slice(&x.to_le_bytes()),
                (6 | 7, _) => data.push((x * 100.0) as i8 as u8 ^ 0x55),
                (_, 8) => data.push((128.0 + x * 127.0) as u8),
                (_, 16) => data.extend_from_slice(&((x * 32767.0) as i16).to_le_bytes()),
                (_, 24) => data.extend_from_slice(&((x * 8_388_607.0) as i32).to_le_bytes()[..3]),
                _ => data.extend_from_slice(&((x * 2_147_483_647.0) as i32).to_le_bytes()),
            }
        }
    }
    let mut fmt = Vec::new();
    fmt.extend_from_slice(&(if extensible { 0xfffe } else { tag }).to_le_bytes());
    fmt.extend_from_slice(&channels.to_le_bytes());
    fmt.extend_from_slice(&rate.to_le_bytes());
    fmt.extend_from_slice(&(rate * u32::from(block)).to_le_bytes());
    fmt.extend_from_slice(&block.to_le_bytes());
    fmt.extend_from_slice(&bits.to_le_bytes());
    if extensible {
        fmt.extend_from_slice(&22u16.to_le_bytes());
        fmt.extend_from_slice(&bits.to_le_bytes());
        fmt.extend_from_slice(&(if channels == 1 { 0x4u32 } else { 0x3 }).to_le_bytes());
        // KSDATAFORMAT_SUBTYPE_PCM / _IEEE_FLOAT: the tag, then a fixed GUID tail.
        fmt.extend_from_slice(&u32::from(tag).to_le_bytes());
        fmt.extend_from_slice(&[0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xaa, 0x00, 0x38, 0x9b, 0x71]);
    } else if tag != 1 {
        fmt.extend_from_slice(&0u16.to_le_bytes());
    }
    let mut out = b"RIFF\0\0\0\0WAVE".to_vec();
    let mut chunk = |id: &[u8], body: &[u8]| {
        out.extend_from_slice(id);
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(body);
        if body.len() % 2 == 1 {
            out.push(0);
        }
    };
    chunk(b"fmt ", &fmt);
    if tag != 1 {
        chunk(b"fact", &(frames as u32).to_le_bytes());
    }
    chunk(b"LIST", b"INFOINAM\x06\0\0\0sine.\0");
    chunk(b"data", &data);
    let riff = (out.len() - 8) as u32;
    out[4..8].copy_from_slice(&riff.to_le_bytes());
    out
}

fn wav_seeds() -> Vec<Seed> {
    vec![
        seed("pcm16 mono 8 kHz", wav(1, 1, 8000, 16, 400, false)),
        seed("pcm16 stereo 22.05 kHz", wav(1, 2, 22_050, 16, 300, false)),
        seed("pcm8 mono 11.025 kHz", wav(1, 1, 11_025, 8, 300, false)),
        seed("pcm24 stereo 48 kHz", wav(1, 2, 48_000, 24, 300, false)),
        seed("pcm32 mono 16 kHz", wav(1, 1, 16_000, 32, 300, false)),
        seed("float32 mono 16 kHz", wav(3, 1, 16_000, 32, 400, false)),
        seed("float64 stereo 44.1 kHz", wav(3, 2, 44_100, 64, 200, false)),
        seed("mu-law mono 8 kHz", wav(7, 1, 8000, 8, 400, false)),
        seed("a-law mono 8 kHz", wav(6, 1, 8000, 8, 400, false)),
        seed("extensible pcm16 stereo 32 kHz", wav(1, 2, 32_000, 16, 300, true)),
        seed("extensible float32 mono 24 kHz", wav(3, 1, 24_000, 32, 300, true)),
    ]
}

fn wav_case(dir: &Scratch, input: &[u8]) -> Outcome {
    let p = dir.write("clip.wav", input);
    // Decoded and resampled to a plugin's rate, with a short cap, as extractors get clips.
    match crate::features::audio::load(&p, 16_000, Some(2.0)) {
        Ok(_) => Outcome::Ok,
        Err(crate::features::audio::AudioError::Panic { message, .. }) => Outcome::Contained(message),
        Err(e) => Outcome::Error(e.to_string()),
    }
}

// ---------------------------------------------------------------------------------------------
// Checkpoints: the TOML half and the safetensors half, read, matched and loaded as `--resume` does.

/// A tiny SASRec's config, for the seed checkpoint.
const CHECKPOINT_CONFIG: &str = "[encoder]
kind = \"sasrec\"
hidden_size = 8
n_layers = 1
n_heads = 2
max_len = 4

[train]
epochs = 3
";
const CHECKPOINT_ITEMS: usize = 6;

/// The seed checkpoint and the model it loads into.
pub(super) struct Checkpoints {
    cfg: TrainConfig,
    params: Params,
    opt: AdamW,
    seeds: Vec<Seed>,
}

/// A case's bytes: a mode byte (bit 0: write the weights' true SHA-256 into the TOML, so the
/// reader goes on past the hash check), the TOML's length (u32, little-endian), the TOML, then
/// the safetensors file.
fn checkpoint_bytes(restamp: bool, toml: &[u8], weights: &[u8]) -> Vec<u8> {
    let mut v = vec![u8::from(restamp)];
    v.extend_from_slice(&(toml.len() as u32).to_le_bytes());
    v.extend_from_slice(toml);
    v.extend_from_slice(weights);
    v
}

impl Checkpoints {
    fn new(dir: &Scratch) -> Result<Self, crate::train::TrainError> {
        let cfg = TrainConfig::from_toml(CHECKPOINT_CONFIG)?;
        let dev = Device::Cpu;
        let mut params = Params::new(3, &dev);
        cfg.encoder.build(CHECKPOINT_ITEMS, &mut params, None)?;
        let opt = AdamW::new(params.named_vars(), ParamsAdamW::default())?;
        let mut tensors: Vec<(String, Tensor)> = params.named_vars().into_iter().map(|(n, v)| (n, v.as_tensor().clone())).collect();
        tensors.extend(opt.state());
        // Tensors of other types, which loading skips (`adamw.` names that no slot reads): the
        // safetensors reader meets every dtype it converts.
        let x = Tensor::arange(0f32, 6.0, &dev)?.reshape((2, 3))?;
        for dt in [DType::BF16, DType::F16, DType::F64, DType::I64, DType::U32, DType::U8] {
            tensors.push((format!("adamw.extra.{dt:?}"), x.to_dtype(dt)?));
        }
        let meta = Meta {
            format: checkpoint::FORMAT,
            encoder: cfg.encoder.name().into(),
            n_items: CHECKPOINT_ITEMS,
            epoch: 2,
            steps: 10,
            best: Some((0.25, 1)),
            bad_evals: 1,
            valid_history: vec![0.25, 0.125],
            weights: String::new(),
            sha256: String::new(),
            data: String::new(),
            seal: String::new(),
            config: cfg.clone(),
        };
        let meta_path = checkpoint::write(&dir.0, "seed", &tensors, meta)?;
        let read = |p: &Path| std::fs::read(p).map_err(|cause| crate::train::TrainError::Io { context: format!("reading {}", p.display()), cause });
        let (toml, weights) = (read(&meta_path)?, read(&dir.path("seed.safetensors"))?);
        // The TOML names its weights by content (`seed.<sha>.safetensors`); cases write the
        // weights half as `seed.safetensors`, so the seed names that file, sealed again.
        let mut m: Meta = toml::from_str(&String::from_utf8_lossy(&toml)).map_err(|e| crate::train::TrainError::Config(e.to_string()))?;
        let _ = std::fs::remove_file(dir.path(&m.weights));
        m.weights = "seed.safetensors".into();
        let toml = checkpoint::sealed_text(&mut m, |m: &mut Meta| &mut m.seal)?.into_bytes();
        let seeds = vec![
            seed("checkpoint, hash re-stamped", checkpoint_bytes(true, &toml, &weights)),
            seed("checkpoint as written", checkpoint_bytes(false, &toml, &weights)),
        ];
        Ok(Checkpoints { cfg, params, opt, seeds })
    }

    fn case(&mut self, dir: &Scratch, input: &[u8]) -> Outcome {
        let restamp = input.first().is_some_and(|b| b & 1 == 1);
        let rest = input.get(1..).unwrap_or_default();
        let len = rest.get(..4).map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
        let rest = rest.get(4..).unwrap_or_default();
        let (toml, weights) = rest.split_at(len.min(rest.len()));
        let mut toml = toml.to_vec();
        if restamp {
            // The weights' hash stamped in, and the TOML sealed again when it still parses, so
            // that mutated weights reach the safetensors reader.
            let sha: String = Sha256::digest(weights).iter().map(|b| format!("{b:02x}")).collect();
            toml = match std::str::from_utf8(&toml).ok().and_then(|t| toml::from_str::<Meta>(t).ok()) {
                Some(mut m) => {
                    m.sha256 = sha;
                    checkpoint::sealed_text(&mut m, |m: &mut Meta| &mut m.seal).map(String::into_bytes).unwrap_or(toml)
                }
                None => restamp_sha(&toml, &sha),
            };
        }
        let meta_path = dir.write("case.toml", &toml);
        dir.write("seed.safetensors", weights);
        let mut run = || -> Result<(), crate::train::TrainError> {
            let (meta, tensors) = checkpoint::read(&meta_path, &Device::Cpu)?;
            checkpoint::check_matches(&meta, &meta_path, &self.cfg, CHECKPOINT_ITEMS, "")?;
            checkpoint::load_params(&self.params, &tensors, &meta_path)?;
            self.opt.load_state(&tensors, meta.steps).map_err(|reason| crate::train::TrainError::Mismatch { path: meta_path.clone(), reason })?;
            Ok(())
        };
        first_ok([run().map_err(|e| e.to_string())])
    }
}

/// `toml` with the value of its first `sha256 = "…"` replaced by `sha`.
fn restamp_sha(toml: &[u8], sha: &str) -> Vec<u8> {
    const KEY: &[u8] = b"sha256 = \"";
    let Some(at) = toml.windows(KEY.len()).position(|w| w == KEY) else { return toml.to_vec() };
    let from = at + KEY.len();
    let to = toml[from..].iter().position(|&b| b == b'"' || b == b'\n').map_or(toml.len(), |p| from + p);
    let mut out = toml[..from].to_vec();
    out.extend_from_slice(sha.as_bytes());
    out.extend_from_slice(&toml[to..]);
    out
}
