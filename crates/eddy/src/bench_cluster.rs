//! `eddy bench --replication` and `eddy bench --failovers N`: the figures of
//! replication on local 3-node clusters (child processes on loopback).
//!
//! - Replication cost: the same workload at peak through a routing client,
//!   on a fresh cluster with `replication_factor = 1`, then `2` with
//!   `acks = all`; the ratio is the price of never losing an acknowledged
//!   write.
//! - Failover: SIGKILL one node (a different one each time), measure the time
//!   from the kill to the first acknowledged write on a partition the dead
//!   node owned, then restart it under the same name and measure how fast it
//!   takes its partitions back (handoff bytes / takeover time).

use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy_client::{ClientConfig, RoutedClient};

use crate::bench::{BenchArgs, LocalNode, NodeAddrs, Target, batches, report, run, start_node};

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

/// A blocking HTTP GET, off the async threads.
async fn http_get(url: String) -> Result<(u16, String), String> {
    tokio::task::spawn_blocking(move || {
        let mut response = agent().get(&url).call().map_err(|err| err.to_string())?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .read_to_string()
            .map_err(|err| err.to_string())?;
        Ok((status, body))
    })
    .await
    .map_err(|err| err.to_string())?
}

/// A blocking HTTP POST of a JSON body; status 0 if the node is gone.
async fn http_post(url: String, body: String) -> u16 {
    tokio::task::spawn_blocking(move || {
        agent()
            .post(&url)
            .header("content-type", "application/json")
            .send(&body)
            .map_or(0, |r| r.status().as_u16())
    })
    .await
    .unwrap_or(0)
}

/// [`json`], again while the node answers 503 (a partition still moving
/// to a new owner after a failure), for at most `patience`.
pub(crate) async fn json_when_served(
    url: String,
    patience: Duration,
) -> Result<serde_json::Value, String> {
    let deadline = Instant::now() + patience;
    loop {
        let (status, body) = http_get(url.clone()).await?;
        if status == 503 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        return ok_json(&url, status, &body);
    }
}

pub(crate) async fn json(url: String) -> Result<serde_json::Value, String> {
    let (status, body) = http_get(url.clone()).await?;
    ok_json(&url, status, &body)
}

/// The JSON body of a 200 answer from `url`; any other status is the error.
fn ok_json(url: &str, status: u16, body: &str) -> Result<serde_json::Value, String> {
    if status != 200 {
        return Err(format!("{url}: {status} {body}"));
    }
    serde_json::from_str(body).map_err(|err| format!("{url}: {err}"))
}

/// How many events the account `key` has applied (0 if it has no state).
async fn events_of(addrs: &NodeAddrs, key: &str) -> Result<u64, String> {
    let url = format!("http://{}/v1/actors/account/{key}", addrs.http);
    let (status, body) = http_get(url.clone()).await?;
    if status == 404 {
        return Ok(0);
    }
    let state = ok_json(&url, status, &body)?;
    state["state"]["events"]
        .as_u64()
        .ok_or_else(|| format!("{url}: no event count in {state}"))
}

/// A metric's value from a node's `/metrics` (0 if absent).
async fn metric(addrs: &NodeAddrs, name: &str) -> f64 {
    let Ok((_, text)) = http_get(format!("http://{}/metrics", addrs.http)).await else {
        return 0.0;
    };
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .fold(0.0, |sum, v| sum + v)
}

