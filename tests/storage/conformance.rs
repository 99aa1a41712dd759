//! What every storage engine must do, the same way: one suite, run against each.

use std::sync::Arc;
use std::time::Duration;

use parlor::storage::{
    SessionRecord, Storage, StorageError, StoredMessage, StoredRole, StoredSession, Timestamp,
    TurnOutcome, Write,
};
use uuid::Uuid;

/// The longest any one check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs every check against `storage`, which must hold no session yet (the purge
/// check counts what it deletes).
pub async fn run(storage: Arc<dyn Storage>) {
    let storage = &*storage;
    within(purge_deletes_sessions_not_updated_since_the_cutoff(storage)).await;
    within(messages_load_in_order_within_the_latest_window(storage)).await;
    within(many_quick_messages_keep_their_order(storage)).await;
    within(a_session_is_stored_as_created_and_creating_again_changes_nothing(storage)).await;
    within(appending_bumps_the_updated_time(storage)).await;
    within(sessions_keep_their_own_messages(storage)).await;
    within(content_comes_back_exactly(storage)).await;
    within(claim_answers_the_previous_holder(storage)).await;
    within(concurrent_claims_each_see_the_one_before(storage)).await;
    within(concurrent_appends_are_all_kept(storage)).await;
    within(an_unknown_session_is_not_found(storage)).await;
    within(a_batch_is_applied_in_order(storage)).await;
    within(a_big_mixed_batch_keeps_each_conversation_in_order(storage)).await;
    within(a_batch_stored_again_stores_its_messages_once(storage)).await;
    within(questions_are_pending_until_their_turn_ends(storage)).await;
    within(an_adopted_question_is_pending_once(storage)).await;
    within(async { storage.ping().await.unwrap() }).await;
}

async fn a_batch_is_applied_in_order(storage: &dyn Storage) {
    let (id, turn) = (Uuid::new_v4(), Uuid::new_v4());
    let record = SessionRecord {
        id,
        user_id: Some("batcher".into()),
        gateway: None,
    };
    let batch = [
        Write::Session(record),
        Write::Message(id, StoredMessage::user(turn, "q")),
        Write::Message(id, StoredMessage::assistant(turn, "a")),
    ];
    storage.apply(&batch).await.unwrap();
    let contents = |session: StoredSession| -> Vec<String> {
        session.messages.into_iter().map(|m| m.content).collect()
    };
    assert_eq!(contents(load(storage, id, 10).await), ["q", "a"]);

    // A write for a session that does not exist fails the batch; an engine with
    // transactions stores none of it.
    let unknown = Uuid::new_v4();
    let batch = [
        Write::Message(id, StoredMessage::user(turn, "lost?")),
        Write::Message(unknown, StoredMessage::user(turn, "x")),
    ];
    assert!(matches!(
        storage.apply(&batch).await,
        Err(StorageError::NotFound)
    ));
    if storage.kind() != "memory" {
        assert_eq!(contents(load(storage, id, 10).await), ["q", "a"]);
    }
}

/// Engines may store a batch in statements of many rows (sessions, then messages,
/// then outcomes); what each conversation holds, and its order, must not show it.
async fn a_big_mixed_batch_keeps_each_conversation_in_order(storage: &dyn Storage) {
    let sessions: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
    let mut batch = Vec::new();
    let mut expected = vec![Vec::new(); sessions.len()];
    // 3 × 300 turns: more rows than one statement of any engine takes.
    for turn in 0..300 {
        for (index, &id) in sessions.iter().enumerate() {
            if turn == index * 100 {
                batch.push(Write::Session(SessionRecord {
                    id,
                    user_id: None,
                    gateway: None,
                }));
            }
            if turn < index * 100 {
                continue;
            }
            let turn_id = Uuid::new_v4();
            batch.push(Write::Message(
                id,
                StoredMessage::user(turn_id, format!("q{turn}")),
            ));
            if turn % 7 == 0 {
                batch.push(Write::TurnEnd {
                    session_id: id,
                    turn_id,
                    outcome: TurnOutcome::Dropped,
                });
                continue;
            }
            batch.push(Write::Message(
                id,
                StoredMessage::assistant(turn_id, format!("a{turn}")),
            ));
            expected[index].extend([format!("q{turn}"), format!("a{turn}")]);
        }
    }
    storage.apply(&batch).await.unwrap();
    for (index, &id) in sessions.iter().enumerate() {
        assert_eq!(contents(&load(storage, id, 1000).await), expected[index]);
    }
}

