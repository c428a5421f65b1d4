//! `device`: predictive maintenance on telemetry, one virtual actor per device.
//!
//! Each reading names a metric (`temp`, `pressure`, `vibration`, …) and a value.
//! Per metric the device keeps:
//!
//! - **threshold with hysteresis**: metrics with known limits ([`limits`]) raise
//!   [`IotAlert::ThresholdHigh`] once when the value goes above `high` and
//!   [`IotAlert::ThresholdCleared`] only when it falls below `low`; the gap stops
//!   a value hovering at the limit from flapping alerts.
//! - **anomaly**: an exponentially weighted mean and variance; after
//!   [`ANOMALY_MIN_SAMPLES`] readings a value more than [`ANOMALY_Z`] standard
//!   deviations from the mean raises [`IotAlert::Anomaly`]. EWMA rather than a
//!   window keeps the state a few numbers per metric.
//!
//! And per device a **heartbeat**: every reading re-arms a timer
//! [`HEARTBEAT_MS`] ahead; if it fires, the device went silent and
//! [`IotAlert::MissingHeartbeat`] is raised once (the next reading re-arms it).
//! A device tracks at most [`MAX_METRICS`] metrics; readings of further metrics
//! are counted but not analysed, so a misbehaving device cannot grow its state.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod workload;

use compact_str::CompactString;
use eddy_core::{Behaviour, Ctx};
use serde::{Deserialize, Serialize};

pub use workload::IotWorkload;

/// Silence after which a device is reported missing.
pub const HEARTBEAT_MS: u64 = 30_000;
/// Timer tag of the heartbeat.
pub const HEARTBEAT_TAG: u64 = 1;
/// Readings before the anomaly detector trusts its statistics.
pub const ANOMALY_MIN_SAMPLES: u32 = 20;
/// Standard deviations from the mean that count as an anomaly.
pub const ANOMALY_Z: f64 = 4.0;
/// Weight of the newest reading in mean and variance.
pub const EWMA_ALPHA: f64 = 0.1;
/// Metrics analysed per device.
pub const MAX_METRICS: usize = 16;

/// `(high, low)` alarm limits of well-known metrics; `None` for others.
pub fn limits(metric: &str) -> Option<(f64, f64)> {
    match metric {
        "temp" => Some((80.0, 75.0)),
        "pressure" => Some((120.0, 110.0)),
        "vibration" => Some((8.0, 6.0)),
        _ => None,
    }
}

/// The IoT behaviour; kind `device`.
pub struct Iot;

/// A reading: `{"metric": "temp", "value": 71.2}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Reading {
    /// Metric name; inline up to 24 bytes.
    pub metric: CompactString,
    /// The measured value.
    pub value: f64,
    /// How long (ms) the device may stay silent before a
    /// `missing_heartbeat` alert; kept for later readings. Default
    /// [`HEARTBEAT_MS`]; clamped to 100 ms … 24 h.
    #[serde(default)]
    pub heartbeat_ms: Option<u64>,
}

/// Statistics of one metric of one device.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MetricState {
    /// Metric name.
    pub name: CompactString,
    /// Readings seen (saturating).
    pub samples: u32,
    /// Exponentially weighted mean.
    pub mean: f64,
    /// Exponentially weighted variance.
    pub variance: f64,
    /// Whether the high threshold is active (between crossing `high` and
    /// falling below `low`).
    pub high: bool,
}

/// Per-device state.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DeviceState {
    /// Readings applied.
    pub events: u64,
    /// Analysed metrics, in order of first appearance (deterministic).
    pub metrics: Vec<MetricState>,
    /// Readings of metrics beyond [`MAX_METRICS`].
    pub untracked: u64,
    /// Time (ms) of the last reading.
    pub last_seen: u64,
    /// The device's heartbeat period (ms); 0 means [`HEARTBEAT_MS`].
    pub heartbeat_ms: u64,
    /// Heartbeat timers that fired (times the device went silent).
    pub silences: u64,
}

/// What a device reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum IotAlert {
    /// A metric went above its high limit.
    ThresholdHigh {
        /// The metric.
        metric: CompactString,
        /// The value.
        value: f64,
        /// The limit crossed.
        high: f64,
    },
    /// A metric fell back below its low limit.
    ThresholdCleared {
        /// The metric.
        metric: CompactString,
        /// The value.
        value: f64,
        /// The limit.
        low: f64,
    },
    /// A value far from the metric's usual.
    Anomaly {
        /// The metric.
        metric: CompactString,
        /// The value.
        value: f64,
        /// Mean before it.
        mean: f64,
        /// Distance in standard deviations.
        z: f64,
    },
    /// No reading for the device's heartbeat period.
    MissingHeartbeat {
        /// Time (ms) of the last reading.
        last_seen: u64,
    },
}

