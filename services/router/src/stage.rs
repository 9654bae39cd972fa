//! The router stage: `EdgeProposal` in; a `RoutingDecision` for every request,
//! plus the final `AgentResponse` for a kept edge answer or a `CloudRequest`
//! for a fallback. Network state comes from a per-site table fed by every
//! partition of the telemetry topic (each router instance sees every site,
//! whichever proposal partitions it owns). Policies hot-reload from
//! `PolicyUpdate` records.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use netgpt_core::AnyRecord;
use netgpt_core::avro::TimestampMillis;
use netgpt_core::config::KafkaConfig;
use netgpt_core::fetch::RemoteFolders;
use netgpt_core::records::{AgentResponse, CloudRequest, DecisionReason, EdgeProposal, Origin, Placement, PolicyUpdate, Record, RoutingDecision, SiteTelemetry};
use netgpt_core::stage::{Incoming, Outgoing, Rejection, Stage};
use netgpt_core::topics::{AGENT_RESPONSES, CLOUD_REQUESTS, EDGE_PROPOSALS, POLICY_UPDATES, ROUTING_DECISIONS, SITE_TELEMETRY};
use rdkafka::Message;
use rdkafka::consumer::Consumer;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::bundle::RouterBundle;
use crate::fit::FuncDynFitting;
use crate::network::{RequestShape, SiteState};
use crate::policy::{DecisionInput, FallbackPolicy, PolicySpec};
use crate::policynet::PolicyNetTraining;
use crate::scorer::{ProposalFeatures, Scorer};
use crate::{NetworkConfig, RouterSettings};

/// Update channel of the active policy.
pub const ACTIVE_CHANNEL: &str = "router";
/// Update channel of the shadow (candidate) policy.
pub const SHADOW_CHANNEL: &str = "router-shadow";

/// `[router]` in netgpt.toml.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouterConfig {
    pub bundle_dir: PathBuf,
    pub policy: String,
    pub shadow_policy: String,
    pub exploration_rate: f64,
    pub exploration_seed: u64,
    pub cloud_success_estimate: f64,
    pub routellm_cloud_fraction: f64,
    pub telemetry_lookback: i64,
    pub dedup_capacity: usize,
    pub funcdyn: FuncDynFitting,
    pub policynet: PolicyNetTraining,
}

/// The newest telemetry of every site.
#[derive(Clone, Default)]
pub struct SiteTable {
    inner: Arc<RwLock<HashMap<String, (SiteState, i64)>>>,
}

/// The state a decision uses, and whether it is a stand-in.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteLookup {
    pub state: SiteState,
    pub age_ms: Option<i64>,
    pub conservative: bool,
    pub why: Option<String>,
}

impl SiteTable {
    /// Keeps a reading unless a newer one of the site is already there.
    pub fn update(&self, t: &SiteTelemetry) {
        let mut m = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let newer = m.get(&t.site_id).is_none_or(|(_, at)| t.observed_at.0 >= *at);
        if newer {
            m.insert(t.site_id.clone(), (SiteState::from_telemetry(t), t.observed_at.0));
        }
    }

    pub fn len(&self) -> usize {
        self.inner.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The site's state as of `at_ms`; stale or missing telemetry gives the
    /// configured conservative state, with the reason.
    pub fn lookup(&self, site: &str, at_ms: i64, net: &NetworkConfig) -> SiteLookup {
        let m = self.inner.read().unwrap_or_else(|p| p.into_inner());
        match m.get(site) {
            Some((state, observed)) => {
                // Telemetry newer than the proposal (a replay) counts as fresh.
                let age = at_ms.saturating_sub(*observed).max(0);
                if age <= net.stale_after_ms {
                    SiteLookup { state: state.clone(), age_ms: Some(age), conservative: false, why: None }
                } else {
                    SiteLookup { state: net.unknown_site.clone(), age_ms: Some(age), conservative: true, why: Some(format!("telemetry of {site} is {age} ms old (stale after {} ms)", net.stale_after_ms)) }
                }
            }
            None => SiteLookup { state: net.unknown_site.clone(), age_ms: None, conservative: true, why: Some(format!("no telemetry from {site}")) },
        }
    }
}

/// A policy ready to decide, with the scorer it was fitted with.
pub struct LoadedPolicy {
    pub name: &'static str,
    pub version: String,
    /// When its update was published (0 for a policy from the bundle).
    pub published_at: i64,
    pub model_version: String,
    pub policy: Box<dyn FallbackPolicy>,
    pub scorer: Arc<Scorer>,
}

impl LoadedPolicy {
    pub fn from_bundle(bundle: &RouterBundle, name: &str) -> anyhow::Result<Self> {
        let spec = bundle.policy(name)?;
        Ok(Self {
            name: spec.name(),
            version: format!("{}/{}", bundle.version, spec.name()),
            published_at: 0,
            model_version: bundle.model_version.clone(),
            policy: spec.build()?,
            scorer: Arc::new(bundle.scorer.clone()),
        })
    }

