//! `session.max_turns_per_client` (1 in the rig): a client's second session cannot
//! start a turn while its first runs one; another client can; a turn queued behind
//! its own session's turn is not refused.

use super::*;

fn client(last: u8) -> Option<ClientKey> {
    Some(ClientKey::Address(std::net::IpAddr::from([
        203, 0, 113, last,
    ])))
}

#[actix::test]
async fn a_client_at_its_limit_waits_for_its_running_turn_to_end() {
    let mut gateway = Gateway::start(8).await;
    let (_, first) = SessionActor::start(gateway.deps.clone(), Vec::new());
    let (_, second) = SessionActor::start(gateway.deps.clone(), Vec::new());
    let (_, other) = SessionActor::start(gateway.deps.clone(), Vec::new());

    let (running, mut running_frames) = ask(&first, "one", client(1)).await;
    assert!(running.is_ok());
    let question = gateway.next_question().await;
    // Queued behind its own session's turn: admitted, it will take that turn's place.
    let (queued, _queued_frames) = ask(&first, "two", client(1)).await;
    assert!(queued.is_ok());

    let (refused, _) = ask(&second, "elsewhere", client(1)).await;
    assert!(
        matches!(
            refused,
            Err(ChatError {
                code: ErrorCode::Busy,
                ..
            })
        ),
        "{refused:?}"
    );
    let (another, _) = ask(&other, "someone else", client(2)).await;
    assert!(another.is_ok(), "another client is not limited");

    // The running turn ends; its session's queued turn starts in its place.
    gateway.answer(&question, 1, done()).await;
    while !matches!(
        next_frame(&mut running_frames).await,
        ServerFrame::Done { .. }
    ) {}
    let (still_refused, _) = ask(&second, "elsewhere", client(1)).await;
    assert!(still_refused.is_err(), "the queued turn runs now");
}
