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

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "eddy_events_received_total",
        "Events accepted for processing after validation"
    );
    describe_counter!(
        "eddy_events_applied_total",
        "Events applied to their key's state"
    );
    describe_counter!(
        "eddy_events_duplicate_total",
        "Events skipped as producer retries"
    );
    describe_counter!("eddy_events_rejected_total", "Events refused, by reason");
    describe_counter!(
        "eddy_handler_panics_total",
        "Handler panics caught; the key kept its state"
    );
    describe_counter!("eddy_timers_fired_total", "Timer firings applied");
    describe_counter!("eddy_alerts_total", "Alerts emitted, by kind");
    describe_counter!(
        "eddy_overload_rejections_total",
        "Requests refused with 429 because a worker was full"
    );
    describe_gauge!("eddy_keys_active", "Keys with decoded state");
    describe_gauge!("eddy_keys_passive", "Keys held encoded");
    describe_gauge!("eddy_timers_pending", "Timers waiting to fire");
    describe_gauge!("eddy_partitions_owned", "Partitions this node owns");
    describe_gauge!(
        "eddy_worker_inflight_events",
        "Events queued or applying, per worker"
    );
    describe_histogram!(
        "eddy_ack_latency_seconds",
        "Time from a batch's arrival to its acknowledgement"
    );
}
