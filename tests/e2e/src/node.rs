//! One `nerve` process of a test cluster, on a fixed free port so it can be killed and
//! started again in place.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{KEY, PUBLIC};

/// The `nerve` binary: `$NERVE_BIN`, else `nerve` in the profile directory this test binary
/// runs from (`target/debug/deps/..`), which the test command builds before the tests run.
pub fn nerve_binary() -> PathBuf {
    if let Ok(p) = std::env::var("NERVE_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test binary path");
    let profile = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary under target/<profile>/deps");
    let bin = profile.join("nerve");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p nerve-hub` first (or set NERVE_BIN)",
        bin.display()
    );
    bin
}

/// Cluster timing for tests: quick heartbeats, so a dead node is noticed within a second.
const CLUSTER_TOML: &str = "[cluster]\nheartbeat_ms = 200\npresence_ttl_ms = 1000\n";

/// A running node, killed on drop.
pub struct Node {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its node id.
    pub id: String,
    redis: Vec<String>,
    cluster: bool,
    config: PathBuf,
    child: Option<Child>,
}

impl Node {
    /// Starts a node on Redis `redis` (several URLs, or `cluster`, for a Redis Cluster).
    pub fn start(id: &str, redis: &[String], cluster: bool) -> Node {
        Node::start_with(id, redis, cluster, "")
    }

    /// Starts a node with more configuration (TOML, e.g. a `[limits]` table).
    pub fn start_with(id: &str, redis: &[String], cluster: bool, toml: &str) -> Node {
        let port = nerve_testkit::free_port();
        let config =
            std::env::temp_dir().join(format!("nerve-e2e-{}-{id}-{port}.toml", std::process::id()));
        std::fs::write(&config, format!("{toml}\n{CLUSTER_TOML}")).expect("write node config");
        let mut node = Node {
            port,
            id: id.to_string(),
            redis: redis.to_vec(),
            cluster,
            config,
            child: None,
        };
        node.spawn();
        node
    }

    fn spawn(&mut self) {
        let log = std::env::var("NERVE_E2E_LOG").unwrap_or_else(|_| "warn".into());
        let mut cmd = Command::new(nerve_binary());
        cmd.args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--access-key", KEY, "--public-endpoint", PUBLIC])
            .args(["--node-id", &self.id, "--log-level", &log])
            .args(["--redis", &self.redis.join(",")])
            .arg("--config")
            .arg(&self.config);
        if self.cluster {
            cmd.arg("--redis-cluster");
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start nerve");
        self.child = Some(child);
    }

    /// Waits until the node answers `/readyz` with 200 (it reaches Redis).
    pub async fn wait_ready(&self) {
        let port = self.port;
        nerve_testkit::eventually(crate::WAIT, "node ready", || async move {
            (crate::ready(port).await == Some(true)).then_some(())
        })
        .await;
    }

    /// Kills the process with SIGKILL: a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM (a drain) and waits for the process to exit.
    pub fn terminate(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let exited = nerve_testkit::eventually_blocking(
            Duration::from_secs(15),
            "nerve to exit after SIGTERM",
            || c.try_wait().ok().flatten(),
        );
        assert!(exited.success(), "nerve exited with {exited}");
    }

    /// Starts the process again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// The WebSocket URL of this node for a token.
    pub fn ws_url(&self, token: &str) -> String {
        format!(
            "ws://127.0.0.1:{}/client/hubs/{}?access_token={token}",
            self.port,
            crate::HUB
        )
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.config);
    }
}
