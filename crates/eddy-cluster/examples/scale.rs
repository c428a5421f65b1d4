//! Scale measurement of the sans-io membership on a simulated LAN.
//!
//! `cargo run -p eddy-cluster --example scale --release [-- N...]` prints the
//! table kept in docs/CLUSTER_SCALE.md: for each cluster size, protocol
//! periods to converge after all nodes join via one seed, datagrams per member
//! per period (while joining and steady), and periods until a killed member is
//! down everywhere. Deterministic: seed 1 for every size.

use eddy_cluster::sim::{SimConfig, measure};

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![10, 50, 200, 1000]
    } else {
        sizes
    };
    println!(
        "| N | convergence (periods) | msgs/member/period joining | msgs/member/period steady | detection (periods) | rejected inputs | wall time |"
    );
    println!("|---|---|---|---|---|---|---|");
    for nodes in sizes {
        // Wall time only reports the simulator's own cost; the protocol
        // figures are virtual time.
        let started = std::time::Instant::now();
        match measure(SimConfig::lan(nodes, 1), 20, 400) {
            Ok(r) => {
                let fmt = |v: Option<f64>| v.map_or("did not".to_owned(), |p| format!("{p:.1}"));
                println!(
                    "| {} | {} | {:.2} | {:.2} | {} | {} | {:.1} s |",
                    r.nodes,
                    fmt(r.convergence_periods),
                    r.join_msgs_per_member_period,
                    r.steady_msgs_per_member_period,
                    fmt(r.detection_periods),
                    r.errors,
                    started.elapsed().as_secs_f64()
                );
            }
            Err(e) => eprintln!("N={nodes}: {e}"),
        }
    }
}
