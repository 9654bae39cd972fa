//! Topic names and their declared settings (`infra/topics.toml`).

use serde::Deserialize;

pub const TOOL_REQUESTS: &str = "netgpt.tool-requests";
pub const SITE_TELEMETRY: &str = "netgpt.site-telemetry";
pub const EDGE_PROPOSALS: &str = "netgpt.edge-proposals";
pub const ROUTING_DECISIONS: &str = "netgpt.routing-decisions";
pub const CLOUD_REQUESTS: &str = "netgpt.cloud-requests";
pub const AGENT_RESPONSES: &str = "netgpt.agent-responses";
pub const POLICY_UPDATES: &str = "netgpt.policy-updates";
pub const MODEL_UPDATES: &str = "netgpt.model-updates";
pub const DEAD_LETTER: &str = "netgpt.dead-letter";

/// The topic declarations, compiled in.
pub const TOPICS_TOML: &str = include_str!("../../../infra/topics.toml");

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct TopicSpec {
    pub name: String,
    /// Full name of the record type carried on the topic.
    pub record: String,
    pub partitions: i32,
    /// -1 keeps records forever.
    pub retention_ms: i64,
    /// `delete` or `compact`.
    pub cleanup_policy: String,
}

#[derive(Deserialize)]
struct TopicsFile {
    topic: Vec<TopicSpec>,
}

pub fn declared() -> anyhow::Result<Vec<TopicSpec>> {
    let f: TopicsFile = toml::from_str(TOPICS_TOML).map_err(|e| anyhow::anyhow!("infra/topics.toml: {e}"))?;
    Ok(f.topic)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::avro::SchemaRegistry;

    #[test]
    fn every_topic_constant_is_declared_once_with_a_known_record() {
        let specs = declared().unwrap();
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        let consts = [TOOL_REQUESTS, SITE_TELEMETRY, EDGE_PROPOSALS, ROUTING_DECISIONS, CLOUD_REQUESTS, AGENT_RESPONSES, POLICY_UPDATES, MODEL_UPDATES, DEAD_LETTER];
        let mut sorted_names = names.clone();
        sorted_names.sort();
        let mut sorted_consts = consts.to_vec();
        sorted_consts.sort();
        assert_eq!(sorted_names, sorted_consts);
        for s in &specs {
            assert!(SchemaRegistry::embedded().latest(&s.record).is_some(), "{} carries unknown record {}", s.name, s.record);
            assert!(s.partitions >= 1);
            assert!(matches!(s.cleanup_policy.as_str(), "delete" | "compact"));
        }
        for update in [POLICY_UPDATES, MODEL_UPDATES] {
            assert_eq!(specs.iter().find(|s| s.name == update).unwrap().cleanup_policy, "compact");
        }
    }
}
