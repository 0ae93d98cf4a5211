//! `encore annotate`: MGPHot ratings from an OpenAI-compatible server (a real HTTP server on
//! 127.0.0.1, started here, that answers well, answers malformed JSON, stalls past the timeout,
//! fails with 500, 429 or 404), the cache and resume after a kill, the local candle backend on a
//! tiny random-weight GGUF written here, and `annotate validate`.
use encore::annotate::store::{read_annotations, Annotation};
use encore::features::mgphot::{genes, N_GENES};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn encore() -> Command {
    Command::new(env!("CARGO_BIN_EXE_encore"))
}

fn run_ok(c: &mut Command) -> Output {
    let o = c.output().unwrap();
    assert!(o.status.success(), "{c:?} failed:\n{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    o
}

/// A prepared dataset's items.parquet (titles name the server behaviour) and a tracks.tsv
/// side-car with tags, lyrics and true genes. Plays fall with the index, so `--top N` takes the
/// first N.
fn dataset(dir: &Path, titles: &[&str]) -> (PathBuf, PathBuf) {
    use arrow_array::{ArrayRef, Float32Array, StringArray, UInt32Array, UInt64Array};
    let n = titles.len();
    let s = |f: &dyn Fn(usize) -> String| -> ArrayRef { Arc::new(StringArray::from_iter_values((0..n).map(f))) };
    let data = dir.join("prepared");
    encore::data::schema::write(
        &data.join("items.parquet"),
        vec![
            ("item", Arc::new(UInt32Array::from_iter_values(0..n as u32))),
            ("track_id", s(&|i| format!("trk{i}"))),
            ("artist_id", s(&|i| format!("a{i}"))),
            ("artist", s(&|i| format!("Artist {i}"))),
            ("title", s(&|i| titles[i].to_string())),
            ("plays", Arc::new(UInt64Array::from_iter_values((0..n as u64).map(|i| 1000 - i)))),
            ("duration_s", Arc::new(Float32Array::from_iter_values((0..n).map(|_| 200.0)))),
        ],
        &[],
    )
    .unwrap();
    let tsv = dir.join("tracks.tsv");
    let mut text = String::from("track_id\tartist\ttitle\ttags\tlyrics\tmgphot\n");
    for (i, t) in titles.iter().enumerate() {
        let genes: Vec<String> = truth(i).iter().map(|&r| format!("{:.1}", r as f32 / 5.0)).collect();
        text.push_str(&format!("trk{i}\tArtist {i}\t{t}\tindie,lo-fi\tla la la, words of song {i}\t{}\n", genes.join(",")));
    }
    std::fs::write(&tsv, text).unwrap();
    (data, tsv)
}

/// The true ratings of track `i` in the side-car.
fn truth(i: usize) -> [u8; N_GENES] {
    std::array::from_fn(|g| ((g * 7 + i * 3) % 6) as u8)
}

/// What the mock model answers for a title: a function of the title only.
fn ratings_for(title: &str) -> [u8; N_GENES] {
    let h = title.bytes().map(|b| b as usize).sum::<usize>();
    std::array::from_fn(|g| ((g + h) % 6) as u8)
}

fn answer(ratings: &[u8]) -> String {
    let f: Vec<String> = genes().iter().map(|g| format!("\"{}\": {}", g.name, ratings[g.index])).collect();
    format!("{{{}}}", f.join(", "))
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    title: String,
    body: serde_json::Value,
    auth: Option<String>,
}

/// An OpenAI-compatible server on 127.0.0.1 whose behaviour depends on the track title in the
/// user message and on how often that title was asked:
/// `good` answers; `fixable` answers broken JSON first, then well; `hopeless` always leaves out a
/// gene; `slow` stalls past the client's timeout once; `flaky` fails with 500 twice; `busy` says
/// 429 with Retry-After once; `down` always fails with 503; `delay` answers after 300 ms.
/// A request for model `missing` gets a 404.
struct Server {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let s = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let s = s.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, &s);
                });
            }
        });
        Server { port, seen }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    fn count(&self, title: &str) -> usize {
        self.seen.lock().unwrap().iter().filter(|s| s.title == title).count()
    }

    fn total(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

fn serve(mut conn: TcpStream, seen: &Mutex<Vec<Seen>>) -> std::io::Result<()> {
    let mut r = BufReader::new(conn.try_clone()?);
    let mut len = 0usize;
    let mut auth = None;
    let mut request_line = String::new();
    r.read_line(&mut request_line)?;
    loop {
        let mut line = String::new();
        r.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':').unwrap_or((l, ""));
        match k.to_ascii_lowercase().as_str() {
            "content-length" => len = v.trim().parse().unwrap_or(0),
            "authorization" => auth = Some(v.trim().to_string()),
            _ => {}
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    assert!(request_line.starts_with("POST /v1/chat/completions "), "{request_line}");
    let user = body["messages"][1]["content"].as_str().unwrap_or("").to_string();
    let title = user.lines().find_map(|l| l.strip_prefix("Title: ")).unwrap_or("").to_string();
    let n = {
        let mut s = seen.lock().unwrap();
        s.push(Seen { title: title.clone(), body: body.clone(), auth });
        s.iter().filter(|x| x.title == title).count()
    };
    let ok = |content: &str| (200, serde_json::json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}).to_string(), None);
    let good = answer(&ratings_for(&title));
    let (status, text, retry_after): (u16, String, Option<&str>) = if body["model"] == "missing" {
        (404, "{\"error\": {\"message\": \"model `missing` not found\"}}".into(), None)
    } else {
        match title.as_str() {
            "fixable" if n == 1 => ok("{\"lead_vocal_presence\": 3, oops"),
            "hopeless" => ok(&good.replace("\"virtuosity\"", "\"virtuosty\"")),
            "slow" if n == 1 => {
                std::thread::sleep(Duration::from_millis(1500));
                ok(&good)
            }
            "flaky" if n <= 2 => (500, "internal error".into(), None),
            "busy" if n == 1 => (429, "slow down".into(), Some("0")),
            "down" => (503, "unavailable".into(), None),
            "delay" | "delay2" | "delay3" | "delay4" | "delay5" | "delay6" => {
                std::thread::sleep(Duration::from_millis(300));
                ok(&good)
            }
            _ => ok(&good),
        }
    };
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        _ => "Service Unavailable",
    };
    let mut head = format!("HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n", text.len());
    if let Some(a) = retry_after {
        head.push_str(&format!("Retry-After: {a}\r\n"));
    }
    conn.write_all(format!("{head}\r\n{text}").as_bytes())?;
    conn.flush()
}

