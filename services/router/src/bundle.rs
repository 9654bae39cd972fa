//! The router bundle: a scorer and every policy fitted for one edge model
//! version, as files (`bundle.json` and the labelled proposals it was fitted
//! on, `proposals.jsonl`). `netgpt train router` writes it; the router loads
//! the policy it is configured with; `PolicyUpdate`s carry single policies.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use netgpt_core::avro::TimestampMillis;
use netgpt_core::records::PolicyUpdate;

use crate::RouterSettings;
use crate::fit::{LabelledProposal, PolicyOutcome, evaluate, fit_fixed, fit_funcdyn, sample_states, simulate_samples};
use crate::oracle::ScoreDistribution;
use crate::policy::PolicySpec;
use crate::policynet::PolicyNet;
use crate::scorer::{CalibrationMethod, CalibrationReport, Scorer};
use crate::stage::ACTIVE_CHANNEL;
use crate::textclf::{TextClassifier, cut_for_cloud_fraction};

pub const BUNDLE_FILE: &str = "bundle.json";
pub const PROPOSALS_FILE: &str = "proposals.jsonl";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RouterBundle {
    /// Content-derived version of the bundle.
    pub version: String,
    /// The edge model version the scorer and policies were fitted for.
    pub model_version: String,
    pub scorer: Scorer,
    pub policies: BTreeMap<String, PolicySpec>,
    pub report: BundleReport,
}

/// What fitting measured, on data none of the fits saw.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BundleReport {
    pub proposals: usize,
    pub edge_accuracy: f64,
    pub scorer_train: usize,
    pub scorer_calibration: usize,
    pub policy_fit_samples: usize,
    pub test_samples: usize,
    pub calibration_before: CalibrationReport,
    pub calibration_after: CalibrationReport,
    /// Per policy, on the test samples.
    pub outcomes: BTreeMap<String, PolicyOutcome>,
    pub seconds: f64,
}

impl RouterBundle {
    pub fn policy(&self, name: &str) -> anyhow::Result<&PolicySpec> {
        self.policies.get(name).ok_or_else(|| anyhow::anyhow!("policy {name:?} is not in the router bundle (it has {:?})", self.policies.keys().collect::<Vec<_>>()))
    }

    /// The update that makes policy `name` of this bundle the router's active
    /// policy for the bundle's model; `scorer_uri` names the folder the bundle
    /// is stored in (None: the router keeps its scorer).
    pub fn policy_update(&self, name: &str, scorer_uri: Option<&str>) -> anyhow::Result<PolicyUpdate> {
        let spec = self.policy(name)?;
        Ok(PolicyUpdate {
            channel: ACTIVE_CHANNEL.into(),
            version: format!("{}/{}", self.version, spec.name()),
            policy_name: spec.name().to_string(),
            params_json: serde_json::to_string(spec)?,
            weights_uri: None,
            scorer_version: self.scorer.version.clone(),
            scorer_uri: scorer_uri.map(str::to_string),
            model_version: self.model_version.clone(),
            published_at: TimestampMillis::now(),
        })
    }

    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(BUNDLE_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("{}: {e} (run `netgpt train router` to create it)", path.display()))?;
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    pub fn save(&self, dir: &Path, proposals: &[LabelledProposal]) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join(BUNDLE_FILE), serde_json::to_string_pretty(self)?)?;
        let mut f = std::io::BufWriter::new(std::fs::File::create(dir.join(PROPOSALS_FILE))?);
        for p in proposals {
            serde_json::to_writer(&mut f, p)?;
            f.write_all(b"\n")?;
        }
        f.flush()?;
        Ok(())
    }
}

pub fn load_proposals(dir: &Path) -> anyhow::Result<Vec<LabelledProposal>> {
    let path = dir.join(PROPOSALS_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    text.lines().enumerate().map(|(i, l)| serde_json::from_str(l).map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), i + 1))).collect()
}

/// How the proposals are split between the fits (fractions of the total).
const SCORER_TRAIN: f64 = 0.4;
const SCORER_CALIBRATION: f64 = 0.2;
const POLICY_FIT: f64 = 0.2;
/// Network states each proposal is seen under in simulated logs.
const STATES_PER_PROPOSAL: usize = 8;

