//! The access layer in front of every RPC of the contract: it authenticates the bearer token,
//! applies the limits, and hands the handlers a `Caller` to authorize against. Health and
//! reflection stay open (probes and tooling carry no tokens; neither shows any instance); xDS
//! streams without a token may be let in as a configured reader.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Body as HttpBody, Frame};
use tonic::body::Body;
use tonic::transport::server::TcpConnectInfo;

use super::AccessError;
use super::limits::{AccessLimits, Breach, CallKind, Counts, RateLimiter, Slot};
use super::policy::{Caller, Grant};
use super::tokens::{Revocation, TokenTable};

/// Shared by every connection of one server.
pub struct Access {
    pub tokens: Option<TokenTable>,
    pub limits: AccessLimits,
    rate: RateLimiter,
    counts: Arc<Counts>,
    /// Who an xDS stream without a token is (`--xds-anonymous-namespaces`): stock gRPC clients
    /// cannot send a bearer token to their control plane.
    xds_anonymous: Option<Arc<Grant>>,
    /// Who reads a well-known card path without a token (`--public-card-namespaces`): A2A
    /// clients resolving a card send none.
    public_cards: Option<Arc<Grant>>,
}

/// The xDS services' path prefix.
const XDS_PREFIX: &str = "/envoy.service.discovery.v3.";

impl Access {
    pub fn new(tokens: Option<TokenTable>, limits: AccessLimits) -> Access {
        Access {
            tokens,
            rate: RateLimiter::new(limits.requests_per_second),
            limits,
            counts: Arc::default(),
            xds_anonymous: None,
            public_cards: None,
        }
    }

    /// Lets reads of well-known card paths without a token in as `grant`.
    pub fn with_public_cards(mut self, grant: Option<Grant>) -> Access {
        self.public_cards = grant.map(Arc::new);
        self
    }

    /// Admits a read of an agent's card at its well-known path: without a token, as the
    /// public-cards reader when `namespace` is one of its namespaces; otherwise like any call.
    pub fn admit_card_read(
        &self,
        headers: &http::HeaderMap,
        peer: Option<std::net::SocketAddr>,
        namespace: &str,
    ) -> Result<Admitted, AccessError> {
        let anonymous = match &self.public_cards {
            Some(grant)
                if grant.namespaces.contains(namespace)
                    && !headers.contains_key(http::header::AUTHORIZATION) =>
            {
                Some(grant.clone())
            }
            _ => None,
        };
        self.admit_as(headers, peer, CallKind::Unary, anonymous)
    }

    /// Lets xDS streams without a token in as `grant` (a reader of some namespaces).
    pub fn with_xds_anonymous(mut self, grant: Option<Grant>) -> Access {
        self.xds_anonymous = grant.map(Arc::new);
        self
    }

    /// Everything decided from the headers alone: who calls, and whether a limit refuses it.
    fn admit<B>(&self, req: &http::Request<B>) -> Result<Admitted, AccessError> {
        let peer = req
            .extensions()
            .get::<TcpConnectInfo>()
            .and_then(|c| c.remote_addr);
        let path = req.uri().path();
        let kind = if path.ends_with("/Heartbeat") {
            CallKind::Heartbeat
        } else if path.ends_with("/Watch") || path.ends_with("AggregatedResources") {
            // An xDS stream follows the change feed as a watcher does, and counts as one.
            CallKind::Watch
        } else {
            CallKind::Unary
        };
        let anonymous = match &self.xds_anonymous {
            Some(grant)
                if path.starts_with(XDS_PREFIX)
                    && !req.headers().contains_key(http::header::AUTHORIZATION) =>
            {
                Some(grant.clone())
            }
            _ => None,
        };
        self.admit_as(req.headers(), peer, kind, anonymous)
    }

    /// Admits one call of any front end (the HTTP API calls this directly): the metadata size,
    /// the bearer token, the caller's rate and the call counts, the same rules as for an RPC.
    pub fn admit_call(
        &self,
        headers: &http::HeaderMap,
        peer: Option<std::net::SocketAddr>,
        kind: CallKind,
    ) -> Result<Admitted, AccessError> {
        self.admit_as(headers, peer, kind, None)
    }

