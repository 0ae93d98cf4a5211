//! E4SRec (Li et al., "E4SRec: An Elegant Effective Efficient Extensible Solution of Large
//! Language Models for Sequential Recommendation", 2023; code: HestiaSky/E4SRec, `model.py`).
//!
//! A user's history is a sequence of frozen item embeddings (an ID encoder's item table, or its
//! fused table), each projected by `item_proj` (Linear, encoder width → LLM hidden) into the LLM's
//! input space and placed between the tokens of an Alpaca prompt: the instruction, then the
//! items, then the response marker, without BOS. Shorter histories are left-padded inside the
//! item span and masked. The last position's hidden state goes through `score` (Linear, hidden →
//! n_items, no bias), which scores every item: a dot product with the head's rows, so full-ranking
//! evaluation treats it like any encoder. The LLM is frozen apart from its LoRA adapters.
//!
//! The instruction is the same for every user and sits at positions `0..P`, so its keys and
//! values are computed once per batch (once per evaluation) and shared by every row.
use super::llama::{KvCache, Llama, Mode};
use super::{LlmError, Result, Tokenizer};
use crate::models::layers::{Init, Linear};
use crate::models::Params;
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

/// E4SRec's prompt, worded for listening sessions.
pub const INSTRUCTION: &str = "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\nGiven the tracks of a user's listening session, predict the next track the user will play.\n\n### Input:\n";
/// The response marker.
pub const RESPONSE: &str = "\n\n### Response:\n";

/// The model's own settings (`[[llm]]` keys other than training ones).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PromptConfig {
    /// Text before the items.
    pub instruction: String,
    /// Text after the items.
    pub response: String,
    /// The most recent items of a history that the prompt holds.
    pub max_items: usize,
    /// How the listening completion ratios are read: `none`; `embed`, each item's input also
    /// gets a learned projection of its ratio (a learned vector where it is unknown), as the
    /// encoders' `completion = "embed"`; or `prompt`, the text " [completion: 0.73]" (or
    /// " [completion: unknown]") follows each item in the prompt.
    pub completion: PromptCompletion,
}

/// [`PromptConfig::completion`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PromptCompletion {
    /// Ratios are not read.
    #[default]
    None,
    /// A learned projection added to each item's input.
    Embed,
    /// The ratio as text after each item.
    Prompt,
}

/// The ratio texts of `completion = "prompt"`, embedded once: rows of [`RatioText::table`],
/// `spans[k]` (offset, length) for the ratio k/100, `spans[101]` for an unknown one.
struct RatioText {
    table: Tensor,
    spans: Vec<(usize, usize)>,
}

impl Default for PromptConfig {
    fn default() -> Self {
        PromptConfig { instruction: INSTRUCTION.into(), response: RESPONSE.into(), max_items: 20, completion: Default::default() }
    }
}

/// The LLM, the frozen item table, the projection and the head.
pub struct E4SRec {
    llm: Llama,
    items: Tensor,
    proj: Linear,
    completion: Option<crate::models::layers::CompletionEmbed>,
    ratio_text: Option<RatioText>,
    head: Tensor,
    instruction: Tensor,
    response: Tensor,
    max_items: usize,
}

impl E4SRec {
    /// Wraps `llm` (its adapters already in `vars`) with item table `items` (`n_items × d`,
    /// frozen), creating `item_proj.{weight,bias}` and `score.weight` in `vars` (PyTorch's
    /// default `nn.Linear` initialisation, as E4SRec).
    pub fn new(llm: Llama, tokenizer: &Tokenizer, items: Tensor, prompt: &PromptConfig, vars: &mut Params) -> Result<Self> {
        let ids = |text: &str| -> Result<Vec<u32>> {
            let ids = tokenizer.encode(text)?;
            if ids.is_empty() {
                return Err(LlmError::Input(format!("the prompt text {text:?} has no tokens")));
            }
            Ok(ids)
        };
        let (instruction, response) = (ids(&prompt.instruction)?, ids(&prompt.response)?);
        let mut m = Self::from_ids(llm, &instruction, &response, items, prompt.max_items, vars)?;
        match prompt.completion {
            PromptCompletion::None => {}
            PromptCompletion::Embed => {
                let h = m.llm.config().hidden_size;
                m.completion = Some(crate::models::layers::CompletionEmbed::new(vars, "completion", h, 0.02)?);
            }
            PromptCompletion::Prompt => {
                let texts = (0..=100).map(|k| format!(" [completion: {:.2}]", k as f32 / 100.0)).chain([" [completion: unknown]".to_string()]);
                let (mut all, mut spans) = (Vec::new(), Vec::new());
                for t in texts {
                    let t = ids(&t)?;
                    spans.push((all.len(), t.len()));
                    all.extend(t);
                }
                let table = m.llm.embed_ids(&Tensor::from_vec(all.clone(), (1, all.len()), m.llm.device())?)?.squeeze(0)?;
                m.ratio_text = Some(RatioText { table, spans });
            }
        }
        Ok(m)
    }

