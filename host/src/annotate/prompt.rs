//! The annotation prompt and the strict schema of its answer.
//!
//! The system message holds the instructions and the 58 genes with their descriptions (the same
//! for every track, so the local backend computes it once); the user message holds one track:
//! artist, title, tags and a lyrics excerpt. The answer must be one JSON object whose keys are
//! exactly the 58 gene names and whose values are integers 0–5. [`PROMPT_VERSION`] is part of
//! the cache key: change it whenever the wording changes.
use crate::features::mgphot::{genes, N_GENES};

/// Version of the prompt below; part of the cache key and written into every output row.
pub const PROMPT_VERSION: &str = "mgphot-v1";

/// What the model is told about one track.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrackText {
    /// Item index in the prepared dataset.
    pub item: u32,
    /// Track id (`track_id` of items.parquet).
    pub track_id: String,
    /// Artist name.
    pub artist: String,
    /// Track title.
    pub title: String,
    /// Tags, most relevant first.
    pub tags: Vec<String>,
    /// Lyrics, when known.
    pub lyrics: Option<String>,
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: &'static str,
    /// Its text.
    pub content: String,
}

/// The system message: instructions and the gene table.
pub fn system_message() -> String {
    let mut s = String::from(
        "You are an expert musicologist annotating songs with the MGPHot schema. For the song the user describes, \
         rate every gene below from 0 (absent) to 5 (very strong) as an integer.\n\
         Answer with one JSON object whose keys are exactly these 58 gene names, in this order, and whose values are integers from 0 to 5. \
         Write nothing else.\n\nGenes (name: what to rate):\n",
    );
    for g in genes() {
        s.push_str(&format!("{}: {}\n", g.name, g.description));
    }
    s
}

/// The first `max_chars` characters of `text`, cut at a character boundary.
pub fn excerpt(text: &str, max_chars: usize) -> &str {
    match text.char_indices().nth(max_chars) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

/// The user message for one track; lyrics are cut to `lyrics_chars` characters.
pub fn user_message(t: &TrackText, lyrics_chars: usize) -> String {
    let tags = if t.tags.is_empty() { "(none)".to_string() } else { t.tags.join(", ") };
    let lyrics = match t.lyrics.as_deref().map(str::trim).filter(|l| !l.is_empty()) {
        Some(l) => {
            let e = excerpt(l, lyrics_chars);
            if e.len() < l.len() {
                format!("{e} …")
            } else {
                e.to_string()
            }
        }
        None => "(not available)".to_string(),
    };
    format!("Artist: {}\nTitle: {}\nTags: {tags}\nLyrics excerpt:\n{lyrics}", t.artist, t.title)
}

/// The messages of a first request.
pub fn messages(t: &TrackText, lyrics_chars: usize) -> Vec<Message> {
    vec![Message { role: "system", content: system_message() }, Message { role: "user", content: user_message(t, lyrics_chars) }]
}

/// The user message that follows an invalid answer.
pub fn correction(error: &str) -> String {
    format!("That answer was invalid: {error}. Reply again with only the JSON object: all 58 gene names as keys, each with an integer from 0 to 5.")
}

/// Checks an answer against the schema and returns the 58 ratings in gene order. Accepts
/// whitespace and one surrounding Markdown code fence; everything else must be exact: one JSON
/// object, the 58 names and no others, integer values in 0–5.
pub fn parse_ratings(answer: &str) -> Result<[u8; N_GENES], String> {
    let mut s = answer.trim();
    if let Some(rest) = s.strip_prefix("```") {
        let rest = rest.strip_prefix("json").unwrap_or(rest);
        s = rest.strip_suffix("```").ok_or("an unterminated Markdown code fence")?.trim();
    }
    let value: serde_json::Value = serde_json::from_str(s).map_err(|e| format!("not valid JSON ({e})"))?;
    let obj = value.as_object().ok_or_else(|| format!("expected a JSON object, got {}", kind(&value)))?;
    let table = genes();
    let unknown: Vec<&str> = obj.keys().map(String::as_str).filter(|k| !table.iter().any(|g| g.name == *k)).collect();
    if !unknown.is_empty() {
        return Err(format!("unknown keys: {}", list(&unknown)));
    }
    let missing: Vec<&str> = table.iter().map(|g| g.name).filter(|n| !obj.contains_key(*n)).collect();
    if !missing.is_empty() {
        return Err(format!("missing genes: {}", list(&missing)));
    }
    let mut out = [0u8; N_GENES];
    for g in &table {
        let v = &obj[g.name];
        out[g.index] = match v.as_u64() {
            Some(r @ 0..=5) => r as u8,
            Some(r) => return Err(format!("{}: {r} is outside 0–5", g.name)),
            None => return Err(format!("{}: {v} is not an integer from 0 to 5", g.name)),
        };
    }
    Ok(out)
}

fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn list(names: &[&str]) -> String {
    if names.len() <= 5 {
        names.join(", ")
    } else {
        format!("{} and {} more", names[..5].join(", "), names.len() - 5)
    }
}

/// A valid answer for `ratings` (what a well-behaved model returns; used by tests and docs).
pub fn answer_json(ratings: &[u8]) -> String {
    let fields: Vec<String> = genes().iter().map(|g| format!("\"{}\": {}", g.name, ratings[g.index])).collect();
    format!("{{{}}}", fields.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_answer_parses_in_gene_order() {
        let r: Vec<u8> = (0..N_GENES).map(|i| (i % 6) as u8).collect();
        assert_eq!(parse_ratings(&answer_json(&r)).unwrap().to_vec(), r);
        assert_eq!(parse_ratings(&format!("```json\n{}\n```", answer_json(&r))).unwrap().to_vec(), r);
    }

    #[test]
    fn malformed_answers_are_refused_with_the_reason() {
        let ok = answer_json(&[3; N_GENES]);
        assert!(parse_ratings("{\"a\": ").unwrap_err().contains("not valid JSON"));
        assert!(parse_ratings("[1, 2]").unwrap_err().contains("expected a JSON object"));
        assert!(parse_ratings(&ok.replace("\"virtuosity\": 3", "\"virtuosity\": 6")).unwrap_err().contains("virtuosity: 6 is outside"));
        assert!(parse_ratings(&ok.replace("\"energy\": 3", "\"energy\": 2.5")).unwrap_err().contains("energy: 2.5 is not an integer"));
        assert!(parse_ratings(&ok.replace("\"energy\": 3", "\"energy\": \"3\"")).unwrap_err().contains("not an integer"));
        assert!(parse_ratings(&ok.replace("\"energy\": 3", "\"enrgy\": 3")).unwrap_err().contains("unknown keys: enrgy"));
        assert!(parse_ratings(&ok.replace(", \"energy\": 3", "")).unwrap_err().contains("missing genes: energy"));
        assert!(parse_ratings(&format!("Sure! {ok}")).is_err());
    }

    #[test]
    fn lyrics_are_cut_at_a_character_boundary() {
        let t = TrackText { artist: "Björk".into(), title: "Jóga".into(), lyrics: Some("ééééé".into()), ..Default::default() };
        let m = user_message(&t, 3);
        assert!(m.contains("ééé …") && m.contains("Tags: (none)"), "{m}");
    }
}
