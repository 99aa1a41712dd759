//! What the engine writes into AMQP message headers, and reads back from them.
//!
//! Which delivery of a question this is comes from RabbitMQ itself: a quorum queue
//! counts earlier deliveries of a message in `x-delivery-count`, absent on the
//! first. Reading that count, rather than keeping one, is what lets any worker
//! process tell a redelivery from a first delivery.
//!
//! The rest is for following a turn across processes. A question carries a W3C
//! `traceparent` whose trace id is its turn id, and its session and turn ids in
//! `x-parlor-session-id` and `x-parlor-turn-id`. They repeat what the JSON body says,
//! on purpose: headers can be read when the body cannot, so even the log line of a
//! malformed question names its turn, and tools that never parse bodies (the
//! management UI, a tracing proxy) see them too. Headers that are missing or
//! malformed are ignored, never an error: they only label.

use lapin::types::{AMQPValue, FieldTable, LongString};
use uuid::Uuid;

use crate::broker::{Question, SpanId, TraceContext, TraceId};

const TRACEPARENT: &str = "traceparent";
const SESSION_ID: &str = "x-parlor-session-id";
const TURN_ID: &str = "x-parlor-turn-id";
const DELIVERY_COUNT: &str = "x-delivery-count";
/// The only `traceparent` version written; `ff` is forbidden, others are read as
/// far as this one goes.
const TRACE_VERSION: &str = "00";
/// Flags: sampled.
const TRACE_FLAGS: &str = "01";
/// `00-<32 hex>-<16 hex>-<2 hex>`.
const TRACEPARENT_LEN: usize = 55;

/// The session and turn a delivery belongs to, as far as is known: for log lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct TurnIds {
    pub(super) session_id: Option<Uuid>,
    pub(super) turn_id: Option<Uuid>,
}

/// What a question's headers say, read before (and whether or not) its body is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct QuestionHeaders {
    pub(super) ids: TurnIds,
    pub(super) trace: Option<TraceContext>,
    pub(super) attempt: u32,
}

impl QuestionHeaders {
    pub(super) fn read(headers: Option<&FieldTable>) -> Self {
        Self {
            ids: TurnIds {
                session_id: headers.and_then(|headers| uuid_in(headers, SESSION_ID)),
                turn_id: headers.and_then(|headers| uuid_in(headers, TURN_ID)),
            },
            trace: headers
                .and_then(|headers| text_in(headers, TRACEPARENT))
                .and_then(|value| parse_traceparent(&value)),
            attempt: attempt_from_headers(headers),
        }
    }
}

/// The headers of a question: a new span of its turn's trace, its session and turn.
pub(super) fn question_headers(question: &Question) -> FieldTable {
    let trace = TraceContext {
        trace_id: TraceId::of_turn(question.turn_id),
        parent_span_id: new_span_id(),
    };
    let mut headers = FieldTable::default();
    headers.insert(TRACEPARENT.into(), text(traceparent(&trace)));
    headers.insert(SESSION_ID.into(), text(question.session_id.to_string()));
    headers.insert(TURN_ID.into(), text(question.turn_id.to_string()));
    headers
}