    /// Whether the model reads completion ratios.
    pub fn reads_completion(&self) -> bool {
        self.completion.is_some() || self.ratio_text.is_some()
    }

    /// [`E4SRec::new`] with the prompt given as token ids.
    pub fn from_ids(llm: Llama, instruction: &[u32], response: &[u32], items: Tensor, max_items: usize, vars: &mut Params) -> Result<Self> {
        let (n, d) = items.dims2()?;
        if n == 0 || d == 0 {
            return Err(LlmError::Input(format!("the item table is {n} × {d}")));
        }
        if max_items == 0 {
            return Err(LlmError::Input("max_items must be at least 1".into()));
        }
        let h = llm.config().hidden_size;
        let device = llm.device().clone();
        let proj = Linear::torch_default(vars, "item_proj", d, h)?;
        let head = vars.var("score.weight", &[n, h], Init::Uniform(1.0 / (h as f64).sqrt()))?;
        let vocab = llm.config().vocab_size as u32;
        let embed = |ids: &[u32]| -> Result<Tensor> {
            if ids.is_empty() || ids.iter().any(|&i| i >= vocab) {
                return Err(LlmError::Input(format!("prompt token ids must be non-empty and below the vocabulary of {vocab}")));
            }
            llm.embed_ids(&Tensor::from_vec(ids.to_vec(), (1, ids.len()), &device)?)
        };
        let instruction = embed(instruction)?;
        let response = embed(response)?;
        Ok(E4SRec { items: items.to_device(&device)?, llm, proj, completion: None, ratio_text: None, head, instruction, response, max_items })
    }

    /// Items in the catalog.
    pub fn n_items(&self) -> usize {
        self.items.dims()[0]
    }
    /// The frozen item table it reads (the encoder's, `n_items × dim`).
    pub fn item_table(&self) -> &Tensor {
        &self.items
    }
    /// The head's rows: each item's scoring vector (`n_items × hidden`).
    pub fn head(&self) -> &Tensor {
        &self.head
    }
    /// The decoder.
    pub fn llm(&self) -> &Llama {
        &self.llm
    }
    /// Items the prompt holds, at most.
    pub fn max_items(&self) -> usize {
        self.max_items
    }
    /// Tokens of the prompt around the items (instruction, response).
    pub fn prompt_tokens(&self) -> (usize, usize) {
        (self.instruction.dims()[1], self.response.dims()[1])
    }

    /// The instruction's keys and values, for [`E4SRec::user_vectors`]; computed once for an
    /// evaluation, once per step in training (the adapters change them).
    pub fn instruction_cache(&self, mode: Mode) -> Result<KvCache> {
        let p = self.instruction.dims()[1];
        let keys = Tensor::ones((1, p), DType::F32, self.llm.device())?;
        Ok(self.llm.forward(&self.instruction, &keys, None, mode)?.1)
    }

