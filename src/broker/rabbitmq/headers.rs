//! What the engine reads from, and writes into, AMQP message headers.
//!
//! Which delivery of a question this is comes from RabbitMQ itself: a quorum queue
//! counts earlier deliveries of a message in `x-delivery-count`, absent on the
//! first. Reading that count, rather than keeping one, is what lets any worker
//! process tell a redelivery from a first delivery.

use lapin::types::{AMQPValue, FieldTable};

/// Which delivery of a question this is: RabbitMQ counts earlier deliveries of a
/// quorum queue's message in `x-delivery-count` (absent on the first).
pub fn attempt_from_headers(headers: Option<&FieldTable>) -> u32 {
    let count = headers
        .and_then(|headers| headers.inner().get("x-delivery-count"))
        .and_then(|value| match value {
            AMQPValue::ShortShortInt(n) => Some(i64::from(*n)),
            AMQPValue::ShortShortUInt(n) => Some(i64::from(*n)),
            AMQPValue::ShortInt(n) => Some(i64::from(*n)),
            AMQPValue::ShortUInt(n) => Some(i64::from(*n)),
            AMQPValue::LongInt(n) => Some(i64::from(*n)),
            AMQPValue::LongUInt(n) => Some(i64::from(*n)),
            AMQPValue::LongLongInt(n) => Some(*n),
            _ => None,
        })
        .unwrap_or(0);
    u32::try_from(count.max(0))
        .unwrap_or(u32::MAX)
        .saturating_add(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_delivery_has_no_count() {
        assert_eq!(attempt_from_headers(None), 1);
        assert_eq!(attempt_from_headers(Some(&FieldTable::default())), 1);
    }

    #[test]
    fn the_delivery_count_header_gives_the_attempt() {
        let with = |value| {
            let mut headers = FieldTable::default();
            headers.insert("x-delivery-count".into(), value);
            attempt_from_headers(Some(&headers))
        };
        assert_eq!(with(AMQPValue::LongLongInt(1)), 2);
        assert_eq!(with(AMQPValue::LongInt(2)), 3);
        assert_eq!(with(AMQPValue::ShortShortUInt(4)), 5);
        assert_eq!(with(AMQPValue::LongLongInt(-3)), 1);
        assert_eq!(with(AMQPValue::LongLongInt(i64::MAX)), u32::MAX);
        assert_eq!(with(AMQPValue::LongString("2".into())), 1);
    }
}
