//! The synthetic workload: natural-language requests for the tool catalog with
//! their reference calls. Several paraphrase templates per tool (disjoint
//! train / held-out sets), synonyms for enum values, unit phrasings, and
//! difficulty tiers. Deterministic by seed.
//!
//! The reference call is for training and evaluation only: it travels in
//! `ToolRequest.eval_reference_call`, which routing and model code never read.

use rand::Rng;
use rand::distr::{Distribution, weighted::WeightedIndex};
use serde_json::{Map, Value, json};

use crate::catalog::{ArgKind, Tier, Tool, ToolCatalog};
use netgpt_core::records::Difficulty;

/// Which template set a request is drawn from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    HeldOut,
}

/// A generated request with its reference call.
#[derive(Debug, Clone)]
pub struct Example {
    pub prompt: String,
    pub tool: String,
    /// `{"tool": ..., "arguments": {...}}`, arguments in catalog order.
    pub call: Value,
    pub difficulty: Difficulty,
    pub template: usize,
    /// The text each argument value was rendered as ("sev 1", "3 hours"):
    /// the words that carry the call's values, which training must not hide.
    pub value_phrases: Vec<String>,
}

impl Example {
    pub fn call_json(&self) -> String {
        self.call.to_string()
    }
}

/// Templates per tool. `{arg}` renders the argument's value with a random
/// phrasing, `{arg:style}` with a particular one; a leading `~` marks an
/// indirect phrasing. Every fourth template (index % 4 == 3) is held out:
/// 9 for training and 3 held out per tool, one of them indirect.
fn templates(tool: &str) -> &'static [&'static str] {
    match tool {
        "get_site_status" => &[
            "what is the status of site {site_id}",
            "is site {site_id} up",
            "show me the current state of {site_id}",
            "check site {site_id}",
            "give me a health check of site {site_id}",
            "~has anything gone down at {site_id}",
            "status {site_id}",
            "how is {site_id} doing right now",
            "is everything ok at {site_id}",
            "~could {site_id} be the reason users complain",
            "site status for {site_id}",
            "~are there any problems with the site {site_id} at the moment",
        ],
        "get_cell_kpi" => &[
            "show the {kpi} of cell {cell_id}",
            "what is the {kpi} on {cell_id}",
            "get {kpi} for cell {cell_id} over the last {window_hours}",
            "report the {kpi} of {cell_id}",
            "i need the {kpi} for {cell_id} averaged over {window_hours}",
            "~how is {cell_id} doing in terms of {kpi}",
            "{kpi} of cell {cell_id} please",
            "pull {kpi} numbers for cell {cell_id} for the past {window_hours}",
            "fetch {kpi} of {cell_id}",
            "~is {cell_id} struggling with {kpi} over {window_hours}",
            "tell me the {kpi} for cell {cell_id}",
            "~i suspect {cell_id} has poor {kpi}",
        ],
        "list_alarms" => &[
            "list alarms at site {site_id}",
            "show {severity} alarms on {site_id}",
            "what alarms are active at {site_id}",
            "any {severity} alarms at site {site_id}",
            "get the alarm list of {site_id}",
            "~is {site_id} raising anything {severity}",
            "alarms for {site_id}",
            "display all active alarms for site {site_id}",
            "find {severity} alarms for site {site_id}",
            "~what is going wrong at {site_id}",
            "alarm list {site_id}",
            "~has {site_id} raised any {severity} issues lately",
        ],
        "run_speed_test" => &[
            "run a speed test from site {site_id} in {direction}",
            "start a {direction} throughput test at {site_id}",
            "test {direction} speed at site {site_id}",
            "measure {direction} throughput from {site_id}",
            "kick off a {direction} speed test on {site_id}",
            "~how fast is {site_id} really in {direction}, test it",
            "speed test {site_id} {direction}",
            "please run a {direction} speedtest at site {site_id}",
            "trigger a {direction} speed test for site {site_id}",
            "~verify the {direction} capacity of {site_id} with a test",
            "run speedtest {site_id} {direction}",
            "~is {site_id} delivering the expected {direction} rates, check with a test",
        ],
        "get_neighbor_list" => &[
            "list the neighbours of cell {cell_id}",
            "show up to {max_neighbors} neighbors of {cell_id}",
            "what are the neighbour cells of {cell_id}",
            "neighbour relations for cell {cell_id}",
            "get the neighbor list of {cell_id}, at most {max_neighbors}",
            "~which cells border {cell_id}",
            "neighbors of {cell_id}",
            "give me the top {max_neighbors} neighbours of cell {cell_id}",
            "fetch the neighbor list for {cell_id}",
            "~what is next to {cell_id}",
            "show neighbours {cell_id} limit {max_neighbors}",
            "~which cells surround {cell_id}, give me {max_neighbors} at most",
        ],
        "lock_cell" => &[
            "{action} cell {cell_id}",
            "please {action} {cell_id}",
            "i want to {action} cell {cell_id} now",
            "go ahead and {action} {cell_id}",
            "{action} the cell {cell_id}",
            "~{cell_id} should be {action:state}",
            "can you {action} cell {cell_id}",
            "{action} {cell_id} immediately",
            "we need to {action} cell {cell_id}",
            "~take {cell_id} {action:state}",
            "{action} cell {cell_id} right away",
            "~{cell_id} has to be {action:state} for the night",
        ],
        "get_subscriber_usage" => &[
            "how much data did group {group_id} use {period}",
            "show usage of subscriber group {group_id} for {period}",
            "data consumption of {group_id} {period}",
            "get the usage report of group {group_id} for {period}",
            "usage for subscribers in {group_id} {period}",
            "~did {group_id} burn through a lot of data {period}",
            "subscriber usage {group_id} {period}",
            "what was the data volume used by group {group_id} {period}",
            "fetch data usage of group {group_id} {period}",
            "~was {group_id} heavy on data {period}",
            "usage {group_id} {period}",
            "~tell me whether subscribers of {group_id} used much data {period}",
        ],
        "open_ticket" => &[
            "open a {priority} ticket for site {site_id}, {category} problem",
            "raise a {category} ticket at {site_id} with {priority}",
            "create a {priority} {category} trouble ticket for {site_id}",
            "file a {category} fault ticket for site {site_id}, {priority}",
            "log a ticket: {site_id} has a {category} issue, {priority}",
            "~{site_id} has {category} trouble, get someone on it as {priority}",
            "ticket {site_id} {category} {priority}",
            "please open a {category} ticket on {site_id} at {priority}",
            "new {priority} ticket for {site_id}: {category} fault",
            "~someone must look at the {category} at {site_id}, {priority}",
            "ticket for site {site_id}, {category}, {priority}",
            "~the {category} at {site_id} is acting up, escalate as {priority}",
        ],
        "get_traffic_history" => &[
            "show {metric} of site {site_id} for the last {hours}",
            "traffic history of {site_id}: {metric} over {hours}",
            "get hourly {metric} at {site_id} for the past {hours}",
            "plot the {metric} of site {site_id} over the last {hours}",
            "what was the {metric} at {site_id} during the last {hours}",
            "~how busy was {site_id} in {metric} over {hours:day}",
            "{metric} history {site_id} {hours}",
            "pull {hours} of {metric} for site {site_id}",
            "fetch {metric} for site {site_id} over the last {hours}",
            "~was {site_id} busy in {metric} during {hours:day}",
            "{metric} of {site_id} last {hours}",
            "~how did {metric} at {site_id} evolve over {hours:day}",
        ],
        "compare_cells" => &[
            "compare the {kpi} of cell {cell_a} and cell {cell_b}",
            "how does {cell_a} compare to {cell_b} on {kpi}",
            "{kpi}: {cell_a} versus {cell_b}",
            "put {cell_a} and {cell_b} side by side for {kpi}",
            "compare {cell_a} with {cell_b} in {kpi}",
            "~is {cell_a} worse than {cell_b} when it comes to {kpi}",
            "show {kpi} for cells {cell_a} and {cell_b} together",
            "which is better on {kpi}, {cell_a} or {cell_b}",
            "contrast {cell_a} and {cell_b} on {kpi}",
            "~does {cell_a} beat {cell_b} in {kpi}",
            "{kpi} comparison {cell_a} {cell_b}",
            "~i want to know if {cell_b} or {cell_a} has the better {kpi}",
        ],
        "set_antenna_tilt" => &[
            "set the tilt of cell {cell_id} to {tilt_deg}",
            "change antenna downtilt on {cell_id} to {tilt_deg}",
            "tilt {cell_id} to {tilt_deg}",
            "adjust the electrical tilt of {cell_id} to {tilt_deg}",
            "apply {tilt_deg} of downtilt to cell {cell_id}",
            "~point the antenna of {cell_id} down to {tilt_deg}",
            "new tilt for {cell_id}: {tilt_deg}",
            "configure {cell_id} with a downtilt of {tilt_deg}",
            "set downtilt of {cell_id} to {tilt_deg}",
            "~tip the antenna of {cell_id} to {tilt_deg}",
            "tilt cell {cell_id} {tilt_deg}",
            "~{cell_id} overshoots, give it {tilt_deg} of downtilt",
        ],
        "set_tx_power" => &[
            "set transmit power of cell {cell_id} to {power_dbm}",
            "change tx power on {cell_id} to {power_dbm}",
            "power {cell_id} at {power_dbm}",
            "adjust the output power of {cell_id} to {power_dbm}",
            "configure {cell_id} to transmit at {power_dbm}",
            "~{cell_id} is too hot, bring it down to {power_dbm}",
            "tx power {cell_id} {power_dbm}",
            "make cell {cell_id} radiate {power_dbm}",
            "set power of {cell_id} to {power_dbm}",
            "~turn {cell_id} to {power_dbm}",
            "tx power of cell {cell_id} to {power_dbm}",
            "~{cell_id} should radiate no more than {power_dbm}",
        ],
        "restart_baseband" => &[
            "restart baseband unit {unit} at site {site_id}, {mode}",
            "do a {mode} reboot of bbu {unit} on {site_id}",
            "{mode} restart of baseband {unit} at {site_id}",
            "reboot baseband unit {unit} of site {site_id} using a {mode} reset",
            "reset the baseband {unit} at {site_id} with a {mode} restart",
            "~bbu {unit} at {site_id} is stuck, give it a {mode} restart",
            "restart bbu {unit} {site_id} {mode}",
            "please {mode} restart unit {unit} at {site_id}",
            "reboot bbu {unit} at site {site_id} with a {mode} restart",
            "~unit {unit} at {site_id} hangs, {mode} restart it",
            "{mode} reboot baseband {unit} site {site_id}",
            "~the baseband {unit} at {site_id} froze, do a {mode} restart",
        ],
        "set_qos_profile" => &[
            "apply the {profile} qos profile to group {group_id}",
            "set group {group_id} to {profile} for {duration_hours}",
            "give subscribers in {group_id} the {profile} profile",
            "switch {group_id} to {profile} qos",
            "put group {group_id} on {profile} for the next {duration_hours}",
            "~{group_id} deserves {profile} treatment for {duration_hours}",
            "qos {profile} for {group_id}",
            "move subscriber group {group_id} to the {profile} tier for {duration_hours}",
            "give group {group_id} {profile} qos for {duration_hours}",
            "~upgrade {group_id} to {profile}",
            "qos {group_id} {profile} {duration_hours}",
            "~let {group_id} enjoy {profile} service for {duration_hours}",
        ],
        "reroute_traffic" => &[
            "move {percent} of traffic from {from_site} to {to_site} because of {reason}",
            "reroute {percent} of {from_site} traffic to {to_site} due to {reason}",
            "shift {percent} of the load from site {from_site} to site {to_site} for {reason}",
            "offload {percent} of {from_site} onto {to_site}, reason {reason}",
            "because of {reason}, send {percent} of {from_site} traffic over to {to_site}",
            "~{from_site} has {reason}, let {to_site} take {percent:word} of its traffic",
            "reroute {from_site} to {to_site} {percent} {reason}",
            "divert {percent} of traffic away from {from_site} towards {to_site} given the {reason}",
            "transfer {percent} of {from_site} traffic to {to_site} due to {reason}",
            "~{to_site} should absorb {percent:word} of the {from_site} traffic because of {reason}",
            "reroute {percent} {from_site} {to_site} {reason}",
            "~given {reason} at {from_site}, hand {percent:word} of its users to {to_site}",
        ],
        "schedule_maintenance" => &[
            "schedule {kind} maintenance at site {site_id} on {date} at {start_hour} for {duration_hours}",
            "book a {kind} maintenance window for {site_id} on {date} starting {start_hour}, lasting {duration_hours}",
            "plan {kind} work on {site_id} for {date} from {start_hour} for {duration_hours}",
            "set up a {duration_hours} {kind} maintenance at {site_id} on {date} beginning at {start_hour}",
            "on {date} at {start_hour}, {site_id} needs {duration_hours} of {kind} maintenance",
            "~we have to touch the {kind} at {site_id} on {date}, start around {start_hour} and keep it to {duration_hours}",
            "maintenance {site_id} {date} {start_hour} {duration_hours} {kind}",
            "reserve {site_id} for {kind} maintenance on {date}, {start_hour} start, {duration_hours} long",
            "schedule a {duration_hours} {kind} window at {site_id} on {date} from {start_hour}",
            "~{site_id} needs {kind} work on {date}, begin at {start_hour}, about {duration_hours}",
            "maintenance window {site_id} {date} start {start_hour} length {duration_hours} {kind}",
            "~block {site_id} on {date} at {start_hour} for {duration_hours} of {kind} work",
        ],
        _ => &[],
    }
}

