//! A server task on a free port of 127.0.0.1, stopped when dropped: what the fakes the hub
//! calls (webhook upstreams, the OTLP collector) run on.

use std::future::Future;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A server task and its port.
pub struct Server {
    /// Its port on 127.0.0.1.
    pub port: u16,
    task: JoinHandle<()>,
}

impl Server {
    /// Serves `app` over plain HTTP.
    pub async fn http(app: axum::Router) -> Self {
        Self::spawn(|listener| async move {
            let _ = axum::serve(listener, app).await;
        })
        .await
    }

    /// Binds a free port and runs `serve` on its listener.
    pub async fn spawn<F>(serve: impl FnOnce(TcpListener) -> F) -> Self
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a free port");
        let port = listener.local_addr().expect("addr").port();
        Server {
            port,
            task: tokio::spawn(serve(listener)),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}
