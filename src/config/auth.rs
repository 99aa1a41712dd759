//! `[auth]`: who may chat, and how a client proves it (docs/protocol.md#authentication).
//! Off by default, so a local install works as it always did.

use std::collections::HashSet;

use reqwest::Url;
use serde::{Deserialize, Serialize};

use super::Secret;
use super::secret;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub mode: AuthMode,
    /// `[[auth.users]]`: the users of `mode = "token"`, each with its own token.
    pub users: Vec<AuthUser>,
    /// The HS256 key of `mode = "jwt"`, written `""` for none.
    #[serde(with = "secret::optional")]
    pub jwt_secret: Option<Secret>,
    /// Where `mode = "jwt"` fetches its RS256/ES256 public keys, written `""` for none.
    #[serde(with = "optional_url")]
    pub jwks_url: Option<Url>,
    /// The `iss` a token must carry; `""`: not checked.
    pub jwt_issuer: String,
    /// The `aud` a token must carry; `""`: not checked.
    pub jwt_audience: String,
}

/// How clients authenticate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// Nobody: any client may chat, and a session id alone reaches its session.
    #[default]
    None,
    /// Bearer tokens listed in `[[auth.users]]`.
    Token,
    /// JSON Web Tokens, whose `sub` is the user.
    Jwt,
}

/// One `[[auth.users]]` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthUser {
    /// What the user's sessions are stored under.
    pub id: String,
    /// The bearer token that proves to be this user.
    pub token: Secret,
}

impl AuthConfig {
    /// The shortest token a user may have: shorter ones could be guessed.
    pub const MIN_TOKEN_LEN: usize = 16;
    /// The shortest HS256 key: RFC 7518 (section 3.2) wants one at least as long
    /// as the hash, 256 bits.
    pub const MIN_JWT_SECRET_LEN: usize = 32;

    /// What is wrong with the section, as the key at fault and the problem. Keys
    /// of another mode are refused too: they most likely mean a mode was forgotten,
    /// and running without the checks they imply would fail open.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        let not_for = |key: &'static str, mode: &str| {
            Some((key, format!("is only used with mode = \"{mode}\"")))
        };
        if self.mode != AuthMode::Token && !self.users.is_empty() {
            return not_for("auth.users", "token");
        }
        if self.mode != AuthMode::Jwt {
            if self.jwt_secret.is_some() {
                return not_for("auth.jwt_secret", "jwt");
            }
            if self.jwks_url.is_some() {
                return not_for("auth.jwks_url", "jwt");
            }
            if !self.jwt_issuer.is_empty() {
                return not_for("auth.jwt_issuer", "jwt");
            }
            if !self.jwt_audience.is_empty() {
                return not_for("auth.jwt_audience", "jwt");
            }
        }
        match self.mode {
            AuthMode::None => None,
            AuthMode::Token => self.users_problem(),
            AuthMode::Jwt => self.jwt_problem(),
        }
    }

    fn users_problem(&self) -> Option<(&'static str, String)> {
        if self.users.is_empty() {
            let problem = "mode = \"token\" needs at least one [[auth.users]] table";
            return Some(("auth.users", problem.into()));
        }
        let mut ids = HashSet::new();
        let mut tokens = HashSet::new();
        for (index, user) in self.users.iter().enumerate() {
            if user.id.trim().is_empty() {
                return Some(("auth.users", format!("user {index} has an empty id")));
            }
            if user.token.expose().chars().count() < Self::MIN_TOKEN_LEN
                || user.token.expose().chars().any(char::is_whitespace)
            {
                let problem = format!(
                    "the token of {:?} must be at least {} characters, without spaces",
                    user.id,
                    Self::MIN_TOKEN_LEN
                );
                return Some(("auth.users", problem));
            }
            if !ids.insert(&user.id) {
                return Some(("auth.users", format!("two users have the id {:?}", user.id)));
            }
            if !tokens.insert(user.token.expose()) {
                // Named by user, never by the token itself.
                let problem = format!("{:?} has the token of another user", user.id);
                return Some(("auth.users", problem));
            }
        }
        None
    }

    fn jwt_problem(&self) -> Option<(&'static str, String)> {
        match (&self.jwt_secret, &self.jwks_url) {
            (None, None) => Some((
                "auth.jwt_secret",
                "mode = \"jwt\" needs jwt_secret (HS256) or jwks_url (RS256/ES256)".into(),
            )),
            (Some(_), Some(_)) => Some((
                "auth.jwt_secret",
                "set jwt_secret or jwks_url, not both".into(),
            )),
            (Some(secret), None) if secret.expose().len() < Self::MIN_JWT_SECRET_LEN => Some((
                "auth.jwt_secret",
                format!("must be at least {} bytes", Self::MIN_JWT_SECRET_LEN),
            )),
            _ => None,
        }
    }
}

/// Serde for an `Option<Url>` key, written as a string where empty means none.
mod optional_url {
    use reqwest::Url;
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    use super::super::endpoints::http_url;

