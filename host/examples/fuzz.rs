//! Fuzzes encore's readers of untrusted input for a while (`encore::fuzz`); `bench/fuzz/run.sh`
//! runs it target by target. Exits 1 when a case crashed, 70 (from the watchdog) on a hang or a
//! runaway allocation, and names the case on an abort (an allocation refused under the address
//! space limit, a stack overflow): `--save-case N` with the same seed writes that case's input.
//!
//!     cargo run -p encore --example fuzz -- --target tsv --minutes 10 --seed 1 --crash-dir crashes
//!     cargo run -p encore --example fuzz -- --target wav --replay crashes/wav-s1-c123.bin
use clap::Parser;
use encore::fuzz::{self, CountingAlloc, Options, Target};
use std::path::PathBuf;
use std::time::Duration;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

#[derive(Parser)]
struct Args {
    /// Targets, one after the other (default: all six).
    #[arg(long, value_enum, value_delimiter = ',')]
    target: Vec<Target>,
    /// Minutes per target.
    #[arg(long)]
    minutes: Option<f64>,
    /// Cases per target (with --minutes, whichever comes first).
    #[arg(long)]
    cases: Option<u64>,
    /// The run's seed: the same seed replays the same cases.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where the inputs of crashes are saved.
    #[arg(long)]
    crash_dir: Option<PathBuf>,
    /// A case running longer is a hang.
    #[arg(long, default_value_t = 60)]
    hang_seconds: u64,
    /// A case allocating more at its peak is a crash.
    #[arg(long, default_value_t = 1024)]
    max_case_mib: u64,
    /// The process's address-space limit (RLIMIT_AS), GiB; 0: none.
    #[arg(long, default_value_t = 16)]
    max_memory_gib: u64,
    /// Seconds between progress lines; 0: none.
    #[arg(long, default_value_t = 60)]
    progress_seconds: u64,
    /// Write this case's input to the crash directory before running it.
    #[arg(long)]
    save_case: Option<u64>,
    /// Run one saved input through the (single) target and print the outcome.
    #[arg(long)]
    replay: Option<PathBuf>,
}

/// Names the case on an abort; only async-signal-safe calls.
extern "C" fn on_abort(sig: libc::c_int) {
    let mut buf = [0u8; 80];
    let head = b"\nfuzz: aborted in case ";
    buf[..head.len()].copy_from_slice(head);
    let mut n = head.len();
    let mut digits = [0u8; 20];
    let (mut k, mut c) = (0, fuzz::current_case());
    loop {
        digits[k] = b'0' + (c % 10) as u8;
        k += 1;
        c /= 10;
        if c == 0 {
            break;
        }
    }
    while k > 0 {
        k -= 1;
        buf[n] = digits[k];
        n += 1;
    }
    buf[n] = b'\n';
    // SAFETY: write, signal and raise are async-signal-safe; buf outlives the call.
    unsafe {
        libc::write(2, buf.as_ptr().cast(), n + 1);
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let targets = if args.target.is_empty() { Target::ALL.to_vec() } else { args.target.clone() };
    if let Some(path) = &args.replay {
        let [target] = targets[..] else { anyhow::bail!("--replay takes one --target") };
        let input = std::fs::read(path)?;
        match fuzz::run_input(target, &input) {
            Ok(outcome) => println!("{target}: {} bytes: {outcome:?}", input.len()),
            Err(panic) => {
                println!("{target}: {} bytes: PANIC: {panic}", input.len());
                std::process::exit(1);
            }
        }
        return Ok(());
    }
    // SAFETY: plain libc calls with valid arguments, before any other thread starts.
    unsafe {
        libc::signal(libc::SIGABRT, on_abort as *const () as libc::sighandler_t);
        if args.max_memory_gib > 0 {
            let bytes = args.max_memory_gib << 30;
            let lim = libc::rlimit { rlim_cur: bytes, rlim_max: bytes };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                anyhow::bail!("setrlimit(RLIMIT_AS, {bytes}): {}", std::io::Error::last_os_error());
            }
        }
    }
    let mut crashed = false;
    for target in targets {
        let opts = Options {
            seed: args.seed,
            cases: args.cases,
            time: args.minutes.map(|m| Duration::from_secs_f64(m * 60.0)),
            crash_dir: args.crash_dir.clone(),
            hang: Duration::from_secs(args.hang_seconds),
            max_case_bytes: args.max_case_mib << 20,
            progress: (args.progress_seconds > 0).then(|| Duration::from_secs(args.progress_seconds)),
            save_case: args.save_case,
        };
        let s = fuzz::run(target, &opts);
        println!("{}", s.summary());
        for m in &s.contained_messages {
            println!("  contained panic: {m}");
        }
        for f in &s.findings {
            let at = f.saved.as_ref().map_or("not saved (no --crash-dir)".into(), |p| p.display().to_string());
            println!("  CRASH ({:?}) in case {}: {}\n    input ({} bytes): {at}", f.kind, f.case, f.message, f.input.len());
        }
        crashed |= !s.findings.is_empty();
    }
    if crashed {
        std::process::exit(1);
    }
    Ok(())
}
