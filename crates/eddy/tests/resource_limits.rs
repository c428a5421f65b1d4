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

#[test]
fn http_connections_beyond_the_cap_are_closed_at_once() {
    let node = NodeProcess::start(&["max_connections=4", "http_header_timeout_ms=60000"]);
    let host = http_host(&node);
    let mut held: Vec<TcpStream> = (0..4).map(|_| connect(&host)).collect();
    // Each held connection is admitted: it still answers.
    for stream in &mut held {
        stream
            .write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut first = [0u8; 12];
        stream.read_exact(&mut first).unwrap();
        assert_eq!(&first, b"HTTP/1.1 200");
    }
    let mut fifth = connect(&host);
    assert!(
        closed_by_node(&mut fifth, b"", CLOSE_BOUND),
        "a fifth connection was admitted beyond max_connections=4"
    );
    // A freed place admits a new connection.
    held.pop();
    let deadline = Instant::now() + CLOSE_BOUND;
    while try_get(&node.url("/readyz")).0 != 200 {
        assert!(Instant::now() < deadline, "no place freed after a close");
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
