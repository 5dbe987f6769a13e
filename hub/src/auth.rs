//! Access tokens: HS256 JWTs signed with the UTF-8 bytes of an access key.
//!
//! Clients and REST callers present the same kind of token; only the audience differs. The
//! algorithm is pinned to HS256 (so `alg:none` and RS256-with-the-HMAC-key are refused), `exp` is
//! required, `nbf` is honoured, both with a small clock skew, and the audience is compared
//! loosely as the service does (http≈ws, https≈wss, no query, no trailing `/`, any case).

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

pub use nerve_protocol::access::{ClientProtocol, ConnectionString};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Clock skew allowed on `exp` and `nbf`, in seconds.
pub const CLOCK_SKEW_SECS: u64 = 30;

/// Why a token was refused. The message is safe to return to the caller.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// No token in the query or the Authorization header.
    #[error("no access token: pass access_token in the query or an Authorization: Bearer header")]
    Missing,
    /// The token has expired.
    #[error("the access token has expired")]
    Expired,
    /// The token is not valid yet.
    #[error("the access token is not valid yet (nbf is in the future)")]
    NotYetValid,
    /// The signature does not match any access key.
    #[error("the access token signature is invalid")]
    BadSignature,
    /// The token is not signed with HS256.
    #[error("the access token must be signed with HS256")]
    WrongAlgorithm,
    /// The audience does not name this endpoint.
    #[error("the access token audience '{0}' does not match this endpoint")]
    WrongAudience(String),
    /// The token has no audience.
    #[error("the access token has no audience (aud)")]
    NoAudience,
    /// The token is malformed or lacks a required claim.
    #[error("the access token is malformed: {0}")]
    Malformed(String),
}

/// Claims the hub reads from a token; every other claim is kept for the upstream `connect` event.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Claims {
    /// Audience: a string or a list of strings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
    /// User id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Roles granted to the connection.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "one_or_many"
    )]
    pub role: Vec<String>,
    /// Groups to join on connect.
    #[serde(
        default,
        rename = "webpubsub.group",
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "one_or_many"
    )]
    pub groups: Vec<String>,
    /// Expiry (seconds since the epoch).
    pub exp: u64,
    /// Issued at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Not before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Every other claim.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// An `aud` claim: one string or several.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Audience {
    /// A single audience.
    One(String),
    /// Several audiences; any may match.
    Many(Vec<String>),
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => Vec::new(),
        Some(OneOrMany::One(s)) => vec![s],
        Some(OneOrMany::Many(v)) => v,
    })
}

/// The access keys a hub accepts; the first one signs what the hub issues.
#[derive(Clone)]
pub struct AccessKeys {
    keys: Vec<String>,
}

impl std::fmt::Debug for AccessKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the keys themselves.
        write!(f, "AccessKeys({} keys)", self.keys.len())
    }
}

impl AccessKeys {
    /// Builds the key set; `keys` must not be empty.
    pub fn new(keys: Vec<String>) -> Self {
        AccessKeys { keys }
    }

    /// The primary key (signs issued tokens).
    pub fn primary(&self) -> &str {
        self.keys.first().map(String::as_str).unwrap_or_default()
    }

    /// All keys, primary first.
    pub fn all(&self) -> &[String] {
        &self.keys
    }

    /// Verifies a token against every key and checks its audience with `audience_ok`.
    pub fn verify(
        &self,
        token: &str,
        audience_ok: impl Fn(&str) -> bool,
    ) -> Result<Claims, AuthError> {
        self.verify_with_slot(token, audience_ok)
            .map(|(_, claims)| claims)
    }

    /// Like [`AccessKeys::verify`], also telling which key (its position, primary first)
    /// signed the token, so callers can be told apart by key without ever naming the key.
    pub fn verify_with_slot(
        &self,
        token: &str,
        audience_ok: impl Fn(&str) -> bool,
    ) -> Result<(usize, Claims), AuthError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = CLOCK_SKEW_SECS;
        validation.validate_aud = false;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        let mut last = AuthError::BadSignature;
        for (slot, key) in self.keys.iter().enumerate() {
            match jsonwebtoken::decode::<Claims>(
                token,
                &DecodingKey::from_secret(key.as_bytes()),
                &validation,
            ) {
                Ok(data) => {
                    let claims = data.claims;
                    let matches = match &claims.aud {
                        None => return Err(AuthError::NoAudience),
                        Some(Audience::One(a)) => audience_ok(a),
                        Some(Audience::Many(v)) => v.iter().any(|a| audience_ok(a)),
                    };
                    if !matches {
                        let shown = match &claims.aud {
                            Some(Audience::One(a)) => a.clone(),
                            Some(Audience::Many(v)) => v.join(","),
                            None => String::new(),
                        };
                        return Err(AuthError::WrongAudience(shown));
                    }
                    return Ok((slot, claims));
                }
                Err(e) => {
                    last = match e.kind() {
                        ErrorKind::InvalidSignature => AuthError::BadSignature,
                        // Time checks only run after the signature verified, so they are final.
                        ErrorKind::ExpiredSignature => return Err(AuthError::Expired),
                        ErrorKind::ImmatureSignature => return Err(AuthError::NotYetValid),
                        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                            return Err(AuthError::WrongAlgorithm);
                        }
                        ErrorKind::MissingRequiredClaim(c) => {
                            return Err(AuthError::Malformed(format!("missing claim '{c}'")));
                        }
                        other => AuthError::Malformed(format!("{other:?}")),
                    };
                    if !matches!(last, AuthError::BadSignature) {
                        return Err(last);
                    }
                }
            }
        }
        Err(last)
    }

    /// Signs a token with the primary key.
    pub fn sign(&self, claims: &Claims) -> String {
        // HS256 signing of a serializable struct with a byte key cannot fail.
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(self.primary().as_bytes()),
        )
        .unwrap_or_default()
    }

    /// Issues a client token for `audience`, valid for `ttl_secs`.
    pub fn client_token(
        &self,
        audience: &str,
        user_id: Option<&str>,
        roles: &[String],
        groups: &[String],
        ttl_secs: u64,
    ) -> String {
        let now = now_secs();
        self.sign(&Claims {
            aud: Some(Audience::One(audience.to_string())),
            sub: user_id.map(str::to_string),
            role: roles.to_vec(),
            groups: groups.to_vec(),
            exp: now + ttl_secs,
            iat: Some(now),
            nbf: None,
            other: BTreeMap::new(),
        })
    }
}

