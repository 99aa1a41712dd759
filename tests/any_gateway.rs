//! Several gateways sharing sessions (docs/storage.md, "Several gateways"): two
//! real gateway processes and a worker on RabbitMQ, storing in one PostgreSQL
//! database. A session attached at one gateway is taken from the other, and a turn
//! whose gateway died is answered at the other.

mod common;

use common::deployment::{Deployment, mid_answer};
use common::postgres::TestDatabase;
use common::proxy::CuttableProxy;
use common::{Client, Process, expected_answer, mock_llm};
use parlor::conversation::Role;
use parlor::protocol::HistoryEntry;
use uuid::Uuid;

/// 1008, "policy violation": the session is now served elsewhere.
const TAKEN_OVER: u16 = 1008;

/// A gateway pair, a worker and the model, all storing in `database`.
struct Cluster {
    deployment: Deployment,
    _cleanup: common::rabbitmq::Cleanup,
    _worker: Process,
    _database: TestDatabase,
}

impl Cluster {
    async fn start(token_ms: u64) -> Cluster {
        let database = TestDatabase::create().await;
        let storage = database.url();
        let (deployment, cleanup) =
            Deployment::new(mock_llm(0, token_ms), &[("PARLOR_STORAGE__URL", &storage)]);
        let worker = deployment.worker();
        Cluster {
            deployment,
            _cleanup: cleanup,
            _worker: worker,
            _database: database,
        }
    }

    fn gateway(&self) -> Process {
        self.deployment.gateway()
    }
}

async fn attach(gateway: &Process, session_id: Uuid) -> Client {
    let url = gateway.ws_url(&format!("?session_id={session_id}"));
    let client = Client::connect_url(&url).await;
    assert_eq!(client.session_id, session_id, "the same session");
    client
}

fn said(history: &[HistoryEntry]) -> Vec<(Role, String)> {
    (history.iter())
        .map(|entry| (entry.role, entry.content.clone()))
        .collect()
}

fn user(text: &str) -> (Role, String) {
    (Role::User, text.to_owned())
}

fn assistant(text: String) -> (Role, String) {
    (Role::Assistant, text)
}

/// A question long enough that its answer takes a while.
fn long_question(word: &str) -> String {
    vec![word; 30].join(" ")
}

#[tokio::test]
async fn attaching_at_another_gateway_takes_the_session_over() {
    let cluster = Cluster::start(20).await;
    let (first, second) = (cluster.gateway(), cluster.gateway());

    let mut at_first = Client::connect(&first).await;
    let session_id = at_first.session_id;
    assert_eq!(at_first.chat("one").await.answer, expected_answer("one", 1));
    // The second turn is under way at the first gateway when the user opens the
    // conversation at the second.
    let two = long_question("two");
    let running = mid_answer(&mut at_first, &two).await;

    let mut at_second = attach(&second, session_id).await;
    assert_eq!(at_first.close_code().await, Some(TAKEN_OVER));
    let history = at_second.expect_history().await;
    assert_eq!(
        said(&history),
        [
            user("one"),
            assistant(expected_answer("one", 1)),
            user(&two)
        ]
    );
    assert_eq!(history[2].turn_id, Some(running));
    // The turn goes on here, from its start.
    assert_eq!(at_second.expect_accepted().await, running);
    let turn = at_second.read_turn(running).await;
    assert_eq!(turn.answer, expected_answer(&two, 2));
    assert_eq!(
        at_second.chat("three").await.answer,
        expected_answer("three", 3)
    );

    // `POST /chat` at the first gateway takes it back, with all of it.
    let body = serde_json::json!({
        "sessionId": session_id,
        "messages": [{"role": "user", "content": "four"}],
    });
    let (status, events, _) = common::sse::post_chat(&first.http("/chat"), body).await;
    assert_eq!(status, 200);
    let answer: String = (events.iter())
        .filter(|event| event.name.is_none())
        .map(|event| event.data["message"].as_str().unwrap())
        .collect();
    assert_eq!(answer, expected_answer("four", 4));
    assert_eq!(at_second.close_code().await, Some(TAKEN_OVER));

    let mut again = attach(&second, session_id).await;
    let history = again.expect_history().await;
    assert_eq!(history.len(), 8, "{history:?}");
    assert_eq!(
        said(&history)[6..],
        [user("four"), assistant(expected_answer("four", 4))]
    );
}

