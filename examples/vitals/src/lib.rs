//! `patient`: vital-sign monitoring with the NEWS2 early-warning score, one
//! virtual actor per patient.
//!
//! Every set of observations is scored ([`news2_score`]). Alerts:
//!
//! - [`VitalsAlert::RiskRaised`] when the risk band rises into medium or high
//!   ([`Risk`]). It fires on the rise, not on every observation while the band
//!   stays there: the ward already knows, and repeated pages are how alarms get
//!   ignored. A fall and a later rise alert again.
//! - [`VitalsAlert::RedScore`] when a parameter newly scores 3 (one "red"
//!   parameter alone calls for an urgent response), naming the parameters.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod news2;
mod workload;

use eddy_core::{Behaviour, Ctx};
use serde::{Deserialize, Serialize};

pub use news2::{
    Consciousness, Observation, PARAMETERS, Risk, Score, consciousness_score, heart_rate_score,
    news2_score, oxygen_score, resp_rate_score, spo2_score, systolic_score, temp_score,
};
pub use workload::VitalsWorkload;

/// The vitals behaviour; kind `patient`.
pub struct Vitals;

/// Per-patient state.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PatientState {
    /// Observation sets applied.
    pub events: u64,
    /// Aggregate score of the last observation set.
    pub last_score: u8,
    /// Risk band of the last observation set.
    pub risk: Risk,
    /// Parameters that scored 3 last time (bit per [`PARAMETERS`] index).
    pub red_mask: u8,
}

/// What the ward is told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum VitalsAlert {
    /// The risk band rose into medium or high.
    RiskRaised {
        /// Previous band.
        from: Risk,
        /// New band.
        to: Risk,
        /// Aggregate NEWS2 score.
        score: u8,
    },
    /// Parameters newly scoring 3.
    RedScore {
        /// Their names.
        parameters: Vec<String>,
        /// Aggregate NEWS2 score.
        score: u8,
    },
}

impl Behaviour for Vitals {
    const KIND: &'static str = "patient";
    type Event = Observation;
    type State = PatientState;
    type Alert = VitalsAlert;

    fn on_event(state: &mut PatientState, obs: Observation, ctx: &mut Ctx<'_, Self>) {
        state.events += 1;
        let score = news2_score(&obs);
        let total = score.total();
        let risk = score.risk();
        if risk >= Risk::Medium && risk > state.risk {
            ctx.emit(VitalsAlert::RiskRaised {
                from: state.risk,
                to: risk,
                score: total,
            });
        }
        let red = score.red_mask();
        let newly_red = red & !state.red_mask;
        if newly_red != 0 {
            let parameters = PARAMETERS
                .iter()
                .enumerate()
                .filter(|(i, _)| newly_red & (1 << i) != 0)
                .map(|(_, name)| (*name).to_owned())
                .collect();
            ctx.emit(VitalsAlert::RedScore {
                parameters,
                score: total,
            });
        }
        state.last_score = total;
        state.risk = risk;
        state.red_mask = red;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eddy_core::Timestamp;
    use eddy_core::testing::KeyHarness;

    const DESIGN_JSON: &str = r#"{"resp_rate": 18, "spo2": 96, "on_oxygen": false, "temp": 37.1, "systolic": 120, "heart_rate": 80, "consciousness": "A"}"#;

    fn normal() -> Observation {
        serde_json::from_str(DESIGN_JSON).expect("design shape parses")
    }

    #[test]
    fn design_json_shape_parses_and_scores_zero() {
        let obs = normal();
        assert_eq!(obs.consciousness, Consciousness::A);
        assert_eq!(news2_score(&obs).total(), 0);
        assert!(serde_json::from_str::<Observation>(r#"{"resp_rate": 18}"#).is_err());
        let bad_level = DESIGN_JSON.replace("\"A\"", "\"X\"");
        assert!(serde_json::from_str::<Observation>(&bad_level).is_err());
    }

    #[test]
    fn event_and_state_round_trip_through_postcard() {
        let obs = normal();
        let bytes = postcard::to_stdvec(&obs).expect("encodes");
        assert_eq!(
            postcard::from_bytes::<Observation>(&bytes).expect("decodes"),
            obs
        );
        let mut key = KeyHarness::<Vitals>::new("pat-1");
        key.event(
            Timestamp(0),
            Observation {
                heart_rate: 135,
                ..obs
            },
        );
        let bytes = postcard::to_stdvec(key.state()).expect("encodes");
        assert_eq!(
            &postcard::from_bytes::<PatientState>(&bytes).expect("decodes"),
            key.state()
        );
    }

    #[test]
    fn rising_into_medium_and_high_alerts_once_per_rise() {
        let mut key = KeyHarness::<Vitals>::new("pat-1");
        assert!(key.event(Timestamp(0), normal()).is_empty());
        let medium = Observation {
            resp_rate: 22,
            on_oxygen: true,
            heart_rate: 95,
            ..normal()
        };
        assert_eq!(
            key.event(Timestamp(1), medium),
            vec![VitalsAlert::RiskRaised {
                from: Risk::Low,
                to: Risk::Medium,
                score: 5
            }]
        );
        assert!(key.event(Timestamp(2), medium).is_empty(), "still medium");
        let high = Observation {
            spo2: 92,
            resp_rate: 22,
            on_oxygen: true,
            heart_rate: 115,
            ..normal()
        };
        let alerts = key.event(Timestamp(3), high);
        assert_eq!(
            alerts,
            vec![VitalsAlert::RiskRaised {
                from: Risk::Medium,
                to: Risk::High,
                score: 8
            }]
        );
        assert!(
            key.event(Timestamp(4), medium).is_empty(),
            "falling does not alert"
        );
        assert!(key.event(Timestamp(5), normal()).is_empty());
        assert_eq!(
            key.event(Timestamp(6), medium).len(),
            1,
            "a new rise alerts again"
        );
        assert_eq!(key.state().events, 7);
    }

    #[test]
    fn single_red_parameter_alerts_when_it_appears() {
        let mut key = KeyHarness::<Vitals>::new("pat-1");
        let confused = Observation {
            consciousness: Consciousness::C,
            ..normal()
        };
        assert_eq!(
            key.event(Timestamp(0), confused),
            vec![VitalsAlert::RedScore {
                parameters: vec!["consciousness".into()],
                score: 3
            }]
        );
        assert_eq!(key.state().risk, Risk::LowMedium);
        assert!(key.event(Timestamp(1), confused).is_empty(), "already red");
        let also_bp = Observation {
            systolic: 88,
            ..confused
        };
        let alerts = key.event(Timestamp(2), also_bp);
        assert!(alerts.contains(&VitalsAlert::RedScore {
            parameters: vec!["systolic".into()],
            score: 6
        }));
        assert!(alerts.iter().any(|a| matches!(
            a,
            VitalsAlert::RiskRaised {
                to: Risk::Medium,
                ..
            }
        )));
    }
}
