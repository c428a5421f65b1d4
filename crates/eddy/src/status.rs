//! `eddy status`: the members and the partition table as one node sees them,
//! read from its HTTP API (`/v1/cluster`, `/v1/partitions`).

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde_json::Value;

/// Options of `eddy status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// HTTP address of any node.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub http_addr: String,
    /// Print every partition (owner, backups, epoch), not only the counts.
    #[arg(long)]
    pub partitions: bool,
    #[command(flatten)]
    pub tls: crate::tls_args::TlsArgs,
    #[command(flatten)]
    pub token: crate::TokenArg,
}

fn fetch(
    agent: &ureq::Agent,
    (scheme, base): (&str, &str),
    path: &str,
    token: &crate::TokenArg,
) -> Result<Value, String> {
    let url = format!("{scheme}://{base}{path}");
    let mut request = agent.get(&url);
    if let Some(bearer) = token.bearer() {
        request = request.header("authorization", bearer);
    }
    let mut response = request.call().map_err(|err| match err {
        ureq::Error::StatusCode(401) => format!(
            "{url}: 401: the node requires an API token with role `read` (--token or EDDY_TOKEN)"
        ),
        ureq::Error::StatusCode(403) => {
            format!("{url}: 403: the token lacks role `read`")
        }
        // The node answered: the status says it all.
        ureq::Error::StatusCode(_) => format!("{url}: {err}"),
        _ => format!("{url}: {err}; {}", crate::no_node_hint(base, "--http-addr")),
    })?;
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|err| format!("{url}: {err}"))?;
    serde_json::from_str(&body).map_err(|err| format!("{url}: not JSON: {err}"))
}

