//! Group history across nodes sharing one Redis: a client whose node is killed comes back on
//! another node by offset and gets what it missed, once each and in order; the REST listing
//! reads the same capped stream from any node and says when its cap trimmed messages away.

use nerve_e2e::{Client, Node, client_token, rest};
use nerve_testkit::RedisServer;
use serde_json::{Value, json};

/// The hub keeps 100 messages per group for ten minutes.
const HISTORY: &str = "[hubs.chat]\nhistory = { max_messages = 100, max_age_secs = 600 }\n";

fn texts(c: &Client) -> Vec<String> {
    c.received()
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

async fn send(port: u16, msg: &str) {
    let a = rest(port, "POST", "/groups/g/:send", Some(msg)).await;
    assert_eq!(a.status, 202, "send {msg}: {a:?}");
}

/// The client speaks the plain JSON protocol, so nothing of it survives the node: no session
/// to resume, as after an absence longer than any reconnect window. What brings it back is
/// the offset of the last message it saw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_whose_node_was_killed_catches_up_by_offset_on_another_node() {
    let redis = RedisServer::start();
    let mut a = Node::start_with("ha", &[redis.url()], false, HISTORY);
    let b = Node::start_with("hb", &[redis.url()], false, HISTORY);
    a.wait_ready().await;
    b.wait_ready().await;

    let c = Client::connect(a.port, &client_token(Some("away")), false, &[]).await;
    c.join("g").await;
    for i in 0..5 {
        send(b.port, &format!("before-{i}")).await;
    }
    c.wait_count(5).await;
    let offsets = c.offsets();
    assert!(offsets.iter().all(Option::is_some), "offsets: {offsets:?}");
    let last = offsets[4].clone().unwrap_or_default();

    a.kill();
    let missed: Vec<String> = (0..10).map(|i| format!("during-{i}")).collect();
    for m in &missed {
        send(b.port, m).await;
    }

    let back = Client::connect(b.port, &client_token(Some("away")), false, &[]).await;
    let ack = back
        .request(json!({"type": "joinGroup", "group": "g", "after": last}))
        .await;
    assert_eq!(ack["success"], json!(true), "{ack}");
    back.wait_count(missed.len()).await;
    send(b.port, "live").await;
    back.wait_count(missed.len() + 1).await;

    let mut expected = missed.clone();
    expected.push("live".into());
    assert_eq!(texts(&back), expected, "once each, in order");
    let got: Vec<String> = back.offsets().into_iter().flatten().collect();
    assert_eq!(got.len(), expected.len());
    assert!(
        got.windows(2).all(|w| key(&w[0]) < key(&w[1])),
        "offsets increase: {got:?}"
    );
    assert!(key(&got[0]) > key(&last));
}

/// `ms-seq` as numbers, for ordering.
fn key(offset: &str) -> (u64, u64) {
    let (ms, seq) = offset.split_once('-').unwrap_or((offset, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

/// Five messages kept of eight: a reader after the first learns it missed some (`trimmed`)
/// and where the history starts now (`firstOffset`), on a node that published none of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_trimmed_at_its_cap_says_so_on_every_node() {
    let redis = RedisServer::start();
    let capped = "[hubs.chat]\nhistory = { max_messages = 5, max_age_secs = 600 }\n";
    let a = Node::start_with("ta", &[redis.url()], false, capped);
    let b = Node::start_with("tb", &[redis.url()], false, capped);
    a.wait_ready().await;
    b.wait_ready().await;
    for i in 0..8 {
        send(a.port, &format!("m{i}")).await;
    }
    let all = rest(b.port, "GET", "/groups/g/messages?top=10", None).await;
    assert_eq!(all.status, 200, "{all:?}");
    let page: Value = serde_json::from_str(&all.body).expect("json");
    let data: Vec<&str> = page["value"]
        .as_array()
        .expect("value")
        .iter()
        .filter_map(|m| m["data"].as_str())
        .collect();
    assert_eq!(data, ["m3", "m4", "m5", "m6", "m7"]);
    let first = page["value"][0]["offset"].as_str().expect("offset");
    assert_eq!(page["firstOffset"], json!(first));

    let early = format!("/groups/g/messages?after={}&top=2", "1-0");
    let r = rest(b.port, "GET", &early, None).await;
    let p: Value = serde_json::from_str(&r.body).expect("json");
    assert_eq!(p["trimmed"], json!(true), "{p}");
    assert_eq!(p["firstOffset"], json!(first));
    assert_eq!(p["value"].as_array().map(Vec::len), Some(2));
    assert!(p["nextLink"].as_str().is_some_and(|l| l.contains("after=")));

    let bad = rest(b.port, "GET", "/groups/g/messages?after=yesterday", None).await;
    assert_eq!(bad.status, 400, "{bad:?}");
    assert!(bad.body.contains("not an offset"), "{}", bad.body);
}
