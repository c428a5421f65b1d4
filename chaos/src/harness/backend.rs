//! Who makes the scenario's [`Network`] real: the nodes' fault hook, or the
//! Linux network stack in per-node namespaces ([`super::netns`], root only).
//! The scheduling code in [`super`] hands every change to a [`Backend`] and
//! does not care which it is.
//!
//! | | hook | netns |
//! |---|---|---|
//! | where nodes run | loopback, free ports | 10.X.0.i in their namespace |
//! | cuts | gossip datagrams and peer calls, per message | every packet from the cut peer, at the receiver (nftables) |
//! | loss | per gossip datagram or peer call | per packet from peers (TCP retransmits) |
//! | delay | per peer call | netem on each node's egress if the kernel has it, else the hook |
//! | `drop_log_entries` | hook | hook |
//!
//! Traffic from the harness (its clients and checks) is never cut or lost
//! by either.

use std::net::{IpAddr, Ipv4Addr};

use serde::Serialize;

use super::RunError;
use super::cluster::{Cluster, Host};
use super::netns::{Netns, NetnsError};
use super::network::{HookShare, Network};

/// `--network`: which backend a run asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NetworkChoice {
    /// Namespaces when root and they can be created, else the hook.
    #[default]
    Auto,
    /// Namespaces, or the run fails.
    Netns,
    /// The node hook, on loopback.
    Hook,
}

impl std::str::FromStr for NetworkChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<NetworkChoice, String> {
        match s {
            "auto" => Ok(NetworkChoice::Auto),
            "netns" => Ok(NetworkChoice::Netns),
            "hook" => Ok(NetworkChoice::Hook),
            other => Err(format!("{other}: expected netns, hook or auto")),
        }
    }
}

/// The backend of one run.
#[derive(Debug)]
pub enum Backend {
    /// Faults through `POST /v1/admin/faults`; nodes on loopback.
    Hook {
        /// Why this one (asked for, or why namespaces were not possible).
        why: String,
    },
    /// Faults by nftables (and netem) in the nodes' namespaces.
    Netns {
        /// The namespaces; removed when the backend drops.
        netns: Netns,
        /// Why this one.
        why: String,
        /// Whether anything was posted to a hook yet: until then nothing
        /// needs one, so an `eddy` binary (no hook) can run
        /// scenarios that need neither the bug switch nor hook delay.
        hook_used: bool,
    },
}

/// The backend as recorded in `report.json`.
#[derive(Debug, Clone, Serialize)]
pub struct NetworkSummary {
    /// `netns` or `hook`.
    pub backend: String,
    /// Why this backend.
    pub why: String,
    /// Who applies cuts and loss: `nftables` or `hook`.
    pub links_by: String,
    /// Who applies delay: `netem` or `hook`.
    pub delay_by: String,
    /// The run's subnet (netns).
    pub subnet: Option<String>,
    /// Packets nftables dropped from cut peers (netns; counters are read
    /// whenever a table is replaced, so this is a lower bound).
    pub dropped_cut_packets: Option<u64>,
    /// Packets nftables dropped as loss (netns; a lower bound likewise).
    pub dropped_loss_packets: Option<u64>,
}

impl Backend {
    /// Sets up the backend `choice` asks for, for `nodes` nodes.
    pub fn choose(choice: NetworkChoice, nodes: usize) -> Result<Backend, NetnsError> {
        let netns = |netns, why: &str| Backend::Netns {
            netns,
            why: why.into(),
            hook_used: false,
        };
        Ok(match choice {
            NetworkChoice::Hook => Backend::Hook {
                why: "asked for (--network hook)".into(),
            },
            NetworkChoice::Netns => netns(Netns::create(nodes)?, "asked for (--network netns)"),
            NetworkChoice::Auto => match Netns::create(nodes) {
                Ok(created) => netns(created, "auto: root, and namespaces work"),
                Err(err) => Backend::Hook {
                    why: format!("auto: {err}"),
                },
            },
        })
    }