/// Runs `eddy status`.
pub fn run(args: StatusArgs) -> ExitCode {
    let scheme = args.tls.scheme();
    let at = (scheme, args.http_addr.as_str());
    let answers = args
        .tls
        .agent(Duration::from_secs(5), true)
        .and_then(|agent| {
            fetch(&agent, at, "/v1/cluster", &args.token).and_then(|cluster| {
                fetch(&agent, at, "/v1/partitions", &args.token).map(|table| (cluster, table))
            })
        });
    match answers {
        Ok((cluster, table)) => {
            print!("{}", render(&cluster, &table, args.partitions));
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("-")
}

/// One line about the cluster controller, when the node runs one.
fn controller_line(controller: &Value) -> Option<String> {
    controller.as_object()?;
    let empty = Vec::new();
    let members: Vec<String> = controller["members"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|m| {
            let voter = if m["voter"] == Value::Bool(true) {
                "*"
            } else {
                ""
            };
            format!("{}#{}{voter}", text(&m["name"]), m["incarnation"])
        })
        .collect();
    Some(format!(
        "\ncontroller: {}#{} {} ({}), leader {}, term {}, committed index {}, members {}\n",
        text(&controller["name"]),
        controller["incarnation"],
        text(&controller["role"]),
        text(&controller["state"]),
        text(&controller["leader"]),
        controller["term"],
        controller["committed_index"],
        if members.is_empty() {
            "-".to_owned()
        } else {
            members.join(",")
        }
    ))
}

/// Both tables as text.
fn render(cluster: &Value, table: &Value, every_partition: bool) -> String {
    let mut out = String::new();
    let empty = Vec::new();
    let partitions = table["partitions"].as_array().unwrap_or(&empty);
    let held = |name: &str, rank: usize| {
        partitions
            .iter()
            .filter(|p| p["replicas"].get(rank).and_then(Value::as_str) == Some(name))
            .count()
    };
    out.push_str(&format!(
        "members seen by {} (its local view version {})\n",
        text(&cluster["node"]),
        cluster["local_view_version"]
    ));
    if cluster["insecure"] == Value::Bool(true) {
        out.push_str(
            "INSECURE: this node runs unprotected beyond loopback (insecure = true; docs/SECURITY.md)\n",
        );
    }
    out.push_str(&format!(
        "{:<16} {:<8} {:<22} {:<22} {:<22} {:>6} {:>7}\n",
        "NAME", "STATUS", "HTTP", "TCP", "GOSSIP", "OWNS", "BACKUPS"
    ));
    for member in cluster["members"].as_array().unwrap_or(&empty) {
        let name = text(&member["name"]);
        let backups: usize = (1..table["replication_factor"].as_u64().unwrap_or(1) as usize)
            .map(|rank| held(name, rank))
            .sum();
        out.push_str(&format!(
            "{:<16} {:<8} {:<22} {:<22} {:<22} {:>6} {:>7}\n",
            name,
            text(&member["status"]),
            text(&member["http_addr"]),
            text(&member["tcp_addr"]),
            text(&member["gossip_addr"]),
            held(name, 0),
            backups
        ));
    }
    if let Some(line) = controller_line(&cluster["controller"]) {
        out.push_str(&line);
    }
    out.push_str(&format!(
        "\npartition table (local version {}) fingerprint {} ({} partitions, replication factor {})\n",
        table["local_table_version"],
        text(&table["fingerprint"]),
        table["partition_count"],
        table["replication_factor"]
    ));
    if every_partition {
        out.push_str(&format!(
            "{:>9} {:<16} {:<32} {:>11}\n",
            "PARTITION", "OWNER", "BACKUPS", "LOCAL_EPOCH"
        ));
        for partition in partitions {
            let replicas: Vec<&str> = partition["replicas"]
                .as_array()
                .unwrap_or(&empty)
                .iter()
                .map(text)
                .collect();
            out.push_str(&format!(
                "{:>9} {:<16} {:<32} {:>11}\n",
                partition["partition"],
                replicas.first().copied().unwrap_or("-"),
                replicas.get(1..).unwrap_or_default().join(","),
                partition["local_table_epoch"]
            ));
        }
    } else {
        out.push_str("(eddy status --partitions prints every partition)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn renders_members_with_counts_and_every_partition() {
        let cluster = json!({"node": "a", "local_view_version": 4, "members": [
            {"name": "a", "status": "up", "http_addr": "h1", "tcp_addr": "t1", "gossip_addr": "g1"},
            {"name": "b", "status": "down", "http_addr": "h2", "tcp_addr": "t2", "gossip_addr": "g2"},
        ]});
        let table = json!({"local_table_version": 2, "fingerprint": "00ff", "partition_count": 2,
            "replication_factor": 2, "partitions": [
            {"partition": 0, "replicas": ["a"], "local_table_epoch": 1},
            {"partition": 1, "replicas": ["a"], "local_table_epoch": 3},
        ]});
        let out = render(&cluster, &table, true);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].contains("members seen by a (its local view version 4)"));
        assert!(!out.contains("INSECURE"), "{out}");
        let mut insecure = cluster.clone();
        insecure["insecure"] = json!(true);
        assert!(render(&insecure, &table, false).contains("INSECURE: "));
        let a: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(a, ["a", "up", "h1", "t1", "g1", "2", "0"]);
        let b: Vec<&str> = lines[3].split_whitespace().collect();
        assert_eq!(b, ["b", "down", "h2", "t2", "g2", "0", "0"]);
        assert!(out.contains("fingerprint 00ff (2 partitions, replication factor 2)"));
        let last: Vec<&str> = lines.last().expect("rows").split_whitespace().collect();
        assert_eq!(last, ["1", "a", "3"]);
        assert!(!out.contains("controller:"), "no controller, no line");
    }

    #[test]
    fn renders_one_controller_line() {
        let cluster = json!({"node": "a", "local_view_version": 1, "members": [],
        "controller": {"name": "a", "incarnation": 7, "role": "voter", "state": "running",
            "leader": "b", "term": 3, "committed_index": 12, "members": [
            {"name": "a", "incarnation": 7, "voter": true},
            {"name": "d", "incarnation": 9, "voter": false},
        ]}});
        let table = json!({"partitions": []});
        let out = render(&cluster, &table, false);
        let line = out
            .lines()
            .find(|l| l.starts_with("controller:"))
            .expect("line");
        assert_eq!(
            line,
            "controller: a#7 voter (running), leader b, term 3, committed index 12, members a#7*,d#9"
        );
    }
}
