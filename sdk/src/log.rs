//! Log lines to the host's log, tagged with the plugin's name. Plugins have no stdout or stderr.
use std::sync::OnceLock;

/// How loud a log line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Detail for debugging a plugin.
    Debug,
    /// Normal progress.
    Info,
    /// Something the user should look at.
    Warn,
    /// Something failed.
    Error,
}

static SINK: OnceLock<fn(Level, &str)> = OnceLock::new();

pub(crate) fn set_sink(sink: fn(Level, &str)) {
    let _ = SINK.set(sink);
}

/// Sends one line to the host's log. Outside a host (native unit tests) it goes to stderr.
pub fn log(level: Level, message: &str) {
    match SINK.get() {
        Some(sink) => sink(level, message),
        None => eprintln!("[{level:?}] {message}"),
    }
}

/// Logs at [`Level::Info`].
pub fn info(message: &str) {
    log(Level::Info, message)
}

/// Logs at [`Level::Warn`].
pub fn warn(message: &str) {
    log(Level::Warn, message)
}
