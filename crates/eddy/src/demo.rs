//! `eddy demo`: the main job in one command. Starts a 3-node cluster on
//! loopback (child processes), drives the fraud, iot and vitals workloads
//! through a routing client with producer ids, SIGKILLs one node halfway,
//! shows the failover as it happens, then reads every key back and prints a
//! summary: events sent / acknowledged / applied, lost and duplicated (both
//! must be 0), alerts by kind, failover time. The nodes are stopped on exit,
//! on Ctrl-C and on error (their guards kill them when dropped).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use eddy_client::{Client, ClientConfig, RoutedClient};
use eddy_core::wire::WireEvent;
use eddy_core::{Behaviour, ProducerRef, Workload};

use crate::bench_cluster::{LocalCluster, json_when_served};

/// Options of `eddy demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How long the workload runs, in seconds; a node is killed halfway.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Events per batch (mixed kinds).
    #[arg(long, default_value_t = 300)]
    batch: usize,
}

/// Runs `eddy demo`.
pub fn run(args: DemoArgs) -> ExitCode {
    let Some(runtime) = crate::runtime() else {
        return ExitCode::FAILURE;
    };
    let outcome = runtime.block_on(async {
        tokio::select! {
            result = demo(&args) => result,
            _ = tokio::signal::ctrl_c() => Err("interrupted; nodes stopped".to_owned()),
        }
    });
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// One example kind's workload, encoding events with a producer id so
/// retries across the failover apply once.
struct Stream {
    next: Box<dyn FnMut() -> Result<(String, WireEvent), String> + Send>,
}

fn stream<W>(mut workload: W, producer: &'static str) -> Stream
where
    W: Workload + Send + 'static,
{
    let mut seq = 0u64;
    Stream {
        next: Box::new(move || {
            let (key, event) = workload.next_event();
            seq += 1;
            let producer = Some(ProducerRef {
                producer: producer.to_owned(),
                seq,
            });
            let wire =
                Client::event::<W::Kind>(&key, &event, producer).map_err(|err| err.to_string())?;
            Ok((format!("{}/{key}", <W::Kind as Behaviour>::KIND), wire))
        }),
    }
}

/// Counts alerts by kind from every node's alert stream.
async fn count_alerts(tcp: String, counts: Arc<std::sync::Mutex<BTreeMap<String, u64>>>) {
    let Ok(client) = Client::connect(&tcp).await else {
        return;
    };
    let Ok(Some(mut alerts)) = client.subscribe(None, None).await else {
        return;
    };
    while let Some(alert) = alerts.recv().await {
        let kind = serde_json::from_str::<serde_json::Value>(&alert)
            .ok()
            .and_then(|a| a["kind"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "?".into());
        if let Ok(mut counts) = counts.lock() {
            *counts.entry(kind).or_default() += 1;
        }
    }
}

async fn demo(args: &DemoArgs) -> Result<bool, String> {
    println!(
        "eddy demo — a 3-node cluster on this machine, three workloads, one node killed halfway\n"
    );
    eprintln!("starting node-1, node-2, node-3 (replication factor 2, acks = all)…");
    let mut cluster = LocalCluster::start(2).await?;
    for (name, addrs) in cluster.names().iter().zip(cluster.addrs()) {
        println!("  {name}  http://{}/v1/cluster", addrs.http);
    }
    let seeds: Vec<String> = cluster.addrs().iter().map(|a| a.tcp.clone()).collect();
    let client = RoutedClient::connect(&seeds, ClientConfig::default())
        .await
        .map_err(|err| err.to_string())?;
    let alerts = Arc::new(std::sync::Mutex::new(BTreeMap::new()));
    for addrs in cluster.addrs() {
        tokio::spawn(count_alerts(addrs.tcp.clone(), alerts.clone()));
    }

    let mut streams = [
        stream(eddy_fraud::FraudWorkload::new(7, 3_000), "demo-fraud"),
        stream(eddy_iot::IotWorkload::new(7, 500), "demo-iot"),
        stream(eddy_vitals::VitalsWorkload::new(7, 200), "demo-vitals"),
    ];
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    let (mut sent, mut acked) = (0u64, 0u64);
    let started = Instant::now();
    let duration = Duration::from_secs(args.seconds.max(2));
    let kill_at = duration / 2;
    let mut killed: Option<(String, Instant)> = None;
    let mut failover: Option<Duration> = None;
    let mut last_progress = Instant::now();
    let mut progress = crate::progress::Progress::stderr();
    while started.elapsed() < duration {
        if killed.is_none() && started.elapsed() >= kill_at {
            let name = cluster.kill(1)?;
            progress.finish(false);
            println!(
                "⚡ {:>5.1} s  SIGKILL {name}: its partitions move to their backups…",
                started.elapsed().as_secs_f64()
            );
            killed = Some((name, Instant::now()));
        }
        let mut batch = Vec::with_capacity(args.batch);
        let mut keys = Vec::with_capacity(args.batch);
        for i in 0..args.batch.max(3) {
            let (key, event) = (streams[i % 3].next)()?;
            keys.push(key);
            batch.push(event);
        }
        sent += batch.len() as u64;
        let ack = client
            .submit_retrying(&batch, Duration::from_secs(30))
            .await
            .map_err(|err| format!("a batch was not acknowledged: {err}"))?;
        if !ack.rejected.is_empty() {
            return Err(format!(
                "{} events refused: {:?}",
                ack.rejected.len(),
                ack.rejected.first()
            ));
        }
        acked += u64::from(ack.accepted + ack.duplicates);
        for key in keys {
            *expected.entry(key).or_default() += 1;
        }
        if let (Some((name, at)), None) = (&killed, failover) {
            let took = at.elapsed();
            failover = Some(took);
            println!(
                "✓ {:>5.1} s  writes flow again {:.2} s after the kill ({name} is gone; its keys are served by the survivors)\n",
                started.elapsed().as_secs_f64(),
                took.as_secs_f64()
            );
        }
        if last_progress.elapsed() >= Duration::from_millis(500) {
            last_progress = Instant::now();
            let alerts_seen: u64 = alerts.lock().map(|a| a.values().sum()).unwrap_or(0);
            progress.show(&format!(
                "{:>5.1} s  events acknowledged {acked:>8}  ({:>6.0}/s)   alerts {alerts_seen:>6}   ",
                started.elapsed().as_secs_f64(),
                acked as f64 / started.elapsed().as_secs_f64()
            ));
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    progress.finish(false);
    eprintln!("reading every key back from the cluster…");
    let survivor = cluster
        .addrs()
        .first()
        .map(|a| a.http.clone())
        .ok_or("no node left")?;
    let (mut applied, mut lost, mut doubled) = (0u64, 0u64, 0u64);
    for (key, count) in &expected {
        // A partition of the killed node may still be moving (a loaded
        // machine): wait for its new owner rather than report an error.
        let url = format!("http://{survivor}/v1/actors/{key}");
        let state = json_when_served(url, Duration::from_secs(30)).await?;
        let events = state["state"]["events"].as_u64().unwrap_or(0);
        applied += events;
        lost += count.saturating_sub(events);
        doubled += events.saturating_sub(*count);
    }
    // Let the last alerts arrive.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let alerts = alerts.lock().map(|a| a.clone()).unwrap_or_default();
    println!("\n  ─────────────────────────────── summary ───────────────────────────────");
    println!(
        "  events sent            {sent:>10}   ({:.0}/s over {elapsed:.0} s)",
        sent as f64 / elapsed
    );
    println!("  acknowledged           {acked:>10}");
    println!(
        "  applied (read back)    {applied:>10}   over {} keys",
        expected.len()
    );
    println!("  lost                   {lost:>10}");
    println!("  applied twice          {doubled:>10}");
    for (kind, count) in &alerts {
        println!("  alerts: {kind:<14} {count:>10}");
    }
    match (&killed, failover) {
        (Some((name, _)), Some(took)) => println!(
            "  failover               {name} SIGKILLed at {:.1} s; writes acknowledged again after {:.2} s",
            kill_at.as_secs_f64(),
            took.as_secs_f64()
        ),
        _ => println!("  failover               (no node was killed: run longer)"),
    }
    let ok = lost == 0 && doubled == 0 && applied == acked;
    println!(
        "  verdict                {}",
        if ok {
            "no acknowledged event lost or applied twice"
        } else {
            "FAILED: see lost / applied twice"
        }
    );
    drop(cluster);
    println!(
        "\nnodes stopped. Run your own: see README.md (a 3-node cluster with config/local-3)."
    );
    Ok(ok)
}
