//! `eddy-chaos control`: seed campaigns of the Raft controller — the real
//! `eddy_control::Controller`s and raft-rs, not a model — on the seeded test
//! network of `eddy_control::testing` ([`run_swarm_report`]), with the
//! controller's deliberate bugs exposed so a campaign can prove its checker
//! catches each class.

use eddy_control::testing::{SwarmConfig, SwarmReport, run_swarm_report};
use eddy_control::{ControllerSettings, InjectedBug};
use serde::Serialize;

/// A deliberate controller bug, by its command-line name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ControlBug {
    /// Entries applied when appended, before they commit: breaks state
    /// machine safety (nodes apply different entries at one index).
    ApplyBeforeCommit,
    /// Persist effects handed out one input late: votes and append
    /// acknowledgements leave before they are durable.
    PersistLate,
}

impl ControlBug {
    /// Every bug, for tests and help text.
    pub const ALL: [ControlBug; 2] = [ControlBug::ApplyBeforeCommit, ControlBug::PersistLate];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ControlBug::ApplyBeforeCommit => "apply-before-commit",
            ControlBug::PersistLate => "persist-late",
        }
    }

    /// The controller's switch.
    fn injected(self) -> InjectedBug {
        match self {
            ControlBug::ApplyBeforeCommit => InjectedBug::ApplyUncommitted,
            ControlBug::PersistLate => InjectedBug::PersistLate,
        }
    }
}

impl std::str::FromStr for ControlBug {
    type Err = String;
    fn from_str(s: &str) -> Result<ControlBug, String> {
        ControlBug::ALL
            .into_iter()
            .find(|bug| bug.name() == s)
            .ok_or_else(|| format!("unknown bug `{s}` (known: apply-before-commit, persist-late)"))
    }
}

/// What one seed runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlOptions {
    /// The seed.
    pub seed: u64,
    /// Voters (3 or 5); `None` lets the seed choose.
    pub voters: Option<usize>,
    /// The injected bug, if any.
    pub bug: Option<ControlBug>,
}

impl ControlOptions {
    /// Seed `seed`, swarm-chosen voters, no bug.
    pub fn new(seed: u64) -> ControlOptions {
        ControlOptions {
            seed,
            voters: None,
            bug: None,
        }
    }

    /// The command that reruns exactly this seed and prints its report.
    pub fn reproduce(&self) -> String {
        let mut command = format!("eddy-chaos control --seed {}", self.seed);
        if let Some(voters) = self.voters {
            command.push_str(&format!(" --voters {voters}"));
        }
        if let Some(bug) = self.bug {
            command.push_str(" --bug ");
            command.push_str(bug.name());
        }
        command
    }
}

/// Runs one seed of the controller swarm.
pub fn run(options: &ControlOptions) -> SwarmReport {
    let swarm = SwarmConfig {
        voters: options.voters,
        settings: ControllerSettings {
            injected_bug: options.bug.map_or(InjectedBug::None, ControlBug::injected),
            ..ControllerSettings::default()
        },
        ..SwarmConfig::default()
    };
    run_swarm_report(options.seed, &swarm)
}
