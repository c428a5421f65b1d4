//! The network-namespace backend's plumbing (root only): per run, a bridge
//! in the root namespace at 10.X.0.254/24 and one namespace per node, joined
//! to the bridge by a veth, the node at 10.X.0.i. Nodes are started inside
//! their namespace (`ip netns exec`, which execs, so the child's pid is the
//! node's and signals reach it); the harness stays in the root namespace and
//! reaches them through the bridge. Each namespace holds an nftables table
//! ([`super::nft`]) and, where the kernel has netem, a delay qdisc.
//!
//! Every name starts with `eddyc-X-` (X is the run's subnet byte), short
//! enough for the kernel's 15-character link names. The run claims X by
//! creating the bridge `eddyc-X-br`: creation fails if another run (a
//! parallel test) holds X, and the next X is tried. Everything is removed
//! when the [`Netns`] drops (end of run, error, panic), and by
//! [`remove_all`] from the harness's Ctrl-C/SIGTERM thread; a run that was
//! SIGKILLed leaves its bridge behind, labelled with its pid, and the next
//! run removes it once that pid is gone.

use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

use super::cluster::Host;
use super::lock;
use super::network::Network;
use super::nft::{self, Dropped};

/// Why the namespaces could not be set up or changed.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// Namespaces, links and nftables need root; nothing was created.
    #[error("network namespaces need root (effective uid {uid})")]
    NotRoot {
        /// This process's effective uid.
        uid: u32,
    },
    /// A command of the setup or of a fault failed; what was created so far
    /// is removed when the [`Netns`] drops.
    #[error("`{command}` failed: {reason}")]
    Command {
        /// The command line.
        command: String,
        /// Its stderr, or why it could not start.
        reason: String,
    },
    /// Every 10.X.0.0/24 with X in 1..=250 is taken by another run or by
    /// this machine's own routes; nothing was created.
    #[error("no free 10.X.0.0/24 subnet for the run's bridge")]
    NoSubnet,
}

/// Prefix of every link and namespace this harness creates.
const PREFIX: &str = "eddyc";

/// The label on a run's bridge naming the process that owns it.
const OWNER_LABEL: &str = "eddy-chaos pid ";

/// Where a run's nodes live: the names and addresses of subnet X.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// X of 10.X.0.0/24; also in every name.
    subnet: u8,
    /// Nodes, each with a namespace; at most 9 (scenarios are bounded).
    nodes: usize,
}

impl Layout {
    /// The bridge in the root namespace.
    pub fn bridge(&self) -> String {
        format!("{PREFIX}-{}-br", self.subnet)
    }

    /// Node `i`'s namespace.
    pub fn namespace(&self, i: usize) -> String {
        format!("{PREFIX}-{}-n{i}", self.subnet)
    }

    /// The root namespace's end of node `i`'s veth (the other end is
    /// `eth0` inside the namespace).
    fn veth(&self, i: usize) -> String {
        format!("{PREFIX}-{}-v{i}", self.subnet)
    }

    /// Node `i`'s address.
    pub fn node_ip(&self, i: usize) -> Ipv4Addr {
        debug_assert!((1..=9).contains(&i), "node {i}: scenarios have 1 to 9");
        Ipv4Addr::new(10, self.subnet, 0, i as u8)
    }

    /// The bridge's address: where the harness's traffic comes from.
    pub fn harness_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.subnet, 0, 254)
    }

    /// The subnet, as `10.X.0.0/24`.
    pub fn subnet(&self) -> String {
        format!("10.{}.0.0/24", self.subnet)
    }

    /// Deletes everything of the layout that exists; returns what could not
    /// be deleted (anything already gone counts as deleted).
    fn remove(&self) -> Vec<String> {
        let mut left = Vec::new();
        for i in 1..=self.nodes {
            // The veth goes with its namespace too, but only once the
            // kernel has freed the namespace: deleting it first frees the
            // name at once.
            delete_quietly(&["link", "del", &self.veth(i)], &mut left);
            delete_quietly(&["netns", "del", &self.namespace(i)], &mut left);
        }
        delete_quietly(&["link", "del", &self.bridge()], &mut left);
        left
    }
}

fn delete_quietly(args: &[&str], left: &mut Vec<String>) {
    if let Err(NetnsError::Command { reason, .. }) = run("ip", args, None)
        && !reason.contains("Cannot find device")
        && !reason.contains("No such file")
    {
        left.push(format!("ip {}: {reason}", args.join(" ")));
    }
}

/// The layouts of this process that exist, for [`remove_all`].
fn live() -> &'static Mutex<Vec<Layout>> {
    static LIVE: OnceLock<Mutex<Vec<Layout>>> = OnceLock::new();
    LIVE.get_or_init(|| Mutex::new(Vec::new()))
}

/// Removes every layout this process created (for the signal thread, after
/// the nodes are killed).
pub fn remove_all() {
    let layouts = std::mem::take(&mut *lock(live()));
    for layout in layouts {
        report_leftovers(&layout, layout.remove());
    }
}