/// Which delivery of a question this is: RabbitMQ counts earlier deliveries of a
/// quorum queue's message in `x-delivery-count` (absent on the first).
pub fn attempt_from_headers(headers: Option<&FieldTable>) -> u32 {
    let count = headers
        .and_then(|headers| headers.inner().get(DELIVERY_COUNT))
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

fn traceparent(trace: &TraceContext) -> String {
    format!(
        "{TRACE_VERSION}-{}-{}-{TRACE_FLAGS}",
        trace.trace_id, trace.parent_span_id
    )
}

/// Reads a `traceparent` as W3C Trace Context says: lowercase hex, neither id all
/// zeros, version `ff` invalid, and a later version read as far as version 00 goes.
fn parse_traceparent(value: &str) -> Option<TraceContext> {
    let head = value.get(..TRACEPARENT_LEN)?;
    let rest = &value[TRACEPARENT_LEN..];
    let mut fields = head.split('-');
    let (version, trace_id, span_id, flags) = (
        fields.next()?,
        fields.next()?,
        fields.next()?,
        fields.next()?,
    );
    let hex = |field: &str, len: usize| {
        field.len() == len
            && field
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let well_formed = hex(version, 2)
        && hex(trace_id, 32)
        && hex(span_id, 16)
        && hex(flags, 2)
        && version != "ff"
        && (rest.is_empty() || (version != TRACE_VERSION && rest.starts_with('-')));
    if !well_formed {
        return None;
    }
    let trace_id = u128::from_str_radix(trace_id, 16).ok()?;
    let span_id = u64::from_str_radix(span_id, 16).ok()?;
    (trace_id != 0 && span_id != 0).then_some(TraceContext {
        trace_id: TraceId(trace_id),
        parent_span_id: SpanId(span_id),
    })
}

/// A random span id; all zeros is not a valid one.
fn new_span_id() -> SpanId {
    loop {
        let id = rand::random::<u64>();
        if id != 0 {
            return SpanId(id);
        }
    }
}

fn text(value: String) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

fn text_in(headers: &FieldTable, key: &str) -> Option<String> {
    match headers.inner().get(key)? {
        AMQPValue::LongString(value) => String::from_utf8(value.as_bytes().to_vec()).ok(),
        AMQPValue::ShortString(value) => Some(value.as_str().to_owned()),
        _ => None,
    }
}

fn uuid_in(headers: &FieldTable, key: &str) -> Option<Uuid> {
    Uuid::parse_str(&text_in(headers, key)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn question() -> Question {
        Question {
            session_id: Uuid::new_v4(),
            turn_id: Uuid::new_v4(),
            reply_to: "q.reply.x".into(),
            history: vec![],
            text: "hi".into(),
            tools: None,
        }
    }

    fn with_traceparent(value: &str) -> Option<TraceContext> {
        let mut headers = FieldTable::default();
        headers.insert(TRACEPARENT.into(), text(value.to_owned()));
        QuestionHeaders::read(Some(&headers)).trace
    }

    #[test]
    fn a_question_s_headers_read_back_as_its_turn_and_trace() {
        let asked = question();
        let headers = question_headers(&asked);
        let read = QuestionHeaders::read(Some(&headers));
        assert_eq!(
            read.ids,
            TurnIds {
                session_id: Some(asked.session_id),
                turn_id: Some(asked.turn_id),
            }
        );
        let trace = read.trace.expect("a trace context");
        assert_eq!(
            trace.trace_id.to_string(),
            asked.turn_id.simple().to_string()
        );
        assert_ne!(trace.parent_span_id, SpanId(0));
        assert_eq!(read.attempt, 1);
    }

    #[test]
    fn a_traceparent_is_written_as_w3c_version_00() {
        let trace = TraceContext {
            trace_id: TraceId(0x4bf92f3577b34da6a3ce929d0e0e4736),
            parent_span_id: SpanId(0xf067aa0ba902b7),
        };
        let written = traceparent(&trace);
        assert_eq!(
            written,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        assert_eq!(parse_traceparent(&written), Some(trace));
    }

    #[test]
    fn each_question_gets_a_span_of_its_own() {
        let asked = question();
        let span = |headers: FieldTable| {
            QuestionHeaders::read(Some(&headers))
                .trace
                .unwrap()
                .parent_span_id
        };
        assert_ne!(
            span(question_headers(&asked)),
            span(question_headers(&asked))
        );
    }

    #[test]
    fn a_malformed_traceparent_is_ignored() {
        let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert!(with_traceparent(valid).is_some());
        for malformed in [
            "",
            "garbage",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01é",
        ] {
            assert_eq!(with_traceparent(malformed), None, "{malformed:?}");
        }
        // A later version may add fields after a dash.
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more";
        assert!(with_traceparent(later).is_some());
        // Not a string at all.
        let mut headers = FieldTable::default();
        headers.insert(TRACEPARENT.into(), AMQPValue::LongLongInt(7));
        assert_eq!(QuestionHeaders::read(Some(&headers)).trace, None);
    }

    #[test]
    fn a_message_without_headers_has_no_trace_nor_ids() {
        let read = QuestionHeaders::read(None);
        assert_eq!(
            (read.ids, read.trace, read.attempt),
            (TurnIds::default(), None, 1)
        );
        let mut headers = FieldTable::default();
        headers.insert(TURN_ID.into(), text("not a uuid".into()));
        assert_eq!(QuestionHeaders::read(Some(&headers)).ids.turn_id, None);
    }

    #[test]
    fn the_first_delivery_has_no_count() {
        assert_eq!(attempt_from_headers(None), 1);
        assert_eq!(attempt_from_headers(Some(&FieldTable::default())), 1);
    }

    #[test]
    fn the_delivery_count_header_gives_the_attempt() {
        let with = |value| {
            let mut headers = FieldTable::default();
            headers.insert(DELIVERY_COUNT.into(), value);
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