/// A connection that drops during a commit leaves the writer not knowing whether its
/// batch went through, so it stores the batch again: that must not store any of its
/// messages twice. The same words written anew are a message of their own.
async fn a_batch_stored_again_stores_its_messages_once(storage: &dyn Storage) {
    let (id, turn) = (Uuid::new_v4(), Uuid::new_v4());
    let batch = [
        Write::Session(SessionRecord {
            id,
            user_id: None,
            gateway: None,
        }),
        Write::Message(id, StoredMessage::user(turn, "q")),
        Write::Message(id, StoredMessage::assistant(turn, "a")),
    ];
    storage.apply(&batch).await.unwrap();
    storage.apply(&batch).await.unwrap();
    assert_eq!(contents(&load(storage, id, 10).await), ["q", "a"]);

    let again = Uuid::new_v4();
    let batch = [
        Write::Message(id, StoredMessage::user(again, "q")),
        Write::Message(id, StoredMessage::assistant(again, "a")),
    ];
    storage.apply(&batch).await.unwrap();
    assert_eq!(contents(&load(storage, id, 10).await), ["q", "a", "q", "a"]);
}

async fn questions_are_pending_until_their_turn_ends(storage: &dyn Storage) {
    let id = new_session(storage).await;
    let [answered, dropped, pending] = [Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4()];
    // An answer ends its turn without an outcome of its own.
    let batch = [
        Write::Message(id, StoredMessage::user(answered, "answered")),
        Write::Message(id, StoredMessage::user(dropped, "dropped")),
        Write::Message(id, StoredMessage::assistant(answered, "the answer")),
        Write::TurnEnd {
            session_id: id,
            turn_id: dropped,
            outcome: TurnOutcome::Dropped,
        },
        Write::Message(id, StoredMessage::user(pending, "still running")),
    ];
    storage.apply(&batch).await.unwrap();
    let session = load(storage, id, 10).await;
    let seen: Vec<(&str, bool)> = (session.messages.iter())
        .map(|message| (message.content.as_str(), message.pending))
        .collect();
    assert_eq!(
        seen,
        [
            ("answered", false),
            ("the answer", false),
            ("still running", true)
        ],
        "a dropped question is not loaded; an answer is never pending"
    );
    // The window counts loaded messages only.
    assert_eq!(
        contents(&load(storage, id, 2).await),
        ["the answer", "still running"]
    );

    storage
        .end_turn(id, pending, TurnOutcome::Kept)
        .await
        .unwrap();
    let session = load(storage, id, 10).await;
    assert!(session.messages.iter().all(|message| !message.pending));
    // Ending the turn of a question that is not there changes nothing.
    storage
        .end_turn(Uuid::new_v4(), pending, TurnOutcome::Dropped)
        .await
        .unwrap();
    assert_eq!(load(storage, id, 10).await, session);
}

async fn an_adopted_question_is_pending_once(storage: &dyn Storage) {
    // Its gateway went away before even the session was stored.
    let (id, turn) = (Uuid::new_v4(), Uuid::new_v4());
    storage
        .adopt_question(id, turn, "orphan".into())
        .await
        .unwrap();
    storage
        .adopt_question(id, turn, "orphan".into())
        .await
        .unwrap();
    let session = load(storage, id, 10).await;
    assert_eq!(session.record.user_id, None);
    assert_eq!(session.record.gateway, None);
    assert_eq!(contents(&session), ["orphan"], "adopted once");
    assert!(session.messages[0].pending);

    // A question its gateway did store is left as it is.
    let known = new_session(storage).await;
    storage
        .append_message(known, StoredMessage::user(turn, "stored"))
        .await
        .unwrap();
    storage
        .end_turn(known, turn, TurnOutcome::Kept)
        .await
        .unwrap();
    storage
        .adopt_question(known, turn, "stored".into())
        .await
        .unwrap();
    let session = load(storage, known, 10).await;
    assert_eq!(contents(&session), ["stored"]);
    assert!(!session.messages[0].pending);
}

