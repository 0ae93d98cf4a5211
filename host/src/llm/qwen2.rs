//! Qwen2 and Qwen2.5 (Qwen Team, "Qwen2 Technical Report", 2024; model cards Qwen/Qwen2.5-0.5B …
//! Qwen/Qwen2.5-7B-Instruct): the LLaMA decoder of `llama.rs` with biases on the query, key and
//! value projections, SwiGLU, RMS norm and rotate-half rotary embeddings (base 1,000,000 for
//! Qwen2.5), tied embeddings in the small models. HF's `Qwen2Config` keys; the sliding-window
//! attention that `use_sliding_window = true` switches on is not supported.
use super::llama::LlamaConfig;
use super::{LlmError, Result};
use serde::Deserialize;

#[derive(Deserialize)]
struct Qwen2Extra {
    #[serde(default)]
    use_sliding_window: bool,
}

/// The decoder config of a Qwen2 `config.json`: the llama keys, with query/key/value biases.
pub fn config(text: &str, source: &str) -> Result<LlamaConfig> {
    let extra: Qwen2Extra = serde_json::from_str(text).map_err(|e| LlmError::Config(format!("{source}: {e}")))?;
    if extra.use_sliding_window {
        return Err(LlmError::Config(format!("{source}: use_sliding_window = true is not supported")));
    }
    let mut cfg: LlamaConfig = serde_json::from_str(text).map_err(|e| LlmError::Config(format!("{source}: {e}")))?;
    cfg.attention_bias = true;
    Ok(cfg)
}
