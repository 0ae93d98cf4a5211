//! Item features: what extractor plugins produce, and the tables they rely on.
pub mod mgphot;
