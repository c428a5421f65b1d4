//! A seeded stream of card transactions: mostly ordinary spending in each
//! account's home country, with about 1% anomalies (spikes, foreign use, bursts)
//! so the rules have something to find.

use eddy_core::Workload;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{Country, Fraud, Transaction};

const COUNTRIES: [&str; 8] = ["DE", "FR", "US", "GB", "JP", "BR", "IN", "ZA"];
const BURST_LEN: u32 = 6;

/// Deterministic transaction generator over `keys` accounts.
pub struct FraudWorkload {
    rng: ChaCha8Rng,
    keys: u64,
    /// An account in the middle of a burst and how many are left.
    burst: Option<(u64, u32)>,
}

impl FraudWorkload {
    /// A generator; the same `seed` gives the same stream everywhere
    /// (ChaCha8 is specified, unlike the platform-dependent default RNGs).
    pub fn new(seed: u64, keys: u64) -> Self {
        FraudWorkload {
            rng: ChaCha8Rng::seed_from_u64(seed),
            keys: keys.max(1),
            burst: None,
        }
    }

    fn home(account: u64) -> Country {
        let code = COUNTRIES[(account % COUNTRIES.len() as u64) as usize];
        Country::parse(code).unwrap_or_default()
    }
}

impl Workload for FraudWorkload {
    type Kind = Fraud;

    fn next_event(&mut self) -> (String, Transaction) {
        let account = match self.burst {
            Some((account, left)) => {
                self.burst = (left > 1).then_some((account, left - 1));
                account
            }
            None => self.rng.random_range(0..self.keys),
        };
        let mut amount = (self.rng.random_range(500..15_000) as f64) / 100.0;
        let mut country = Self::home(account);
        let roll: f64 = self.rng.random();
        if roll < 0.004 {
            amount *= self.rng.random_range(20..60) as f64;
        } else if roll < 0.008 {
            country = Self::home(account + 1 + self.rng.random_range(0..6));
        } else if roll < 0.010 && self.burst.is_none() {
            self.burst = Some((account, BURST_LEN));
        }
        let merchant = format!("m-{}", self.rng.random_range(0..500));
        (
            format!("acct-{account}"),
            Transaction {
                amount,
                country,
                merchant: merchant.into(),
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

    fn take(seed: u64, n: usize) -> Vec<(String, Transaction)> {
        let mut workload = FraudWorkload::new(seed, 100);
        (0..n).map(|_| workload.next_event()).collect()
    }

    #[test]
    fn same_seed_same_stream() {
        assert_eq!(take(7, 500), take(7, 500));
        assert_ne!(take(7, 500), take(8, 500));
    }

    #[test]
    fn stream_raises_some_alerts_of_every_reason() {
        let mut keys: HashMap<String, KeyHarness<Fraud>> = HashMap::new();
        let mut reasons = std::collections::BTreeSet::new();
        let mut total = 0;
        let mut workload = FraudWorkload::new(1, 50);
        for i in 0..20_000u64 {
            let (key, event) = workload.next_event();
            let harness = keys
                .entry(key.clone())
                .or_insert_with(|| KeyHarness::new(&key));
            // 5 s between events: a burst of 6 spans 25 s, inside the window.
            for alert in harness.event(Timestamp(i * 5_000), event) {
                total += 1;
                reasons.insert(serde_json::to_value(alert).expect("json")["reason"].to_string());
            }
        }
        assert!(
            total > 20 && total < 2_000,
            "alerts are rare but present: {total}"
        );
        assert_eq!(reasons.len(), 3, "{reasons:?}");
    }
}