    /// `admit_call`, as `anonymous` when the call carries no token and may go without one.
    fn admit_as(
        &self,
        headers: &http::HeaderMap,
        peer: Option<std::net::SocketAddr>,
        kind: CallKind,
        anonymous: Option<Arc<Grant>>,
    ) -> Result<Admitted, AccessError> {
        let metadata: usize = headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len())
            .sum();
        if metadata > self.limits.max_metadata_bytes {
            return Err(AccessError::Limited(format!(
                "request metadata is {metadata} bytes; the limit is {} (--max-metadata-size)",
                self.limits.max_metadata_bytes
            )));
        }
        let (caller, revocation, anonymous) = match anonymous {
            Some(grant) if self.tokens.is_some() => (Caller::Token(grant), None, true),
            _ => {
                let (caller, revocation) = self.authenticate(headers)?;
                (caller, revocation, false)
            }
        };
        let key = match (&caller, peer) {
            // Token-less xDS clients share a grant, not a bucket: each address has its own.
            (Caller::Token(_), Some(addr)) if anonymous => format!("address {}", addr.ip()),
            (Caller::Token(g), _) => format!("token {}", g.name),
            (Caller::Open, Some(addr)) => format!("address {}", addr.ip()),
            (Caller::Open, None) => "anonymous".to_string(),
        };
        if !self.rate.admit(&key) {
            return Err(AccessError::Limited(format!(
                "{key} exceeds {} requests per second (--max-requests-per-second); retry later",
                self.limits.requests_per_second
            )));
        }
        let slot = self
            .counts
            .enter(&self.limits, peer, kind)
            .map_err(|b| {
                AccessError::Limited(match b {
                    Breach::StreamsPerConnection(n) => format!(
                        "this connection already has {n} calls in flight (--max-streams-per-connection); open another connection"
                    ),
                    Breach::OpenStreams(n) => format!(
                        "this replica already holds {n} streams (--max-open-streams); try another replica"
                    ),
                    Breach::WatchesPerConnection(n) => format!(
                        "this connection already holds {n} Watch streams (--max-watches-per-connection)"
                    ),
                })
            })?;
        Ok(Admitted {
            caller,
            revocation,
            slot,
        })
    }

    fn authenticate(
        &self,
        headers: &http::HeaderMap,
    ) -> Result<(Caller, Option<Revocation>), AccessError> {
        let Some(table) = &self.tokens else {
            return Ok((Caller::Open, None));
        };
        let value =
            headers
                .get(http::header::AUTHORIZATION)
                .ok_or(AccessError::Unauthenticated(
                    "missing bearer token: send `authorization: Bearer <token>`",
                ))?;
        let secret = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer ").or(v.strip_prefix("bearer ")))
            .map(str::trim)
            .ok_or(AccessError::Unauthenticated(
                "malformed authorization: expected `Bearer <token>`",
            ))?;
        table
            .authenticate(secret)
            .map(|(grant, revocation)| (Caller::Token(grant), Some(revocation)))
            .ok_or(AccessError::Unauthenticated("unknown token"))
    }
}

/// A call the layer let through; `slot` holds its place in the call counts until dropped.
pub struct Admitted {
    pub caller: Caller,
    pub revocation: Option<Revocation>,
    pub slot: Slot,
}

/// Paths that need no token and count against no limit.
fn exempt(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.") || path.starts_with("/grpc.reflection.")
}

#[derive(Clone)]
pub struct AccessLayer(pub Arc<Access>);

