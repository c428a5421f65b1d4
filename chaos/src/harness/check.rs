//! After the run: the cluster converged, and every acknowledged event is
//! applied exactly once to its key, which holds the state the model
//! predicts.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::cluster::Cluster;
use super::http;
use super::workload::{self, Journal, Planned};

/// What the checks found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Findings {
    /// Keys read back.
    pub keys: usize,
    /// Events the keys hold.
    pub applied: u64,
    /// Acknowledged events missing.
    pub lost: u64,
    /// Events applied more often than sent.
    pub duplicated: u64,
    /// Sent, never acknowledged (the run ended first): may or may not be
    /// applied.
    pub ambiguous: u64,
    /// Keys whose state differs from the model.
    pub model_mismatches: u64,
    /// Takeovers the nodes counted (promotions + handoffs received).
    pub takeovers: u64,
    /// The alerts seen during the run, checked.
    pub alerts: super::alerts::AlertFindings,
    /// Every violation, readable.
    pub violations: Vec<String>,
}

use super::lock;
use http::get_json as json;

/// How many members the node at `url` sees up, if it answers.
pub fn members_up(url: &str) -> Option<usize> {
    let cluster = json(&format!("{url}/v1/cluster"))?;
    Some(
        cluster["members"]
            .as_array()
            .map(|m| m.iter().filter(|m| m["status"] == "up").count())
            .unwrap_or(0),
    )
}

