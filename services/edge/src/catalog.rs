//! The tool catalog: one JSON Schema per tool (`schemas/tools/`), and the
//! validation of every proposed call against its tool's schema.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::Value;

include!(concat!(env!("OUT_DIR"), "/tools.rs"));

/// Version of the embedded catalog, carried in `ToolRequest.tool_catalog_version`.
pub const CATALOG_VERSION: &str = "v1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Tier {
    Common,
    Rare,
}

/// What kind of JSON value an argument takes.
#[derive(Debug, Clone, PartialEq)]
pub enum ArgKind {
    /// An identifier or date copied from the request (string with a pattern).
    Id,
    Enum(Vec<String>),
    Integer { min: i64, max: i64 },
    Number { min: f64, max: f64 },
}

#[derive(Debug, Clone)]
pub struct Arg {
    pub name: String,
    pub kind: ArgKind,
    pub required: bool,
}

pub struct Tool {
    pub name: String,
    pub description: String,
    /// Arguments in canonical order (the order of `properties`).
    pub args: Vec<Arg>,
    pub frequency: f64,
    pub tier: Tier,
    pub schema: Value,
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for Tool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tool").field("name", &self.name).field("args", &self.args).finish()
    }
}

/// The result of checking one call.
#[derive(Debug, Clone, PartialEq)]
pub struct CallCheck {
    /// The tool the call names, when it names a known one.
    pub tool: Option<String>,
    pub valid: bool,
    /// The first violation, when invalid.
    pub error: Option<String>,
}

impl CallCheck {
    fn invalid(tool: Option<String>, error: impl Into<String>) -> Self {
        Self { tool, valid: false, error: Some(error.into()) }
    }
}

pub struct ToolCatalog {
    tools: Vec<Tool>,
    by_name: BTreeMap<String, usize>,
}

