//! Three real `eddy node` processes on loopback forming a cluster: routing
//! from any node, reads from any node, a routed client, a SIGKILLed node
//! replaced in the table, and refusals of foreign or broken peers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::*;
use eddy_client::{Client, ClientConfig, RoutedClient};
use eddy_cluster::{ClusterParams, NodeId, PeerRequest, PeerResponse};
use eddy_core::wire::{decode_frame, encode_frame};
use eddy_fraud::{Country, Fraud, Transaction};

/// Waits (bounded) until every node's table has exactly `names` as owners
/// and all tables are identical; returns the common table.
fn wait_for_table(nodes: &[&NodeProcess], names: &[&str]) -> serde_json::Value {
    let wanted: BTreeSet<String> = names.iter().map(|n| (*n).to_owned()).collect();
    wait_for_agreement(nodes, |owners| *owners == wanted)
}

fn member_status(node: &NodeProcess, name: &str) -> Option<String> {
    let (_, body, _) = get(&node.url("/v1/cluster"));
    json(&body)["members"]
        .as_array()
        .expect("members")
        .iter()
        .find(|m| m["name"] == name)
        .and_then(|m| m["status"].as_str().map(str::to_owned))
}

fn owner_of(node: &NodeProcess, key: &str) -> String {
    let (status, body, _) = get(&node.url(&format!("/v1/actors/account/{key}")));
    assert_eq!(status, 200, "{body}");
    json(&body)["owner"].as_str().expect("owner").to_owned()
}

#[test]
fn events_sent_to_any_node_reach_their_owner_and_read_the_same_everywhere() {
    let nodes = start_cluster(3, &[]);
    let all: Vec<&NodeProcess> = nodes.iter().collect();
    let table = wait_for_table(&all, &["node-1", "node-2", "node-3"]);
    let owned = table["owned"].as_object().expect("owned");
    let total: u64 = owned.values().map(|v| v.as_u64().expect("count")).sum();
    assert_eq!(total, 1024);
    for (name, count) in owned {
        let count = count.as_u64().expect("count");
        assert!(count > 200, "{name} owns only {count} of 1024");
    }

    // Batches of 5 keys each (several owners per batch), round-robin over nodes.
    let mut model: BTreeMap<String, u64> = BTreeMap::new();
    for round in 0..60usize {
        let keys: Vec<String> = (0..5)
            .map(|j| format!("acct-{}", (round * 5 + j) % 37))
            .collect();
        let body = format!(
            "[{}]",
            keys.iter()
                .map(|k| tx(k, 5.0, "FR"))
                .collect::<Vec<_>>()
                .join(",")
        );
        let node = &nodes[round % 3];
        let (status, reply, _) = post_json(&node.url("/v1/events"), &body);
        assert_eq!(status, 200, "round {round} via {}: {reply}", node.base);
        assert_eq!(json(&reply)["accepted"], 5);
        for key in keys {
            *model.entry(key).or_default() += 1;
        }
    }
    let mut owners_seen = BTreeSet::new();
    for (key, count) in &model {
        let owner = owner_of(&nodes[0], key);
        for node in &nodes {
            assert_eq!(
                events_of(node, "account", key),
                Some(*count),
                "{key} via {}",
                node.base
            );
            assert_eq!(
                owner_of(node, key),
                owner,
                "every node names one owner for {key}"
            );
        }
        owners_seen.insert(owner);
    }
    assert_eq!(owners_seen.len(), 3, "37 keys land on all three nodes");
}

fn transaction() -> Transaction {
    Transaction {
        amount: 2.0,
        country: Country::parse("DE").expect("valid"),
        merchant: "m-2".into(),
    }
}