/// Waits (bounded) until every node is up and ready, sees `nodes` members
/// up, and all agree on the partition table; returns when it first held.
pub fn wait_converged(cluster: &Mutex<Cluster>, nodes: usize, bound: Duration) -> Option<Instant> {
    let deadline = Instant::now() + bound;
    while Instant::now() < deadline {
        if converged(cluster, nodes).is_ok() {
            return Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// Ok if converged, else what is not.
pub fn converged(cluster: &Mutex<Cluster>, nodes: usize) -> Result<(), String> {
    let urls = lock(cluster).up_urls();
    if urls.len() != nodes {
        return Err(format!("{} of {nodes} nodes running", urls.len()));
    }
    let mut fingerprint = None;
    for url in &urls {
        if !http::get(&format!("{url}/readyz")).is_ok_and(|(s, _)| s == 200) {
            return Err(format!("{url} not ready"));
        }
        let up = members_up(url).ok_or(format!("{url}: no /v1/cluster"))?;
        if up != nodes {
            return Err(format!("{url} sees {up} members up"));
        }
        let table =
            json(&format!("{url}/v1/partitions")).ok_or(format!("{url}: no /v1/partitions"))?;
        let owners = table["owned"].as_object().map(|o| o.len()).unwrap_or(0);
        if owners != nodes.min(table["partition_count"].as_u64().unwrap_or(0) as usize) {
            return Err(format!("{url}: table has {owners} owners"));
        }
        match &fingerprint {
            None => fingerprint = Some(table["fingerprint"].clone()),
            Some(f) if *f != table["fingerprint"] => {
                return Err(format!("{url}: table differs"));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Runs every check.
pub fn check(
    cluster: &Mutex<Cluster>,
    events: &[Planned],
    journal: &Journal,
    converged_in_time: bool,
) -> Findings {
    let mut findings = Findings::default();
    let urls = lock(cluster).up_urls();
    let nodes = lock(cluster).members();
    if !converged_in_time {
        let why = converged(cluster, nodes).err().unwrap_or_default();
        findings.violations.push(format!(
            "the cluster did not converge within 60 s of healing: {why}"
        ));
    }
    findings.violations.extend(
        lock(&journal.rejected)
            .iter()
            .take(5)
            .map(|r| format!("a request was refused for good: {r}")),
    );
    findings
        .violations
        .extend(broken_promises(&lock(cluster)).into_iter().take(5));
    check_owners(&urls, &mut findings);
    if urls.is_empty() {
        findings.violations.push("no node is running".into());
        return findings;
    }
    let entries = lock(&journal.entries).clone();
    // Per key, in send order: (event index, acknowledged?).
    let mut keys: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
    for (i, e) in events.iter().enumerate() {
        if entries[i].sent_ms.is_some() {
            keys.entry((e.kind, e.key.as_str())).or_default().push(i);
        }
    }
    findings.keys = keys.len();
    let mut examples = Vec::new();
    for (n, ((kind, key), sent)) in keys.iter().enumerate() {
        let acked = sent
            .iter()
            .filter(|&&i| entries[i].acked_ms.is_some())
            .count() as u64;
        let ambiguous = sent.len() as u64 - acked;
        findings.ambiguous += ambiguous;
        let url = &urls[n % urls.len()];
        let state = read_state(&urls, url, kind, key);
        let Some(state) = state else {
            findings.lost += acked;
            if acked > 0 {
                examples.push(format!("{kind}/{key}: no state, {acked} acknowledged"));
            }
            continue;
        };
        let applied = state["events"].as_u64().unwrap_or(0);
        findings.applied += applied;
        if applied < acked {
            findings.lost += acked - applied;
            let partition = eddy_core::partition_of(kind, key, eddy_core::DEFAULT_PARTITIONS).0;
            let acked_at: Vec<u64> = sent.iter().filter_map(|&i| entries[i].acked_ms).collect();
            let span =
                |f: fn(&[u64]) -> Option<&u64>| f(&acked_at).copied().unwrap_or(0) as f64 / 1000.0;
            // Counts do not say which event is missing, only how many.
            examples.push(format!(
                "{kind}/{key} (partition {partition}): {applied} applied, {acked} acknowledged between {:.1} s and {:.1} s",
                span(|a| a.iter().min()),
                span(|a| a.iter().max()),
            ));
        }
        if applied > sent.len() as u64 {
            findings.duplicated += applied - sent.len() as u64;
            examples.push(format!(
                "{kind}/{key}: {applied} applied, {} sent",
                sent.len()
            ));
        }
        // The model is exact when every sent event was acknowledged.
        if ambiguous == 0 && applied == acked {
            let events: Vec<&serde_json::Value> = sent.iter().map(|&i| &events[i].event).collect();
            let expected = workload::model(kind, key, &events);
            let actual = workload::clock_free(kind, state);
            if expected.as_ref() != Some(&actual) {
                findings.model_mismatches += 1;
                if findings.model_mismatches <= 3 {
                    examples.push(format!(
                        "{kind}/{key}: state {actual} differs from the model {}",
                        expected.unwrap_or_default()
                    ));
                }
            }
        }
    }
    if findings.lost > 0 {
        findings
            .violations
            .push(format!("{} acknowledged events lost", findings.lost));
    }
    if findings.duplicated > 0 {
        findings
            .violations
            .push(format!("{} events applied twice", findings.duplicated));
    }
    if findings.model_mismatches > 0 {
        findings.violations.push(format!(
            "{} keys differ from the model of their events",
            findings.model_mismatches
        ));
    }
    findings
        .violations
        .extend(examples.into_iter().take(10).map(|e| format!("  e.g. {e}")));
    findings.takeovers = urls
        .iter()
        .map(|url| {
            let text = http::get(&format!("{url}/metrics"))
                .map(|(_, b)| b)
                .unwrap_or_default();
            metric(&text, "eddy_promotions_total")
        })
        .sum::<f64>() as u64;
    findings
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A key's state, from `url` or, if it cannot answer now, another node
/// (bounded retries: a node may still be taking a partition over).
fn read_state(urls: &[String], url: &str, kind: &str, key: &str) -> Option<serde_json::Value> {
    let mut candidates: Vec<&str> = vec![url];
    candidates.extend(urls.iter().map(String::as_str));
    for attempt in 0..20 {
        let base = candidates[attempt % candidates.len()];
        match http::get(&format!("{base}/v1/actors/{kind}/{key}")) {
            Ok((200, body)) => {
                return serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .map(|v| v["state"].clone());
            }
            Ok((404, _)) => return None,
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    None
}

/// Log lines with which a node says it broke a promise the checks above
/// cannot see from outside, with what the promise was.
const BROKEN_PROMISES: [(&str, &str); 1] = [(
    "elected owner without a local copy",
    "an in-sync replica held no copy of its partition when elected: the partition stayed offline",
)];

/// Every node's log lines of [`BROKEN_PROMISES`], one violation each.
fn broken_promises(cluster: &Cluster) -> Vec<String> {
    let mut found = Vec::new();
    for i in 1..=cluster.len() {
        for line in cluster.log_lines(i) {
            if let Some((_, meaning)) = BROKEN_PROMISES.iter().find(|(l, _)| line.contains(l)) {
                found.push(format!("node-{i}: {meaning}: {}", line.trim()));
            }
        }
    }
    found
}

/// Each partition has exactly one owner: every node's table names the same
/// one, exactly one node holds the partition's copy in the owner role (that
/// node), and no copy anywhere holds entries of a newer epoch than the one
/// it serves at (which would mean another owner wrote after it).
///
/// Read again (up to [`OWNERS_SETTLE`]) while problems show: an ownership
/// move the controller commits after the tables first agreed (a handoff
/// back to a member that caught up) is read half done by a checker that
/// visits the nodes one after the other; a problem that stays is reported.
fn check_owners(urls: &[String], findings: &mut Findings) {
    let deadline = std::time::Instant::now() + OWNERS_SETTLE;
    let mut bad = ownership_problems(urls);
    while !bad.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(500));
        bad = ownership_problems(urls);
    }
    if !bad.is_empty() {
        findings
            .violations
            .push(format!("{} ownership problems", bad.len()));
        findings
            .violations
            .extend(bad.into_iter().take(5).map(|b| format!("  e.g. {b}")));
    }
}

/// How long ownership problems may take to settle before they count.
const OWNERS_SETTLE: std::time::Duration = std::time::Duration::from_secs(10);

/// The ownership problems the nodes' tables show now.
fn ownership_problems(urls: &[String]) -> Vec<String> {
    let tables: Vec<(String, serde_json::Value)> = urls
        .iter()
        .filter_map(|u| json(&format!("{u}/v1/partitions")).map(|t| (u.clone(), t)))
        .collect();
    let Some((_, first)) = tables.first() else {
        return Vec::new();
    };
    let Some(partitions) = first["partitions"].as_array() else {
        return Vec::new();
    };
    // partition → (node, role, epoch, last_epoch) of every copy.
    let mut copies: BTreeMap<u64, Vec<(String, String, u64, u64)>> = BTreeMap::new();
    for (_, table) in &tables {
        let node = table["node"].as_str().unwrap_or_default().to_owned();
        for copy in table["copies"].as_array().into_iter().flatten() {
            copies
                .entry(copy["partition"].as_u64().unwrap_or(u64::MAX))
                .or_default()
                .push((
                    node.clone(),
                    copy["role"].as_str().unwrap_or_default().to_owned(),
                    copy["owner_epoch"].as_u64().unwrap_or(0),
                    copy["last_entry_epoch"].as_u64().unwrap_or(0),
                ));
        }
    }
    let mut bad = Vec::new();
    for (p, entry) in partitions.iter().enumerate() {
        let owner = entry["owner"].as_str().unwrap_or_default();
        if owner.is_empty() {
            bad.push(format!("partition {p} has no owner"));
            continue;
        }
        for (url, table) in &tables {
            let named = table["partitions"][p]["owner"].as_str().unwrap_or_default();
            if named != owner {
                bad.push(format!(
                    "partition {p}: {url} names owner {named}, others {owner}"
                ));
            }
        }
        let held = copies.get(&(p as u64)).cloned().unwrap_or_default();
        let serving: Vec<&(String, String, u64, u64)> =
            held.iter().filter(|c| c.1 == "owner").collect();
        match serving.as_slice() {
            [(node, _, epoch, _)] if node == owner => {
                if let Some(newer) = held.iter().find(|c| c.3 > *epoch) {
                    bad.push(format!(
                        "partition {p}: owner {owner} at epoch {epoch}, but {} holds entries of epoch {}",
                        newer.0, newer.3
                    ));
                }
            }
            _ => bad.push(format!(
                "partition {p}: table owner {owner}, copies in the owner role: {:?}",
                serving.iter().map(|c| (&c.0, c.2)).collect::<Vec<_>>()
            )),
        }
    }
    bad
}