async fn within(check: impl Future<Output = ()>) {
    tokio::time::timeout(CHECK_TIMEOUT, check)
        .await
        .expect("a storage check took too long");
}

/// Creates a session with no user and no holder.
async fn new_session(storage: &dyn Storage) -> Uuid {
    let id = Uuid::new_v4();
    storage
        .create_session(SessionRecord {
            id,
            user_id: None,
            gateway: None,
        })
        .await
        .unwrap();
    id
}

async fn load(storage: &dyn Storage, id: Uuid, latest: usize) -> StoredSession {
    storage
        .load_session(id, latest)
        .await
        .unwrap()
        .expect("the session exists")
}

fn contents(session: &StoredSession) -> Vec<&str> {
    session
        .messages
        .iter()
        .map(|message| message.content.as_str())
        .collect()
}

/// Long enough for two clock readings in milliseconds to differ.
async fn let_the_clock_move() {
    tokio::time::sleep(Duration::from_millis(20)).await;
}

async fn purge_deletes_sessions_not_updated_since_the_cutoff(storage: &dyn Storage) {
    let old = new_session(storage).await;
    let turn = Uuid::new_v4();
    storage
        .append_message(old, StoredMessage::user(turn, "old question"))
        .await
        .unwrap();
    storage
        .append_message(old, StoredMessage::assistant(turn, "old answer"))
        .await
        .unwrap();
    let old_updated = load(storage, old, 0).await.updated;
    let_the_clock_move().await;
    let recent = new_session(storage).await;
    let recent_updated = load(storage, recent, 0).await.updated;
    assert!(old_updated < recent_updated);

    assert_eq!(
        storage.purge_older_than(old_updated).await.unwrap(),
        0,
        "only sessions updated strictly before the cutoff go"
    );
    assert_eq!(storage.purge_older_than(recent_updated).await.unwrap(), 1);
    assert!(storage.load_session(old, 10).await.unwrap().is_none());
    assert!(storage.load_session(recent, 10).await.unwrap().is_some());

    // Its messages went with it: a session created again with the same id is empty.
    storage
        .create_session(SessionRecord {
            id: old,
            user_id: None,
            gateway: None,
        })
        .await
        .unwrap();
    assert!(load(storage, old, 10).await.messages.is_empty());
    assert_eq!(
        storage
            .purge_older_than(Timestamp::from_millis(0))
            .await
            .unwrap(),
        0
    );
}

async fn messages_load_in_order_within_the_latest_window(storage: &dyn Storage) {
    let id = new_session(storage).await;
    let (first_turn, second_turn, third_turn) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let conversation = [
        StoredMessage::user(first_turn, "u1"),
        StoredMessage::assistant(first_turn, "a1"),
        StoredMessage::user(second_turn, "u2"),
        StoredMessage::assistant(second_turn, "a2"),
        StoredMessage::user(third_turn, "u3"),
    ];
    for message in conversation.clone() {
        storage.append_message(id, message).await.unwrap();
    }

    let all = load(storage, id, 100).await;
    assert_eq!(contents(&all), ["u1", "a1", "u2", "a2", "u3"]);
    for (saved, appended) in all.messages.iter().zip(&conversation) {
        assert_eq!(saved.turn_id, appended.turn_id);
        assert_eq!(saved.role, appended.role);
        assert!(saved.created >= all.created && saved.created <= all.updated);
    }
    assert!(
        all.messages
            .windows(2)
            .all(|pair| pair[0].created <= pair[1].created)
    );

    let latest = load(storage, id, 3).await;
    assert_eq!(contents(&latest), ["u2", "a2", "u3"]);
    assert_eq!(latest.messages[0].role, StoredRole::User);
    assert_eq!(latest.messages[1].turn_id, second_turn);
    assert_eq!(contents(&load(storage, id, 5).await).len(), 5);
    let none = load(storage, id, 0).await;
    assert!(none.messages.is_empty());
    assert_eq!(none.record.id, id);
    assert_eq!(contents(&load(storage, id, usize::MAX).await).len(), 5);
}

