//! New sessions within bounds: a gateway holds at most `session.max_sessions`, and
//! one address starts at most `session.max_new_per_address_per_minute`; beyond
//! either, 429 with a `Retry-After`, and a flood leaves memory bounded
//! (docs/security.md).

mod common;

use common::sse::post_chat;
use common::{Client, expected_answer, mock_llm, serve, wait_for_sessions_in_memory};
use futures_util::StreamExt;
use serde_json::json;

fn question(text: &str) -> serde_json::Value {
    json!({ "messages": [{ "role": "user", "content": text }] })
}

/// Opens `GET /ws`; the status of the handshake's answer.
async fn websocket_status(url: &str) -> u16 {
    match tokio_tungstenite::connect_async(url).await {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("unexpected WebSocket failure: {other}"),
    }
}

#[tokio::test]
async fn a_full_gateway_refuses_new_sessions_and_serves_the_ones_it_has() {
    // Slow answers keep the sessions busy, so none can leave memory.
    let model = mock_llm(0, 200);
    let server = serve(&model, &[("PARLOR_SESSION__MAX_SESSIONS", "3")]);
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut client = Client::connect(&server).await;
        let turn_id = client.chat_accepted("a long answer please").await;
        clients.push((client, turn_id));
    }
    wait_for_sessions_in_memory(&server, 3).await;

    assert_eq!(websocket_status(&server.ws_url("")).await, 429);
    let response = reqwest::Client::new()
        .post(server.http("/chat"))
        .json(&question("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));

    // The sessions it holds go on.
    for (mut client, turn_id) in clients {
        let turn = client.read_turn(turn_id).await;
        assert_eq!(turn.answer, expected_answer("a long answer please", 1));
    }
}

#[tokio::test]
async fn an_address_starting_sessions_in_a_loop_meets_its_limit_and_memory_stays_bounded() {
    let model = mock_llm(0, 0);
    let server = serve(
        &model,
        &[
            ("PARLOR_SESSION__MAX_NEW_PER_ADDRESS_PER_MINUTE", "300"),
            ("PARLOR_SESSION__LIMIT_LOOPBACK", "true"),
            ("PARLOR_SESSION__MAX_IDLE_BYTES", "16777216"),
            // Only the limit on new sessions here, not the one on turns at once.
            ("PARLOR_SESSION__MAX_TURNS_PER_CLIENT", "0"),
        ],
    );
    // One session of this address, started before the flood, keeps working.
    let (status, events, _) = post_chat(&server.http("/chat"), question("first")).await;
    assert_eq!(status, 200);
    let session_id = events[0].data["sessionId"].as_str().unwrap().to_owned();
    let before = server.rss_bytes();

    // 2,000 new sessions as fast as 16 connections allow, each with 200 KB of
    // earlier conversation.
    let history: Vec<_> = (0..100)
        .map(|i| {
            let role = if i % 2 == 0 { "user" } else { "assistant" };
            json!({ "role": role, "content": "x".repeat(2000) })
        })
        .chain(std::iter::once(
            json!({ "role": "user", "content": "and now?" }),
        ))
        .collect();
    let body = json!({ "messages": history });
    let http = reqwest::Client::new();
    let url = server.http("/chat");
    let started = std::time::Instant::now();
    let statuses: Vec<u16> = futures_util::stream::iter(0..2000)
        .map(|_| async {
            let response = http.post(&url).json(&body).send().await.unwrap();
            let status = response.status().as_u16();
            if status == 429 {
                assert!(response.headers().contains_key("retry-after"));
            }
            let _ = response.bytes().await;
            status
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let refilled = (started.elapsed().as_secs_f64() * 300.0 / 60.0).ceil() as usize;
    let grown = server.rss_bytes().saturating_sub(before);
    let accepted = statuses.iter().filter(|&&s| s == 200).count();
    let refused = statuses.iter().filter(|&&s| s == 429).count();
    assert_eq!(accepted + refused, 2000, "only 200 and 429: {statuses:?}");
    // 299 sessions were left of the minute's 300, and 5 more a second came back
    // while the flood ran.
    assert!(
        (299..=299 + refilled + 1).contains(&accepted),
        "{accepted} accepted; {refilled} refilled"
    );
    // Kept in memory, the accepted sessions' conversations alone would take 70 MB;
    // beyond 16 MiB the ones idle the longest left memory (they are stored).
    assert!(grown < 48 << 20, "RSS grew by {} MiB", grown >> 20);

    assert_eq!(websocket_status(&server.ws_url("")).await, 429);
    // A session it already has is not a new one.
    let follow_up = json!({
        "sessionId": session_id,
        "messages": [{ "role": "user", "content": "second" }],
    });
    let (status, _, _) = post_chat(&url, follow_up).await;
    assert_eq!(status, 200);
}