/// Logs why a caller of `endpoint` was refused, so whoever runs the hub can tell a wrong
/// key from an expired token. The reason is logged; the token never is (it is a credential,
/// and `AuthError` messages carry none of it).
pub fn log_refusal(endpoint: &str, reason: &dyn std::fmt::Display) {
    tracing::info!(endpoint, %reason, "401: token refused");
}

/// The token of an `Authorization: Bearer <token>` header, if there is one.
pub fn bearer_token(headers: &http::HeaderMap) -> Option<String> {
    let v = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Normalizes a URL for audience comparison: ws→http, wss→https, lowercase, no query or
/// fragment, no trailing `/`, default ports dropped.
pub fn normalize_audience(url: &str) -> String {
    let url = url.split(['?', '#']).next().unwrap_or_default().trim();
    let lower = url.to_ascii_lowercase();
    let (scheme, rest) = match lower.split_once("://") {
        Some((s, r)) => (s, r),
        None => ("", lower.as_str()),
    };
    let scheme = match scheme {
        "ws" => "http",
        "wss" => "https",
        s => s,
    };
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let host = match (scheme, host.rsplit_once(':')) {
        ("http", Some((h, "80"))) | ("https", Some((h, "443"))) => h,
        _ => host,
    };
    let path = path.trim_end_matches('/');
    format!("{scheme}://{host}{path}")
}

/// Whether `aud` names the same endpoint as `expected` under the loose rules above.
pub fn audience_matches(aud: &str, expected: &str) -> bool {
    normalize_audience(aud) == normalize_audience(expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> AccessKeys {
        AccessKeys::new(vec!["primary-key".into(), "secondary-key".into()])
    }

    #[test]
    fn audience_is_loose_about_scheme_case_query_and_slash() {
        assert!(audience_matches(
            "http://localhost:8080/client/hubs/Chat/",
            "ws://LOCALHOST:8080/client/hubs/chat?access_token=x"
        ));
        assert!(audience_matches(
            "https://h/api/hubs/a/:send?x=1",
            "wss://h:443/api/hubs/a/:send"
        ));
        assert!(!audience_matches(
            "http://h/client/hubs/a",
            "http://h/client/hubs/b"
        ));
        assert!(!audience_matches(
            "http://evil/client/hubs/a",
            "http://h/client/hubs/a"
        ));
    }

    #[test]
    fn verifies_tokens_of_either_key() {
        let aud = "http://h/client/hubs/a";
        let t = keys().client_token(aud, Some("u1"), &["r".into()], &["g".into()], 60);
        let c = keys().verify(&t, |a| audience_matches(a, aud)).unwrap();
        assert_eq!(c.sub.as_deref(), Some("u1"));
        assert_eq!(c.role, vec!["r"]);
        assert_eq!(c.groups, vec!["g"]);
        let secondary = AccessKeys::new(vec!["secondary-key".into()]);
        let t2 = secondary.client_token(aud, None, &[], &[], 60);
        assert!(keys().verify(&t2, |a| audience_matches(a, aud)).is_ok());
        let other = AccessKeys::new(vec!["other".into()]);
        let t3 = other.client_token(aud, None, &[], &[], 60);
        assert_eq!(
            keys().verify(&t3, |_| true).unwrap_err(),
            AuthError::BadSignature
        );
    }

    #[test]
    fn refuses_expired_future_wrong_audience_and_alg_none() {
        let k = keys();
        let mut c = Claims {
            aud: Some(Audience::One("http://h/x".into())),
            exp: now_secs() - 3600,
            ..Default::default()
        };
        assert_eq!(
            k.verify(&k.sign(&c), |_| true).unwrap_err(),
            AuthError::Expired
        );
        c.exp = now_secs() + 3600;
        c.nbf = Some(now_secs() + 600);
        assert_eq!(
            k.verify(&k.sign(&c), |_| true).unwrap_err(),
            AuthError::NotYetValid
        );
        c.nbf = None;
        assert!(matches!(
            k.verify(&k.sign(&c), |_| false).unwrap_err(),
            AuthError::WrongAudience(_)
        ));
        // alg:none: header {"alg":"none","typ":"JWT"}, no signature.
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let body = b64.encode(serde_json::to_vec(&c).unwrap());
        let none = format!("{header}.{body}.");
        assert!(k.verify(&none, |_| true).is_err());
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &c,
            &EncodingKey::from_secret(b"primary-key"),
        )
        .unwrap();
        assert_eq!(
            k.verify(&hs512, |_| true).unwrap_err(),
            AuthError::WrongAlgorithm
        );
        assert!(k.verify("garbage", |_| true).is_err());
    }

    #[test]
    fn debug_never_prints_keys() {
        assert!(!format!("{:?}", keys()).contains("primary"));
    }
}
