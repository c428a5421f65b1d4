//! `eddy bench`: drives the fraud workload through the binary protocol and
//! prints throughput, acknowledgement latency and ingest→alert latency.
//!
//! Two runs against the same node: one as fast as the client can go (peak),
//! then one paced at half that rate, which is the latency that matters for a
//! node that is not saturated. Without `--addr` it starts a local node as a
//! child process and stops it at the end, also on error.

use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use eddy_client::Client;
use eddy_core::Workload;
use eddy_core::wire::WireEvent;
use eddy_fraud::{Fraud, FraudWorkload};
use hdrhistogram::Histogram;
use tokio::task::JoinSet;

/// Options of `eddy bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Node's binary-protocol address; without it a local node is started.
    #[arg(long)]
    addr: Option<String>,
    /// Events per run.
    #[arg(long, default_value_t = 1_000_000)]
    pub(crate) events: usize,
    /// Distinct accounts.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) keys: u64,
    /// Client connections.
    #[arg(long, default_value_t = 4)]
    pub(crate) connections: usize,
    /// Events per batch.
    #[arg(long, default_value_t = 1_000)]
    pub(crate) batch: usize,
    /// Batches in flight per connection.
    #[arg(long, default_value_t = 8)]
    pub(crate) pipeline: usize,
    /// Instead: peak throughput of a local 3-node cluster with
    /// replication_factor 1, then 2 (acks = all), and their ratio.
    #[arg(long, conflicts_with_all = ["failovers", "durability"])]
    replication: bool,
    /// Instead: peak throughput of a local node without `data_dir`, then
    /// with it under each `fsync` policy (never, 100ms, batch), and the
    /// ratio of each to the first.
    #[arg(long, conflicts_with = "failovers")]
    durability: bool,
    /// Instead: kill a node of a local 3-node cluster this many times (a
    /// different one each time, restarted after): time from kill to the first
    /// acknowledged write on a moved partition, and handoff throughput when
    /// the restarted node takes its partitions back.
    #[arg(long)]
    failovers: Option<usize>,
}

/// A node started by the bench, killed when dropped.
pub(crate) struct LocalNode(Child);

impl LocalNode {
    /// SIGKILL.
    pub(crate) fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for LocalNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Addresses a started node printed.
#[derive(Debug, Clone)]
pub(crate) struct NodeAddrs {
    pub http: String,
    pub tcp: String,
    pub gossip: String,
}

/// Starts `eddy node` on free loopback ports with `--set` pairs; returns
/// once it printed its addresses (it is then ready).
pub(crate) fn start_node(sets: &[String]) -> Result<(LocalNode, NodeAddrs), String> {
    let exe = std::env::current_exe().map_err(|err| err.to_string())?;
    let mut command = Command::new(exe);
    command.args([
        "node",
        "--http-addr",
        "127.0.0.1:0",
        "--tcp-addr",
        "127.0.0.1:0",
        "--gossip-addr",
        "127.0.0.1:0",
        "--peer-addr",
        "127.0.0.1:0",
    ]);
    for set in sets {
        command.args(["--set", set]);
    }
    let mut child = command
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|err| format!("cannot start a node: {err}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let guard = LocalNode(child);
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
        .map_err(|err| err.to_string())?;
    let word = |prefix: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(prefix))
            .map(str::to_owned)
            .ok_or_else(|| format!("unexpected node output: {line}"))
    };
    let addrs = NodeAddrs {
        http: word("http://")?,
        tcp: word("tcp://")?,
        gossip: word("gossip://")?,
    };
    Ok((guard, addrs))
}

fn start_local_node() -> Result<(LocalNode, String), String> {
    let (node, addrs) = start_node(&["name=\"bench\"".to_owned()])?;
    Ok((node, addrs.tcp))
}

/// Where a bench sends batches: connections to one node, or a routing
/// client of a cluster (internally concurrent, shared by all senders).
#[derive(Clone)]
pub(crate) enum Target {
    Node(Arc<Client>),
    Cluster(Arc<eddy_client::RoutedClient>),
}

