//! The agent bus as its users reach it: a client of `/bus/ws` that keeps server pushes while
//! it waits for invoke responses, JSON POSTs to the operations API, and agent cards.

use std::collections::VecDeque;

use serde_json::{Value, json};

use super::client::Client;
use super::hub::Hub;
use super::{JSON, WAIT};

/// The hub configuration the bridge tests use: short bus leases and retries.
pub const FAST_BUS: &str = "[bus]\nfast = true\n";

/// A `/bus/ws` connection.
pub struct BusClient {
    /// The socket.
    pub ws: Client,
    next_id: u64,
    /// Server pushes (`data` of `message` frames) not yet taken.
    pub pushes: VecDeque<Value>,
}

impl BusClient {
    /// Connects with a token of `user` carrying `roles`.
    pub async fn connect(hub: &Hub, user: &str, roles: &[&str]) -> BusClient {
        let token = hub.token("bus", Some(user), roles, &[]);
        let url = format!("ws://127.0.0.1:{}/bus/ws?access_token={token}", hub.port);
        // A hub whose bus is still connecting to Redis answers 503: retry until it is up.
        let mut ws = nerve_testkit::eventually(WAIT, "the bus endpoint accepting agents", || {
            let url = url.clone();
            async move {
                match Client::connect(&url, Some(JSON)).await {
                    Ok(ws) => Some(ws),
                    Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 503 => {
                        None
                    }
                    Err(e) => panic!("connect /bus/ws: {e}"),
                }
            }
        })
        .await;
        let hello = ws.next_json().await;
        assert_eq!(hello["event"], "connected", "{hello}");
        BusClient {
            ws,
            next_id: 0,
            pushes: VecDeque::new(),
        }
    }

    /// Sends an invoke without waiting; returns its id.
    pub async fn start_invoke(&mut self, op: &str, data: Value) -> String {
        self.next_id += 1;
        let id = format!("i{}", self.next_id);
        self.ws
            .send(json!({"type": "invoke", "invocationId": id, "event": op,
                         "dataType": "json", "data": data}))
            .await;
        id
    }

    /// The response to invocation `id`: `Ok(data)` or `Err(error)`.
    pub async fn response(&mut self, id: &str) -> Result<Value, Value> {
        loop {
            let f = self.ws.next_json().await;
            match f["type"].as_str() {
                Some("invokeResponse") if f["invocationId"] == id => {
                    return if f["success"] == true {
                        Ok(f["data"].clone())
                    } else {
                        Err(f["error"].clone())
                    };
                }
                Some("message") => self.pushes.push_back(f["data"].clone()),
                _ => {}
            }
        }
    }

    /// Invokes `op` and waits for its response.
    pub async fn invoke(&mut self, op: &str, data: Value) -> Result<Value, Value> {
        let id = self.start_invoke(op, data).await;
        self.response(&id).await
    }

    /// Invokes `op`, which must succeed.
    pub async fn ok(&mut self, op: &str, data: Value) -> Value {
        match self.invoke(op, data).await {
            Ok(v) => v,
            Err(e) => panic!("{op} failed: {e}"),
        }
    }

    /// Registers as agent `id` serving `skills`, which must succeed.
    pub async fn register(&mut self, id: &str, skills: &[&str]) -> Value {
        self.ok("bus.register", json!({"card": card(id, skills)}))
            .await
    }

    /// Completes task `task_id` with a final `text`, which must succeed.
    pub async fn complete(&mut self, task_id: &str, text: &str) -> Value {
        self.ok(
            "bus.task.complete",
            json!({"taskId": task_id, "text": text}),
        )
        .await
    }

    /// The next push whose `kind` is `kind` (earlier pushes of other kinds are kept).
    pub async fn push(&mut self, kind: &str) -> Value {
        if let Some(i) = self.pushes.iter().position(|p| p["kind"] == kind) {
            return self.pushes.remove(i).unwrap_or_default();
        }
        loop {
            let f = self.ws.next_json().await;
            if f["type"] == "message" {
                if f["data"]["kind"] == kind {
                    return f["data"].clone();
                }
                self.pushes.push_back(f["data"].clone());
            }
        }
    }
}

/// POSTs `body` to `path` with a Bearer token; returns the status and the JSON answer.
pub async fn post(hub: &Hub, path: &str, token: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}{path}", hub.port))
        .bearer_auth(token)
        .json(&body)
        .timeout(WAIT)
        .send()
        .await
        .expect("POST");
    let status = r.status().as_u16();
    let v = r.json::<Value>().await.unwrap_or(Value::Null);
    (status, v)
}

/// An agent card serving `skills`.
pub fn card(id: &str, skills: &[&str]) -> Value {
    let skills: Vec<Value> = skills
        .iter()
        .map(|s| json!({"id": s, "name": s, "description": format!("does {s}")}))
        .collect();
    json!({"id": id, "name": id, "version": "1.0.0", "skills": skills})
}
