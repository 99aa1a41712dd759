use super::*;
use crate::conversation::ChatError;

const LIMIT: usize = 64;

fn text(text: &str) -> Result<AggregatedMessage, ProtocolError> {
    Ok(AggregatedMessage::Text(text.into()))
}

fn error_code(received: Received) -> ErrorCode {
    match received {
        Received::Invalid(ServerFrame::Error {
            turn_id: None,
            error,
        }) => error.code,
        other => panic!("expected an error frame, got {other:?}"),
    }
}

#[test]
fn chat_frames_are_requests() {
    assert_eq!(
        read(text(r#"{"type":"message","text":"hi"}"#), LIMIT),
        Received::Request(ClientFrame::Message {
            text: "hi".into(),
            tools: None
        })
    );
    assert_eq!(
        read(text(r#"{"type":"cancel"}"#), LIMIT),
        Received::Request(ClientFrame::Cancel)
    );
    assert_eq!(
        read(text(r#"{"type":"ping"}"#), LIMIT),
        Received::Request(ClientFrame::Ping)
    );
}

#[test]
fn text_beyond_the_limit_is_too_large() {
    let message_of = |len: usize| {
        let padding = len - r#"{"type":"message","text":""}"#.len();
        format!(r#"{{"type":"message","text":"{}"}}"#, "x".repeat(padding))
    };
    assert!(matches!(
        read(text(&message_of(LIMIT)), LIMIT),
        Received::Request(ClientFrame::Message { .. })
    ));
    let Received::Invalid(ServerFrame::Error {
        error: ChatError { code, message },
        ..
    }) = read(text(&message_of(LIMIT + 1)), LIMIT)
    else {
        panic!("an oversized frame must be refused");
    };
    assert_eq!(code, ErrorCode::TooLarge);
    assert!(message.contains(&format!("limit of {LIMIT}")), "{message}");
}

#[test]
fn what_is_not_a_chat_frame_is_a_bad_request() {
    for frame in [
        "not json",
        r#"{"type":"shout"}"#,
        r#"{"type":"message"}"#,
        r#"{"type":"message","text":"  "}"#,
    ] {
        assert_eq!(error_code(read(text(frame), LIMIT)), ErrorCode::BadRequest);
    }
    let binary = Ok(AggregatedMessage::Binary(Bytes::from_static(b"{}")));
    assert_eq!(error_code(read(binary, LIMIT)), ErrorCode::BadRequest);
}

#[test]
fn control_frames_are_told_apart() {
    let payload = Bytes::from_static(b"are you there");
    assert_eq!(
        read(Ok(AggregatedMessage::Ping(payload.clone())), LIMIT),
        Received::Ping(payload)
    );
    assert_eq!(
        read(Ok(AggregatedMessage::Pong(Bytes::new())), LIMIT),
        Received::Pong
    );
    assert_eq!(
        read(Ok(AggregatedMessage::Close(None)), LIMIT),
        Received::Leaving(Goodbye::ClientClosed)
    );
}

#[test]
fn broken_framing_ends_the_connection() {
    assert_eq!(
        read(Err(ProtocolError::Overflow), LIMIT),
        Received::Leaving(Goodbye::Oversized)
    );
    assert_eq!(
        read(Err(ProtocolError::UnmaskedFrame), LIMIT),
        Received::Leaving(Goodbye::BadFraming)
    );
    let io = |kind, text: &str| ProtocolError::Io(std::io::Error::new(kind, text.to_owned()));
    assert_eq!(
        read(Err(io(std::io::ErrorKind::InvalidData, "bad utf-8")), LIMIT),
        Received::Leaving(Goodbye::NotUtf8)
    );
    let too_long = io(
        std::io::ErrorKind::Other,
        "Exceeded maximum continuation size",
    );
    assert_eq!(
        read(Err(too_long), LIMIT),
        Received::Leaving(Goodbye::Oversized)
    );
}

#[test]
fn each_goodbye_has_its_close_code() {
    let code = |goodbye: Goodbye| goodbye.reason().map(|reason| u16::from(reason.code));
    assert_eq!(code(Goodbye::Replaced), Some(1008));
    assert_eq!(code(Goodbye::GoingAway), Some(1001));
    assert_eq!(code(Goodbye::BadFraming), Some(1002));
    assert_eq!(code(Goodbye::Oversized), Some(1009));
    assert_eq!(code(Goodbye::NotUtf8), Some(1007));
    assert_eq!(code(Goodbye::ClientClosed), None);
    assert_eq!(code(Goodbye::Unresponsive), None);
}

#[test]
fn a_client_is_silent_only_after_the_timeout() {
    let timeout = Duration::from_secs(10);
    let start = Instant::now();
    let mut liveness = Liveness::new(start);
    assert!(!liveness.is_silent(start + timeout, timeout));
    assert!(liveness.is_silent(start + timeout + Duration::from_millis(1), timeout));

    liveness.heard(start + Duration::from_secs(8));
    assert!(!liveness.is_silent(start + Duration::from_secs(15), timeout));
    assert!(liveness.is_silent(start + Duration::from_secs(19), timeout));
    // A clock reading from before the last frame is no silence.
    assert!(!liveness.is_silent(start, timeout));
}
