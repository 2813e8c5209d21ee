//! A tower layer that counts every gRPC call by method and status code and times it (a stream
//! until it ends). The status is read where gRPC puts it: the response headers of a
//! trailers-only reply, else the trailers at the end of the body; a body dropped before its end
//! (the client went away) counts as `Cancelled`.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::{Body as HttpBody, Frame};
use tonic::body::Body;

use agent_registry_core::common::BoxFuture;
use agent_registry_core::metrics::{MethodCodeLabel, MethodLabel, Metrics};

#[derive(Clone)]
pub struct GrpcMetricsLayer(pub Arc<Metrics>);

impl<S> tower_layer::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics {
            inner,
            metrics: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B> tower_service::Service<http::Request<B>> for GrpcMetrics<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let call = Call {
            method: req.uri().path().to_string(),
            started: Instant::now(),
            metrics: self.metrics.clone(),
            done: false,
        };
        let reply = self.inner.call(req);
        Box::pin(async move {
            let mut call = call;
            let response = reply.await?;
            if let Some(code) = response.headers().get("grpc-status") {
                call.finish(code.as_bytes());
                return Ok(response);
            }
            let (parts, body) = response.into_parts();
            let body = Body::new(Recorded { inner: body, call });
            Ok(http::Response::from_parts(parts, body))
        })
    }
}

/// One call being timed.
struct Call {
    method: String,
    started: Instant,
    metrics: Arc<Metrics>,
    done: bool,
}

impl Call {
    fn finish(&mut self, status: &[u8]) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let code = format!("{:?}", tonic::Code::from_bytes(status));
        let method = std::mem::take(&mut self.method);
        self.metrics
            .grpc_seconds
            .get_or_create(&MethodLabel {
                method: method.clone(),
            })
            .observe(self.started.elapsed().as_secs_f64());
        self.metrics
            .grpc_requests
            .get_or_create(&MethodCodeLabel { method, code })
            .inc();
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        // Not finished by a status: the client went away first.
        self.finish(b"1");
    }
}

/// The response body, watched for the trailers that carry the status.
struct Recorded {
    inner: Body,
    call: Call,
}

impl HttpBody for Recorded {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(status) = frame.trailers_ref().and_then(|t| t.get("grpc-status"))
        {
            let status = status.as_bytes().to_vec();
            self.call.finish(&status);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
