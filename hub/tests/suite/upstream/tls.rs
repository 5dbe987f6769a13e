//! HTTPS upstreams: the real binary calls an event handler served over TLS with a certificate
//! from a private CA, trusted through `[upstream] ca_file`; a hub without that file refuses
//! the certificate and the event fails with an error ack, never reaching the handler.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::json;

use crate::harness::{Hub, JSON, Seen, TempFile, Upstream, config_check, handler_toml_at};

const KEY: &str = "upstream-tls-key";

/// A handler for every user event of `chat` on the HTTPS upstream at `port`, named `localhost`
/// as its certificate is.
fn handler_toml(port: u16, extra: &str) -> String {
    handler_toml_at(
        "chat",
        &format!("https://localhost:{port}"),
        "*",
        &[],
        extra,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstreams_are_verified_against_the_configured_roots() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    let up = Upstream::start_tls(
        &cert.cert.pem(),
        &cert.key_pair.serialize_pem(),
        Arc::new(|s: &Seen| {
            let text = String::from_utf8_lossy(&s.body).to_string();
            Some((StatusCode::OK, axum::Json(json!({ "echo": text }))).into_response())
        }),
    )
    .await;
    let ca = TempFile::write("pem", &cert.cert.pem());

    // Trusting the CA: the event goes up over TLS and the reply comes back.
    let trusting = Hub::start_with(
        &[KEY],
        &handler_toml(
            up.port,
            &format!("[upstream]\nca_file = \"{}\"\n", ca.path().display()),
        ),
        &[],
    );
    let (mut c, _) = trusting.client("chat", Some("alice"), Some(JSON)).await;
    c.send(json!({"type": "event", "event": "echo", "dataType": "text", "data": "over tls", "ackId": 1}))
        .await;
    let reply = c.until(|v| v["type"] == "message").await;
    assert_eq!(reply["data"]["echo"], "over tls");
    assert_eq!(c.ack(1).await["success"], true);
    let seen = up.wait_for("azure.webpubsub.user.echo", |_| true).await;
    assert_eq!(seen.path, "/api/chat/echo");

    // Without the CA, the certificate is refused: an error ack, and no request reached it.
    let before = up.count("azure.webpubsub.user.echo");
    let strict = Hub::start_with(&[KEY], &handler_toml(up.port, ""), &[]);
    let (mut c, _) = strict.client("chat", Some("bob"), Some(JSON)).await;
    c.send(json!({"type": "event", "event": "echo", "dataType": "text", "data": "x", "ackId": 1}))
        .await;
    let ack = c.ack(1).await;
    assert_eq!(ack["success"], false, "{ack}");
    assert_eq!(up.count("azure.webpubsub.user.echo"), before);
}

#[test]
fn a_missing_or_empty_ca_file_fails_the_config_check() {
    let empty = TempFile::write("pem", "not a certificate\n");
    for (path, expected) in [
        (
            std::env::temp_dir().join("nerve-no-such-ca.pem"),
            "nerve-no-such-ca.pem",
        ),
        (empty.path().to_path_buf(), "holds no certificate"),
    ] {
        let out = config_check(&format!("[upstream]\nca_file = \"{}\"\n", path.display()));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{text}");
        assert!(text.contains(expected), "{text}");
    }
}