    /// The last hidden state for each history (`B × hidden`): the most recent `max_items` items,
    /// left-padded to the longest in the batch. `ratios[b]`, parallel to `histories[b]` (shorter
    /// or empty: unknown), is read with `completion = "embed"`.
    pub fn user_vectors(&self, histories: &[&[u32]], ratios: &[&[Option<f32>]], prefix: &KvCache, mode: Mode) -> Result<Tensor> {
        let device = self.llm.device().clone();
        let b = histories.len();
        let tail: Vec<&[u32]> = histories.iter().map(|h| &h[h.len().saturating_sub(self.max_items)..]).collect();
        let l = tail.iter().map(|h| h.len()).max().unwrap_or(0).max(1);
        let n = self.n_items() as u32;
        let mut ids = Vec::with_capacity(b * l);
        let mut valid = Vec::with_capacity(b * l);
        for h in &tail {
            if let Some(&bad) = h.iter().find(|&&i| i >= n) {
                return Err(LlmError::Input(format!("item {bad} is outside the catalog of {n} items")));
            }
            for _ in h.len()..l {
                ids.push(0u32);
                valid.push(0f32);
            }
            ids.extend_from_slice(h);
            valid.extend(std::iter::repeat_n(1f32, h.len()));
        }
        let hdim = self.llm.config().hidden_size;
        let x = self.items.index_select(&Tensor::from_vec(ids, b * l, &device)?, 0)?;
        let x = self.proj.forward(&x)?.reshape((b, l, hdim))?;
        let valid = Tensor::from_vec(valid, (b, l), &device)?;
        let x = match &self.completion {
            Some(ce) => {
                // Left-aligned like the items: row b's last ratio sits at position l - 1.
                let mut value = vec![0f32; b * l];
                let mut known = vec![0f32; b * l];
                for (r, h) in histories.iter().enumerate() {
                    let start = h.len().saturating_sub(self.max_items);
                    let n = h.len() - start;
                    for (j, pos) in (start..h.len()).enumerate() {
                        if let Some(c) = ratios.get(r).and_then(|v| v.get(pos)).copied().flatten().filter(|c| c.is_finite()) {
                            value[r * l + l - n + j] = c.clamp(0.0, 1.0);
                            known[r * l + l - n + j] = 1.0;
                        }
                    }
                }
                let c = crate::models::Completion { value: Tensor::from_vec(value, (b, l), &device)?, known: Tensor::from_vec(known, (b, l), &device)? };
                (x + ce.forward(&c)?)?
            }
            None => x,
        };
        // Padding positions carry zeros, not a projected item 0 (masked either way).
        let x = x.broadcast_mul(&valid.unsqueeze(2)?)?;
        let (x, valid, l) = match &self.ratio_text {
            Some(rt) => self.with_ratio_text(rt, &x, histories, ratios)?,
            None => (x, valid, l),
        };
        let (_, r, _) = self.response.dims3()?;
        let x = Tensor::cat(&[&x, &self.response.broadcast_as((b, r, hdim))?.contiguous()?], 1)?;
        let p = prefix.len();
        let keys = Tensor::cat(&[&Tensor::ones((b, p), DType::F32, &device)?, &valid, &Tensor::ones((b, r), DType::F32, &device)?], 1)?;
        let hidden = self.llm.hidden(&x, &keys, Some(prefix), mode)?;
        Ok(hidden.narrow(1, l + r - 1, 1)?.squeeze(1)?)
    }

    /// `completion = "prompt"`: each row's items (`x`, left-padded to `l`) each followed by the
    /// tokens of its ratio, left-padded again to the longest row; the new inputs, mask and length.
    fn with_ratio_text(&self, rt: &RatioText, x: &Tensor, histories: &[&[u32]], ratios: &[&[Option<f32>]]) -> Result<(Tensor, Tensor, usize)> {
        let (b, l, hdim) = x.dims3()?;
        let device = x.device();
        let text_at = b * l;
        let zero = text_at + rt.table.dims()[0];
        let src = Tensor::cat(&[&x.reshape((b * l, hdim))?, &rt.table, &Tensor::zeros((1, hdim), DType::F32, device)?], 0)?;
        let rows: Vec<Vec<u32>> = histories
            .iter()
            .enumerate()
            .map(|(r, h)| {
                let start = h.len().saturating_sub(self.max_items);
                let n = h.len() - start;
                let mut seq = Vec::new();
                for (j, pos) in (start..h.len()).enumerate() {
                    seq.push((r * l + l - n + j) as u32);
                    let c = ratios.get(r).and_then(|v| v.get(pos)).copied().flatten().filter(|c| c.is_finite());
                    let (off, len) = rt.spans[c.map_or(101, |c| (c.clamp(0.0, 1.0) * 100.0).round() as usize)];
                    seq.extend((off..off + len).map(|t| (text_at + t) as u32));
                }
                seq
            })
            .collect();
        let big = rows.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let (mut idx, mut valid) = (Vec::with_capacity(b * big), Vec::with_capacity(b * big));
        for seq in &rows {
            idx.extend(std::iter::repeat_n(zero as u32, big - seq.len()));
            valid.extend(std::iter::repeat_n(0f32, big - seq.len()));
            idx.extend_from_slice(seq);
            valid.extend(std::iter::repeat_n(1f32, seq.len()));
        }
        let x = src.index_select(&Tensor::from_vec(idx, b * big, device)?, 0)?.reshape((b, big, hdim))?;
        Ok((x, Tensor::from_vec(valid, (b, big), device)?, big))
    }

    /// Item scores (`B × n_items`) of user vectors.
    pub fn scores(&self, users: &Tensor) -> Result<Tensor> {
        Ok(users.matmul(&self.head.t()?)?)
    }

    /// The device.
    pub fn device(&self) -> &Device {
        self.llm.device()
    }
}
