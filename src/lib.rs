//! parlor: a streaming LLM chat backend built as an actor system.
//!
//! Imports point one way: `cli`/`startup` wire things up → `http` (routes) →
//! `actors` (sessions, registry, broker actor, agent pool) → `broker` (the queue
//! engines) and `agent` (knowledge agent, LLM client, mock model).

pub mod agent;
pub mod config;
pub mod conversation;
