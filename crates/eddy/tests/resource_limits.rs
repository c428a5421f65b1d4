//! Attacks that hold a real node's resources without using them, each bounded
//! by a limit (issue 15): slow headers, trickled bodies and frames, idle
//! keep-alive connections, connection floods per listener and per source,
//! file-descriptor exhaustion, and keys and seqs that poison state or logs.
//!
//! The limits are set low (hundreds of ms) so each attack is cut off quickly;
//! the waits below are generous upper bounds on "the node closed it", not
//! measurements.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

/// Longest wait for the node to close a connection it should close.
const CLOSE_BOUND: Duration = Duration::from_secs(10);

/// Waits (at most `bound`) for the node to close `stream`, writing one byte
/// of `trickle` (cycled) every 100 ms meanwhile. Returns whether it closed.
fn closed_by_node(stream: &mut TcpStream, trickle: &[u8], bound: Duration) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let start = Instant::now();
    let mut sent = 0usize;
    let mut buf = [0u8; 4096];
    while start.elapsed() < bound {
        if !trickle.is_empty() {
            let byte = trickle[sent % trickle.len()];
            if stream.write_all(&[byte]).is_err() {
                return true;
            }
            sent += 1;
        }
        match stream.read(&mut buf) {
            Ok(0) => return true,
            // An answer (e.g. 408, 400) before the close: keep reading.
            Ok(_) => {}
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
    }
    false
}

fn connect(addr: &str) -> TcpStream {
    TcpStream::connect(addr).expect("connects")
}

fn http_host(node: &NodeProcess) -> String {
    node.base.trim_start_matches("http://").to_owned()
}

#[test]
fn slowloris_headers_are_closed_after_the_header_timeout() {
    let node = NodeProcess::start(&["http_header_timeout_ms=500"]);
    let mut stream = connect(&http_host(&node));
    stream.write_all(b"GET /readyz HTTP/1.1\r\n").unwrap();
    // One header byte per 100 ms, never finishing the headers.
    assert!(
        closed_by_node(&mut stream, b"X-Slow: aaaaaaaaaaaaaaaa\r\n", CLOSE_BOUND),
        "a client sending headers byte by byte kept its connection"
    );
    assert_eq!(get(&node.url("/readyz")).0, 200, "others are still served");
}