#[test]
fn routed_client_sends_each_event_to_its_owner() {
    let nodes = start_cluster(3, &[]);
    let all: Vec<&NodeProcess> = nodes.iter().collect();
    let table = wait_for_table(&all, &["node-1", "node-2", "node-3"]);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let client = RoutedClient::connect(&[nodes[1].tcp.clone()], ClientConfig::default())
            .await
            .expect("connects");
        let routes = client.table();
        assert_eq!(routes.nodes.len(), 3);
        assert_eq!(routes.partitions, 1024);
        for (p, &owner) in routes.owners.iter().enumerate() {
            let name = &routes.nodes[owner as usize].0;
            assert_eq!(
                table["partitions"][p]["owner"],
                name.as_str(),
                "partition {p}"
            );
        }
        let events: Vec<_> = (0..300)
            .map(|i| {
                Client::event::<Fraud>(&format!("acct-{}", i % 50), &transaction(), None)
                    .expect("encodes")
            })
            .collect();
        let ack = client.submit(&events).await.expect("accepted");
        assert_eq!(ack.accepted, 300);
        assert_eq!(
            ack.misrouted, 0,
            "a fresh table routes every event to its owner"
        );
        assert!(ack.rejected.is_empty());

        // A plain client on one node must have most events forwarded.
        let single = Client::connect(&nodes[0].tcp).await.expect("connects");
        let ack = single.submit(&events).await.expect("accepted");
        assert_eq!(ack.accepted, 300);
        assert!(
            ack.misrouted > 0 && ack.misrouted < 300,
            "misrouted {}",
            ack.misrouted
        );
    });
    for i in 0..50 {
        assert_eq!(
            events_of(&nodes[2], "account", &format!("acct-{i}")),
            Some(12)
        );
    }
}

#[test]
fn a_killed_node_is_marked_down_and_its_partitions_get_new_owners() {
    let mut nodes = start_cluster(3, &[]);
    let all: Vec<&NodeProcess> = nodes.iter().collect();
    let before = wait_for_table(&all, &["node-1", "node-2", "node-3"]);
    // Epochs are per node: each has seen its own sequence of tables.
    let before_each: Vec<_> = nodes[..2].iter().map(partitions).collect();
    let moved: Vec<usize> = (0..1024)
        .filter(|&p| before["partitions"][p]["owner"] == "node-3")
        .collect();
    assert!(!moved.is_empty());

    let killed = Instant::now();
    nodes[2].kill();
    let survivors: Vec<&NodeProcess> = nodes[..2].iter().collect();
    wait_for_table(&survivors, &["node-1", "node-2"]);
    let took = killed.elapsed();
    for node in &survivors {
        assert_eq!(member_status(node, "node-3").as_deref(), Some("down"));
    }
    eprintln!("node-3 killed: new table on both survivors after {took:?}");
    for (node, before) in survivors.iter().zip(&before_each) {
        let after = partitions(node);
        for p in 0..1024 {
            let (old, new) = (&before["partitions"][p], &after["partitions"][p]);
            assert_ne!(new["owner"], "node-3");
            let bump = u64::from(moved.contains(&p));
            assert_eq!(
                new["local_table_epoch"].as_u64(),
                old["local_table_epoch"].as_u64().map(|e| e + bump),
                "a new owner means the next epoch, the same owner the same (partition {p}: {old} then {new})"
            );
        }
    }
    // Keys of moved partitions take events again, through either survivor.
    let key = (0..)
        .map(|i| format!("acct-{i}"))
        .find(|k| {
            let p = eddy_core::partition_of("account", k, 1024).0 as usize;
            moved.contains(&p)
        })
        .expect("some key maps to a moved partition");
    // Refused (503) until the survivors hold two copies of it again: a
    // write never rests on one copy under the default min_insync_replicas.
    for node in &survivors {
        let asked = Instant::now();
        let (status, body, _) = retrying_503_for(Duration::from_secs(30), || {
            post_json(&node.url("/v1/events"), &tx(&key, 1.0, "FR"))
        });
        assert_eq!(status, 200, "{body}");
        eprintln!("{}: acknowledged after {:?}", node.base, asked.elapsed());
    }
    let count = events_of(&nodes[0], "account", &key).expect("has state");
    assert!(
        count >= 2,
        "both events after the move are applied: {count}"
    );
}

#[test]
fn a_stopping_node_leaves_at_once() {
    let mut nodes = start_cluster(2, &[]);
    let all: Vec<&NodeProcess> = nodes.iter().collect();
    wait_for_table(&all, &["node-1", "node-2"]);
    let status = nodes.pop().expect("two nodes").terminate();
    assert!(status.success());
    // SIGTERM announces the leave; no failure detection needed.
    wait_for_table(&[&nodes[0]], &["node-1"]);
    assert_eq!(member_status(&nodes[0], "node-2").as_deref(), Some("down"));
}