async fn many_quick_messages_keep_their_order(storage: &dyn Storage) {
    // Many land in the same millisecond: the order must not come from the clock.
    let id = new_session(storage).await;
    let turn = Uuid::new_v4();
    for n in 0..60 {
        storage
            .append_message(id, StoredMessage::user(turn, n.to_string()))
            .await
            .unwrap();
    }
    let expected: Vec<String> = (20..60).map(|n| n.to_string()).collect();
    assert_eq!(contents(&load(storage, id, 40).await), expected);
}

async fn a_session_is_stored_as_created_and_creating_again_changes_nothing(storage: &dyn Storage) {
    let before = Timestamp::now();
    let record = SessionRecord {
        id: Uuid::new_v4(),
        user_id: Some("alice".into()),
        gateway: Some("gateway-a".into()),
    };
    storage.create_session(record.clone()).await.unwrap();
    let created = load(storage, record.id, 10).await;
    assert_eq!(created.record, record);
    assert_eq!(created.created, created.updated);
    assert!(created.created >= before && created.created <= Timestamp::now());
    assert!(created.messages.is_empty());

    let_the_clock_move().await;
    let again = SessionRecord {
        user_id: Some("mallory".into()),
        gateway: None,
        ..record.clone()
    };
    storage.create_session(again).await.unwrap();
    assert_eq!(load(storage, record.id, 10).await, created);

    let nobody = new_session(storage).await;
    let session = load(storage, nobody, 10).await;
    assert_eq!(session.record.user_id, None);
    assert_eq!(session.record.gateway, None);
}

async fn appending_bumps_the_updated_time(storage: &dyn Storage) {
    let id = new_session(storage).await;
    let fresh = load(storage, id, 0).await;
    let_the_clock_move().await;
    storage
        .append_message(id, StoredMessage::user(Uuid::new_v4(), "hello"))
        .await
        .unwrap();
    let after_one = load(storage, id, 1).await;
    assert_eq!(after_one.created, fresh.created);
    assert!(after_one.updated > fresh.updated);
    assert_eq!(after_one.updated, after_one.messages[0].created);

    let_the_clock_move().await;
    storage
        .append_message(id, StoredMessage::assistant(Uuid::new_v4(), "hi"))
        .await
        .unwrap();
    assert!(load(storage, id, 0).await.updated > after_one.updated);

    // Claiming is not conversation: it leaves the time alone.
    let before_claim = load(storage, id, 0).await.updated;
    let_the_clock_move().await;
    storage.claim(id, "gateway-b".into()).await.unwrap();
    assert_eq!(load(storage, id, 0).await.updated, before_claim);
}

async fn sessions_keep_their_own_messages(storage: &dyn Storage) {
    let (first, second) = (new_session(storage).await, new_session(storage).await);
    let turn = Uuid::new_v4();
    storage
        .append_message(first, StoredMessage::user(turn, "to the first"))
        .await
        .unwrap();
    storage
        .append_message(second, StoredMessage::user(turn, "to the second"))
        .await
        .unwrap();
    assert_eq!(contents(&load(storage, first, 10).await), ["to the first"]);
    assert_eq!(
        contents(&load(storage, second, 10).await),
        ["to the second"]
    );
}

