//! Seed inputs: one or a few valid inputs per target and mode, made with
//! the encoders the node itself uses, so the fuzzer starts past every
//! checksum and version check. `tests/corpus.rs` keeps them in
//! `fuzz/corpus/<target>/` (`EDDY_FUZZ_WRITE_SEEDS=1` writes them).

use std::net::SocketAddr;

use eddy_cluster::{
    ClusterParams, Membership, MembershipConfig, NodeId, PeerRequest, PeerResponse, ReplicaPart,
};
use eddy_control::{ClusterConfig, Command, MemberId, MemberInfo, Proposal, ProposalTag, RaftId};
use eddy_core::wire::{JsonEvent, Request, Response, WireEvent, encode_frame};
use eddy_core::{
    DEFAULT_CHUNK_BYTES, EventRef, Outputs, Partition, PartitionConfig, PartitionId, Timestamp,
};
use eddy_node::control_msg::{self, ControlRequest, ControlResponse};

/// A seed: target, file name, bytes.
pub type Seed = (&'static str, String, Vec<u8>);

const FRAUD: &str = r#"{"amount":120.5,"country":"DE"}"#;
const IOT: &str = r#"{"metric":"temp","value":71.2}"#;
const VITALS: &str = r#"{"resp_rate":18,"spo2":96,"on_oxygen":false,"temp":37.1,"systolic":120,"heart_rate":80,"consciousness":"A"}"#;

/// Every seed of every target.
pub fn seeds() -> Vec<Seed> {
    let mut out = Vec::new();
    wire(&mut out);
    peer(&mut out);
    gossip(&mut out);
    control(&mut out);
    http(&mut out);
    snapshot(&mut out);
    wal(&mut out);
    config(&mut out);
    out
}

fn with_mode(mode: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![mode];
    out.extend_from_slice(bytes);
    out
}

fn frame<T: serde::Serialize>(message: &T) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(message, &mut out).expect("seed messages encode");
    out
}

/// A frame's body: what the framed modes take.
fn body<T: serde::Serialize>(message: &T) -> Vec<u8> {
    let frame = frame(message);
    frame[6..frame.len() - 8].to_vec()
}

fn payload(kind: &str, json: &str) -> Vec<u8> {
    let registry = crate::registry();
    let id = registry.kind_id(kind).expect("an example kind");
    registry
        .event_from_json(id, json)
        .expect("seed events encode")
}

fn wire_events() -> Vec<WireEvent> {
    [("account", FRAUD), ("device", IOT), ("patient", VITALS)]
        .into_iter()
        .enumerate()
        .map(|(i, (kind, json))| WireEvent {
            kind: kind.into(),
            key: format!("{kind}-{i}").into(),
            payload: payload(kind, json),
            producer: (i == 0).then(|| eddy_core::ProducerRef {
                producer: "p-1".into(),
                seq: 7,
            }),
        })
        .collect()
}

fn wire(out: &mut Vec<Seed>) {
    let submit = Request::Submit {
        request_id: 1,
        events: wire_events(),
    };
    let json = Request::SubmitJson {
        request_id: 2,
        events: vec![JsonEvent {
            kind: "account".into(),
            key: "acct-1".into(),
            event_json: FRAUD.into(),
            producer: None,
        }],
    };
    let state = Request::GetState {
        request_id: 3,
        kind: "account".into(),
        key: "acct-1".into(),
    };
    let mut stream = frame(&submit);
    stream.extend(frame(&state));
    stream.extend(frame(&Request::GetTable { request_id: 4 }));
    out.push(("wire_frame", "requests".into(), with_mode(0, &stream)));
    let overloaded = Response::Overloaded {
        request_id: 1,
        retry_after_ms: 50,
    };
    out.push((
        "wire_frame",
        "response".into(),
        with_mode(1, &frame(&overloaded)),
    ));
    out.push((
        "wire_frame",
        "submit-body".into(),
        with_mode(2, &body(&submit)),
    ));
    out.push(("wire_frame", "json-body".into(), with_mode(2, &body(&json))));
    out.push((
        "wire_frame",
        "response-body".into(),
        with_mode(3, &body(&overloaded)),
    ));
}

/// Entries an owner logged for a few events: what a backup replicates.
fn entries() -> (Partition, Vec<u8>) {
    let registry = crate::registry();
    let mut owner = Partition::new(registry.clone(), PartitionId(3), PartitionConfig::default());
    let mut outputs = Outputs::default();
    for (i, event) in wire_events().iter().enumerate() {
        let kind = registry.kind_id(&event.kind).expect("an example kind");
        let input = EventRef {
            kind,
            key: &event.key,
            payload: &event.payload,
            producer: None,
        };
        owner
            .submit(Timestamp(1_000 + i as u64), input, &mut outputs)
            .expect("seed events apply");
    }
    (owner, outputs.log.as_bytes().to_vec())
}