fn annotate_cmd(server: &Server, data: &Path, tsv: &Path, top: usize, out: &Path) -> Command {
    annotate_with(server, data, tsv, top, out, 3)
}

fn annotate_with(server: &Server, data: &Path, tsv: &Path, top: usize, out: &Path, concurrency: usize) -> Command {
    let mut c = encore();
    c.args(["annotate", "mgphot", "--backend", "openai", "--model", "mock-llm", "--base-url", &server.url()])
        .args(["--timeout-s", "0.5", "--backoff-ms", "10", "--max-backoff-ms", "40", "--max-retries", "3", "--max-attempts", "3", "--quiet"])
        .args(["--concurrency", &concurrency.to_string()])
        .arg("--data")
        .arg(data)
        .arg("--tracks")
        .arg(tsv)
        .args(["--top", &top.to_string()])
        .arg("--out")
        .arg(out)
        .env("ENCORE_TEST_KEY", "sk-test")
        .args(["--api-key-env", "ENCORE_TEST_KEY"]);
    c
}

fn by_title(rows: &[Annotation]) -> HashMap<String, Annotation> {
    rows.iter().map(|r| (r.title.clone(), r.clone())).collect()
}

#[test]
fn http_backend_handles_good_malformed_slow_failing_and_limited_servers() {
    let dir = tempfile::tempdir().unwrap();
    let titles = ["good", "fixable", "hopeless", "slow", "flaky", "busy", "down", "good two"];
    let (data, tsv) = dataset(dir.path(), &titles);
    let server = Server::start();
    let out = dir.path().join("ann.parquet");
    let o = run_ok(&mut annotate_cmd(&server, &data, &tsv, 7, &out));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("7 tracks: 5 ok, 2 failed"), "{err}");

    let rows = read_annotations(&out).unwrap();
    assert_eq!(rows.len(), 7, "the 7 most-played tracks");
    assert_eq!(rows.iter().map(|r| r.item).collect::<Vec<_>>(), (0..7).collect::<Vec<_>>());
    let t = by_title(&rows);
    for (title, attempts, requests) in [("good", 1, 1), ("fixable", 2, 2), ("slow", 1, 2), ("flaky", 1, 3), ("busy", 1, 2)] {
        let r = &t[title];
        assert_eq!(r.ratings.as_ref().ok(), Some(&ratings_for(title)), "{title}: {:?}", r.ratings);
        assert_eq!(r.attempts, attempts, "{title}: answers asked");
        assert_eq!(server.count(title), requests, "{title}: requests sent");
        assert_eq!((r.model.as_str(), r.prompt_version.as_str()), ("openai:mock-llm", encore::annotate::prompt::PROMPT_VERSION));
    }
    // A malformed answer is sent back with the reason.
    let seen = server.seen.lock().unwrap().clone();
    let fix2 = seen.iter().filter(|s| s.title == "fixable").nth(1).unwrap();
    let msgs = fix2.body["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 4);
    assert!(msgs[3]["content"].as_str().unwrap().contains("not valid JSON"), "{:?}", msgs[3]);
    assert_eq!(fix2.auth.as_deref(), Some("Bearer sk-test"));
    assert_eq!(fix2.body["model"], "mock-llm");
    // A model that never meets the schema is recorded as failed with the reason, never filled in.
    let h = &t["hopeless"];
    assert_eq!(h.attempts, 3);
    let e = h.ratings.as_ref().unwrap_err();
    assert!(e.contains("invalid answer") && e.contains("unknown keys: virtuosty"), "{e}");
    let d = &t["down"];
    assert!(d.ratings.as_ref().unwrap_err().contains("HTTP 503"), "{:?}", d.ratings);
    assert_eq!(server.count("down"), 4, "1 request + 3 retries");
    // The side-car's tags and lyrics reach the prompt.
    let user = seen.iter().find(|s| s.title == "good").unwrap().body["messages"][1]["content"].as_str().unwrap().to_string();
    assert!(user.contains("Tags: indie, lo-fi") && user.contains("words of song 0") && user.contains("Artist: Artist 0"), "{user}");

    // The extractor-facing column holds the ratings / 5, null for failures.
    let genes = encore::annotate::store::read_genes(&out).unwrap();
    assert_eq!(genes.len(), 5);
    assert_eq!(genes["trk0"], ratings_for("good").iter().map(|&r| r as f32 / 5.0).collect::<Vec<_>>());

    // A rerun asks nothing already answered, but tries the transport failure again; a larger
    // --top asks only for the new track.
    let before = server.total();
    run_ok(&mut annotate_cmd(&server, &data, &tsv, 8, &out));
    assert_eq!(server.total() - before, 4 + 1, "only `down` (4 tries) and the new track");
    assert_eq!(server.count("good two"), 1);
    assert_eq!(server.count("hopeless"), 3, "a schema failure is cached");
    let rows2 = read_annotations(&out).unwrap();
    assert_eq!(rows2.len(), 8);
    assert_eq!(by_title(&rows2)["fixable"], t["fixable"]);
}

