//! The NEWS2 early-warning score (Royal College of Physicians, 2017), SpO2
//! scale 1, as a pure function so every band can be tested on its own.

use serde::{Deserialize, Serialize};

/// Level of consciousness on the ACVPU scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Consciousness {
    /// Alert.
    #[default]
    A,
    /// New confusion.
    C,
    /// Responds to voice.
    V,
    /// Responds to pain.
    P,
    /// Unresponsive.
    U,
}

/// One set of observations:
/// `{"resp_rate": 18, "spo2": 96, "on_oxygen": false, "temp": 37.1,
///   "systolic": 120, "heart_rate": 80, "consciousness": "A"}`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Observation {
    /// Respiration rate, breaths per minute.
    pub resp_rate: u32,
    /// Oxygen saturation, percent.
    pub spo2: u32,
    /// Whether the patient receives supplemental oxygen.
    pub on_oxygen: bool,
    /// Temperature, °C.
    pub temp: f64,
    /// Systolic blood pressure, mmHg.
    pub systolic: u32,
    /// Heart rate, beats per minute.
    pub heart_rate: u32,
    /// ACVPU.
    pub consciousness: Consciousness,
}

/// Clinical risk from the aggregate and single-parameter scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub enum Risk {
    /// Aggregate 0–4, no parameter scoring 3.
    #[default]
    Low,
    /// Aggregate 0–4 with a parameter scoring 3: urgent ward-based response.
    LowMedium,
    /// Aggregate 5–6: key threshold for urgent response.
    Medium,
    /// Aggregate 7 or more: emergency response.
    High,
}

/// The parameters, in chart order; indexes into [`Score::parts`].
pub const PARAMETERS: [&str; 7] = [
    "resp_rate",
    "spo2",
    "on_oxygen",
    "temp",
    "systolic",
    "heart_rate",
    "consciousness",
];

/// Sub-scores per parameter (in [`PARAMETERS`] order) and their sum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Score {
    /// Sub-score of each parameter.
    pub parts: [u8; 7],
}

impl Score {
    /// The aggregate score.
    pub fn total(&self) -> u8 {
        self.parts.iter().sum()
    }

    /// Bit `i` set when parameter `i` scores 3 (a "red" score).
    pub fn red_mask(&self) -> u8 {
        self.parts
            .iter()
            .enumerate()
            .filter(|(_, s)| **s == 3)
            .fold(0, |mask, (i, _)| mask | (1 << i))
    }

    /// The clinical risk band.
    pub fn risk(&self) -> Risk {
        match self.total() {
            7.. => Risk::High,
            5..=6 => Risk::Medium,
            _ if self.red_mask() != 0 => Risk::LowMedium,
            _ => Risk::Low,
        }
    }
}

/// Respiration rate: ≤8 → 3, 9–11 → 1, 12–20 → 0, 21–24 → 2, ≥25 → 3.
pub fn resp_rate_score(rate: u32) -> u8 {
    match rate {
        0..=8 => 3,
        9..=11 => 1,
        12..=20 => 0,
        21..=24 => 2,
        _ => 3,
    }
}

/// SpO2 scale 1: ≤91 → 3, 92–93 → 2, 94–95 → 1, ≥96 → 0.
pub fn spo2_score(spo2: u32) -> u8 {
    match spo2 {
        0..=91 => 3,
        92..=93 => 2,
        94..=95 => 1,
        _ => 0,
    }
}

/// Supplemental oxygen: 2, air: 0.
pub fn oxygen_score(on_oxygen: bool) -> u8 {
    if on_oxygen { 2 } else { 0 }
}

/// Temperature: ≤35.0 → 3, 35.1–36.0 → 1, 36.1–38.0 → 0, 38.1–39.0 → 1, ≥39.1 → 2.
/// The chart's bands are at one decimal; between them the lower band's upper
/// edge is inclusive (35.05 scores like 35.1).
pub fn temp_score(temp: f64) -> u8 {
    if temp <= 35.0 {
        3
    } else if temp <= 36.0 {
        1
    } else if temp <= 38.0 {
        0
    } else if temp <= 39.0 {
        1
    } else {
        2
    }
}

/// Systolic BP: ≤90 → 3, 91–100 → 2, 101–110 → 1, 111–219 → 0, ≥220 → 3.
pub fn systolic_score(systolic: u32) -> u8 {
    match systolic {
        0..=90 => 3,
        91..=100 => 2,
        101..=110 => 1,
        111..=219 => 0,
        _ => 3,
    }
}

/// Pulse: ≤40 → 3, 41–50 → 1, 51–90 → 0, 91–110 → 1, 111–130 → 2, ≥131 → 3.
pub fn heart_rate_score(rate: u32) -> u8 {
    match rate {
        0..=40 => 3,
        41..=50 => 1,
        51..=90 => 0,
        91..=110 => 1,
        111..=130 => 2,
        _ => 3,
    }
}

/// Consciousness: alert → 0, any new confusion, voice, pain or unresponsive → 3.
pub fn consciousness_score(level: Consciousness) -> u8 {
    match level {
        Consciousness::A => 0,
        _ => 3,
    }
}