impl<S> tower_layer::Layer<S> for AccessLayer {
    type Service = AccessService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AccessService {
            inner,
            access: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AccessService<S> {
    inner: S,
    access: Arc<Access>,
}

use agent_registry_core::common::BoxFuture;

impl<S> tower_service::Service<http::Request<Body>> for AccessService<S>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        if exempt(req.uri().path()) {
            let reply = self.inner.call(req);
            return Box::pin(reply);
        }
        let Admitted {
            caller,
            revocation,
            slot,
        } = match self.access.admit(&req) {
            Ok(admitted) => admitted,
            Err(e) => {
                let status = tonic::Status::from(e);
                return Box::pin(async move { Ok(status.into_http()) });
            }
        };
        let limit = self.access.limits.max_message_bytes;
        let (mut parts, body) = req.into_parts();
        parts.extensions.insert(caller);
        if let Some(r) = revocation {
            parts.extensions.insert(r);
        }
        let body = Body::new(LimitedBody {
            inner: body,
            limit,
            header: Vec::with_capacity(5),
            remaining: 0,
        });
        let reply = self.inner.call(http::Request::from_parts(parts, body));
        Box::pin(async move {
            let response = reply.await?;
            let (parts, body) = response.into_parts();
            let body = Body::new(Held {
                inner: body,
                _slot: slot,
            });
            Ok(http::Response::from_parts(parts, body))
        })
    }
}

/// A request body read through the gRPC framing (5-byte prefix: flag and length), refusing a
/// message longer than the limit as soon as its prefix arrives, before it is buffered.
struct LimitedBody<B> {
    inner: B,
    limit: usize,
    /// Prefix bytes of the next message seen so far.
    header: Vec<u8>,
    /// Bytes of the current message still to come.
    remaining: usize,
}

impl<B> LimitedBody<B> {
    fn scan(&mut self, mut data: &[u8]) -> Result<(), tonic::Status> {
        while !data.is_empty() {
            if self.remaining > 0 {
                let n = self.remaining.min(data.len());
                self.remaining -= n;
                data.advance(n);
                continue;
            }
            let n = (5 - self.header.len()).min(data.len());
            self.header.extend_from_slice(&data[..n]);
            data.advance(n);
            if self.header.len() == 5 {
                let len = u32::from_be_bytes([
                    self.header[1],
                    self.header[2],
                    self.header[3],
                    self.header[4],
                ]) as usize;
                self.header.clear();
                if len > self.limit {
                    return Err(tonic::Status::from(AccessError::Limited(format!(
                        "request message is {len} bytes; the limit is {} (--max-message-size)",
                        self.limit
                    ))));
                }
                self.remaining = len;
            }
        }
        Ok(())
    }
}

impl<B> HttpBody for LimitedBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        if let Some(data) = polled.data_ref()
            && let Err(status) = self.scan(data)
        {
            return Poll::Ready(Some(Err(Box::new(status))));
        }
        Poll::Ready(Some(Ok(polled)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that holds the call's slot in the counts until the call ends.
struct Held {
    inner: Body,
    _slot: Slot,
}

impl HttpBody for Held {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sized(limit: usize) -> LimitedBody<Body> {
        LimitedBody {
            inner: Body::empty(),
            limit,
            header: Vec::new(),
            remaining: 0,
        }
    }

    fn message(len: usize) -> Vec<u8> {
        let mut m = vec![0u8];
        m.extend_from_slice(&(len as u32).to_be_bytes());
        m.extend(std::iter::repeat_n(7u8, len));
        m
    }

    #[test]
    fn messages_within_the_limit_pass_in_any_chunking() {
        let mut data = message(10);
        data.extend(message(0));
        data.extend(message(100));
        for chunk in [1, 2, 3, 5, 7, 64, 1000] {
            let mut s = sized(100);
            for c in data.chunks(chunk) {
                s.scan(c).unwrap();
            }
            assert_eq!((s.remaining, s.header.len()), (0, 0), "chunk {chunk}");
        }
    }

    #[test]
    fn a_long_message_is_refused_at_its_prefix() {
        let data = message(101);
        for chunk in [1, 3, 5, 6] {
            let mut s = sized(100);
            let err = data
                .chunks(chunk)
                .map(|c| s.scan(c))
                .find_map(Result::err)
                .expect("refused");
            assert_eq!(err.code(), tonic::Code::ResourceExhausted);
            assert!(err.message().contains("101 bytes"), "{}", err.message());
        }
    }
}
