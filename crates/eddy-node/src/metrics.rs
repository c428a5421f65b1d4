//! Prometheus metrics: one recorder per process, rendered on `GET /metrics`.
//! Names and meanings are catalogued in `docs/METRICS.md`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the recorder on first use and returns the render handle. `None` if
/// another recorder was installed first (an embedding application's own).
pub fn handle() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
                    0.25, 0.5, 1.0,
                ])
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            Some(handle)
        })
        .clone()
}

/// Kind of a metric in [`CATALOG`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Distribution (a Prometheus histogram with the buckets above).
    Histogram,
}

/// Every metric a node exports: name, kind, labels, meaning. The one list
/// behind the `# HELP` lines and docs/METRICS.md (a test keeps the code, this
/// list and the page in step).
pub const CATALOG: &[(&str, Kind, &str, &str)] = &[
    (
        "eddy_connections_refused_total",
        Kind::Counter,
        "port",
        "Connections closed at once at max_connections or max_connections_per_source",
    ),
    (
        "eddy_accept_errors_total",
        Kind::Counter,
        "port",
        "Failed accept calls (e.g. EMFILE); each backs off 10 ms doubling to 1 s",
    ),
    (
        "eddy_frame_budget_exceeded_total",
        Kind::Counter,
        "",
        "Connections closed because undecoded frames of their port exceeded max_partial_frame_bytes",
    ),
    (
        "eddy_frame_timeouts_total",
        Kind::Counter,
        "",
        "Connections closed because a frame did not arrive whole within frame_read_timeout_ms",
    ),
    (
        "eddy_http_timeouts_total",
        Kind::Counter,
        "what",
        "HTTP connections cut off: header (headers or idle keep-alive) or body",
    ),
    (
        "eddy_events_received_total",
        Kind::Counter,
        "",
        "Events accepted for processing after validation",
    ),
    (
        "eddy_events_applied_total",
        Kind::Counter,
        "",
        "Events applied to their key's state on this node (as owner)",
    ),
    (
        "eddy_events_duplicate_total",
        Kind::Counter,
        "",
        "Events skipped as producer retries",
    ),
    (
        "eddy_events_rejected_total",
        Kind::Counter,
        "reason",
        "Events refused while applying, by reason",
    ),
    (
        "eddy_handler_panics_total",
        Kind::Counter,
        "",
        "Handler panics caught; the key kept its state",
    ),
    (
        "eddy_timers_fired_total",
        Kind::Counter,
        "",
        "Timer firings applied",
    ),
    (
        "eddy_alerts_total",
        Kind::Counter,
        "kind",
        "Alerts published, by kind",
    ),
    (
        "eddy_alerts_dropped_total",
        Kind::Counter,
        "",
        "Timer alerts not published because their firing was not confirmed by every backup",
    ),
    (
        "eddy_overload_rejections_total",
        Kind::Counter,
        "",
        "Requests refused with 429 because a worker was full",
    ),
    (
        "eddy_route_retries_total",
        Kind::Counter,
        "",
        "Routing rounds repeated because an owner did not take events",
    ),
    (
        "eddy_no_quorum_refusals_total",
        Kind::Counter,
        "",
        "Writes refused because this node is no committed member of the cluster",
    ),
    (
        "eddy_protocol_errors_total",
        Kind::Counter,
        "port",
        "Bad frames and requests, by port (tcp, peer): a frame that does not decode (the connection closes), a refused peer link, or a peer request refused as malformed (partition out of range, unknown kind, invalid events)",
    ),
    (
        "eddy_gossip_bad_datagrams_total",
        Kind::Counter,
        "",
        "Datagrams dropped on the gossip port (undecodable, or not opening with the gossip key)",
    ),
    (
        "eddy_tls_handshake_failures_total",
        Kind::Counter,
        "port",
        "Connections refused in the TLS handshake (a plaintext client, a certificate the cluster CA did not sign, a timeout)",
    ),
    (
        "eddy_members_unverified_total",
        Kind::Counter,
        "",
        "Certificate checks of a gossiped member that failed; it is not admitted until one succeeds",
    ),
    (
        "eddy_members_down_total",
        Kind::Counter,
        "",
        "Members declared down",
    ),
    (
        "eddy_members_refused_total",
        Kind::Counter,
        "",
        "Nodes refused for another partition count or protocol",
    ),
    (
        "eddy_controller_leader",
        Kind::Gauge,
        "",
        "1 while this node is the controller's Raft leader, else 0",
    ),
    (
        "eddy_controller_committed_index",
        Kind::Gauge,
        "",
        "Last committed controller log index this node applied (or learned, on a non-voter)",
    ),
    (
        "eddy_controller_bad_frames_total",
        Kind::Counter,
        "",
        "Controller messages or Raft frames refused as undecodable or implausible",
    ),
    (
        "eddy_controller_dropped_frames_total",
        Kind::Counter,
        "",
        "Raft frames dropped because no replica runs here or its queue was full",
    ),
    (
        "eddy_promotions_total",
        Kind::Counter,
        "",
        "Partitions this node took over from its own copy (failover)",
    ),
    (
        "eddy_isr_shrinks_proposed_total",
        Kind::Counter,
        "",
        "ISR shrinks this node proposed as owner because a needed backup did not confirm a write (under a controller)",
    ),
    (
        "eddy_writes_refused_short_total",
        Kind::Counter,
        "",
        "Batches this node refused before applying them because a partition it owns has fewer in-sync copies than min_insync_replicas",
    ),
    (
        "eddy_isr_expansions_proposed_total",
        Kind::Counter,
        "",
        "Backups this node proposed into an ISR as owner once they held everything acknowledged",
    ),
    (
        "eddy_isr_expansions_lost_total",
        Kind::Counter,
        "",
        "Expansions this node proposed as owner that did not commit in time (a leader change, a broken connection); each is proposed again at the backup's next confirmation",
    ),
    (
        "eddy_takeovers_without_copy_total",
        Kind::Counter,
        "",
        "Elections of this node that it could not serve: it holds no copy of the partition, and hands it to another in-sync member if there is one (else the partition stays offline: a never-written partition whose first ISR changed before any member held its empty copy)",
    ),
    (
        "eddy_peer_writes_held_total",
        Kind::Counter,
        "",
        "Replication messages held because their epoch was newer than this node's committed configuration (a new owner's first writes, before its election reached this node)",
    ),
    (
        "eddy_peer_writes_refused_total",
        Kind::Counter,
        "reason",
        "Replication messages refused unapplied: `unknown_epoch` (the configuration never showed their epoch within 1.5 s: forged, or this node's configuration is stuck), `budget` (too many held), `deposed` (a newer owner is known: the committed configuration or this node's copy moved past the sender's epoch)",
    ),
    (
        "eddy_stale_takes_refused_total",
        Kind::Counter,
        "",
        "Ownerships this node did not take because it knew a newer owner than its configuration (say, resumed from a pause before the new configuration arrived)",
    ),
    (
        "eddy_partitions_offline_damaged_total",
        Kind::Counter,
        "",
        "Checks that found a partition offline: this node's copy is damaged and no other in-sync copy is live",
    ),
    (
        "eddy_snapshot_bytes_sent_total",
        Kind::Counter,
        "",
        "Snapshot bytes sent (backup sync and handoff)",
    ),
    (
        "eddy_snapshot_bytes_received_total",
        Kind::Counter,
        "",
        "Snapshot bytes received",
    ),
    (
        "eddy_worker_restarts_total",
        Kind::Counter,
        "",
        "Partition workers restarted after a failure",
    ),
    (
        "eddy_storage_write_errors_total",
        Kind::Counter,
        "",
        "Failed writes to the data directory (each one fails its batch)",
    ),
    (
        "eddy_http_refused_total",
        Kind::Counter,
        "",
        "HTTP writes refused for their origin or content type",
    ),
    (
        "eddy_auth_refused_total",
        Kind::Counter,
        "port, outcome",
        "Requests refused for their API token: none or unknown (`unauthenticated`) or too low a role (`forbidden`)",
    ),
    (
        "eddy_token_reloads_total",
        Kind::Counter,
        "outcome",
        "Reloads of the tokens file (SIGHUP): `ok`, or `failed` (the previous tokens stay in force)",
    ),
    (
        "eddy_storage_queue_full_total",
        Kind::Counter,
        "",
        "Times a worker waited because the storage writer was behind",
    ),
    (
        "eddy_storage_damaged_total",
        Kind::Counter,
        "",
        "Damaged or torn files found when loading the data directory",
    ),
    (
        "eddy_keys_active",
        Kind::Gauge,
        "worker",
        "Keys with decoded state, per worker",
    ),
    (
        "eddy_keys_passive",
        Kind::Gauge,
        "worker",
        "Keys held encoded, per worker",
    ),
    (
        "eddy_timers_pending",
        Kind::Gauge,
        "worker",
        "Timers waiting to fire, per worker",
    ),
    (
        "eddy_partitions_owned",
        Kind::Gauge,
        "",
        "Partitions the table gives this node as owner",
    ),
    (
        "eddy_cluster_members_up",
        Kind::Gauge,
        "",
        "Members up in this node's view",
    ),
    (
        "eddy_ack_latency_seconds",
        Kind::Histogram,
        "",
        "Time from a batch's arrival to its acknowledgement",
    ),
    (
        "eddy_forward_latency_seconds",
        Kind::Histogram,
        "",
        "Round trip of a batch forwarded to its owner",
    ),
    (
        "eddy_replication_latency_seconds",
        Kind::Histogram,
        "",
        "Wait for the backups to confirm a batch (acks = all)",
    ),
];

