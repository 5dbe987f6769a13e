//! Shared harness of the REST and upstream tests: the real `nerve` binary with chosen keys,
//! flags and configuration; a REST caller that signs tokens as the server SDKs do; and a real
//! HTTP upstream (an axum server on a free port) that records every request it gets.

#![allow(dead_code)]

use std::collections::HashMap;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use nerve_hub::auth::{AccessKeys, Audience, Claims, now_secs};

/// How long tests wait for a condition.
pub const WAIT: Duration = Duration::from_secs(10);

/// A running `nerve` process, killed on drop.
pub struct Nerve {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its access keys, primary first.
    pub keys: Vec<String>,
    _config: Option<crate::common::tempfile_path::TempFile>,
}

impl Nerve {
    /// Starts the hub with `keys`, an optional TOML file and extra flags.
    pub fn start(keys: &[&str], toml: &str, extra: &[&str]) -> Self {
        let (child, port, config) = crate::common::spawn_nerve(keys, toml, extra);
        Nerve {
            child,
            port,
            keys: keys.iter().map(|k| k.to_string()).collect(),
            _config: config,
        }
    }

    /// A client token signed with the primary key.
    pub fn client_token(&self, hub: &str, user: Option<&str>, roles: &[&str]) -> String {
        let keys = AccessKeys::new(vec![self.keys[0].clone()]);
        let aud = format!("http://127.0.0.1:{}/client/hubs/{hub}", self.port);
        let roles: Vec<String> = roles.iter().map(|s| s.to_string()).collect();
        keys.client_token(&aud, user, &roles, &[], 600)
    }

    /// The client URL of `hub` with a token for `user`.
    pub fn client_url(&self, hub: &str, user: Option<&str>, roles: &[&str]) -> String {
        format!(
            "ws://127.0.0.1:{}/client/hubs/{hub}?access_token={}",
            self.port,
            self.client_token(hub, user, roles)
        )
    }

    /// Connects a client of `hub` as `user` with no roles; returns it with its connection id
    /// (empty for a simple client, which gets no `connected` frame).
    pub async fn client(
        &self,
        hub: &str,
        user: Option<&str>,
        protocol: Option<&str>,
    ) -> (crate::common::Client, String) {
        let mut c = crate::common::Client::connect(&self.client_url(hub, user, &[]), protocol)
            .await
            .expect("connect");
        if protocol.is_none() {
            return (c, String::new());
        }
        let hello = c.next_json().await;
        let id = hello["connectionId"]
            .as_str()
            .expect("connectionId")
            .to_string();
        (c, id)
    }

    /// A REST caller signing with key number `key`.
    pub fn rest(&self, key: usize) -> Rest {
        Rest {
            base: format!("http://127.0.0.1:{}", self.port),
            key: self.keys[key].clone(),
            http: reqwest::Client::new(),
        }
    }
}

impl Drop for Nerve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
        let m = reqwest::Method::from_bytes(method.as_str().as_bytes()).expect("method");
        let mut req = self
            .http
            .request(m, url)
            .header("accept", "application/json");
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

/// One request the upstream received.
#[derive(Debug, Clone)]
pub struct Seen {
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// Headers, lowercase names.
    pub headers: HashMap<String, String>,
    /// Body.
    pub body: Bytes,
}

impl Seen {
    /// A header value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("json body")
    }
}

/// What the upstream does with a POST: `None` hangs forever.
pub type Behaviour = Arc<dyn Fn(&Seen) -> Option<Response> + Send + Sync>;

/// A real HTTP upstream that records requests.
pub struct Upstream {
    /// Its port.
    pub port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    /// Starts an upstream answering OPTIONS with `WebHook-Allowed-Origin: *` and POSTs with
    /// `behaviour`.
    pub async fn start(behaviour: Behaviour) -> Self {
        Self::start_with(true, behaviour).await
    }

    /// Like [`Upstream::start`], optionally refusing the validation handshake.
    pub async fn start_with(allow: bool, behaviour: Behaviour) -> Self {
        let (app, seen) = Self::app(allow, behaviour);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let port = listener.local_addr().expect("addr").port();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Upstream { port, seen, task }
    }

    /// Like [`Upstream::start`], serving HTTPS with `cert_pem` / `key_pem`.
    pub async fn start_tls(cert_pem: &str, key_pem: &str, behaviour: Behaviour) -> Self {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let (app, seen) = Self::app(true, behaviour);
        let certs = vec![CertificateDer::from_pem_slice(cert_pem.as_bytes()).expect("cert")];
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("key");
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let mut config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocols")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server config");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let port = listener.local_addr().expect("addr").port();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let app = app.clone();
                tokio::spawn(async move {
                    // A client that refuses the certificate ends here, before any request.
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
                });
            }
        });
        Upstream { port, seen, task }
    }

    /// The recording app behind both kinds of listener.
    fn app(allow: bool, behaviour: Behaviour) -> (axum::Router, Arc<Mutex<Vec<Seen>>>) {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let rec = seen.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let rec = rec.clone();
                let behaviour = behaviour.clone();
                async move {
                    let s = Seen {
                        method: method.to_string(),
                        path: uri.path().to_string(),
                        headers: headers
                            .iter()
                            .map(|(k, v)| {
                                (k.as_str().to_string(), v.to_str().unwrap_or("").to_string())
                            })
                            .collect(),
                        body,
                    };
                    rec.lock().expect("lock").push(s.clone());
                    if method == Method::OPTIONS {
                        return if allow {
                            (StatusCode::OK, [("WebHook-Allowed-Origin", "*")]).into_response()
                        } else {
                            StatusCode::OK.into_response()
                        };
                    }
                    match behaviour(&s) {
                        Some(r) => r,
                        None => std::future::pending().await,
                    }
                }
            },
        );
        (app, seen)
    }

    /// Requests received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    /// Waits for a POST whose `ce-type` is `ce_type` and that satisfies `pred`.
    pub async fn wait_for(&self, ce_type: &str, pred: impl Fn(&Seen) -> bool) -> Seen {
        nerve_testkit::eventually(WAIT, &format!("upstream to receive {ce_type}"), || {
            let found = self
                .seen()
                .into_iter()
                .find(|s| s.method == "POST" && s.header("ce-type") == Some(ce_type) && pred(s));
            async move { found }
        })
        .await
    }

    /// Number of POSTs of `ce_type` received.
    pub fn count(&self, ce_type: &str) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.method == "POST" && s.header("ce-type") == Some(ce_type))
            .count()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A TOML configuration with one handler for `hub` on `upstream`.
pub fn handler_toml(
    hub: &str,
    upstream: u16,
    events: &str,
    system: &[&str],
    extra: &str,
) -> String {
    let system: Vec<String> = system.iter().map(|s| format!("\"{s}\"")).collect();
    format!(
        "{extra}\n[[hubs.{hub}.event_handlers]]\nurl_template = \"http://127.0.0.1:{upstream}/api/{{hub}}/{{event}}\"\nuser_event_pattern = \"{events}\"\nsystem_events = [{}]\n",
        system.join(", ")
    )
}
