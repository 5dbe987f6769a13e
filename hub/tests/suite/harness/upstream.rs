//! A real HTTP (or HTTPS) upstream: an axum server on a free port that records every request
//! it gets and answers POSTs as the test says, and the configuration pointing a hub at it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::WAIT;
use super::server::Server;

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
    _server: Server,
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
        Self::recording(seen, Server::http(app).await)
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
        let server = Server::spawn(|listener| async move {
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
        })
        .await;
        Self::recording(seen, server)
    }

    fn recording(seen: Arc<Mutex<Vec<Seen>>>, server: Server) -> Self {
        Upstream {
            port: server.port,
            seen,
            _server: server,
        }
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

/// A TOML configuration with one handler for `hub` on `upstream`, after `extra`.
pub fn handler_toml(
    hub: &str,
    upstream: u16,
    events: &str,
    system: &[&str],
    extra: &str,
) -> String {
    let origin = format!("http://127.0.0.1:{upstream}");
    handler_toml_at(hub, &origin, events, system, extra)
}

/// Like [`handler_toml`], for an upstream at `origin`, e.g. `https://localhost:PORT`.
pub fn handler_toml_at(
    hub: &str,
    origin: &str,
    events: &str,
    system: &[&str],
    extra: &str,
) -> String {
    let system: Vec<String> = system.iter().map(|s| format!("\"{s}\"")).collect();
    format!(
        "{extra}\n[[hubs.{hub}.event_handlers]]\nurl_template = \"{origin}/api/{{hub}}/{{event}}\"\nuser_event_pattern = \"{events}\"\nsystem_events = [{}]\n",
        system.join(", ")
    )
}
