//! encore: multimodal, LLM-based session recommendation of music.
//!
//! The pipeline, in module order: `data` (ingest, sessions, splits) → `features` (extractor
//! plugins) → `models` / `train` (ID encoders, E4SRec) → `eval` (full ranking, metric plugins,
//! bootstrap) → `report`. `plugins` is the wasmtime sandbox the extractor, fusion and metric
//! plugins run in. `artifact` binds outputs together (manifests, locks).
pub mod annotate;
pub mod artifact;
pub mod cli;
pub mod data;
pub mod eval;
pub mod features;
pub mod fuzz;
pub mod grid;
pub mod hostmodels;
pub mod io;
pub mod llm;
pub mod math;
pub mod models;
pub mod pipeline;
pub mod plugins;
pub mod report;
pub mod results;
pub mod run;
pub mod train;
pub mod unwind;

/// glibc settings for encore's allocations; call it first thing in `main`. Tensors of a few MiB
/// are allocated and freed many times a second in training and evaluation. glibc hands freed
/// memory at the top of its heap back to the kernel past a small threshold, and the next
/// allocation faults every page in again: a fifth of an evaluation's CPU time went to
/// page faults. Keep up to 1 GiB of freed heap, and serve allocations of up to 32 MiB (the most
/// glibc allows) from the heap rather than from fresh mappings; `MALLOC_*_` variables still win.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn keep_freed_memory() {
    // SAFETY: mallopt only sets allocator parameters (call this first, before other threads).
    unsafe {
        if std::env::var_os("MALLOC_TRIM_THRESHOLD_").is_none() {
            libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        }
        if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        }
    }
}

/// Nothing to set outside glibc.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn keep_freed_memory() {}
