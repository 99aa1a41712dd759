//! The frames on their way to one WebSocket client, bounded.
//!
//! A socket takes frames only as fast as its client reads them. A client that
//! sends but never reads would otherwise make the session queue its answers
//! without end. The [`Outbox`] counts the bytes of frames not yet handed to the
//! socket; past `limit` the client is behind and [`Outbox::push`] says so, and the
//! session lets the connection go (docs/security.md). Nothing is lost by it: the
//! session keeps its turns, and the client finds them when it attaches again.
//!
//! A writer task hands the frames to the socket one at a time, in order.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix_ws::{CloseReason, Message};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How long a close frame may wait for room in a socket whose client does not
/// read, before the socket is let go without it.
const CLOSE_PATIENCE: Duration = Duration::from_secs(30);

pub struct Outbox {
    frames: mpsc::UnboundedSender<Message>,
    unsent: Arc<AtomicUsize>,
    limit: usize,
    /// Stops the writer at once, dropping the frames it still holds.
    abandon: CancellationToken,
}

/// The client is more than the outbox's limit behind; the frame was not queued.
#[derive(Debug, PartialEq, Eq)]
pub struct Behind;

impl Outbox {
    /// Starts the writer of `socket`; `when_done` runs once it has stopped (its
    /// close frame out, or the socket gone).
    pub fn open(
        socket: actix_ws::Session,
        limit: usize,
        when_done: impl FnOnce() + Send + 'static,
    ) -> Self {
        let (frames, queued) = mpsc::unbounded_channel();
        let unsent = Arc::new(AtomicUsize::new(0));
        let abandon = CancellationToken::new();
        let writer = write_frames(socket, queued, unsent.clone(), abandon.clone());
        actix::spawn(async move {
            writer.await;
            when_done();
        });
        Self {
            frames,
            unsent,
            limit,
            abandon,
        }
    }

    /// Queues `message`, unless the client is already more than the limit behind.
    pub fn push(&self, message: Message) -> Result<(), Behind> {
        if self.unsent.load(Ordering::Relaxed) > self.limit {
            return Err(Behind);
        }
        self.queue(message);
        Ok(())
    }

    /// Sends what is queued, then the close frame, and lets the socket go.
    pub fn close(self, reason: Option<CloseReason>) {
        self.queue(Message::Close(reason));
    }

    /// Drops what is queued and sends only the close frame (if the client ever
    /// makes room for it).
    pub fn abandon(self, reason: Option<CloseReason>) {
        self.queue(Message::Close(reason));
        self.abandon.cancel();
    }

    fn queue(&self, message: Message) {
        self.unsent.fetch_add(size(&message), Ordering::Relaxed);
        // A closed queue means the writer stopped: the socket is gone already.
        let _ = self.frames.send(message);
    }
}

/// Hands the queued frames to the socket until a close frame (or the socket's
/// end). Abandoned, it drops the frames still queued and sends just the close.
async fn write_frames(
    mut socket: actix_ws::Session,
    mut queued: mpsc::UnboundedReceiver<Message>,
    unsent: Arc<AtomicUsize>,
    abandon: CancellationToken,
) {
    let reason = loop {
        let message = tokio::select! {
            biased;
            () = abandon.cancelled() => break last_close(queued),
            message = queued.recv() => message,
        };
        let Some(message) = message else {
            return; // the session let the socket go without a word
        };
        if let Message::Close(reason) = message {
            break reason;
        }
        let bytes = size(&message);
        // Waits while the client does not read, unless the session gives up on it.
        let written = tokio::select! {
            biased;
            () = abandon.cancelled() => break last_close(queued),
            written = write(&mut socket, message) => written,
        };
        unsent.fetch_sub(bytes, Ordering::Relaxed);
        if written.is_err() {
            return; // the client is gone
        }
    };
    // A client that does not read may never make room for the close frame.
    let _ = tokio::time::timeout(CLOSE_PATIENCE, socket.close(reason)).await;
}

/// Hands one frame (not a close) to the socket.
async fn write(socket: &mut actix_ws::Session, message: Message) -> Result<(), actix_ws::Closed> {
    match message {
        Message::Text(text) => socket.text(text).await,
        Message::Ping(payload) => socket.ping(&payload).await,
        Message::Pong(payload) => socket.pong(&payload).await,
        // The session sends nothing else.
        _ => Ok(()),
    }
}

/// Drops the frames still queued; the reason of the close frame among them.
fn last_close(mut queued: mpsc::UnboundedReceiver<Message>) -> Option<CloseReason> {
    queued.close();
    let mut reason = None;
    while let Ok(message) = queued.try_recv() {
        if let Message::Close(close) = message {
            reason = close;
        }
    }
    reason
}

/// The bytes a message holds while queued.
fn size(message: &Message) -> usize {
    match message {
        Message::Text(text) => text.len(),
        Message::Binary(bytes) | Message::Ping(bytes) | Message::Pong(bytes) => bytes.len(),
        _ => 0,
    }
}