impl Target {
    async fn submit(&self, batch: &[WireEvent]) -> Result<eddy_client::Ack, String> {
        match self {
            Target::Node(client) => client.submit(batch).await,
            // Under peak load an owner refuses a batch its backup could not
            // confirm in time (503, nothing acknowledged); a client retries
            // such refusals, and so does the bench. Without producer ids a
            // retried part may apply twice: the bench measures throughput,
            // not state.
            Target::Cluster(client) => client.submit_retrying(batch, RETRY_PATIENCE).await,
        }
        .map_err(|err| err.to_string())
    }
}

/// How long a cluster bench keeps retrying a refused batch before it
/// reports the refusal as an error.
const RETRY_PATIENCE: Duration = Duration::from_secs(30);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub(crate) struct RunResult {
    events: usize,
    elapsed: Duration,
    ack_us: Histogram<u64>,
}

/// Sends `batches` over `clients`, at most `pipeline` in flight per client,
/// spaced `interval` apart per client when pacing.
pub(crate) async fn run(
    clients: &[Target],
    batches: &[Arc<Vec<WireEvent>>],
    pipeline: usize,
    interval: Option<Duration>,
    label: &str,
) -> Result<RunResult, String> {
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for (index, client) in clients.iter().enumerate() {
        let client = client.clone();
        let mine: Vec<Arc<Vec<WireEvent>>> = batches
            .iter()
            .skip(index)
            .step_by(clients.len())
            .cloned()
            .collect();
        tasks.spawn(async move {
            let mut histogram = Histogram::<u64>::new(3).map_err(|err| err.to_string())?;
            let mut in_flight = JoinSet::new();
            let mut next_send = Instant::now();
            for batch in mine {
                if let Some(interval) = interval {
                    tokio::time::sleep_until(next_send.into()).await;
                    next_send += interval;
                }
                while in_flight.len() >= pipeline.max(1) {
                    if let Some(done) = in_flight.join_next().await {
                        let us: u64 = done.map_err(|err| err.to_string())??;
                        histogram.record(us.max(1)).map_err(|err| err.to_string())?;
                    }
                }
                let client = client.clone();
                in_flight.spawn(async move {
                    let sent = Instant::now();
                    let ack = client.submit(&batch).await?;
                    if !ack.rejected.is_empty() {
                        return Err(format!("{} events rejected", ack.rejected.len()));
                    }
                    Ok::<u64, String>(sent.elapsed().as_micros() as u64)
                });
            }
            while let Some(done) = in_flight.join_next().await {
                let us: u64 = done.map_err(|err| err.to_string())??;
                histogram.record(us.max(1)).map_err(|err| err.to_string())?;
            }
            Ok::<Histogram<u64>, String>(histogram)
        });
    }
    let total: usize = batches.iter().map(|b| b.len()).sum();
    let mut ack_us = Histogram::<u64>::new(3).map_err(|err| err.to_string())?;
    let mut progress = tokio::time::interval(Duration::from_secs(1));
    progress.tick().await;
    let mut shown = crate::progress::Progress::stderr();
    loop {
        tokio::select! {
            done = tasks.join_next() => match done {
                Some(result) => {
                    let histogram = result.map_err(|err| err.to_string())??;
                    ack_us.add(&histogram).map_err(|err| err.to_string())?;
                }
                None => break,
            },
            _ = progress.tick() => {
                shown.show(&format!("{label}: {:.0} s elapsed of a {total}-event run…", started.elapsed().as_secs_f64()));
            }
        }
    }
    shown.finish(true);
    Ok(RunResult {
        events: total,
        elapsed: started.elapsed(),
        ack_us,
    })
}

pub(crate) fn report(label: &str, result: &RunResult) -> f64 {
    let rate = result.events as f64 / result.elapsed.as_secs_f64();
    let ms = |q: f64| result.ack_us.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{label:<22} {:>10.0} events/s   batch ack latency p50 {:>7.2} ms  p99 {:>7.2} ms  p999 {:>7.2} ms",
        rate,
        ms(0.5),
        ms(0.99),
        ms(0.999)
    );
    rate
}

