//! Runs the `eddy-tutorial` binary as a real node on free loopback ports,
//! sends it cart events over HTTP, reads a cart back, watches its alerts and
//! stops it. The child process is killed on drop, so a failing assertion
//! leaves nothing running.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running `eddy-tutorial` child process.
struct TutorialNode {
    child: Child,
    /// `http://127.0.0.1:PORT`
    base: String,
}

impl TutorialNode {
    /// Starts the binary on free ports and waits (bounded) until it prints
    /// its addresses and answers `/readyz`.
    fn start() -> TutorialNode {
        let child = Command::new(env!("CARGO_BIN_EXE_eddy-tutorial"))
            .args([
                "--http-addr",
                "127.0.0.1:0",
                "--tcp-addr",
                "127.0.0.1:0",
                "--gossip-addr",
                "127.0.0.1:0",
                "--peer-addr",
                "127.0.0.1:0",
                "--set",
                "workers=1",
                "--set",
                "tick_ms=20",
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the eddy-tutorial binary starts");
        // The guard exists before anything can panic, so Drop kills the child.
        let mut node = TutorialNode {
            child,
            base: String::new(),
        };
        let stdout = node.child.stdout.take().expect("piped stdout");
        let (lines, first_line) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        // "eddy node node-1 listening on http://127.0.0.1:PORT tcp://… …"
        let line = first_line
            .recv_timeout(Duration::from_secs(20))
            .expect("the node prints its addresses within 20 s");
        node.base = line
            .split_whitespace()
            .find(|word| word.starts_with("http://"))
            .unwrap_or_else(|| panic!("no http address in `{line}`"))
            .to_owned();
        let deadline = Instant::now() + Duration::from_secs(10);
        while get(&node.url("/readyz")).0 != 200 {
            assert!(Instant::now() < deadline, "the node never became ready");
            std::thread::sleep(Duration::from_millis(20));
        }
        node
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGTERM, then waits (bounded) for the exit status.
    fn terminate(mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "the node did not stop in 10 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TutorialNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

/// `(status, body)`; 4xx and 5xx are answers, not errors.
fn reply(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, String) {
    let mut response = response.expect("request completes");
    let status = response.status().as_u16();
    (
        status,
        response.body_mut().read_to_string().unwrap_or_default(),
    )
}

fn get(url: &str) -> (u16, String) {
    reply(agent().get(url).call())
}

fn post(url: &str, body: &str) -> (u16, String) {
    reply(
        agent()
            .post(url)
            .header("content-type", "application/json")
            .send(body),
    )
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|err| panic!("not JSON ({err}): {body}"))
}

/// Subscribes to `GET /v1/alerts` and forwards each SSE `data:` line. The
/// subscription exists once the response head has arrived, i.e. when this
/// returns; the reader thread ends when the node closes the stream.
fn subscribe_alerts(url: &str) -> mpsc::Receiver<String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let response = agent.get(url).call().expect("alert stream opens");
    assert_eq!(response.status().as_u16(), 200);
    let (data, received) = mpsc::channel();
    let reader = BufReader::new(response.into_body().into_reader());
    std::thread::spawn(move || {
        for line in reader.lines().map_while(Result::ok) {
            let Some(payload) = line.strip_prefix("data:") else {
                continue;
            };
            if data.send(payload.trim().to_owned()).is_err() {
                return;
            }
        }
    });
    received
}

#[test]
fn a_cart_over_http_from_events_to_state_and_alerts() {
    let node = TutorialNode::start();
    let alerts = subscribe_alerts(&node.url("/v1/alerts?kind=cart&key=cart-1"));

    // Three events in one request (a JSON array; NDJSON works too).
    let (status, body) = post(
        &node.url("/v1/events"),
        r#"[
            {"kind": "cart", "key": "cart-1", "event": {"add": {"sku": "mug", "qty": 2, "price_cents": 1250}}},
            {"kind": "cart", "key": "cart-1", "event": {"add": {"sku": "lamp", "qty": 1, "price_cents": 4999}}},
            {"kind": "cart", "key": "cart-1", "event": {"remove": {"sku": "mug", "qty": 5}}}
        ]"#,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["accepted"], 3, "{body}");

    let (status, body) = get(&node.url("/v1/actors/cart/cart-1"));
    assert_eq!(status, 200, "{body}");
    let actor = json(&body);
    let state = &actor["state"];
    assert_eq!(state["events"], 3, "{body}");
    assert_eq!(state["total_cents"], 4999, "{body}");
    assert_eq!(state["clamped_removals"], 1, "removing 5 of 2 is clamped");
    assert_eq!(
        state["lines"],
        json(r#"[{"sku": "lamp", "qty": 1, "price_cents": 4999}]"#)
    );
    assert_eq!(state["big_cart_alerted"], false);
    assert!(actor["owner"].is_string(), "{body}");

    // Crossing the threshold publishes `big_cart` once the event is acked.
    let sofa = r#"{"kind": "cart", "key": "cart-1", "event": {"add": {"sku": "sofa", "qty": 1, "price_cents": 80000}}}"#;
    let (status, body) = post(&node.url("/v1/events"), sofa);
    assert_eq!(status, 200, "{body}");
    let alert = json(
        &alerts
            .recv_timeout(Duration::from_secs(5))
            .expect("a big_cart alert within 5 s"),
    );
    assert_eq!(alert["kind"], "cart", "{alert}");
    assert_eq!(alert["key"], "cart-1", "{alert}");
    assert_eq!(
        alert["alert"],
        json(r#"{"type": "big_cart", "total_cents": 84999, "threshold_cents": 50000}"#)
    );
    let (_, body) = get(&node.url("/v1/actors/cart/cart-1"));
    assert_eq!(json(&body)["state"]["big_cart_alerted"], true, "{body}");

    // This binary hosts `cart` only, and bad events change nothing.
    let (status, body) = post(
        &node.url("/v1/events"),
        r#"{"kind": "account", "key": "acct-7", "event": {"amount": 42.5, "country": "DE"}}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(json(&body)["field"], "kind", "{body}");
    let (status, body) = post(
        &node.url("/v1/events"),
        r#"{"kind": "cart", "key": "cart-1", "event": {"add": {"sku": "mug", "qty": 1}}}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(json(&body)["field"], "event", "{body}");
    let (_, body) = get(&node.url("/v1/actors/cart/cart-1"));
    assert_eq!(json(&body)["state"]["events"], 4, "{body}");

    // A cart that never saw an event has no state.
    assert_eq!(get(&node.url("/v1/actors/cart/cart-404")).0, 404);

    assert!(node.terminate().success(), "a clean exit on SIGTERM");
}
