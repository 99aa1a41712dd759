//! parlor: a streaming LLM chat backend built as an actor system.
//!
//! Imports point one way: `cli`/`startup` wire things up → `http` (routes) →
//! `actors` (sessions, registry, broker actor, agent pool) → `broker` (the queue
//! engines), `agent` (knowledge agent, LLM client) and `storage` (conversations
//! in SQLite, PostgreSQL or memory; docs/storage.md).
//!
//! The tools live in crates of their own in `crates/`: the mock model
//! (`parlor-mock-llm`, also the demo model `serve` starts when no model URL is
//! configured) and the load tester (`parlor-loadtest`). Neither depends on this
//! crate; `cli`/`startup` only dispatch `parlor mock-llm` and `parlor loadtest`
//! to them.

pub mod a2a;
pub mod actors;
pub mod admin_view;
pub mod agent;
pub mod auth;
pub mod broker;
pub mod cli;
pub mod config;
pub mod conversation;
pub mod counters;
pub mod draining;
pub mod http;
pub mod memory;
pub mod net;
pub mod open_files;
pub mod protocol;
pub mod shutdown;
pub mod startup;
pub mod storage;
pub mod telemetry;