fn report_leftovers(layout: &Layout, left: Vec<String>) {
    if !left.is_empty() {
        eprintln!(
            "eddy-chaos: could not remove all of {} ({}): {}",
            layout.bridge(),
            layout.subnet(),
            left.join("; ")
        );
    }
}

/// The effective uid, from `/proc/self/status` (no `libc`: the crate
/// forbids unsafe code); `u32::MAX` if it cannot be read.
pub fn effective_uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("Uid:"))?;
            line.split_whitespace().nth(2)?.parse().ok()
        })
        .unwrap_or(u32::MAX)
}

/// A run's namespaces, removed on drop.
#[derive(Debug)]
pub struct Netns {
    layout: Layout,
    /// Whether this kernel has `sch_netem` (probed once per run).
    netem: bool,
    /// The netem delay each node's `eth0` has now, ms (index i-1).
    delay_ms: Vec<u64>,
    /// Packets dropped by tables already replaced.
    dropped: Dropped,
}

impl Netns {
    /// Creates the bridge and one namespace per node (lo and eth0 up, an
    /// empty nftables table, which also proves `nft` works) and probes for
    /// netem.
    pub fn create(nodes: usize) -> Result<Netns, NetnsError> {
        let uid = effective_uid();
        if uid != 0 {
            return Err(NetnsError::NotRoot { uid });
        }
        // Ctrl-C from here on must remove what is created.
        super::cluster::kill_children_on_signal();
        remove_stale();
        let layout = claim_subnet(nodes)?;
        // From here on, drop removes whatever exists.
        let mut netns = Netns {
            layout,
            netem: false,
            delay_ms: vec![0; nodes],
            dropped: Dropped::default(),
        };
        for i in 1..=nodes {
            netns.add_node(i)?;
        }
        netns.netem = netns.probe_netem();
        Ok(netns)
    }

    fn add_node(&self, i: usize) -> Result<(), NetnsError> {
        let (l, ns) = (&self.layout, self.layout.namespace(i));
        let addr = format!("{}/24", l.node_ip(i));
        run("ip", &["netns", "add", &ns], None)?;
        run(
            "ip",
            &[
                "link",
                "add",
                &l.veth(i),
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                &ns,
            ],
            None,
        )?;
        run(
            "ip",
            &["link", "set", &l.veth(i), "master", &l.bridge(), "up"],
            None,
        )?;
        run(
            "ip",
            &["-n", &ns, "addr", "add", &addr, "dev", "eth0"],
            None,
        )?;
        run("ip", &["-n", &ns, "link", "set", "eth0", "up"], None)?;
        run("ip", &["-n", &ns, "link", "set", "lo", "up"], None)?;
        self.load(
            i,
            &nft::ruleset(&Network::default(), i, l.nodes, |j| l.node_ip(j)),
        )
    }

    /// Whether `tc qdisc … netem` works: tried on node 1's `lo` before any
    /// node runs there.
    fn probe_netem(&self) -> bool {
        let ns = self.layout.namespace(1);
        let tc = |verb: &str, extra: &[&str]| {
            let mut args = vec![
                "netns", "exec", &ns, "tc", "qdisc", verb, "dev", "lo", "root",
            ];
            args.extend(extra);
            run("ip", &args, None).is_ok()
        };
        tc("add", &["netem", "delay", "1ms"]) && tc("del", &[])
    }

    /// The layout (names and addresses).
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Whether delay is the kernel's (netem) rather than the node hook's.
    pub fn has_netem(&self) -> bool {
        self.netem
    }

    /// Packets dropped so far by every node's rules (read when a table is
    /// replaced, so at least this many).
    pub fn dropped(&self) -> Dropped {
        self.dropped
    }

    /// Where each node runs: its namespace and address.
    pub fn hosts(&self) -> Vec<Host> {
        (1..=self.layout.nodes)
            .map(|i| Host {
                netns: Some(self.layout.namespace(i)),
                ip: IpAddr::V4(self.layout.node_ip(i)),
            })
            .collect()
    }

    /// Makes node `i`'s namespace drop what `network` cuts and loses (and
    /// delay, with netem). The table outlives the node process, so a
    /// restarted node is still cut off.
    pub fn apply_to(&mut self, network: &Network, i: usize) -> Result<(), NetnsError> {
        let l = self.layout;
        self.dropped += self.read_dropped(i);
        self.load(i, &nft::ruleset(network, i, l.nodes, |j| l.node_ip(j)))?;
        if self.netem && self.delay_ms[i - 1] != network.delay_ms() {
            self.set_delay(i, network.delay_ms())?;
        }
        Ok(())
    }

    fn load(&self, i: usize, ruleset: &str) -> Result<(), NetnsError> {
        let ns = self.layout.namespace(i);
        run(
            "ip",
            &["netns", "exec", &ns, "nft", "-f", "-"],
            Some(ruleset),
        )
        .map(drop)
    }

    fn read_dropped(&self, i: usize) -> Dropped {
        let ns = self.layout.namespace(i);
        let table = [
            "netns",
            "exec",
            &ns,
            "nft",
            "-j",
            "list",
            "table",
            "inet",
            nft::TABLE,
        ];
        run("ip", &table, None)
            .map(|json| nft::dropped(&json))
            .unwrap_or_default()
    }

