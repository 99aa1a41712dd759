//! The knowledge agent over A2A (docs/a2a.md): as the executor of an A2A
//! server's tasks ([`KnowledgeExecutor`], served by `parlor agent` and on the
//! port of `parlor serve`), with its card and its memory of conversations by
//! `contextId`; and as a client of a remote agent ([`RemoteAgent`], for
//! `agent.url`). The server's task handling is in `crate::a2a`.

pub mod card;
mod client;
pub mod contexts;
mod executor;

pub use client::RemoteAgent;
pub use executor::{ANSWER_ARTIFACT_ID, KnowledgeExecutor};