/// The phrasing pattern of a tool's template, for reports ("" if unknown).
pub fn template_text(tool: &str, template: usize) -> &'static str {
    templates(tool).get(template).copied().unwrap_or("")
}

/// Phrasings of enum values (the first is the canonical name spelled out).
fn synonyms(value: &str) -> &'static [&'static str] {
    match value {
        "dl_tput" => &["download throughput", "download speed", "dl throughput", "downlink throughput"],
        "ul_tput" => &["upload throughput", "upload speed", "ul throughput", "uplink throughput"],
        "prb_util" => &["prb utilisation", "prb usage", "resource block utilization", "prb load"],
        "call_drop_rate" => &["call drop rate", "dropped calls", "drop rate", "call drops"],
        "latency" => &["latency", "delay", "round trip latency", "ping time"],
        "rrc_success_rate" => &["rrc success rate", "rrc setup success", "connection setup success rate", "rrc success"],
        "critical" => &["critical", "sev 1"],
        "major" => &["major", "high severity"],
        "minor" => &["minor", "low severity"],
        "warning" => &["warning", "warning level"],
        "downlink" => &["downlink", "download", "dl"],
        "uplink" => &["uplink", "upload", "ul"],
        "both" => &["both directions", "downlink and uplink", "both ways"],
        "lock" => &["lock", "disable", "shut down"],
        "unlock" => &["unlock", "enable", "bring back"],
        "today" => &["today", "so far today"],
        "yesterday" => &["yesterday", "during yesterday"],
        "last_7_days" => &["over the last week", "in the past 7 days", "this past week"],
        "last_30_days" => &["over the last month", "in the past 30 days", "this past month"],
        "p1" => &["p1", "priority 1", "top priority"],
        "p2" => &["p2", "priority 2", "high priority"],
        "p3" => &["p3", "priority 3", "normal priority"],
        "p4" => &["p4", "priority 4", "low priority"],
        "backhaul" => &["backhaul", "microwave backhaul", "backhaul link"],
        "power" => &["power", "power supply", "mains power"],
        "radio" => &["radio", "rf", "antenna"],
        "core" => &["core", "core network", "packet core"],
        "transport" => &["transport", "fiber transport", "transmission"],
        "dl_volume" => &["download volume", "downlink traffic volume", "dl volume"],
        "ul_volume" => &["upload volume", "uplink traffic volume", "ul volume"],
        "active_users" => &["active users", "connected users", "user count"],
        "soft" => &["soft", "software"],
        "hard" => &["hard", "power cycle"],
        "gold" => &["gold", "premium"],
        "silver" => &["silver", "standard plus"],
        "bronze" => &["bronze", "basic"],
        "iot" => &["iot", "internet of things"],
        "maintenance" => &["maintenance", "planned work"],
        "congestion" => &["congestion", "overload"],
        "outage" => &["an outage", "a failure"],
        "hardware" => &["hardware", "equipment"],
        "software" => &["software", "software upgrade"],
        _ => &[],
    }
}