    pub fn serialize<S: Serializer>(url: &Option<Url>, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(url.as_ref().map_or("", Url::as_str))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Url>, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.is_empty() {
            return Ok(None);
        }
        http_url(&text).map(Some).map_err(|problem| {
            D::Error::custom(format!(
                "must be empty or an http(s):// URL; {text:?} {problem}"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use figment::Figment;
    use figment::providers::{Format, Serialized, Toml};

    use super::*;
    use crate::config::Config;

    const ALICE: &str = "[[auth.users]]\nid = \"alice\"\ntoken = \"alice-token-0123456789\"\n";
    const BOB: &str = "[[auth.users]]\nid = \"bob\"\ntoken = \"bob-token-0123456789\"\n";
    const SECRET: &str = "jwt_secret = \"0123456789abcdef0123456789abcdef\"\n";

    fn load(toml: &str) -> Result<Config, String> {
        let config: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(toml))
            .extract()
            .map_err(|error| error.to_string())?;
        config.validate().map_err(|error| error.to_string())?;
        Ok(config)
    }

    fn refusal(toml: &str) -> String {
        load(toml).unwrap_err()
    }

    #[test]
    fn off_by_default() {
        let config = load("").unwrap();
        assert_eq!(config.auth, AuthConfig::default());
        assert_eq!(config.auth.mode, AuthMode::None);
    }

    #[test]
    fn token_mode_reads_its_users() {
        let config = load(&format!("[auth]\nmode = \"token\"\n{ALICE}{BOB}")).unwrap();
        let ids: Vec<&str> = config.auth.users.iter().map(|u| u.id.as_str()).collect();
        assert_eq!(ids, ["alice", "bob"]);
        assert_eq!(
            config.auth.users[0].token.expose(),
            "alice-token-0123456789"
        );
        let shown = format!("{config:?}");
        assert!(!shown.contains("alice-token"), "{shown}");
    }

    #[test]
    fn token_mode_needs_distinct_users_with_long_tokens() {
        let error = refusal("[auth]\nmode = \"token\"\n");
        assert!(
            error.contains("auth.users: mode = \"token\" needs at least one"),
            "{error}"
        );
        let error = refusal(&format!("[auth]\nmode = \"token\"\n{ALICE}{ALICE}"));
        assert!(
            error.contains("auth.users: two users have the id \"alice\""),
            "{error}"
        );
        let twin = BOB.replace("bob-token", "alice-token");
        let error = refusal(&format!("[auth]\nmode = \"token\"\n{ALICE}{twin}"));
        assert!(
            error.contains("auth.users: \"bob\" has the token of another user"),
            "{error}"
        );
        assert!(!error.contains("alice-token"), "a token shows: {error}");
        let short = ALICE.replace("alice-token-0123456789", "short");
        let error = refusal(&format!("[auth]\nmode = \"token\"\n{short}"));
        assert!(
            error.contains("auth.users: the token of \"alice\" must be at least 16"),
            "{error}"
        );
        let nameless = ALICE.replace("\"alice\"", "\"\"");
        let error = refusal(&format!("[auth]\nmode = \"token\"\n{nameless}"));
        assert!(
            error.contains("auth.users: user 0 has an empty id"),
            "{error}"
        );
        let error = refusal("[auth]\nmode = \"token\"\n[[auth.users]]\nid = \"alice\"\n");
        assert!(error.contains("token"), "{error}");
    }

    #[test]
    fn jwt_mode_needs_one_key_source() {
        let config = load(&format!("[auth]\nmode = \"jwt\"\n{SECRET}")).unwrap();
        assert!(config.auth.jwt_secret.is_some());
        let toml = "[auth]\nmode = \"jwt\"\njwks_url = \"https://id.example/jwks.json\"\n\
                    jwt_issuer = \"https://id.example\"\njwt_audience = \"parlor\"\n";
        let config = load(toml).unwrap();
        assert_eq!(
            config.auth.jwks_url.as_ref().map(Url::as_str),
            Some("https://id.example/jwks.json")
        );
        assert_eq!(config.auth.jwt_audience, "parlor");

        let error = refusal("[auth]\nmode = \"jwt\"\n");
        assert!(
            error.contains("auth.jwt_secret: mode = \"jwt\" needs jwt_secret"),
            "{error}"
        );
        let both = format!("[auth]\nmode = \"jwt\"\n{SECRET}jwks_url = \"http://127.0.0.1:1/k\"\n");
        assert!(refusal(&both).contains("not both"));
        let error = refusal("[auth]\nmode = \"jwt\"\njwt_secret = \"too short\"\n");
        assert!(
            error.contains("auth.jwt_secret: must be at least 32 bytes"),
            "{error}"
        );
        assert!(!error.contains("too short"), "the secret shows: {error}");
        let error = refusal("[auth]\nmode = \"jwt\"\njwks_url = \"keys.json\"\n");
        assert!(
            error.contains("must be empty or an http(s):// URL"),
            "{error}"
        );
        assert!(error.contains("auth.jwks_url"), "{error}");
    }

    #[test]
    fn keys_of_another_mode_are_refused() {
        let error = refusal(&format!("[auth]\n{ALICE}"));
        assert!(
            error.contains("auth.users: is only used with mode = \"token\""),
            "{error}"
        );
        let error = refusal(&format!("[auth]\nmode = \"token\"\n{SECRET}{ALICE}"));
        assert!(
            error.contains("auth.jwt_secret: is only used with mode = \"jwt\""),
            "{error}"
        );
        let error = refusal(&format!("[auth]\nmode = \"jwt\"\n{SECRET}{ALICE}"));
        assert!(
            error.contains("auth.users: is only used with mode = \"token\""),
            "{error}"
        );
        let error = refusal("[auth]\njwt_audience = \"parlor\"\n");
        assert!(error.contains("auth.jwt_audience"), "{error}");
        let error = refusal("[auth]\nmode = \"oauth\"\n");
        assert!(error.contains("oauth"), "{error}");
    }
}