#[tokio::test]
async fn a_turn_whose_gateway_died_is_answered_at_another() {
    let cluster = Cluster::start(20).await;
    let (mut doomed, survivor) = (cluster.gateway(), cluster.gateway());

    let mut client = Client::connect(&doomed).await;
    let session_id = client.session_id;
    assert_eq!(client.chat("one").await.answer, expected_answer("one", 1));
    let question = long_question("two");
    let running = mid_answer(&mut client, &question).await;
    // The question is stored within moments of its acceptance (docs/storage.md).
    cluster._database.wait_for_question(running).await;
    doomed.kill_hard();

    let mut client = attach(&survivor, session_id).await;
    let history = client.expect_history().await;
    assert_eq!(
        said(&history),
        [
            user("one"),
            assistant(expected_answer("one", 1)),
            user(&question)
        ]
    );
    assert_eq!(client.expect_accepted().await, running);
    let turn = client.read_turn(running).await;
    assert_eq!(turn.answer, expected_answer(&question, 2));
    assert_eq!(turn.ending, "stop");
    // The conversation goes on, remembering all of it.
    assert_eq!(
        client.chat("three").await.answer,
        expected_answer("three", 3)
    );
    client.close().await;

    let mut client = attach(&survivor, session_id).await;
    let history = client.expect_history().await;
    assert_eq!(
        said(&history)[2..4],
        [user(&question), assistant(expected_answer(&question, 2))]
    );
    // No turn runs again once answered.
    client.idle_for(std::time::Duration::from_millis(300)).await;
    // The answer that found no gateway (its text, its session) is not dumped into
    // the worker's log, as the RabbitMQ client would.
    let worker_log = cluster._worker.log();
    assert!(
        !worker_log.contains("returned us a message"),
        "{worker_log}"
    );
}

#[tokio::test]
async fn a_question_a_dead_gateway_accepted_is_answered() {
    // No worker answers at first: the question waits in RabbitMQ when its gateway
    // dies.
    let database = TestDatabase::create().await;
    let (deployment, _cleanup) =
        Deployment::new(mock_llm(0, 0), &[("PARLOR_STORAGE__URL", &database.url())]);
    let mut doomed = deployment.gateway();
    let survivor = deployment.gateway();

    let mut client = Client::connect(&doomed).await;
    let session_id = client.session_id;
    let waiting = client.chat_accepted("anyone there?").await;
    database.wait_for_question(waiting).await;
    doomed.kill_hard();

    let _worker = deployment.worker();
    let mut client = attach(&survivor, session_id).await;
    assert_eq!(
        said(&client.expect_history().await),
        [user("anyone there?")]
    );
    assert_eq!(client.expect_accepted().await, waiting);
    let turn = client.read_turn(waiting).await;
    assert_eq!(turn.answer, expected_answer("anyone there?", 1));
}

#[tokio::test]
async fn a_question_its_dead_gateway_never_stored_is_answered() {
    let database = TestDatabase::create().await;
    let (deployment, _cleanup) =
        Deployment::new(mock_llm(0, 0), &[("PARLOR_STORAGE__URL", &database.url())]);
    // The doomed gateway reaches the database through a proxy the test freezes:
    // the question it accepts is never stored (the write hangs, so the gateway
    // does not know the database is gone, and accepts it).
    let proxy = CuttableProxy::start("127.0.0.1:5432");
    let through_proxy = format!(
        "postgres://postgres@127.0.0.1:{}/{}",
        proxy.port, database.name
    );
    let mut doomed = deployment.gateway_with(&[("PARLOR_STORAGE__URL", through_proxy)]);
    let survivor = deployment.gateway();

    let mut client = Client::connect(&doomed).await;
    let session_id = client.session_id;
    proxy.freeze();
    let lost = client.chat_accepted("is this kept?").await;
    // `accepted` comes as the question is handed to RabbitMQ; the gateway dies once
    // RabbitMQ holds it (docs/storage.md says what a kill just before loses).
    common::rabbitmq::wait_for_message_count(&deployment.queue, 1).await;
    doomed.kill_hard();

    // The worker's answer finds no gateway; it hands the question back, and the
    // surviving gateway stores it.
    let _worker = deployment.worker();
    database.wait_for_question(lost).await;
    assert!(
        survivor
            .log()
            .contains("stored the question of a gateway that went away"),
        "{}",
        survivor.log()
    );
    let mut client = attach(&survivor, session_id).await;
    assert_eq!(
        said(&client.expect_history().await),
        [user("is this kept?")]
    );
    assert_eq!(client.expect_accepted().await, lost);
    let turn = client.read_turn(lost).await;
    assert_eq!(turn.answer, expected_answer("is this kept?", 1));
}
