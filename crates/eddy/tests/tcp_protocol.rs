//! The binary protocol against a real node: `eddy send` and `eddy tail`, the
//! Rust client with pipelining, and every kind of bad frame (the connection
//! is closed, the node keeps serving, no state changes).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use eddy_client::{Client, ClientError};
use eddy_core::wire::{ErrorCode, Request, Response, WireEvent, decode_frame, encode_frame};
use eddy_fraud::{Country, Fraud, Transaction};

fn eddy() -> Command {
    Command::new(env!("CARGO_BIN_EXE_eddy"))
}

fn transaction(amount: f64, country: &str) -> Transaction {
    Transaction {
        amount,
        country: Country::parse(country).expect("valid"),
        merchant: "m-1".into(),
    }
}

fn protocol_error(answer: &[u8]) -> String {
    match decode_frame::<Response>(answer, 1 << 20) {
        Ok(Some((Response::ProtocolError { message }, _))) => message,
        other => panic!("expected a ProtocolError frame, got {other:?}"),
    }
}

#[test]
fn send_from_a_file_applies_every_good_line_and_reports_bad_ones() {
    let node = NodeProcess::start(&[]);
    let dir = std::env::temp_dir().join(format!("eddy-send-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("events.ndjson");
    let mut text = String::new();
    for i in 0..2500 {
        text.push_str(&tx(&format!("acct-{}", i % 50), 10.0, "DE"));
        text.push('\n');
    }
    text.push_str("{\"kind\":\"nope\",\"key\":\"k\",\"event\":{}}\n");
    std::fs::write(&path, text).expect("write");
    let output = eddy()
        .args(["send", "--addr", &node.tcp, "--batch", "300"])
        .arg(&path)
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stdout.contains("sent 2501 events: 2500 accepted"),
        "{stdout}{stderr}"
    );
    // A kind this binary does not link goes as JSON; the node refuses it,
    // naming the kinds it hosts and the input line.
    assert!(
        stderr.contains("lines 2501-2501")
            && stderr.contains("unknown kind `nope` (this node hosts: account, device, patient)"),
        "{stderr}"
    );
    assert!(
        !output.status.success(),
        "a bad line makes the exit status non-zero"
    );
    let total: u64 = (0..50)
        .map(|i| events_of(&node, "account", &format!("acct-{i}")).unwrap())
        .sum();
    assert_eq!(total, 2500);
}

#[test]
fn tail_prints_alerts_as_json_lines() {
    let node = NodeProcess::start(&[]);
    let tail = eddy()
        .args([
            "tail", "--addr", &node.tcp, "--kind", "account", "--count", "1",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("tail starts");
    // The subscription must exist before the alert; retry the trigger until
    // tail has printed (bounded).
    let mut tail = tail;
    for attempt in 0..50 {
        let key = format!("acct-travel-{attempt}");
        post_json(
            &node.url("/v1/events"),
            &format!("{}\n{}", tx(&key, 1.0, "DE"), tx(&key, 1.0, "US")),
        );
        std::thread::sleep(Duration::from_millis(100));
        if tail.try_wait().expect("wait").is_some() {
            break;
        }
    }
    let output = tail.wait_with_output().expect("tail exits after one alert");
    let line = String::from_utf8_lossy(&output.stdout);
    let alert = json(line.lines().next().expect("one line"));
    assert_eq!(alert["kind"], "account");
    assert_eq!(alert["alert"]["reason"], "impossible_travel");
}

/// Sum of the `events` counts of accounts acct-0 .. acct-{keys - 1}, read
/// over the binary protocol.
async fn total_events(client: &Client, keys: u64) -> u64 {
    let mut total = 0;
    for key in 0..keys {
        let state = client
            .get_state("account", &format!("acct-{key}"))
            .await
            .expect("state")
            .expect("exists");
        total += json(&state)["events"].as_u64().expect("count");
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_pipelines_batches_and_reads_state() {
    let node = tokio::task::spawn_blocking(|| NodeProcess::start(&[]))
        .await
        .expect("start");
    let client = std::sync::Arc::new(Client::connect(&node.tcp).await.expect("connects"));
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..40u64 {
        let client = client.clone();
        tasks.spawn(async move {
            let events: Vec<WireEvent> = (0..25)
                .map(|i| {
                    Client::event::<Fraud>(
                        &format!("acct-{}", (task + i) % 10),
                        &transaction(5.0, "FR"),
                        None,
                    )
                })
                .collect::<Result<_, _>>()
                .expect("encodes");
            client.submit(&events).await
        });
    }
    let mut accepted = 0;
    while let Some(result) = tasks.join_next().await {
        accepted += result.expect("task").expect("acked").accepted;
    }
    assert_eq!(accepted, 1000);
    assert_eq!(total_events(&client, 10).await, 1000);
    assert_eq!(
        client.get_state("account", "never").await.expect("answer"),
        None
    );
    // A payload that is not the kind's event is refused whole and changes nothing.
    let bad = WireEvent {
        kind: "account".into(),
        key: "acct-0".into(),
        payload: vec![0xff; 3],
        producer: None,
    };
    let good = Client::event::<Fraud>("acct-0", &transaction(1.0, "FR"), None).expect("encodes");
    match client.submit(&[good, bad]).await {
        Err(ClientError::Rejected {
            code: ErrorCode::BadRequest,
            message,
        }) => {
            assert!(message.contains("event 1"), "{message}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let unknown = WireEvent {
        kind: "nope".into(),
        key: "k".into(),
        payload: vec![],
        producer: None,
    };
    assert!(matches!(
        client.submit(&[unknown]).await,
        Err(ClientError::Rejected { .. })
    ));
    let state = client
        .get_state("account", "acct-0")
        .await
        .expect("state")
        .expect("exists");
    let before = json(&state)["events"].as_u64();
    assert_eq!(before, Some(100), "the refused batch applied nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batcher_coalesces_concurrent_single_sends() {
    let node = tokio::task::spawn_blocking(|| NodeProcess::start(&[]))
        .await
        .expect("start");
    let client = std::sync::Arc::new(Client::connect(&node.tcp).await.expect("connects"));
    let batcher = eddy_client::Batcher::new(client.clone(), 64, Duration::from_millis(5));
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..500u64 {
        let batcher = batcher.clone();
        sends.spawn(async move {
            let event =
                Client::event::<Fraud>(&format!("acct-{}", i % 7), &transaction(3.0, "FR"), None)
                    .expect("encodes");
            batcher.send(event).await
        });
    }
    while let Some(sent) = sends.join_next().await {
        sent.expect("task").expect("applied");
    }
    assert_eq!(total_events(&client, 7).await, 500);
    let (_, metrics, _) = tokio::task::spawn_blocking({
        let url = node.url("/metrics");
        move || get(&url)
    })
    .await
    .expect("metrics");
    // 500 events in batches of at most 64 means at least 8 acknowledgements,
    // and far fewer than 500 if coalescing works.
    let acks: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("eddy_ack_latency_seconds_count "))
        .and_then(|v| v.trim().parse().ok())
        .expect("ack latency count");
    assert!(
        (8.0..250.0).contains(&acks),
        "{acks} batches for 500 events"
    );
}

#[test]
fn garbage_wrong_version_oversized_and_truncated_frames_close_the_connection_only() {
    let node = NodeProcess::start(&["max_frame_bytes=4096"]);
    assert_eq!(
        post_json(&node.url("/v1/events"), &tx("acct-1", 1.0, "DE")).0,
        200
    );

    // Another protocol entirely.
    let answer = raw_exchange(&node.tcp, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(!protocol_error(&answer).is_empty());

    // A frame of a future version.
    let mut frame = Vec::new();
    encode_frame(
        &Request::GetState {
            request_id: 1,
            kind: "account".into(),
            key: "acct-1".into(),
        },
        &mut frame,
    )
    .expect("encodes");
    frame[4..6].copy_from_slice(&99u16.to_le_bytes());
    assert!(protocol_error(&raw_exchange(&node.tcp, &frame)).contains("version 99"));

    // A length prefix over the limit: refused before the body is buffered.
    let answer = raw_exchange(&node.tcp, &(1u32 << 30).to_le_bytes());
    assert!(protocol_error(&answer).contains("outside the allowed range"));

    // A corrupted frame.
    let mut frame = Vec::new();
    let event = Client::event::<Fraud>("acct-1", &transaction(1.0, "DE"), None).expect("encodes");
    encode_frame(
        &Request::Submit {
            request_id: 2,
            events: vec![event],
        },
        &mut frame,
    )
    .expect("encodes");
    let mut corrupt = frame.clone();
    let middle = corrupt.len() / 2;
    corrupt[middle] ^= 0x40;
    assert!(protocol_error(&raw_exchange(&node.tcp, &corrupt)).contains("checksum"));

    // A truncated frame, then the client hangs up.
    {
        let mut stream = TcpStream::connect(&node.tcp).expect("connects");
        stream.write_all(&frame[..frame.len() - 3]).expect("writes");
    }

    // None of it applied anything, and the node still serves both protocols.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(events_of(&node, "account", "acct-1"), Some(1));
    let mut stream = TcpStream::connect(&node.tcp).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(&frame).expect("writes");
    let mut answer = vec![0u8; 1024];
    let n = stream.read(&mut answer).expect("answer");
    match decode_frame::<Response>(&answer[..n], 1 << 20) {
        Ok(Some((
            Response::Ack {
                request_id: 2,
                accepted: 1,
                ..
            },
            _,
        ))) => {}
        other => panic!("expected an ack, got {other:?}"),
    }
    assert_eq!(events_of(&node, "account", "acct-1"), Some(2));
}

#[test]
fn send_over_http_leaves_encoding_to_the_node() {
    let node = NodeProcess::start(&[]);
    let http = node.base.trim_start_matches("http://").to_owned();
    let dir = std::env::temp_dir().join(format!("eddy-send-http-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let good = dir.join("good.ndjson");
    let mut text = String::new();
    for i in 0..700 {
        text.push_str(&tx(&format!("acct-{}", i % 20), 10.0, "DE"));
        text.push('\n');
        if i == 350 {
            text.push('\n'); // a blank line is skipped
        }
    }
    std::fs::write(&good, text).expect("write");
    let output = eddy()
        .args(["send", "--http", &http, "--batch", "300"])
        .arg(&good)
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("sent 700 events: 700 accepted"), "{stdout}");
    let total: u64 = (0..20)
        .map(|i| events_of(&node, "account", &format!("acct-{i}")).unwrap())
        .sum();
    assert_eq!(total, 700);
    // A kind this node does not host: the node, not the client, refuses it,
    // and says which.
    let foreign = dir.join("foreign.ndjson");
    std::fs::write(&foreign, "{\"kind\":\"cart\",\"key\":\"c\",\"event\":{}}\n").expect("write");
    let output = eddy()
        .args(["send", "--http", &http])
        .arg(&foreign)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("lines 1-1: 400") && stderr.contains("cart"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A kind the `eddy` binary does not link: only the in-process node below
/// hosts it, as a user's own binary would.
struct Tally;

#[derive(serde::Serialize, serde::Deserialize)]
struct Add {
    n: u64,
}

#[derive(Default, Clone, serde::Serialize, serde::Deserialize)]
struct Sum {
    events: u64,
    total: u64,
}

impl eddy_core::Behaviour for Tally {
    const KIND: &'static str = "tally";
    type Event = Add;
    type State = Sum;
    type Alert = String;

    fn on_event(state: &mut Sum, event: Add, _ctx: &mut eddy_core::Ctx<'_, Self>) {
        state.events += 1;
        state.total += event.n;
    }
}

#[test]
fn send_over_tcp_carries_a_kind_only_the_node_hosts() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let free = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let config = eddy_node::NodeConfig {
        http_addr: free,
        tcp_addr: free,
        gossip_addr: free,
        peer_addr: free,
        ..eddy_node::NodeConfig::default()
    };
    let node = runtime
        .block_on(eddy_node::Node::builder().kind::<Tally>().start(config))
        .expect("node starts");
    let mut send = eddy()
        .args(["send", "--addr", &node.tcp_addr().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("eddy send starts");
    send.stdin
        .take()
        .expect("stdin")
        .write_all(
            b"{\"kind\":\"tally\",\"key\":\"t-1\",\"event\":{\"n\":2}}\n\
              {\"kind\":\"tally\",\"key\":\"t-1\",\"event\":{\"n\":3}}\n",
        )
        .expect("writes");
    let output = send.wait_with_output().expect("eddy send ends");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("sent 2 events: 2 accepted"), "{stdout}");
    let (status, body, _) = get(&format!("http://{}/v1/actors/tally/t-1", node.http_addr()));
    assert_eq!(status, 200, "{body}");
    let state = &json(&body)["state"];
    assert_eq!(
        (state["events"].as_u64(), state["total"].as_u64()),
        (Some(2), Some(5))
    );
    runtime.block_on(node.stop()).expect("node stops");
}

/// Keys that are blank or carry control characters (terminal escapes), and
/// a producer seq of `u64::MAX` (after which every seq would be a duplicate),
/// are refused over the binary protocol with the field named; nothing applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blank_and_control_keys_and_the_last_seq_are_refused() {
    let node = tokio::task::spawn_blocking(|| NodeProcess::start(&[]))
        .await
        .expect("start");
    let client = Client::connect(&node.tcp).await.expect("connects");
    let cases: [(&str, Option<u64>, &str); 4] = [
        ("   ", None, "key"),
        ("\u{1b}[2Jacct", None, "key"),
        ("acct\nnext", None, "key"),
        ("acct-seq", Some(u64::MAX), "seq"),
    ];
    for (key, seq, field) in cases {
        let producer = seq.map(|seq| eddy_core::ProducerRef {
            producer: "p-1".into(),
            seq,
        });
        let event =
            Client::event::<Fraud>(key, &transaction(1.0, "FR"), producer).expect("encodes");
        match client.submit(&[event]).await {
            Err(ClientError::Rejected {
                code: ErrorCode::BadRequest,
                message,
            }) => assert!(message.contains(&format!("event 0: {field}")), "{message}"),
            other => panic!("{key:?}: expected a refusal, got {other:?}"),
        }
        assert_eq!(
            client.get_state("account", key).await.expect("answer"),
            None,
            "{key:?} changed state"
        );
    }
    // The seq just below the end is accepted.
    let producer = Some(eddy_core::ProducerRef {
        producer: "p-1".into(),
        seq: u64::MAX - 1,
    });
    let event =
        Client::event::<Fraud>("acct-seq", &transaction(1.0, "FR"), producer).expect("encodes");
    assert_eq!(client.submit(&[event]).await.expect("acked").accepted, 1);
}
