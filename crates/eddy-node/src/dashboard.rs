//! The web dashboard at `/`: one embedded page, no build step, that reads the
//! JSON API of this node (members, partitions, alerts, key lookup) and the
//! throughput history (`GET /v1/stats/history`, see [`crate::history`]) and
//! recent alerts of every member (rates are cluster-wide).

use axum::http::header;
use axum::response::IntoResponse;

const PAGE: &str = include_str!("dashboard/index.html");

/// `GET /`: the dashboard page.
pub async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
}
