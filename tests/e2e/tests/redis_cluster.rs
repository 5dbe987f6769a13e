//! Three nodes on a three-master Redis Cluster: group messages travel over sharded pub/sub
//! (channels hash-tagged with their group, spread over the masters), and reliable sessions
//! resume on another node.

use nerve_e2e::{Client, HUB, Node, client_token};
use nerve_testkit::RedisCluster;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_on_a_redis_cluster_deliver_across_nodes() {
    let redis = RedisCluster::start(3);
    let urls = redis.urls();
    let nodes: Vec<Node> = (0..3)
        .map(|i| Node::start(&format!("c{i}"), &urls, true))
        .collect();
    for n in &nodes {
        n.wait_ready().await;
    }
    let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
    // Several groups, so their channels land on different masters.
    let groups: Vec<String> = (0..6).map(|i| format!("room-{i}")).collect();
    let mut members = Vec::new();
    for (i, &port) in ports.iter().enumerate() {
        let user = format!("m{i}");
        let c = Client::connect(port, &client_token(Some(&user)), true, &ports).await;
        for g in &groups {
            c.join(g).await;
        }
        members.push(c);
    }
    for (i, g) in groups.iter().enumerate() {
        members[i % 3].send_to_group(g, g, false).await;
    }
    for (i, m) in members.iter().enumerate() {
        m.wait_count(groups.len()).await;
        let mut got: Vec<String> = m
            .received()
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        got.sort();
        assert_eq!(got, groups, "member {i} got each group's message once");
    }
}

/// A slot moving between masters (a reshard) must not silence a group: Redis tells the
/// subscribers of its shard channels that they were unsubscribed, and each node subscribes
/// again at the new owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_messages_flow_again_after_their_slot_moves() {
    let redis = RedisCluster::start(3);
    let urls = redis.urls();
    let nodes: Vec<Node> = (0..2)
        .map(|i| Node::start(&format!("s{i}"), &urls, true))
        .collect();
    for n in &nodes {
        n.wait_ready().await;
    }
    let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
    let group = "moving";
    let publisher = Client::connect(ports[0], &client_token(Some("pub")), false, &[]).await;
    let listener = Client::connect(ports[1], &client_token(Some("sub")), false, &[]).await;
    publisher.join(group).await;
    listener.join(group).await;
    publisher.send_to_group(group, "before", true).await;
    listener.wait_count(1).await;

    // The group's channel, history and member keys share one hash tag, hence one slot.
    let slot = redis.slot_of(&format!("nerve:{{g:{HUB}:{group}}}:ch"));
    let to = (redis.owner_of(slot) + 1) % 3;
    redis.move_slot(slot, to);
    assert_eq!(redis.owner_of(slot), to);

    // Messages sent while the nodes catch up may be lost; once one gets through, every
    // later one must arrive exactly once, in order.
    let mut probe = 0;
    nerve_testkit::eventually(
        nerve_e2e::WAIT,
        "a group message to cross nodes after the slot moved",
        || {
            probe += 1;
            let (publisher, listener) = (&publisher, &listener);
            let data = format!("probe-{probe}");
            async move {
                publisher.send_to_group(group, &data, true).await;
                let deadline = std::time::Instant::now() + std::time::Duration::from_millis(300);
                while std::time::Instant::now() < deadline {
                    if listener
                        .received()
                        .iter()
                        .any(|v| v.as_str() == Some(data.as_str()))
                    {
                        return Some(());
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                None
            }
        },
    )
    .await;
    let seen = listener.count();
    for i in 0..20 {
        publisher
            .send_to_group(group, &format!("after-{i}"), true)
            .await;
    }
    listener.wait_count(seen + 20).await;
    let after: Vec<String> = listener
        .received()
        .iter()
        .filter_map(Value::as_str)
        .filter(|s| s.starts_with("after-"))
        .map(str::to_string)
        .collect();
    let expected: Vec<String> = (0..20).map(|i| format!("after-{i}")).collect();
    assert_eq!(after, expected);
}
