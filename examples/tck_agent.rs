//! The agent the A2A conformance suite (the TCK) tests parlor's A2A server with
//! (docs/conformance.md). It serves parlor's A2A JSON-RPC binding with an
//! executor that follows the suite's scenarios: what it does with a message is
//! chosen by the prefix of the message's `messageId`, as the suite's scenario
//! files describe.
//!
//! ```text
//! cargo run --release --example tck_agent -- 127.0.0.1:9999
//! ```

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use a2a::{
    AgentCapabilities, AgentCard, AgentInterface, AgentSkill, Artifact, Message, Part, TaskState,
};
use actix_web::{App, HttpServer};
use futures_util::future::BoxFuture;
use parlor::a2a::{A2aError, A2aServer, Executor, Limits, TaskUpdater, Work};
use parlor::auth::Authenticator;
use parlor::http::a2a::{A2aState, routes};

/// The media types this agent reads; a part of another is refused.
const READS: &[&str] = &["text/plain", "text"];

/// How long the "long-running" scenario works before it completes: twice the
/// suite's streaming timeout, so a client has to re-attach to see the end.
const LONG_RUNNING: Duration = Duration::from_secs(4);

struct ScenarioExecutor;

impl Executor for ScenarioExecutor {
    fn check(&self, message: &Message) -> Result<(), A2aError> {
        let unread = message.parts.iter().find_map(|part| {
            let media_type = part.media_type.as_deref()?;
            (!READS.contains(&media_type)).then_some(media_type)
        });
        match unread {
            Some(media_type) => Err(A2aError::ContentTypeNotSupported(format!(
                "this agent does not read {media_type}; it reads {}",
                READS.join(", ")
            ))),
            None => Ok(()),
        }
    }

    fn execute(&self, work: Work, updater: TaskUpdater) -> BoxFuture<'static, ()> {
        Box::pin(play(work.message.message_id.clone(), updater))
    }
}

/// Plays the scenario `message_id` names. Longer prefixes come before the
/// shorter ones they start with (`tck-artifact-file-url`, `tck-artifact-file`).
async fn play(message_id: String, updater: TaskUpdater) {
    let is = |prefix: &str| message_id.starts_with(prefix);
    let text = |text: &str| updater.agent_message(vec![Part::text(text)]);
    let file = || {
        Part::raw(b"tck".to_vec())
            .with_media_type("text/plain")
            .with_filename("output.txt")
    };
    if is("tck-stream-artifact-chunked") {
        updater.working(None);
        updater.artifact(artifact("chunked", Part::text("chunk-1 ")), false, false);
        updater.artifact(artifact("chunked", Part::text("chunk-2")), true, true);
        updater.complete(None);
    } else if is("tck-stream-artifact-text") {
        stream_one(&updater, Part::text("Streamed text content"));
    } else if is("tck-stream-artifact-file") {
        stream_one(&updater, file());
    } else if is("tck-stream-ordering-001") {
        stream_one(&updater, Part::text("Ordered output"));
    } else if is("tck-stream-001") {
        stream_one(&updater, Part::text("Stream hello from TCK"));
    } else if is("tck-stream-002") {
        updater.complete(None);
    } else if is("tck-stream-003") {
        stream_one(&updater, Part::text("Stream task lifecycle"));
    } else if is("test-resubscribe-message-id") {
        updater.working(None);
        tokio::time::sleep(LONG_RUNNING).await;
        updater.complete(None);
    } else if is("tck-artifact-file-url") {
        let part = Part::url("https://example.com/output.txt")
            .with_media_type("text/plain")
            .with_filename("output.txt");
        complete_with(&updater, part);
    } else if is("tck-artifact-file") {
        complete_with(&updater, file());
    } else if is("tck-artifact-text") {
        complete_with(&updater, Part::text("Generated text content"));
    } else if is("tck-artifact-data") {
        complete_with(
            &updater,
            Part::data(serde_json::json!({"key": "value", "count": 42})),
        );
    } else if is("tck-message-response") {
        updater.reply(text("Direct message response"));
    } else if is("tck-input-required") {
        updater.input_required(None);
    } else if is("tck-reject-task") {
        updater.set_status(TaskState::Rejected, Some(text("rejected")));
    } else if is("tck-complete-task") {
        updater.complete(Some(text("Hello from TCK")));
    } else {
        updater.complete(Some(text(&format!(
            "Unhandled messageId prefix: {message_id}"
        ))));
    }
}

/// Working, one artifact of `part`, completed.
fn stream_one(updater: &TaskUpdater, part: Part) {
    updater.working(None);
    updater.artifact(artifact("output", part), false, true);
    updater.complete(None);
}

/// One artifact of `part`, completed.
fn complete_with(updater: &TaskUpdater, part: Part) {
    updater.artifact(artifact("output", part), false, true);
    updater.complete(None);
}

fn artifact(id: &str, part: Part) -> Artifact {
    Artifact {
        artifact_id: id.into(),
        name: Some(id.into()),
        description: None,
        parts: vec![part],
        metadata: None,
        extensions: None,
    }
}

fn card() -> AgentCard {
    AgentCard {
        name: "parlor TCK agent".into(),
        description: "Plays the A2A conformance suite's scenarios on parlor's A2A server.".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        supported_interfaces: vec![AgentInterface::new("/", "JSONRPC")],
        capabilities: AgentCapabilities {
            streaming: Some(true),
            push_notifications: Some(false),
            extensions: None,
            extended_agent_card: Some(false),
        },
        default_input_modes: vec!["text/plain".into()],
        default_output_modes: vec!["text/plain".into()],
        skills: vec![AgentSkill {
            id: "tck".into(),
            name: "TCK scenarios".into(),
            description: "Follows the conformance suite's scenario for each messageId prefix."
                .into(),
            tags: vec!["tck".into()],
            examples: None,
            input_modes: None,
            output_modes: None,
            security_requirements: None,
        }],
        provider: None,
        documentation_url: None,
        icon_url: None,
        security_schemes: None,
        security_requirements: None,
        signatures: None,
    }
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9999".into());
    let listener = TcpListener::bind(&address)?;
    let limits = Limits {
        max_running_tasks: 1024,
    };
    let server = Arc::new(A2aServer::new(Arc::new(ScenarioExecutor), limits));
    let state = A2aState::new(server, card(), 65_536, Arc::new(Authenticator::Off));
    // On stderr, as parlor logs it: the tests read the address there.
    eprintln!("TCK agent listening on http://{}", listener.local_addr()?);
    HttpServer::new(move || {
        let state = state.clone();
        App::new().configure(move |config| routes(config, state))
    })
    .listen(listener)?
    .run()
    .await
}