#[test]
fn a_killed_run_resumes_without_asking_twice() {
    let dir = tempfile::tempdir().unwrap();
    let titles = ["delay", "delay2", "delay3", "delay4", "delay5", "delay6"];
    let (data, tsv) = dataset(dir.path(), &titles);
    let server = Server::start();
    let out = dir.path().join("ann.parquet");
    let cache = dir.path().join("ann.parquet.cache.jsonl");
    let lines = || std::fs::read_to_string(&cache).map_or(0, |t| t.lines().count());
    let mut child = annotate_with(&server, &data, &tsv, 6, &out, 1).spawn().unwrap();
    // Each answer takes 300 ms: kill once two are cached.
    let t0 = std::time::Instant::now();
    while lines() < 2 && t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!out.exists(), "no output from a killed run");
    let cached = lines();
    assert!((1..6).contains(&cached), "{cached} answers cached before the kill");
    // A line cut by the kill is skipped, and that track asked again.
    let mut f = std::fs::OpenOptions::new().append(true).open(&cache).unwrap();
    f.write_all(b"{\"track_id\": \"trk5\", \"model\": \"openai:mo").unwrap();
    drop(f);
    let before = server.total();
    let o = run_ok(&mut annotate_cmd(&server, &data, &tsv, 6, &out));
    assert!(String::from_utf8_lossy(&o.stderr).contains("1 unreadable line"), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(server.total() - before, 6 - cached, "only the unanswered tracks are asked");
    let rows = read_annotations(&out).unwrap();
    assert!(rows.iter().all(|r| r.ratings.as_ref().ok() == Some(&ratings_for(&r.title))));
    // Every track was answered exactly once over both runs, except perhaps the one in flight at the kill.
    assert!(server.total() <= 7, "{}", server.total());
}

