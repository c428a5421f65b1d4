//! `account`: card-fraud detection, one virtual actor per account.
//!
//! Three rules run on every transaction, each raising a [`FraudAlert`] with its
//! reason:
//!
//! - **velocity**: [`VELOCITY_COUNT`] or more transactions within
//!   [`VELOCITY_WINDOW_MS`] (card testing and cash-out bursts). It fires once when
//!   a burst reaches the count, not again for every further transaction of the
//!   same burst.
//! - **amount spike**: an amount above [`SPIKE_FACTOR`] times the account's
//!   exponentially weighted moving average, once the account has
//!   [`SPIKE_MIN_HISTORY`] transactions (too little history gives a meaningless
//!   average) and the amount is at least [`SPIKE_MIN_AMOUNT`] (a 5× spike from 2
//!   to 10 is not fraud worth a look).
//! - **impossible travel**: a different country than the previous transaction
//!   within [`TRAVEL_MIN_MS`] — nobody crosses borders that fast with a card in
//!   hand.
//!
//! The state is small and fixed in size (a ring of recent timestamps, the EWMA,
//! the last country), so a decoded event and a state update never allocate:
//! this behaviour is the engine benchmark's workload.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod country;
mod workload;

use compact_str::CompactString;
use eddy_core::{Behaviour, Ctx};
use serde::{Deserialize, Serialize};

pub use country::Country;
pub use workload::FraudWorkload;

/// Transactions within the window that count as a burst.
pub const VELOCITY_COUNT: usize = 5;
/// The velocity window.
pub const VELOCITY_WINDOW_MS: u64 = 60_000;
/// How far above the moving average an amount must be to alert.
pub const SPIKE_FACTOR: f64 = 5.0;
/// Transactions needed before the average is trusted.
pub const SPIKE_MIN_HISTORY: u64 = 5;
/// Smallest amount that can be a spike.
pub const SPIKE_MIN_AMOUNT: f64 = 100.0;
/// Weight of the newest amount in the moving average (about the last 10 count).
pub const EWMA_ALPHA: f64 = 0.2;
/// A country change faster than this is impossible travel (one hour).
pub const TRAVEL_MIN_MS: u64 = 60 * 60 * 1000;

/// The fraud behaviour; kind `account`.
pub struct Fraud;

/// A card transaction: `{"amount": 42.5, "country": "DE", "merchant": "m-17"}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Transaction {
    /// Amount in the account's currency.
    pub amount: f64,
    /// Where the card was used.
    pub country: Country,
    /// Merchant id; inline up to 24 bytes, so decoding does not allocate.
    #[serde(default)]
    pub merchant: CompactString,
}

/// Per-account state.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AccountState {
    /// Transactions applied.
    pub events: u64,
    /// Times (ms) of the last [`VELOCITY_COUNT`] transactions, a ring.
    pub recent: [u64; VELOCITY_COUNT],
    /// Next slot of `recent` to overwrite.
    pub recent_next: u8,
    /// Whether the current burst was already reported.
    pub in_burst: bool,
    /// Moving average of amounts.
    pub ewma: f64,
    /// Country of the previous transaction.
    pub last_country: Country,
    /// Time (ms) of the previous transaction.
    pub last_ts: u64,
}

/// Why an account looks fraudulent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum FraudAlert {
    /// Too many transactions too fast.
    Velocity {
        /// Transactions in the window.
        count: u32,
        /// The window.
        window_ms: u64,
    },
    /// An amount far above the account's usual.
    AmountSpike {
        /// The transaction's amount.
        amount: f64,
        /// The moving average before it.
        typical: f64,
    },
    /// A country change faster than travel allows.
    ImpossibleTravel {
        /// Previous country.
        from: Country,
        /// This transaction's country.
        to: Country,
        /// Minutes between the two.
        minutes: u64,
    },
}

