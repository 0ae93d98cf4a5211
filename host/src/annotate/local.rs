//! The local backend: a llama-architecture GGUF model run by the host with candle, on the same
//! decoder E4SRec trains ([`crate::llm::llama`], through a [`Session`] that keeps the key/value
//! cache), with the tokenizer from the same file
//! ([`crate::llm::gguf_tokenizer`]) and the ChatML template of SmolLM2 and Qwen
//! (`<|im_start|>role\n…<|im_end|>\n`).
//!
//! Two decoding modes:
//! - `constrained` (the default): the host writes the JSON itself, `{"gene": ` … `, "gene": `,
//!   and the model only chooses each rating, as the most likely (or, with a temperature, a seeded
//!   draw) of the six tokens `0`…`5`. The answer always meets the schema, which a 135M model
//!   rarely manages on its own; what is measured is the model's ratings, not its JSON.
//! - `free`: the model writes the whole answer (greedy, or seeded sampling), up to `max_tokens`,
//!   and it goes through the same strict schema and retries as an HTTP answer. A retry feeds the
//!   reason back and draws with the next seed.
//!
//! The system message (instructions and gene table) is the same for every track, so its key/value
//! cache is computed once and reused.
use super::prompt::{self, Message, TrackText};
use super::{Backend, Failure, Outcome};
use crate::features::mgphot::{genes, N_GENES};
use crate::llm::gguf_tokenizer::GgufTokenizer;
use crate::llm::llama::{KvCache, Session};
use anyhow::Context;
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::sync::Mutex;

/// How the answer is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Decode {
    /// The host writes the JSON; the model picks each digit.
    Constrained,
    /// The model writes everything; the schema check decides.
    Free,
}

/// Settings of the local backend.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// Decoding mode.
    pub decode: Decode,
    /// 0 for greedy; otherwise softmax sampling at this temperature.
    pub temperature: f64,
    /// Seed of the sampling.
    pub seed: u64,
    /// Answers per track (free mode).
    pub max_attempts: u32,
    /// Longest answer in tokens (free mode).
    pub max_tokens: usize,
    /// Lyrics excerpt length, in characters.
    pub lyrics_chars: usize,
    /// Expand the quantized weights to f32, multiplied by candle's gemm, which picks AVX/FMA
    /// kernels at run time; candle's quantized CPU kernels use SIMD only when the build itself
    /// targets AVX (e.g. `-C target-cpu=native`), and are otherwise many times slower. It costs 4
    /// bytes per weight (540 MB for SmolLM2-135M).
    pub dequantize: bool,
}

struct State {
    model: Session,
    /// The cache after the system message, and its length in tokens.
    prefix: Option<(KvCache, usize)>,
}

/// The backend. One model, used by one track at a time (candle parallelises each product).
pub struct Local {
    cfg: LocalConfig,
    name: String,
    tok: GgufTokenizer,
    digits: [u32; 6],
    end: Vec<u32>,
    /// The system turn's tokens.
    system_ids: Vec<u32>,
    state: Mutex<State>,
}

/// Softmax over a slice (for sampling), numerically stable.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = logits.iter().map(|&l| (l - m).exp()).collect();
    let s: f32 = e.iter().sum();
    e.into_iter().map(|x| x / s).collect()
}

/// The ChatML text of `messages`, opening an assistant turn.
pub fn chatml(messages: &[Message]) -> String {
    let mut s = String::new();
    for m in messages {
        s.push_str(&format!("<|im_start|>{}\n{}<|im_end|>\n", m.role, m.content));
    }
    s.push_str("<|im_start|>assistant\n");
    s
}

impl Local {
    /// Loads the GGUF model at `path`.
    pub fn load(path: &Path, cfg: LocalConfig) -> anyhow::Result<Self> {
        let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let ct = candle_core::quantized::gguf_file::Content::read(&mut f).with_context(|| format!("{}: not a GGUF file", path.display()))?;
        let tok = GgufTokenizer::from_gguf(&ct).with_context(|| format!("{}", path.display()))?;
        let model = Session::new(
            crate::llm::load_gguf(path, &candle_core::Device::Cpu, !cfg.dequantize).with_context(|| format!("loading the model in {}", path.display()))?,
        );
        if model.vocab_size() < tok.len() {
            anyhow::bail!("{}: the tokenizer has {} tokens but the embedding only {} rows", path.display(), tok.len(), model.vocab_size());
        }
        let mut digits = [0u32; 6];
        for (d, slot) in digits.iter_mut().enumerate() {
            *slot = tok.token_id(&d.to_string()).with_context(|| format!("{}: the vocabulary has no token {d:?}", path.display()))?;
        }
        let end = ["<|im_end|>", "<|endoftext|>"].iter().filter_map(|t| tok.token_id(t)).chain(tok.eos).collect();
        let hash = crate::annotate::file_sha256(path)?;
        let file = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mode = match cfg.decode {
            Decode::Constrained => "constrained",
            Decode::Free => "free",
        };
        let name = format!("gguf:{file}@{}/{mode}/t{}", &hash[..12], cfg.temperature);
        let system = format!("<|im_start|>system\n{}<|im_end|>\n", prompt::system_message());
        let system_ids = tok.encode(&system).with_context(|| format!("{}: tokenizing the system prompt", path.display()))?;
        Ok(Self { cfg, name, tok, digits, end, system_ids, state: Mutex::new(State { model, prefix: None }) })
    }

