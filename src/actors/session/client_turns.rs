//! How many turns each client runs at once, across all its sessions, so that one
//! client cannot take every worker (`session.max_turns_per_client`).
//!
//! A session runs one turn at a time, so a client running many turns at once does
//! it through many sessions. A turn that would start at once while its client is at
//! the limit is refused with `busy`; a turn queued behind its session's running turn
//! takes over that turn's place when it starts, so the count never grows by it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Who runs turns: a signed-in user, or else the address the client connects from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ClientKey {
    User(String),
    Address(IpAddr),
}

/// The running turns per client, shared by every session of a gateway.
pub struct ClientTurns {
    /// 0: no limit.
    limit: usize,
    running: Mutex<HashMap<ClientKey, usize>>,
}

/// One running turn of a client; dropping it (the turn ended) counts it out.
pub struct TurnPermit {
    turns: Arc<ClientTurns>,
    client: ClientKey,
}

/// The client already runs `limit` turns.
#[derive(Debug, PartialEq, Eq)]
pub struct AtLimit {
    pub limit: usize,
}

impl ClientTurns {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            running: Mutex::new(HashMap::new()),
        })
    }

    /// Counts in a turn of `client`, unless it runs `limit` already.
    pub fn try_start(self: &Arc<Self>, client: &ClientKey) -> Result<TurnPermit, AtLimit> {
        let mut running = self.lock();
        let count = running.entry(client.clone()).or_default();
        if self.limit > 0 && *count >= self.limit {
            return Err(AtLimit { limit: self.limit });
        }
        *count += 1;
        Ok(self.permit(client))
    }

    /// Counts in a turn of `client` whatever the limit: one that was admitted
    /// while within it.
    pub fn start(self: &Arc<Self>, client: &ClientKey) -> TurnPermit {
        *self.lock().entry(client.clone()).or_default() += 1;
        self.permit(client)
    }

    #[cfg(test)]
    fn running(&self, client: &ClientKey) -> usize {
        self.lock().get(client).copied().unwrap_or(0)
    }

    fn permit(self: &Arc<Self>, client: &ClientKey) -> TurnPermit {
        TurnPermit {
            turns: self.clone(),
            client: client.clone(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ClientKey, usize>> {
        self.running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for TurnPermit {
    fn drop(&mut self) {
        let mut running = self.turns.lock();
        if let Some(count) = running.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                // The map holds only the clients running turns now.
                running.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(last: u8) -> ClientKey {
        ClientKey::Address(IpAddr::from([203, 0, 113, last]))
    }

    #[test]
    fn a_client_runs_up_to_its_limit_and_others_are_unaffected() {
        let turns = ClientTurns::new(2);
        let first = turns.try_start(&address(1)).unwrap();
        let _second = turns.try_start(&address(1)).unwrap();
        assert_eq!(
            turns.try_start(&address(1)).err(),
            Some(AtLimit { limit: 2 })
        );
        let _other = turns.try_start(&address(2)).unwrap();
        drop(first);
        assert!(turns.try_start(&address(1)).is_ok());
    }

    #[test]
    fn a_queued_turn_starts_beyond_the_limit_and_counts() {
        let turns = ClientTurns::new(1);
        let _running = turns.try_start(&address(1)).unwrap();
        let queued = turns.start(&address(1));
        assert_eq!(turns.running(&address(1)), 2);
        drop(queued);
        assert_eq!(turns.running(&address(1)), 1);
    }

    #[test]
    fn no_limit_counts_without_refusing_and_finished_clients_are_forgotten() {
        let turns = ClientTurns::new(0);
        let user = ClientKey::User("ada".into());
        let permits: Vec<_> = (0..100).map(|_| turns.try_start(&user).unwrap()).collect();
        assert_eq!(turns.running(&user), 100);
        drop(permits);
        assert!(turns.lock().is_empty());
    }
}