/// Phrasing of a lock action as a resulting state (indirect templates).
fn action_state(value: &str) -> &'static [&'static str] {
    match value {
        "lock" => &["out of service", "locked"],
        _ => &["back in service", "unlocked"],
    }
}

/// Phrasings of a number of an argument, by unit.
fn number_phrase<R: Rng>(rng: &mut R, arg: &str, n: i64) -> String {
    let pick = |rng: &mut R, opts: &[String]| opts[rng.random_range(0..opts.len())].clone();
    match arg {
        "window_hours" | "hours" | "duration_hours" => pick(rng, &[format!("{n} hours"), format!("{n}h"), format!("{n} hrs")]),
        "tilt_deg" => pick(rng, &[format!("{n} degrees"), format!("{n} deg")]),
        "power_dbm" => pick(rng, &[format!("{n} dbm"), format!("{n}dbm"), format!("{n} db milliwatts")]),
        "percent" => pick(rng, &[format!("{n}%"), format!("{n} percent")]),
        "start_hour" => pick(rng, &[format!("{n} o'clock"), format!("hour {n}"), format!("{n}h")]),
        _ => n.to_string(),
    }
}

/// Indirect number phrasings with the value they stand for.
fn number_words(arg: &str) -> &'static [(&'static str, i64)] {
    match arg {
        "percent" => &[("half", 50), ("a quarter", 25), ("three quarters", 75), ("a tenth", 10), ("all", 100)],
        "hours" => &[("the last day", 24), ("the last two days", 48), ("the last three days", 72), ("the past week", 168)],
        _ => &[],
    }
}

