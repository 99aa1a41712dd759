//! `mode = "jwt"`: JSON Web Tokens signed with `auth.jwt_secret` (HS256) or with a
//! key of the JWKS at `auth.jwks_url` (RS256, ES256). `exp` and `sub` are required,
//! `sub` is the user; `iss` and `aud` are checked when configured.

use anyhow::Context as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;

use super::AuthError;
use super::jwks::JwksKeys;
use crate::config::AuthConfig;

/// What a token may be signed with: one secret, or the keys of a JWKS. Never
/// both, so that no token can choose its kind of key (the classic confusion of
/// an RSA public key used as an HMAC secret).
enum Keys {
    Secret(DecodingKey),
    Jwks(JwksKeys),
}

pub struct JwtVerifier {
    keys: Keys,
    issuer: Option<String>,
    audience: Option<String>,
}

/// The claims parlor reads; `exp` (and `iss`, `aud`, `nbf`) are checked by the
/// library. A missing `sub` is read as empty, so that the library's check of
/// required claims says what is missing.
#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    sub: String,
}

/// The algorithms a JWKS key may sign with.
const ASYMMETRIC: [Algorithm; 2] = [Algorithm::RS256, Algorithm::ES256];

impl JwtVerifier {
    /// A verifier for a validated `[auth]` of `mode = "jwt"`.
    pub fn from_config(config: &AuthConfig) -> anyhow::Result<Self> {
        let keys = match (&config.jwt_secret, &config.jwks_url) {
            (Some(secret), _) => Keys::Secret(
                DecodingKey::from_secret(secret.expose().as_bytes())
                    .context("auth.jwt_secret cannot be used as an HS256 key")?,
            ),
            (None, Some(url)) => Keys::Jwks(JwksKeys::new(url.clone())?),
            (None, None) => anyhow::bail!("auth.mode = \"jwt\" needs jwt_secret or jwks_url"),
        };
        let configured = |text: &str| Some(text.to_owned()).filter(|text| !text.is_empty());
        Ok(Self {
            keys,
            issuer: configured(&config.jwt_issuer),
            audience: configured(&config.jwt_audience),
        })
    }

    /// The user (`sub`) of a valid token.
    pub async fn verify(&self, token: &str) -> Result<String, AuthError> {
        let header =
            decode_header(token).map_err(|_| AuthError::invalid("the token is not a JWT"))?;
        let algorithm = header.alg;
        let jwks_key;
        let key = match &self.keys {
            Keys::Secret(key) if algorithm == Algorithm::HS256 => key,
            Keys::Secret(_) => {
                return Err(AuthError::invalid("the token must be signed with HS256"));
            }
            Keys::Jwks(keys) if ASYMMETRIC.contains(&algorithm) => {
                jwks_key = keys.key_for(header.kid.as_deref(), algorithm).await?;
                &*jwks_key
            }
            Keys::Jwks(_) => {
                return Err(AuthError::invalid(
                    "the token must be signed with RS256 or ES256",
                ));
            }
        };
        let claims = decode::<Claims>(token, key, &self.validation(algorithm))
            .map_err(|error| AuthError::invalid(rejection(error.kind())))?
            .claims;
        if claims.sub.is_empty() {
            return Err(AuthError::invalid("the token's `sub` claim is empty"));
        }
        Ok(claims.sub)
    }

    fn validation(&self, algorithm: Algorithm) -> Validation {
        // `Validation::new` requires `exp` and allows 60 s of clock difference.
        let mut validation = Validation::new(algorithm);
        let mut required = vec!["exp", "sub"];
        validation.validate_nbf = true;
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        match &self.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            // Otherwise a token naming any audience would be refused.
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        validation
    }
}

/// Why a token was refused, for the client: enough to know whether to get a new
/// one, nothing about the keys.
fn rejection(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "the token has expired".into(),
        ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)".into(),
        ErrorKind::InvalidSignature => "the token's signature is not valid".into(),
        ErrorKind::InvalidIssuer => "the token's issuer (iss) is not accepted".into(),
        ErrorKind::InvalidAudience => "the token's audience (aud) is not accepted".into(),
        ErrorKind::MissingRequiredClaim(claim) => format!("the token has no `{claim}` claim"),
        ErrorKind::InvalidAlgorithm => "the token's algorithm does not fit its key".into(),
        _ => "the token is not valid".into(),
    }
}

#[cfg(test)]
mod tests;
