//! Fuzzing on stable Rust: every reader of untrusted input is fed seeded mutations of valid
//! inputs, and must answer each with a value or an error, never a panic, a hang or a huge
//! allocation.
//!
//! The six targets ([`Target`]) are the TSV readers (listening log, duration table, side-car),
//! the config loaders (run, data, training, features), the rankings reader of `encore eval
//! --rankings`, the fusion-plan validator (with `check_size`, and small plans built and run),
//! audio clips (WAV headers first; decoded and resampled) and checkpoints (both halves, loaded
//! as `--resume` loads them). Each starts from valid seed inputs built in code ([`seeds`]), then
//! mutates them: bit flips, byte inserts and deletes, chunk copies and splices, interesting
//! integers in binary (0, -1, 2³²-1, huge lengths) and numbers in text (NaN, inf, 1e308), tokens
//! of the format, whole lines. Mutants that were accepted, or refused with an error message not
//! seen before, join the pool later cases start from: a cheap stand-in for coverage feedback.
//!
//! A run is a function of its seed: the same seed replays the same cases. Each case runs under
//! `catch_unwind`; a panic (an assertion of the harness included) is a [`Finding`], saved to the
//! crash directory when one is given. A watchdog thread ends the process when a case runs past
//! [`Options::hang`] or, with [`CountingAlloc`] as the global allocator, allocates more than
//! twice [`Options::max_case_bytes`], after saving the input; a case that stays under that but
//! over `max_case_bytes` is a finding too. `bench/fuzz/run.sh` runs each target for minutes; the
//! tests run a few hundred cases of each.
mod mutate;
mod targets;

pub use targets::{seeds, Outcome, Seed};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A family of readers fed the same inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Target {
    /// `data::ingest` (streamed, mapped, gzip), `data::sessions::parse_durations`,
    /// `features::items::read_sidecar`.
    Tsv,
    /// `run::RunConfig::load`, `features::config::FeaturesConfig::load`, `data::config::DataConfig`,
    /// `train::TrainConfig::from_toml`.
    Config,
    /// `eval::rankings::read`.
    Rankings,
    /// `plugins::fusion::validate` on any plan, then `check_size`, then small plans built and run.
    FusionPlan,
    /// `features::audio::load`: header checks, symphonia, rubato.
    Wav,
    /// `train::checkpoint::read`, `check_matches`, `load_params` and the optimizer's `load_state`.
    Checkpoint,
}

impl Target {
    /// Every target, in the order the bench runs them.
    pub const ALL: [Target; 6] = [Target::Tsv, Target::Config, Target::Rankings, Target::FusionPlan, Target::Wav, Target::Checkpoint];