#[test]
fn admin_leave_makes_a_node_leave_and_exit() {
    let mut nodes = start_cluster(2, &[]);
    let all: Vec<&NodeProcess> = nodes.iter().collect();
    wait_for_table(&all, &["node-1", "node-2"]);
    let (status, body, _) = post_json(&nodes[1].url("/v1/admin/leave"), "");
    assert_eq!(status, 202, "{body}");
    assert_eq!(json(&body)["leaving"], "node-2");
    let exit = nodes.pop().expect("two nodes").wait_for_exit();
    assert!(exit.success(), "{exit:?}");
    wait_for_table(&[&nodes[0]], &["node-1"]);
    assert_eq!(member_status(&nodes[0], "node-2").as_deref(), Some("down"));
}

#[test]
fn a_node_with_another_partition_count_is_refused() {
    let nodes = start_cluster(1, &[]);
    let seeds = format!("seeds=[\"{}\"]", nodes[0].gossip);
    // Never ready: the cluster does not admit it.
    let stranger = NodeProcess::start_unready(&[
        "name=\"stranger\"",
        "partitions=512",
        &seeds,
        &voters_for(1),
    ]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, metrics, _) = get(&nodes[0].url("/metrics"));
        if metrics.contains("eddy_members_refused_total") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node-1 never reported refusing the stranger"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(member_status(&nodes[0], "stranger"), None);
    assert_eq!(member_status(&stranger, "node-1"), None);
    assert_eq!(
        owners(&partitions(&nodes[0])),
        BTreeSet::from(["node-1".to_owned()])
    );
}

#[test]
fn garbage_on_the_gossip_and_peer_ports_harms_nothing() {
    let nodes = start_cluster(2, &[]);
    let all: Vec<&NodeProcess> = nodes.iter().collect();
    wait_for_table(&all, &["node-1", "node-2"]);

    let socket = UdpSocket::bind("127.0.0.1:0").expect("udp");
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    for len in [0usize, 1, 2, 7, 64, 500, 1400, 2000] {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        socket.send_to(&bytes, &nodes[0].gossip).expect("sent");
    }
    socket
        .send_to(b"GET / HTTP/1.1\r\n\r\n", &nodes[0].gossip)
        .expect("sent");

    // Peer port: garbage, then a Hello of another P, then a peer's frame
    // without a Hello: each is refused and closed.
    let refused = |bytes: &[u8]| -> String {
        let answer = raw_exchange(&nodes[0].peer, bytes);
        match decode_frame::<PeerResponse>(&answer, 1 << 20) {
            Ok(Some((PeerResponse::Refused { reason }, _))) => reason,
            other => panic!("expected Refused, got {other:?}"),
        }
    };
    let reason = refused(b"\xff\xff\xff\x7fnot a frame at all");
    assert!(reason.contains("frame"), "{reason}");
    let mut hello = Vec::new();
    encode_frame(
        &PeerRequest::Hello {
            from: NodeId::new("other"),
            params: ClusterParams::new(512),
        },
        &mut hello,
    )
    .expect("encodes");
    let reason = refused(&hello);
    assert!(reason.contains("partition count 512"), "{reason}");
    let mut read = Vec::new();
    encode_frame(
        &PeerRequest::GetState {
            request_id: 1,
            kind: "account".into(),
            key: "acct-1".into(),
        },
        &mut read,
    )
    .expect("encodes");
    assert!(refused(&read).contains("Hello"));

    // The cluster carries on: both still see each other and route.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(member_status(&nodes[0], "node-2").as_deref(), Some("up"));
    for i in 0..20 {
        let key = format!("acct-{i}");
        // A write caught by a partition moving to node-2 (the cluster has
        // just formed) is refused with 503, perhaps applied on the deposed
        // owner: retried with its producer id.
        let mut tries = 0;
        loop {
            let (status, body, _) =
                post_json(&nodes[0].url("/v1/events"), &tx_once(&key, 1.0, "FR", 1));
            if status == 200 {
                break;
            }
            tries += 1;
            assert!(status == 503 && tries < 20, "{status} {body}");
            std::thread::sleep(Duration::from_millis(250));
        }
        assert_eq!(events_of(&nodes[1], "account", &key), Some(1));
    }
}

