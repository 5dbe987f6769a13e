//! Three nodes on one Redis act as one hub: every send path reaches every recipient on every
//! node exactly once, and membership, existence, permissions and closes work across nodes.

use nerve_e2e::{Client, HUB, Node, client_token, rest, rest_json};
use nerve_testkit::{RedisServer, eventually};
use serde_json::json;

struct Cluster {
    nodes: Vec<Node>,
    _redis: RedisServer,
}

async fn cluster() -> Cluster {
    let redis = RedisServer::start();
    let nodes: Vec<Node> = (0..3)
        .map(|i| Node::start(&format!("n{i}"), &[redis.url()], false))
        .collect();
    for n in &nodes {
        n.wait_ready().await;
    }
    Cluster {
        nodes,
        _redis: redis,
    }
}

/// Two clients per node, users `u0`…`u5` (client `i` on node `i / 2`), all in group `g`.
async fn clients(c: &Cluster) -> Vec<Client> {
    let ports: Vec<u16> = c.nodes.iter().map(|n| n.port).collect();
    let mut out = Vec::new();
    for i in 0..6 {
        let user = format!("u{i}");
        let cl = Client::connect(ports[i / 2], &client_token(Some(&user)), false, &ports).await;
        cl.join("g").await;
        out.push(cl);
    }
    out
}

fn counts(clients: &[Client]) -> Vec<usize> {
    clients.iter().map(Client::count).collect()
}

