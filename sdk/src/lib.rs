//! The crate encore plugin authors depend on.
//!
//! One trait per plugin kind ([`metric::Metric`], [`fusion::Fusion`], [`extractor::Extractor`]) and
//! one export macro each ([`export_metric!`], [`export_fusion!`], [`export_extractor!`]). The macro
//! generates the WIT bindings inside the plugin crate, for that plugin's world only, and wires the
//! trait to them; authors never touch generated code.
//!
//! ```ignore
//! use encore_sdk::metric::Metric;
//!
//! /// Recall@K: the share of a user's targets found in their top-K.
//! struct Recall;
//!
//! impl Metric for Recall {
//!     fn new(_k: u32, _n_items: u32) -> Self { Recall }
//!     fn add(&mut self, ranked: &[u32], targets: &[u32]) -> Option<f64> {
//!         Some(encore_sdk::metric::hits(ranked, targets) as f64 / targets.len() as f64)
//!     }
//! }
//! encore_sdk::export_metric!(Recall);
//! ```
#![deny(missing_docs)]

pub mod extractor;
pub mod fusion;
pub mod log;
pub mod metric;
pub mod models;
mod params;

pub use params::{Params, Value};

/// The version of the `encore:plugin` WIT package this SDK builds plugins against, read at build
/// time from the package declaration in `wit/encore-plugin.wit` (the one place it is written).
pub const API_VERSION: &str = env!("ENCORE_PLUGIN_API");

/// What a plugin returns when it cannot do what was asked. The host reports it with the plugin's name.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// The input (a track, a parameter, a ranking) is not acceptable.
    InvalidInput(String),
    /// The request is valid but this plugin does not support it.
    Unsupported(String),
    /// Something went wrong inside the plugin.
    Internal(String),
}

impl Error {
    /// An [`Error::InvalidInput`] from anything printable.
    pub fn invalid(msg: impl std::fmt::Display) -> Self {
        Error::InvalidInput(msg.to_string())
    }
    /// An [`Error::Unsupported`] from anything printable.
    pub fn unsupported(msg: impl std::fmt::Display) -> Self {
        Error::Unsupported(msg.to_string())
    }
    /// An [`Error::Internal`] from anything printable.
    pub fn internal(msg: impl std::fmt::Display) -> Self {
        Error::Internal(msg.to_string())
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::InvalidInput(m) => write!(f, "invalid input: {m}"),
            Error::Unsupported(m) => write!(f, "unsupported: {m}"),
            Error::Internal(m) => write!(f, "internal error: {m}"),
        }
    }
}

impl std::error::Error for Error {}

/// Glue used by the export macros. Not part of the API.
#[doc(hidden)]
pub mod __rt {
    pub use wit_bindgen;

    use std::sync::Once;

    /// Installs the panic hook (it hands the message to the host before the plugin aborts) and the
    /// log sink. Called at the top of every exported function; only the first call does anything.
    pub fn init(panicked: fn(&str), log: fn(crate::log::Level, &str)) {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            crate::log::set_sink(log);
            std::panic::set_hook(Box::new(move |info| panicked(&info.to_string())));
        });
    }
}

include!(concat!(env!("OUT_DIR"), "/macros.rs"));

#[cfg(test)]
mod version_tests {
    /// Every WIT file of the package declares the version the SDK builds against (the host's test
    /// checks its own constant against the same files).
    #[test]
    fn every_wit_file_declares_the_sdk_api_version() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "wit") {
                let text = std::fs::read_to_string(&path).unwrap();
                let want = format!("package encore:plugin@{};", super::API_VERSION);
                assert!(text.lines().any(|l| l.trim() == want), "{} does not declare `{want}`", path.display());
                seen += 1;
            }
        }
        assert!(seen >= 5);
    }
}