#[test]
fn a_wrong_model_name_stops_the_run_with_the_servers_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (data, tsv) = dataset(dir.path(), &["good", "good two", "good three"]);
    let server = Server::start();
    let out = dir.path().join("ann.parquet");
    let o = encore()
        .args(["annotate", "mgphot", "--backend", "openai", "--model", "missing", "--base-url", &server.url(), "--quiet", "--top", "3"])
        .arg("--data")
        .arg(&data)
        .arg("--tracks")
        .arg(&tsv)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("HTTP 404") && err.contains("model `missing` not found") && err.contains("--model"), "{err}");
    assert!(!out.exists());
}

#[test]
fn validate_reports_rho_and_mae_per_gene_and_group() {
    let dir = tempfile::tempdir().unwrap();
    let titles: Vec<String> = (0..12).map(|i| format!("song {i}")).collect();
    let (data, tsv) = dataset(dir.path(), &titles.iter().map(String::as_str).collect::<Vec<_>>());
    let server = Server::start();
    let out = dir.path().join("ann.parquet");
    run_ok(&mut annotate_cmd(&server, &data, &tsv, 12, &out));
    // Against itself: ρ = 1 where defined and MAE 0.
    let rep = dir.path().join("self.tsv");
    let o = run_ok(encore().args(["annotate", "validate"]).arg(&out).arg("--reference").arg(&out).arg("--out").arg(&rep));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.contains("all") && table.contains("vocals") && table.contains("composition"), "{table}");
    let text = std::fs::read_to_string(&rep).unwrap();
    let all = text.lines().find(|l| l.starts_with("all\t")).unwrap();
    let f: Vec<&str> = all.split('\t').collect();
    assert_eq!((f[3], f[6]), ("12", "0"), "{all}");
    assert!((f[4].parse::<f64>().unwrap() - 1.0).abs() < 1e-9, "{all}");
    // Against the side-car's true genes: the values match a computation by hand for one gene.
    let rep = dir.path().join("truth.parquet");
    run_ok(encore().args(["annotate", "validate"]).arg(&out).arg("--reference").arg(&tsv).arg("--out").arg(&rep));
    let mut annotated = HashMap::new();
    let mut reference = HashMap::new();
    for (i, t) in titles.iter().enumerate() {
        annotated.insert(format!("trk{i}"), ratings_for(t).iter().map(|&r| r as f32 / 5.0).collect::<Vec<_>>());
        reference.insert(format!("trk{i}"), truth(i).iter().map(|&r| r as f32 / 5.0).collect::<Vec<_>>());
    }
    let rows = encore::annotate::validate::compare(&annotated, &reference).unwrap();
    let g0 = &rows[0];
    let a: Vec<f64> = titles.iter().map(|t| ratings_for(t)[0] as f64).collect();
    let r: Vec<f64> = (0..12).map(|i| truth(i)[0] as f64).collect();
    assert!((g0.rho - encore::annotate::validate::spearman(&a, &r)).abs() < 1e-12);
    let mae = a.iter().zip(&r).map(|(x, y)| (x - y).abs() / 5.0).sum::<f64>() / 12.0;
    assert!((g0.mae - mae).abs() < 1e-6, "{} vs {mae}", g0.mae);
    assert!(std::fs::metadata(&rep).unwrap().len() > 0);
    // A reference from another dataset is refused with a clear message.
    let other = dir.path().join("other.tsv");
    std::fs::write(&other, format!("track_id\tmgphot\nzzz\t{}\n", vec!["0.2"; N_GENES].join(","))).unwrap();
    let o = encore().args(["annotate", "validate"]).arg(&out).arg("--reference").arg(&other).output().unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("no track is in both files"));
}

