//! The HTTP API's server task beside the gRPC server: started on its own listener (TLS like the
//! gRPC port, offering HTTP/1.1), stopped with the same token and the same grace.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::security::conn;
use crate::security::tls::ServerTls;
use crate::web;

pub(super) struct RestServer {
    task: JoinHandle<()>,
    accepting: JoinHandle<()>,
}

impl RestServer {
    /// Serves `api` on `listener` until `stop` is cancelled.
    pub fn start(
        listener: TcpListener,
        tls: Option<Arc<ServerTls>>,
        api: web::HttpApi,
        stop: CancellationToken,
    ) -> RestServer {
        let (incoming, accepting) = conn::incoming(listener, tls, conn::HTTP_ALPN);
        let task = tokio::spawn(web::serve(
            Arc::new(api),
            web::Incoming(incoming),
            stop.cancelled_owned(),
        ));
        RestServer { task, accepting }
    }

    /// Once its token is cancelled: waits until the server ends — its watches end with the
    /// registry's shutdown, its other calls finish — or `grace`, when the task and with it
    /// every connection is dropped. The port is closed when this returns.
    pub async fn finish(mut self, grace: Duration) {
        tokio::select! {
            _ = &mut self.task => {}
            _ = tokio::time::sleep(grace) => {
                tracing::warn!(?grace, "shutdown grace elapsed; closing remaining HTTP calls");
                self.task.abort();
                let _ = (&mut self.task).await;
            }
        }
        let _ = self.accepting.await;
    }
}
