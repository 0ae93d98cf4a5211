//! `report.html` in a real browser: headless Chromium renders a grid's report, its screenshot is
//! not blank, and the DOM it built holds the paper tables' cells and the plots.
//!
//! Needs Chromium: `scripts/test.sh` installs it (Debian's `chromium`), or set `ENCORE_CHROMIUM`.
use encore::report::{self, GridReport};
use encore::results::ResultRow;
use std::collections::HashMap;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LLMS: [&str; 2] = ["qwen2-0.5b", "smollm2"];
const ENCODERS: [&str; 2] = ["SASRec", "GRU4Rec"];
const VARIANTS: [&str; 3] = ["ID only", "+A/L/M", "+A/L/M+CR"];
const PROTOCOLS: [&str; 2] = ["full", "1+199"];
const METRICS: [(&str, u32); 4] = [("recall", 10), ("recall", 20), ("ndcg", 10), ("ndcg", 20)];
/// How long Chromium may take for one page before it is killed.
const TIMEOUT: Duration = Duration::from_secs(60);

/// A value that tells every cell apart: full ranking below 0.5, sampled three times higher.
fn value(l: usize, e: usize, v: usize, seed: usize, p: usize, m: usize) -> f64 {
    let full = 0.1 + 0.05 * m as f64 + 0.02 * l as f64 + 0.01 * e as f64 + 0.015 * v as f64 + 0.002 * seed as f64;
    if p == 0 {
        full
    } else {
        3.0 * full
    }
}

/// 2 LLMs × 2 encoders × 3 variants × 2 seeds × 2 protocols × 4 metric@k, and MostPop: +A/L/M is
/// a significant gain, +A/L/M+CR not significant.
fn rows() -> Vec<ResultRow> {
    let mut out = Vec::new();
    for (p, protocol) in PROTOCOLS.iter().enumerate() {
        for (m, (metric, k)) in METRICS.iter().enumerate() {
            for (l, llm) in LLMS.iter().enumerate() {
                for (e, encoder) in ENCODERS.iter().enumerate() {
                    for (v, variant) in VARIANTS.iter().enumerate() {
                        for seed in 0..2 {
                            let x = value(l, e, v, seed, p, m);
                            let cell = |v: &str| format!("{llm}/{encoder}/{v}/seed{seed}");
                            let compared = v > 0;
                            out.push(ResultRow {
                                cell: cell(variant),
                                llm: llm.to_string(),
                                encoder: encoder.to_string(),
                                variant: variant.to_string(),
                                seed: 2020 + seed as u64,
                                protocol: protocol.to_string(),
                                metric: metric.to_string(),
                                k: *k,
                                value: x,
                                ci: Some((x - 0.01, x + 0.012)),
                                n_cases: 500,
                                baseline: compared.then(|| cell("ID only")),
                                diff: compared.then(|| x - value(l, e, 0, seed, p, m)),
                                diff_ci: compared.then_some((0.001, 0.05)),
                                p_value: compared.then_some(if v == 1 { 0.001 } else { 0.2 }),
                                p_adjusted: compared.then_some(if v == 1 { 0.004 } else { 0.6 }),
                                correction: if compared { "holm".into() } else { String::new() },
                            });
                        }
                    }
                }
            }
            let x = 0.05 + 0.01 * m as f64;
            out.push(ResultRow {
                cell: "MostPop".into(),
                llm: "-".into(),
                encoder: "MostPop".into(),
                variant: "-".into(),
                seed: 0,
                protocol: protocol.to_string(),
                metric: metric.to_string(),
                k: *k,
                value: if p == 0 { x } else { 3.0 * x },
                ci: Some((x - 0.005, x + 0.005)),
                n_cases: 500,
                ..ResultRow::default()
            });
        }
    }
    out
}

/// `$ENCORE_CHROMIUM`, else `chromium` or `chromium-browser` on `PATH`.
fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("ENCORE_CHROMIUM") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["chromium", "chromium-browser"] {
        if let Some(p) = std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file()) {
            return p;
        }
    }
    panic!(
        "no Chromium for the report's browser test: run scripts/test.sh (it installs Chromium), or \
         `apt-get install chromium`, or set ENCORE_CHROMIUM to a Chromium or Chrome binary"
    );
}

