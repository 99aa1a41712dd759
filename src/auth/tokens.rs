//! `mode = "token"`: the bearer tokens of `[[auth.users]]`.

use sha2::{Digest, Sha256};

use super::{AuthError, constant_time_eq};
use crate::config::AuthUser;

/// The users and (the digests of) their tokens.
pub struct TokenUsers {
    /// Digests rather than the tokens: every comparison is then of 32 bytes, so
    /// its time tells nothing of a token's length either.
    users: Vec<([u8; 32], String)>,
}

impl TokenUsers {
    pub fn new(users: &[AuthUser]) -> Self {
        let users = users
            .iter()
            .map(|user| (digest(user.token.expose()), user.id.clone()))
            .collect();
        Self { users }
    }

    /// The id of the user whose token `token` is.
    pub fn verify(&self, token: &str) -> Result<String, AuthError> {
        let presented = digest(token);
        // Every user is compared, found or not, so timing tells nothing of which.
        let mut found = None;
        for (expected, id) in &self.users {
            if constant_time_eq(expected, &presented) {
                found = Some(id);
            }
        }
        found
            .cloned()
            .ok_or_else(|| AuthError::invalid("the bearer token is not valid"))
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn users() -> TokenUsers {
        let user = |id: &str, token: &str| AuthUser {
            id: id.into(),
            token: Secret::new(token),
        };
        TokenUsers::new(&[
            user("alice", "alice-token-0123456789"),
            user("bob", "bob-token-0123456789"),
        ])
    }

    #[test]
    fn a_token_names_its_user() {
        let users = users();
        assert_eq!(users.verify("alice-token-0123456789").unwrap(), "alice");
        assert_eq!(users.verify("bob-token-0123456789").unwrap(), "bob");
    }

    #[test]
    fn an_unknown_token_is_refused() {
        let users = users();
        for token in [
            "",
            "alice",
            "alice-token-012345678",
            "alice-token-01234567890",
        ] {
            assert_eq!(
                users.verify(token),
                Err(AuthError::invalid("the bearer token is not valid")),
                "{token}"
            );
        }
    }
}