#[test]
fn the_shipped_local_3_configs_form_a_cluster_and_eddy_status_shows_it() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/local-3");
    // The shipped files as they are, but on free ports, so a cluster a user
    // started from them (README) and this test do not collide. The gossip
    // ports are picked first: each node's seeds name all three.
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
    // The shipped data_dirs are relative to where a user starts the nodes;
    // this test keeps its own, empty ones.
    let data = scratch("local-3");
    // Started in reverse order: the seeds list makes any order work.
    let mut nodes: Vec<NodeProcess> = (1..=3)
        .rev()
        .map(|i| {
            let path = dir.join(format!("node-{i}.toml"));
            let mut args = vec!["--config".to_owned(), path.display().to_string()];
            for set in [
                "http_addr=\"127.0.0.1:0\"".to_owned(),
                "tcp_addr=\"127.0.0.1:0\"".to_owned(),
                "peer_addr=\"127.0.0.1:0\"".to_owned(),
                format!("gossip_addr=\"{}\"", gossip[i - 1]),
                seeds.clone(),
                format!("data_dir=\"{}\"", data.join(format!("node-{i}")).display()),
            ] {
                args.extend(["--set".to_owned(), set]);
            }
            // Voters: ready once all three formed the cluster.
            NodeProcess::launch_unready(&args)
        })
        .collect();
    nodes.reverse();
    for node in &nodes {
        node.wait_ready(std::time::Duration::from_secs(30));
    }
    let all: Vec<&NodeProcess> = nodes.iter().collect();
    wait_for_table(&all, &["node-1", "node-2", "node-3"]);

    let status = || {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_eddy"))
            .args([
                "status",
                "--http-addr",
                nodes[1].base.trim_start_matches("http://"),
            ])
            .output()
            .expect("eddy status runs");
        assert!(output.status.success());
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let mut text = status();
    assert!(text.starts_with("members seen by node-2"), "{text}");
    // The shipped configs name the three as the controller's voters.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !(text.contains(" voter (running), leader node-") && text.contains("node-3#")) {
        assert!(std::time::Instant::now() < deadline, "{text}");
        std::thread::sleep(Duration::from_millis(100));
        text = status();
    }
    let mut owned = 0;
    for name in ["node-1", "node-2", "node-3"] {
        let row: Vec<&str> = text
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no row for {name}: {text}"))
            .split_whitespace()
            .collect();
        assert_eq!(row[1], "up", "{text}");
        owned += row[5].parse::<usize>().expect("owns is a number");
        assert!(
            row[6].parse::<usize>().expect("backups") > 0,
            "rf 2 gives backups"
        );
    }
    assert_eq!(owned, 1024, "{text}");

    let failed = std::process::Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["status", "--http-addr", "127.0.0.1:1"])
        .output()
        .expect("eddy status runs");
    assert!(!failed.status.success());
    assert!(String::from_utf8_lossy(&failed.stderr).starts_with("error: "));
}

/// The registry of the stock kinds every test node hosts.
fn stock_registry() -> std::sync::Arc<eddy_core::Registry> {
    std::sync::Arc::new(
        eddy_core::Registry::builder()
            .kind::<Fraud>()
            .kind::<eddy_iot::Iot>()
            .kind::<eddy_vitals::Vitals>()
            .build()
            .expect("the stock kinds"),
    )
}

/// A 3-node cluster with one event written to `key`: the nodes, the key's
/// partition, its owner's epoch and its replicas (owner first).
fn three_nodes_and_a_written_key(key: &str) -> (Vec<NodeProcess>, u32, u64, Vec<String>) {
    let nodes = start_cluster(3, &[]);
    let all: Vec<&NodeProcess> = nodes.iter().collect();
    wait_for_table(&all, &["node-1", "node-2", "node-3"]);
    let (status, body, _) =
        post_json_retrying(&nodes[0].url("/v1/events"), &tx_once(key, 1.0, "FR", 1));
    assert_eq!(status, 200, "{body}");
    let (_, body, _) = get(&nodes[0].url(&format!("/v1/actors/account/{key}")));
    let actor = json(&body);
    let partition = u32::try_from(actor["partition"].as_u64().expect("partition")).expect("u32");
    let epoch = actor["owner_epoch"].as_u64().expect("epoch");
    let replicas = actor["replicas"]
        .as_array()
        .expect("replicas")
        .iter()
        .map(|r| r.as_str().expect("name").to_owned())
        .collect();
    (nodes, partition, epoch, replicas)
}

