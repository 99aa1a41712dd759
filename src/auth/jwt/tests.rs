//! JWT verification with a secret, and with a JWKS served by a local HTTP server.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{EncodingKey, Header, encode, get_current_timestamp};
use reqwest::Url;
use serde_json::{Value, json};

use super::*;
use crate::config::Secret;

const SECRET: &str = "0123456789abcdef0123456789abcdef";
const ES256_KEY: &[u8] = include_bytes!("../testdata/es256.pk8");
const RS256_KEY: &[u8] = include_bytes!("../testdata/rs256.der");

fn claims(sub: &str, expires_in: i64) -> Value {
    let now = get_current_timestamp() as i64;
    json!({ "sub": sub, "exp": now + expires_in, "iat": now })
}

fn hs256(claims: &Value, secret: &str) -> String {
    let key = EncodingKey::from_secret(secret.as_bytes()).unwrap();
    encode(&Header::new(Algorithm::HS256), claims, &key).unwrap()
}

fn secret_verifier(issuer: &str, audience: &str) -> JwtVerifier {
    JwtVerifier::from_config(&AuthConfig {
        jwt_secret: Some(Secret::new(SECRET)),
        jwt_issuer: issuer.into(),
        jwt_audience: audience.into(),
        ..AuthConfig::default()
    })
    .unwrap()
}

fn refused(why: &str) -> Result<String, AuthError> {
    Err(AuthError::invalid(why))
}

#[actix_web::test]
async fn a_valid_token_names_its_subject() {
    let verifier = secret_verifier("", "");
    let token = hs256(&claims("alice", 600), SECRET);
    assert_eq!(verifier.verify(&token).await, Ok("alice".into()));
    // An audience in the token is no reason to refuse it when none is configured.
    let mut with_audience = claims("alice", 600);
    with_audience["aud"] = json!("somebody");
    let token = hs256(&with_audience, SECRET);
    assert_eq!(verifier.verify(&token).await, Ok("alice".into()));
}

#[actix_web::test]
async fn expired_forged_and_incomplete_tokens_are_refused() {
    let verifier = secret_verifier("", "");
    let expired = hs256(&claims("alice", -3_600), SECRET);
    assert_eq!(
        verifier.verify(&expired).await,
        refused("the token has expired")
    );
    let forged = hs256(&claims("alice", 600), "another secret of thirty-two bytes");
    assert_eq!(
        verifier.verify(&forged).await,
        refused("the token's signature is not valid")
    );
    let no_exp = hs256(&json!({ "sub": "alice" }), SECRET);
    assert_eq!(
        verifier.verify(&no_exp).await,
        refused("the token has no `exp` claim")
    );
    let mut no_sub = claims("alice", 600);
    no_sub.as_object_mut().unwrap().remove("sub");
    let no_sub = hs256(&no_sub, SECRET);
    assert_eq!(
        verifier.verify(&no_sub).await,
        refused("the token has no `sub` claim")
    );
    let empty_sub = hs256(&claims("", 600), SECRET);
    assert_eq!(
        verifier.verify(&empty_sub).await,
        refused("the token's `sub` claim is empty")
    );
    assert_eq!(
        verifier.verify("not.a.jwt").await,
        refused("the token is not a JWT")
    );
    let mut not_yet = claims("alice", 600);
    not_yet["nbf"] = json!(get_current_timestamp() + 3_600);
    let not_yet = hs256(&not_yet, SECRET);
    assert_eq!(
        verifier.verify(&not_yet).await,
        refused("the token is not valid yet (nbf)")
    );
}

#[actix_web::test]
async fn a_secret_takes_hs256_only() {
    let verifier = secret_verifier("", "");
    let key = EncodingKey::from_ec_der(ES256_KEY);
    let token = encode(&Header::new(Algorithm::ES256), &claims("alice", 600), &key).unwrap();
    assert_eq!(
        verifier.verify(&token).await,
        refused("the token must be signed with HS256")
    );
}

#[actix_web::test]
async fn issuer_and_audience_are_checked_when_configured() {
    let verifier = secret_verifier("https://id.example", "parlor");
    let mut good = claims("alice", 600);
    good["iss"] = json!("https://id.example");
    good["aud"] = json!(["other", "parlor"]);
    assert_eq!(
        verifier.verify(&hs256(&good, SECRET)).await,
        Ok("alice".into())
    );

    let mut wrong_issuer = good.clone();
    wrong_issuer["iss"] = json!("https://evil.example");
    assert_eq!(
        verifier.verify(&hs256(&wrong_issuer, SECRET)).await,
        refused("the token's issuer (iss) is not accepted")
    );
    let mut wrong_audience = good.clone();
    wrong_audience["aud"] = json!("other");
    assert_eq!(
        verifier.verify(&hs256(&wrong_audience, SECRET)).await,
        refused("the token's audience (aud) is not accepted")
    );
    let mut no_audience = good.clone();
    no_audience.as_object_mut().unwrap().remove("aud");
    assert_eq!(
        verifier.verify(&hs256(&no_audience, SECRET)).await,
        refused("the token has no `aud` claim")
    );
}

/// A JWKS served on a port of its own, which counts its fetches.
struct JwksServer {
    url: Url,
    served: web::Data<Served>,
    handle: actix_web::dev::ServerHandle,
}

struct Served {
    jwks: Mutex<Value>,
    fetches: AtomicUsize,
}