/// Runs headless Chromium on `page` with `args`, killing it (and what it started) after
/// [`TIMEOUT`]; returns its stdout.
fn headless(browser: &Path, dir: &Path, args: &[String], page: &Path) -> String {
    let mut child = Command::new(browser)
        .args(["--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,2400"])
        .args(["--no-first-run", "--no-default-browser-check", "--disable-dev-shm-usage"])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that a timeout kills the renderers too.
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {} (ENCORE_CHROMIUM, or chromium on PATH; scripts/test.sh installs it): {e}", browser.display()));
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = r.read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > TIMEOUT {
            // SAFETY: kill(2) on the process group of the child this test started.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
            panic!("{} {args:?} ran past {TIMEOUT:?} and was killed; stderr:\n{}", browser.display(), stderr.join().unwrap());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (out, err) = (stdout.join().unwrap(), stderr.join().unwrap());
    assert!(status.success(), "{} {args:?}: {status}; stderr:\n{err}", browser.display());
    out
}

/// The decoded screenshot: how many pixels differ from the most common colour (the background),
/// and how many colours it has.
fn screenshot_stats(path: &Path) -> (u32, u32, f64, usize) {
    let file = std::io::BufReader::new(std::fs::File::open(path).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", path.display())));
    let mut reader = png::Decoder::new(file).read_info().expect("the screenshot is a PNG");
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).expect("the screenshot decodes");
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    let px = info.color_type.samples();
    let mut counts: HashMap<&[u8], usize> = HashMap::new();
    for row in buf[..info.buffer_size()].chunks(info.line_size) {
        for p in row[..info.width as usize * px].chunks(px) {
            *counts.entry(p).or_default() += 1;
        }
    }
    let total = (info.width * info.height) as f64;
    let background = counts.values().copied().max().unwrap_or(0);
    (info.width, info.height, (total - background as f64) / total, counts.len())
}

#[test]
fn report_html_renders_in_headless_chromium_with_its_tables_and_plots() {
    let browser = chromium();
    let dir = tempfile::tempdir().unwrap();
    let rows = rows();
    let notes = vec!["A synthetic grid for the browser test.".to_string()];
    let page = report::html(&GridReport {
        title: "encore grid report",
        config: "configs/grid/test.toml",
        data: "1000 items, 500 test cases.",
        rows: &rows,
        notes: &notes,
        comparisons: &[],
    });
    let path = dir.path().join("report.html");
    std::fs::write(&path, &page).unwrap();

    let started = Instant::now();
    let shot = dir.path().join("report.png");
    headless(&browser, dir.path(), &[format!("--screenshot={}", shot.display())], &path);
    let (w, h, ink, colours) = screenshot_stats(&shot);
    assert_eq!((w, h), (1280, 2400));
    assert!(ink > 0.03, "the screenshot is almost blank: {:.2}% of its pixels differ from the background", ink * 100.0);
    assert!(colours >= 16, "the screenshot has only {colours} colours");

    let dom = headless(&browser, dir.path(), &["--dump-dom".to_string()], &path);
    eprintln!("chromium: screenshot and DOM in {:.1?}; {:.1}% ink, {colours} colours", started.elapsed(), ink * 100.0);
    // The paper tables: 4 metric@k × 2 protocols, each 2 LLMs × 2 encoders + MostPop rows × 3 variants.
    let tables: Vec<&str> = dom.split("<table class=\"paper\"").skip(1).map(|t| &t[..t.find("</table>").expect("a closed table")]).collect();
    assert_eq!(tables.len(), METRICS.len() * PROTOCOLS.len(), "paper tables in the DOM");
    for t in &tables {
        assert_eq!(t.matches("<td").count(), (LLMS.len() * ENCODERS.len() + 1) * VARIANTS.len());
        assert_eq!(t.matches("<tr").count(), 1 + LLMS.len() * ENCODERS.len() + 1);
    }
    // The first table is recall@10 under full ranking; its first row qwen2-0.5b × SASRec.
    let first = tables[0];
    assert!(first.contains("data-protocol=\"full\"") && first.contains("data-metric=\"recall@10\""), "{first}");
    let id = (value(0, 0, 0, 0, 0, 0) + value(0, 0, 0, 1, 0, 0)) / 2.0;
    let alm = (value(0, 0, 1, 0, 0, 0) + value(0, 0, 1, 1, 0, 0)) / 2.0;
    assert!(first.contains(&format!("{id:.4}")) && first.contains(&format!("{alm:.4}")), "{first}");
    assert!(first.contains(&format!("({:+.1}%*)", (alm - id) / id * 100.0)), "{first}");
    assert_eq!(first.matches("n.s.").count(), LLMS.len() * ENCODERS.len(), "+A/L/M+CR is not significant in every row");
    assert!(first.contains("<strong class=\"best\">"), "{first}");
    // The plots: one interval plot per metric@k, one full-against-sampled plot per metric@k.
    let svgs: Vec<&str> = dom.split("<svg").skip(1).map(|s| &s[..s.find("</svg>").expect("a closed svg")]).collect();
    assert_eq!(svgs.len(), 2 * METRICS.len(), "plots in the DOM");
    let cells = LLMS.len() * ENCODERS.len() * VARIANTS.len() * 2 + 1;
    for s in &svgs[..METRICS.len()] {
        assert!(s.matches("<circle").count() >= cells, "an interval plot with a dot per cell");
        assert!(s.matches("<polyline").count() + s.matches("<line").count() >= cells, "and a whisker per cell");
    }
    for s in &svgs[METRICS.len()..] {
        let bars = 2 * (LLMS.len() * ENCODERS.len() * VARIANTS.len() + 1);
        assert!(s.matches("<rect").count() >= bars, "a bar plot with two bars per cell");
    }
    assert!(dom.contains("<table class=\"inflation\""), "the inflation table");
}