impl ToolCatalog {
    pub fn embedded() -> &'static ToolCatalog {
        static CATALOG: OnceLock<ToolCatalog> = OnceLock::new();
        CATALOG.get_or_init(|| {
            // Compiled in and checked by the catalog tests: a failure is a build defect.
            #[allow(clippy::expect_used)]
            ToolCatalog::from_sources(EMBEDDED_TOOLS).expect("embedded tool catalog is valid")
        })
    }

    pub fn from_sources(sources: &[(&str, &str)]) -> anyhow::Result<Self> {
        let mut tools = Vec::new();
        for (file, text) in sources {
            let schema: Value = serde_json::from_str(text).map_err(|e| anyhow::anyhow!("tool {file}: {e}"))?;
            tools.push(Self::parse_tool(file, schema)?);
        }
        let by_name = tools.iter().enumerate().map(|(i, t)| (t.name.clone(), i)).collect();
        Ok(Self { tools, by_name })
    }

    fn parse_tool(file: &str, schema: Value) -> anyhow::Result<Tool> {
        let name = schema["title"].as_str().ok_or_else(|| anyhow::anyhow!("tool {file}: no title"))?.to_string();
        anyhow::ensure!(name == file, "tool {file}: title {name} differs from the file name");
        let required: Vec<&str> = schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let props = schema["properties"].as_object().ok_or_else(|| anyhow::anyhow!("tool {name}: no properties"))?;
        let mut args = Vec::new();
        for (arg, p) in props {
            let kind = if let Some(values) = p["enum"].as_array() {
                ArgKind::Enum(values.iter().filter_map(Value::as_str).map(str::to_string).collect())
            } else {
                match p["type"].as_str() {
                    Some("string") => ArgKind::Id,
                    Some("integer") => ArgKind::Integer { min: p["minimum"].as_i64().unwrap_or(i64::MIN), max: p["maximum"].as_i64().unwrap_or(i64::MAX) },
                    Some("number") => ArgKind::Number { min: p["minimum"].as_f64().unwrap_or(f64::MIN), max: p["maximum"].as_f64().unwrap_or(f64::MAX) },
                    other => anyhow::bail!("tool {name}: argument {arg} has unsupported type {other:?}"),
                }
            };
            args.push(Arg { name: arg.clone(), kind, required: required.contains(&arg.as_str()) });
        }
        let meta = &schema["x-netgpt"];
        let tier = match meta["tier"].as_str() {
            Some("rare") => Tier::Rare,
            _ => Tier::Common,
        };
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&schema)
            .map_err(|e| anyhow::anyhow!("tool {name}: invalid JSON Schema: {e}"))?;
        Ok(Tool {
            description: schema["description"].as_str().unwrap_or_default().to_string(),
            frequency: meta["frequency"].as_f64().unwrap_or(1.0),
            tier,
            args,
            name,
            schema,
            validator,
        })
    }

    pub fn tools(&self) -> &[Tool] {
        &self.tools
    }

    pub fn get(&self, name: &str) -> Option<&Tool> {
        self.by_name.get(name).map(|&i| &self.tools[i])
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// Checks a call `{"tool": NAME, "arguments": {...}}` against its tool's schema.
    pub fn check_call(&self, call_json: &str) -> CallCheck {
        let call: Value = match serde_json::from_str(call_json) {
            Ok(v) => v,
            Err(e) => return CallCheck::invalid(None, format!("not JSON: {e}")),
        };
        let Some(obj) = call.as_object() else {
            return CallCheck::invalid(None, "the call is not a JSON object");
        };
        let Some(name) = obj.get("tool").and_then(Value::as_str) else {
            return CallCheck::invalid(None, "the call has no \"tool\" string");
        };
        let Some(tool) = self.get(name) else {
            return CallCheck::invalid(None, format!("unknown tool {name:?}"));
        };
        let tool_name = Some(tool.name.clone());
        if let Some(extra) = obj.keys().find(|k| *k != "tool" && *k != "arguments") {
            return CallCheck::invalid(tool_name, format!("unexpected key {extra:?} beside tool and arguments"));
        }
        let Some(arguments) = obj.get("arguments") else {
            return CallCheck::invalid(tool_name, "the call has no \"arguments\" object");
        };
        match tool.validator.validate(arguments) {
            Ok(()) => CallCheck { tool: tool_name, valid: true, error: None },
            Err(e) => {
                let path = e.instance_path().to_string();
                let at = if path.is_empty() { String::new() } else { format!(" at {path}") };
                CallCheck::invalid(tool_name, format!("{e}{at}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_has_at_least_14_typed_tools() {
        let c = ToolCatalog::embedded();
        assert!(c.tools().len() >= 14);
        assert!(c.tools().iter().any(|t| t.args.len() >= 4), "some tools take 3-5 arguments");
        for t in c.tools() {
            assert!(!t.description.is_empty(), "{}", t.name);
            assert!(t.args.iter().any(|a| a.required), "{} has no required argument", t.name);
            assert_eq!(t.schema["additionalProperties"], false, "{}", t.name);
        }
    }

    #[test]
    fn calls_are_validated_with_the_first_violation() {
        let c = ToolCatalog::embedded();
        let ok = c.check_call(r#"{"tool":"get_cell_kpi","arguments":{"cell_id":"A01","kpi":"dl_tput"}}"#);
        assert_eq!(ok, CallCheck { tool: Some("get_cell_kpi".into()), valid: true, error: None });
        for (call, needle) in [
            (r#"{"tool":"get_cell_kpi","arguments":{"cell_id":"A1","kpi":"dl_tput"}}"#, "A1"),
            (r#"{"tool":"get_cell_kpi","arguments":{"cell_id":"A01"}}"#, "kpi"),
            (r#"{"tool":"get_cell_kpi","arguments":{"cell_id":"A01","kpi":"speed"}}"#, "speed"),
            (r#"{"tool":"set_tx_power","arguments":{"cell_id":"A01","power_dbm":99}}"#, "99"),
            (r#"{"tool":"schedule_maintenance","arguments":{"site_id":"S001","date":"2026-13-45","start_hour":2,"duration_hours":3,"kind":"power"}}"#, "date"),
            (r#"{"tool":"list_alarms","arguments":{"site_id":"S001","colour":"red"}}"#, "colour"),
            (r#"{"tool":"fly_drone","arguments":{}}"#, "unknown tool"),
            (r#"{"tool":"list_alarms","arguments":{"site_id":"S001"}"#, "not JSON"),
            (r#"["list_alarms"]"#, "not a JSON object"),
        ] {
            let r = c.check_call(call);
            assert!(!r.valid, "{call} passed");
            let e = r.error.unwrap();
            assert!(e.contains(needle), "{call}: {e}");
        }
    }
}