#[test]
fn a_trickled_body_of_a_huge_declared_length_is_cut_off() {
    let node = NodeProcess::start(&["http_body_timeout_ms=500"]);
    let mut stream = connect(&http_host(&node));
    stream
        .write_all(
            b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 100000000000\r\n\r\n[",
        )
        .unwrap();
    assert!(
        closed_by_node(&mut stream, b" ", CLOSE_BOUND),
        "a declared 100 GB body trickled a byte at a time kept its connection"
    );
}

#[test]
fn an_idle_keep_alive_connection_is_closed() {
    let node = NodeProcess::start(&["http_header_timeout_ms=500"]);
    let mut stream = connect(&http_host(&node));
    stream
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut first = [0u8; 12];
    stream.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200", "the request itself is served");
    assert!(
        closed_by_node(&mut stream, b"", CLOSE_BOUND),
        "an idle kept-alive connection was held"
    );
}

/// Whether a request on `stream` is answered (the connection was admitted)
/// rather than closed.
fn answered(stream: &mut TcpStream) -> bool {
    if stream
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        .is_err()
    {
        return false;
    }
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut first = [0u8; 12];
    stream.read_exact(&mut first).is_ok() && &first == b"HTTP/1.1 200"
}

#[test]
fn http_connections_beyond_the_cap_are_closed_at_once() {
    let node = NodeProcess::start(&["max_connections=4", "http_header_timeout_ms=60000"]);
    let host = http_host(&node);
    // Held open one after another; the readiness probe's pooled connection
    // may still hold a place, so 3 or 4 are admitted, never more.
    let mut held: Vec<TcpStream> = Vec::new();
    let mut admitted = 0;
    for _ in 0..8 {
        let mut stream = connect(&host);
        if answered(&mut stream) {
            admitted += 1;
        }
        held.push(stream);
    }
    assert!(
        (3..=4).contains(&admitted),
        "{admitted} of 8 connections admitted with max_connections=4"
    );
    // Freed places admit new connections.
    drop(held);
    let deadline = Instant::now() + CLOSE_BOUND;
    while !answered(&mut connect(&host)) {
        assert!(Instant::now() < deadline, "no place freed after closes");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A binary-protocol frame header declaring `len` bytes of our version.
fn frame_head(len: u32) -> Vec<u8> {
    let mut head = len.to_le_bytes().to_vec();
    head.extend_from_slice(&eddy_core::wire::PROTOCOL_VERSION.to_le_bytes());
    head
}

#[test]
fn a_trickled_16_mib_frame_is_cut_off_on_the_binary_and_peer_ports() {
    let node = NodeProcess::start(&["frame_read_timeout_ms=500"]);
    for addr in [&node.tcp, &node.peer] {
        let mut stream = connect(addr);
        stream.write_all(&frame_head(16 * 1024 * 1024 - 1)).unwrap();
        assert!(
            closed_by_node(&mut stream, &[0], CLOSE_BOUND),
            "{addr}: a trickled 16 MiB frame kept its connection"
        );
    }
}

#[test]
fn binary_connections_beyond_the_per_source_cap_are_closed_at_once() {
    let node = NodeProcess::start(&["max_connections_per_source=3"]);
    for addr in [&node.tcp, &node.peer] {
        let mut held: Vec<TcpStream> = (0..3).map(|_| connect(addr)).collect();
        let mut fourth = connect(addr);
        assert!(
            closed_by_node(&mut fourth, b"", CLOSE_BOUND),
            "{addr}: a fourth connection from one address was admitted"
        );
        // The held ones are still open: nothing was read from them and the
        // node has not closed them.
        for stream in &mut held {
            assert!(!closed_by_node(stream, b"", Duration::from_millis(300)));
        }
    }
}

#[test]
fn accept_errors_back_off_log_little_and_the_node_recovers_when_fds_free() {
    let log = scratch("accept-backoff").join("node.log");
    let node = NodeProcess::start_logged(&[], &log);
    let fds = std::fs::read_dir(format!("/proc/{}/fd", node.pid()))
        .expect("proc fd dir")
        .count();
    // Room for a few more descriptors only.
    let limit = fds + 3;
    let status = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &node.pid().to_string(),
            &format!("--nofile={limit}:{limit}"),
        ])
        .status()
        .expect("prlimit runs");
    assert!(status.success(), "prlimit failed");
    // More connections than descriptors: the rest wait in the backlog and
    // every accept fails with EMFILE.
    let held: Vec<TcpStream> = (0..16).map(|_| connect(&node.tcp)).collect();
    std::thread::sleep(Duration::from_secs(2));
    let text = std::fs::read_to_string(&log).expect("log");
    let failures = text.matches("accept failed").count();
    assert!(
        (1..=12).contains(&failures),
        "{failures} `accept failed` lines in 2 s at the fd limit (once a second per port expected)"
    );
    drop(held);
    let deadline = Instant::now() + CLOSE_BOUND;
    while try_get(&node.url("/readyz")).0 != 200 {
        assert!(
            Instant::now() < deadline,
            "the node did not serve again once descriptors were free"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A peer Hello with another kinds fingerprint is refused with a reason that
/// does not disclose ours (the value a forged Hello would need).
#[test]
fn a_peer_refused_for_other_kinds_does_not_learn_our_fingerprint() {
    use eddy_cluster::{ClusterParams, PeerRequest, PeerResponse};
    use eddy_core::wire::{decode_frame, encode_frame};
    let node = NodeProcess::start(&[]);
    // Same P and protocol (the node runs with the defaults), other kinds.
    let hello = PeerRequest::Hello {
        from: "forger".into(),
        params: ClusterParams::new(eddy_core::DEFAULT_PARTITIONS).with_kinds(0x1234),
    };
    let mut frame = Vec::new();
    encode_frame(&hello, &mut frame).unwrap();
    let answer = raw_exchange(&node.peer, &frame);
    let (response, _) = decode_frame::<PeerResponse>(&answer, 1 << 20)
        .unwrap()
        .expect("one whole answer");
    let PeerResponse::Refused { reason } = response else {
        panic!("expected Refused, got {response:?}");
    };
    assert!(reason.contains("hosted kinds differ"), "{reason}");
    let longest_hex_run = reason
        .split(|c: char| !c.is_ascii_hexdigit())
        .map(str::len)
        .max()
        .unwrap_or(0);
    assert!(longest_hex_run < 8, "a fingerprint in `{reason}`");
}

#[test]
fn partial_frames_of_all_connections_share_one_byte_budget() {
    let node = NodeProcess::start(&[
        "max_partial_frame_bytes=1048576",
        "frame_read_timeout_ms=60000",
    ]);
    let mut head = frame_head(16 * 1024 * 1024 - 1);
    head.extend(std::iter::repeat_n(0u8, 700 * 1024));
    let mut first = connect(&node.tcp);
    first.write_all(&head).unwrap();
    // Let the node buffer the first connection's 700 KiB.
    std::thread::sleep(Duration::from_millis(300));
    let mut second = connect(&node.tcp);
    let _ = second.write_all(&head);
    assert!(
        closed_by_node(&mut second, b"", CLOSE_BOUND),
        "two partial frames held 1.4 MiB against a 1 MiB budget"
    );
    assert!(
        !closed_by_node(&mut first, b"", Duration::from_millis(300)),
        "the connection within the budget was closed"
    );
    // Once the first gives its bytes back, a new partial frame fits.
    drop(first);
    std::thread::sleep(Duration::from_millis(300));
    let mut third = connect(&node.tcp);
    third.write_all(&head).unwrap();
    assert!(!closed_by_node(&mut third, b"", Duration::from_millis(500)));
}
