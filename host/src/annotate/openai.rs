//! The OpenAI-compatible HTTP backend: `POST {base_url}/chat/completions` (OpenAI, vLLM,
//! llama.cpp's server, …) through `ureq`, a small blocking client. Plain `http://` is built in;
//! `https://` needs the `https` cargo feature (ureq with rustls), kept off by default to keep the
//! build light.
//!
//! Transport failures (a timeout, a refused connection, HTTP 408, 429 or 5xx) are retried with
//! exponential backoff and full jitter, honouring `Retry-After`; other HTTP errors (a wrong model
//! name, a bad key) stop the run. An answer that breaks the schema is sent back to the model
//! with the reason, up to `max_attempts` answers in all.
use super::prompt::{self, Message, TrackText};
use super::{Backend, Failure, Outcome};
use rand::{Rng, SeedableRng};
use std::time::Duration;

/// Settings of the HTTP backend.
#[derive(Debug, Clone)]
pub struct OpenAiConfig {
    /// Base URL up to `/v1`, e.g. `http://127.0.0.1:8000/v1`.
    pub base_url: String,
    /// The `model` field of each request.
    pub model: String,
    /// Bearer token, if any (read from an environment variable by the CLI).
    pub api_key: Option<String>,
    /// Timeout of one request, whole (connect, send, wait, read).
    pub timeout: Duration,
    /// Answers asked per track before it is recorded as failed.
    pub max_attempts: u32,
    /// Retries of one request after transport failures.
    pub max_retries: u32,
    /// First backoff delay; doubled per retry, with jitter.
    pub backoff: Duration,
    /// Longest backoff delay.
    pub max_backoff: Duration,
    /// Sampling temperature.
    pub temperature: f64,
    /// Seed sent with each request (plus the attempt number).
    pub seed: u64,
    /// Ask for `response_format: {"type": "json_object"}`.
    pub json_mode: bool,
    /// Longest answer, in tokens.
    pub max_tokens: u32,
    /// Lyrics excerpt length, in characters.
    pub lyrics_chars: usize,
}

/// The backend.
pub struct OpenAi {
    cfg: OpenAiConfig,
    agent: ureq::Agent,
}

enum Sent {
    Answer(String),
    Retryable(String, Option<Duration>),
    Fatal(String),
}

impl OpenAi {
    /// A backend for `cfg`.
    pub fn new(cfg: OpenAiConfig) -> Self {
        let agent = ureq::Agent::config_builder().timeout_global(Some(cfg.timeout)).http_status_as_error(false).build().into();
        Self { cfg, agent }
    }

    fn url(&self) -> String {
        format!("{}/chat/completions", self.cfg.base_url.trim_end_matches('/'))
    }

