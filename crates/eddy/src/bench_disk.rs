//! `eddy bench --durability`: what `data_dir` and each `fsync` policy cost.
//!
//! Four fresh single-node runs of the same workload, back to back on the
//! same machine: without `data_dir` (the baseline), then with it under
//! `fsync = "never"`, `"100ms"` and `"batch"`. Each prints its peak
//! throughput and acknowledgement latency, and its ratio to the baseline.
//! The data directories are temporary and removed at the end.

use std::sync::Arc;

use eddy_client::Client;

use crate::bench::{BenchArgs, Target, batches, report, run, start_node};

/// `eddy bench --durability`.
pub async fn durability(args: &BenchArgs) -> Result<(), String> {
    println!(
        "eddy bench --durability: one local node per run, {} events, {} accounts, {} connections, batches of {}, {} in flight each",
        args.events, args.keys, args.connections, args.batch, args.pipeline
    );
    let batches = batches(args.events, args.keys, args.batch)?;
    let root = std::env::temp_dir().join(format!("eddy-bench-durability-{}", std::process::id()));
    let runs: [(&str, Option<&str>); 4] = [
        ("no data_dir", None),
        ("fsync = never", Some("never")),
        ("fsync = 100ms", Some("100ms")),
        ("fsync = batch", Some("batch")),
    ];
    let mut baseline = None;
    let mut outcome = Ok(());
    for (label, fsync) in runs {
        let mut sets = vec!["name=\"bench\"".to_owned()];
        if let Some(fsync) = fsync {
            let dir = root.join(fsync);
            sets.push(format!("data_dir=\"{}\"", dir.display()));
            sets.push(format!("fsync=\"{fsync}\""));
        }
        let (node, addrs) = match start_node(&sets) {
            Ok(started) => started,
            Err(err) => {
                outcome = Err(err);
                break;
            }
        };
        let mut clients = Vec::new();
        for _ in 0..args.connections.max(1) {
            let client = Client::connect(&addrs.tcp)
                .await
                .map_err(|err| err.to_string())?;
            clients.push(Target::Node(Arc::new(client)));
        }
        let result = run(&clients, &batches, args.pipeline, None, label).await;
        drop(clients);
        drop(node);
        let rate = match result {
            Ok(result) => report(label, &result),
            Err(err) => {
                outcome = Err(format!("{label}: {err}"));
                break;
            }
        };
        let base = *baseline.get_or_insert(rate);
        println!("{:<22} {:>10.2}× the run without data_dir", "", rate / base);
    }
    let _ = std::fs::remove_dir_all(&root);
    outcome
}
