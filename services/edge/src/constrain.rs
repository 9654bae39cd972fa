//! Schema-constrained decoding: at each step, only the output tokens that keep
//! the call well-formed JSON *and* consistent with the tool's schema are
//! allowed — a known tool, its own argument keys once each, every required key
//! before the call closes, enum values from the argument's enum, identifiers
//! copied from prompt slots of the right kind. Behind `edge.constrained_decoding`.

use crate::catalog::{ArgKind, Tool, ToolCatalog};
use crate::tokenizer::{ARGS_OPEN, CALL_OPEN, CLOSE, COMMA, EOS, Slot, SlotKind, Tokenizer};

#[derive(Debug, Clone)]
enum State {
    Start,
    Tool,
    ArgsOpen(usize),
    /// Inside the arguments: which are set, whether a value was just written.
    Args { tool: usize, used: Vec<bool>, after_value: bool },
    Value { tool: usize, used: Vec<bool>, arg: usize },
    /// Spelling the number of argument `arg` digit by digit; `value` so far.
    Digits { tool: usize, used: Vec<bool>, arg: usize, value: i64 },
    CallClose,
    End,
}

pub struct CallGrammar<'a> {
    tok: &'a Tokenizer,
    catalog: &'a ToolCatalog,
    slots: &'a [Slot],
    state: State,
}

impl<'a> CallGrammar<'a> {
    pub fn new(tok: &'a Tokenizer, catalog: &'a ToolCatalog, slots: &'a [Slot]) -> Self {
        Self { tok, catalog, slots, state: State::Start }
    }

    fn tool(&self, i: usize) -> &'a Tool {
        &self.catalog.tools()[i]
    }

    fn ids(&self, tokens: impl IntoIterator<Item = String>) -> Vec<u32> {
        tokens.into_iter().filter_map(|t| self.tok.id(&t)).collect()
    }

    /// Digits that keep a number being spelled (`value` so far) within `max`.
    fn digits(&self, value: Option<i64>, max: f64) -> Vec<u32> {
        (0..=9i64)
            .filter(|d| (value.unwrap_or(0) * 10 + d) as f64 <= max && value != Some(0))
            .filter_map(|d| self.tok.id(&d.to_string()))
            .collect()
    }

    /// The slot kind an argument copies from.
    fn slot_kind(name: &str, kind: &ArgKind) -> Option<SlotKind> {
        match kind {
            ArgKind::Enum(_) => None,
            ArgKind::Integer { .. } | ArgKind::Number { .. } => Some(SlotKind::Number),
            _ if name.contains("site") => Some(SlotKind::Site),
            _ if name.contains("date") => Some(SlotKind::Date),
            _ => Some(SlotKind::Id),
        }
    }

    /// Slot tokens of the prompt that fit an argument: right kind, and for
    /// numbers inside the argument's range.
    fn slot_tokens(&self, name: &str, kind: &ArgKind) -> Vec<u32> {
        let Some(wanted) = Self::slot_kind(name, kind) else { return Vec::new() };
        let (lo, hi) = range(kind);
        self.slots
            .iter()
            .filter(|s| s.kind == wanted)
            .filter(|s| wanted != SlotKind::Number || s.text.parse::<f64>().is_ok_and(|v| v >= lo && v <= hi))
            .filter_map(|s| self.tok.slot_token_id(s))
            .collect()
    }

    /// Tools whose required identifiers the prompt can supply (all tools if none can).
    fn feasible_tools(&self) -> Vec<u32> {
        let count = |k: SlotKind| self.slots.iter().filter(|s| s.kind == k).count();
        let feasible: Vec<&Tool> = self
            .catalog
            .tools()
            .iter()
            .filter(|t| {
                [SlotKind::Site, SlotKind::Date, SlotKind::Id].iter().all(|&k| {
                    let need = t.args.iter().filter(|a| a.required && Self::slot_kind(&a.name, &a.kind) == Some(k)).count();
                    need <= count(k)
                })
            })
            .collect();
        let tools = if feasible.is_empty() { self.catalog.tools().iter().collect() } else { feasible };
        self.ids(tools.iter().map(|t| format!("\"{}\"", t.name)))
    }

    /// The tokens allowed next; `None` means "no constraint".
    pub fn allowed(&self) -> Option<Vec<u32>> {
        Some(match &self.state {
            State::Start => self.ids([CALL_OPEN.to_string()]),
            State::Tool => self.feasible_tools(),
            State::ArgsOpen(_) => self.ids([ARGS_OPEN.to_string()]),
            State::Args { tool, used, after_value } => {
                let t = self.tool(*tool);
                let required_done = t.args.iter().zip(used).all(|(a, u)| !a.required || *u);
                let mut ids = Vec::new();
                if required_done {
                    ids.extend(self.ids([CLOSE.to_string()]));
                }
                let free: Vec<String> = t.args.iter().zip(used).filter(|(_, u)| !**u).map(|(a, _)| format!("\"{}\": ", a.name)).collect();
                if *after_value {
                    if !free.is_empty() {
                        ids.extend(self.ids([COMMA.to_string()]));
                    }
                } else {
                    ids.extend(self.ids(free));
                }
                ids
            }
            State::Value { tool, arg, .. } => {
                let a = &self.tool(*tool).args[*arg];
                match &a.kind {
                    ArgKind::Enum(values) => self.ids(values.iter().map(|v| format!("\"{v}\""))),
                    kind => {
                        let mut ids = self.slot_tokens(&a.name, kind);
                        if matches!(kind, ArgKind::Integer { .. } | ArgKind::Number { .. }) {
                            let (lo, hi) = range(kind);
                            let zero = self.tok.id("0");
                            // A leading 0 can only be the whole number: not when the minimum is above it.
                            ids.extend(self.digits(None, hi).into_iter().filter(|&d| lo <= 0.0 || Some(d) != zero));
                        }
                        if ids.is_empty() {
                            return None; // nothing in the prompt fits: let the model spell it
                        }
                        ids
                    }
                }
            }
            State::Digits { tool, used, arg, value } => {
                let t = self.tool(*tool);
                let (lo, hi) = range(&t.args[*arg].kind);
                let mut ids = self.digits(Some(*value), hi);
                if (*value as f64) >= lo {
                    if t.args.iter().zip(used).any(|(_, u)| !*u) {
                        ids.extend(self.ids([COMMA.to_string()]));
                    }
                    if t.args.iter().zip(used).all(|(a, u)| !a.required || *u) {
                        ids.extend(self.ids([CLOSE.to_string()]));
                    }
                }
                ids
            }
            State::CallClose => self.ids([CLOSE.to_string()]),
            State::End => vec![EOS],
        })
    }

    /// Advances over an emitted token.
    pub fn advance(&mut self, id: u32) {
        let token = self.tok.token(id).to_string();
        let is_digit = token.len() == 1 && token.chars().all(|c| c.is_ascii_digit());
        self.state = match std::mem::replace(&mut self.state, State::End) {
            State::Start => State::Tool,
            State::Tool => match self.catalog.tools().iter().position(|t| format!("\"{}\"", t.name) == token) {
                Some(i) => State::ArgsOpen(i),
                None => State::End,
            },
            State::ArgsOpen(tool) => State::Args { tool, used: vec![false; self.tool(tool).args.len()], after_value: false },
            State::Args { tool, used, after_value } => {
                if token == CLOSE {
                    State::CallClose
                } else if token == COMMA {
                    State::Args { tool, used, after_value: false }
                } else {
                    match self.tool(tool).args.iter().position(|a| format!("\"{}\": ", a.name) == token) {
                        Some(arg) => State::Value { tool, used, arg },
                        None => State::Args { tool, used, after_value },
                    }
                }
            }
            State::Value { tool, mut used, arg } => {
                used[arg] = true;
                match token.parse::<i64>() {
                    Ok(d) if is_digit => State::Digits { tool, used, arg, value: d },
                    _ => State::Args { tool, used, after_value: true },
                }
            }
            State::Digits { tool, used, arg, value } => {
                if let (true, Ok(d)) = (is_digit, token.parse::<i64>()) {
                    State::Digits { tool, used, arg, value: value.saturating_mul(10).saturating_add(d) }
                } else if token == CLOSE {
                    State::CallClose
                } else {
                    State::Args { tool, used, after_value: false }
                }
            }
            State::CallClose => State::End,
            State::End => State::End,
        };
    }
}

