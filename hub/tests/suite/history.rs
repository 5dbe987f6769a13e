//! Group history on one node (`[hubs.<hub>] history`): every group message carries an offset;
//! the REST API lists what is kept (newest, or after an offset, paged with `nextLink`) and says
//! when the caps trimmed some away; and a client gone longer than its reliable session comes
//! back by offset and gets what it missed, once and in order.

use std::time::Duration;

use axum::http::Method;
use serde_json::{Value, json};

use crate::harness::{ALL_ROLES, Client, Hub, JSON, RELIABLE, labelled, metric};

const KEY: &str = "history-test-key";

fn hub(toml: &str) -> Hub {
    Hub::start_with(&[KEY], toml, &[])
}

/// Joins `g` (acked) after the `connected` frame.
async fn joined(hub: &Hub, protocol: &str, after: Option<&str>) -> Client {
    let mut c = hub
        .connect("chat", Some("u"), ALL_ROLES, Some(protocol))
        .await;
    assert_eq!(c.next_json().await["event"], "connected");
    let mut join = json!({"type": "joinGroup", "group": "g", "ackId": 1});
    if let Some(a) = after {
        join["after"] = json!(a);
    }
    c.send(join).await;
    c
}

async fn publish(hub: &Hub, text: &str) {
    let r = hub
        .rest(0)
        .call(
            Method::POST,
            "/api/hubs/chat/groups/g/:send",
            Some(("text/plain", text.as_bytes().to_vec())),
        )
        .await;
    assert_eq!(r.status, 202, "{r:?}");
}

async fn list(hub: &Hub, query: &str) -> (u16, Value) {
    let r = hub
        .rest(0)
        .call(
            Method::GET,
            &format!("/api/hubs/chat/groups/g/messages{query}"),
            None,
        )
        .await;
    let v = serde_json::from_str(&r.body).unwrap_or(Value::Null);
    (r.status, v)
}

fn data(page: &Value) -> Vec<String> {
    page["value"]
        .as_array()
        .map(|v| {
            v.iter()
                .filter_map(|m| m["data"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn rest_lists_kept_messages_pages_by_offset_and_says_what_was_trimmed() {
    let hub = hub("[hubs.chat]\nhistory = { max_messages = 5, max_age_secs = 600 }\n");
    let mut c = joined(&hub, JSON, None).await;
    assert_eq!(c.ack(1).await["success"], true);
    for i in 0..8 {
        publish(&hub, &format!("m{i}")).await;
    }
    let mut offsets = Vec::new();
    for i in 0..8 {
        let m = c.until(|v| v["type"] == "message").await;
        assert_eq!(m["data"], format!("m{i}"));
        offsets.push(m["offset"].as_str().expect("offset").to_string());
    }

    // The newest three.
    let (status, page) = list(&hub, "?top=3").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(data(&page), ["m5", "m6", "m7"]);
    assert_eq!(page["value"][0]["offset"], json!(offsets[5]));
    assert_eq!(page["value"][0]["dataType"], "text");
    assert!(
        page["value"][0]["at"]
            .as_str()
            .is_some_and(|a| a.ends_with('Z'))
    );
    assert!(page.get("nextLink").is_none());

    // After m1: m2 was trimmed (five are kept), the history starts at m3; two per page.
    let (_, page) = list(&hub, &format!("?after={}&top=2", offsets[1])).await;
    assert_eq!(data(&page), ["m3", "m4"]);
    assert_eq!(page["trimmed"], true);
    assert_eq!(page["firstOffset"], json!(offsets[3]));
    let next = page["nextLink"].as_str().expect("nextLink");
    let query = &next[next.find('?').expect("query")..];
    let (_, page) = list(&hub, query).await;
    assert_eq!(data(&page), ["m5", "m6"]);
    assert_eq!(page["trimmed"], false);

    let trimmed = labelled(
        &hub.metrics().await,
        "nerve_history_trimmed_total{result=\"max_messages\"}",
    );
    assert!(trimmed >= 3.0, "trimmed {trimmed}");

    // Bad input: a 400 with a JSON error naming the parameter.
    for (q, word) in [
        ("?after=yesterday", "offset"),
        ("?top=0", "top"),
        ("?top=5000", "top"),
    ] {
        let (status, body) = list(&hub, q).await;
        assert_eq!(status, 400, "{q}: {body}");
        assert!(
            body["message"].as_str().is_some_and(|m| m.contains(word)),
            "{q}: {body}"
        );
    }
}

#[tokio::test]
async fn groups_without_a_history_have_none_to_list() {
    let hub = hub("[hubs.chat]\nhistory = { groups = [\"kept.*\"] }\n");
    let (status, body) = list(&hub, "").await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("history"))
    );
    let mut c = joined(&hub, JSON, None).await;
    c.ack(1).await;
    publish(&hub, "plain").await;
    let m = c.until(|v| v["type"] == "message").await;
    assert!(m.get("offset").is_none(), "{m}");
    let other = Hub::start_with(&[KEY], "", &[]);
    let r = other
        .rest(0)
        .call(Method::GET, "/api/hubs/chat/groups/kept.x/messages", None)
        .await;
    assert_eq!(r.status, 404);
}

/// A client away for five minutes, without waiting five minutes: the reliable session window
/// is one second here, and the client stays away until its session is provably gone (a resume
/// is refused), several windows in all, as it would be after any absence longer than the
/// window (30 s by default). It comes back on a new connection, joins with the offset of the
/// last message it saw, and gets every message sent meanwhile once, in order, before the ack;
/// then live messages follow without a duplicate.
#[tokio::test]
async fn a_client_away_longer_than_its_session_catches_up_by_offset() {
    let hub = hub("[limits]\nreconnect_window_secs = 1\n\
         [hubs.chat]\nhistory = { max_messages = 100, max_age_secs = 600 }\n");
    let mut c = joined(&hub, RELIABLE, None).await;
    assert_eq!(c.ack(1).await["success"], true);
    publish(&hub, "seen").await;
    let m = c.until(|v| v["type"] == "message").await;
    let last = m["offset"].as_str().expect("offset").to_string();
    c.drop_socket();

    let missed: Vec<String> = (0..6).map(|i| format!("missed-{i}")).collect();
    for m in &missed[..3] {
        publish(&hub, m).await;
    }
    nerve_testkit::eventually(Duration::from_secs(10), "session expiry", || async {
        (metric(&hub.metrics().await, "nerve_connections") == 0.0).then_some(())
    })
    .await;
    for m in &missed[3..] {
        publish(&hub, m).await;
    }

    let mut back = joined(&hub, RELIABLE, Some(&last)).await;
    let mut got = Vec::new();
    let mut offsets = vec![last.clone()];
    loop {
        let v = back
            .until(|v| v["type"] == "message" || v["type"] == "ack")
            .await;
        if v["type"] == "ack" {
            assert_eq!(v["success"], true, "{v}");
            break;
        }
        got.push(v["data"].as_str().unwrap_or_default().to_string());
        offsets.push(v["offset"].as_str().unwrap_or_default().to_string());
    }
    assert_eq!(got, missed, "every missed message, once, in order");
    let key = |o: &String| {
        let (ms, seq) = o.split_once('-').unwrap_or_default();
        (
            ms.parse::<u64>().unwrap_or(0),
            seq.parse::<u64>().unwrap_or(0),
        )
    };
    assert!(
        offsets.windows(2).all(|w| key(&w[0]) < key(&w[1])),
        "{offsets:?}"
    );

    publish(&hub, "live").await;
    let v = back.until(|v| v["type"] == "message").await;
    assert_eq!(v["data"], "live");
}
