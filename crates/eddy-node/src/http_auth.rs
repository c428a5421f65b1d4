//! The HTTP side of API tokens ([`crate::auth`]): one middleware deciding,
//! before any handler runs, which role a request needs and whether its
//! `Authorization: Bearer` token has it.
//!
//! - `GET /` (the dashboard page: static HTML, no data), `/healthz` and
//!   `/readyz` (load-balancer probes that say nothing but "up") need no
//!   token, so probes keep working and the page can ask for one.
//! - Every other read needs `read`: the JSON API, the alert stream, and
//!   `/metrics` (it names members, partitions and rates; Prometheus sends a
//!   token with `authorization: {credentials_file: …}`).
//! - Event writes need `write`; `/v1/admin/*` needs `admin`.
//!
//! No token or an unknown one answers 401 with `WWW-Authenticate: Bearer`;
//! a known token of too low a role answers 403. Both bodies are JSON naming
//! the role needed. Neither ever echoes the presented token.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::auth::{Denied, Role, TokenStore, authorize};

/// The role `method` on `path` needs; `None`: anyone may.
pub fn required_role(method: &Method, path: &str) -> Option<Role> {
    let reads = matches!(*method, Method::GET | Method::HEAD);
    if reads {
        return match path {
            "/" | "/healthz" | "/readyz" => None,
            _ => Some(Role::Read),
        };
    }
    if path.starts_with("/v1/admin/") {
        Some(Role::Admin)
    } else {
        Some(Role::Write)
    }
}

/// The secret of an `Authorization: Bearer <secret>` header, if any.
fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let scheme = value.get(..7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| value[7..].trim_ascii())
}

fn refusal(denied: &Denied) -> Response {
    let (status, needs) = match denied {
        Denied::Unauthenticated { needs, .. } => (StatusCode::UNAUTHORIZED, needs),
        Denied::Forbidden { needs, .. } => (StatusCode::FORBIDDEN, needs),
    };
    let mut response = (
        status,
        axum::Json(json!({"error": denied.to_string(), "needs_role": needs.as_str()})),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"eddy\""),
        );
    }
    response
}

/// The middleware: serves a request only if its token has the role it
/// needs. `tokens` is `None` when the node has none (everyone is served).
pub async fn guard(
    State(store): State<Option<Arc<TokenStore>>>,
    request: Request,
    next: Next,
) -> Response {
    // Preflights carry no credentials by design; `crate::origin` answers
    // them.
    if request.method() == Method::OPTIONS {
        return next.run(request).await;
    }
    let Some(needs) = required_role(request.method(), request.uri().path()) else {
        return next.run(request).await;
    };
    // The tokens in force now: a reload applies from the next request.
    let tokens = store.as_ref().map(|s| s.current().1);
    match authorize(tokens.as_deref(), bearer(request.headers()), needs) {
        Ok(_) => next.run(request).await,
        Err(denied) => {
            let outcome = match denied {
                Denied::Unauthenticated { .. } => "unauthenticated",
                Denied::Forbidden { .. } => "forbidden",
            };
            metrics::counter!("eddy_auth_refused_total", "port" => "http", "outcome" => outcome)
                .increment(1);
            if let Denied::Forbidden { name, .. } = &denied {
                crate::warn_limited!(token = %name, %needs, path = request.uri().path(), "request refused: token lacks the role");
            }
            refusal(&denied)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_by_route() {
        assert_eq!(required_role(&Method::GET, "/"), None);
        assert_eq!(required_role(&Method::GET, "/healthz"), None);
        assert_eq!(required_role(&Method::GET, "/readyz"), None);
        for path in ["/metrics", "/v1/cluster", "/v1/alerts", "/v1/actors/a/b"] {
            assert_eq!(
                required_role(&Method::GET, path),
                Some(Role::Read),
                "{path}"
            );
        }
        assert_eq!(
            required_role(&Method::POST, "/v1/events"),
            Some(Role::Write)
        );
        for path in [
            "/v1/admin/leave",
            "/v1/admin/forget-down",
            "/v1/admin/faults",
        ] {
            assert_eq!(
                required_role(&Method::POST, path),
                Some(Role::Admin),
                "{path}"
            );
        }
        assert_eq!(required_role(&Method::DELETE, "/"), Some(Role::Write));
    }

    #[test]
    fn bearer_header_is_parsed_case_insensitively() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer abc "),
        );
        assert_eq!(bearer(&headers), Some(&b"abc"[..]));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&headers), None);
    }
}