/// The numeric range of an argument (unbounded for non-numbers).
fn range(kind: &ArgKind) -> (f64, f64) {
    match kind {
        ArgKind::Integer { min, max } => (*min as f64, *max as f64),
        ArgKind::Number { min, max } => (*min, *max),
        _ => (f64::MIN, f64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use crate::agent::EdgeAgent;
    use crate::model::{EdgeModel, ModelConfig};
    use crate::tokenizer::test_tokenizer;

    /// Even an untrained model writes schema-valid calls when constrained:
    /// the grammar, not the weights, guarantees the structure.
    #[test]
    fn constraints_make_an_untrained_model_write_valid_calls() {
        let (tok, examples) = test_tokenizer(60, 4);
        let cfg = ModelConfig { vocab_size: tok.vocab_size(), d_model: 32, n_heads: 2, n_layers: 1, d_ff: 64, max_len: 96 };
        let (model, varmap) = EdgeModel::init_seeded(cfg, &Device::Cpu, 5).unwrap();
        let mut agent = EdgeAgent::new(model, varmap, tok, "untrained");
        let valid_rate = |agent: &EdgeAgent| {
            examples.iter().filter(|e| agent.propose(&e.prompt).unwrap().check.valid).count() as f64 / examples.len() as f64
        };
        let free = valid_rate(&agent);
        agent.constrained = true;
        let constrained = valid_rate(&agent);
        assert!(free < 0.1, "an untrained model should rarely be valid unconstrained ({free:.2})");
        assert!(constrained > 0.6, "constrained decoding gave only {constrained:.2} valid calls");
    }
}
