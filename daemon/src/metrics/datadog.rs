//! DataDog: series posted to the HTTP API (`POST {endpoint}/api/v1/series`), as gauges
//! with the host and tags. TwinDB sent the same names through a local DogStatsD
//! agent; the API needs no agent on the host. The endpoint is configurable for
//! DataDog's other sites (api.datadoghq.eu...) and for tests.

use std::time::Duration;

use serde_json::json;

use super::Point;
use crate::config::Secret;
use crate::http::{post_json, HttpError};

pub async fn send(
    endpoint: &str,
    api_key: &Secret,
    app_key: Option<&Secret>,
    host: &str,
    points: &[Point],
) -> Result<(), HttpError> {
    let now = chrono::Utc::now().timestamp();
    let series: Vec<_> = points
        .iter()
        .map(|p| {
            json!({
                "metric": p.name,
                "type": "gauge",
                "points": [[now, p.value]],
                "host": host,
                "tags": p.tags,
            })
        })
        .collect();
    let body = serde_json::to_vec(&json!({ "series": series })).expect("json");
    let mut headers = vec![("DD-API-KEY", api_key.0.as_str())];
    if let Some(k) = app_key {
        headers.push(("DD-APPLICATION-KEY", k.0.as_str()));
    }
    post_json(
        &format!("{endpoint}/api/v1/series"),
        &headers,
        body,
        Duration::from_secs(30),
    )
    .await
}