pub struct WorkloadGenerator<'c> {
    catalog: &'c ToolCatalog,
    weights: WeightedIndex<f64>,
    split: Split,
}

impl<'c> WorkloadGenerator<'c> {
    pub fn new(catalog: &'c ToolCatalog, split: Split) -> anyhow::Result<Self> {
        for t in catalog.tools() {
            anyhow::ensure!(templates(&t.name).len() >= 4, "tool {} has fewer than 4 templates", t.name);
        }
        let weights = WeightedIndex::new(catalog.tools().iter().map(|t| t.frequency))?;
        Ok(Self { catalog, weights, split })
    }

    /// Template indices of a tool in this generator's split.
    pub fn template_ids(&self, tool: &str) -> Vec<usize> {
        (0..templates(tool).len()).filter(|i| (i % 4 == 3) == (self.split == Split::HeldOut)).collect()
    }

    pub fn sample<R: Rng>(&self, rng: &mut R) -> Example {
        let tool = &self.catalog.tools()[self.weights.sample(rng)];
        self.sample_tool(rng, tool)
    }

    pub fn sample_tool<R: Rng>(&self, rng: &mut R, tool: &Tool) -> Example {
        let ids = self.template_ids(&tool.name);
        let template_id = ids[rng.random_range(0..ids.len())];
        let raw = templates(&tool.name)[template_id];
        let indirect = raw.starts_with('~');
        let text = raw.trim_start_matches('~');

        let mut args = Map::new();
        let mut prompt = String::with_capacity(text.len() + 32);
        let mut rest = text;
        let mut value_phrases = Vec::new();
        while let Some(open) = rest.find('{') {
            prompt.push_str(&rest[..open]);
            let close = rest[open..].find('}').map_or(rest.len(), |c| open + c);
            let spec = &rest[open + 1..close];
            let (arg, style) = spec.split_once(':').unwrap_or((spec, ""));
            let phrase = self.render(rng, tool, arg, style, &mut args);
            prompt.push_str(&phrase);
            value_phrases.push(phrase);
            rest = &rest[(close + 1).min(rest.len())..];
        }
        prompt.push_str(rest);

        // Canonical order: the catalog's argument order.
        let mut ordered = Map::new();
        for a in &tool.args {
            if let Some(v) = args.remove(&a.name) {
                ordered.insert(a.name.clone(), v);
            }
        }
        let n_args = ordered.len();
        let difficulty = if indirect || (tool.tier == Tier::Rare && n_args >= 3) {
            Difficulty::Hard
        } else if tool.tier == Tier::Common && n_args <= 2 {
            Difficulty::Easy
        } else {
            Difficulty::Medium
        };
        Example { prompt, tool: tool.name.clone(), call: json!({"tool": tool.name, "arguments": ordered}), difficulty, template: template_id, value_phrases }
    }

