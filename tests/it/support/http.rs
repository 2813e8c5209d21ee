//! A client of the HTTP API for tests: JSON calls with an optional bearer token, and a reader
//! of Server-Sent Events.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

pub struct Http {
    base: String,
    token: Option<String>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Http {
    pub fn new(base: &str, token: Option<&str>) -> Http {
        Self::with_connector(base, token, HttpConnector::new())
    }

    /// A client whose sockets take in little at a time (4 KiB receive buffers), so a reader
    /// that stops reading soon holds the server back.
    pub fn small_window(base: &str) -> Http {
        let mut connector = HttpConnector::new();
        connector.set_recv_buffer_size(Some(4096));
        Self::with_connector(base, None, connector)
    }

    fn with_connector(base: &str, token: Option<&str>, connector: HttpConnector) -> Http {
        Http {
            base: base.trim_end_matches('/').to_string(),
            token: token.map(str::to_string),
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> http::Request<Full<Bytes>> {
        let mut b = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        let body = match body {
            Some(v) => {
                b = b.header("content-type", "application/json");
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        b.body(Full::new(body)).unwrap()
    }

    async fn send(&self, req: http::Request<Full<Bytes>>) -> (u16, Value) {
        let response = self.client.request(req).await.expect("HTTP call");
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let value = match bytes.is_empty() {
            true => Value::Null,
            false => serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into())),
        };
        (status, value)
    }

    /// `GET path`: the status and the JSON body.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.request("GET", path, None)).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(self.request("POST", path, Some(&body))).await
    }

    /// `POST path` with `body` as it is and only the given headers (and the token).
    pub async fn post_raw(&self, path: &str, body: &str, headers: &[(&str, &str)]) -> (u16, Value) {
        let mut req = self.request("POST", path, None);
        for (k, v) in headers {
            let name = http::HeaderName::from_bytes(k.as_bytes()).unwrap();
            req.headers_mut().insert(name, v.parse().unwrap());
        }
        *req.body_mut() = Full::new(Bytes::from(body.to_string()));
        self.send(req).await
    }

    /// `PUT path` with `body` as it is (a card), as JSON.
    pub async fn put_raw(&self, path: &str, body: &str) -> (u16, Value) {
        let mut req = self.request("PUT", path, None);
        req.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        *req.body_mut() = Full::new(Bytes::from(body.to_string()));
        self.send(req).await
    }

    /// `GET path` with `headers`: the status, the response headers and the body's bytes.
    pub async fn get_bytes(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (u16, http::HeaderMap, Bytes) {
        let mut req = self.request("GET", path, None);
        for (k, v) in headers {
            let name = http::HeaderName::from_bytes(k.as_bytes()).unwrap();
            req.headers_mut().insert(name, v.parse().unwrap());
        }
        let response = self.client.request(req).await.expect("HTTP call");
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (parts.status.as_u16(), parts.headers, bytes)
    }

    /// `GET path` as an event stream, resuming after `last_event_id` if given.
    pub async fn sse(&self, path: &str, last_event_id: Option<&str>) -> SseReader {
        let mut req = self.request("GET", path, None);
        req.headers_mut()
            .insert("accept", "text/event-stream".parse().unwrap());
        if let Some(id) = last_event_id {
            req.headers_mut()
                .insert("last-event-id", id.parse().unwrap());
        }
        let response = self.client.request(req).await.expect("HTTP call");
        SseReader {
            status: response.status().as_u16(),
            content_type: response
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default(),
            body: response.into_body(),
            buffer: String::new(),
        }
    }
}

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub event: String,
    pub id: Option<String>,
    pub data: Value,
}

pub struct SseReader {
    pub status: u16,
    pub content_type: String,
    body: Incoming,
    buffer: String,
}

impl SseReader {
    /// The next event (comments skipped), or `None` when the stream ends.
    pub async fn next(&mut self) -> Option<SseEvent> {
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut event, mut id, mut data) = (String::from("message"), None, String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() && id.is_none() {
                    continue; // a keep-alive comment
                }
                let data = serde_json::from_str(&data).unwrap_or(Value::String(data));
                return Some(SseEvent { event, id, data });
            }
            let frame = self.body.frame().await?.ok()?;
            if let Ok(data) = frame.into_data() {
                self.buffer.push_str(&String::from_utf8_lossy(&data));
            }
        }
    }

    /// The body of a refused watch: its JSON error.
    pub async fn error(self) -> Value {
        let bytes = self.body.collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).expect("a JSON error")
    }

    /// The next event, within 10 s.
    pub async fn expect(&mut self) -> SseEvent {
        tokio::time::timeout(std::time::Duration::from_secs(10), self.next())
            .await
            .expect("an event within 10 s")
            .expect("the stream goes on")
    }
}