async fn content_comes_back_exactly(storage: &dyn Storage) {
    let id = new_session(storage).await;
    let texts = [
        String::new(),
        "quotes ' \" and a ; DROP TABLE sessions; --".to_owned(),
        "ünïcödé, emoji 🦀, CJK 会话, RTL שלום\nnew\tlines\r\n".to_owned(),
        "x".repeat(200_000),
    ];
    for text in &texts {
        storage
            .append_message(id, StoredMessage::assistant(Uuid::new_v4(), text.clone()))
            .await
            .unwrap();
    }
    let loaded = load(storage, id, 10).await;
    let expected: Vec<&str> = texts.iter().map(String::as_str).collect();
    assert_eq!(contents(&loaded), expected);
}

async fn claim_answers_the_previous_holder(storage: &dyn Storage) {
    let id = new_session(storage).await;
    assert_eq!(storage.claim(id, "gateway-a".into()).await.unwrap(), None);
    assert_eq!(
        load(storage, id, 0).await.record.gateway.as_deref(),
        Some("gateway-a")
    );
    assert_eq!(
        storage.claim(id, "gateway-a".into()).await.unwrap(),
        None,
        "the holder claiming again takes over from nobody"
    );
    assert_eq!(
        storage.claim(id, "gateway-b".into()).await.unwrap(),
        Some("gateway-a".into())
    );
    assert_eq!(
        load(storage, id, 0).await.record.gateway.as_deref(),
        Some("gateway-b")
    );
    assert_eq!(
        storage.claim(id, "gateway-a".into()).await.unwrap(),
        Some("gateway-b".into())
    );

    let held = Uuid::new_v4();
    storage
        .create_session(SessionRecord {
            id: held,
            user_id: None,
            gateway: Some("gateway-c".into()),
        })
        .await
        .unwrap();
    assert_eq!(
        storage.claim(held, "gateway-d".into()).await.unwrap(),
        Some("gateway-c".into())
    );
}

async fn concurrent_claims_each_see_the_one_before(storage: &dyn Storage) {
    let id = new_session(storage).await;
    let gateways: Vec<String> = (0..12).map(|n| format!("gateway-{n}")).collect();
    let claims = gateways
        .iter()
        .map(|gateway| storage.claim(id, gateway.clone()));
    let previous: Vec<Option<String>> = futures_util::future::join_all(claims)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    // Claims are atomic, so they form a chain: one found nobody, and every gateway
    // but the final holder was taken over exactly once.
    assert_eq!(
        previous.iter().filter(|p| p.is_none()).count(),
        1,
        "{previous:?}"
    );
    let holder = load(storage, id, 0)
        .await
        .record
        .gateway
        .expect("someone holds it");
    let mut taken_over: Vec<String> = previous.into_iter().flatten().collect();
    taken_over.sort();
    let mut expected: Vec<String> = gateways.into_iter().filter(|g| *g != holder).collect();
    expected.sort();
    assert_eq!(taken_over, expected);
}

async fn concurrent_appends_are_all_kept(storage: &dyn Storage) {
    let id = new_session(storage).await;
    let appends = (0..20)
        .map(|n| storage.append_message(id, StoredMessage::user(Uuid::new_v4(), format!("m{n}"))));
    for result in futures_util::future::join_all(appends).await {
        result.unwrap();
    }
    let mut stored: Vec<String> = load(storage, id, 100)
        .await
        .messages
        .into_iter()
        .map(|message| message.content)
        .collect();
    stored.sort();
    let mut expected: Vec<String> = (0..20).map(|n| format!("m{n}")).collect();
    expected.sort();
    assert_eq!(stored, expected);
}

async fn an_unknown_session_is_not_found(storage: &dyn Storage) {
    let unknown = Uuid::new_v4();
    assert_eq!(storage.load_session(unknown, 10).await.unwrap(), None);
    let error = storage
        .append_message(unknown, StoredMessage::user(Uuid::new_v4(), "hello?"))
        .await
        .unwrap_err();
    assert_eq!(error, StorageError::NotFound);
    assert_eq!(
        storage
            .claim(unknown, "gateway-a".into())
            .await
            .unwrap_err(),
        StorageError::NotFound
    );
    assert_eq!(
        storage.load_session(unknown, 10).await.unwrap(),
        None,
        "a failed append creates nothing"
    );
}
