//! Bounded answers: a model that never stops is cut at `agent.max_answer_bytes`,
//! and `llm.max_tokens` reaches the model; either way the turn ends with
//! `done`/`length` and the conversation goes on.

mod common;

use common::{Client, expected_answer, mock_llm, serve, wait_for_mock};
use parlor::conversation::Role;

#[tokio::test]
async fn an_endless_answer_is_cut_at_max_answer_bytes_and_the_model_stopped() {
    // No pacing: the model streams as fast as it is read.
    let model = mock_llm(0, 0);
    let settings = [
        ("PARLOR_AGENT__MAX_ANSWER_BYTES", "2000"),
        // The model is asked for no limit of its own: only the cap can stop it.
        ("PARLOR_LLM__MAX_TOKENS", "0"),
    ];
    let server = serve(&model, &settings);
    let mut client = Client::connect(&server).await;
    let session_id = client.session_id;

    let text = "go on [mock:endless]";
    let turn = client.chat(text).await;
    assert_eq!(turn.ending, "length");
    // The mock's answer, then `more ` without end: its first 2000 bytes.
    let endless = expected_answer(text, 1) + &"more ".repeat(400);
    assert_eq!(turn.answer, endless[..2000]);

    wait_for_mock(&model, "the endless stream cancelled", |stats| {
        stats["streams_active"] == 0 && stats["streams_cancelled"].as_u64() >= Some(1)
    })
    .await;

    // The next turn works, and the cut answer is the conversation's history.
    let next = client.chat("and now?").await;
    assert_eq!(next.ending, "stop");
    assert_eq!(next.answer, expected_answer("and now?", 2));
    client.close().await;
    let url = server.ws_url(&format!("?session_id={session_id}"));
    let mut again = Client::connect_url(&url).await;
    let said: Vec<(Role, String)> = again
        .expect_history()
        .await
        .into_iter()
        .map(|entry| (entry.role, entry.content))
        .collect();
    assert_eq!(
        said,
        [
            (Role::User, text.to_owned()),
            (Role::Assistant, endless[..2000].to_owned()),
            (Role::User, "and now?".to_owned()),
            (Role::Assistant, expected_answer("and now?", 2)),
        ]
    );
}

#[tokio::test]
async fn the_models_token_limit_ends_the_turn_with_length() {
    let model = mock_llm(0, 0);
    let server = serve(&model, &[("PARLOR_LLM__MAX_TOKENS", "3")]);
    let mut client = Client::connect(&server).await;

    let turn = client.chat("hello there").await;
    assert_eq!(turn.ending, "length");
    // The mock's token is a word with its trailing space.
    let answer = expected_answer("hello there", 1);
    let first_three: String = answer.split_inclusive(' ').take(3).collect();
    assert_eq!(turn.answer, first_three);
    assert_eq!(first_three, "You said: \"hello ");
}
