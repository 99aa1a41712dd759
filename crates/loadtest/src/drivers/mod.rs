//! The wire clients, one per mode: each opens a session and runs its turns,
//! telling a [`TurnProbe`] what arrives. They speak only the wire protocol, with
//! serde types of their own, so they check the contract independently of the
//! server's code.
//!
//! Turns ask with no tools (`"tools":[]`): the load tester measures the chat
//! pipeline, and only the model's own answers can be checked word for word (an
//! answer made from search results depends on the documents). Tool frames that
//! come anyway are skipped.

mod chat_sse;
mod openai;
mod sse_events;
mod ws;

use std::borrow::Cow;
use std::fmt::Display;

use self::sse_events::EventReader;
use super::options::{Mode, Plan};
use super::probe::TurnProbe;

/// Why a turn (or opening a session) failed: a short code that the report counts
/// (`connect`, `closed`, `timeout`, `emfile`, `protocol`, `http_503`, an error
/// frame's code...), and a description of the first case.
#[derive(Debug)]
pub struct TurnFailure {
    pub code: Cow<'static, str>,
    pub detail: String,
}

impl TurnFailure {
    pub fn new(code: impl Into<Cow<'static, str>>, detail: impl Display) -> Self {
        TurnFailure {
            code: code.into(),
            detail: detail.to_string(),
        }
    }
}

/// The error code of an I/O error: `emfile` when the open-file limit was reached,
/// else `otherwise`.
fn io_code(error: &std::io::Error, otherwise: &'static str) -> &'static str {
    match error.raw_os_error() {
        Some(libc::EMFILE) | Some(libc::ENFILE) => "emfile",
        _ => otherwise,
    }
}

/// The failure of an HTTP request.
fn http_failure(error: reqwest::Error) -> TurnFailure {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && io_code(io, "") == "emfile"
        {
            return TurnFailure::new("emfile", format!("{error:#}"));
        }
        source = cause.source();
    }
    let code = if error.is_connect() {
        "connect"
    } else if error.is_timeout() {
        "timeout"
    } else {
        "closed"
    };
    TurnFailure::new(code, display_chain(&error))
}

fn display_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn http_status_failure(status: reqwest::StatusCode, body: &str) -> TurnFailure {
    let body: String = body.chars().take(200).collect();
    TurnFailure::new(format!("http_{}", status.as_u16()), body)
}

/// What reading the events received so far found: `Some` once the turn ended.
type EventsRead = Result<Option<Result<(), TurnFailure>>, TurnFailure>;

/// Posts the JSON `body`, then feeds the answer's server-sent events through
/// `events` to `read` until it says the turn ended; a stream that stops first fails
/// with `unended`. The body is read to its end, so the connection goes back to
/// the pool.
async fn post_for_events(
    client: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
    events: &mut EventReader,
    unended: &'static str,
    mut read: impl FnMut(&mut EventReader) -> EventsRead,
) -> Result<(), TurnFailure> {
    let mut response = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .map_err(http_failure)?;
    if !response.status().is_success() {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        return Err(http_status_failure(status, &body));
    }
    events.clear();
    let ended = loop {
        let Some(bytes) = response.chunk().await.map_err(http_failure)? else {
            break Err(TurnFailure::new("closed", unended));
        };
        events
            .push(&bytes)
            .map_err(|_| TurnFailure::new("protocol", "an endless event"))?;
        if let Some(ended) = read(events)? {
            break ended;
        }
    };
    while let Ok(Some(_)) = response.chunk().await {}
    ended
}

/// What every session of a run shares: the target and (for HTTP modes) a client
/// with its connection pool.
pub enum Driver {
    Ws {
        url: String,
        token: Option<String>,
    },
    Sse {
        client: reqwest::Client,
        url: String,
    },
    Openai {
        client: reqwest::Client,
        url: String,
        model: String,
    },
}

/// One open session.
pub enum Session {
    Ws(Box<ws::WsSession>),
    Sse(chat_sse::ChatSession),
    Openai(openai::OpenaiSession),
}

impl Driver {
    pub fn new(plan: &Plan) -> anyhow::Result<Driver> {
        let http = || -> anyhow::Result<reqwest::Client> {
            let mut headers = reqwest::header::HeaderMap::new();
            if let Some(token) = &plan.token {
                let mut value = reqwest::header::HeaderValue::try_from(format!("Bearer {token}"))?;
                value.set_sensitive(true);
                headers.insert(reqwest::header::AUTHORIZATION, value);
            }
            Ok(reqwest::Client::builder()
                .connect_timeout(plan.turn_timeout)
                .tcp_nodelay(true)
                .pool_max_idle_per_host(usize::MAX)
                .default_headers(headers)
                .build()?)
        };
        Ok(match plan.mode {
            Mode::Ws => Driver::Ws {
                url: plan.url.clone(),
                token: plan.token.clone(),
            },
            Mode::Sse => Driver::Sse {
                client: http()?,
                url: plan.url.clone(),
            },
            Mode::Openai => Driver::Openai {
                client: http()?,
                url: format!("{}/chat/completions", plan.url.trim_end_matches('/')),
                model: plan.model.clone(),
            },
        })
    }

    /// Opens a session: a WebSocket connection (read up to its `session` frame), or
    /// nothing yet over HTTP, whose connections come from the pool turn by turn.
    pub async fn open(&self) -> Result<Session, TurnFailure> {
        Ok(match self {
            Driver::Ws { url, token } => {
                Session::Ws(Box::new(ws::WsSession::open(url, token.as_deref()).await?))
            }
            Driver::Sse { .. } => Session::Sse(chat_sse::ChatSession::default()),
            Driver::Openai { .. } => Session::Openai(openai::OpenaiSession::default()),
        })
    }
}

impl Session {
    /// Sends `text` as the session's next message and reads its answer to the end.
    pub async fn turn(
        &mut self,
        driver: &Driver,
        text: &str,
        probe: &mut TurnProbe,
    ) -> Result<(), TurnFailure> {
        match (self, driver) {
            (Session::Ws(session), _) => session.turn(text, probe).await,
            (Session::Sse(session), Driver::Sse { client, url }) => {
                session.turn(client, url, text, probe).await
            }
            (Session::Openai(session), Driver::Openai { client, url, model }) => {
                session.turn(client, url, model, text, probe).await
            }
            _ => Err(TurnFailure::new("internal", "a session of another mode")),
        }
    }

    /// Closes the session's connection politely (WebSocket close frame).
    pub async fn close(self) {
        if let Session::Ws(session) = self {
            session.close().await;
        }
    }
}