// ---- the local backend on a tiny random-weight GGUF ----

/// GPT-2's byte → printable character map (the byte-level alphabet).
fn byte_chars() -> Vec<char> {
    let mut bs: Vec<u32> = (b'!' as u32..=b'~' as u32).chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    let mut out = vec![' '; 256];
    for (b, c) in bs.iter().zip(cs) {
        out[*b as usize] = char::from_u32(c).unwrap();
    }
    out
}

/// A llama GGUF with random weights (2 blocks, hidden 16, 2 query and 1 key/value heads) and a
/// byte-level vocabulary: 3 control tokens, the 256 byte characters and a few merges.
fn tiny_gguf(path: &Path) {
    use candle_core::quantized::gguf_file::Value;
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};
    let mut tokens: Vec<String> = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"].map(String::from).to_vec();
    tokens.extend(byte_chars().iter().map(|c| c.to_string()));
    let merges = ["Ġ t", "h e", "Ġt he", "e r", "i n"];
    tokens.extend(merges.iter().map(|m| m.replace(' ', "")));
    let types: Vec<Value> = (0..tokens.len()).map(|i| Value::I32(if i < 3 { 3 } else { 1 })).collect();
    let (vocab, hidden, ffn, blocks) = (tokens.len(), 16usize, 32usize, 2usize);
    let md: Vec<(&str, Value)> = vec![
        ("general.architecture", Value::String("llama".into())),
        ("llama.block_count", Value::U32(blocks as u32)),
        ("llama.context_length", Value::U32(8192)),
        ("llama.embedding_length", Value::U32(hidden as u32)),
        ("llama.feed_forward_length", Value::U32(ffn as u32)),
        ("llama.attention.head_count", Value::U32(2)),
        ("llama.attention.head_count_kv", Value::U32(1)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ("llama.rope.freq_base", Value::F32(10000.0)),
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String("smollm".into())),
        ("tokenizer.ggml.tokens", Value::Array(tokens.iter().map(|t| Value::String(t.clone())).collect())),
        ("tokenizer.ggml.token_type", Value::Array(types)),
        ("tokenizer.ggml.merges", Value::Array(merges.iter().map(|m| Value::String(m.to_string())).collect())),
        ("tokenizer.ggml.eos_token_id", Value::U32(2)),
    ];
    let dev = Device::Cpu;
    let mut seed = 0u64;
    let mut t = |shape: &[usize]| {
        seed += 1;
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|i| (((i as u64 * 2654435761 + seed * 40503) % 1000) as f32 / 1000.0 - 0.5) * 0.5).collect();
        QTensor::quantize(&Tensor::from_vec(v, shape, &dev).unwrap(), GgmlDType::F32).unwrap()
    };
    let mut tensors: Vec<(String, QTensor)> = vec![("token_embd.weight".into(), t(&[vocab, hidden])), ("output_norm.weight".into(), t(&[hidden]))];
    for b in 0..blocks {
        for (n, s) in [
            ("attn_norm", vec![hidden]),
            ("attn_q", vec![hidden, hidden]),
            ("attn_k", vec![8, hidden]),
            ("attn_v", vec![8, hidden]),
            ("attn_output", vec![hidden, hidden]),
            ("ffn_norm", vec![hidden]),
            ("ffn_gate", vec![ffn, hidden]),
            ("ffn_up", vec![ffn, hidden]),
            ("ffn_down", vec![hidden, ffn]),
        ] {
            tensors.push((format!("blk.{b}.{n}.weight"), t(&s)));
        }
    }
    let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (*k, v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut f = std::fs::File::create(path).unwrap();
    candle_core::quantized::gguf_file::write(&mut f, &md_refs, &t_refs).unwrap();
}