fn peer(out: &mut Vec<Seed>) {
    let (owner, entries) = entries();
    let hello = PeerRequest::Hello {
        from: NodeId::new("node-2"),
        params: ClusterParams::new(1024),
    };
    let replicate = PeerRequest::Replicate {
        request_id: 5,
        parts: vec![ReplicaPart {
            partition: 3,
            epoch: 1,
            entries,
        }],
    };
    let chunk = owner
        .snapshot_chunks(DEFAULT_CHUNK_BYTES)
        .expect("seed snapshot")
        .remove(0);
    let snapshot = PeerRequest::Snapshot {
        request_id: 6,
        partition: 3,
        epoch: 1,
        chunk,
        last: true,
    };
    let forward = PeerRequest::Forward {
        request_id: 8,
        events: wire_events(),
    };
    out.push(("peer_message", "hello".into(), with_mode(0, &frame(&hello))));
    for (name, request) in [
        ("replicate", &replicate),
        ("snapshot", &snapshot),
        ("forward", &forward),
    ] {
        out.push(("peer_message", name.into(), with_mode(2, &body(request))));
    }
    let welcome = PeerResponse::Welcome {
        node: NodeId::new("node-1"),
    };
    out.push((
        "peer_message",
        "welcome".into(),
        with_mode(1, &frame(&welcome)),
    ));
    let replicated = PeerResponse::Replicated {
        request_id: 7,
        outcomes: vec![eddy_core::Replicated::Applied {
            through: eddy_core::Seq(3),
        }],
    };
    out.push((
        "peer_message",
        "replicated".into(),
        with_mode(3, &body(&replicated)),
    ));
}

fn gossip(out: &mut Vec<Seed>) {
    // Node 2 announces itself to node 1; node 1's answers go back to it,
    // and its answers again to node 1: a join as node 1 sees it.
    let now = Timestamp(1_000);
    let config = MembershipConfig::default();
    let mut two = Membership::new(eddy_cluster::testing::identity("node-2", 2), &config, now)
        .expect("fixture identity");
    let mut one = crate::gossip::receiver();
    let to_one: SocketAddr = eddy_cluster::testing::gossip_addr(1);
    two.join(&[to_one], now).expect("join");
    let mut to_node_one = Vec::new();
    for _ in 0..3 {
        let sent: Vec<_> = two.drain_datagrams().collect();
        for datagram in sent {
            to_node_one.push(datagram.bytes.clone());
            let _ = one.handle_datagram(&datagram.bytes, now);
        }
        let answers: Vec<_> = one.drain_datagrams().collect();
        for datagram in answers {
            let _ = two.handle_datagram(&datagram.bytes, now);
        }
    }
    let first = to_node_one.first().cloned().unwrap_or_default();
    out.push((
        "gossip_datagram",
        "announce".into(),
        crate::join_pieces([first.as_slice()]),
    ));
    out.push((
        "gossip_datagram",
        "join".into(),
        crate::join_pieces(to_node_one.iter().map(Vec::as_slice)),
    ));
    // The same join through the seal (sealed by the target: a seal draws a
    // random nonce, and a committed seed must not change).
    let join = crate::join_pieces(to_node_one.iter().map(Vec::as_slice));
    for (mode, name) in [
        (1u8, "join-sealed-by-target"),
        (2, "join-tampered"),
        (3, "join-foreign-key"),
    ] {
        out.push(("gossip_sealed", name.into(), [&[mode][..], &join].concat()));
    }
}

fn member(name: &str, port: u16) -> (MemberId, MemberInfo) {
    let at = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    (
        MemberId::new(name, 1),
        MemberInfo {
            peer_addr: at(port),
            http_addr: at(port + 1),
            tcp_addr: at(port + 2),
        },
    )
}

fn control(out: &mut Vec<Seed>) {
    let mut message = raft::eraftpb::Message::default();
    message.set_msg_type(raft::eraftpb::MessageType::MsgAppend);
    message.to = 2;
    message.from = 1;
    message.term = 3;
    message.index = 4;
    message.log_term = 3;
    message.commit = 4;
    let mut entry = raft::eraftpb::Entry {
        term: 3,
        index: 5,
        ..Default::default()
    };
    let proposal = Proposal {
        tag: ProposalTag {
            proposer: RaftId(1),
            seq: 9,
        },
        command: Command::Elect {
            partition: PartitionId(3),
            owner: MemberId::new("node-1", 1),
            epoch: eddy_core::Epoch(2),
        },
    };
    entry.data = proposal.encode().into();
    message.set_entries(vec![entry].into());
    let bytes = eddy_control::wire::encode_message(&message).expect("seed message encodes");
    out.push(("control_frame", "append".into(), with_mode(0, &bytes)));
    let inner = &bytes[1..bytes.len() - 8];
    out.push(("control_frame", "append-body".into(), with_mode(1, inner)));
    out.push((
        "control_frame",
        "proposal".into(),
        with_mode(2, &proposal.encode()),
    ));
    let voters = [member("node-1", 7000), member("node-2", 7010)];
    let config = ClusterConfig::bootstrap(42, 8, 2, &voters);
    out.push((
        "control_frame",
        "config".into(),
        with_mode(3, &config.encode()),
    ));
    let (id, info) = member("node-3", 7020);
    let join = ControlRequest::Join { member: id, info };
    out.push((
        "control_frame",
        "join".into(),
        with_mode(4, &control_msg::encode(&join)),
    ));
    let refused = ControlResponse::Refused("not the leader".into());
    out.push((
        "control_frame",
        "refused".into(),
        with_mode(5, &control_msg::encode(&refused)),
    ));
    let log = controller_log(&proposal);
    out.push(("control_frame", "controller-log".into(), with_mode(6, &log)));
    // The same records, bodies only: each record is `len | version | body |
    // xxh3`.
    let mut bodies = Vec::new();
    let mut at = 0;
    while let Some(len) = log.get(at..at + 4) {
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        bodies.push(log[at + 5..at + 4 + len - 8].to_vec());
        at += 4 + len;
    }
    let joined = crate::join_pieces(bodies.iter().map(Vec::as_slice));
    out.push((
        "control_frame",
        "controller-log-bodies".into(),
        with_mode(7, &joined),
    ));
}