/// The frames of a snapshot of an empty copy of `partition` at `epoch`, as
/// its owner would send them.
fn empty_snapshot(partition: u32, epoch: u64) -> Vec<PeerRequest> {
    let mut copy = eddy_core::Partition::new(
        stock_registry(),
        eddy_core::PartitionId(partition),
        eddy_core::PartitionConfig::default(),
    );
    copy.set_epoch(eddy_core::Epoch(epoch));
    let chunks = copy.snapshot_chunks(1 << 16).expect("a snapshot");
    let last = chunks.len() - 1;
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, chunk)| PeerRequest::Snapshot {
            request_id: i as u64,
            partition,
            epoch,
            chunk,
            last: i == last,
        })
        .collect()
}

/// Opens a peer link to `node` as `from` (a plain link: no TLS in these
/// tests), sends `requests` and returns the Hello's answer followed by one
/// answer per request.
fn peer_exchange(node: &NodeProcess, from: &str, requests: Vec<PeerRequest>) -> Vec<PeerResponse> {
    use std::io::{Read, Write};
    let wanted = requests.len() + 1;
    let mut bytes = Vec::new();
    let hello = PeerRequest::Hello {
        from: NodeId::new(from),
        params: ClusterParams::new(1024).with_kinds(stock_registry().fingerprint()),
    };
    for request in std::iter::once(hello).chain(requests) {
        let mut frame = Vec::new();
        encode_frame(&request, &mut frame).expect("encodes");
        bytes.extend_from_slice(&frame);
    }
    let mut stream = std::net::TcpStream::connect(&node.peer).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(&bytes).expect("writes");
    let mut answers = Vec::new();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    while answers.len() < wanted {
        let n = stream.read(&mut buf).expect("the node answers");
        assert!(n > 0, "closed after {answers:?}");
        received.extend_from_slice(&buf[..n]);
        while let Ok(Some((answer, used))) = decode_frame::<PeerResponse>(&received, 1 << 20) {
            answers.push(answer);
            received.drain(..used);
        }
    }
    answers
}