#[test]
fn the_gguf_tokenizer_round_trips_text_and_keeps_control_tokens_whole() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("tiny.gguf");
    tiny_gguf(&p);
    let mut f = std::fs::File::open(&p).unwrap();
    let ct = candle_core::quantized::gguf_file::Content::read(&mut f).unwrap();
    let tok = encore::llm::gguf_tokenizer::GgufTokenizer::from_gguf(&ct).unwrap();
    let text = "<|im_start|>user\nBjörk – Jóga: the other 123 ♪<|im_end|>\n";
    let ids = tok.encode(text).unwrap();
    assert_eq!(ids[0], 1, "<|im_start|> is one token");
    assert_eq!(tok.decode(&ids).unwrap(), text);
    // Merges apply (" the" is one token), and digits are split one by one.
    let the = tok.token_id("Ġthe").unwrap();
    assert!(ids.contains(&the), "{ids:?}");
    let d = tok.encode("123").unwrap();
    assert_eq!(d.len(), 3);
}

#[test]
fn local_backend_annotates_with_a_tiny_gguf_constrained_and_free() {
    let dir = tempfile::tempdir().unwrap();
    let (data, tsv) = dataset(dir.path(), &["alpha", "beta", "gamma"]);
    let gguf = dir.path().join("tiny.gguf");
    tiny_gguf(&gguf);
    let local = |out: &Path, extra: &[&str]| {
        let mut c = encore();
        c.args(["annotate", "mgphot", "--backend", "local", "--quiet", "--top", "3", "--lyrics-chars", "40"])
            .arg("--gguf")
            .arg(&gguf)
            .arg("--data")
            .arg(&data)
            .arg("--tracks")
            .arg(&tsv)
            .arg("--out")
            .arg(out)
            .args(extra);
        c
    };
    // Constrained: the host writes the JSON, so every track gets 58 ratings in 0–5.
    let out = dir.path().join("c.parquet");
    run_ok(&mut local(&out, &[]));
    let rows = read_annotations(&out).unwrap();
    assert_eq!(rows.len(), 3);
    assert!(
        rows.iter().all(|r| r.ratings.is_ok() && r.attempts == 1 && r.model.starts_with("gguf:tiny.gguf@") && r.model.ends_with("/constrained/t0")),
        "{rows:?}"
    );
    // Greedy decoding is deterministic: a second run without the cache gives the same ratings.
    let out2 = dir.path().join("c2.parquet");
    run_ok(&mut local(&out2, &[]));
    assert_eq!(read_annotations(&out2).unwrap(), rows);
    // Seeded sampling gives other ratings than greedy decoding, the same ones for the same seed.
    let s1 = dir.path().join("s1.parquet");
    let s2 = dir.path().join("s2.parquet");
    run_ok(&mut local(&s1, &["--temperature", "1.0", "--seed", "7"]));
    run_ok(&mut local(&s2, &["--temperature", "1.0", "--seed", "7"]));
    let (r1, r2) = (read_annotations(&s1).unwrap(), read_annotations(&s2).unwrap());
    assert_eq!(r1, r2);
    assert_ne!(r1.iter().map(|r| r.ratings.clone()).collect::<Vec<_>>(), rows.iter().map(|r| r.ratings.clone()).collect::<Vec<_>>());
    // Free: random weights write no valid JSON; each track is retried, then recorded as failed.
    let out = dir.path().join("f.parquet");
    run_ok(&mut local(&out, &["--decode", "free", "--max-tokens", "12", "--max-attempts", "2"]));
    let rows = read_annotations(&out).unwrap();
    assert!(rows.iter().all(|r| r.attempts == 2 && r.ratings.as_ref().is_err_and(|e| e.starts_with("invalid answer"))), "{rows:?}");
}
