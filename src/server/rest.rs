//! The HTTP API's server task beside the gRPC server: started on its own listener (TLS like the
//! gRPC port, offering HTTP/1.1), stopped with the same signal and the same grace.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::security::conn;
use crate::security::tls::ServerTls;
use crate::web;

pub(super) struct RestServer {
    task: JoinHandle<()>,
    accepting: JoinHandle<()>,
    stopping: watch::Receiver<bool>,
}

impl RestServer {
    /// Serves `api` on `listener` until `stopping` turns true.
    pub fn start(
        listener: TcpListener,
        tls: Option<Arc<ServerTls>>,
        api: web::HttpApi,
        stopping: watch::Receiver<bool>,
    ) -> RestServer {
        let (incoming, accepting) = conn::incoming(listener, tls, conn::HTTP_ALPN);
        let mut stop = stopping.clone();
        let task = tokio::spawn(web::serve(
            Arc::new(api),
            web::Incoming(incoming),
            async move {
                let _ = stop.wait_for(|s| *s).await;
            },
        ));
        RestServer {
            task,
            accepting,
            stopping,
        }
    }

    /// Waits until the server ends once shutdown began — its watches end with the registry's
    /// shutdown, its other calls finish — or `grace` after that, when the task and with it
    /// every connection is dropped. The port is closed when this returns.
    pub async fn finish(mut self, grace: Duration) {
        let mut stopping = self.stopping.clone();
        tokio::select! {
            _ = &mut self.task => {}
            _ = async {
                let _ = stopping.wait_for(|s| *s).await;
                tokio::time::sleep(grace).await;
            } => {
                tracing::warn!(?grace, "shutdown grace elapsed; closing remaining HTTP calls");
                self.task.abort();
                let _ = (&mut self.task).await;
            }
        }
        let _ = self.accepting.await;
    }
}