    fn render<R: Rng>(&self, rng: &mut R, tool: &Tool, arg: &str, style: &str, args: &mut Map<String, Value>) -> String {
        let Some(spec) = tool.args.iter().find(|a| a.name == arg) else {
            return format!("{{{arg}}}"); // a template bug; the workload tests catch it
        };
        let words = number_words(arg);
        if (style == "word" || style == "day") && !words.is_empty() {
            let (phrase, n) = words[rng.random_range(0..words.len())];
            args.insert(arg.into(), json!(n));
            return phrase.to_string();
        }
        match &spec.kind {
            ArgKind::Id => {
                let v = id_value(rng, arg, args);
                args.insert(arg.into(), Value::String(v.clone()));
                v
            }
            ArgKind::Enum(values) => {
                let v = &values[rng.random_range(0..values.len())];
                args.insert(arg.into(), Value::String(v.clone()));
                let phrases = if style == "state" { action_state(v) } else { synonyms(v) };
                if phrases.is_empty() { v.replace('_', " ") } else { phrases[rng.random_range(0..phrases.len())].to_string() }
            }
            ArgKind::Integer { min, max } => {
                let hi = (*max).min(min + 200);
                let n = rng.random_range(*min..=hi);
                args.insert(arg.into(), json!(n));
                number_phrase(rng, arg, n)
            }
            ArgKind::Number { min, max } => {
                let n = rng.random_range(min.ceil() as i64..=max.floor() as i64);
                args.insert(arg.into(), json!(n));
                number_phrase(rng, arg, n)
            }
        }
    }
}