/// A peer that passed the handshake and names partitions outside `0..P`
/// (one 30-byte frame used to make a worker allocate a slot list of 2^32
/// entries and abort the node) is refused per request; the node carries on.
#[test]
fn out_of_range_partitions_on_the_peer_port_are_refused_and_harm_nothing() {
    let nodes = start_cluster(2, &[]);
    let all: Vec<&NodeProcess> = nodes.iter().collect();
    wait_for_table(&all, &["node-1", "node-2"]);
    let answers = peer_exchange(
        &nodes[0],
        "node-2",
        vec![
            PeerRequest::Snapshot {
                request_id: 1,
                partition: u32::MAX,
                epoch: u64::MAX,
                chunk: Vec::new(),
                last: true,
            },
            PeerRequest::Replicate {
                request_id: 2,
                parts: vec![eddy_cluster::ReplicaPart {
                    partition: u32::MAX,
                    epoch: 1,
                    entries: Vec::new(),
                }],
            },
            PeerRequest::Snapshot {
                request_id: 3,
                partition: 1024,
                epoch: u64::MAX,
                chunk: Vec::new(),
                last: false,
            },
        ],
    );
    assert!(
        matches!(answers[0], PeerResponse::Welcome { .. }),
        "{answers:?}"
    );
    for answer in &answers[1..] {
        match answer {
            PeerResponse::Failed { failure, .. } => {
                assert!(
                    format!("{failure:?}").contains("out of range"),
                    "{failure:?}"
                );
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
    // Each refusal is counted.
    assert!(metric(&nodes[0], "eddy_protocol_errors_total") >= 3.0);
    // Both nodes are alive and route (a write caught by a partition moving
    // to node-2, the cluster having just formed, is retried).
    for i in 0..10 {
        let key = format!("acct-{i}");
        let (status, body, _) =
            post_json_retrying(&nodes[0].url("/v1/events"), &tx_once(&key, 1.0, "FR", 1));
        assert_eq!(status, 200, "{body}");
        assert_eq!(events_of(&nodes[1], "account", &key), Some(1));
    }
}

/// A peer frame claiming the maximum epoch — an empty `Replicate` to a
/// partition's owner, a snapshot of a copy at that epoch to its backup —
/// used to fence the partition off until every node restarted. Only the
/// committed configuration makes an epoch known: both are refused once they
/// waited for it in vain, and the partition keeps acknowledging at its
/// committed epoch.
#[test]
fn a_forged_maximum_epoch_on_the_peer_port_moves_no_fence() {
    let key = "acct-forged";
    let (nodes, partition, epoch, replicas) = three_nodes_and_a_written_key(key);
    // start_cluster names its nodes node-1, node-2, ... in order.
    let node = |name: &str| {
        let n: usize = name.trim_start_matches("node-").parse().expect("node-N");
        &nodes[n - 1]
    };
    let (owner, backup) = (node(&replicas[0]), node(&replicas[1]));
    let outsider = (1..=3)
        .map(|n| format!("node-{n}"))
        .find(|n| !replicas.contains(n))
        .expect("three nodes, two replicas");

    let snapshot = empty_snapshot(partition, u64::MAX);
    let replicate = vec![PeerRequest::Replicate {
        request_id: 1,
        parts: vec![eddy_cluster::ReplicaPart {
            partition,
            epoch: u64::MAX,
            entries: Vec::new(),
        }],
    }];
    for (target, requests) in [(owner, replicate), (backup, snapshot)] {
        let answers = peer_exchange(target, &outsider, requests);
        let refused = answers.iter().any(|a| {
            matches!(a, PeerResponse::Replicated { outcomes, .. }
                if outcomes.iter().any(|o| matches!(o, eddy_core::Replicated::EpochUnknown { .. })))
        });
        assert!(refused, "{} answered {answers:?}", target.base);
        assert!(metric(target, "eddy_peer_writes_refused_total") >= 1.0);
    }

    // The partition still acknowledges, at its committed epoch, on the
    // same owner; every copy of it kept its epoch.
    for i in 0..10 {
        let (status, body, _) =
            post_json_retrying(&nodes[2].url("/v1/events"), &tx_once(key, 2.0, "FR", 2 + i));
        assert_eq!(status, 200, "write {i}: {body}");
    }
    assert_eq!(events_of(&nodes[0], "account", key), Some(11));
    let (_, body, _) = get(&nodes[0].url(&format!("/v1/actors/account/{key}")));
    let after = json(&body);
    assert_eq!(after["owner_epoch"].as_u64(), Some(epoch), "{after}");
    assert_eq!(
        after["owner"].as_str(),
        Some(replicas[0].as_str()),
        "{after}"
    );
    for node in [owner, backup] {
        let table = partitions(node);
        let copy = table["copies"]
            .as_array()
            .expect("copies")
            .iter()
            .find(|c| c["partition"].as_u64() == Some(u64::from(partition)))
            .expect("the replica holds a copy");
        assert_eq!(
            copy["owner_epoch"].as_u64(),
            Some(epoch),
            "{}: {copy}",
            node.base
        );
    }
}

/// A node without a copy of a partition (none yet, or lost with a failed
/// worker) has no fence of its own: the committed configuration is its
/// fence. A snapshot from an owner the configuration moved past is refused
/// `Stale`, not installed and confirmed to the deposed owner.
#[test]
fn a_node_without_a_copy_refuses_an_owner_the_configuration_deposed() {
    let (nodes, partition, epoch, replicas) = three_nodes_and_a_written_key("acct-deposed");
    assert!(epoch >= 1, "written at epoch {epoch}");
    let outsider = (1..=3)
        .find(|n| !replicas.contains(&format!("node-{n}")))
        .expect("three nodes, two replicas");
    let outsider = &nodes[outsider - 1];

    let answers = peer_exchange(outsider, &replicas[0], empty_snapshot(partition, epoch - 1));
    let stale = answers.iter().any(|a| {
        matches!(a, PeerResponse::Replicated { outcomes, .. }
            if outcomes.iter().any(|o| matches!(o, eddy_core::Replicated::Stale { current } if current.0 == epoch)))
    });
    assert!(stale, "{answers:?}");
    // A copy it may hold is a substitute's, at the committed epoch (an
    // owner that found its backup slow at start shipped to the outsider),
    // never the deposed owner's.
    let deposed = partitions(outsider)["copies"]
        .as_array()
        .expect("copies")
        .iter()
        .any(|c| {
            c["partition"].as_u64() == Some(u64::from(partition))
                && c["owner_epoch"].as_u64().is_some_and(|e| e < epoch)
        });
    assert!(!deposed, "the deposed owner's copy was not installed");
    assert!(metric(outsider, "eddy_peer_writes_refused_total") >= 1.0);
}
