//! `eddy-chaos`: `run` a scenario against real node processes, or a seed
//! campaign: `control` of the Raft controllers, `datapath` of one
//! partition's replication.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use eddy_chaos::control::{self, ControlBug, ControlOptions};
use eddy_chaos::datapath::{self, DataPathBug, DataPathOptions};
use eddy_chaos::harness::backend::NetworkChoice;
use eddy_chaos::harness::{self, RunOptions};
use eddy_chaos::scenario::Scenario;

#[derive(Parser)]
#[command(
    name = "eddy-chaos",
    about = "Fault injection and deterministic simulation for eddy"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a scenario against real node processes; writes report.json and
    /// report.html; exits non-zero unless every check passed.
    Run {
        /// The scenario file (chaos/scenarios/*.toml).
        scenario: PathBuf,
        /// Where logs and reports go [default: target/chaos/<name>].
        #[arg(long)]
        out: Option<PathBuf>,
        /// The node binary [default: $EDDY_BIN, else `eddy-chaos-node` next
        /// to eddy-chaos: `eddy node` with the fault hook].
        #[arg(long)]
        eddy: Option<PathBuf>,
        /// Turn on the nodes' injected bug (owners stop replicating): the
        /// run must fail, proving the checkers work.
        #[arg(long)]
        drop_log_entries: bool,
        /// Who makes network faults real: netns (nftables in per-node
        /// network namespaces; root), hook (the nodes' fault hook, nodes on
        /// loopback), or auto (netns when root and namespaces work, else
        /// hook).
        #[arg(long, default_value = "auto")]
        network: NetworkChoice,
    },
    /// Seed campaign of the Raft controllers (eddy-control's swarm: real
    /// controllers and raft-rs on a seeded faulty network); report failures
    /// with the command that reproduces each.
    Control {
        #[command(flatten)]
        seeds: Seeds,
        /// Voters: 3 or 5 [default: each seed chooses].
        #[arg(long, value_parser = parse_voters)]
        voters: Option<usize>,
        /// Inject a controller bug: apply-before-commit or persist-late.
        #[arg(long)]
        bug: Option<ControlBug>,
    },
    /// Seed campaign of one partition's data path (the real eddy-replica
    /// slots, partitions and owner ISR bookkeeping on a seeded faulty
    /// network, with crashes, wipes and cut-off owners); report failures
    /// with the command that reproduces each.
    Datapath {
        #[command(flatten)]
        seeds: Seeds,
        /// Steps of each seed's fault phase.
        #[arg(long, default_value_t = 3_000)]
        steps: u64,
        /// Inject a data-path bug: ack-without-backups or wipe-keeps-identity.
        #[arg(long)]
        bug: Option<DataPathBug>,
    },
}

/// Which seeds a campaign runs (`control` and `datapath` alike).
#[derive(clap::Args)]
struct Seeds {
    /// Number of seeds, starting at --first.
    #[arg(long, default_value_t = 200)]
    seeds: u64,
    /// First seed of the campaign.
    #[arg(long, default_value_t = 0)]
    first: u64,
    /// Run exactly this seed and print its report as JSON.
    #[arg(long)]
    seed: Option<u64>,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run {
            scenario,
            out,
            eddy,
            drop_log_entries,
            network,
        } => run(
            &scenario,
            RunOptions {
                binary: eddy.unwrap_or_else(harness::default_binary),
                out: out.unwrap_or_default(),
                drop_log_entries,
                network,
            },
        ),
        Command::Control {
            seeds: Seeds { seeds, first, seed },
            voters,
            bug,
        } => control_campaign(seeds, first, seed, voters, bug),
        Command::Datapath {
            seeds: Seeds { seeds, first, seed },
            steps,
            bug,
        } => datapath_campaign(seeds, first, seed, steps, bug),
    }
}

/// `--voters`: the swarm's fault mix is written for 3 or 5 voters.
fn parse_voters(s: &str) -> Result<usize, String> {
    match s {
        "3" => Ok(3),
        "5" => Ok(5),
        other => Err(format!("{other}: expected 3 or 5")),
    }
}

