//! Every limit of `[limits]` enforced by the real binary: the client sees a clear error (a close
//! code and reason, an ack error, or an HTTP status with a JSON body) and
//! `nerve_limit_violations_total{kind=…}` moves in a `/metrics` scrape.

use std::time::Duration;

use axum::http::Method;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{ALL_ROLES, Client, Hub, JSON, RELIABLE, WAIT, refused, violations};

#[tokio::test]
async fn message_rate_closes_with_1008_and_counts() {
    let hub = Hub::start_with_config(
        "[limits]\nmessages_per_sec = 5\nmessage_burst = 5\nbytes_per_sec = 0\n",
    );
    let mut c = hub.connect("chat", Some("u1"), ALL_ROLES, Some(JSON)).await;
    c.next_json().await; // connected
    for i in 0..6u64 {
        c.send(json!({"type": "joinGroup", "group": format!("g{i}")}))
            .await;
    }
    let closed = c.closed().await;
    assert_eq!(closed.code, Some(1008), "{closed:?}");
    assert!(
        closed.reason.contains("5 messages per second"),
        "{closed:?}"
    );
    assert!(
        closed.frames.iter().any(|f| f["type"] == "system"
            && f["event"] == "disconnected"
            && f["message"]
                .as_str()
                .is_some_and(|m| m.contains("Rate limit"))),
        "{closed:?}"
    );
    assert_eq!(violations(&hub.metrics().await, "message_rate"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_flooding_past_its_rate_is_told_why_before_the_close() {
    let hub = Hub::start_with_config(
        "[limits]\nmessages_per_sec = 50\nmessage_burst = 100\nbytes_per_sec = 0\n",
    );
    // Several rounds: without a graceful close the reset wins the race often, not always.
    let protocols = [JSON, RELIABLE, JSON, RELIABLE, JSON, RELIABLE];
    for (i, protocol) in protocols.into_iter().enumerate() {
        let user = format!("u{i}");
        let mut c = hub
            .connect("chat", Some(&user), ALL_ROLES, Some(protocol))
            .await;
        c.next_json().await; // connected
        // It keeps writing after the hub has had enough, and stops at the first write the
        // socket refuses: the goodbye must reach it before any such refusal.
        let frame = json!({"type": "sendToGroup", "group": "g", "dataType": "text", "data": "x".repeat(512)});
        let closed = c.flood(frame).await;
        assert_eq!(closed.code, Some(1008), "{protocol}: {closed:?}");
        assert!(
            closed.reason.contains("50 messages per second"),
            "{protocol}: {closed:?}"
        );
        assert!(
            closed.frames.iter().any(|f| f["type"] == "system"
                && f["event"] == "disconnected"
                && f["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("Rate limit"))),
            "{protocol}: {closed:?}"
        );
    }
    assert_eq!(violations(&hub.metrics().await, "message_rate"), 6.0);
}

#[tokio::test]
async fn byte_rate_closes_with_1008_and_counts() {
    let hub = Hub::start_with_config(
        "[limits]\nmax_frame_bytes = 1024\noutbox_bytes = 65536\nmessages_per_sec = 0\nbytes_per_sec = 1024\nbyte_burst = 1024\n",
    );
    let mut c = hub.connect("chat", Some("u1"), ALL_ROLES, Some(JSON)).await;
    c.next_json().await;
    let data = "x".repeat(400);
    for _ in 0..3 {
        c.send(json!({"type": "sendToGroup", "group": "g", "dataType": "text", "data": data}))
            .await;
    }
    let closed = c.closed().await;
    assert_eq!(closed.code, Some(1008), "{closed:?}");
    assert!(
        closed.reason.contains("1024 bytes per second"),
        "{closed:?}"
    );
    assert_eq!(violations(&hub.metrics().await, "byte_rate"), 1.0);
}

#[tokio::test]
async fn node_connection_limit_answers_503_then_frees_the_place() {
    let hub = Hub::start_with_config("[limits]\nmax_connections = 2\n");
    let mut a = hub.connect("chat", Some("a"), &[], Some(JSON)).await;
    let _b = hub.connect("chat", Some("b"), &[], Some(JSON)).await;
    let url = hub.url("chat", &hub.token("chat", Some("c"), &[], &[]));
    let (status, body) = refused(&url, Some(JSON)).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("ServerBusy") && body.contains("2 connections"),
        "{body}"
    );
    assert_eq!(violations(&hub.metrics().await, "node_connections"), 1.0);
    // A closed connection gives its place back.
    a.send_raw(tokio_tungstenite::tungstenite::Message::Close(None))
        .await;
    a.closed().await;
    let reconnected = nerve_testkit::eventually(WAIT, "a place to free up", || {
        let url = url.clone();
        async move { Client::connect(&url, Some(JSON)).await.ok() }
    })
    .await;
    drop(reconnected);
}

#[tokio::test]
async fn user_connection_limit_answers_429() {
    let hub = Hub::start_with_config("[limits]\nmax_connections_per_user = 1\n");
    let _first = hub.connect("chat", Some("alice"), &[], Some(JSON)).await;
    let url = hub.url("chat", &hub.token("chat", Some("alice"), &[], &[]));
    let (status, body) = refused(&url, Some(JSON)).await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("TooManyConnections"), "{body}");
    // Another user, and an anonymous-style connection without a user, are not affected.
    let _bob = hub.connect("chat", Some("bob"), &[], Some(JSON)).await;
    let _nobody = hub.connect("chat", None, &[], Some(JSON)).await;
    assert_eq!(violations(&hub.metrics().await, "user_connections"), 1.0);
}

#[tokio::test]
async fn group_limit_answers_a_forbidden_ack() {
    let hub = Hub::start_with_config("[limits]\nmax_groups_per_connection = 2\n");
    let mut c = hub.connect("chat", Some("u"), ALL_ROLES, Some(JSON)).await;
    c.next_json().await;
    for (i, g) in ["a", "b", "a"].iter().enumerate() {
        c.send(json!({"type": "joinGroup", "group": g, "ackId": i + 1}))
            .await;
        assert_eq!(c.ack(i as u64 + 1).await["success"], true);
    }
    c.send(json!({"type": "joinGroup", "group": "c", "ackId": 9}))
        .await;
    let ack = c.ack(9).await;
    assert_eq!(ack["success"], false, "{ack}");
    assert_eq!(ack["error"]["name"], "Forbidden", "{ack}");
    assert!(
        ack["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("at most 2 groups")),
        "{ack}"
    );
    // Leaving one makes room again.
    c.send(json!({"type": "leaveGroup", "group": "a", "ackId": 10}))
        .await;
    assert_eq!(c.ack(10).await["success"], true);
    c.send(json!({"type": "joinGroup", "group": "c", "ackId": 11}))
        .await;
    assert_eq!(c.ack(11).await["success"], true);
    assert_eq!(violations(&hub.metrics().await, "groups"), 1.0);
}

#[tokio::test]
async fn rest_rate_is_per_access_key_and_answers_429_with_retry_after() {
    // Two active keys (a rotation): each key has its own budget, whoever calls with it.
    let hub = Hub::start_with(
        &["rest-rate-key-one", "rest-rate-key-two"],
        "[limits]\nrest_requests_per_sec = 1\nrest_burst = 3\n",
        &[],
    );
    let first = hub.rest(0);
    let second = hub.rest(1);
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let a = first
            .call(Method::HEAD, "/api/hubs/chat/users/nobody", None)
            .await;
        statuses.push(a.status);
        if a.status == 429 {
            assert_eq!(
                a.headers.get("retry-after").map(|v| v.as_bytes()),
                Some(&b"1"[..])
            );
            let get = first
                .call(Method::GET, "/api/hubs/chat/groups/g/connections", None)
                .await;
            assert_eq!(get.status, 429);
            assert_eq!(get.json()["code"], "TooManyRequests", "{}", get.body);
            break;
        }
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    // The other key, from the same address, still has its whole budget.
    for _ in 0..2 {
        let a = second
            .call(Method::HEAD, "/api/hubs/chat/users/nobody", None)
            .await;
        assert_eq!(a.status, 404, "{}", a.body);
    }
    // Calls that fail authentication are limited per address: 401 until the budget is spent,
    // then 429, and neither key's budget pays for them.
    let url = format!("http://127.0.0.1:{}/api/hubs/chat/users/nobody", hub.port);
    let mut refused = Vec::new();
    for _ in 0..6 {
        let a = second
            .call_with_token(Method::HEAD, &url, None, Some("not-a-token"))
            .await;
        refused.push(a.status);
        if a.status == 429 {
            break;
        }
    }
    assert_eq!(refused[0], 401, "{refused:?}");
    assert_eq!(refused.last(), Some(&429), "{refused:?}");
    let scrape = hub.metrics().await;
    assert!(violations(&scrape, "rest_rate") >= 3.0, "{scrape}");
    assert!(
        scrape.contains("nerve_rest_request_duration_seconds_count{route=\"userExists\"}"),
        "{scrape}"
    );
}

/// Reads until the server closes the socket; returns how long that took.
async fn time_to_close(mut s: TcpStream) -> Duration {
    let started = std::time::Instant::now();
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(WAIT, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("the hub kept a stalled request open for {WAIT:?}"),
        }
    }
}

#[tokio::test]
async fn slow_and_silent_request_heads_are_dropped() {
    let hub = Hub::start_with_config("[limits]\nhandshake_timeout_ms = 500\n");
    let mut slow = TcpStream::connect(("127.0.0.1", hub.port))
        .await
        .expect("connect");
    slow.write_all(b"GET /client/hubs/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .await
        .expect("write");
    let silent = TcpStream::connect(("127.0.0.1", hub.port))
        .await
        .expect("connect");
    let (a, b) = tokio::join!(time_to_close(slow), time_to_close(silent));
    assert!(
        a < Duration::from_secs(5) && b < Duration::from_secs(5),
        "{a:?} {b:?}"
    );
    // The hub still serves everyone else.
    let mut c = hub.connect("chat", Some("u"), &[], Some(JSON)).await;
    assert_eq!(c.next_json().await["event"], "connected");
    let scrape = hub.metrics().await;
    assert!(violations(&scrape, "handshake_timeout") >= 1.0, "{scrape}");
}
