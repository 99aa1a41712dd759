//! A model that sends one endless server-sent event: parlor's model client gives up
//! with `Upstream` once the event passes its bound (1 MiB), in time linear in what
//! it read, and hangs up instead of reading the rest.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream;
use parlor::agent::AgentError;
use parlor::agent::llm::LlmClient;
use parlor::config::{LlmConfig, ModelEndpoint};
use parlor::conversation::ChatMessage;

/// The line the model means to send: 300 MB.
const LINE_BYTES: u64 = 300_000_000;
const PIECE_BYTES: usize = 64 * 1024;

/// A model server whose answer is `data: {"choices":...` followed by
/// [`LINE_BYTES`] of text with no line end; counts the bytes it got to send.
fn start_endless_line_model(sent: Arc<AtomicU64>) -> (String, actix_web::dev::ServerHandle) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = HttpServer::new(move || {
        let sent = sent.clone();
        App::new().route(
            "/v1/chat/completions",
            web::post().to(move || {
                let sent = sent.clone();
                async move {
                    let opening = Bytes::from_static(
                        b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"",
                    );
                    let piece = Bytes::from(vec![b'x'; PIECE_BYTES]);
                    let pieces = (LINE_BYTES / PIECE_BYTES as u64) as usize;
                    let body = stream::once(async move { opening })
                        .chain(stream::iter(std::iter::repeat_n(piece, pieces)))
                        .map(move |bytes| {
                            sent.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                            Ok::<_, std::convert::Infallible>(bytes)
                        });
                    HttpResponse::Ok()
                        .content_type("text/event-stream")
                        .streaming(body)
                }
            }),
        )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    (format!("http://{addr}/v1"), handle)
}

#[actix_web::test]
async fn an_endless_event_is_an_upstream_error_not_a_memory_leak() {
    let sent = Arc::new(AtomicU64::new(0));
    let (base_url, server) = start_endless_line_model(sent.clone());
    let config = LlmConfig {
        base_url: ModelEndpoint::OpenAiCompatible(base_url.parse().unwrap()),
        model: "test-model".into(),
        ..LlmConfig::default()
    };
    let client = LlmClient::new(&config).unwrap();

    let mut stream = client.stream_chat(vec![ChatMessage::user("talk")]);
    let first = tokio::time::timeout(Duration::from_secs(15), stream.next())
        .await
        .expect("the client gives up in time");
    match first {
        Some(Err(AgentError::Upstream(message))) => {
            assert!(message.contains("longer than"), "{message}")
        }
        other => panic!("expected an upstream error, got {other:?}"),
    }
    assert!(stream.next().await.is_none(), "the error ends the stream");
    drop(stream);
    // It read a little past the bound, not the 300 MB on offer.
    let sent = sent.load(Ordering::Relaxed);
    assert!(sent < 64 << 20, "{} MiB sent", sent >> 20);
    server.stop(false).await;
}
