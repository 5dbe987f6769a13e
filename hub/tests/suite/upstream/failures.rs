//! Upstream failures and notifications: an upstream that hangs (timeouts, and the session keeps
//! serving meanwhile), returns 500, or refuses the validation handshake; retries of
//! notifications; group joined/left events; handlers configured by flag.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use axum::response::IntoResponse;
use serde_json::json;

use crate::harness::{
    Client, Hub, JSON, Seen, Upstream, WAIT, handler_toml, http_get, metric, refused,
};

const KEY: &str = "upstream-failure-key";
const ROLES: &[&str] = &["webpubsub.joinLeaveGroup"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_and_failing_upstreams_time_out_or_drop_without_stalling_the_session() {
    let up = Upstream::start(Arc::new(|s: &Seen| {
        match s.header("ce-type").unwrap_or_default() {
            "azure.webpubsub.user.slow" => None,
            "azure.webpubsub.user.boom" => {
                Some((StatusCode::INTERNAL_SERVER_ERROR, "kaput").into_response())
            }
            "azure.webpubsub.sys.connect" if s.json()["claims"]["sub"] == json!(["hang"]) => None,
            _ => Some(StatusCode::NO_CONTENT.into_response()),
        }
    }))
    .await;
    let toml = handler_toml(
        "chat",
        up.port,
        "slow,boom",
        &["connect"],
        "[upstream]\ntimeout_ms = 700\n",
    );
    let n = Hub::start_with(&[KEY], &toml, &[]);
    let rest = n.rest(0);

    // A hanging event: while it is in flight the session still answers pings and delivers.
    let (mut c, id) = n.client("chat", Some("u"), Some(JSON)).await;
    let started = Instant::now();
    c.send(json!({"type": "event", "event": "slow", "data": 1, "ackId": 1}))
        .await;
    c.send(json!({"type": "ping"})).await;
    assert_eq!(c.next_json().await, json!({"type": "pong"}));
    let r = rest
        .call(
            Method::POST,
            &format!("/api/hubs/chat/connections/{id}/:send"),
            Some(("text/plain", b"meanwhile".to_vec())),
        )
        .await;
    assert_eq!(r.status, 202);
    assert_eq!(c.next_json().await["data"], "meanwhile");
    let ack = c.ack(1).await;
    assert_eq!(
        (ack["success"].clone(), ack["error"]["name"].clone()),
        (json!(false), json!("Timeout"))
    );
    assert!(started.elapsed() >= Duration::from_millis(700));
    // The failed event drops the connection, as the service does.
    let closed = c.closed().await;
    assert_eq!(closed.code, Some(1008));
    assert!(
        closed.frames.last().expect("disconnected")["message"]
            .as_str()
            .expect("message")
            .contains("slow")
    );

    // A 500: error ack, then the connection is dropped. invoke failures only fail the call.
    let mut c = Client::connect(&n.client_url("chat", Some("u"), &[]), Some(JSON))
        .await
        .expect("connect");
    c.next_json().await;
    c.send(json!({"type": "invoke", "invocationId": "1", "event": "boom", "data": 1}))
        .await;
    let r = c.next_json().await;
    assert_eq!(
        (
            r["type"].clone(),
            r["success"].clone(),
            r["error"]["name"].clone()
        ),
        (
            json!("invokeResponse"),
            json!(false),
            json!("InternalServerError")
        )
    );
    c.send(json!({"type": "event", "event": "boom", "data": 1, "ackId": 9}))
        .await;
    let ack = c.ack(9).await;
    assert!(
        ack["error"]["message"]
            .as_str()
            .expect("message")
            .contains("500"),
        "{ack}"
    );
    assert_eq!(c.closed().await.code, Some(1008));
    // Events no handler takes are still answered as before (NotFound), without a call.
    let mut c = Client::connect(&n.client_url("chat", Some("u"), &[]), Some(JSON))
        .await
        .expect("connect");
    c.next_json().await;
    c.send(json!({"type": "event", "event": "unhandled", "data": 1, "ackId": 2}))
        .await;
    assert_eq!(c.ack(2).await["error"]["name"], "NotFound");

    // A hanging connect handler fails the upgrade after the timeout.
    let (status, body) = refused(&n.client_url("chat", Some("hang"), &[]), Some(JSON)).await;
    assert_eq!(status, 500, "{body}");

    // Every call is counted by outcome.
    let scrape = http_get(n.port, "/metrics").await;
    for (result, name) in [
        ("timeout", "nerve_upstream_failures_total"),
        ("status", "nerve_upstream_failures_total"),
    ] {
        let line = format!("{name}{{result=\"{result}\"}}");
        assert!(
            scrape.lines().any(|l| l.starts_with(&line)),
            "{line} missing from:\n{scrape}"
        );
    }
    assert!(
        metric(&scrape, "nerve_upstream_calls_total") >= 3.0,
        "{scrape}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_retry_and_group_events_arrive() {
    let attempts = Arc::new(AtomicUsize::new(0));
    let a = attempts.clone();
    let up = Upstream::start(Arc::new(move |s: &Seen| {
        Some(match s.header("ce-type").unwrap_or_default() {
            // The first connected attempt fails; the retry succeeds.
            "azure.webpubsub.sys.connected" if a.fetch_add(1, Ordering::SeqCst) == 0 => {
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
            _ => StatusCode::OK.into_response(),
        })
    }))
    .await;
    let toml = handler_toml(
        "chat",
        up.port,
        "",
        &["connected", "disconnected", "joined", "left"],
        "[upstream]\nretry_backoff_ms = 50\n",
    );
    let n = Hub::start_with(&[KEY], &toml, &[]);
    let mut c = Client::connect(&n.client_url("chat", Some("g"), ROLES), Some(JSON))
        .await
        .expect("connect");
    let id = c.next_json().await["connectionId"]
        .as_str()
        .expect("id")
        .to_string();
    let mine = |s: &Seen| s.header("ce-connectionid") == Some(id.as_str());
    nerve_testkit::eventually(WAIT, "connected to be retried", || {
        let n = up.count("azure.webpubsub.sys.connected");
        async move { (n >= 2).then_some(()) }
    })
    .await;

    c.send(json!({"type": "joinGroup", "group": "room", "ackId": 1}))
        .await;
    assert_eq!(c.ack(1).await["success"], true);
    let j = up.wait_for("azure.webpubsub.gp.joined", mine).await;
    assert_eq!(
        (j.json(), j.header("ce-eventname")),
        (json!({"group": "room"}), Some("joined"))
    );
    c.send(json!({"type": "leaveGroup", "group": "room", "ackId": 2}))
        .await;
    assert_eq!(c.ack(2).await["success"], true);
    assert_eq!(
        up.wait_for("azure.webpubsub.gp.left", mine).await.json(),
        json!({"group": "room"})
    );
    // REST membership changes are reported too.
    let rest = n.rest(0);
    let r = rest
        .call(
            Method::PUT,
            &format!("/api/hubs/chat/groups/viaRest/connections/{id}"),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    up.wait_for("azure.webpubsub.gp.joined", |s| {
        mine(s) && s.json() == json!({"group": "viaRest"})
    })
    .await;

    let r = rest
        .call(
            Method::POST,
            "/api/hubs/chat/:closeConnections?reason=maintenance",
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    c.closed().await;
    let d = up.wait_for("azure.webpubsub.sys.disconnected", mine).await;
    assert_eq!(d.json(), json!({"reason": "maintenance"}));
    // No user event handler: nothing but notifications reached the upstream.
    assert!(
        up.seen()
            .iter()
            .all(|s| !s.header("ce-type").unwrap_or_default().contains(".user."))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_validation_handshake_blocks_events_and_flags_configure_handlers() {
    let up = Upstream::start_with(
        false,
        Arc::new(|_: &Seen| Some(StatusCode::NO_CONTENT.into_response())),
    )
    .await;
    let flag = format!(
        "hub=chat;url=http://127.0.0.1:{}/hooks/{{event}};events=*;system=connect",
        up.port
    );
    let n = Hub::start_with(
        &[KEY],
        "",
        &["--upstream", &flag, "--upstream-timeout-ms", "2000"],
    );
    let (status, body) = refused(&n.client_url("chat", Some("u"), &[]), Some(JSON)).await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("validation"), "{body}");
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("OPTIONS", "/hooks/validate")
    );
    // Other hubs have no handler and connect as usual.
    let mut c = Client::connect(&n.client_url("other", Some("u"), &[]), Some(JSON))
        .await
        .expect("connect");
    assert_eq!(c.next_json().await["event"], "connected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_event_lane_fails_new_events_at_once() {
    let up = Upstream::start(Arc::new(|_: &Seen| None)).await;
    let toml = handler_toml(
        "chat",
        up.port,
        "*",
        &[],
        "[upstream]\ntimeout_ms = 3000\nmax_pending_per_connection = 1\n",
    );
    let n = Hub::start_with(&[KEY], &toml, &[]);
    let mut c = Client::connect(&n.client_url("chat", Some("u"), &[]), Some(JSON))
        .await
        .expect("connect");
    c.next_json().await;
    let started = Instant::now();
    for id in 1..=3 {
        c.send(json!({"type": "event", "event": "e", "data": id, "ackId": id}))
            .await;
    }
    // One event is in flight and at most one waits: the third is refused long before the
    // upstream's timeout.
    let ack = c.ack(3).await;
    assert_eq!(ack["success"], false);
    assert!(
        ack["error"]["message"]
            .as_str()
            .expect("message")
            .contains("Too many events"),
        "{ack}"
    );
    assert!(started.elapsed() < Duration::from_millis(3000));
}
