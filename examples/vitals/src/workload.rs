//! A seeded stream of ward observations: most patients stable, about 2% of
//! observation sets from deteriorating patients.

use eddy_core::Workload;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{Consciousness, Observation, Vitals};

/// Deterministic observation generator over `keys` patients.
pub struct VitalsWorkload {
    rng: ChaCha8Rng,
    keys: u64,
}

impl VitalsWorkload {
    /// A generator; the same `seed` gives the same stream everywhere.
    pub fn new(seed: u64, keys: u64) -> Self {
        VitalsWorkload {
            rng: ChaCha8Rng::seed_from_u64(seed),
            keys: keys.max(1),
        }
    }
}

impl Workload for VitalsWorkload {
    type Kind = Vitals;

    fn next_event(&mut self) -> (String, Observation) {
        let patient = self.rng.random_range(0..self.keys);
        let unwell = self.rng.random::<f64>() < 0.02;
        let obs = if unwell {
            Observation {
                resp_rate: self.rng.random_range(20..30),
                spo2: self.rng.random_range(88..95),
                on_oxygen: self.rng.random_bool(0.5),
                temp: f64::from(self.rng.random_range(375..400_u32)) / 10.0,
                systolic: self.rng.random_range(85..110),
                heart_rate: self.rng.random_range(100..140),
                consciousness: if self.rng.random_bool(0.2) {
                    Consciousness::C
                } else {
                    Consciousness::A
                },
            }
        } else {
            Observation {
                resp_rate: self.rng.random_range(12..20),
                spo2: self.rng.random_range(96..100),
                on_oxygen: false,
                temp: f64::from(self.rng.random_range(362..378_u32)) / 10.0,
                systolic: self.rng.random_range(112..140),
                heart_rate: self.rng.random_range(55..90),
                consciousness: Consciousness::A,
            }
        };
        (format!("pat-{patient}"), obs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eddy_core::Timestamp;
    use eddy_core::testing::KeyHarness;
    use std::collections::HashMap;

    fn take(seed: u64, n: usize) -> Vec<(String, Observation)> {
        let mut workload = VitalsWorkload::new(seed, 30);
        (0..n).map(|_| workload.next_event()).collect()
    }

    #[test]
    fn same_seed_same_stream() {
        assert_eq!(take(5, 300), take(5, 300));
        assert_ne!(take(5, 300), take(6, 300));
    }

    #[test]
    fn stream_raises_both_kinds_of_alert() {
        let mut keys: HashMap<String, KeyHarness<Vitals>> = HashMap::new();
        let (mut risk, mut red) = (0, 0);
        let mut workload = VitalsWorkload::new(2, 30);
        for i in 0..5_000u64 {
            let (key, event) = workload.next_event();
            let harness = keys
                .entry(key.clone())
                .or_insert_with(|| KeyHarness::new(&key));
            for alert in harness.event(Timestamp(i), event) {
                match alert {
                    crate::VitalsAlert::RiskRaised { .. } => risk += 1,
                    crate::VitalsAlert::RedScore { .. } => red += 1,
                }
            }
        }
        assert!(risk > 5 && red > 5, "risk {risk}, red {red}");
        assert!(risk + red < 1_000, "alerts stay rare");
    }
}