    /// Delays everything node `i` sends, replies to the harness included
    /// (a root netem qdisc does not tell traffic apart).
    fn set_delay(&mut self, i: usize, delay_ms: u64) -> Result<(), NetnsError> {
        let ns = self.layout.namespace(i);
        let delay = format!("{delay_ms}ms");
        let mut args = vec!["netns", "exec", &ns, "tc", "qdisc"];
        if delay_ms == 0 {
            args.extend(["del", "dev", "eth0", "root"]);
        } else {
            args.extend(["replace", "dev", "eth0", "root", "netem", "delay", &delay]);
        }
        run("ip", &args, None)?;
        self.delay_ms[i - 1] = delay_ms;
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        lock(live()).retain(|l| *l != self.layout);
        report_leftovers(&self.layout, self.layout.remove());
    }
}

/// Claims a free subnet by creating its bridge, labelled with this pid;
/// starts from the pid so parallel runs rarely try the same X first.
fn claim_subnet(nodes: usize) -> Result<Layout, NetnsError> {
    let start = std::process::id() as usize;
    for offset in 0..250 {
        let layout = Layout {
            subnet: ((start + offset) % 250 + 1) as u8,
            nodes,
        };
        let bridge = layout.bridge();
        if let Err(err) = run("ip", &["link", "add", &bridge, "type", "bridge"], None) {
            match &err {
                NetnsError::Command { reason, .. } if reason.contains("File exists") => continue,
                _ => return Err(err),
            }
        }
        lock(live()).push(layout);
        // The subnet must be unused by this machine too, or the root
        // namespace's route to it would be ambiguous.
        let taken = run(
            "ip",
            &["-4", "-o", "route", "show", "root", &layout.subnet()],
            None,
        )
        .map(|routes| !routes.trim().is_empty())
        .unwrap_or(true);
        if taken {
            lock(live()).retain(|l| *l != layout);
            report_leftovers(&layout, layout.remove());
            continue;
        }
        let owner = format!("{OWNER_LABEL}{}", std::process::id());
        let address = format!("{}/24", layout.harness_ip());
        let setup = run("ip", &["link", "set", &bridge, "alias", &owner], None)
            .and_then(|_| run("ip", &["addr", "add", &address, "dev", &bridge], None))
            .and_then(|_| run("ip", &["link", "set", &bridge, "up"], None));
        if let Err(err) = setup {
            lock(live()).retain(|l| *l != layout);
            report_leftovers(&layout, layout.remove());
            return Err(err);
        }
        return Ok(layout);
    }
    Err(NetnsError::NoSubnet)
}

/// Removes the layouts of runs that were SIGKILLed: bridges of ours whose
/// owner pid no longer exists. Best effort: a failure here only leaves a
/// subnet taken. Every run calls it before claiming a subnet.
pub fn remove_stale() {
    let Ok(json) = run("ip", &["-j", "link", "show", "type", "bridge"], None) else {
        return;
    };
    let Ok(serde_json::Value::Array(links)) = serde_json::from_str(&json) else {
        return;
    };
    for link in links {
        let (Some(name), Some(alias)) = (link["ifname"].as_str(), link["ifalias"].as_str()) else {
            continue;
        };
        let subnet = name
            .strip_prefix(&format!("{PREFIX}-"))
            .and_then(|rest| rest.strip_suffix("-br"))
            .and_then(|x| x.parse::<u8>().ok());
        let owner = alias.strip_prefix(OWNER_LABEL);
        if let (Some(subnet), Some(pid)) = (subnet, owner)
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            eprintln!("eddy-chaos: removing {name}, left by pid {pid} which is gone");
            let layout = Layout { subnet, nodes: 9 };
            report_leftovers(&layout, layout.remove());
        }
    }
}

/// Runs `program args` (stdin from `input`), returning its stdout.
fn run(program: &str, args: &[&str], input: Option<&str>) -> Result<String, NetnsError> {
    use std::io::Write as _;
    let failed = |reason: String| NetnsError::Command {
        command: format!("{program} {}", args.join(" ")),
        reason,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(e.to_string()))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| failed(e.to_string()))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| failed(e.to_string()))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(failed(
            String::from_utf8_lossy(&output.stderr).trim().to_string(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_the_kernels_link_name_limit() {
        let layout = Layout {
            subnet: 250,
            nodes: 9,
        };
        for name in [layout.bridge(), layout.veth(9), layout.namespace(9)] {
            assert!(name.len() <= 15, "{name}");
            assert!(name.starts_with("eddyc-"), "{name}");
        }
        assert_eq!(layout.node_ip(3), Ipv4Addr::new(10, 250, 0, 3));
        assert_eq!(layout.harness_ip(), Ipv4Addr::new(10, 250, 0, 254));
        assert_eq!(layout.subnet(), "10.250.0.0/24");
    }

    #[test]
    fn the_uid_is_read() {
        assert_ne!(effective_uid(), u32::MAX, "/proc/self/status has Uid:");
    }
}
