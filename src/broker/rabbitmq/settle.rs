//! Settling a question: acknowledging, requeueing or rejecting it on the channel
//! it came from.
//!
//! A delivery can only be settled on its own channel, so each one holds that
//! channel until it is settled. This matters when the question stream ends while
//! turns still run (a pool that stops taking questions at shutdown): were the
//! channel closed with the stream, RabbitMQ would hand every running turn's
//! question to another worker while this one still answered it, and the final
//! acknowledgement would be lost. Once the channel is gone anyway (its connection
//! was lost), settling does nothing: RabbitMQ redelivers the question itself. A
//! delivery dropped unsettled (its worker died) is rejected, which dead-letters it.
//!
//! Holding the channel has a cost this module also pays: RabbitMQ pushes questions
//! up to the prefetch, ahead of what the pool takes, and those received but never
//! handed out would stay with this process until its running turns end. So when
//! the stream ends, [`requeue_unread`] gives them back at once, for another worker.

use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt};
use futures_util::stream::StreamExt;
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicNackOptions, BasicRejectOptions};
use lapin::{Acker, Channel, Consumer};

use super::headers::TurnIds;
use super::{BrokerError, Settle};

/// Longest wait for RabbitMQ to stop a consumer and take back what it had pushed.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// Settles one question on the channel it came from.
pub(super) struct RabbitSettle {
    unsettled: Option<Unsettled>,
    /// Whose question it is, for the log lines about it.
    ids: TurnIds,
}

/// A delivery's acker and its channel, held open while the delivery is unsettled.
struct Unsettled {
    acker: Acker,
    _channel: Channel,
}

pub(super) enum Outcome {
    Ack,
    Requeue,
    Reject,
}

impl RabbitSettle {
    pub(super) fn new(acker: Acker, channel: Channel, ids: TurnIds) -> Self {
        Self {
            unsettled: Some(Unsettled {
                acker,
                _channel: channel,
            }),
            ids,
        }
    }

    pub(super) fn settle(
        mut self,
        outcome: Outcome,
    ) -> BoxFuture<'static, Result<(), BrokerError>> {
        let unsettled = self.unsettled.take();
        // Read by the log lines below, as `Option`s that leave a field out when unknown.
        let turn_id = self.ids.turn_id.map(tracing::field::display);
        let session_id = self.ids.session_id.map(tracing::field::display);
        async move {
            let Some(Unsettled { acker, _channel }) = unsettled else {
                return Ok(());
            };
            let settled = match outcome {
                Outcome::Ack => acker.ack(BasicAckOptions::default()).await,
                Outcome::Requeue => {
                    acker
                        .nack(BasicNackOptions {
                            requeue: true,
                            multiple: false,
                        })
                        .await
                }
                Outcome::Reject => acker.reject(BasicRejectOptions { requeue: false }).await,
            };
            match settled {
                Ok(true) => {}
                Ok(false) => tracing::debug!(
                    turn_id,
                    session_id,
                    "a question's channel is gone; RabbitMQ redelivers it"
                ),
                Err(error) => tracing::debug!(
                    %error,
                    turn_id,
                    session_id,
                    "could not settle a question; RabbitMQ redelivers it"
                ),
            }
            Ok(())
        }
        .boxed()
    }
}

impl Settle for RabbitSettle {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<(), BrokerError>> {
        (*self).settle(Outcome::Ack)
    }

    fn requeue(self: Box<Self>) -> BoxFuture<'static, Result<(), BrokerError>> {
        (*self).settle(Outcome::Requeue)
    }

    fn reject(self: Box<Self>) -> BoxFuture<'static, Result<(), BrokerError>> {
        (*self).settle(Outcome::Reject)
    }
}

impl Drop for RabbitSettle {
    fn drop(&mut self) {
        // Dropped unsettled: whoever held it died. Dead-letter rather than retry a
        // question that may be what killed it.
        if let Some(Unsettled { acker, _channel }) = self.unsettled.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            tracing::warn!(
                turn_id = self.ids.turn_id.map(tracing::field::display),
                session_id = self.ids.session_id.map(tracing::field::display),
                "a question was dropped unsettled; dead-lettering it"
            );
            runtime.spawn(async move {
                let _ = acker.reject(BasicRejectOptions { requeue: false }).await;
                drop(_channel);
            });
        }
    }
}

/// Gives back the questions `consumer` received but never handed out: stops it
/// first, so that RabbitMQ pushes no more, then requeues each one it still holds.
/// The channel closes afterwards unless a question taken from it is unsettled.
pub(super) fn requeue_unread(channel: Channel, mut consumer: Consumer) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let released = tokio::time::timeout(RELEASE_TIMEOUT, async {
            channel
                .basic_cancel(consumer.tag(), BasicCancelOptions::default())
                .await?;
            // Once stopped, the consumer yields what it still holds, then ends.
            while let Some(Ok(delivery)) = consumer.next().await {
                let requeue = BasicNackOptions {
                    requeue: true,
                    multiple: false,
                };
                delivery.acker.nack(requeue).await?;
            }
            Ok::<_, lapin::Error>(())
        })
        .await;
        if let Ok(Err(error)) = released {
            // The channel is gone, and RabbitMQ requeued them itself.
            tracing::debug!(%error, "could not give back questions not taken");
        }
        drop(channel);
    });
}
