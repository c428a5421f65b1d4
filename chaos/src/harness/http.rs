//! The harness's HTTP client: every status is an answer (a 503 is data, not
//! an error); only a failed connection or a timeout is an error.

use std::sync::OnceLock;
use std::time::Duration;

fn agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            // A stopped node accepts connections and never answers: the
            // bound keeps a client from waiting on it for long.
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into()
    })
}

fn answer(
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<(u16, String), String> {
    let mut response = response.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|e| e.to_string())?;
    Ok((status, body))
}

/// GET `url`: (status, body).
pub fn get(url: &str) -> Result<(u16, String), String> {
    answer(agent().get(url).call())
}

/// GET `url` and parse its body, if it answered 200 with JSON.
pub fn get_json(url: &str) -> Option<serde_json::Value> {
    match get(url) {
        Ok((200, body)) => serde_json::from_str(&body).ok(),
        _ => None,
    }
}

/// POST a JSON `body` to `url`: (status, body).
pub fn post(url: &str, body: &str) -> Result<(u16, String), String> {
    answer(
        agent()
            .post(url)
            .header("content-type", "application/json")
            .send(body),
    )
}
