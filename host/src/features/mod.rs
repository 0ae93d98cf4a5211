//! Item features: what extractor plugins produce, and the tables they rely on.
//!
//! [`items`] (the catalog and its side-car table) → [`audio`] (clips decoded and resampled) →
//! [`extract`] (batches through the plugin, cached and resumable) → [`store`] (the Parquet
//! files); [`purity`] measures how well vectors separate labels. Formats: `docs/features.md`.
pub mod audio;
pub mod command;
pub mod config;
pub mod extract;
pub mod items;
pub mod mgphot;
pub mod purity;
pub mod store;

pub use config::FeaturesConfig;
