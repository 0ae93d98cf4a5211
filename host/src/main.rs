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
    encore::keep_freed_memory();
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
