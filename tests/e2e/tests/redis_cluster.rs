//! Three nodes on a three-master Redis Cluster: group messages travel over sharded pub/sub
//! (channels hash-tagged with their group, spread over the masters), and reliable sessions
//! resume on another node.

use nerve_e2e::{Client, Node, client_token};
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
