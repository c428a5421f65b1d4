//! A panicking user handler must not take the node down: the event is
//! rejected with an error, the key keeps its state, a metric counts it, and
//! the partition keeps serving.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use eddy_core::{Behaviour, Ctx};
use eddy_node::{Node, NodeConfig};
use serde::{Deserialize, Serialize};

struct Fragile;

#[derive(Default, Clone, Serialize, Deserialize)]
struct Total {
    events: u64,
    sum: i64,
}

impl Behaviour for Fragile {
    const KIND: &'static str = "fragile";
    type Event = i64;
    type State = Total;
    type Alert = ();

    fn on_event(state: &mut Total, event: i64, _ctx: &mut Ctx<'_, Self>) {
        state.events += 1;
        state.sum += event;
        assert!(event >= 0, "negative input is a bug in this handler");
    }
}

fn call(method: &str, url: String, body: Option<String>) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let response = match (method, body) {
        ("POST", Some(body)) => agent.post(&url).send(body),
        _ => agent.get(&url).call(),
    };
    let mut response = response.expect("request completes");
    let status = response.status().as_u16();
    (
        status,
        response.body_mut().read_to_string().unwrap_or_default(),
    )
}

async fn http(method: &'static str, url: String, body: Option<String>) -> (u16, String) {
    tokio::task::spawn_blocking(move || call(method, url, body))
        .await
        .expect("client thread")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_panic_rejects_the_event_and_keeps_the_key() {
    let config = NodeConfig {
        http_addr: "127.0.0.1:0".parse().expect("addr"),
        tcp_addr: "127.0.0.1:0".parse().expect("addr"),
        gossip_addr: "127.0.0.1:0".parse().expect("addr"),
        peer_addr: "127.0.0.1:0".parse().expect("addr"),
        workers: 1,
        ..NodeConfig::default()
    };
    let node = Node::builder()
        .kind::<Fragile>()
        .start(config)
        .await
        .expect("starts");
    let base = format!("http://{}", node.http_addr());
    let event = |value: i64| Some(format!(r#"{{"kind":"fragile","key":"k","event":{value}}}"#));

    assert_eq!(
        http("POST", format!("{base}/v1/events"), event(5)).await.0,
        200
    );
    let batch = Some(format!(
        "[{}, {}, {}]",
        event(1).expect("some"),
        event(-1).expect("some"),
        event(2).expect("some")
    ));
    let (status, body) = http("POST", format!("{base}/v1/events"), batch).await;
    assert_eq!(status, 422, "{body}");
    let reply: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(reply["accepted"], 2, "{body}");
    assert_eq!(reply["rejected"][0]["index"], 1, "{body}");
    assert!(
        reply["rejected"][0]["error"]
            .as_str()
            .expect("text")
            .contains("panicked")
    );

    let (status, body) = http("GET", format!("{base}/v1/actors/fragile/k"), None).await;
    assert_eq!(status, 200, "{body}");
    let actor: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        actor["state"]["events"], 3,
        "the panicking event left no trace: {body}"
    );
    assert_eq!(actor["state"]["sum"], 8);

    // Still serving, and the panic is counted.
    assert_eq!(
        http("POST", format!("{base}/v1/events"), event(1)).await.0,
        200
    );
    let (_, metrics) = http("GET", format!("{base}/metrics"), None).await;
    assert!(metrics.contains("eddy_handler_panics_total 1"), "{metrics}");
    node.stop().await.expect("stops cleanly");
}