impl Behaviour for Fraud {
    const KIND: &'static str = "account";
    type Event = Transaction;
    type State = AccountState;
    type Alert = FraudAlert;

    fn on_event(state: &mut AccountState, tx: Transaction, ctx: &mut Ctx<'_, Self>) {
        let now = ctx.now().as_millis();
        let first = state.events == 0;
        state.events += 1;

        // Velocity: the ring holds the last VELOCITY_COUNT times; when the oldest
        // of them is inside the window, the window holds at least that many.
        let slot = usize::from(state.recent_next) % VELOCITY_COUNT;
        state.recent[slot] = now;
        state.recent_next = ((slot + 1) % VELOCITY_COUNT) as u8;
        let oldest = state.recent[usize::from(state.recent_next)];
        let burst = state.events >= VELOCITY_COUNT as u64
            && now.saturating_sub(oldest) <= VELOCITY_WINDOW_MS;
        if burst && !state.in_burst {
            ctx.emit(FraudAlert::Velocity {
                count: VELOCITY_COUNT as u32,
                window_ms: VELOCITY_WINDOW_MS,
            });
        }
        state.in_burst = burst;

        if state.events > SPIKE_MIN_HISTORY
            && tx.amount >= SPIKE_MIN_AMOUNT
            && tx.amount > SPIKE_FACTOR * state.ewma
        {
            ctx.emit(FraudAlert::AmountSpike {
                amount: tx.amount,
                typical: state.ewma,
            });
        }
        state.ewma = if first {
            tx.amount
        } else {
            EWMA_ALPHA * tx.amount + (1.0 - EWMA_ALPHA) * state.ewma
        };

        if !first
            && !state.last_country.is_unknown()
            && !tx.country.is_unknown()
            && tx.country != state.last_country
            && now.saturating_sub(state.last_ts) < TRAVEL_MIN_MS
        {
            ctx.emit(FraudAlert::ImpossibleTravel {
                from: state.last_country,
                to: tx.country,
                minutes: now.saturating_sub(state.last_ts) / 60_000,
            });
        }
        if !tx.country.is_unknown() {
            state.last_country = tx.country;
        }
        state.last_ts = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eddy_core::Timestamp;
    use eddy_core::testing::KeyHarness;

    const MINUTE: u64 = 60_000;

    fn tx(amount: f64, country: &str) -> Transaction {
        Transaction {
            amount,
            country: Country::parse(country).expect("valid code"),
            merchant: "m-1".into(),
        }
    }

    fn at(minutes: u64) -> Timestamp {
        Timestamp(1_700_000_000_000 + minutes * MINUTE)
    }

    fn reasons(alerts: &[FraudAlert]) -> Vec<&'static str> {
        alerts
            .iter()
            .map(|a| match a {
                FraudAlert::Velocity { .. } => "velocity",
                FraudAlert::AmountSpike { .. } => "spike",
                FraudAlert::ImpossibleTravel { .. } => "travel",
            })
            .collect()
    }