impl JwksServer {
    fn start(jwks: Value) -> Self {
        let served = web::Data::new(Served {
            jwks: Mutex::new(jwks),
            fetches: AtomicUsize::new(0),
        });
        let data = served.clone();
        let server = HttpServer::new(move || {
            App::new().app_data(data.clone()).route(
                "/jwks.json",
                web::get().to(|served: web::Data<Served>| async move {
                    served.fetches.fetch_add(1, Ordering::SeqCst);
                    HttpResponse::Ok().json(&*served.jwks.lock().unwrap())
                }),
            )
        })
        .workers(1)
        .bind("127.0.0.1:0")
        .unwrap();
        let url = format!("http://{}/jwks.json", server.addrs()[0]);
        let server = server.run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        Self {
            url: url.parse().unwrap(),
            served,
            handle,
        }
    }

    fn fetches(&self) -> usize {
        self.served.fetches.load(Ordering::SeqCst)
    }

    fn serve(&self, jwks: Value) {
        *self.served.jwks.lock().unwrap() = jwks;
    }
}

fn encoding_key(algorithm: Algorithm) -> EncodingKey {
    match algorithm {
        Algorithm::ES256 => EncodingKey::from_ec_der(ES256_KEY),
        _ => EncodingKey::from_rsa_der(RS256_KEY),
    }
}

/// The public half of the test key of `algorithm`, as a JWKS entry.
fn jwk(algorithm: Algorithm, kid: &str) -> Value {
    let mut jwk = Jwk::from_encoding_key(&encoding_key(algorithm), algorithm).unwrap();
    jwk.common.key_id = Some(kid.into());
    serde_json::to_value(jwk).unwrap()
}

fn signed(algorithm: Algorithm, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, &encoding_key(algorithm)).unwrap()
}

fn jwks_verifier(url: &Url, refetch_gap: Duration) -> JwtVerifier {
    JwtVerifier {
        keys: Keys::Jwks(JwksKeys::with_refetch_gap(url.clone(), refetch_gap).unwrap()),
        issuer: None,
        audience: None,
    }
}

#[actix_web::test]
async fn jwks_keys_check_rs256_and_es256_tokens() {
    let server = JwksServer::start(json!({ "keys": [
        { "kty": "oct", "k": "c2VjcmV0", "kid": "hmac" },
        { "kty": "OKP", "crv": "X448", "x": "AAAA", "kid": "unusable" },
        jwk(Algorithm::ES256, "ec-1"),
        jwk(Algorithm::RS256, "rsa-1"),
    ]}));
    let verifier = jwks_verifier(&server.url, Duration::from_secs(60));
    let alice = claims("alice", 600);
    let es256 = signed(Algorithm::ES256, Some("ec-1"), &alice);
    let rs256 = signed(Algorithm::RS256, Some("rsa-1"), &alice);
    assert_eq!(verifier.verify(&es256).await, Ok("alice".into()));
    assert_eq!(verifier.verify(&rs256).await, Ok("alice".into()));
    assert_eq!(server.fetches(), 1, "the keys are kept");

    let expired = signed(Algorithm::ES256, Some("ec-1"), &claims("alice", -3_600));
    assert_eq!(
        verifier.verify(&expired).await,
        refused("the token has expired")
    );
    let mut forged = es256.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    assert!(verifier.verify(&forged).await.is_err());
    // The RSA key under the EC key's id: its family does not fit.
    let misnamed = signed(Algorithm::RS256, Some("ec-1"), &alice);
    assert_eq!(
        verifier.verify(&misnamed).await,
        refused("the token's key (kid) is not one of the issuer's keys")
    );
    let hmac = hs256(&alice, SECRET);
    assert_eq!(
        verifier.verify(&hmac).await,
        refused("the token must be signed with RS256 or ES256")
    );
    // A token naming no key is checked with the one key of its kind.
    let no_kid = signed(Algorithm::ES256, None, &alice);
    assert_eq!(verifier.verify(&no_kid).await, Ok("alice".into()));
    server.handle.stop(false).await;
}

#[actix_web::test]
async fn an_unknown_key_is_fetched_again_at_most_once_a_gap() {
    let server = JwksServer::start(json!({ "keys": [jwk(Algorithm::ES256, "old")] }));
    let verifier = jwks_verifier(&server.url, Duration::from_secs(60));
    let alice = claims("alice", 600);
    assert!(
        verifier
            .verify(&signed(Algorithm::ES256, Some("old"), &alice))
            .await
            .is_ok()
    );
    // Made-up key ids within the gap: no fetch (the first fetch began just now).
    for kid in ["made-up-1", "made-up-2", "made-up-3"] {
        let token = signed(Algorithm::ES256, Some(kid), &alice);
        assert!(verifier.verify(&token).await.is_err());
    }
    assert_eq!(server.fetches(), 1);

    // With no gap, a rotated key is found by fetching again once.
    let rotating = jwks_verifier(&server.url, Duration::ZERO);
    assert!(
        rotating
            .verify(&signed(Algorithm::ES256, Some("old"), &alice))
            .await
            .is_ok()
    );
    server.serve(json!({ "keys": [jwk(Algorithm::ES256, "new")] }));
    let fetches = server.fetches();
    let rotated = signed(Algorithm::ES256, Some("new"), &alice);
    assert_eq!(rotating.verify(&rotated).await, Ok("alice".into()));
    assert_eq!(server.fetches(), fetches + 1);
    server.handle.stop(false).await;
}

#[actix_web::test]
async fn keys_that_cannot_be_fetched_make_the_check_unavailable() {
    let server = JwksServer::start(json!({ "keys": [] }));
    let url = server.url.clone();
    server.handle.stop(false).await;
    let verifier = jwks_verifier(&url, Duration::from_secs(60));
    let token = signed(Algorithm::ES256, Some("any"), &claims("alice", 600));
    assert!(matches!(
        verifier.verify(&token).await,
        Err(AuthError::Unavailable(_))
    ));
}