    /// The name the bench and the crash files use.
    pub fn name(self) -> &'static str {
        match self {
            Target::Tsv => "tsv",
            Target::Config => "config",
            Target::Rankings => "rankings",
            Target::FusionPlan => "fusion-plan",
            Target::Wav => "wav",
            Target::Checkpoint => "checkpoint",
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How long and how hard to fuzz.
#[derive(Debug, Clone)]
pub struct Options {
    /// The run's seed.
    pub seed: u64,
    /// Stop after this many cases.
    pub cases: Option<u64>,
    /// Stop after this long.
    pub time: Option<Duration>,
    /// Where to save the inputs of findings (`<target>-s<seed>-c<case>.bin`, and `.txt` with
    /// the message); none: they are kept in the [`Stats`] only.
    pub crash_dir: Option<PathBuf>,
    /// A case running longer is a hang: the watchdog saves its input and ends the process.
    pub hang: Duration,
    /// A case allocating more than this at its peak is a finding (measured with
    /// [`CountingAlloc`] only); twice this, and the watchdog ends the process.
    pub max_case_bytes: u64,
    /// Print a progress line to stderr this often.
    pub progress: Option<Duration>,
    /// Write this case's input to the crash directory before running it (to replay a case that
    /// aborted the process: the same seed gives the same cases).
    pub save_case: Option<u64>,
}

impl Default for Options {
    fn default() -> Self {
        Options { seed: 0, cases: None, time: None, crash_dir: None, hang: Duration::from_secs(60), max_case_bytes: 1 << 30, progress: None, save_case: None }
    }
}

/// What went wrong in a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindingKind {
    /// A panic: a bug in the reader, or an assertion of the harness that failed.
    Panic,
    /// The case allocated more than [`Options::max_case_bytes`].
    Memory,
}

/// A case that crashed.
#[derive(Debug, Clone)]
pub struct Finding {
    /// Panic or memory.
    pub kind: FindingKind,
    /// Its index in the run.
    pub case: u64,
    /// The panic's message and place, or the bytes allocated.
    pub message: String,
    /// The input.
    pub input: Vec<u8>,
    /// Where the input was saved.
    pub saved: Option<PathBuf>,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Stats {
    /// The target.
    pub target: Target,
    /// The run's seed.
    pub seed: u64,
    /// Cases run (the seeds included).
    pub cases: u64,
    /// Inputs some reader accepted.
    pub oks: u64,
    /// Inputs every reader refused with an error.
    pub errors: u64,
    /// Inputs on which the code under test caught a dependency's panic itself.
    pub contained: u64,
    /// The first messages of such contained panics, distinct.
    pub contained_messages: Vec<String>,
    /// Crashes.
    pub findings: Vec<Finding>,
    /// Distinct error messages (numbers blanked): how many ways of failing the run reached.
    pub distinct_errors: usize,
    /// The slowest case and its time.
    pub slowest: (u64, Duration),
    /// The case with the largest allocation peak and the bytes, when measured.
    pub peak: Option<(u64, u64)>,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl Stats {
    /// Cases per second.
    pub fn rate(&self) -> f64 {
        self.cases as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// One line: cases, rate, outcomes, crashes, slowest case, largest peak.
    pub fn summary(&self) -> String {
        let peak = self.peak.map_or("not measured".into(), |(c, b)| format!("{:.1} MiB (case {c})", b as f64 / (1 << 20) as f64));
        format!(
            "{}: {} cases in {:.0} s ({:.0}/s), {} ok, {} errors ({} distinct), {} contained panics, {} crashes; slowest case {} ({:.1} ms); largest allocation peak {peak}",
            self.target,
            self.cases,
            self.elapsed.as_secs_f64(),
            self.rate(),
            self.oks,
            self.errors,
            self.distinct_errors,
            self.contained,
            self.findings.len(),
            self.slowest.0,
            self.slowest.1.as_secs_f64() * 1e3,
        )
    }
}

/// Runs one input through the target's readers; `Err` holds a panic's message and place.
pub fn run_input(target: Target, input: &[u8]) -> Result<Outcome, String> {
    let mut h = targets::Harness::new(target);
    crate::unwind::contain(|| h.run(input))
}

/// The case the last started run is in (for a signal handler to name after an abort).
pub fn current_case() -> u64 {
    CURRENT_CASE.load(Ordering::Relaxed)
}

static CURRENT_CASE: AtomicU64 = AtomicU64::new(0);

/// Error messages remembered per run, for novelty.
const MAX_DISTINCT: usize = 1 << 14;
/// Mutants kept to start from.
const POOL: usize = 512;

/// Fuzzes `target` until `opts.cases` or `opts.time` (the seeds alone when neither is set).
pub fn run(target: Target, opts: &Options) -> Stats {
    let seeds: Vec<Vec<u8>> = seeds(target).into_iter().map(|s| s.bytes).collect();
    let mut harness = targets::Harness::new(target);
    let salt = target as u64 + 1;
    let mut m = mutate::Mutator::new(
        StdRng::seed_from_u64(opts.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ salt),
        targets::dictionary(target),
        targets::is_text(target),
        targets::max_len(target),
    );
    let mut pool: Vec<Vec<u8>> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut contained_seen: HashSet<String> = HashSet::new();
    let mut s = Stats {
        target,
        seed: opts.seed,
        cases: 0,
        oks: 0,
        errors: 0,
        contained: 0,
        contained_messages: Vec::new(),
        findings: Vec::new(),
        distinct_errors: 0,
        slowest: (0, Duration::ZERO),
        peak: None,
        elapsed: Duration::ZERO,
    };
    let watch = Watchdog::start(target, opts);
    let start = Instant::now();
    let mut last_progress = start;
    loop {
        let case = s.cases;
        let limit_reached = opts.cases.is_some_and(|n| case >= n) || opts.time.is_some_and(|t| start.elapsed() >= t);
        if (case as usize >= seeds.len() && opts.cases.is_none() && opts.time.is_none()) || limit_reached {
            break;
        }
        let input = match seeds.get(case as usize) {
            Some(seed) => seed.clone(),
            None => {
                let from_pool = !pool.is_empty() && m.rng().random_bool(0.4);
                let base = if from_pool { pool[m.rng().random_range(0..pool.len())].clone() } else { seeds[m.rng().random_range(0..seeds.len())].clone() };
                let other = if !pool.is_empty() && m.rng().random_bool(0.3) {
                    pool[m.rng().random_range(0..pool.len())].clone()
                } else {
                    seeds[m.rng().random_range(0..seeds.len())].clone()
                };
                m.mutate(&base, &other)
            }
        };
        CURRENT_CASE.store(case, Ordering::Relaxed);
        if opts.save_case == Some(case) {
            save(opts, target, case, &input, "saved before running it (--save-case)");
        }
        watch.begin(case, &input);
        let live = LIVE.load(Ordering::Relaxed);
        PEAK.store(live, Ordering::Relaxed);
        let t0 = Instant::now();
        let result = crate::unwind::contain(|| harness.run(&input));
        let dt = t0.elapsed();
        let peak = PEAK.load(Ordering::Relaxed).saturating_sub(live) as u64;
        watch.end();
        s.cases += 1;
        if dt > s.slowest.1 {
            s.slowest = (case, dt);
        }
        if measuring() && s.peak.is_none_or(|(_, b)| peak > b) {
            s.peak = Some((case, peak));
        }
        let novel = match result {
            Err(message) => {
                let saved = save(opts, target, case, &input, &message);
                s.findings.push(Finding { kind: FindingKind::Panic, case, message, input: input.clone(), saved });
                // Whatever the harness held may be half-changed.
                harness = targets::Harness::new(target);
                false
            }
            Ok(_) if measuring() && peak > opts.max_case_bytes => {
                let message = format!("the case allocated {peak} bytes at its peak, over the limit of {}", opts.max_case_bytes);
                let saved = save(opts, target, case, &input, &message);
                s.findings.push(Finding { kind: FindingKind::Memory, case, message, input: input.clone(), saved });
                false
            }
            Ok(Outcome::Ok) => {
                s.oks += 1;
                true
            }
            Ok(Outcome::Error(e)) => {
                s.errors += 1;
                seen.len() < MAX_DISTINCT && seen.insert(shape(&e))
            }
            Ok(Outcome::Contained(e)) => {
                s.contained += 1;
                let new = contained_seen.len() < MAX_DISTINCT && contained_seen.insert(shape(&e));
                if new && s.contained_messages.len() < 20 {
                    s.contained_messages.push(e);
                }
                new
            }
        };
        if novel && case as usize >= seeds.len() {
            if pool.len() < POOL {
                pool.push(input);
            } else {
                let i = m.rng().random_range(0..POOL);
                pool[i] = input;
            }
        }
        if let Some(every) = opts.progress {
            if last_progress.elapsed() >= every {
                last_progress = Instant::now();
                s.elapsed = start.elapsed();
                s.distinct_errors = seen.len();
                eprintln!("  {}", s.summary());
            }
        }
    }
    watch.stop();
    s.elapsed = start.elapsed();
    s.distinct_errors = seen.len();
    s
}

/// An error message with its numbers blanked and its length capped: failures of one kind at
/// different places count once. Blanked before the cap, so that the process id in a scratch
/// path does not change what a message counts as (and with it the run).
fn shape(e: &str) -> String {
    let mut out = String::with_capacity(128);
    let mut digits = false;
    for c in e.chars() {
        if out.len() >= 120 {
            break;
        }
        if c.is_ascii_digit() {
            if !digits {
                out.push('#');
            }
            digits = true;
        } else {
            digits = false;
            out.push(c);
        }
    }
    out
}

/// Saves a finding's input and message to the crash directory, if there is one.
fn save(opts: &Options, target: Target, case: u64, input: &[u8], message: &str) -> Option<PathBuf> {
    let dir = opts.crash_dir.as_ref()?;
    let stem = dir.join(format!("{target}-s{}-c{case}", opts.seed));
    let bin = stem.with_extension("bin");
    let written = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&bin, input))
        .and_then(|()| std::fs::write(stem.with_extension("txt"), format!("target {target}, seed {}, case {case}\n{message}\n", opts.seed)));
    match written {
        Ok(()) => Some(bin),
        Err(e) => {
            eprintln!("fuzz: cannot save the input of case {case} to {}: {e}", dir.display());
            None
        }
    }
}

/// Watches the case in progress from another thread; past the hang limit, or the memory limit,
/// saves its input and ends the process (a hang cannot be unwound).
struct Watchdog {
    state: Arc<Mutex<Option<(Instant, u64, usize, Vec<u8>)>>>,
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    fn start(target: Target, opts: &Options) -> Self {
        let state: Arc<Mutex<Option<(Instant, u64, usize, Vec<u8>)>>> = Arc::default();
        let done = Arc::new(AtomicBool::new(false));
        let (st, dn, opts) = (state.clone(), done.clone(), opts.clone());
        let thread = std::thread::spawn(move || {
            while !dn.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                let guard = st.lock().unwrap_or_else(|e| e.into_inner());
                let Some((t0, case, live, input)) = guard.as_ref() else { continue };
                let grown = LIVE.load(Ordering::Relaxed).saturating_sub(*live) as u64;
                let why = if t0.elapsed() > opts.hang {
                    format!("hang: case {case} has run for {:.1} s", t0.elapsed().as_secs_f64())
                } else if measuring() && grown > 2 * opts.max_case_bytes {
                    format!("memory: case {case} holds {grown} bytes, over twice the limit of {}", opts.max_case_bytes)
                } else {
                    continue;
                };
                let saved = save(&opts, target, *case, input, &why);
                let at = saved.map_or("not saved: no crash directory".into(), |p| p.display().to_string());
                eprintln!("fuzz {target}, seed {}: {why}; input ({} bytes): {at}", opts.seed, input.len());
                std::process::exit(70);
            }
        });
        Watchdog { state, done, thread: Some(thread) }
    }

    fn begin(&self, case: u64, input: &[u8]) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), case, LIVE.load(Ordering::Relaxed), input.to_vec()));
    }

    fn end(&self) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn stop(mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// Whether [`CountingAlloc`] is the global allocator (it has seen allocations).
fn measuring() -> bool {
    LIVE.load(Ordering::Relaxed) > 0
}

/// The system allocator, counting the bytes live and their peak, so that a run can report each
/// case's allocation peak. Install it in a fuzzing binary with
/// `#[global_allocator] static A: encore::fuzz::CountingAlloc = encore::fuzz::CountingAlloc;`.
/// The counts are process-wide: per-case peaks are meaningful when one run is in progress.
pub struct CountingAlloc;

fn grew(n: usize) {
    let now = LIVE.fetch_add(n, Ordering::Relaxed) + n;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is passed to `System` unchanged; only counters are updated besides.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}