/// Runs `eddy bench`.
pub fn run_bench(args: BenchArgs) -> ExitCode {
    let Some(runtime) = crate::runtime() else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(bench(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The fraud workload as batches.
pub(crate) fn batches(
    events: usize,
    keys: u64,
    batch: usize,
) -> Result<Vec<Arc<Vec<WireEvent>>>, String> {
    eprintln!("generating {events} fraud events over {keys} accounts…");
    let mut workload = FraudWorkload::new(42, keys);
    let events: Vec<WireEvent> = (0..events)
        .map(|_| {
            let (key, event) = workload.next_event();
            Client::event::<Fraud>(&key, &event, None)
        })
        .collect::<Result<_, _>>()
        .map_err(|err| err.to_string())?;
    Ok(events
        .chunks(batch.max(1))
        .map(|chunk| Arc::new(chunk.to_vec()))
        .collect())
}

async fn bench(args: BenchArgs) -> Result<(), String> {
    if args.replication {
        return crate::bench_cluster::replication(&args).await;
    }
    if args.durability {
        return crate::bench_disk::durability(&args).await;
    }
    if let Some(kills) = args.failovers {
        return crate::bench_cluster::failovers(&args, kills).await;
    }
    let (_local, addr) = match &args.addr {
        Some(addr) => (None, addr.clone()),
        None => {
            let (node, addr) = start_local_node()?;
            (Some(node), addr)
        }
    };
    let mut clients = Vec::new();
    for _ in 0..args.connections.max(1) {
        clients.push(Target::Node(Arc::new(
            Client::connect(&addr)
                .await
                .map_err(|err| err.to_string())?,
        )));
    }
    let batches = batches(args.events, args.keys, args.batch)?;

    // Alerts carry the owner's timestamp; their arrival here gives the
    // ingest→alert latency (same machine, same clock; ms resolution).
    let watcher = Client::connect(&addr)
        .await
        .map_err(|err| err.to_string())?;
    let mut alerts = watcher
        .subscribe(Some("account".into()), None)
        .await
        .map_err(|err| err.to_string())?
        .ok_or("no alert stream")?;
    let alert_ms = Arc::new(std::sync::Mutex::new(
        Histogram::<u64>::new(3).map_err(|err| err.to_string())?,
    ));
    let recorder = alert_ms.clone();
    let alert_task = tokio::spawn(async move {
        while let Some(json) = alerts.recv().await {
            let arrived = now_ms();
            let ts = serde_json::from_str::<serde_json::Value>(&json)
                .ok()
                .and_then(|alert| alert["ts"].as_u64());
            if let (Some(ts), Ok(mut histogram)) = (ts, recorder.lock()) {
                let _ = histogram.record(arrived.saturating_sub(ts));
            }
        }
    });

    println!(
        "eddy bench: {} events, {} accounts, {} connections, batches of {}, {} in flight per connection",
        args.events, args.keys, args.connections, args.batch, args.pipeline
    );
    let peak = run(&clients, &batches, args.pipeline, None, "peak").await?;
    let peak_rate = report("peak", &peak);
    let per_client_rate = peak_rate / 2.0 / clients.len() as f64;
    let interval = Duration::from_secs_f64(args.batch.max(1) as f64 / per_client_rate.max(1.0));
    let half = run(
        &clients,
        &batches,
        args.pipeline,
        Some(interval),
        "half of peak",
    )
    .await?;
    report("at half of peak rate", &half);
    // Let the last alerts arrive.
    tokio::time::sleep(Duration::from_millis(300)).await;
    alert_task.abort();
    drop(watcher);
    let histogram = alert_ms.lock().map(|h| h.clone()).ok();
    match histogram {
        Some(h) if !h.is_empty() => println!(
            "ingest→alert latency   {} alerts   p50 {} ms  p99 {} ms  max {} ms",
            h.len(),
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h.max()
        ),
        _ => println!("ingest→alert latency   (no alerts observed)"),
    }
    Ok(())
}
