//! The actors of parlor, one per file with its messages beside it.
//!
//! Gateway side: [`session::SessionActor`] (one per chat), [`registry::SessionRegistry`]
//! (ids → addresses), [`broker::BrokerActor`] (publishes questions, routes answers).
//! Worker side: [`agent_pool::AgentPool`] supervising [`agent_worker::AgentWorker`]s.

pub mod agent_pool;
pub mod agent_worker;
pub mod broker;
pub mod handover;
mod idle_sessions;
pub mod registry;
pub mod session;
pub mod stats;
#[cfg(test)]
pub(crate) mod testing;
