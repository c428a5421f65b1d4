//! Who may change what over HTTP from a browser: the cross-origin rules of
//! the API, decided per request before any handler runs.
//!
//! The dashboard served by one node reads the other nodes' alerts and
//! metrics, so reads answer any origin. Nothing else does: a web page the
//! operator happens to open could otherwise make a node leave (a "simple"
//! cross-origin POST with `Content-Type: text/plain` needs no preflight and
//! was served). So a request that may change anything is refused when it
//! carries an `Origin` other than the node's own (browsers always send one
//! on cross-origin writes; curl and the clients send none), and the admin
//! endpoints take JSON only, which a browser cannot send cross-origin
//! without a preflight that is never answered.
//!
//! With API tokens ([`crate::http_auth`]) the dashboard sends
//! `Authorization` on its reads of other members, which makes the browser
//! ask first (a preflight `OPTIONS`). Preflights are answered for reads
//! only (`GET`, header `Authorization`); for writes and `/v1/admin/*` they
//! get no CORS headers, so a page of another origin can still never write.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Why a request is refused before it reaches its handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A write from a page of another origin.
    CrossOriginWrite,
    /// An admin action whose body is not declared JSON.
    AdminNotJson,
}

impl Refusal {
    fn response(self) -> Response {
        let (status, message) = match self {
            Refusal::CrossOriginWrite => (
                StatusCode::FORBIDDEN,
                "requests from another origin may only read; send writes without an Origin header (curl, the clients) or from this node's own page",
            ),
            Refusal::AdminNotJson => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "admin actions take Content-Type: application/json",
            ),
        };
        (status, axum::Json(json!({ "error": message }))).into_response()
    }
}

fn reads_only(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD)
}

/// The decision, from the request's method, path and headers.
pub fn check(method: &Method, path: &str, headers: &HeaderMap) -> Result<(), Refusal> {
    if reads_only(method) {
        return Ok(());
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        let own = origin
            .to_str()
            .ok()
            .and_then(|o| {
                o.strip_prefix("http://")
                    .or_else(|| o.strip_prefix("https://"))
            })
            .is_some_and(|o| Some(o) == host);
        if !own {
            return Err(Refusal::CrossOriginWrite);
        }
    }
    if path.starts_with("/v1/admin/") {
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|c| c.to_str().ok())
            .and_then(|c| c.split(';').next())
            .is_some_and(|c| c.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return Err(Refusal::AdminNotJson);
        }
    }
    Ok(())
}

/// Whether a preflight for `path` is answered: reads only, never admin
/// actions or event writes.
fn preflight_allowed(path: &str) -> bool {
    !path.starts_with("/v1/admin/") && path != "/v1/events"
}

/// The answer to a CORS preflight of a cross-origin read with a token.
fn preflight() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        (header::ACCESS_CONTROL_ALLOW_METHODS, "GET"),
        (header::ACCESS_CONTROL_ALLOW_HEADERS, "authorization"),
        (header::ACCESS_CONTROL_MAX_AGE, "600"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// The middleware: refuses what [`check`] refuses; lets any origin read.
pub async fn guard(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    if method == Method::OPTIONS {
        return if preflight_allowed(request.uri().path()) {
            preflight()
        } else {
            // No CORS headers: the browser refuses the write it asked about.
            StatusCode::METHOD_NOT_ALLOWED.into_response()
        };
    }
    if let Err(refusal) = check(&method, request.uri().path(), request.headers()) {
        metrics::counter!("eddy_http_refused_total").increment(1);
        return refusal.response();
    }
    let mut response = next.run(request).await;
    if reads_only(&method) {
        response.headers_mut().insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(name.clone(), HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn any_origin_reads_and_no_foreign_origin_writes() {
        let foreign = headers(&[
            (header::ORIGIN, "http://evil.example"),
            (header::HOST, "127.0.0.1:8081"),
            (header::CONTENT_TYPE, "application/json"),
        ]);
        assert_eq!(check(&Method::GET, "/metrics", &foreign), Ok(()));
        for path in ["/v1/events", "/v1/admin/leave", "/v1/admin/forget-down"] {
            assert_eq!(
                check(&Method::POST, path, &foreign),
                Err(Refusal::CrossOriginWrite),
                "{path}"
            );
        }
        let own = headers(&[
            (header::ORIGIN, "http://127.0.0.1:8081"),
            (header::HOST, "127.0.0.1:8081"),
        ]);
        assert_eq!(check(&Method::POST, "/v1/events", &own), Ok(()));
        // curl and the clients send no Origin.
        assert_eq!(
            check(&Method::POST, "/v1/events", &HeaderMap::new()),
            Ok(())
        );
    }

    #[test]
    fn preflights_are_answered_for_reads_only() {
        assert!(preflight_allowed("/v1/cluster"));
        assert!(preflight_allowed("/metrics"));
        assert!(!preflight_allowed("/v1/admin/leave"));
        assert!(!preflight_allowed("/v1/events"));
        let answer = preflight();
        assert_eq!(
            answer.headers().get(header::ACCESS_CONTROL_ALLOW_METHODS),
            Some(&HeaderValue::from_static("GET"))
        );
    }

    #[test]
    fn admin_actions_take_json_only() {
        let plain = headers(&[(header::CONTENT_TYPE, "text/plain")]);
        assert_eq!(
            check(&Method::POST, "/v1/admin/leave", &plain),
            Err(Refusal::AdminNotJson)
        );
        assert_eq!(
            check(&Method::POST, "/v1/admin/leave", &HeaderMap::new()),
            Err(Refusal::AdminNotJson)
        );
        let json = headers(&[(header::CONTENT_TYPE, "application/json; charset=utf-8")]);
        assert_eq!(check(&Method::POST, "/v1/admin/leave", &json), Ok(()));
        assert_eq!(check(&Method::POST, "/v1/events", &plain), Ok(()));
    }
}
