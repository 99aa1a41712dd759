//! Serving HTTP until a signal: the gateway's routes, or a worker's operations
//! routes. The server handles no signals itself, so the command can drain its
//! work while the routes still answer (`/readyz` says 503 meanwhile), and stops
//! the server last.

use std::net::{SocketAddr, TcpListener};

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer, web};
use anyhow::Context as _;
use tokio::task::JoinHandle;

use crate::shutdown;

pub(super) struct HttpService {
    pub address: SocketAddr,
    handle: ServerHandle,
    /// `None` once the server has ended.
    serving: Option<JoinHandle<std::io::Result<()>>>,
}

impl HttpService {
    /// Starts serving `routes` on `listener` with `threads` HTTP worker threads
    /// (`None`: actix-web's default, one per core).
    pub fn start(
        listener: TcpListener,
        threads: Option<usize>,
        routes: impl Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
    ) -> anyhow::Result<Self> {
        let address = listener.local_addr()?;
        let mut server = HttpServer::new(move || {
            let routes = routes.clone();
            App::new().configure(move |config| routes(config))
        });
        if let Some(threads) = threads {
            server = server.workers(threads);
        }
        let server = server
            .on_connect(crate::net::send_without_delay)
            .disable_signals()
            // Sockets are closed by then; this only bounds stragglers.
            .shutdown_timeout(5)
            .listen(listener)?
            .run();
        let handle = server.handle();
        Ok(Self {
            address,
            handle,
            serving: Some(actix_web::rt::spawn(server)),
        })
    }

    /// Waits for SIGTERM or SIGINT and names it; `None` if the server ended first
    /// without an error (it fails if the server did).
    pub async fn until_signalled(&mut self) -> anyhow::Result<Option<&'static str>> {
        let Some(serving) = self.serving.as_mut() else {
            return Ok(None);
        };
        tokio::select! {
            result = serving => {
                self.serving = None;
                result?.context("the HTTP server failed")?;
                Ok(None)
            }
            signal = shutdown::signalled() => Ok(Some(signal)),
        }
    }

    /// Stops the server, letting requests in progress end.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.handle.stop(true).await;
        match self.serving {
            Some(serving) => serving.await?.context("the HTTP server failed"),
            None => Ok(()),
        }
    }
}
