//! A `/metrics` scrape taken during an end-to-end run holds every counter that run moved:
//! connections, joins, messages and bytes in and out, acks, auth failures, protocol errors,
//! REST latency by operation and limit violations by kind.

use axum::http::Method;
use serde_json::json;

use crate::harness::{ALL_ROLES, Client, Hub, JSON, labelled, metric, refused};

#[tokio::test]
async fn a_scrape_during_a_run_shows_the_counters_that_moved() {
    let hub = Hub::start_with(
        &["metrics-key"],
        "[limits]\nmax_groups_per_connection = 1\n",
        &[],
    );
    let port = hub.port;
    let before = hub.metrics().await;
    assert_eq!(metric(&before, "nerve_connections"), 0.0, "{before}");

    let url = hub.client_url("chat", Some("alice"), ALL_ROLES);
    let mut a = Client::connect(&url, Some(JSON)).await.expect("connect");
    a.next_json().await;
    a.send(json!({"type": "joinGroup", "group": "g", "ackId": 1}))
        .await;
    assert_eq!(a.ack(1).await["success"], true);
    a.send(json!({"type": "joinGroup", "group": "h", "ackId": 2}))
        .await;
    assert_eq!(a.ack(2).await["success"], false);
    a.send(
        json!({"type": "sendToGroup", "group": "g", "dataType": "text", "data": "hi", "ackId": 3}),
    )
    .await;
    a.ack(3).await;
    a.until(|v| v["type"] == "message" && v["data"] == "hi")
        .await;
    let rest = hub.rest(0);
    let sent = rest
        .call(
            Method::POST,
            "/api/hubs/chat/groups/g/:send",
            Some(("text/plain", b"from rest".to_vec())),
        )
        .await;
    assert_eq!(sent.status, 202, "{}", sent.body);
    a.until(|v| v["type"] == "message" && v["data"] == "from rest")
        .await;
    let bad = format!("ws://127.0.0.1:{port}/client/hubs/chat?access_token=not.a.token");
    let (status, _) = refused(&bad, Some(JSON)).await;
    assert_eq!(status, 401);
    a.send_raw(tokio_tungstenite::tungstenite::Message::Text(
        "{not json".into(),
    ))
    .await;
    a.closed().await;

    let s = hub.metrics().await;
    let moved = [
        ("nerve_connections_opened_total", 1.0),
        ("nerve_group_joins_total", 1.0),
        ("nerve_messages_in_total{path=\"ws\"}", 4.0),
        ("nerve_messages_out_total", 2.0),
        ("nerve_acks_total{result=\"ok\"}", 2.0),
        ("nerve_auth_failures_total{result=\"malformed\"}", 1.0),
        ("nerve_protocol_errors_total{result=\"bad_frame\"}", 1.0),
        (
            "nerve_rest_request_duration_seconds_count{route=\"sendToGroup\"}",
            1.0,
        ),
        ("nerve_limit_violations_total{kind=\"groups\"}", 1.0),
    ];
    for (name, at_least) in moved {
        let v = if name.contains('{') {
            labelled(&s, name)
        } else {
            metric(&s, name)
        };
        assert!(v >= at_least, "{name} = {v}, expected >= {at_least}\n{s}");
    }
    for family in [
        "nerve_redis_latency_seconds",
        "nerve_bus_depth",
        "nerve_bus_dead_letters",
    ] {
        assert!(s.contains(&format!("# TYPE {family}")), "{family}\n{s}");
    }
    hub.wait_for_metric("nerve_connections", "the connection gauge to drop", |n| {
        n == 0.0
    })
    .await;
}
