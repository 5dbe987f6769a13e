//! Access tokens for Nerve: HS256 JWTs signed with the UTF-8 bytes of the access key, the way
//! the Azure SDKs sign client and REST tokens.

use jsonwebtoken::{EncodingKey, Header, encode};
use serde::Serialize;

use crate::payload::now_nanos;

/// Tokens live an hour, longer than any benchmark run.
const LIFETIME_SECS: u64 = 3600;

#[derive(Serialize)]
struct Claims<'a> {
    aud: &'a str,
    exp: u64,
    iat: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<&'a str>,
    #[serde(skip_serializing_if = "<[&str]>::is_empty")]
    role: &'a [&'a str],
}

/// Failure to sign a token.
#[derive(Debug, thiserror::Error)]
#[error("signing a token: {0}")]
pub struct TokenError(#[from] jsonwebtoken::errors::Error);

/// Signs a token for audience `aud` (an http URL without query), optionally for user `sub`.
pub fn sign(key: &str, aud: &str, sub: Option<&str>, roles: &[&str]) -> Result<String, TokenError> {
    let iat = now_nanos() / 1_000_000_000;
    let claims = Claims {
        aud,
        exp: iat + LIFETIME_SECS,
        iat,
        sub,
        role: roles,
    };
    Ok(encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(key.as_bytes()),
    )?)
}

/// The roles a benchmark client needs: join groups and publish to them.
pub const CLIENT_ROLES: &[&str] = &["webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"];

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};

    #[test]
    fn signs_hs256_with_key_bytes_and_claims() {
        let aud = "http://127.0.0.1:1/client/hubs/h";
        let t = sign("secret", aud, Some("u1"), CLIENT_ROLES).unwrap();
        let mut v = Validation::new(Algorithm::HS256);
        v.set_audience(&[aud]);
        let data =
            decode::<serde_json::Value>(&t, &DecodingKey::from_secret(b"secret"), &v).unwrap();
        assert_eq!(data.claims["sub"], "u1");
        assert_eq!(data.claims["role"][1], "webpubsub.sendToGroup");
        assert!(data.claims["exp"].as_u64().unwrap() > data.claims["iat"].as_u64().unwrap());
    }
}
