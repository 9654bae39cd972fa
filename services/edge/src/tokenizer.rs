//! The domain tokenizer. Copying identifiers out of the request is what a
//! byte-level model learns last, so this tokenizer makes it a choice among a
//! few tokens instead: every literal value in the prompt becomes a typed
//! *slot* token — `<site0>`, `<id1>`, `<num0>`, `<date0>`: its kind (site,
//! cell/group id, number, date) and its rank among the prompt's values of that
//! kind. Numbers are also followed by their digits so the model can read small
//! values. The output vocabulary holds JSON structure, tool names, argument
//! keys and enum values as single tokens; the model copies a value by emitting
//! its slot token ("the first cell id"), which decoding replaces with the
//! literal. Characters remain for values not in the prompt.

use std::collections::HashMap;
use std::sync::OnceLock;

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::catalog::{ArgKind, ToolCatalog};

/// Values of one kind a prompt can hold as slots; more become `<unk>`.
pub const SLOTS_PER_KIND: usize = 4;
pub const PAD: u32 = 0;
pub const BOS: u32 = 1;
pub const SEP: u32 = 2;
pub const EOS: u32 = 3;
pub const UNK: u32 = 4;

const SPECIALS: [&str; 5] = ["<pad>", "<bos>", "<sep>", "<eos>", "<unk>"];
pub const CALL_OPEN: &str = "{\"tool\": ";
pub const ARGS_OPEN: &str = ", \"arguments\": {";
pub const CLOSE: &str = "}";
pub const COMMA: &str = ", ";
const CHARS: &str = "0123456789-.ABCDEFGHIJKLMNOPQRSTUVWXYZ\"";

/// Kind of a literal value found in a prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotKind {
    /// A letter and two digits: a cell (A01) or a subscriber group (G07).
    Id,
    Number,
    Date,
    /// S and three digits: a site.
    Site,
}

const KINDS: [SlotKind; 4] = [SlotKind::Id, SlotKind::Number, SlotKind::Date, SlotKind::Site];

impl SlotKind {
    fn tag(self) -> &'static str {
        match self {
            SlotKind::Id => "id",
            SlotKind::Number => "num",
            SlotKind::Date => "date",
            SlotKind::Site => "site",
        }
    }
}

fn slot_token(kind: SlotKind, rank: usize) -> String {
    format!("<{}{rank}>", kind.tag())
}

/// A literal value of the prompt that the model can copy.
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    pub kind: SlotKind,
    /// Rank among the prompt's values of this kind.
    pub rank: usize,
    pub text: String,
}

impl Slot {
    /// The JSON text the slot stands for in a call.
    pub fn render(&self) -> String {
        match self.kind {
            SlotKind::Number => self.text.clone(),
            SlotKind::Id | SlotKind::Date | SlotKind::Site => format!("\"{}\"", self.text),
        }
    }
}

/// A prompt as the model sees it.
#[derive(Debug, Clone)]
pub struct EncodedPrompt {
    pub ids: Vec<u32>,
    pub slots: Vec<Slot>,
    /// Share of the prompt's words outside the vocabulary (read as `<unk>`):
    /// how unfamiliar the phrasing is to the model, a signal that its answer
    /// may be wrong however confident its tokens are. 0 for a prompt of no words.
    pub unknown_word_share: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tokenizer {
    vocab: Vec<String>,
    #[serde(skip)]
    index: HashMap<String, u32>,
}

fn value_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    // Dates first, then ids (a letter and 2-3 digits), then plain numbers.
    #[allow(clippy::expect_used)]
    RE.get_or_init(|| Regex::new(r"\b(\d{4}-\d{2}-\d{2})\b|\b([A-Za-z]\d{2,3})\b|\b(\d+(?:\.\d+)?)").expect("valid regex"))
}

fn word_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    #[allow(clippy::expect_used)]
    // Words may end in digits ("p1", "sev1"): such a digit is part of the word.
    RE.get_or_init(|| Regex::new(r"[a-z][a-z0-9]*|%").expect("valid regex"))
}

/// The output tokens of the catalog: structure, tool names, keys, enum values.
fn output_tokens(catalog: &ToolCatalog) -> Vec<String> {
    let mut out = vec![CALL_OPEN.to_string(), ARGS_OPEN.to_string(), CLOSE.to_string(), COMMA.to_string()];
    let mut push = |t: String| {
        if !out.contains(&t) {
            out.push(t);
        }
    };
    for tool in catalog.tools() {
        push(format!("\"{}\"", tool.name));
        for a in &tool.args {
            push(format!("\"{}\": ", a.name));
            if let ArgKind::Enum(values) = &a.kind {
                for v in values {
                    push(format!("\"{v}\""));
                }
            }
        }
    }
    out
}