/// A fresh id for an argument, distinct from the ids already in the call.
fn id_value<R: Rng>(rng: &mut R, arg: &str, taken: &Map<String, Value>) -> String {
    loop {
        let v = match arg {
            a if a.contains("site") => format!("S{:03}", rng.random_range(0..200)),
            "group_id" => format!("G{:02}", rng.random_range(1..40)),
            "date" => format!("2026-{:02}-{:02}", rng.random_range(1..=12), rng.random_range(1..=28)),
            _ => format!("{}{:02}", (b'A' + rng.random_range(0..26u8)) as char, rng.random_range(0..100)),
        };
        if !taken.values().any(|t| t.as_str() == Some(v.as_str())) {
            return v;
        }
    }
}

/// A plausible mistake in a call: its first enum argument set to another
/// value, or else its first integer argument moved by one; `draw` in [0, 1)
/// picks the other enum value. None when the call has neither.
pub fn plausible_mistake(catalog: &ToolCatalog, call: &Value, draw: f64) -> Option<Value> {
    let mut call = call.clone();
    let tool = catalog.get(call.get("tool")?.as_str()?)?;
    let args = call.get_mut("arguments")?.as_object_mut()?;
    for a in &tool.args {
        let Some(v) = args.get_mut(&a.name) else { continue };
        match &a.kind {
            ArgKind::Enum(values) if values.len() > 1 => {
                let others: Vec<&String> = values.iter().filter(|x| v.as_str() != Some(x.as_str())).collect();
                *v = Value::String(others[(draw * others.len() as f64) as usize % others.len()].clone());
                return Some(call);
            }
            ArgKind::Integer { min, max } if max > min => {
                let x = v.as_i64()?;
                *v = Value::from(if x < *max { x + 1 } else { x - 1 });
                return Some(call);
            }
            _ => {}
        }
    }
    None
}

/// Exact-match comparison of two calls (numbers compared as numbers).
pub use netgpt_core::json::same_json as same_call;

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn every_reference_call_is_schema_valid_and_templates_are_complete() {
        let catalog = ToolCatalog::embedded();
        for split in [Split::Train, Split::HeldOut] {
            let g = WorkloadGenerator::new(catalog, split).unwrap();
            let mut rng = StdRng::seed_from_u64(1);
            for t in catalog.tools() {
                for _ in 0..50 {
                    let ex = g.sample_tool(&mut rng, t);
                    assert!(!ex.prompt.contains('{'), "unrendered placeholder in {:?}", ex.prompt);
                    let check = catalog.check_call(&ex.call_json());
                    assert!(check.valid, "{} -> {}: {:?}", ex.prompt, ex.call, check.error);
                }
            }
        }
    }

    #[test]
    fn train_and_held_out_templates_are_disjoint_and_deterministic() {
        let catalog = ToolCatalog::embedded();
        let train = WorkloadGenerator::new(catalog, Split::Train).unwrap();
        let held = WorkloadGenerator::new(catalog, Split::HeldOut).unwrap();
        for t in catalog.tools() {
            let (a, b) = (train.template_ids(&t.name), held.template_ids(&t.name));
            assert!(!a.is_empty() && !b.is_empty());
            assert!(a.iter().all(|i| !b.contains(i)));
        }
        let draw = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..20).map(|_| train.sample(&mut rng).prompt).collect::<Vec<_>>()
        };
        assert_eq!(draw(5), draw(5));
        assert_ne!(draw(5), draw(6));
    }

    #[test]
    fn tiers_cover_easy_medium_and_hard() {
        let catalog = ToolCatalog::embedded();
        let g = WorkloadGenerator::new(catalog, Split::Train).unwrap();
        let mut rng = StdRng::seed_from_u64(2);
        let mut counts = [0usize; 3];
        for _ in 0..3000 {
            let ex = g.sample(&mut rng);
            counts[ex.difficulty as usize] += 1;
            if ex.difficulty == Difficulty::Easy {
                assert_eq!(catalog.get(&ex.tool).unwrap().tier, Tier::Common);
            }
        }
        assert!(counts.iter().all(|&c| c > 100), "{counts:?}");
    }
}