fn describe() {
    for &(name, kind, _, help) in CATALOG {
        match kind {
            Kind::Counter => metrics::describe_counter!(name, help),
            Kind::Gauge => metrics::describe_gauge!(name, help),
            Kind::Histogram => metrics::describe_histogram!(name, help),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every metric recorded anywhere in the node is in the catalog, and
    /// docs/METRICS.md lists every catalog entry with its kind.
    #[test]
    fn catalog_code_and_docs_agree() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut used = std::collections::BTreeSet::new();
        for entry in std::fs::read_dir(&src).expect("src dir") {
            let path = entry.expect("entry").path();
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(path).expect("source");
            for macro_name in ["counter!(", "gauge!(", "histogram!("] {
                for (at, _) in text.match_indices(macro_name) {
                    let rest = text[at + macro_name.len()..].trim_start();
                    if let Some(name) = rest
                        .strip_prefix('"')
                        .and_then(|r| r.split('"').next())
                        .filter(|n| n.starts_with("eddy_"))
                    {
                        used.insert(name.to_owned());
                    }
                }
            }
        }
        let listed: std::collections::BTreeSet<String> = CATALOG
            .iter()
            .map(|(name, ..)| (*name).to_owned())
            .collect();
        assert!(used.len() > 20, "the scan finds the metrics: {used:?}");
        let missing: Vec<_> = used.difference(&listed).collect();
        assert!(
            missing.is_empty(),
            "recorded but not in CATALOG: {missing:?}"
        );
        let unused: Vec<_> = listed.difference(&used).collect();
        assert!(
            unused.is_empty(),
            "in CATALOG but never recorded: {unused:?}"
        );
        let page = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/METRICS.md"),
        )
        .expect("docs/METRICS.md");
        for (name, kind, ..) in CATALOG {
            let row = page
                .lines()
                .find(|l| l.starts_with(&format!("| `{name}`")))
                .unwrap_or_else(|| panic!("docs/METRICS.md lacks {name}"));
            let kind = format!("{kind:?}").to_lowercase();
            assert!(row.contains(&kind), "{name} is a {kind}: {row}");
        }
    }

    /// The shipped Grafana dashboard queries only metrics that exist, so a
    /// rename cannot leave it showing empty panels.
    #[test]
    fn grafana_dashboard_uses_catalogued_metrics() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/grafana/eddy.json");
        let text = std::fs::read_to_string(&path).expect("config/grafana/eddy.json");
        let dashboard: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        let panels = dashboard["panels"].as_array().expect("panels");
        let mut queried = 0;
        for panel in panels {
            for target in panel["targets"].as_array().expect("targets") {
                let expr = target["expr"].as_str().expect("expr");
                let names = expr
                    .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .filter(|w| w.starts_with("eddy_"));
                for name in names {
                    let base = ["_bucket", "_sum", "_count"]
                        .iter()
                        .find_map(|suffix| name.strip_suffix(suffix))
                        .unwrap_or(name);
                    assert!(
                        CATALOG.iter().any(|(n, ..)| *n == base),
                        "panel `{}` queries unknown metric {name}",
                        panel["title"]
                    );
                    queried += 1;
                }
            }
        }
        assert!(queried >= 10, "the dashboard queries metrics ({queried})");
    }
}
