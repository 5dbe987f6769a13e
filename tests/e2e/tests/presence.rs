//! Presence across three nodes sharing one Redis: the REST lists of users, groups, the users
//! of a group and the groups of a user agree on every node while clients come and go, and a
//! killed node's clients leave them once its presence expires.

use std::collections::BTreeMap;

use nerve_e2e::{Client, Node, WAIT, client_token, rest};
use nerve_testkit::{RedisServer, eventually};
use serde_json::{Value, json};

async fn get(port: u16, path: &str) -> Value {
    let a = rest(port, "GET", path, None).await;
    assert_eq!(a.status, 200, "GET {path}: {a:?}");
    serde_json::from_str(&a.body).unwrap_or(Value::Null)
}

/// Every listing, as one node answers it.
async fn view(port: u16) -> BTreeMap<&'static str, Value> {
    let mut v = BTreeMap::new();
    v.insert("users", get(port, "/users").await);
    v.insert("groups", get(port, "/groups").await);
    v.insert("room", get(port, "/groups/room/users").await);
    v.insert("bob", get(port, "/users/bob/groups").await);
    v
}

/// Waits until every node answers `expected`.
async fn all_agree(ports: &[u16], expected: &BTreeMap<&'static str, Value>, what: &str) {
    eventually(WAIT, what, || async {
        for p in ports {
            if view(*p).await != *expected {
                return None;
            }
        }
        Some(())
    })
    .await;
}

fn users(list: &[(&str, usize)]) -> Value {
    let value: Vec<Value> = list
        .iter()
        .map(|(u, n)| json!({"userId": u, "connectionCount": n}))
        .collect();
    json!({"value": value, "count": list.len()})
}

fn groups(list: &[&str]) -> Value {
    let value: Vec<Value> = list.iter().map(|g| json!({"name": g})).collect();
    json!({"value": value, "count": list.len()})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_lists_agree_on_three_nodes_while_clients_come_and_go() {
    let redis = RedisServer::start();
    let a = Node::start("pa", &[redis.url()], false);
    let b = Node::start("pb", &[redis.url()], false);
    let mut c = Node::start("pc", &[redis.url()], false);
    for n in [&a, &b, &c] {
        n.wait_ready().await;
    }
    let ports = [a.port, b.port, c.port];

    let alice = Client::connect(a.port, &client_token(Some("alice")), false, &[]).await;
    alice.join("room").await;
    let bob = Client::connect(b.port, &client_token(Some("bob")), false, &[]).await;
    bob.join("room").await;
    bob.join("lobby").await;
    let carol = Client::connect(c.port, &client_token(Some("carol")), false, &[]).await;
    let bob_again = Client::connect(c.port, &client_token(Some("bob")), false, &[]).await;
    bob_again.join("lobby").await;
    bob_again.join("side").await;

    let mut expected = BTreeMap::new();
    expected.insert("users", users(&[("alice", 1), ("bob", 2), ("carol", 1)]));
    expected.insert("groups", groups(&["lobby", "room", "side"]));
    expected.insert("room", users(&[("alice", 1), ("bob", 1)]));
    expected.insert("bob", groups(&["lobby", "room", "side"]));
    all_agree(&ports, &expected, "everyone, on every node").await;

    // Paged: one per page, the link leads to the next.
    let first = get(b.port, "/users?maxpagesize=1").await;
    assert_eq!(
        first["value"],
        json!([{"userId": "alice", "connectionCount": 1}])
    );
    assert_eq!(first["count"], 3);
    let next = first["nextLink"].as_str().expect("nextLink");
    assert!(next.contains("continuationToken=alice"), "{next}");
    let second = get(b.port, "/users?maxpagesize=1&continuationToken=alice").await;
    assert_eq!(second["value"][0]["userId"], "bob");

    // Alice goes: she leaves every list.
    alice.close_socket(Some(1000)).await;
    expected.insert("users", users(&[("bob", 2), ("carol", 1)]));
    expected.insert("room", users(&[("bob", 1)]));
    all_agree(&ports, &expected, "alice gone, on every node").await;

    // Node c is killed: carol and bob's second connection leave once its presence expires.
    c.kill();
    drop((carol, bob_again));
    expected.insert("users", users(&[("bob", 1)]));
    expected.insert("groups", groups(&["lobby", "room"]));
    expected.insert("bob", groups(&["lobby", "room"]));
    all_agree(&ports[..2], &expected, "node c's clients gone").await;

    let bad = rest(a.port, "GET", "/users?maxpagesize=0", None).await;
    assert_eq!(bad.status, 400, "{bad:?}");
}
