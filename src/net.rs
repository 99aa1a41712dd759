//! Socket settings shared by parlor's HTTP servers.

use std::any::Any;

use actix_web::dev::Extensions;
use actix_web::rt::net::TcpStream;

/// Turns off Nagle's algorithm on an accepted connection (pass to
/// `HttpServer::on_connect`). A streamed answer is many small writes; with Nagle,
/// a write that follows an unacknowledged one waits for the peer's delayed ACK,
/// adding ~40 ms to the first chunk of every turn.
pub fn send_without_delay(connection: &dyn Any, _: &mut Extensions) {
    if let Some(tcp) = connection.downcast_ref::<TcpStream>()
        && let Err(error) = tcp.set_nodelay(true)
    {
        tracing::debug!(%error, "could not set TCP_NODELAY");
    }
}
