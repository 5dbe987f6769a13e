//! A refused token says why, to the caller and in the hub's log at the default level: the
//! reason is logged for every endpoint that takes tokens, the token never is.

use nerve_hub::auth::{AccessKeys, Audience, Claims, now_secs};
use reqwest::Method;

use crate::harness::{Hub, JSON, WAIT, refused};

#[tokio::test]
async fn reasons_reach_the_caller_and_the_log_but_tokens_do_not() {
    let hub = Hub::start_with(&[], "", &["--log-level", "info"]);
    let wrong = AccessKeys::new(vec!["not-the-hub-key".into()]);
    let forged = wrong.client_token(&hub.client_audience("chat"), Some("eve"), &[], &[], 600);
    let (status, body) = refused(&hub.url("chat", &forged), Some(JSON)).await;
    assert_eq!(status, 401);
    assert!(body.contains("signature is invalid"), "{body}");

    let expired = AccessKeys::new(vec![hub.key().to_string()]).sign(&Claims {
        aud: Some(Audience::One(hub.client_audience("chat"))),
        exp: now_secs() - 3600,
        ..Default::default()
    });
    let (status, body) = refused(&hub.url("chat", &expired), Some(JSON)).await;
    assert_eq!(status, 401);
    assert!(body.contains("has expired"), "{body}");

    let rest = crate::harness::Rest::new(hub.endpoint().to_string(), "not-the-hub-key");
    let answer = rest
        .call(
            Method::POST,
            "/api/hubs/chat/:send",
            Some(("text/plain", b"x".to_vec())),
        )
        .await;
    assert_eq!(answer.status, 401);

    let bus = wrong.client_token(&hub.client_audience("bus"), Some("eve"), &[], &[], 600);
    let url = format!("ws://127.0.0.1:{}/bus/ws?access_token={bus}", hub.port);
    let (status, body) = refused(&url, Some(JSON)).await;
    assert_eq!(status, 401);
    assert!(body.contains("signature is invalid"), "{body}");

    nerve_testkit::eventually(WAIT, "four refusals in the log", || async {
        (hub.logs().matches("401: token refused").count() >= 4).then_some(())
    })
    .await;
    let logs = hub.logs();
    for reason in ["signature is invalid", "has expired"] {
        assert!(logs.contains(reason), "{logs}");
    }
    for endpoint in ["/client/hubs/chat", "/api/hubs/chat/:send", "/bus/ws"] {
        assert!(logs.contains(endpoint), "{endpoint}: {logs}");
    }
    for token in [&forged, &expired, &bus] {
        let signature = token.rsplit('.').next().expect("signature");
        assert!(!logs.contains(signature), "a token reached the log: {logs}");
    }
}
