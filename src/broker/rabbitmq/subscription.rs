//! Consumers that survive reconnections.
//!
//! A lapin consumer dies with its channel, and so with its connection. The streams
//! this engine hands out must not: a gateway's answers, a worker's questions and
//! cancellations go on across a RabbitMQ restart. A [`Feed`] holds one consumer
//! and watches the supervisor's link; when the link changes or the consumer ends,
//! it subscribes again (declaring its own queue again) on the next live one. So
//! these streams never end on a connection loss, only once the
//! [`RabbitBroker`](super::RabbitBroker) is dropped.
//!
//! What to consume and how to turn a delivery into an item is a [`Subscription`];
//! the three the engine uses are in [`super::streams`].

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::{BoxStream, StreamExt};
use lapin::message::Delivery as LapinDelivery;
use lapin::{Channel, Consumer};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use super::link::Link;
use super::{BrokerError, EngineState, within};

/// Longest wait for one stream to declare its queue and start consuming.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause before a stream tries again to subscribe on a connection that refused it.
const RESUBSCRIBE_DELAY: Duration = Duration::from_millis(500);

/// What one stream consumes, and how it subscribes again on a new connection.
pub(super) trait Subscription: Send + Sync + 'static {
    type Item: Send + 'static;
    /// Declares what it needs on `link` and starts consuming; the channel is kept
    /// open as long as the consumer.
    fn subscribe(
        &self,
        link: Arc<Link>,
    ) -> BoxFuture<'static, Result<(Channel, Consumer), BrokerError>>;
    /// `None` skips a delivery (it is settled here). `channel` is the one it came
    /// on, to be kept open while the delivery is unsettled.
    fn convert(
        &self,
        delivery: LapinDelivery,
        channel: &Channel,
    ) -> BoxFuture<'static, Option<Self::Item>>;
    /// Called when the stream ends while still consuming, with what it consumed
    /// on: the deliveries RabbitMQ pushed that were never handed out are still in
    /// `consumer`. By default they go with the channel when it closes.
    fn release(&self, _channel: Channel, _consumer: Consumer) {}
}

/// A consumer that survives connections: on a new link it subscribes again.
pub(super) struct Feed<S: Subscription> {
    links: watch::Receiver<Option<Arc<Link>>>,
    subscription: S,
    active: Option<Active>,
}

struct Active {
    link: Arc<Link>,
    channel: Channel,
    consumer: Consumer,
}

impl<S: Subscription> Feed<S> {
    /// Subscribes on the current link; fails if there is none.
    pub(super) async fn start(shared: &EngineState, subscription: S) -> Result<Self, BrokerError> {
        let link = shared.current_link()?;
        let (channel, consumer) = within(
            SUBSCRIBE_TIMEOUT,
            "subscribing",
            subscription.subscribe(link.clone()),
        )
        .await?;
        Ok(Self {
            links: shared.link.subscribe(),
            subscription,
            active: Some(Active {
                link,
                channel,
                consumer,
            }),
        })
    }

    /// The next item; `None` only once the broker handle is gone.
    async fn next(&mut self) -> Option<S::Item> {
        loop {
            let Some(active) = self.active.as_mut() else {
                self.resubscribe().await?;
                continue;
            };
            let delivery = tokio::select! {
                delivery = active.consumer.next() => delivery,
                changed = self.links.changed() => {
                    changed.ok()?;
                    let same = matches!(&*self.links.borrow_and_update(), Some(link) if Arc::ptr_eq(link, &active.link));
                    if !same {
                        self.active = None;
                    }
                    continue;
                }
            };
            match delivery {
                Some(Ok(delivery)) => {
                    let item = self.subscription.convert(delivery, &active.channel);
                    if let Some(item) = item.await {
                        return Some(item);
                    }
                }
                Some(Err(error)) => {
                    tracing::debug!(%error, "a consumer lost its channel; subscribing again");
                    self.active = None;
                }
                None => {
                    tracing::debug!("a consumer was cancelled; subscribing again");
                    self.active = None;
                }
            }
        }
    }

    /// Waits for a live link and subscribes on it; `None` once the broker is gone.
    async fn resubscribe(&mut self) -> Option<()> {
        loop {
            let link = self
                .links
                .wait_for(|link| link.as_ref().is_some_and(|link| link.is_healthy()))
                .await
                .ok()?
                .clone()?;
            let subscribing = self.subscription.subscribe(link.clone());
            match within(SUBSCRIBE_TIMEOUT, "subscribing", subscribing).await {
                Ok((channel, consumer)) => {
                    self.active = Some(Active {
                        link,
                        channel,
                        consumer,
                    });
                    return Some(());
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot subscribe again; retrying");
                    tokio::time::sleep(RESUBSCRIBE_DELAY).await;
                }
            }
        }
    }

    /// A stream pulled only when its reader asks.
    pub(super) fn into_lazy_stream(self) -> BoxStream<'static, S::Item> {
        futures_util::stream::unfold(self, |mut feed| async move {
            let item = feed.next().await?;
            Some((item, feed))
        })
        .boxed()
    }

    /// A stream fed by a task, so that it subscribes again at once on a new
    /// connection even while its reader is busy. The task ends with the stream.
    pub(super) fn into_eager_stream(mut self, buffer: usize) -> BoxStream<'static, S::Item> {
        let (sender, receiver) = mpsc::channel(buffer);
        tokio::spawn(async move {
            loop {
                let item = tokio::select! {
                    item = self.next() => item,
                    () = sender.closed() => return,
                };
                let Some(item) = item else { return };
                if sender.send(item).await.is_err() {
                    return;
                }
            }
        });
        ReceiverStream::new(receiver).boxed()
    }
}

impl<S: Subscription> Drop for Feed<S> {
    fn drop(&mut self) {
        if let Some(Active {
            channel, consumer, ..
        }) = self.active.take()
        {
            self.subscription.release(channel, consumer);
        }
    }
}