impl Behaviour for Iot {
    const KIND: &'static str = "device";
    type Event = Reading;
    type State = DeviceState;
    type Alert = IotAlert;

    fn on_event(state: &mut DeviceState, reading: Reading, ctx: &mut Ctx<'_, Self>) {
        state.events += 1;
        state.last_seen = ctx.now().as_millis();
        if let Some(ms) = reading.heartbeat_ms {
            state.heartbeat_ms = ms.clamp(100, 24 * 60 * 60 * 1000);
        }
        let period = match state.heartbeat_ms {
            0 => HEARTBEAT_MS,
            ms => ms,
        };
        ctx.set_timer(ctx.now().plus_ms(period), HEARTBEAT_TAG);

        let index = match state.metrics.iter().position(|m| m.name == reading.metric) {
            Some(index) => index,
            None if state.metrics.len() < MAX_METRICS => {
                state.metrics.push(MetricState {
                    name: reading.metric.clone(),
                    ..MetricState::default()
                });
                state.metrics.len() - 1
            }
            None => {
                state.untracked += 1;
                return;
            }
        };
        let metric = &mut state.metrics[index];
        let value = reading.value;

        if let Some((high, low)) = limits(&metric.name) {
            if !metric.high && value > high {
                metric.high = true;
                ctx.emit(IotAlert::ThresholdHigh {
                    metric: metric.name.clone(),
                    value,
                    high,
                });
            } else if metric.high && value < low {
                metric.high = false;
                ctx.emit(IotAlert::ThresholdCleared {
                    metric: metric.name.clone(),
                    value,
                    low,
                });
            }
        }

        if metric.samples >= ANOMALY_MIN_SAMPLES && metric.variance > 0.0 {
            let z = (value - metric.mean).abs() / metric.variance.sqrt();
            if z > ANOMALY_Z {
                ctx.emit(IotAlert::Anomaly {
                    metric: metric.name.clone(),
                    value,
                    mean: metric.mean,
                    z,
                });
            }
        }
        if metric.samples == 0 {
            metric.mean = value;
        } else {
            // West's incremental EWMA variance.
            let diff = value - metric.mean;
            let increment = EWMA_ALPHA * diff;
            metric.mean += increment;
            metric.variance = (1.0 - EWMA_ALPHA) * (metric.variance + diff * increment);
        }
        metric.samples = metric.samples.saturating_add(1);
    }