    fn send_once(&self, messages: &[Message], seed: u64) -> Sent {
        let mut body = serde_json::json!({
            "model": self.cfg.model,
            "messages": messages,
            "temperature": self.cfg.temperature,
            "seed": seed,
            "max_tokens": self.cfg.max_tokens,
        });
        if self.cfg.json_mode {
            body["response_format"] = serde_json::json!({"type": "json_object"});
        }
        let mut req = self.agent.post(self.url()).header("Content-Type", "application/json");
        if let Some(key) = &self.cfg.api_key {
            req = req.header("Authorization", format!("Bearer {key}"));
        }
        let mut resp = match req.send(body.to_string()) {
            Ok(r) => r,
            Err(ureq::Error::Timeout(t)) => return Sent::Retryable(format!("timed out ({t}) after {:?}", self.cfg.timeout), None),
            Err(ureq::Error::Io(e)) => return Sent::Retryable(format!("connection error: {e}"), None),
            Err(ureq::Error::ConnectionFailed) => return Sent::Retryable("connection failed".into(), None),
            Err(e) => return Sent::Fatal(format!("{}: {e}", self.url())),
        };
        let status = resp.status().as_u16();
        let retry_after =
            resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<f64>().ok()).map(Duration::from_secs_f64);
        let text = match resp.body_mut().with_config().limit(16 << 20).read_to_string() {
            Ok(t) => t,
            Err(ureq::Error::Timeout(t)) => return Sent::Retryable(format!("timed out reading the response ({t})"), None),
            Err(e) => return Sent::Retryable(format!("reading the response: {e}"), None),
        };
        let snippet: String = text.chars().take(300).collect();
        match status {
            200..=299 => {}
            408 | 429 | 500..=599 => return Sent::Retryable(format!("HTTP {status}: {snippet}"), retry_after),
            _ => return Sent::Fatal(format!("{} answered HTTP {status}: {snippet} (check --base-url, --model and the API key)", self.url())),
        }
        let v: serde_json::Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => return Sent::Retryable(format!("the response is not JSON ({e}): {snippet}"), None),
        };
        match v.pointer("/choices/0/message/content").and_then(|c| c.as_str()) {
            Some(c) => Sent::Answer(c.to_string()),
            None => Sent::Retryable(format!("the response has no choices[0].message.content: {snippet}"), None),
        }
    }

    /// One request with transport retries: Ok(answer), or Err(failure).
    fn send(&self, messages: &[Message], seed: u64, rng: &mut rand::rngs::StdRng) -> Result<String, Failure> {
        let mut last = String::new();
        for retry in 0..=self.cfg.max_retries {
            match self.send_once(messages, seed) {
                Sent::Answer(a) => return Ok(a),
                Sent::Fatal(e) => return Err(Failure::Fatal(e)),
                Sent::Retryable(e, after) => {
                    tracing::info!("request failed ({e}); retry {} of {}", retry + 1, self.cfg.max_retries);
                    last = e;
                    if retry < self.cfg.max_retries {
                        std::thread::sleep(backoff(retry, self.cfg.backoff, self.cfg.max_backoff, after, rng));
                    }
                }
            }
        }
        Err(Failure::Transport(format!("gave up after {} tries: {last}", self.cfg.max_retries + 1)))
    }
}

/// The delay before retry `retry` (0-based): `Retry-After` when the server sent one (capped),
/// else a uniform draw in [0.5, 1.5) × base × 2^retry, capped.
pub fn backoff(retry: u32, base: Duration, max: Duration, retry_after: Option<Duration>, rng: &mut impl Rng) -> Duration {
    if let Some(a) = retry_after {
        return a.min(max);
    }
    let exp = base.saturating_mul(1u32 << retry.min(20));
    exp.mul_f64(rng.random_range(0.5..1.5)).min(max)
}

impl Backend for OpenAi {
    fn model(&self) -> String {
        format!("openai:{}", self.cfg.model)
    }

    fn annotate(&self, track: &TrackText) -> Outcome {
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.cfg.seed ^ (track.item as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut messages = prompt::messages(track, self.cfg.lyrics_chars);
        let mut last = String::new();
        for attempt in 1..=self.cfg.max_attempts.max(1) {
            let answer = match self.send(&messages, self.cfg.seed + attempt as u64 - 1, &mut rng) {
                Ok(a) => a,
                Err(f) => return Outcome { result: Err(f), attempts: attempt },
            };
            match prompt::parse_ratings(&answer) {
                Ok(r) => return Outcome { result: Ok(r), attempts: attempt },
                Err(e) => {
                    tracing::info!("track {}: invalid answer ({e})", track.track_id);
                    messages.push(Message { role: "assistant", content: answer });
                    messages.push(Message { role: "user", content: prompt::correction(&e) });
                    last = e;
                }
            }
        }
        Outcome { result: Err(Failure::Schema(last)), attempts: self.cfg.max_attempts.max(1) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_is_capped_and_honours_retry_after() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let (base, max) = (Duration::from_millis(100), Duration::from_secs(2));
        for retry in 0..8 {
            let exp = 100.0 * 2f64.powi(retry as i32);
            let d = backoff(retry, base, max, None, &mut rng).as_secs_f64() * 1000.0;
            assert!(d >= (0.5 * exp).min(2000.0) - 1e-6 && d <= (1.5 * exp).min(2000.0) + 1e-6, "retry {retry}: {d} ms");
        }
        assert_eq!(backoff(0, base, max, Some(Duration::from_secs(1)), &mut rng), Duration::from_secs(1));
        assert_eq!(backoff(0, base, max, Some(Duration::from_secs(90)), &mut rng), max);
    }
}