/// Fits the scorer and every policy on labelled proposals of `model_version`.
/// Proposals are split four ways (scorer, calibration map, policy fitting,
/// test), so every number in the report is measured on data no fit saw.
pub fn fit_bundle(mut proposals: Vec<LabelledProposal>, settings: &RouterSettings, model_version: &str, seed: u64) -> anyhow::Result<(RouterBundle, Vec<LabelledProposal>)> {
    anyhow::ensure!(proposals.len() >= 100, "need at least 100 labelled proposals to fit the router, got {}", proposals.len());
    let started = std::time::Instant::now();
    let mut rng = StdRng::seed_from_u64(seed);
    proposals.shuffle(&mut rng);
    let n = proposals.len();
    let cut = |f: f64| (f * n as f64) as usize;
    let (a, b, c) = (cut(SCORER_TRAIN), cut(SCORER_TRAIN + SCORER_CALIBRATION), cut(SCORER_TRAIN + SCORER_CALIBRATION + POLICY_FIT));
    let labelled = |r: &[LabelledProposal]| r.iter().map(|p| (p.features.clone(), p.correct)).collect::<Vec<_>>();
    let (scorer_train, scorer_cal, policy_fit, test) = (&proposals[..a], &proposals[a..b], &proposals[b..c], &proposals[c..]);

    let raw = Scorer::fit("raw", &labelled(scorer_train), &labelled(scorer_cal), CalibrationMethod::None);
    let mut scorer = Scorer::fit("pending", &labelled(scorer_train), &labelled(scorer_cal), CalibrationMethod::Isotonic);
    scorer.version = format!("scorer-{}", short_hash(&serde_json::to_string(&scorer)?));

    let r = &settings.router;
    let schedules: Vec<String> = settings.cost.price_schedules.iter().map(|s| s.id.clone()).collect();
    let states = sample_states(4096, seed ^ 0x5eed, &settings.network.regimes, &settings.network.trace, &schedules);
    let fit_samples = simulate_samples(policy_fit, &scorer, &states, STATES_PER_PROPOSAL, &settings.cost, r.cloud_success_estimate, seed + 1);
    let test_samples = simulate_samples(test, &scorer, &states, STATES_PER_PROPOSAL, &settings.cost, r.cloud_success_estimate, seed + 2);

    let mut policies = BTreeMap::new();
    policies.insert("all-edge".to_string(), PolicySpec::AllEdge);
    policies.insert("all-cloud".to_string(), PolicySpec::AllCloud);
    policies.insert("fixed".to_string(), PolicySpec::Fixed { tau: fit_fixed(&fit_samples) });
    // RouteLLM-style: text only, trained on whether the edge failed.
    let texts: Vec<(&str, bool)> = scorer_train.iter().chain(scorer_cal).map(|p| (p.prompt.as_str(), !p.correct)).collect();
    let classifier = TextClassifier::fit(&texts, 1 << 12, 300);
    let p_fail: Vec<f64> = policy_fit.iter().map(|p| classifier.p_fail(&p.prompt)).collect();
    let cut = cut_for_cloud_fraction(&p_fail, r.routellm_cloud_fraction);
    policies.insert("routellm".to_string(), PolicySpec::RouteLlm { classifier, cut });
    policies.insert("funcdyn".to_string(), PolicySpec::FuncDyn(fit_funcdyn(&fit_samples, &r.funcdyn)));
    policies.insert("policynet".to_string(), PolicySpec::PolicyNet(PolicyNet::train(&fit_samples, &r.policynet)?.params));
    // The oracle: τ* from the empirical distribution of the policy-fit proposals' scores and outcomes.
    let dist = ScoreDistribution::labelled(policy_fit.iter().filter(|p| p.features.schema_valid).map(|p| (scorer.score(&p.features), f64::from(u8::from(p.correct)))).collect(), 0.02);
    let max_delta = test_samples.iter().chain(&fit_samples).map(|s| s.cost.delta).fold(0.0, f64::max) * 1.2;
    policies.insert("oracle".to_string(), PolicySpec::Oracle(crate::policy::Oracle { table: dist.table(r.cloud_success_estimate, max_delta.max(0.1), 60) }));

    let mut outcomes = BTreeMap::new();
    for (name, spec) in &policies {
        outcomes.insert(name.clone(), evaluate(spec.build()?.as_ref(), &test_samples));
    }
    let test_labelled = labelled(test);
    let report = BundleReport {
        proposals: n,
        edge_accuracy: proposals.iter().filter(|p| p.correct).count() as f64 / n as f64,
        scorer_train: scorer_train.len(),
        scorer_calibration: scorer_cal.len(),
        policy_fit_samples: fit_samples.len(),
        test_samples: test_samples.len(),
        calibration_before: raw.report(&test_labelled),
        calibration_after: scorer.report(&test_labelled),
        outcomes,
        seconds: started.elapsed().as_secs_f64(),
    };
    let mut bundle = RouterBundle { version: String::new(), model_version: model_version.to_string(), scorer, policies, report };
    bundle.version = format!("router-{}", short_hash(&serde_json::to_string(&(&bundle.scorer, &bundle.policies))?));
    Ok((bundle, proposals))
}

/// The proposals `fit_bundle` held back for its report (it returns them
/// shuffled; the last share is the test split no fit saw).
pub fn test_split(shuffled: &[LabelledProposal]) -> &[LabelledProposal] {
    let start = ((SCORER_TRAIN + SCORER_CALIBRATION + POLICY_FIT) * shuffled.len() as f64) as usize;
    &shuffled[start.min(shuffled.len())..]
}

/// First 12 hex digits of the SHA-256 of `s`.
pub fn short_hash(s: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(s.as_bytes()).iter().take(6).map(|b| format!("{b:02x}")).collect()
}
