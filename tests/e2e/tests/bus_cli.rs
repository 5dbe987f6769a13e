//! `nerve-bus` on a hub's own bus, in memory, through the hub's HTTP API: with only the
//! connection string the hub printed, it submits and waits, lists tasks and agents, shows a
//! chain, follows it, and says why when it cannot.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

use futures_util::{SinkExt, StreamExt};
use nerve_e2e::{KEY, nerve_binary};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A stock in-memory hub, killed on drop.
struct Hub {
    child: Child,
    connection_string: String,
    port: u16,
}

impl Hub {
    fn start() -> Hub {
        let mut child = Command::new(nerve_binary())
            .args([
                "--listen",
                "127.0.0.1:0",
                "--access-key",
                KEY,
                "--log-level",
                "warn",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start nerve");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
        let connection_string = lines
            .by_ref()
            .find(|l| l.starts_with("Endpoint="))
            .expect("a connection string");
        std::thread::spawn(move || lines.for_each(drop));
        let port = connection_string
            .split(';')
            .next()
            .and_then(|e| e.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .expect("port");
        Hub {
            child,
            connection_string,
            port,
        }
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nerve_bus() -> PathBuf {
    nerve_binary().with_file_name("nerve-bus")
}

/// `nerve-bus ARGS` with the hub's connection string in the environment, as a user has it.
fn cli(hub: &Hub, args: &[&str]) -> Output {
    Command::new(nerve_bus())
        .args(args)
        .env("NERVE_CONNECTION_STRING", &hub.connection_string)
        .env_remove("NERVE_REDIS_URL")
        .output()
        .expect("run nerve-bus")
}

fn ok(hub: &Hub, args: &[&str]) -> String {
    let out = cli(hub, args);
    assert!(
        out.status.success(),
        "nerve-bus {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An echo agent on the hub's `/bus/ws`: registers, answers the next task, done.
async fn echo_agent(hub: &Hub) -> tokio::task::JoinHandle<()> {
    let token = nerve_e2e::token(
        &format!("http://127.0.0.1:{}/client/hubs/bus", hub.port),
        &["bus.serve.echo"],
    );
    let url = format!("ws://127.0.0.1:{}/bus/ws?access_token={token}", hub.port);
    let mut req = url.into_client_request().expect("request");
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "json.webpubsub.azure.v1".parse().expect("header"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("connect");
    let invoke = |id: &str, op: &str, data: Value| {
        Message::Text(
            json!({"type": "invoke", "invocationId": id, "event": op, "dataType": "json",
                   "data": data})
            .to_string()
            .into(),
        )
    };
    let card = json!({"id": "echo-1", "name": "Echo", "skills": [{"id": "echo", "name": "Echo"}]});
    ws.send(invoke("r", "bus.register", json!({"card": card})))
        .await
        .expect("register");
    // Registered once the hub answers the invoke.
    loop {
        let f: Value = match ws.next().await {
            Some(Ok(Message::Text(t))) => serde_json::from_str(&t).expect("json"),
            other => panic!("agent socket: {other:?}"),
        };
        if f["type"] == "invokeResponse" && f["invocationId"] == "r" {
            assert_eq!(f["success"], true, "{f}");
            break;
        }
    }
    tokio::spawn(async move {
        while let Some(Ok(Message::Text(t))) = ws.next().await {
            let f: Value = serde_json::from_str(&t).expect("json");
            if f["type"] == "message" && f["data"]["kind"] == "bus.task" {
                let id = f["data"]["task"]["id"].clone();
                let done = json!({"taskId": id, "text": "echo: hi"});
                ws.send(invoke("c", "bus.task.complete", done))
                    .await
                    .expect("complete");
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nerve_bus_inspects_the_hubs_in_memory_bus() {
    let hub = Hub::start();
    let agent = echo_agent(&hub).await;
    let submitted = ok(&hub, &["submit", "echo", "hi", "--wait", "20"]);
    let mut lines = submitted.lines();
    let task_id = lines.next().expect("task id").to_string();
    assert_eq!(
        lines.next(),
        Some("TASK_STATE_COMPLETED echo: hi"),
        "{submitted}"
    );

    let tasks = ok(&hub, &["tasks"]);
    assert!(
        tasks.contains(&task_id) && tasks.contains("TASK_STATE_COMPLETED"),
        "{tasks}"
    );
    let task: Value = serde_json::from_str(&ok(&hub, &["task", &task_id])).expect("json");
    assert_eq!(task["agent"], "echo-1");
    let chain = ok(&hub, &["chain", &task_id]);
    assert!(
        chain.contains("[echo] TASK_STATE_COMPLETED by echo-1"),
        "{chain}"
    );
    assert!(ok(&hub, &["agents"]).contains("echo-1  Echo"));
    assert_eq!(ok(&hub, &["dlq", "list"]), "");
    let first = ok(&hub, &["watch", "--correlation", &task_id, "--count", "1"]);
    let event: Value = serde_json::from_str(first.trim()).expect("an event");
    assert_eq!(event["type"], "bus.task.submitted");
    agent.abort();

    let refused = cli(&hub, &["agent", "--id", "x", "--capability", "echo"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("agent SDK"));
    let unknown = cli(&hub, &["task", "no-such-task"]);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("not found"));
    let bad = Command::new(nerve_bus())
        .args([
            "--hub",
            &format!("http://127.0.0.1:{}", hub.port),
            "--token",
            "x",
            "tasks",
        ])
        .env_remove("NERVE_CONNECTION_STRING")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("Unauthorized") && stderr.contains("malformed"),
        "{stderr}"
    );
}