/// A light stemmer: plural `s` dropped, then at most 7 letters, so that
/// "neighbours", "neighbour" and "neighbors" are one token.
fn stem(word: &str) -> String {
    let w = if word.len() > 4 && word.ends_with('s') && !word.ends_with("ss") { &word[..word.len() - 1] } else { word };
    w.chars().take(7).collect()
}

/// The words of a text as the tokenizer sees them (values excluded, stemmed).
pub fn words(text: &str) -> Vec<String> {
    let lowered = value_regex().replace_all(text, " ").to_lowercase();
    word_regex().find_iter(&lowered).map(|m| stem(m.as_str())).collect()
}

impl Tokenizer {
    /// A tokenizer for `catalog` whose prompt vocabulary is `corpus_words`.
    pub fn new(catalog: &ToolCatalog, corpus_words: impl IntoIterator<Item = String>) -> Self {
        let mut vocab: Vec<String> = SPECIALS.iter().map(|s| s.to_string()).collect();
        for kind in KINDS {
            vocab.extend((0..SLOTS_PER_KIND).map(|r| slot_token(kind, r)));
        }
        vocab.extend(output_tokens(catalog));
        vocab.extend(CHARS.chars().map(|c| c.to_string()));
        let mut ws: Vec<String> = corpus_words.into_iter().collect();
        ws.sort();
        ws.dedup();
        for w in ws {
            if !vocab.contains(&w) {
                vocab.push(w);
            }
        }
        let mut t = Self { vocab, index: HashMap::new() };
        t.reindex();
        t
    }

    fn reindex(&mut self) {
        self.index = self.vocab.iter().enumerate().map(|(i, s)| (s.clone(), i as u32)).collect();
    }

    pub fn from_json(text: &str) -> anyhow::Result<Self> {
        let mut t: Self = serde_json::from_str(text)?;
        anyhow::ensure!(t.vocab.len() > EOS as usize && t.vocab[EOS as usize] == "<eos>", "not a netgpt tokenizer");
        t.reindex();
        Ok(t)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    pub fn token(&self, id: u32) -> &str {
        self.vocab.get(id as usize).map_or("<unk>", String::as_str)
    }

    pub fn id(&self, token: &str) -> Option<u32> {
        self.index.get(token).copied()
    }

    fn slot_id(&self, slot: &Slot) -> u32 {
        self.index[&slot_token(slot.kind, slot.rank)]
    }

    pub fn slot_token_id(&self, slot: &Slot) -> Option<u32> {
        self.id(&slot_token(slot.kind, slot.rank))
    }

    /// True for prompt-vocabulary words (not specials, slots, kinds, output tokens or characters).
    pub fn is_word(&self, id: u32) -> bool {
        id as usize >= self.first_word()
    }

    fn first_word(&self) -> usize {
        // Words follow the characters, the last fixed part of the vocabulary.
        self.index.get("\"").map_or(usize::MAX, |&i| i as usize + 1)
    }

    /// The (kind, rank) of a slot token id.
    pub fn slot_of(&self, id: u32) -> Option<(SlotKind, usize)> {
        let first = self.index[&slot_token(KINDS[0], 0)];
        let i = id.checked_sub(first)? as usize;
        (i < KINDS.len() * SLOTS_PER_KIND).then(|| (KINDS[i / SLOTS_PER_KIND], i % SLOTS_PER_KIND))
    }

    /// `<bos>` prompt `<sep>`, with the prompt's values as slots.
    pub fn encode_prompt(&self, prompt: &str) -> EncodedPrompt {
        let mut ids = vec![BOS];
        let mut slots: Vec<Slot> = Vec::new();
        let mut last = 0;
        let (mut words, mut unknown) = (0usize, 0usize);
        let mut words_of = |s: &str, ids: &mut Vec<u32>| {
            for w in word_regex().find_iter(&s.to_lowercase()) {
                let id = self.id(&stem(w.as_str())).unwrap_or(UNK);
                words += 1;
                unknown += usize::from(id == UNK);
                ids.push(id);
            }
        };
        for cap in value_regex().captures_iter(prompt) {
            let Some(m) = cap.get(0) else { continue };
            words_of(&prompt[last..m.start()], &mut ids);
            last = m.end();
            let (kind, text) = if let Some(d) = cap.get(1) {
                (SlotKind::Date, d.as_str().to_string())
            } else if let Some(i) = cap.get(2) {
                let text = i.as_str().to_uppercase();
                (if text.len() == 4 && text.starts_with('S') { SlotKind::Site } else { SlotKind::Id }, text)
            } else {
                (SlotKind::Number, m.as_str().to_string())
            };
            let slot = match slots.iter().find(|s| s.text == text && s.kind == kind) {
                Some(s) => s.clone(),
                None => {
                    let rank = slots.iter().filter(|s| s.kind == kind).count();
                    if rank >= SLOTS_PER_KIND {
                        ids.push(UNK);
                        continue;
                    }
                    let s = Slot { kind, rank, text: text.clone() };
                    slots.push(s.clone());
                    s
                }
            };
            ids.push(self.slot_id(&slot));
            if kind == SlotKind::Number {
                ids.extend(text.chars().filter_map(|c| self.id(&c.to_string())));
            }
        }
        words_of(&prompt[last..], &mut ids);
        ids.push(SEP);
        EncodedPrompt { ids, slots, unknown_word_share: unknown as f64 / words.max(1) as f64 }
    }

    /// The output tokens of a reference call (ending in `<eos>`), copying
    /// values through the prompt's slots where they appear there.
    pub fn encode_call(&self, call: &Value, slots: &[Slot]) -> Option<Vec<u32>> {
        let mut out = vec![self.id(CALL_OPEN)?, self.id(&format!("\"{}\"", call["tool"].as_str()?))?, self.id(ARGS_OPEN)?];
        for (i, (k, v)) in call["arguments"].as_object()?.iter().enumerate() {
            if i > 0 {
                out.push(self.id(COMMA)?);
            }
            out.push(self.id(&format!("\"{k}\": "))?);
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return None,
            };
            if let Some(slot) = slots.iter().find(|s| s.text == text) {
                out.push(self.slot_id(slot));
            } else if let (Value::String(_), Some(id)) = (v, self.id(&format!("\"{text}\""))) {
                out.push(id);
            } else {
                let quoted = v.is_string();
                if quoted {
                    out.push(self.id("\"")?);
                }
                for c in text.chars() {
                    out.push(self.id(&c.to_string())?);
                }
                if quoted {
                    out.push(self.id("\"")?);
                }
            }
        }
        out.push(self.id(CLOSE)?);
        out.push(self.id(CLOSE)?);
        out.push(EOS);
        Some(out)
    }