    fn on_timer(state: &mut DeviceState, tag: u64, ctx: &mut Ctx<'_, Self>) {
        if tag == HEARTBEAT_TAG {
            state.silences += 1;
            ctx.emit(IotAlert::MissingHeartbeat {
                last_seen: state.last_seen,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eddy_core::Timestamp;
    use eddy_core::testing::KeyHarness;

    fn reading(metric: &str, value: f64) -> Reading {
        Reading {
            metric: metric.into(),
            value,
            heartbeat_ms: None,
        }
    }

    #[test]
    fn design_json_shape_parses() {
        let r: Reading =
            serde_json::from_str(r#"{"metric": "temp", "value": 71.2}"#).expect("parses");
        assert_eq!(r, reading("temp", 71.2));
        assert!(serde_json::from_str::<Reading>(r#"{"metric": "temp"}"#).is_err());
    }

    #[test]
    fn event_and_state_round_trip_through_postcard() {
        let mut key = KeyHarness::<Iot>::new("dev-1");
        key.event(Timestamp(0), reading("temp", 70.0));
        key.event(Timestamp(10), reading("pressure", 100.0));
        let bytes = postcard::to_stdvec(key.state()).expect("encodes");
        assert_eq!(
            &postcard::from_bytes::<DeviceState>(&bytes).expect("decodes"),
            key.state()
        );
        let event = reading("vibration", 3.5);
        let bytes = postcard::to_stdvec(&event).expect("encodes");
        assert_eq!(
            postcard::from_bytes::<Reading>(&bytes).expect("decodes"),
            event
        );
    }

    #[test]
    fn threshold_has_hysteresis() {
        let mut key = KeyHarness::<Iot>::new("dev-1");
        let mut t = 0;
        let mut feed = |key: &mut KeyHarness<Iot>, v: f64| {
            t += 1000;
            key.event(Timestamp(t), reading("temp", v))
        };
        assert!(feed(&mut key, 70.0).is_empty());
        assert!(matches!(
            feed(&mut key, 81.0).as_slice(),
            [IotAlert::ThresholdHigh { .. }]
        ));
        assert!(feed(&mut key, 82.0).is_empty(), "still high: no repeat");
        assert!(
            feed(&mut key, 77.0).is_empty(),
            "inside the hysteresis band"
        );
        assert!(
            feed(&mut key, 81.0).is_empty(),
            "never cleared, so no new alert"
        );
        assert!(matches!(
            feed(&mut key, 74.0).as_slice(),
            [IotAlert::ThresholdCleared { .. }]
        ));
        assert!(feed(&mut key, 74.0).is_empty());
        assert!(matches!(
            feed(&mut key, 80.5).as_slice(),
            [IotAlert::ThresholdHigh { .. }]
        ));
    }

    #[test]
    fn value_exactly_at_limits_does_not_cross() {
        let mut key = KeyHarness::<Iot>::new("dev-1");
        assert!(key.event(Timestamp(0), reading("temp", 80.0)).is_empty());
        key.event(Timestamp(1), reading("temp", 90.0));
        assert!(
            key.event(Timestamp(2), reading("temp", 75.0)).is_empty(),
            "75 is not below 75"
        );
    }

    #[test]
    fn anomaly_needs_history_and_distance() {
        let mut key = KeyHarness::<Iot>::new("dev-1");
        assert!(key.event(Timestamp(0), reading("rpm", 1000.0)).is_empty());
        assert!(
            key.event(Timestamp(1), reading("rpm", 9000.0)).is_empty(),
            "no history"
        );
        let mut key = KeyHarness::<Iot>::new("dev-2");
        for i in 0..40u64 {
            let jitter = if i % 2 == 0 { 10.0 } else { -10.0 };
            let alerts = key.event(Timestamp(i * 1000), reading("rpm", 1000.0 + jitter));
            assert!(alerts.is_empty(), "normal noise at {i}: {alerts:?}");
        }
        assert!(
            key.event(Timestamp(41_000), reading("rpm", 1025.0))
                .is_empty(),
            "within 4 sd"
        );
        let alerts = key.event(Timestamp(42_000), reading("rpm", 1500.0));
        assert!(matches!(alerts.as_slice(), [IotAlert::Anomaly { z, .. }] if *z > ANOMALY_Z));
    }

    #[test]
    fn a_reading_sets_the_devices_heartbeat_period() {
        let mut key = KeyHarness::<Iot>::new("dev-9");
        let first = Reading {
            heartbeat_ms: Some(1_500),
            ..reading("temp", 20.0)
        };
        key.event(Timestamp(0), first);
        assert!(key.advance(Timestamp(1_499)).is_empty());
        assert_eq!(key.advance(Timestamp(1_500)).len(), 1);
        assert_eq!(key.state().silences, 1);
        // Later readings keep the period.
        key.event(Timestamp(2_000), reading("temp", 20.0));
        assert_eq!(key.advance(Timestamp(3_500)).len(), 1);
        assert_eq!(key.state().silences, 2);
    }

    #[test]
    fn heartbeat_fires_once_and_events_rearm_it() {
        let mut key = KeyHarness::<Iot>::new("dev-1");
        key.event(Timestamp(0), reading("temp", 20.0));
        assert!(key.advance(Timestamp(HEARTBEAT_MS - 1)).is_empty());
        key.event(Timestamp(20_000), reading("temp", 20.0));
        assert!(
            key.advance(Timestamp(HEARTBEAT_MS + 1)).is_empty(),
            "re-armed at 20 s"
        );
        let alerts = key.advance(Timestamp(20_000 + HEARTBEAT_MS));
        assert_eq!(
            alerts,
            vec![IotAlert::MissingHeartbeat { last_seen: 20_000 }]
        );
        assert!(
            key.advance(Timestamp(10 * HEARTBEAT_MS)).is_empty(),
            "fires once"
        );
        assert_eq!(key.state().events, 2, "timer firings are not events");
    }

    #[test]
    fn metrics_per_device_are_bounded() {
        let mut key = KeyHarness::<Iot>::new("dev-1");
        for i in 0..(MAX_METRICS + 4) {
            key.event(Timestamp(i as u64), reading(&format!("m{i}"), 1.0));
        }
        assert_eq!(key.state().metrics.len(), MAX_METRICS);
        assert_eq!(key.state().untracked, 4);
        assert_eq!(key.state().events, (MAX_METRICS + 4) as u64);
    }
}
