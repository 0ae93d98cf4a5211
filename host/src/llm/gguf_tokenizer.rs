//! The GPT-2-style byte-level BPE tokenizer stored in a GGUF file's metadata
//! (`tokenizer.ggml.model = "gpt2"`: `tokenizer.ggml.tokens`, `tokenizer.ggml.merges`,
//! `tokenizer.ggml.token_type`), rebuilt with the `tokenizers` crate: a BPE model over the
//! tokens and merges, the byte-level pre-tokenizer (GPT-2's split regex) and decoder, and the
//! control tokens (type 3, e.g. `<|im_start|>`) as special tokens matched whole in the text.
//! `tokenizer.ggml.pre = "smollm"` (SmolLM2) splits digits one by one before the byte-level
//! step, as llama.cpp and the model's `tokenizer.json` do.
use candle_core::quantized::gguf_file;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, DecoderWrapper, PreTokenizerWrapper, Tokenizer};

/// What can go wrong building or using the tokenizer.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A metadata key is missing or has the wrong type.
    #[error("GGUF tokenizer metadata: {0}")]
    Metadata(String),
    /// The `tokenizers` crate refused the vocabulary or the text.
    #[error("tokenizer: {0}")]
    Tokenizers(String),
}

/// A GGUF file's tokenizer.
pub struct GgufTokenizer {
    inner: Tokenizer,
    tokens: Vec<String>,
    /// End-of-sequence token id (`tokenizer.ggml.eos_token_id`).
    pub eos: Option<u32>,
}

fn strings(ct: &gguf_file::Content, key: &str) -> Result<Vec<String>, TokenizerError> {
    let v = ct.metadata.get(key).ok_or_else(|| TokenizerError::Metadata(format!("no `{key}`")))?;
    let arr = v.to_vec().map_err(|e| TokenizerError::Metadata(format!("`{key}`: {e}")))?;
    arr.iter().map(|x| x.to_string().cloned().map_err(|e| TokenizerError::Metadata(format!("`{key}`: {e}")))).collect()
}

impl GgufTokenizer {
    /// Builds the tokenizer from a GGUF header.
    pub fn from_gguf(ct: &gguf_file::Content) -> Result<Self, TokenizerError> {
        let model = ct.metadata.get("tokenizer.ggml.model").and_then(|v| v.to_string().ok()).cloned().unwrap_or_default();
        if model != "gpt2" {
            return Err(TokenizerError::Metadata(format!("tokenizer.ggml.model is {model:?}; only \"gpt2\" (byte-level BPE) is supported")));
        }
        let tokens = strings(ct, "tokenizer.ggml.tokens")?;
        let merges = strings(ct, "tokenizer.ggml.merges")?
            .into_iter()
            .map(|m| {
                m.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())).ok_or_else(|| TokenizerError::Metadata(format!("merge {m:?} is not two tokens")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let types: Vec<i64> = match ct.metadata.get("tokenizer.ggml.token_type").map(|v| v.to_vec()) {
            Some(Ok(v)) => v.iter().map(|x| x.to_i32().map(i64::from).unwrap_or(1)).collect(),
            _ => vec![1; tokens.len()],
        };
        let vocab: tokenizers::models::bpe::Vocab = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
        let bpe = BPE::builder().vocab_and_merges(vocab, merges).build().map_err(|e| TokenizerError::Tokenizers(e.to_string()))?;
        let mut inner = Tokenizer::new(bpe);
        let byte_level = ByteLevel::new(false, false, true);
        let pre = ct.metadata.get("tokenizer.ggml.pre").and_then(|v| v.to_string().ok()).cloned().unwrap_or_default();
        if pre == "smollm" {
            inner.with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(Sequence::new(vec![Digits::new(true).into(), byte_level.into()]))));
        } else {
            inner.with_pre_tokenizer(Some(byte_level));
        }
        inner.with_decoder(Some(DecoderWrapper::ByteLevel(ByteLevel::default())));
        let special: Vec<AddedToken> = tokens.iter().zip(&types).filter(|(_, &t)| t == 3).map(|(s, _)| AddedToken::from(s.clone(), true)).collect();
        inner.add_special_tokens(special).map_err(|e| TokenizerError::Tokenizers(e.to_string()))?;
        let eos = ct.metadata.get("tokenizer.ggml.eos_token_id").and_then(|v| v.to_u32().ok());
        Ok(Self { inner, tokens, eos })
    }

    /// Token ids of `text`; special tokens written in the text become their ids.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        Ok(self.inner.encode(text, false).map_err(|e| TokenizerError::Tokenizers(e.to_string()))?.get_ids().to_vec())
    }

    /// The text of `ids` (special tokens kept).
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        self.inner.decode(ids, false).map_err(|e| TokenizerError::Tokenizers(e.to_string()))
    }

    /// The id of a token spelled exactly `s` in the vocabulary.
    pub fn token_id(&self, s: &str) -> Option<u32> {
        self.tokens.iter().position(|t| t == s).map(|i| i as u32)
    }

    /// Vocabulary size.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether the vocabulary is empty.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}