    /// The call text of generated output tokens (up to `<eos>`).
    pub fn decode_call(&self, ids: &[u32], slots: &[Slot]) -> String {
        let mut s = String::new();
        for &id in ids {
            if id == EOS {
                break;
            }
            match self.slot_of(id) {
                Some((kind, rank)) => {
                    let slot = slots.iter().find(|s| s.kind == kind && s.rank == rank);
                    s.push_str(&slot.map_or_else(|| "null".to_string(), Slot::render));
                }
                None => s.push_str(self.token(id)),
            }
        }
        s
    }
}

/// `n` training requests (seeded) and a tokenizer built on their words.
#[cfg(test)]
pub(crate) fn test_tokenizer(n: usize, seed: u64) -> (Tokenizer, Vec<crate::workload::Example>) {
    use rand::SeedableRng;
    let catalog = ToolCatalog::embedded();
    let g = crate::workload::WorkloadGenerator::new(catalog, crate::workload::Split::Train).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let examples: Vec<_> = (0..n).map(|_| g.sample(&mut rng)).collect();
    (Tokenizer::new(catalog, examples.iter().flat_map(|e| words(&e.prompt))), examples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_become_slots_and_calls_round_trip() {
        let (tok, examples) = test_tokenizer(2000, 3);
        for e in &examples {
            let p = tok.encode_prompt(&e.prompt);
            assert!(!p.ids.contains(&UNK), "{}", e.prompt);
            assert_eq!(p.unknown_word_share, 0.0);
            let out = tok.encode_call(&e.call, &p.slots).unwrap();
            let text = tok.decode_call(&out, &p.slots);
            let back: Value = serde_json::from_str(&text).unwrap_or_else(|err| panic!("{text}: {err}"));
            assert!(crate::workload::same_call(&back, &e.call), "{} -> {text}", e.prompt);
        }
        let p = tok.encode_prompt("compare cell b07 with C12 on latency over 24h");
        assert_eq!(p.slots.iter().map(|s| s.text.as_str()).collect::<Vec<_>>(), ["B07", "C12", "24"]);
        let reloaded = Tokenizer::from_json(&tok.to_json()).unwrap();
        assert_eq!(reloaded.encode_prompt("status S004").ids, tok.encode_prompt("status S004").ids);
    }

    #[test]
    fn unknown_words_are_counted_and_values_are_not_words() {
        let (tok, _) = test_tokenizer(2000, 3);
        // Four words, two of them never seen in training; the id is a value, not a word.
        let p = tok.encode_prompt("status of S004 zorblax quuxify");
        assert_eq!(p.ids.iter().filter(|&&i| i == UNK).count(), 2);
        assert!((p.unknown_word_share - 2.0 / 4.0).abs() < 1e-12, "{}", p.unknown_word_share);
        assert_eq!(tok.encode_prompt("S004").unknown_word_share, 0.0);
    }
}
