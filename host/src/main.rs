use clap::Parser;

fn main() {
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