    fn pick(&self, logits: &[f32], allowed: Option<&[u32]>, rng: &mut rand::rngs::StdRng) -> u32 {
        let cands: Vec<(u32, f32)> = match allowed {
            Some(a) => a.iter().map(|&t| (t, logits[t as usize])).collect(),
            None => logits.iter().enumerate().map(|(i, &l)| (i as u32, l)).collect(),
        };
        if self.cfg.temperature <= 0.0 {
            // Greedy; ties go to the lower id, so a run is reproducible.
            return cands.iter().fold((u32::MAX, f32::NEG_INFINITY), |b, &(t, l)| if l > b.1 { (t, l) } else { b }).0;
        }
        let p = softmax(&cands.iter().map(|&(_, l)| l / self.cfg.temperature as f32).collect::<Vec<_>>());
        let mut u: f32 = rng.random();
        for (i, &pi) in p.iter().enumerate() {
            if u < pi {
                return cands[i].0;
            }
            u -= pi;
        }
        cands[cands.len() - 1].0
    }

    /// Sets the model's cache to the system prompt's, computing it the first time.
    fn start(&self, st: &mut State, system_ids: &[u32]) -> crate::llm::Result<()> {
        match &st.prefix {
            Some((c, n)) if *n == system_ids.len() => st.model.restore(c.clone()),
            _ => {
                st.model.clear();
                st.model.forward(system_ids)?;
                st.prefix = Some((st.model.cache(), system_ids.len()));
            }
        }
        Ok(())
    }

    fn constrained(&self, st: &mut State, system_ids: &[u32], rest: &str, rng: &mut rand::rngs::StdRng) -> anyhow::Result<[u8; N_GENES]> {
        self.start(st, system_ids)?;
        let mut ratings = [0u8; N_GENES];
        let mut pending = format!("{rest}{{");
        let mut carry: Option<u32> = None;
        for g in genes() {
            if g.index > 0 {
                pending.push_str(", ");
            }
            pending.push_str(&format!("\"{}\": ", g.name));
            // The previous digit goes in with the next key: one forward pass per gene.
            let mut ids: Vec<u32> = carry.take().into_iter().collect();
            ids.extend(self.tok.encode(&pending)?);
            let logits = st.model.forward(&ids)?;
            let t = self.pick(&logits, Some(&self.digits), rng);
            ratings[g.index] = self.digits.iter().position(|&d| d == t).unwrap_or(0) as u8;
            carry = Some(t);
            pending.clear();
        }
        Ok(ratings)
    }

    fn free(&self, st: &mut State, system_ids: &[u32], rest: &str, rng: &mut rand::rngs::StdRng) -> anyhow::Result<String> {
        self.start(st, system_ids)?;
        let mut logits = st.model.forward(&self.tok.encode(rest)?)?;
        let mut out = Vec::new();
        for _ in 0..self.cfg.max_tokens {
            let t = self.pick(&logits, None, rng);
            if self.end.contains(&t) {
                break;
            }
            out.push(t);
            logits = st.model.forward(&[t])?;
        }
        Ok(self.tok.decode(&out)?)
    }
}

impl Local {
    /// A free-text reply to `messages` (ChatML, no system turn added), up to `max_tokens`
    /// tokens, decoded as the configuration says (greedy at temperature 0).
    pub fn reply(&self, messages: &[Message], max_tokens: usize) -> anyhow::Result<String> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.model.clear();
        st.prefix = None;
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.cfg.seed);
        let mut logits = st.model.forward(&self.tok.encode(&chatml(messages))?)?;
        let mut out = Vec::new();
        for _ in 0..max_tokens {
            let t = self.pick(&logits, None, &mut rng);
            if self.end.contains(&t) {
                break;
            }
            out.push(t);
            logits = st.model.forward(&[t])?;
        }
        Ok(self.tok.decode(&out)?)
    }
}

impl Backend for Local {
    fn model(&self) -> String {
        self.name.clone()
    }

    fn annotate(&self, track: &TrackText) -> Outcome {
        let mut st = match self.state.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        let system_ids = &self.system_ids;
        let mut turns = vec![Message { role: "user", content: prompt::user_message(track, self.cfg.lyrics_chars) }];
        let attempts = match self.cfg.decode {
            Decode::Constrained => 1,
            Decode::Free => self.cfg.max_attempts.max(1),
        };
        let mut last = String::new();
        for attempt in 1..=attempts {
            let seed = self.cfg.seed.wrapping_add((track.item as u64) << 8).wrapping_add(attempt as u64);
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let rest = chatml(&turns);
            let result = match self.cfg.decode {
                Decode::Constrained => self.constrained(&mut st, system_ids, &rest, &mut rng).map(Ok),
                Decode::Free => self.free(&mut st, system_ids, &rest, &mut rng).map(|a| prompt::parse_ratings(&a).map_err(|e| (a, e))),
            };
            match result {
                Err(e) => return Outcome { result: Err(Failure::Fatal(format!("{}: {e:#}", self.name))), attempts: attempt },
                Ok(Ok(r)) => return Outcome { result: Ok(r), attempts: attempt },
                Ok(Err((answer, e))) => {
                    turns.push(Message { role: "assistant", content: answer });
                    turns.push(Message { role: "user", content: prompt::correction(&e) });
                    last = e;
                }
            }
        }
        Outcome { result: Err(Failure::Schema(last)), attempts }
    }
}