fn control_campaign(
    seeds: u64,
    first: u64,
    seed: Option<u64>,
    voters: Option<usize>,
    bug: Option<ControlBug>,
) -> ExitCode {
    let options = |seed| ControlOptions { seed, voters, bug };
    if let Some(seed) = seed {
        let report = control::run(&options(seed));
        return one_seed(&report, report.passed());
    }
    let started = Instant::now();
    let (mut failed, mut committed) = (0u64, 0u64);
    let mut totals = eddy_control::testing::SwarmReport::default();
    for seed in first..first + seeds {
        let options = options(seed);
        let report = control::run(&options);
        committed += report.committed;
        totals.wiped += report.wiped;
        totals.rewiped += report.rewiped;
        totals.late_joins += report.late_joins;
        totals.probes += report.probes;
        totals.minority_removes += report.minority_removes;
        totals.majority_removes += report.majority_removes;
        totals.one_way_cuts += report.one_way_cuts;
        if !report.passed() {
            failed += 1;
            println!("seed {seed} FAILED: {}", report.violations.join("; "));
            println!("  reproduce: {}", options.reproduce());
        }
    }
    println!(
        "{seeds} seeds in {:.1} s: {} passed, {failed} failed; {committed} entries committed",
        started.elapsed().as_secs_f64(),
        seeds - failed
    );
    println!(
        "  faults: {} voters wiped, {} wiped again as non-voters, {} late joins, {} one-way cuts; {} minority probes, {} minority forget-downs (none committed), {} majority forget-downs committed",
        totals.wiped,
        totals.rewiped,
        totals.late_joins,
        totals.one_way_cuts,
        totals.probes,
        totals.minority_removes,
        totals.majority_removes
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn datapath_campaign(
    seeds: u64,
    first: u64,
    seed: Option<u64>,
    steps: u64,
    bug: Option<DataPathBug>,
) -> ExitCode {
    let options = |seed| DataPathOptions { seed, steps, bug };
    if let Some(seed) = seed {
        let report = datapath::run(options(seed));
        return one_seed(&report, report.passed());
    }
    let started = Instant::now();
    let mut failed = 0u64;
    let mut totals = datapath::DataPathReport::default();
    for seed in first..first + seeds {
        let options = options(seed);
        let report = datapath::run(options);
        totals.add(&report);
        if !report.passed() {
            failed += 1;
            println!("seed {seed} FAILED: {}", report.violations.join("; "));
            println!("  reproduce: {}", options.reproduce());
        }
    }
    println!(
        "{seeds} seeds in {:.1} s: {} passed, {failed} failed; {} writes acknowledged",
        started.elapsed().as_secs_f64(),
        seeds - failed,
        totals.acknowledged
    );
    println!(
        "  {} elections, {} takeovers, {} snapshots installed, {} frames; faults: {} crashes, {} wipes, {} worker failures, {} isolations, {} link cuts, {} connection resets; {} seeds ended offline, never written",
        totals.elections,
        totals.takeovers,
        totals.snapshots,
        totals.frames,
        totals.crashes,
        totals.wipes,
        totals.worker_failures,
        totals.isolations,
        totals.link_cuts,
        totals.resets,
        totals.offline_unwritten
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Prints one seed's report as JSON; the exit code says whether it passed.
fn one_seed(report: &impl serde::Serialize, passed: bool) -> ExitCode {
    match serde_json::to_string_pretty(report) {
        Ok(json) => println!("{json}"),
        Err(err) => eprintln!("error: {err}"),
    }
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs the scenario at `path`; an empty `options.out` means the default,
/// `target/chaos/<name>`.
fn run(path: &Path, mut options: RunOptions) -> ExitCode {
    let scenario = match Scenario::load(path) {
        Ok(scenario) => scenario,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    if options.out.as_os_str().is_empty() {
        options.out = PathBuf::from("target/chaos").join(&scenario.name);
    }
    match harness::run(&scenario, &options) {
        Ok(report) => {
            print!("{}", report.summary());
            println!("report            {}/report.html", options.out.display());
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
