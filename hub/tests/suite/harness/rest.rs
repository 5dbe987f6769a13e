//! A REST caller that signs every call as the server SDKs do: a Bearer token whose `aud` is
//! the full URL, signed with one of the hub's access keys.

use axum::http::Method;
use nerve_hub::auth::{AccessKeys, Audience, Claims, now_secs};

/// A REST response.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: reqwest::header::HeaderMap,
    /// Body text.
    pub body: String,
}

impl Answer {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// Calls the REST API like the server SDKs: a Bearer token whose `aud` is the full URL.
pub struct Rest {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    key: String,
    http: reqwest::Client,
}

impl Rest {
    /// A caller of the hub at `base` (`http://127.0.0.1:PORT`) signing with `key`.
    pub fn new(base: String, key: &str) -> Self {
        Rest {
            base,
            key: key.to_string(),
            http: reqwest::Client::new(),
        }
    }

    /// A token for `aud`, valid for ten minutes.
    pub fn token(&self, aud: &str) -> String {
        self.token_with(Claims {
            aud: Some(Audience::One(aud.to_string())),
            exp: now_secs() + 600,
            iat: Some(now_secs()),
            ..Default::default()
        })
    }

    /// A token with the given claims.
    pub fn token_with(&self, claims: Claims) -> String {
        AccessKeys::new(vec![self.key.clone()]).sign(&claims)
    }

    /// Calls `method path_and_query` with an optional `(content type, body)`.
    pub async fn call(&self, method: Method, path: &str, body: Option<(&str, Vec<u8>)>) -> Answer {
        let url = format!("{}{path}", self.base);
        let token = self.token(&url);
        self.call_with_token(method, &url, body, Some(&token)).await
    }

    /// Calls an absolute URL with the given token (or none).
    pub async fn call_with_token(
        &self,
        method: Method,
        url: &str,
        body: Option<(&str, Vec<u8>)>,
        token: Option<&str>,
    ) -> Answer {
        self.call_with_headers(method, url, body, token, &[]).await
    }

    /// POSTs `(content type, body)` to `path` with extra request headers.
    pub async fn post_with_headers(
        &self,
        path: &str,
        body: (&str, Vec<u8>),
        headers: &[(&str, &str)],
    ) -> Answer {
        let url = format!("{}{path}", self.base);
        let token = self.token(&url);
        self.call_with_headers(Method::POST, &url, Some(body), Some(&token), headers)
            .await
    }

    /// Calls an absolute URL with the given token (or none) and extra request headers.
    pub async fn call_with_headers(
        &self,
        method: Method,
        url: &str,
        body: Option<(&str, Vec<u8>)>,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let m = reqwest::Method::from_bytes(method.as_str().as_bytes()).expect("method");
        let mut req = self
            .http
            .request(m, url)
            .header("accept", "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some((ct, b)) = body {
            req = req.header("content-type", ct).body(b);
        }
        let resp = req.send().await.expect("REST call");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.text().await.unwrap_or_default();
        Answer {
            status,
            headers,
            body,
        }
    }

    /// POST with a JSON body.
    pub async fn post_json(&self, path: &str, v: serde_json::Value) -> Answer {
        self.call(
            Method::POST,
            path,
            Some(("application/json", v.to_string().into_bytes())),
        )
        .await
    }
}
