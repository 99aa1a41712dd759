//! Who a client is (`[auth]`, docs/protocol.md#authentication): nobody in
//! particular when authentication is off, else the user its bearer token proves,
//! through the tokens of `[[auth.users]]` ([`tokens`]) or a JSON Web Token
//! ([`jwt`], its keys from a secret or a JWKS, [`jwks`]). The HTTP side of it (which
//! header, which status) is in `http::auth`; sessions remember their owner, and a
//! session id names a session only to its owner.

mod jwks;
mod jwt;
mod tokens;

use std::fmt;

use crate::config::{AuthConfig, AuthMode};

pub use self::jwks::JwksKeys;
pub use self::jwt::JwtVerifier;
pub use self::tokens::TokenUsers;

/// Who is calling, as far as the gateway knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// Authentication is off: any client may chat, as whoever it says it is.
    Anyone,
    /// An authenticated user, by id.
    User(String),
}

impl Caller {
    /// The authenticated user's id (`None` when authentication is off).
    pub fn user_id(&self) -> Option<&str> {
        match self {
            Caller::Anyone => None,
            Caller::User(id) => Some(id),
        }
    }

    /// Whether this caller may use a session that belongs to `owner`. With
    /// authentication on only the owner may: a session stored without one (made
    /// while authentication was off) is nobody's to take.
    pub fn may_use(&self, owner: Option<&str>) -> bool {
        match self {
            Caller::Anyone => true,
            Caller::User(id) => owner == Some(id.as_str()),
        }
    }
}

/// Why a request was not let in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthError {
    /// It carried no credential.
    Missing,
    /// Its credential proves nobody; the text says why, for the client.
    Invalid(String),
    /// Its credential could not be checked now (the JWKS cannot be fetched).
    Unavailable(String),
}

impl AuthError {
    pub(crate) fn invalid(why: impl Into<String>) -> Self {
        AuthError::Invalid(why.into())
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::Missing => f.write_str(
                "a bearer token is required: `Authorization: Bearer <token>` \
                 (a WebSocket may pass ?access_token=<token> instead)",
            ),
            AuthError::Invalid(why) | AuthError::Unavailable(why) => f.write_str(why),
        }
    }
}

/// Checks the credentials of requests, per `[auth]`.
pub enum Authenticator {
    Off,
    Tokens(TokenUsers),
    // Boxed: the JWT verifier is large, and there is one per process.
    Jwt(Box<JwtVerifier>),
}

impl Authenticator {
    /// The checker `config` describes (which was validated at load).
    pub fn from_config(config: &AuthConfig) -> anyhow::Result<Self> {
        Ok(match config.mode {
            AuthMode::None => Authenticator::Off,
            AuthMode::Token => Authenticator::Tokens(TokenUsers::new(&config.users)),
            AuthMode::Jwt => Authenticator::Jwt(Box::new(JwtVerifier::from_config(config)?)),
        })
    }

    /// Whether requests must carry a credential.
    pub fn is_on(&self) -> bool {
        !matches!(self, Authenticator::Off)
    }

    /// Who presents `token` (the bearer token of a request, if it had one).
    pub async fn authenticate(&self, token: Option<&str>) -> Result<Caller, AuthError> {
        let user = match self {
            // Whatever a client sends is ignored, as it always was.
            Authenticator::Off => return Ok(Caller::Anyone),
            Authenticator::Tokens(users) => users.verify(presented(token)?)?,
            Authenticator::Jwt(verifier) => verifier.verify(presented(token)?).await?,
        };
        Ok(Caller::User(user))
    }
}

/// The token a request presented; an empty one is none.
fn presented(token: Option<&str>) -> Result<&str, AuthError> {
    token
        .filter(|token| !token.is_empty())
        .ok_or(AuthError::Missing)
}

/// Compares without stopping at the first difference, so timing tells nothing
/// about how much of a guess was right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_owner_may_use_a_session_when_authentication_is_on() {
        let alice = Caller::User("alice".into());
        assert!(alice.may_use(Some("alice")));
        assert!(!alice.may_use(Some("bob")));
        assert!(!alice.may_use(None));
        assert!(Caller::Anyone.may_use(Some("bob")));
        assert!(Caller::Anyone.may_use(None));
        assert_eq!(alice.user_id(), Some("alice"));
        assert_eq!(Caller::Anyone.user_id(), None);
    }

    #[actix_web::test]
    async fn off_lets_anyone_in_and_ignores_tokens() {
        let off = Authenticator::from_config(&AuthConfig::default()).unwrap();
        assert!(!off.is_on());
        assert_eq!(off.authenticate(None).await, Ok(Caller::Anyone));
        assert_eq!(off.authenticate(Some("x")).await, Ok(Caller::Anyone));
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