/// A controller log as a voter writes it to `data_dir`: its hard state and
/// two entries.
fn controller_log(proposal: &Proposal) -> Vec<u8> {
    use eddy_control::Persist;
    use eddy_control::wire::{EntryRecord, HardStateRecord};
    let dir = std::env::temp_dir().join(format!("eddy-fuzz-seed-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut log = eddy_node::control_log::ControlLog::open(&dir)
        .expect("a scratch directory")
        .log;
    let entry = |index| EntryRecord {
        term: 2,
        index,
        data: proposal.encode(),
        context: Vec::new(),
    };
    let effects = [
        Persist::HardState(HardStateRecord {
            term: 2,
            vote: 1,
            commit: 1,
        }),
        Persist::Entries(vec![entry(1), entry(2)]),
    ];
    log.persist(&effects).expect("a scratch directory");
    let path = dir
        .join(eddy_node::control_log::DIR)
        .join(eddy_node::control_log::FILE);
    let bytes = std::fs::read(path).expect("the log was written");
    let _ = std::fs::remove_dir_all(&dir);
    bytes
}

fn http(out: &mut Vec<Seed>) {
    let object =
        format!(r#"{{"kind":"account","key":"acct-1","event":{FRAUD},"producer":"p","seq":1}}"#);
    let array = format!(
        r#"[{{"kind":"device","key":"dev-1","event":{IOT}}},{{"kind":"patient","key":"pat-1","event":{VITALS}}}]"#
    );
    let ndjson = format!(
        "{{\"kind\":\"account\",\"key\":\"a\",\"event\":{FRAUD}}}\n{{\"kind\":\"device\",\"key\":\"d\",\"event\":{IOT}}}\n"
    );
    for (name, body) in [("object", object), ("array", array), ("ndjson", ndjson)] {
        out.push(("http_events", name.into(), body.into_bytes()));
    }
}

fn snapshot(out: &mut Vec<Seed>) {
    let (owner, _) = entries();
    let chunks = owner
        .snapshot_chunks(DEFAULT_CHUNK_BYTES)
        .expect("seed snapshot");
    let mut file = Vec::new();
    for chunk in &chunks {
        let len = u32::try_from(chunk.len()).expect("small chunk");
        file.extend_from_slice(&len.to_le_bytes());
        file.extend_from_slice(chunk);
    }
    out.push(("snapshot_chunks", "file".into(), with_mode(0, &file)));
    // Several small chunks: bodies only.
    let small = owner.snapshot_chunks(64).expect("seed snapshot");
    let bodies: Vec<&[u8]> = small.iter().map(|c| &c[14..c.len() - 8]).collect();
    out.push((
        "snapshot_chunks",
        "bodies".into(),
        with_mode(1, &crate::join_pieces(bodies)),
    ));
}

fn wal(out: &mut Vec<Seed>) {
    let (_, entries) = entries();
    let record = eddy_node::storage::Storage::wal_record(&entries).expect("small batch");
    out.push(("wal_records", "file".into(), with_mode(0, &record)));
    out.push((
        "wal_records",
        "entries".into(),
        with_mode(1, &crate::join_pieces([entries.as_slice()])),
    ));
}

fn config(out: &mut Vec<Seed>) {
    let file = include_str!("../../../config/node.toml");
    out.push(("config", "node-toml".into(), file.as_bytes().to_vec()));
    let small = "name = \"node-1\"\npartitions = 64\nreplication_factor = 2\nseeds = [\"127.0.0.1:7946\"]\nvoters = [\"node-1\"]\n\0data_dir=\"/tmp/x\"\nfsync=\"batch\"\n";
    out.push(("config", "overrides".into(), small.as_bytes().to_vec()));
}
