//! The web console and the OpenAPI document: static files compiled into the binary (no CDN,
//! nothing fetched at run time). They carry no data: the console reads everything through
//! the API with the token the user gives it, so serving them needs none.

use std::sync::Arc;

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::header;

use super::HttpApi;

const INDEX: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/console.js");
const AGENTS: &str = include_str!("console/agents.js");
const STYLE: &str = include_str!("console/console.css");
/// OpenAPI 3.1 description of the HTTP API (checked against the live server in CI).
pub const OPENAPI: &str = include_str!("openapi.json");

fn file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            // The console loads only its own files and talks only to this origin.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; frame-ancestors 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

pub fn routes() -> Router<Arc<HttpApi>> {
    Router::new()
        .route(
            "/",
            get(|| async { file("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/console.js",
            get(|| async { file("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/agents.js",
            get(|| async { file("text/javascript; charset=utf-8", AGENTS) }),
        )
        .route(
            "/console.css",
            get(|| async { file("text/css; charset=utf-8", STYLE) }),
        )
        .route(
            "/openapi.json",
            get(|| async { file("application/json", OPENAPI) }),
        )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_openapi_document_is_json_and_names_every_route() {
        let doc: serde_json::Value = serde_json::from_str(super::OPENAPI).expect("valid JSON");
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        for path in [
            "/v1/namespaces",
            "/v1/namespaces/{namespace}",
            "/v1/namespaces/{namespace}:advanceEpoch",
            "/v1/namespaces/{namespace}/instances",
            "/v1/namespaces/{namespace}/watch",
            "/v1/instances/{instanceId}",
            "/v1/instances/{instanceId}:heartbeat",
            "/v1/instances/{instanceId}:drain",
            "/v1/instances/{instanceId}:evict",
            "/v1/instances/{instanceId}:deregister",
            "/v1/status",
            "/v1/caller",
        ] {
            assert!(doc["paths"].get(path).is_some(), "{path} is not documented");
        }
    }
}