    /// Builds the policy an update names; the scorer comes from `scorer_uri`
    /// when given, else the current one is kept.
    pub fn from_update(u: &PolicyUpdate, current_scorer: &Arc<Scorer>) -> anyhow::Result<Self> {
        let spec: PolicySpec = serde_json::from_str(&u.params_json).map_err(|e| anyhow::anyhow!("params_json of policy {}: {e}", u.version))?;
        anyhow::ensure!(spec.name() == u.policy_name, "update names policy {} but its parameters are for {}", u.policy_name, spec.name());
        let scorer = match &u.scorer_uri {
            Some(uri) => {
                let s = load_scorer(&netgpt_core::config::local_path(uri)?)?;
                anyhow::ensure!(s.version == u.scorer_version, "scorer at {uri} is {} but the update names {}", s.version, u.scorer_version);
                Arc::new(s)
            }
            None => current_scorer.clone(),
        };
        Ok(Self { name: spec.name(), version: u.version.clone(), published_at: u.published_at.0, model_version: u.model_version.clone(), policy: spec.build()?, scorer })
    }
}

/// A scorer JSON file, or the scorer of a bundle directory.
pub fn load_scorer(path: &Path) -> anyhow::Result<Scorer> {
    if path.is_dir() {
        return Ok(RouterBundle::load(path)?.scorer);
    }
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// A uniform draw in [0, 1) from the request id and a seed (FNV-1a + a
/// final mix): the same request always draws the same value.
pub fn request_draw(id: &uuid::Uuid, seed: u64) -> f64 {
    let mut h = netgpt_core::hash::fnv1a_from(netgpt_core::hash::FNV_OFFSET ^ seed.wrapping_mul(0x9e3779b97f4a7c15), id.as_bytes());
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51afd7ed558ccd);
    h ^= h >> 33;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Active policies of earlier edge models kept for in-flight proposals.
const PREVIOUS_MODELS: usize = 3;

pub struct RouterStage {
    settings: RouterSettings,
    sites: SiteTable,
    active: LoadedPolicy,
    /// Active policies fitted for earlier edge models, newest first: proposals
    /// still in flight from an edge that has not switched yet keep the policy
    /// fitted for their model, so router and edge switch together.
    previous: VecDeque<LoadedPolicy>,
    shadow: Option<LoadedPolicy>,
    /// Recent decisions by request id, so a re-delivered proposal gets the same one.
    decided: HashMap<uuid::Uuid, RoutingDecision>,
    decided_order: VecDeque<uuid::Uuid>,
    /// Where published bundles on an object store are read from.
    remote: RemoteFolders,
}

impl RouterStage {
    pub fn new(settings: RouterSettings, sites: SiteTable, active: LoadedPolicy, shadow: Option<LoadedPolicy>) -> Self {
        Self { settings, sites, active, shadow, previous: VecDeque::new(), decided: HashMap::new(), decided_order: VecDeque::new(), remote: RemoteFolders::new(Default::default()) }
    }

    /// Reads published bundles on an object store with these options (the lake's).
    pub fn with_remote(mut self, remote: RemoteFolders) -> Self {
        self.remote = remote;
        self
    }

    /// The configured policies from the configured bundle.
    pub fn load(settings: RouterSettings, sites: SiteTable) -> anyhow::Result<Self> {
        let bundle = RouterBundle::load(&settings.router.bundle_dir)?;
        let active = LoadedPolicy::from_bundle(&bundle, &settings.router.policy)?;
        let shadow = match settings.router.shadow_policy.as_str() {
            "" => None,
            name => Some(LoadedPolicy::from_bundle(&bundle, name)?),
        };
        Ok(Self::new(settings, sites, active, shadow))
    }

    pub fn active(&self) -> (&str, &str) {
        (self.active.name, &self.active.version)
    }

    pub fn sites(&self) -> &SiteTable {
        &self.sites
    }

    /// Applies the newest updates already on the compacted policy topic (a
    /// restarted router's group resumes after them).
    pub async fn catch_up(&mut self, kafka: &KafkaConfig) -> anyhow::Result<()> {
        let updates: Vec<PolicyUpdate> = netgpt_core::bus::latest_per_key(kafka, POLICY_UPDATES, Duration::from_secs(10)).await?;
        for u in updates {
            self.receive_update(u).await;
        }
        Ok(())
    }

    /// An update as it arrives: a bundle on an object store is copied to a
    /// local folder first, then the update is applied.
    pub async fn receive_update(&mut self, mut u: PolicyUpdate) {
        if let Some(uri) = u.scorer_uri.clone().filter(|uri| !netgpt_core::fetch::is_local(uri)) {
            // Loaded once here so that a damaged cached copy is fetched again.
            match self.remote.load(&uri, &[crate::bundle::BUNDLE_FILE], |dir| RouterBundle::load(dir).map(|_| dir.to_path_buf())).await {
                Ok(dir) => u.scorer_uri = Some(dir.display().to_string()),
                Err(e) => {
                    tracing::error!(version = %u.version, uri = %uri, error = %e, "policy update's bundle not fetched; keeping the current policy");
                    return;
                }
            }
        }
        self.apply_update(&u);
    }

    /// Switches the active or shadow policy; on any failure the old one stays.
    pub fn apply_update(&mut self, u: &PolicyUpdate) {
        let slot = match u.channel.as_str() {
            ACTIVE_CHANNEL => &mut self.active,
            SHADOW_CHANNEL => match self.shadow.as_mut() {
                Some(s) => s,
                None => {
                    match LoadedPolicy::from_update(u, &self.active.scorer) {
                        Ok(p) => self.shadow = Some(p),
                        Err(e) => tracing::error!(version = %u.version, error = %e, "shadow policy update not applied"),
                    }
                    return;
                }
            },
            other => {
                tracing::debug!(channel = other, "policy update for another channel");
                return;
            }
        };
        // The same version, or one older than what runs (a replay of the topic), changes nothing.
        if slot.version == u.version || u.published_at.0 < slot.published_at {
            return;
        }
        match LoadedPolicy::from_update(u, &slot.scorer) {
            Ok(p) => {
                tracing::info!(channel = %u.channel, from = %slot.version, to = %p.version, policy = p.name, model = %p.model_version, "policy hot-reloaded");
                let old = std::mem::replace(slot, p);
                // A policy for a new edge model: keep the old model's for its proposals still in flight.
                if u.channel == ACTIVE_CHANNEL && old.model_version != self.active.model_version {
                    self.previous.retain(|q| q.model_version != old.model_version && q.model_version != self.active.model_version);
                    self.previous.push_front(old);
                    self.previous.truncate(PREVIOUS_MODELS);
                }
            }
            Err(e) => tracing::error!(channel = %u.channel, version = %u.version, error = %e, "policy update not applied; keeping {}", slot.version),
        }
    }

    /// The active policy fitted for `model_version`, or the newest one with a
    /// note when none was (an update the router has not seen yet).
    fn policy_for(&self, model_version: &str) -> (&LoadedPolicy, Option<String>) {
        if self.active.model_version == model_version {
            return (&self.active, None);
        }
        match self.previous.iter().find(|q| q.model_version == model_version) {
            Some(q) => (q, None),
            None => (&self.active, Some(format!("no policy fitted for edge model {model_version}; used {} (fitted for {})", self.active.version, self.active.model_version))),
        }
    }

    /// The decision for one proposal (pure apart from the site table and the clock).
    pub fn decide(&self, p: &EdgeProposal) -> RoutingDecision {
        let (active, mismatch) = self.policy_for(&p.model_version);
        let site = self.sites.lookup(&p.request.site_id, p.proposed_at.0, &self.settings.network);
        let shape = RequestShape::of(&p.request);
        let cost = self.settings.cost.fallback_cost(&site.state, &shape, p.proposed_at.0);
        let features = ProposalFeatures::of(p);
        let input = |score| DecisionInput { prompt: &p.request.prompt, score, schema_valid: p.schema_valid, state: &site.state, shape: &shape, cost: &cost };
        let score = active.scorer.score(&features);
        let mut verdict = active.policy.decide(&input(score));
        let eps = self.settings.router.exploration_rate.clamp(0.0, 1.0);
        // Exploration only turns would-be edge answers into cloud calls; the bounds stay bounds.
        let explorable = verdict.reason != DecisionReason::FixedPlacement && verdict.placement == Placement::Edge;
        let propensity = if explorable && request_draw(&p.request.request_id, self.settings.router.exploration_seed) < eps {
            verdict.placement = Placement::Cloud;
            verdict.reason = DecisionReason::Exploration;
            eps
        } else if explorable {
            1.0 - eps
        } else {
            1.0
        };
        let shadow = self.shadow.as_ref().map(|s| (s.name, s.policy.decide(&input(s.scorer.score(&features)))));
        let detail = [verdict.detail.clone(), site.why.clone(), mismatch].into_iter().flatten().collect::<Vec<_>>().join("; ");
        RoutingDecision {
            request_id: p.request.request_id,
            site_id: p.request.site_id.clone(),
            placement: verdict.placement,
            score,
            threshold: verdict.threshold,
            reason: verdict.reason,
            reason_detail: (!detail.is_empty()).then_some(detail),
            network: site.state.snapshot(site.age_ms, site.conservative),
            fallback_cost: cost.delta,
            policy_name: active.name.to_string(),
            policy_version: active.version.clone(),
            model_version: p.model_version.clone(),
            scorer_version: active.scorer.version.clone(),
            propensity,
            shadow_policy: shadow.as_ref().map(|(n, _)| n.to_string()),
            shadow_placement: shadow.as_ref().map(|(_, v)| v.placement),
            shadow_threshold: shadow.as_ref().map(|(_, v)| v.threshold),
            decided_at: TimestampMillis::now(),
        }
    }

    /// Decision plus the answer or the cloud request, the same for a re-delivered proposal.
    pub fn route(&mut self, p: EdgeProposal) -> Vec<Outgoing> {
        let id = p.request.request_id;
        let decision = match self.decided.get(&id) {
            Some(d) => d.clone(),
            None => {
                let d = self.decide(&p);
                self.remember(d.clone());
                d
            }
        };
        let mut out = Vec::with_capacity(2);
        match decision.placement {
            Placement::Edge => out.push(Outgoing::new(AGENT_RESPONSES, edge_answer(&p, &decision, TimestampMillis::now()))),
            Placement::Cloud => out.push(Outgoing::new(CLOUD_REQUESTS, CloudRequest { proposal: p, decision: decision.clone() })),
        }
        out.insert(0, Outgoing::new(ROUTING_DECISIONS, decision));
        out
    }

    fn remember(&mut self, d: RoutingDecision) {
        let cap = self.settings.router.dedup_capacity;
        if cap == 0 {
            return;
        }
        while self.decided_order.len() >= cap {
            if let Some(old) = self.decided_order.pop_front() {
                self.decided.remove(&old);
            }
        }
        self.decided_order.push_back(d.request_id);
        self.decided.insert(d.request_id, d);
    }
}

/// The final answer for a kept edge proposal, given at `now` (the wall clock
/// in the router, simulated time offline).
pub fn edge_answer(p: &EdgeProposal, d: &RoutingDecision, now: TimestampMillis) -> AgentResponse {
    AgentResponse {
        request_id: p.request.request_id,
        site_id: p.request.site_id.clone(),
        origin: Origin::Edge,
        tool_call_json: p.call_json.clone(),
        schema_valid: p.schema_valid,
        network_down_fallback: false,
        latency_ms: now.0.saturating_sub(p.request.created_at.0).max(0) as f64,
        tokens_in: 0,
        tokens_out: p.output_tokens,
        cost: 0.0,
        model_version: p.model_version.clone(),
        policy_version: Some(d.policy_version.clone()),
        responded_at: now,
    }
}

impl Stage for RouterStage {
    fn name(&self) -> &str {
        "router"
    }

    fn input_topics(&self) -> Vec<String> {
        vec![EDGE_PROPOSALS.into(), POLICY_UPDATES.into()]
    }

    async fn handle(&mut self, input: Incoming<'_>) -> Result<Vec<Outgoing>, Rejection> {
        match input.record {
            AnyRecord::EdgeProposal(p) => Ok(self.route(p)),
            AnyRecord::PolicyUpdate(u) => {
                self.receive_update(u).await;
                Ok(Vec::new())
            }
            // Telemetry normally arrives through the follower; accept it here too.
            AnyRecord::SiteTelemetry(t) => {
                self.sites.update(&t);
                Ok(Vec::new())
            }
            other => Err(Rejection(format!("the router takes EdgeProposal and PolicyUpdate records, not {}", other.record_name()))),
        }
    }
}

/// Feeds `table` from every partition of the telemetry topic: first the last
/// `lookback` records of each partition, then everything new, until
/// `shutdown`. `ready` is cancelled once the backlog is read. Undecodable
/// telemetry is skipped with a warning here; it is not this reader's to
/// dead-letter (it commits nothing and owns no partition).
pub async fn follow_telemetry(kafka: KafkaConfig, table: SiteTable, lookback: i64, ready: CancellationToken, shutdown: CancellationToken) -> anyhow::Result<u64> {
    let consumer = netgpt_core::bus::reader(&kafka, "netgpt.router.telemetry")?;
    let timeout = Duration::from_secs(10);
    let md = consumer.fetch_metadata(Some(SITE_TELEMETRY), timeout)?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    let mut backlog_end: HashMap<i32, i64> = HashMap::new();
    for p in md.topics().iter().flat_map(|t| t.partitions()) {
        let (low, high) = consumer.fetch_watermarks(SITE_TELEMETRY, p.id(), timeout)?;
        let start = (high - lookback.max(0)).max(low);
        tpl.add_partition_offset(SITE_TELEMETRY, p.id(), rdkafka::Offset::Offset(start))?;
        if high > start {
            backlog_end.insert(p.id(), high);
        }
    }
    consumer.assign(&tpl)?;
    if backlog_end.is_empty() {
        ready.cancel();
    }
    let mut read = 0u64;
    loop {
        let msg = tokio::select! {
            _ = shutdown.cancelled() => break,
            m = consumer.recv() => m,
        };
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "telemetry reader error");
                continue;
            }
        };
        match SiteTelemetry::from_bytes(msg.payload().unwrap_or_default()) {
            Ok(t) => table.update(&t),
            Err(e) => tracing::warn!(partition = msg.partition(), offset = msg.offset(), error = %e, "skipping undecodable telemetry"),
        }
        read += 1;
        if !ready.is_cancelled() {
            if backlog_end.get(&msg.partition()).is_some_and(|end| msg.offset() + 1 >= *end) {
                backlog_end.remove(&msg.partition());
            }
            if backlog_end.is_empty() {
                ready.cancel();
            }
        }
    }
    netgpt_core::bus::close_reader(consumer, Duration::from_millis(kafka.close_timeout_ms)).await;
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netgpt_core::records::{Difficulty, LinkRegime, ToolRequest};

    pub fn proposal(site: &str, valid: bool, mean_logprob: f64) -> EdgeProposal {
        EdgeProposal {
            request: ToolRequest {
                request_id: uuid::Uuid::new_v4(),
                site_id: site.into(),
                tenant: "noc".into(),
                prompt: format!("show the alarms at {site}"),
                tool_catalog_version: "v1".into(),
                upload_bytes: 6100,
                download_bytes: 300,
                expected_output_tokens: 30,
                created_at: TimestampMillis::now(),
                eval_reference_call: None,
                eval_difficulty: Some(Difficulty::Easy),
            },
            model_version: "m1".into(),
            call_json: r#"{"tool":"list_alarms","arguments":{"site_id":"S001"}}"#.into(),
            tool_name: Some("list_alarms".into()),
            schema_valid: valid,
            schema_error: None,
            mean_logprob,
            min_logprob: 3.0 * mean_logprob,
            mean_entropy: -mean_logprob,
            output_tokens: 20,
            unknown_word_share: Some(0.0),
            edge_latency_ms: 10.0,
            proposed_at: TimestampMillis::now(),
        }
    }

    fn telemetry(site: &str, regime: LinkRegime, at: i64) -> SiteTelemetry {
        let s = RouterSettings::defaults().network.regimes.state(regime, "flat");
        SiteTelemetry { site_id: site.into(), uplink_mbps: s.uplink_mbps, downlink_mbps: s.downlink_mbps, rtt_ms: s.rtt_ms, loss_rate: s.loss_rate, price_schedule_id: "flat".into(), link_regime: Some(regime), observed_at: TimestampMillis(at) }
    }

    fn stage(policy: crate::policy::PolicySpec, exploration: f64) -> RouterStage {
        let mut settings = RouterSettings::defaults();
        settings.router.exploration_rate = exploration;
        let scorer = Scorer::fit("s1", &crate::scorer::tests::synthetic(800, 1), &crate::scorer::tests::synthetic(800, 2), crate::scorer::CalibrationMethod::Isotonic);
        let active = LoadedPolicy { name: policy.name(), version: "p1".into(), published_at: 0, model_version: "m1".into(), policy: policy.build().unwrap(), scorer: Arc::new(scorer) };
        RouterStage::new(settings, SiteTable::default(), active, None)
    }

    #[test]
    fn stale_or_missing_telemetry_uses_the_conservative_state_and_says_so() {
        let net = RouterSettings::defaults().network;
        let t = SiteTable::default();
        let now = TimestampMillis::now().0;
        let missing = t.lookup("S001", now, &net);
        assert!(missing.conservative && missing.why.unwrap().contains("no telemetry"));
        t.update(&telemetry("S001", LinkRegime::Good, now - net.stale_after_ms - 1));
        let stale = t.lookup("S001", now, &net);
        assert!(stale.conservative && stale.why.unwrap().contains("old"));
        assert_eq!(stale.state, net.unknown_site);
        t.update(&telemetry("S001", LinkRegime::Good, now - 100));
        t.update(&telemetry("S001", LinkRegime::Bad, now - 5000)); // older: ignored
        let fresh = t.lookup("S001", now, &net);
        assert!(!fresh.conservative);
        assert_eq!(fresh.state.rtt_ms, net.regimes.good.rtt_ms);
    }

    #[test]
    fn decisions_carry_score_threshold_network_and_the_right_outputs() {
        let mut s = stage(crate::policy::PolicySpec::Fixed { tau: 0.5 }, 0.0);
        s.sites.update(&telemetry("S001", LinkRegime::Mid, TimestampMillis::now().0));
        let out = s.route(proposal("S001", true, -0.001));
        assert_eq!(out.len(), 2);
        let AnyRecord::RoutingDecision(d) = &out[0].record else { panic!() };
        assert_eq!((d.placement, d.reason), (Placement::Edge, DecisionReason::ScoreAboveThreshold));
        assert!(d.score >= 0.5 && d.threshold == 0.5 && !d.network.conservative_default && d.fallback_cost > 0.0);
        assert_eq!(out[1].topic, AGENT_RESPONSES);
        let out = s.route(proposal("S001", false, -0.001));
        let AnyRecord::RoutingDecision(d) = &out[0].record else { panic!() };
        assert_eq!((d.placement, d.reason), (Placement::Cloud, DecisionReason::InvalidEdgeCall));
        assert_eq!(out[1].topic, CLOUD_REQUESTS);
    }

    #[test]
    fn exploration_follows_its_rate_logs_propensity_and_is_idempotent() {
        let mut s = stage(crate::policy::PolicySpec::Fixed { tau: 0.0 }, 0.1);
        let mut explored = 0;
        for _ in 0..3000 {
            let p = proposal("S002", true, -0.001);
            let first = s.route(p.clone());
            let again = s.route(p);
            let (AnyRecord::RoutingDecision(a), AnyRecord::RoutingDecision(b)) = (&first[0].record, &again[0].record) else { panic!() };
            assert_eq!(a, b, "a re-delivered proposal gets the same decision");
            if a.reason == DecisionReason::Exploration {
                explored += 1;
                assert_eq!((a.placement, a.propensity), (Placement::Cloud, 0.1));
            } else {
                assert_eq!(a.propensity, 0.9);
            }
        }
        assert!((200..400).contains(&explored), "{explored} of 3000 explored at rate 0.1");
        // The bounds are not explored.
        let mut edge = stage(crate::policy::PolicySpec::AllEdge, 0.5);
        assert!((0..200).all(|_| {
            let o = edge.route(proposal("S002", true, -0.001));
            matches!(&o[0].record, AnyRecord::RoutingDecision(d) if d.placement == Placement::Edge && d.propensity == 1.0)
        }));
    }

    #[test]
    fn policy_updates_hot_reload_and_bad_ones_are_refused() {
        let mut s = stage(crate::policy::PolicySpec::AllEdge, 0.0);
        let update = |version: &str, name: &str, params: &str| PolicyUpdate {
            channel: ACTIVE_CHANNEL.into(),
            version: version.into(),
            policy_name: name.into(),
            params_json: params.into(),
            weights_uri: None,
            scorer_version: "s1".into(),
            scorer_uri: None,
            model_version: "m1".into(),
            published_at: TimestampMillis::now(),
        };
        s.apply_update(&update("v2", "all-cloud", r#"{"policy":"all-cloud"}"#));
        assert_eq!(s.active(), ("all-cloud", "v2"));
        s.apply_update(&update("v3", "fixed", r#"{"policy":"fixed","tau":7}"#));
        s.apply_update(&update("v4", "fixed", r#"{"policy":"all-edge"}"#));
        s.apply_update(&update("v5", "fixed", "not json"));
        assert_eq!(s.active(), ("all-cloud", "v2"), "refused updates leave the active policy alone");
        let mut shadow = update("c1", "fixed", r#"{"policy":"fixed","tau":0.99}"#);
        shadow.channel = SHADOW_CHANNEL.into();
        s.apply_update(&shadow);
        let out = s.route(proposal("S001", true, -0.5));
        let AnyRecord::RoutingDecision(d) = &out[0].record else { panic!() };
        assert_eq!((d.shadow_policy.as_deref(), d.shadow_threshold), (Some("fixed"), Some(0.99)));
        assert_eq!(d.placement, Placement::Cloud);
    }

    #[test]
    fn each_proposal_is_decided_by_the_policy_fitted_for_its_edge_model() {
        let mut s = stage(crate::policy::PolicySpec::AllEdge, 0.0);
        let update = PolicyUpdate {
            channel: ACTIVE_CHANNEL.into(),
            version: "p2".into(),
            policy_name: "all-cloud".into(),
            params_json: r#"{"policy":"all-cloud"}"#.into(),
            weights_uri: None,
            scorer_version: "s1".into(),
            scorer_uri: None,
            model_version: "m2".into(),
            published_at: TimestampMillis::now(),
        };
        s.apply_update(&update);
        let decide = |s: &RouterStage, model: &str| {
            let mut p = proposal("S001", true, -0.01);
            p.model_version = model.into();
            s.decide(&p)
        };
        // m2 (the new model) → its policy; m1 (still in flight) → the policy fitted for m1.
        assert_eq!((decide(&s, "m2").placement, decide(&s, "m2").policy_version.as_str()), (Placement::Cloud, "p2"));
        assert_eq!((decide(&s, "m1").placement, decide(&s, "m1").policy_version.as_str()), (Placement::Edge, "p1"));
        // A model no policy was fitted for: the newest policy, and the decision says so.
        let d = decide(&s, "m3");
        assert_eq!(d.policy_version, "p2");
        assert!(d.reason_detail.unwrap_or_default().contains("no policy fitted for edge model m3"));
        // A later policy for m2 replaces m2's and keeps m1's.
        s.apply_update(&PolicyUpdate { version: "p3".into(), policy_name: "all-edge".into(), params_json: r#"{"policy":"all-edge"}"#.into(), ..update });
        assert_eq!(decide(&s, "m2").policy_version, "p3");
        assert_eq!(decide(&s, "m1").policy_version, "p1");
    }

    #[test]
    fn request_draws_are_uniform_and_deterministic() {
        let ids: Vec<uuid::Uuid> = (0..20000).map(|_| uuid::Uuid::new_v4()).collect();
        let mean = ids.iter().map(|i| request_draw(i, 1)).sum::<f64>() / ids.len() as f64;
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
        assert_eq!(request_draw(&ids[0], 1), request_draw(&ids[0], 1));
        assert_ne!(request_draw(&ids[0], 1), request_draw(&ids[0], 2));
    }
}
