use clap::Parser;

fn main() {
    // candle 0.11 runs elementwise ops on its own thread pool, whose caller spins without limit
    // while it waits: on a busy machine that pool ate 70% of the CPU of a training run (2 threads,
    // load average 8: 41-56 s against 16-17 s with one thread, identical weights). Its matrix
    // products use rayon either way, so encore keeps that pool to the calling thread unless
    // CANDLE_NUM_THREADS says otherwise. Set here, before any thread exists.
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // SAFETY: the process is single-threaded at this point.
        unsafe { std::env::set_var("CANDLE_NUM_THREADS", "1") };
    }
    keep_freed_memory();
    let cli = encore::cli::Cli::parse();
    let level = match cli.verbose {
        0 => tracing::Level::WARN,
        1 => tracing::Level::INFO,
        _ => tracing::Level::DEBUG,
    };
    tracing_subscriber::fmt().with_max_level(level).with_writer(std::io::stderr).without_time().init();
    if let Err(e) = encore::cli::run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// Tensors of a few MiB are allocated and freed many times a second in training and evaluation.
/// glibc hands freed memory at the top of its heap back to the kernel past a small threshold, and
/// the next allocation faults every page in again: a fifth of an evaluation's CPU time went to
/// page faults. Keep up to 1 GiB of freed heap, and serve allocations of up to 32 MiB (the most
/// glibc allows) from the heap rather than from fresh mappings; `MALLOC_*_` variables still win.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    // SAFETY: mallopt only sets allocator parameters; no other thread exists yet.
    unsafe {
        if std::env::var_os("MALLOC_TRIM_THRESHOLD_").is_none() {
            libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        }
        if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}