async fn settle(clients: &[Client], expected: &[usize]) {
    for (c, n) in clients.iter().zip(expected) {
        c.wait_count(*n).await;
    }
    // A sentinel through the same paths proves nothing else is still in flight.
    assert_eq!(counts(clients), expected, "delivery counts per client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_send_path_reaches_every_node_once() {
    let c = cluster().await;
    let cl = clients(&c).await;
    let p = |i: usize| c.nodes[i].port;

    // Client frame to a group: every member on every node, once.
    cl[0].send_to_group("g", "frame", false).await;
    let mut expect = vec![1; 6];
    settle(&cl, &expect).await;

    // noEcho leaves the sender out.
    cl[3].send_to_group("g", "no-echo", true).await;
    for (i, e) in expect.iter_mut().enumerate() {
        *e += usize::from(i != 3);
    }
    settle(&cl, &expect).await;

    // REST to a group, through a node.
    assert_eq!(
        rest(p(1), "POST", "/groups/g/:send", Some("rest-group"))
            .await
            .status,
        202
    );
    expect.iter_mut().for_each(|e| *e += 1);
    settle(&cl, &expect).await;

    // REST to all with an excluded connection.
    let excluded = cl[5].id();
    let path = format!("/:send?excluded={excluded}");
    assert_eq!(rest(p(0), "POST", &path, Some("all")).await.status, 202);
    for e in expect.iter_mut().take(5) {
        *e += 1;
    }
    settle(&cl, &expect).await;

    // REST to a user on another node.
    assert_eq!(
        rest(p(0), "POST", "/users/u4/:send", Some("user"))
            .await
            .status,
        202
    );
    expect[4] += 1;
    settle(&cl, &expect).await;

    // REST to a connection on another node.
    let path = format!("/connections/{}/:send", cl[2].id());
    assert_eq!(rest(p(2), "POST", &path, Some("conn")).await.status, 202);
    expect[2] += 1;
    settle(&cl, &expect).await;

    // A filter is evaluated on the node holding each connection.
    let path = "/groups/g/:send?filter=userId%20eq%20%27u3%27";
    assert_eq!(rest(p(0), "POST", path, Some("filtered")).await.status, 202);
    expect[3] += 1;
    settle(&cl, &expect).await;

    // Everything arrived exactly once: the last client of each node saw the same sequence.
    let texts: Vec<String> = cl[1]
        .received()
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    assert_eq!(texts, ["frame", "no-echo", "rest-group", "all"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_existence_permissions_and_closes_work_across_nodes() {
    let c = cluster().await;
    let ports: Vec<u16> = c.nodes.iter().map(|n| n.port).collect();
    let a = Client::connect(ports[0], &client_token(Some("alice")), false, &ports).await;
    let b = Client::connect(ports[1], &client_token(Some("bob")), false, &ports).await;
    let (pa, pb, pc) = (ports[0], ports[1], ports[2]);

    // Existence through a node that does not hold the connection.
    let conn_path = format!("/connections/{}", a.id());
    assert_eq!(rest(pc, "HEAD", &conn_path, None).await.status, 200);
    assert_eq!(rest(pc, "HEAD", "/users/bob", None).await.status, 200);
    assert_eq!(rest(pc, "HEAD", "/users/nobody", None).await.status, 404);

    // Adding a connection held elsewhere to a group, then sending through a third node.
    let add = format!("/groups/team/connections/{}", a.id());
    assert_eq!(rest(pc, "PUT", &add, None).await.status, 200);
    assert_eq!(
        rest(pb, "PUT", "/users/bob/groups/team", None).await.status,
        200
    );
    eventually(nerve_e2e::WAIT, "both members listed", || async move {
        let r = rest(pc, "GET", "/groups/team/connections", None).await;
        let v: serde_json::Value = serde_json::from_str(&r.body).ok()?;
        (v["value"].as_array()?.len() == 2).then_some(())
    })
    .await;
    assert_eq!(rest(pa, "HEAD", "/groups/team", None).await.status, 200);
    assert_eq!(
        rest(pc, "POST", "/groups/team/:send", Some("hi"))
            .await
            .status,
        202
    );
    a.wait_count(1).await;
    b.wait_count(1).await;

    // Filtered group changes reach every node.
    let body = json!({"groups": ["ops"], "filter": "userId eq 'bob'"});
    assert_eq!(rest_json(pa, "/:addToGroups", &body).await.status, 200);
    eventually(nerve_e2e::WAIT, "bob in ops", || async move {
        (rest(pc, "HEAD", "/groups/ops", None).await.status == 200).then_some(())
    })
    .await;

    // Permissions granted through another node apply where the connection lives.
    let grant = format!(
        "/permissions/sendToGroup/connections/{}?targetName=x",
        b.id()
    );
    assert_eq!(rest(pa, "PUT", &grant, None).await.status, 200);
    let b_id = b.id();
    eventually(nerve_e2e::WAIT, "permission visible", || {
        let path = format!("/permissions/sendToGroup/connections/{b_id}?targetName=x");
        async move { (rest(pc, "HEAD", &path, None).await.status == 200).then_some(()) }
    })
    .await;

    // A user added to a group before connecting joins it on a node started afterwards.
    assert_eq!(
        rest(pa, "PUT", "/users/dave/groups/late", None)
            .await
            .status,
        200
    );
    let late = Node::start("n-late", &[c._redis.url()], false);
    late.wait_ready().await;
    let d = Client::connect(late.port, &client_token(Some("dave")), false, &ports).await;
    assert_eq!(
        rest(pb, "POST", "/groups/late/:send", Some("late"))
            .await
            .status,
        202
    );
    d.wait_count(1).await;

    // Closing a connection held by another node.
    let close = format!("/connections/{}?reason=bye", b.id());
    assert_eq!(rest(pa, "DELETE", &close, None).await.status, 204);
    let closed = b.wait_closed().await;
    assert_eq!(closed.code, 1008);
    let b_path = format!("/connections/{}", b.id());
    eventually(nerve_e2e::WAIT, "closed connection gone everywhere", || {
        let p = b_path.clone();
        async move { (rest(pc, "HEAD", &p, None).await.status == 404).then_some(()) }
    })
    .await;
    let _ = HUB;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_nodes_connections_leave_presence() {
    let mut c = cluster().await;
    let ports: Vec<u16> = c.nodes.iter().map(|n| n.port).collect();
    let a = Client::connect(ports[0], &client_token(Some("carol")), false, &ports).await;
    a.join("crash").await;
    let pc = ports[2];
    assert_eq!(rest(pc, "HEAD", "/users/carol", None).await.status, 200);
    assert_eq!(rest(pc, "HEAD", "/groups/crash", None).await.status, 200);
    c.nodes[0].kill();
    // Presence TTL in these tests is one second.
    eventually(nerve_e2e::WAIT, "dead node's user gone", || async move {
        (rest(pc, "HEAD", "/users/carol", None).await.status == 404).then_some(())
    })
    .await;
    assert_eq!(rest(pc, "HEAD", "/groups/crash", None).await.status, 404);
    let path = format!("/connections/{}", a.id());
    assert_eq!(rest(pc, "HEAD", &path, None).await.status, 404);
}