    /// Where the nodes run.
    pub fn hosts(&self, nodes: usize) -> Vec<Host> {
        match self {
            Backend::Hook { .. } => (0..nodes)
                .map(|_| Host {
                    netns: None,
                    ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
                })
                .collect(),
            Backend::Netns { netns, .. } => netns.hosts(),
        }
    }

    /// Makes `network` real for node `i` (also after it restarted: its
    /// hook starts clean).
    pub fn apply_to(
        &mut self,
        network: &Network,
        cluster: &Cluster,
        i: usize,
    ) -> Result<(), RunError> {
        match self {
            Backend::Hook { .. } => cluster.set_faults(i, &network.hook_spec(i, HookShare::ALL))?,
            Backend::Netns {
                netns, hook_used, ..
            } => {
                netns.apply_to(network, i)?;
                let share = Self::netns_share(netns);
                let needs_hook = network.drop_log_entries
                    || network.fails_storage(i)
                    || (share.delay && network.delay_ms() > 0);
                if needs_hook || *hook_used {
                    cluster.set_faults(i, &network.hook_spec(i, share))?;
                    *hook_used = true;
                }
            }
        }
        Ok(())
    }

    /// Makes every partition worker of node `i` fail once: its hook gets
    /// its current faults plus `fail_workers`.
    pub fn fail_workers(
        &mut self,
        network: &Network,
        cluster: &Cluster,
        i: usize,
    ) -> Result<(), RunError> {
        let share = match self {
            Backend::Hook { .. } => HookShare::ALL,
            Backend::Netns {
                netns, hook_used, ..
            } => {
                *hook_used = true;
                Self::netns_share(netns)
            }
        };
        let mut spec = network.hook_spec(i, share);
        spec["fail_workers"] = serde_json::json!(true);
        Ok(cluster.set_faults(i, &spec)?)
    }

    /// What the namespace backend leaves to the hook: delay, when the
    /// kernel has no netem; links are its own.
    fn netns_share(netns: &Netns) -> HookShare {
        HookShare {
            links: false,
            delay: !netns.has_netem(),
        }
    }

    /// Makes `network` real for every node.
    pub fn apply(&mut self, network: &Network, cluster: &Cluster) -> Result<(), RunError> {
        for i in 1..=cluster.len() {
            self.apply_to(network, cluster, i)?;
        }
        Ok(())
    }

    /// What the report records.
    pub fn summary(&self) -> NetworkSummary {
        match self {
            Backend::Hook { why } => NetworkSummary {
                backend: "hook".into(),
                why: why.clone(),
                links_by: "hook".into(),
                delay_by: "hook".into(),
                subnet: None,
                dropped_cut_packets: None,
                dropped_loss_packets: None,
            },
            Backend::Netns { netns, why, .. } => NetworkSummary {
                backend: "netns".into(),
                why: why.clone(),
                links_by: "nftables".into(),
                delay_by: if netns.has_netem() { "netem" } else { "hook" }.into(),
                subnet: Some(netns.layout().subnet()),
                dropped_cut_packets: Some(netns.dropped().cut_packets),
                dropped_loss_packets: Some(netns.dropped().loss_packets),
            },
        }
    }

    /// One line for the run's log.
    pub fn describe(&self) -> String {
        match self {
            Backend::Hook { why } => {
                format!("hook on loopback (cuts, loss and delay by the nodes' fault hook; {why})")
            }
            Backend::Netns { netns, .. } => {
                let delay = if netns.has_netem() {
                    "delay by netem"
                } else {
                    "delay by the nodes' fault hook (this kernel has no netem)"
                };
                format!(
                    "netns on {} (bridge {}): cuts and loss by nftables, {delay}",
                    netns.layout().subnet(),
                    netns.layout().bridge()
                )
            }
        }
    }
}
