//! Secrets in the configuration (`llm.api_key`, `admin.token`, `auth.users` tokens,
//! `auth.jwt_secret`). Their `Debug` never shows the value, so a configuration can
//! be logged or printed whole.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A secret string. There is deliberately no `Display`: the value is reached
/// only through [`Secret::expose`], where it is used. Serde reads and writes it
/// as the plain string (the configuration's defaults go through serde).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Serde for an `Option<Secret>` key, written as a string where empty means none.
pub mod optional {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::Secret;

    pub fn serialize<S: Serializer>(
        secret: &Option<Secret>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(secret.as_ref().map_or("", Secret::expose))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Secret>, D::Error> {
        let value = String::deserialize(deserializer)?;
        Ok(Some(value).filter(|value| !value.is_empty()).map(Secret))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let secret = Secret::new("sk-live-123");
        let shown = format!("{secret:?} {:?} {secret:#?}", Some(&secret));
        assert!(!shown.contains("sk-live-123"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        assert_eq!(secret.expose(), "sk-live-123");
    }
}
