//! Security of the real binary: TLS with a self-signed certificate (the printed endpoint turns
//! https/wss and clients connect over it), the browser origin allow-list, CORS for REST, and
//! no secret in the logs even at debug level.

use std::sync::Arc;

use axum::http::Method;
use futures_util::StreamExt;
use nerve_hub::auth::{Audience, Claims, now_secs};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::harness::{Hub, JSON, TempFile, WAIT};

const KEY: &str = "security-test-key-9f8e7d6c5b4a";

#[tokio::test]
async fn tls_serves_https_and_wss_with_a_self_signed_certificate() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    let cert_file = TempFile::write("pem", &cert.cert.pem());
    let key_file = TempFile::write("pem", &cert.key_pair.serialize_pem());
    let hub = Hub::start_with(
        &[KEY],
        "",
        &[
            "--tls-cert",
            cert_file.path().to_str().expect("path"),
            "--tls-key",
            key_file.path().to_str().expect("path"),
        ],
    );
    assert!(
        hub.endpoint().starts_with("https://127.0.0.1:"),
        "{:?}",
        hub.banner()
    );
    assert!(
        hub.banner()
            .iter()
            .any(|l| l.starts_with("wss://127.0.0.1:")),
        "{:?}",
        hub.banner()
    );
    let port = hub.port;

    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(cert.cert.der().to_vec()))
        .expect("root");
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = TlsConnector::from(Arc::new(config));
    let tls = |connector: TlsConnector| async move {
        let tcp = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let name = ServerName::try_from("localhost").expect("name");
        connector.connect(name, tcp).await.expect("TLS handshake")
    };

    // HTTPS.
    let mut s = tls(connector.clone()).await;
    s.write_all(b"GET /api/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");

    // WSS with a token whose audience is the https endpoint.
    let token = hub.token("chat", Some("tls-user"), &[], &[]);
    let url = hub.url("chat", &token);
    assert!(
        url.starts_with(&format!("wss://127.0.0.1:{port}/")),
        "{url}"
    );
    let mut req = url.into_client_request().expect("request");
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", JSON.parse().expect("header"));
    let (mut ws, _) = tokio_tungstenite::client_async(req, tls(connector.clone()).await)
        .await
        .expect("wss handshake");
    let first = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("connected frame in time")
        .expect("frame")
        .expect("frame");
    assert!(
        first.to_text().expect("text").contains("\"connected\""),
        "{first:?}"
    );

    // Plain HTTP on the TLS port gets no HTTP answer.
    let mut plain = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    plain
        .write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(WAIT, plain.read_to_end(&mut buf)).await;
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
}

#[tokio::test]
async fn browser_origins_are_checked_and_rest_answers_cors() {
    let hub = Hub::start_with(
        &[KEY],
        "[security]\nallowed_origins = [\"https://app.example\"]\ncors_origins = [\"https://app.example\"]\n",
        &[],
    );
    let port = hub.port;
    let url = hub.client_url("chat", Some("u"), &[]);
    let upgrade = |origin: Option<&'static str>| {
        let url = url.clone();
        async move {
            let mut req = url.into_client_request().expect("request");
            if let Some(o) = origin {
                req.headers_mut()
                    .insert("Origin", o.parse().expect("origin"));
            }
            tokio_tungstenite::connect_async(req).await
        }
    };
    assert!(upgrade(None).await.is_ok(), "servers send no Origin");
    assert!(upgrade(Some("https://app.example")).await.is_ok());
    match upgrade(Some("https://evil.example")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 403);
            let body =
                String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).to_string();
            assert!(body.contains("OriginNotAllowed"), "{body}");
        }
        other => panic!("expected 403, got {other:?}"),
    }

    // CORS preflight and the actual call.
    let http = reqwest::Client::new();
    let api = format!("http://127.0.0.1:{port}/api/hubs/chat/:send");
    let pre = http
        .request(reqwest::Method::OPTIONS, &api)
        .header("Origin", "https://app.example")
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "authorization,content-type",
        )
        .send()
        .await
        .expect("preflight");
    assert!(pre.status().is_success(), "{}", pre.status());
    assert_eq!(
        pre.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let evil = http
        .request(reqwest::Method::OPTIONS, &api)
        .header("Origin", "https://evil.example")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .expect("preflight");
    assert!(evil.headers().get("access-control-allow-origin").is_none());
    let sent = hub
        .rest(0)
        .call(
            Method::POST,
            "/api/hubs/chat/:send",
            Some(("text/plain", b"x".to_vec())),
        )
        .await;
    assert_eq!(sent.status, 202, "{}", sent.body);
}

#[tokio::test]
async fn no_secret_reaches_the_logs_at_debug_level() {
    let hub = Hub::start_with(&[KEY], "", &["--log-level", "debug"]);
    let port = hub.port;
    let aud = hub.client_audience("chat");
    let good = hub.token("chat", Some("log-user"), &[], &[]);
    let mut secrets = vec![KEY.to_string(), good.clone()];
    // A good WebSocket session.
    let mut req = hub
        .url("chat", &good)
        .into_client_request()
        .expect("request");
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", JSON.parse().expect("header"));
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("connect");
    ws.next().await;
    drop(ws);
    // A refused token (expired) and a REST call with a Bearer token.
    let rest = hub.rest(0);
    let expired = rest.token_with(Claims {
        aud: Some(Audience::One(aud.clone())),
        exp: now_secs() - 100,
        ..Default::default()
    });
    let bad_url = format!("ws://127.0.0.1:{port}/client/hubs/chat?access_token={expired}");
    assert!(tokio_tungstenite::connect_async(bad_url).await.is_err());
    let api = format!("http://127.0.0.1:{port}/api/hubs/chat/:send");
    let rest_token = rest.token_with(Claims {
        aud: Some(Audience::One(api.clone())),
        exp: now_secs() + 600,
        ..Default::default()
    });
    let resp = reqwest::Client::new()
        .post(&api)
        .bearer_auth(&rest_token)
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .expect("rest");
    assert_eq!(resp.status().as_u16(), 202);
    secrets.extend([expired, rest_token]);
    // Wait until the session's close reached the logs, then look for secrets.
    let logs = nerve_testkit::eventually(WAIT, "debug logs", || {
        let logs = hub.logs();
        async move { logs.contains("connection closed").then_some(logs) }
    })
    .await;
    for s in &secrets {
        let sig = s.rsplit('.').next().unwrap_or(s);
        assert!(!logs.contains(sig), "a secret reached the logs:\n{logs}");
    }
}