/// Waits until every node's table lists `owners` owners and all agree.
async fn wait_converged(nodes: &[&NodeAddrs], owners: usize) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut tables = Vec::new();
        for node in nodes {
            tables.push(json(format!("http://{}/v1/partitions", node.http)).await?);
        }
        let agreed = tables.iter().all(|t| {
            t["owned"].as_object().map(serde_json::Map::len) == Some(owners)
                && t["fingerprint"] == tables[0]["fingerprint"]
        });
        if agreed {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("the cluster did not converge within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `node`'s committed configuration has `copies` in-sync
/// copies of every partition (bounded: 60 s).
async fn wait_in_sync(node: &NodeAddrs, copies: usize) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let table = json(format!("http://{}/v1/partitions", node.http)).await?;
        let short =
            eddy_node::http::partitions_short_of_copies(&table, copies).unwrap_or(usize::MAX);
        if short == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{short} partitions still had fewer than {copies} in-sync copies after 60 s"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Data directories of a local cluster's nodes (a voter keeps its Raft log
/// there), removed when dropped.
pub(crate) struct ScratchDir(std::path::PathBuf);

impl ScratchDir {
    fn new() -> Result<ScratchDir, String> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!("eddy-local-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|err| format!("{}: {err}", dir.display()))?;
        Ok(ScratchDir(dir))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Node `index` of three: all three are the controller's voters, each with
/// its data directory under `dir`.
fn node_sets(index: usize, rf: usize, seeds: &[&NodeAddrs], dir: &ScratchDir) -> Vec<String> {
    let mut sets = vec![
        format!("name=\"node-{}\"", index + 1),
        format!("replication_factor={rf}"),
        "voters=[\"node-1\",\"node-2\",\"node-3\"]".to_owned(),
        format!(
            "data_dir=\"{}\"",
            dir.0.join(format!("node-{}", index + 1)).display()
        ),
    ];
    if !seeds.is_empty() {
        let list: Vec<String> = seeds.iter().map(|s| format!("\"{}\"", s.gossip)).collect();
        sets.push(format!("seeds=[{}]", list.join(",")));
    }
    sets
}

async fn start_blocking(sets: Vec<String>) -> Result<(LocalNode, NodeAddrs), String> {
    tokio::task::spawn_blocking(move || start_node(&sets))
        .await
        .map_err(|err| err.to_string())?
}

/// Starts node-1, then node-2 and node-3 seeded with it, together: the
/// voters form the cluster once all three run.
async fn start_cluster(rf: usize, dir: &ScratchDir) -> Result<Vec<(LocalNode, NodeAddrs)>, String> {
    let first = start_blocking(node_sets(0, rf, &[], dir)).await?;
    let others = {
        let seeds = [&first.1];
        let second = start_blocking(node_sets(1, rf, &seeds, dir));
        let third = start_blocking(node_sets(2, rf, &seeds, dir));
        tokio::try_join!(second, third)?
    };
    let nodes = vec![first, others.0, others.1];
    let addrs: Vec<&NodeAddrs> = nodes.iter().map(|(_, a)| a).collect();
    wait_converged(&addrs, 3).await?;
    Ok(nodes)
}

async fn routed(nodes: &[&NodeAddrs]) -> Result<Arc<RoutedClient>, String> {
    let seeds: Vec<String> = nodes.iter().map(|n| n.tcp.clone()).collect();
    RoutedClient::connect(&seeds, ClientConfig::default())
        .await
        .map(Arc::new)
        .map_err(|err| err.to_string())
}

/// `eddy bench --replication`.
pub async fn replication(args: &BenchArgs) -> Result<(), String> {
    let batches = batches(args.events, args.keys, args.batch)?;
    println!(
        "eddy bench --replication: 3 local nodes, {} events, {} accounts, {} senders, batches of {}, {} in flight each",
        args.events, args.keys, args.connections, args.batch, args.pipeline
    );
    let mut rates = Vec::new();
    for (rf, label) in [(1, "rf=1"), (2, "rf=2 acks=all")] {
        let dir = ScratchDir::new()?;
        let nodes = start_cluster(rf, &dir).await?;
        let addrs: Vec<&NodeAddrs> = nodes.iter().map(|(_, a)| a).collect();
        let client = routed(&addrs).await?;
        let targets = vec![Target::Cluster(client); args.connections.max(1)];
        let result = run(&targets, &batches, args.pipeline, None, label).await?;
        rates.push(report(label, &result));
    }
    if let [one, two] = rates[..] {
        println!(
            "rf=2 acks=all runs at {:.2}× the throughput of rf=1 (same workload, same run)",
            two / one
        );
    }
    Ok(())
}

/// A key of the fraud workload whose partition `owner` owns in `table`.
fn key_owned_by(table: &serde_json::Value, owner: &str) -> Option<String> {
    (0..100_000).map(|i| format!("acct-{i}")).find(|key| {
        let p = eddy_core::partition_of("account", key, 1024).0 as usize;
        table["partitions"][p]["owner"] == owner
    })
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// `eddy bench --failovers N`.
pub async fn failovers(args: &BenchArgs, kills: usize) -> Result<(), String> {
    let dir = ScratchDir::new()?;
    let mut nodes: Vec<(LocalNode, NodeAddrs)> = start_cluster(2, &dir).await?;
    let loaded: std::collections::BTreeSet<String> = {
        let addrs: Vec<&NodeAddrs> = nodes.iter().map(|(_, a)| a).collect();
        let client = routed(&addrs).await?;
        let targets = vec![Target::Cluster(client); args.connections.max(1)];
        let load = batches(args.events, args.keys, args.batch)?;
        let result = run(&targets, &load, args.pipeline, None, "loading").await?;
        report("loaded at", &result);
        load.iter()
            .flat_map(|b| b.iter())
            .map(|event| event.key.to_string())
            .collect()
    };
    // What each sampled key must hold after the kills starts from what the
    // cluster holds once loaded: loading retries refused batches without
    // producer ids, so a batch may have applied twice. The kills must lose
    // nothing from here on.
    let mut expected: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    for key in loaded.iter().step_by((loaded.len() / 2000).max(1)) {
        expected.insert(key.clone(), events_of(&nodes[0].1, key).await?);
    }
    println!(
        "eddy bench --failovers {kills}: 3 local nodes, rf=2, acks=all, {} accounts loaded",
        args.keys
    );
    let mut failover_ms = Vec::new();
    let mut handoff_mbps = Vec::new();
    for round in 0..kills {
        let victim = round % nodes.len();
        let name = format!("node-{}", victim + 1);
        let survivor = nodes[(victim + 1) % nodes.len()].1.clone();
        let table = json(format!("http://{}/v1/partitions", survivor.http)).await?;
        let key = key_owned_by(&table, &name).ok_or("no key owned by the victim")?;
        if !expected.contains_key(&key) {
            expected.insert(key.clone(), events_of(&survivor, &key).await?);
        }
        // Exactly once across the retries: a producer id, one seq per probe.
        let body = format!(
            r#"{{"kind":"account","key":"{key}","event":{{"amount":1.0,"country":"FR","merchant":"m"}},"producer":"failover-probe","seq":{}}}"#,
            round + 1
        );
        nodes[victim].0.kill();
        let killed = Instant::now();
        loop {
            if http_post(format!("http://{}/v1/events", survivor.http), body.clone()).await == 200 {
                break;
            }
            if killed.elapsed() > Duration::from_secs(60) {
                return Err(format!(
                    "no acknowledged write for {key} within 60 s of killing {name}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        *expected.entry(key.clone()).or_default() += 1;
        let took = killed.elapsed().as_secs_f64() * 1000.0;
        failover_ms.push(took);
        // Restart it with its data: it catches up as a backup (snapshots
        // from the owners), rejoins the in-sync sets, and the controller
        // gives it its ring share back.
        let seeds: Vec<&NodeAddrs> = nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != victim)
            .map(|(_, (_, a))| a)
            .collect();
        let restarting = Instant::now();
        nodes[victim] = start_blocking(node_sets(victim, 2, &seeds, &dir)).await?;
        let addrs: Vec<&NodeAddrs> = nodes.iter().map(|(_, a)| a).collect();
        wait_converged(&addrs, 3).await?;
        let back_ms = restarting.elapsed().as_secs_f64() * 1000.0;
        // Before the next kill, as between the restarts of a rolling
        // restart: every partition has its copies in sync again.
        wait_in_sync(&nodes[0].1, 2).await?;
        let bytes = metric(&nodes[victim].1, "eddy_snapshot_bytes_received_total").await;
        let mbps = bytes / 1e6 / (back_ms / 1000.0);
        handoff_mbps.push(mbps);
        println!(
            "kill {:>2}: {name:<7} first ack on a moved partition after {took:>6.0} ms; restarted: owner again of its share {back_ms:.0} ms after its start, {:.1} MB received ({mbps:.0} MB/s)",
            round + 1,
            bytes / 1e6
        );
    }
    // Every acknowledged event must have survived the kills.
    for (key, count) in &expected {
        let held = events_of(&nodes[0].1, key).await?;
        if held != *count {
            return Err(format!(
                "{key}: {count} events held before the kills and acknowledged since, {held} now"
            ));
        }
    }
    println!(
        "after {kills} kills: {} sampled keys hold every acknowledged event",
        expected.len()
    );
    let max = failover_ms.iter().copied().fold(0.0, f64::max);
    println!(
        "failover over {kills} kills: p50 {:.0} ms, max {max:.0} ms; handoff median {:.0} MB/s",
        median(&mut failover_ms),
        median(&mut handoff_mbps)
    );
    Ok(())
}

/// A local cluster of child processes named node-1…; killed when dropped.
pub(crate) struct LocalCluster {
    nodes: Vec<(String, Option<LocalNode>, NodeAddrs)>,
    /// Dropped after the nodes (field order): they are killed first.
    _dir: ScratchDir,
}

impl LocalCluster {
    /// Starts three nodes with `replication_factor = rf` and waits until
    /// their tables agree.
    pub(crate) async fn start(rf: usize) -> Result<LocalCluster, String> {
        let dir = ScratchDir::new()?;
        let nodes = start_cluster(rf, &dir).await?;
        Ok(LocalCluster {
            _dir: dir,
            nodes: nodes
                .into_iter()
                .enumerate()
                .map(|(i, (node, addrs))| (format!("node-{}", i + 1), Some(node), addrs))
                .collect(),
        })
    }

    /// Names of the running nodes.
    pub(crate) fn names(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|(_, node, _)| node.is_some())
            .map(|(name, ..)| name.clone())
            .collect()
    }

    /// Addresses of the running nodes.
    pub(crate) fn addrs(&self) -> Vec<NodeAddrs> {
        self.nodes
            .iter()
            .filter(|(_, node, _)| node.is_some())
            .map(|(.., addrs)| addrs.clone())
            .collect()
    }

    /// SIGKILLs node `index`; returns its name.
    pub(crate) fn kill(&mut self, index: usize) -> Result<String, String> {
        let (name, node, _) = self.nodes.get_mut(index).ok_or("no such node")?;
        let mut node = node.take().ok_or("already killed")?;
        node.kill();
        Ok(name.clone())
    }
}
