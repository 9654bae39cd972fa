//! Comparing tool calls as JSON.

use serde_json::Value;

/// Are two JSON values the same call? Object keys in any order, numbers
/// compared as numbers (5 = 5.0); everything else as JSON (5 ≠ "5"). The edge
/// writes arguments in catalog order, other writers sort keys.
pub fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Object(x), Value::Object(y)) => x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w))),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same_json(v, w)),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_and_number_spelling_do_not_matter_types_do() {
        assert!(same_json(&json!({"tool": "t", "arguments": {"a": 5, "b": "x"}}), &json!({"arguments": {"b": "x", "a": 5.0}, "tool": "t"})));
        assert!(!same_json(&json!({"a": 5}), &json!({"a": "5"})));
        assert!(!same_json(&json!({}), &json!({"n": null})));
        assert!(!same_json(&json!([1, 2]), &json!([2, 1])));
    }
}
