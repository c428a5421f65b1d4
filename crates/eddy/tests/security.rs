//! Secured clusters of real `eddy node` processes (docs/SECURITY.md):
//! certificates and keys made by `eddy cert`, writes acknowledged over
//! HTTPS and the binary protocol over TLS, strangers (another CA's
//! certificate, a wrong gossip key) kept out and counted, a plaintext
//! client told clearly, and a gossip key rotated without a split.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use eddy_client::{Client, ClientConfig, ClientError, ClientTls};
use eddy_fraud::{Country, Fraud, Transaction};

fn eddy(args: &[&str]) -> std::process::Output {
    let output = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(args)
        .output()
        .expect("eddy runs");
    assert!(
        output.status.success(),
        "eddy {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A CA in `dir` (ca.pem, ca-key.pem).
fn make_ca(dir: &Path) {
    eddy(&["cert", "ca", "--out", dir.to_str().unwrap()]);
}

/// NAME.pem and NAME-key.pem in `dir`, signed by the CA in `ca`, for 127.0.0.1.
fn make_node_cert(ca: &Path, name: &str, dir: &Path) {
    eddy(&[
        "cert",
        "node",
        "--ca",
        ca.to_str().unwrap(),
        "--name",
        name,
        "--ip",
        "127.0.0.1",
        "--out",
        dir.to_str().unwrap(),
    ]);
}

fn make_gossip_key(path: &Path) {
    eddy(&["cert", "gossip-key", "--out", path.to_str().unwrap()]);
}

/// The `--set` pairs of a secured node named `name`: TLS from `ca` and
/// `certs` (NAME.pem, NAME-key.pem), gossip sealed with `gossip_key`.
fn secure_sets(name: &str, ca: &Path, certs: &Path, gossip_key: Option<&Path>) -> Vec<String> {
    let quoted = |p: PathBuf| format!("\"{}\"", p.display());
    let mut sets = vec![
        format!("name=\"{name}\""),
        format!("tls_ca={}", quoted(ca.join("ca.pem"))),
        format!("tls_cert={}", quoted(certs.join(format!("{name}.pem")))),
        format!("tls_key={}", quoted(certs.join(format!("{name}-key.pem")))),
        "settle_ms=100".to_owned(),
    ];
    if let Some(key) = gossip_key {
        sets.push(format!("gossip_key_file={}", quoted(key.to_path_buf())));
    }
    sets
}

/// Starts a node of a cluster whose voters are node-1..3, each with a data
/// directory of its own; a voter is ready only once the three formed the
/// cluster, so this does not wait (see [`ready`]).
fn start(sets: &[String], seed: Option<&NodeProcess>) -> NodeProcess {
    let mut all: Vec<String> = sets.to_vec();
    all.push(voters_for(3));
    all.push(data_dir_in(&cluster_root(), 1));
    if let Some(seed) = seed {
        all.push(format!("seeds=[\"{}\"]", seed.gossip));
    }
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    NodeProcess::start_unready(&refs)
}

fn ready(nodes: &[&NodeProcess]) {
    for node in nodes {
        node.wait_ready(Duration::from_secs(30));
    }
}

/// A cluster CA with node-1..3 certificates and a gossip key in `dir`;
/// the HTTP helpers of this thread trust the CA.
fn secured_files(dir: &Path) -> PathBuf {
    make_ca(dir);
    for name in ["node-1", "node-2", "node-3"] {
        make_node_cert(dir, name, dir);
    }
    let key = dir.join("gossip.key");
    make_gossip_key(&key);
    trust_ca(&dir.join("ca.pem"));
    key
}

/// Three secured nodes, the second and third joining through the first,
/// with identical tables naming all three.
fn secured_cluster(dir: &Path, key: &Path) -> Vec<NodeProcess> {
    let mut nodes: Vec<NodeProcess> = Vec::new();
    for name in ["node-1", "node-2", "node-3"] {
        let sets = secure_sets(name, dir, dir, Some(key));
        let node = start(&sets, nodes.first());
        nodes.push(node);
    }
    let all: Vec<&NodeProcess> = nodes.iter().collect();
    ready(&all);
    wait_for_agreement(&all, |owners| owners.len() == 3);
    nodes
}

/// Waits (bounded) until `condition` holds.
fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn member_names(node: &NodeProcess) -> Vec<String> {
    let (_, body, _) = get(&node.url("/v1/cluster"));
    json(&body)["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["name"].as_str().expect("name").to_owned())
        .collect()
}

fn transaction(amount: f64) -> Transaction {
    Transaction {
        amount,
        country: Country::parse("FR").expect("valid"),
        merchant: "m-1".into(),
    }
}

#[test]
fn a_secured_cluster_acknowledges_writes_over_https_and_the_binary_port_with_tls() {
    let dir = scratch("secure-3");
    let key = secured_files(&dir);
    let nodes = secured_cluster(&dir, &key);
    assert!(nodes[0].base.starts_with("https://"), "{}", nodes[0].base);

    // HTTPS: a write to any node is acknowledged and read back from another.
    let (status, body, _) = post_json(&nodes[1].url("/v1/events"), &tx("acct-1", 10.0, "FR"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["accepted"], 1);
    assert_eq!(events_of(&nodes[2], "account", "acct-1"), Some(1));

    // The binary protocol over TLS, verified against the cluster CA.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let ca = dir.join("ca.pem");
    let acked = runtime.block_on(async {
        let config = ClientConfig {
            tls: Some(ClientTls::from_ca_file(&ca).expect("CA")),
            ..ClientConfig::default()
        };
        let client = Client::connect_with(nodes[2].tcp.as_str(), config)
            .await
            .expect("TLS connection");
        let events: Vec<_> = (0..20)
            .map(|i| {
                Client::event::<Fraud>(&format!("acct-{}", i % 5), &transaction(1.0), None)
                    .expect("encodes")
            })
            .collect();
        client.submit(&events).await.expect("acknowledged")
    });
    assert_eq!(acked.accepted, 20);
    assert_eq!(events_of(&nodes[0], "account", "acct-1"), Some(5));

    // The command line with --ca: status over HTTPS, send over TLS.
    let http_addr = nodes[0].base.trim_start_matches("https://");
    let status = eddy(&[
        "status",
        "--ca",
        ca.to_str().unwrap(),
        "--http-addr",
        http_addr,
    ]);
    let shown = String::from_utf8_lossy(&status.stdout);
    for name in ["node-1", "node-2", "node-3"] {
        assert!(shown.contains(name), "{shown}");
    }
    let file = dir.join("events.ndjson");
    std::fs::write(&file, format!("{}\n", tx("acct-9", 3.0, "FR"))).expect("write");
    let sent = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["send", "--addr", &nodes[1].tcp, file.to_str().unwrap()])
        .env("EDDY_CA", &ca)
        .output()
        .expect("eddy send runs");
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    assert_eq!(events_of(&nodes[0], "account", "acct-9"), Some(1));

    // A verified member that dies is shown down, not hidden.
    let mut nodes = nodes;
    nodes[2].kill();
    wait_until("node-3 shown down", || {
        let (_, body, _) = get(&nodes[0].url("/v1/cluster"));
        json(&body)["members"]
            .as_array()
            .expect("members")
            .iter()
            .any(|m| m["name"] == "node-3" && m["status"] == "down")
    });
}

#[test]
fn strangers_without_a_certificate_of_the_cluster_or_its_gossip_key_never_join() {
    let dir = scratch("secure-strangers");
    let key = secured_files(&dir);
    let nodes = secured_cluster(&dir, &key);
    let before: Vec<f64> = nodes
        .iter()
        .map(|n| metric(n, "eddy_gossip_bad_datagrams_total"))
        .collect();

    // node-4 holds the gossip key but its certificate comes from another
    // CA (which it trusts): it gossips, but no node admits it.
    let other = dir.join("other-ca");
    make_ca(&other);
    make_node_cert(&other, "node-4", &other);
    // (Its HTTPS port shows the other CA's certificate: trust that to see
    // it ready, then the cluster's again.)
    trust_ca(&other.join("ca.pem"));
    let with_key = start(
        &secure_sets("node-4", &other, &other, Some(&key)),
        Some(&nodes[0]),
    );
    trust_ca(&dir.join("ca.pem"));
    // node-5 has a certificate of the cluster but the wrong gossip key.
    make_node_cert(&dir, "node-5", &dir);
    let wrong_key = dir.join("wrong.key");
    make_gossip_key(&wrong_key);
    let without_key = start(
        &secure_sets("node-5", &dir, &dir, Some(&wrong_key)),
        Some(&nodes[0]),
    );

    // Evidence that both tried: node-4's certificate was refused in the
    // handshake (its peer port checked by the members, theirs by it) and
    // node-5's datagrams did not open.
    wait_until("node-4 refused in TLS handshakes", || {
        nodes
            .iter()
            .map(|n| metric(n, "eddy_members_unverified_total"))
            .sum::<f64>()
            > 0.0
            && nodes
                .iter()
                .map(|n| metric(n, "eddy_tls_handshake_failures_total"))
                .sum::<f64>()
                > 0.0
    });
    wait_until("node-5's datagrams counted as bad", || {
        metric(&nodes[0], "eddy_gossip_bad_datagrams_total") > before[0]
    });
    for node in &nodes {
        let members = member_names(node);
        assert_eq!(members.len(), 3, "{members:?}");
        assert!(
            !members.iter().any(|m| m == "node-4" || m == "node-5"),
            "{members:?}"
        );
        let owners = owners(&partitions(node));
        assert_eq!(owners.len(), 3, "{owners:?}");
    }
    // Writes still go through the three.
    let (status, body, _) = post_json(&nodes[2].url("/v1/events"), &tx("acct-2", 1.0, "FR"));
    assert_eq!(status, 200, "{body}");
    drop((with_key, without_key));
}

#[test]
fn a_plaintext_client_on_a_tls_port_is_told_and_the_node_logs_little() {
    let dir = scratch("secure-plain-client");
    make_ca(&dir);
    make_node_cert(&dir, "node-1", &dir);
    trust_ca(&dir.join("ca.pem"));
    let log = dir.join("node.log");
    let sets = secure_sets("node-1", &dir, &dir, None);
    let refs: Vec<&str> = sets.iter().map(String::as_str).collect();
    let node = NodeProcess::start_logged(&refs, &log);

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let started = Instant::now();
    let attempts = 20;
    for _ in 0..attempts {
        let answer = runtime.block_on(async {
            let client = Client::connect(node.tcp.as_str())
                .await
                .expect("TCP connects");
            let event = Client::event::<Fraud>("acct-1", &transaction(1.0), None).expect("encodes");
            client.submit(&[event]).await
        });
        assert!(
            matches!(answer, Err(ClientError::NeedsTls)),
            "a plaintext client learns the port speaks TLS: {answer:?}"
        );
    }
    let elapsed = started.elapsed();
    // Plain HTTP to the HTTPS port fails too (no answer is a 200).
    let plain = ureq::get(&format!(
        "http://{}/healthz",
        node.base.trim_start_matches("https://")
    ))
    .call();
    assert!(plain.is_err(), "plain HTTP answered: {plain:?}");

    let refused = metric(&node, "eddy_tls_handshake_failures_total");
    assert!(
        refused >= f64::from(attempts),
        "{refused} handshakes counted"
    );
    drop(node);
    let text = std::fs::read_to_string(&log).expect("log");
    let lines = text
        .lines()
        .filter(|l| l.contains("TLS handshake failed"))
        .count();
    // One line a second at most, whatever the number of attempts.
    assert!(lines >= 1, "the refusal is logged");
    assert!(
        lines as u64 <= elapsed.as_secs() + 2,
        "{lines} lines for {attempts} attempts in {elapsed:?}"
    );
}

#[test]
fn nodes_in_the_middle_of_a_gossip_key_rotation_form_one_cluster() {
    let dir = scratch("secure-rotation");
    make_ca(&dir);
    for name in ["node-1", "node-2", "node-3"] {
        make_node_cert(&dir, name, &dir);
    }
    trust_ca(&dir.join("ca.pem"));
    let old = dir.join("old.key");
    let new = dir.join("new.key");
    make_gossip_key(&old);
    make_gossip_key(&new);
    let key_line = |path: &Path| {
        std::fs::read_to_string(path)
            .expect("key")
            .lines()
            .find(|l| !l.starts_with('#'))
            .expect("a key line")
            .to_owned()
    };
    // Step 1 of a rotation (docs/SECURITY.md): node-1 still sends with the
    // old key and accepts the new one; step 2: node-2 and node-3 send with
    // the new key and still accept the old one.
    let step_1 = dir.join("step-1.keys");
    std::fs::write(&step_1, format!("{}\n{}\n", key_line(&old), key_line(&new))).expect("write");
    let step_2 = dir.join("step-2.keys");
    std::fs::write(&step_2, format!("{}\n{}\n", key_line(&new), key_line(&old))).expect("write");
    let first = start(&secure_sets("node-1", &dir, &dir, Some(&step_1)), None);
    let second = start(
        &secure_sets("node-2", &dir, &dir, Some(&step_2)),
        Some(&first),
    );
    let third = start(
        &secure_sets("node-3", &dir, &dir, Some(&step_2)),
        Some(&first),
    );
    let all = [&first, &second, &third];
    ready(&all);
    wait_for_agreement(&all, |owners| owners.len() == 3);
    for node in all {
        assert_eq!(metric(node, "eddy_gossip_bad_datagrams_total"), 0.0);
    }
}

#[test]
fn the_shipped_secure_3_configs_form_a_cluster_with_the_files_of_eddy_cert_local_3() {
    // README: `eddy cert local-3`, then the three configs, from one directory.
    let dir = scratch("secure-3-shipped");
    let made = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["cert", "local-3"])
        .current_dir(&dir)
        .output()
        .expect("eddy cert runs");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    trust_ca(&dir.join("target/secure-3/ca.pem"));
    let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/secure-3");
    // The shipped files as they are, on free ports (gossip ports first:
    // each node's seeds name all three).
    let gossip: Vec<String> = {
        let sockets: Vec<std::net::UdpSocket> = (0..3)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").expect("free port"))
            .collect();
        sockets
            .iter()
            .map(|s| s.local_addr().expect("addr").to_string())
            .collect()
    };
    let seeds = format!(
        "seeds=[{}]",
        gossip
            .iter()
            .map(|g| format!("\"{g}\""))
            .collect::<Vec<_>>()
            .join(",")
    );
    let nodes: Vec<NodeProcess> = (1..=3)
        .map(|i| {
            let path = configs.join(format!("node-{i}.toml"));
            let mut args = vec!["--config".to_owned(), path.display().to_string()];
            for set in [
                "http_addr=\"127.0.0.1:0\"".to_owned(),
                "tcp_addr=\"127.0.0.1:0\"".to_owned(),
                "peer_addr=\"127.0.0.1:0\"".to_owned(),
                format!("gossip_addr=\"{}\"", gossip[i - 1]),
                seeds.clone(),
            ] {
                args.extend(["--set".to_owned(), set]);
            }
            // Voters: ready once all three formed the cluster.
            NodeProcess::launch_unready_in(&common::eddy_binary(), Some(&dir), &args)
        })
        .collect();
    for node in &nodes {
        node.wait_ready(std::time::Duration::from_secs(30));
    }
    let all: Vec<&NodeProcess> = nodes.iter().collect();
    wait_for_agreement(&all, |owners| owners.len() == 3);
    let (status, body, _) = post_json(&nodes[0].url("/v1/events"), &tx("acct-3", 1.0, "FR"));
    assert_eq!(status, 200, "{body}");
    assert!(
        dir.join("target/secure-3/node-1").is_dir(),
        "data_dir as shipped"
    );
}