/// Scores one set of observations.
pub fn news2_score(obs: &Observation) -> Score {
    Score {
        parts: [
            resp_rate_score(obs.resp_rate),
            spo2_score(obs.spo2),
            oxygen_score(obs.on_oxygen),
            temp_score(obs.temp),
            systolic_score(obs.systolic),
            heart_rate_score(obs.heart_rate),
            consciousness_score(obs.consciousness),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks `score` at every band edge: `(last value of band, its score, first
    /// value of the next band, its score)`.
    fn edges(score: fn(u32) -> u8, table: &[(u32, u8, u32, u8)]) {
        for &(below, below_score, above, above_score) in table {
            assert_eq!(score(below), below_score, "at {below}");
            assert_eq!(score(above), above_score, "at {above}");
        }
    }

    #[test]
    fn respiration_rate_bands() {
        edges(
            resp_rate_score,
            &[(8, 3, 9, 1), (11, 1, 12, 0), (20, 0, 21, 2), (24, 2, 25, 3)],
        );
        assert_eq!(resp_rate_score(0), 3);
        assert_eq!(resp_rate_score(60), 3);
    }

    #[test]
    fn spo2_scale_1_bands() {
        edges(
            spo2_score,
            &[(91, 3, 92, 2), (93, 2, 94, 1), (95, 1, 96, 0)],
        );
        assert_eq!(spo2_score(100), 0);
    }

    #[test]
    fn supplemental_oxygen() {
        assert_eq!(oxygen_score(true), 2);
        assert_eq!(oxygen_score(false), 0);
    }

    #[test]
    fn systolic_bands() {
        edges(
            systolic_score,
            &[
                (90, 3, 91, 2),
                (100, 2, 101, 1),
                (110, 1, 111, 0),
                (219, 0, 220, 3),
            ],
        );
    }

    #[test]
    fn heart_rate_bands() {
        edges(
            heart_rate_score,
            &[
                (40, 3, 41, 1),
                (50, 1, 51, 0),
                (90, 0, 91, 1),
                (110, 1, 111, 2),
                (130, 2, 131, 3),
            ],
        );
    }

    #[test]
    fn temperature_bands() {
        for (below, below_score, above, above_score) in [
            (35.0, 3, 35.1, 1),
            (36.0, 1, 36.1, 0),
            (38.0, 0, 38.1, 1),
            (39.0, 1, 39.1, 2),
        ] {
            assert_eq!(temp_score(below), below_score, "at {below}");
            assert_eq!(temp_score(above), above_score, "at {above}");
        }
        assert_eq!(temp_score(30.0), 3);
        assert_eq!(temp_score(42.0), 2);
    }

    #[test]
    fn consciousness_levels() {
        assert_eq!(consciousness_score(Consciousness::A), 0);
        for level in [
            Consciousness::C,
            Consciousness::V,
            Consciousness::P,
            Consciousness::U,
        ] {
            assert_eq!(consciousness_score(level), 3);
        }
    }

    fn normal() -> Observation {
        Observation {
            resp_rate: 16,
            spo2: 97,
            on_oxygen: false,
            temp: 37.0,
            systolic: 120,
            heart_rate: 70,
            consciousness: Consciousness::A,
        }
    }

    #[test]
    fn aggregate_risk_bands() {
        assert_eq!(news2_score(&normal()).risk(), Risk::Low);
        let four = Observation {
            resp_rate: 22,
            on_oxygen: true,
            ..normal()
        };
        assert_eq!(
            (news2_score(&four).total(), news2_score(&four).risk()),
            (4, Risk::Low)
        );
        let red = Observation {
            consciousness: Consciousness::V,
            ..normal()
        };
        assert_eq!(
            (news2_score(&red).total(), news2_score(&red).risk()),
            (3, Risk::LowMedium)
        );
        let five = Observation {
            resp_rate: 22,
            on_oxygen: true,
            heart_rate: 95,
            ..normal()
        };
        assert_eq!(
            (news2_score(&five).total(), news2_score(&five).risk()),
            (5, Risk::Medium)
        );
        let six = Observation {
            resp_rate: 22,
            on_oxygen: true,
            heart_rate: 115,
            ..normal()
        };
        assert_eq!(
            (news2_score(&six).total(), news2_score(&six).risk()),
            (6, Risk::Medium)
        );
        let seven = Observation {
            spo2: 91,
            on_oxygen: true,
            heart_rate: 115,
            ..normal()
        };
        assert_eq!(
            (news2_score(&seven).total(), news2_score(&seven).risk()),
            (7, Risk::High)
        );
    }

    #[test]
    fn red_mask_names_parameters_scoring_three() {
        let obs = Observation {
            systolic: 85,
            heart_rate: 135,
            ..normal()
        };
        let score = news2_score(&obs);
        assert_eq!(score.red_mask(), (1 << 4) | (1 << 5));
        assert_eq!(PARAMETERS[4], "systolic");
    }
}