    #[test]
    fn design_json_shape_parses() {
        let event: Transaction =
            serde_json::from_str(r#"{"amount": 42.5, "country": "DE", "merchant": "m-17"}"#)
                .expect("parses");
        assert_eq!(event.amount, 42.5);
        assert_eq!(event.country.as_str(), "DE");
        assert_eq!(event.merchant, "m-17");
        let without_merchant: Transaction =
            serde_json::from_str(r#"{"amount": 1, "country": "FR"}"#).expect("merchant optional");
        assert_eq!(without_merchant.merchant, "");
        assert!(serde_json::from_str::<Transaction>(r#"{"country": "DE"}"#).is_err());
    }

    #[test]
    fn event_and_state_round_trip_through_postcard() {
        let event = tx(12.5, "DE");
        let bytes = postcard::to_stdvec(&event).expect("encodes");
        assert_eq!(
            postcard::from_bytes::<Transaction>(&bytes).expect("decodes"),
            event
        );
        let mut key = KeyHarness::<Fraud>::new("acct-1");
        key.event(at(0), tx(10.0, "DE"));
        key.event(at(1), tx(20.0, "DE"));
        let bytes = postcard::to_stdvec(key.state()).expect("encodes");
        assert!(bytes.len() < 80, "state stays small: {} bytes", bytes.len());
        assert_eq!(
            &postcard::from_bytes::<AccountState>(&bytes).expect("decodes"),
            key.state()
        );
    }

    #[test]
    fn velocity_fires_once_per_burst() {
        let mut key = KeyHarness::<Fraud>::new("acct-1");
        let mut all = Vec::new();
        for second in 0..4 {
            all.extend(key.event(Timestamp(second * 1000), tx(10.0, "DE")));
        }
        assert!(all.is_empty(), "four in a minute is fine");
        assert_eq!(
            reasons(&key.event(Timestamp(4000), tx(10.0, "DE"))),
            vec!["velocity"]
        );
        assert!(
            key.event(Timestamp(5000), tx(10.0, "DE")).is_empty(),
            "same burst"
        );
        // Quiet for a while, then a new burst alerts again.
        for minute in 0..5 {
            key.event(Timestamp(10 * MINUTE + minute * 2 * MINUTE), tx(10.0, "DE"));
        }
        let mut burst = Vec::new();
        for second in 0..5 {
            burst.extend(key.event(Timestamp(30 * MINUTE + second * 1000), tx(10.0, "DE")));
        }
        assert_eq!(reasons(&burst), vec!["velocity"]);
    }

    #[test]
    fn slow_transactions_never_trip_velocity() {
        let mut key = KeyHarness::<Fraud>::new("acct-1");
        for minute in 0..20 {
            assert!(key.event(at(minute * 2), tx(10.0, "DE")).is_empty());
        }
        assert_eq!(key.state().events, 20);
    }

    #[test]
    fn amount_spike_needs_history_and_size() {
        let mut key = KeyHarness::<Fraud>::new("acct-1");
        assert!(key.event(at(0), tx(50.0, "DE")).is_empty());
        assert!(
            key.event(at(10), tx(5000.0, "DE")).is_empty(),
            "no history yet"
        );
        let mut key = KeyHarness::<Fraud>::new("acct-2");
        for i in 0..6 {
            key.event(at(i * 10), tx(50.0, "DE"));
        }
        assert!(key.event(at(70), tx(240.0, "DE")).is_empty(), "below 5x");
        let alerts = key.event(at(80), tx(2000.0, "DE"));
        assert_eq!(reasons(&alerts), vec!["spike"]);
        let mut small = KeyHarness::<Fraud>::new("acct-3");
        for i in 0..6 {
            small.event(at(i * 10), tx(2.0, "DE"));
        }
        assert!(
            small.event(at(70), tx(50.0, "DE")).is_empty(),
            "below minimum amount"
        );
    }

    #[test]
    fn impossible_travel_depends_on_elapsed_time() {
        let mut key = KeyHarness::<Fraud>::new("acct-1");
        key.event(at(0), tx(10.0, "DE"));
        let alerts = key.event(at(30), tx(10.0, "US"));
        assert_eq!(
            alerts,
            vec![FraudAlert::ImpossibleTravel {
                from: Country::parse("DE").expect("valid"),
                to: Country::parse("US").expect("valid"),
                minutes: 30,
            }]
        );
        assert!(
            key.event(at(30 + 61), tx(10.0, "FR")).is_empty(),
            "over an hour later"
        );
        assert!(
            key.event(at(100), tx(10.0, "FR")).is_empty(),
            "same country"
        );
    }

    #[test]
    fn alert_json_names_the_reason() {
        let json = serde_json::to_value(FraudAlert::Velocity {
            count: 5,
            window_ms: 60_000,
        })
        .expect("json");
        assert_eq!(json["reason"], "velocity");
    }
}
