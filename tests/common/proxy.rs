//! A TCP proxy a test can cut: an outage of RabbitMQ (or PostgreSQL) for this
//! test's processes only, while the server itself keeps serving every other test.
//! It can also freeze: connections stay open and nothing goes through, as in a
//! network partition, so that what is sent hangs instead of failing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct CuttableProxy {
    pub port: u16,
    up: Arc<AtomicBool>,
    /// Bumped on every cut, so live connections end.
    cuts: watch::Sender<u64>,
    /// Set to freeze every connection, live and new.
    frozen: watch::Sender<bool>,
}

impl CuttableProxy {
    /// Starts forwarding `127.0.0.1:<port>` to `target`, on a thread and runtime of
    /// its own: the test's runtime blocks while it waits for processes to start.
    pub fn start(target: &'static str) -> CuttableProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let (cuts, _) = watch::channel(0);
        let (frozen, _) = watch::channel(false);
        let (accepting, cut_signal, freeze_signal) = (up.clone(), cuts.clone(), frozen.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).unwrap();
                while let Ok((mut client, _)) = listener.accept().await {
                    if !accepting.load(Ordering::SeqCst) {
                        continue; // refused: dropped at once
                    }
                    let mut cut = cut_signal.subscribe();
                    let mut freeze = freeze_signal.subscribe();
                    tokio::spawn(async move {
                        let Ok(mut server) = TcpStream::connect(target).await else {
                            return;
                        };
                        let frozen_already = *freeze.borrow();
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server),
                                if !frozen_already => {}
                            _ = async { freeze.wait_for(|frozen| *frozen).await.is_ok() } => {
                                // Hold both ends open, passing nothing, until cut.
                                let _ = cut.changed().await;
                            }
                            _ = cut.changed() => {}
                        }
                        drop((client, server));
                    });
                }
            });
        });
        CuttableProxy {
            port,
            up,
            cuts,
            frozen,
        }
    }

    /// Stops passing anything on, keeping every connection open.
    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    /// Drops every connection and refuses new ones until [`CuttableProxy::restore`].
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cuts.send_modify(|cuts| *cuts += 1);
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}
