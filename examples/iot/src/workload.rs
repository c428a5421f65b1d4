//! A seeded stream of device readings: each device reports temperature,
//! pressure and vibration around its own baseline, with occasional excursions
//! over the limits and rare outliers.

use eddy_core::Workload;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{Iot, Reading};

const METRICS: [(&str, f64, f64); 3] = [
    // (name, baseline, noise amplitude)
    ("temp", 65.0, 3.0),
    ("pressure", 100.0, 4.0),
    ("vibration", 4.0, 0.5),
];

/// Deterministic reading generator over `keys` devices.
pub struct IotWorkload {
    rng: ChaCha8Rng,
    keys: u64,
}

impl IotWorkload {
    /// A generator; the same `seed` gives the same stream everywhere.
    pub fn new(seed: u64, keys: u64) -> Self {
        IotWorkload {
            rng: ChaCha8Rng::seed_from_u64(seed),
            keys: keys.max(1),
        }
    }
}

impl Workload for IotWorkload {
    type Kind = Iot;

    fn next_event(&mut self) -> (String, Reading) {
        let device = self.rng.random_range(0..self.keys);
        let (metric, baseline, noise) = METRICS[self.rng.random_range(0..METRICS.len())];
        let mut value = baseline + noise * (self.rng.random::<f64>() * 2.0 - 1.0);
        let roll: f64 = self.rng.random();
        if roll < 0.01 {
            // An excursion: 30% above baseline crosses every metric's high limit.
            value = baseline * 1.3;
        } else if roll < 0.015 {
            value = baseline * 3.0;
        }
        (
            format!("dev-{device}"),
            Reading {
                metric: metric.into(),
                value: (value * 100.0).round() / 100.0,
                heartbeat_ms: None,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eddy_core::Timestamp;
    use eddy_core::testing::KeyHarness;
    use std::collections::HashMap;

    fn take(seed: u64, n: usize) -> Vec<(String, Reading)> {
        let mut workload = IotWorkload::new(seed, 20);
        (0..n).map(|_| workload.next_event()).collect()
    }

    #[test]
    fn same_seed_same_stream() {
        assert_eq!(take(3, 300), take(3, 300));
        assert_ne!(take(3, 300), take(4, 300));
    }

    #[test]
    fn stream_raises_threshold_and_anomaly_alerts() {
        let mut keys: HashMap<String, KeyHarness<Iot>> = HashMap::new();
        let mut reasons = std::collections::BTreeSet::new();
        let mut workload = IotWorkload::new(9, 20);
        for i in 0..20_000u64 {
            let (key, event) = workload.next_event();
            let harness = keys
                .entry(key.clone())
                .or_insert_with(|| KeyHarness::new(&key));
            for alert in harness.event(Timestamp(i * 100), event) {
                reasons.insert(serde_json::to_value(alert).expect("json")["reason"].to_string());
            }
        }
        for reason in ["\"threshold_high\"", "\"threshold_cleared\"", "\"anomaly\""] {
            assert!(
                reasons.contains(reason),
                "{reason} missing from {reasons:?}"
            );
        }
    }
}
