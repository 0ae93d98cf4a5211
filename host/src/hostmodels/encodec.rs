//! EnCodec's encoder as an audio embedder: Défossez et al., "High Fidelity Neural Audio
//! Compression" (TMLR 2023). The SEANet convolutional encoder and its LSTM turn mono PCM into
//! `hidden_size` features per frame (75 frames/s for facebook/encodec_24khz); the embedding is
//! their mean over time. The residual quantizer and the decoder are not loaded.
//!
//! Loads an HF `EncodecModel` folder (`config.json` + `model.safetensors`, weights under
//! `encoder.*` with weight norm as `weight_g`/`weight_v`): facebook/encodec_24khz (speech and
//! general audio, 128 dims) and facebook/encodec_32khz (MusicGen's music codec) have this layout.
//! Stereo checkpoints (encodec_48khz) are refused. candle-transformers' encoder is used; candle has
//! no reflect padding, so `pad_mode = "reflect"` runs as replicate padding, which changes only the
//! first and last few milliseconds of a clip.
use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::VarBuilder;
use candle_transformers::models::encodec::{Config, Encoder, NormType, PadMode};
use serde::Deserialize;
use std::path::Path;

/// The fields of an HF `EncodecConfig` that the encoder uses. Other keys of an HF config
/// (`architectures`, `transformers_version`, the quantizer's) are ignored, not refused: HF writes
/// many, and they vary by version.
#[derive(Debug, Deserialize)]
struct HfConfig {
    model_type: Option<String>,
    sampling_rate: usize,
    audio_channels: usize,
    #[serde(default)]
    normalize: bool,
    hidden_size: usize,
    num_filters: usize,
    num_residual_layers: usize,
    upsampling_ratios: Vec<usize>,
    norm_type: String,
    kernel_size: usize,
    last_kernel_size: usize,
    residual_kernel_size: usize,
    dilation_growth_rate: usize,
    use_causal_conv: bool,
    pad_mode: String,
    compress: usize,
    num_lstm_layers: usize,
    #[serde(default = "yes")]
    use_conv_shortcut: bool,
}

fn yes() -> bool {
    true
}

/// A loaded EnCodec encoder.
pub struct AudioEncoder {
    encoder: Encoder,
    sample_rate: u32,
    hop: usize,
    dim: usize,
    device: Device,
}

impl AudioEncoder {
    /// Loads the folder `dir`. Errors name the file at fault.
    pub fn load(dir: &Path, device: &Device) -> Result<Self, String> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        let hf: HfConfig = serde_json::from_str(&text).map_err(|e| format!("parsing {}: {e}", path.display()))?;
        let bad = |m: String| Err(format!("{}: {m}", path.display()));
        if let Some(t) = hf.model_type.as_deref().filter(|t| *t != "encodec") {
            return bad(format!("model_type {t:?} is not `encodec`"));
        }
        if hf.audio_channels != 1 || hf.normalize {
            return bad("only mono checkpoints without input normalisation (encodec_24khz, encodec_32khz) are supported".into());
        }
        if hf.norm_type != "weight_norm" {
            return bad(format!("norm_type {:?} is not supported (only \"weight_norm\")", hf.norm_type));
        }
        let pad_mode = match hf.pad_mode.as_str() {
            "reflect" | "replicate" => PadMode::Replicate,
            "constant" => PadMode::Constant,
            m => return bad(format!("unknown pad_mode {m:?}")),
        };
        if hf.upsampling_ratios.is_empty() || hf.upsampling_ratios.contains(&0) || hf.compress == 0 {
            return bad("upsampling_ratios and compress must be positive".into());
        }
        let cfg = Config {
            sampling_rate: hf.sampling_rate,
            audio_channels: 1,
            normalize: false,
            hidden_size: hf.hidden_size,
            num_filters: hf.num_filters,
            num_residual_layers: hf.num_residual_layers,
            upsampling_ratios: hf.upsampling_ratios.clone(),
            norm_type: NormType::WeightNorm,
            kernel_size: hf.kernel_size,
            last_kernel_size: hf.last_kernel_size,
            residual_kernel_size: hf.residual_kernel_size,
            dilation_growth_rate: hf.dilation_growth_rate,
            use_causal_conv: hf.use_causal_conv,
            pad_mode,
            compress: hf.compress,
            num_lstm_layers: hf.num_lstm_layers,
            use_conv_shortcut: hf.use_conv_shortcut,
            ..Config::default()
        };
        let weights = dir.join("model.safetensors");
        if !weights.is_file() {
            return Err(format!("{} is missing (an HF EnCodec folder holds config.json and model.safetensors)", weights.display()));
        }
        // SAFETY: read-only memory map; we assume nobody truncates the file while it is loaded.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, device) }.map_err(|e| format!("reading {}: {e}", weights.display()))?;
        let encoder = Encoder::new(&cfg, vb.pp("encoder")).map_err(|e| format!("loading the encoder weights of {}: {e}", weights.display()))?;
        Ok(AudioEncoder {
            encoder,
            sample_rate: hf.sampling_rate as u32,
            hop: hf.upsampling_ratios.iter().product(),
            dim: hf.hidden_size,
            device: device.clone(),
        })
    }

    /// Width of every embedding (`hidden_size`).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The sample rate the model was trained at; PCM must come at this rate.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// The fewest samples a clip may have: one frame.
    pub fn min_samples(&self) -> usize {
        self.hop
    }

    /// The mean over time of the encoder's frames for one clip of mono PCM.
    pub fn embed(&self, pcm: &[f32]) -> Result<Vec<f32>, String> {
        let run = || -> candle_core::Result<Vec<f32>> {
            let x = Tensor::from_slice(pcm, (1, 1, pcm.len()), &self.device)?;
            let frames = self.encoder.forward(&x)?; // 1 × hidden × frames
            frames.mean(D::Minus1)?.squeeze(0)?.to_vec1()
        };
        run().map_err(|e| format!("running the encoder: {e}"))
    }
}
