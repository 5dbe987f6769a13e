//! Real `redis-server` processes for tests: standalone or a small cluster, killed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// One `redis-server` process on a free port, with its own temporary directory.
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts a throwaway Redis (no persistence) and waits until it answers.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts Redis with AOF persistence (`appendfsync always`), for tests that restart it and
    /// expect acknowledged data to survive.
    pub fn start_with_aof() -> Self {
        Self::start_with(&["--appendonly", "yes", "--appendfsync", "always"])
    }

    /// Starts Redis with extra command-line arguments.
    pub fn start_with(extra: &[&str]) -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("nerve-redis-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create redis dir");
        let mut server = RedisServer {
            port,
            dir,
            child: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        server.restart();
        server
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the process with SIGKILL (a crash, not a shutdown) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the process (SIGSTOP): it keeps its connections open and answers nothing, as a
    /// Redis that hangs or sits behind a dead network path does.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused process run again (SIGCONT).
    pub fn unpause(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let Some(child) = &self.child else {
            return;
        };
        let status = Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {sig} redis-server");
    }

    /// Starts the process again on the same port and directory (after [`kill`](Self::kill)).
    pub fn restart(&mut self) {
        self.kill();
        let mut args: Vec<String> = vec![
            "--port".into(),
            self.port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            "".into(),
            "--dir".into(),
            self.dir.display().to_string(),
            "--daemonize".into(),
            "no".into(),
        ];
        if !self.extra.iter().any(|a| a == "--appendonly") {
            args.extend(["--appendonly".into(), "no".into()]);
        }
        args.extend(self.extra.iter().cloned());
        let child = Command::new(redis_binary())
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (is it installed?)");
        self.child = Some(child);
        wait_for_ping(self.port);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis Cluster of `masters` nodes (no replicas), each a real `redis-server`.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts `masters` cluster-enabled servers and joins them with `redis-cli --cluster create`.
    pub fn start(masters: usize) -> Self {
        let nodes: Vec<RedisServer> = (0..masters)
            .map(|_| {
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-node-timeout",
                    "2000",
                ])
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let status = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run redis-cli --cluster create");
        assert!(status.success(), "redis-cli --cluster create failed");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = Command::new("redis-cli")
                .args(["-p", &nodes[0].port.to_string(), "cluster", "info"])
                .output()
                .expect("redis-cli cluster info");
            if String::from_utf8_lossy(&out.stdout).contains("cluster_state:ok") {
                break;
            }
            assert!(Instant::now() < deadline, "redis cluster never became ok");
            std::thread::sleep(Duration::from_millis(50));
        }
        RedisCluster { nodes }
    }

    /// `redis://127.0.0.1:PORT/` of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.url()).collect()
    }

    /// The nodes, for fault injection.
    pub fn nodes_mut(&mut self) -> &mut [RedisServer] {
        &mut self.nodes
    }

    /// The hash slot of `key` (its hash tag, if any, decides).
    pub fn slot_of(&self, key: &str) -> u16 {
        self.cli(0, &["cluster", "keyslot", key])
            .trim()
            .parse()
            .expect("cluster keyslot answers a number")
    }

    /// Index of the node serving `slot`, as node 0 sees it.
    pub fn owner_of(&self, slot: u16) -> usize {
        let owner = self
            .owner_seen_by(0, slot)
            .unwrap_or_else(|| panic!("no node serves slot {slot}"));
        (0..self.nodes.len())
            .find(|&i| self.id(i) == owner)
            .expect("the owner is one of the cluster's nodes")
    }

    /// Moves `slot` with its keys to node `to`, the way `redis-cli --cluster reshard` does
    /// (IMPORTING / MIGRATING, MIGRATE of every key, then SETSLOT NODE on every master), and
    /// waits until every node agrees.
    pub fn move_slot(&self, slot: u16, to: usize) {
        let from = self.owner_of(slot);
        assert_ne!(from, to, "slot {slot} is on node {to} already");
        let (from_id, to_id) = (self.id(from), self.id(to));
        let slot_s = slot.to_string();
        self.cli(to, &["cluster", "setslot", &slot_s, "importing", &from_id]);
        self.cli(from, &["cluster", "setslot", &slot_s, "migrating", &to_id]);
        let to_port = self.nodes[to].port.to_string();
        loop {
            let keys = self.cli(from, &["cluster", "getkeysinslot", &slot_s, "100"]);
            let keys: Vec<&str> = keys.split_whitespace().collect();
            if keys.is_empty() {
                break;
            }
            let mut args = vec!["migrate", "127.0.0.1", &to_port, "", "0", "5000", "KEYS"];
            args.extend(keys);
            self.cli(from, &args);
        }
        for i in [to, from] {
            self.cli(i, &["cluster", "setslot", &slot_s, "node", &to_id]);
        }
        for i in (0..self.nodes.len()).filter(|i| *i != to && *i != from) {
            self.cli(i, &["cluster", "setslot", &slot_s, "node", &to_id]);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while (0..self.nodes.len()).any(|i| self.owner_seen_by(i, slot) != Some(to_id.clone())) {
            assert!(
                Instant::now() < deadline,
                "nodes never agreed on slot {slot}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn owner_seen_by(&self, node: usize, slot: u16) -> Option<String> {
        let nodes = self.cli(node, &["cluster", "nodes"]);
        nodes.lines().find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let serves = fields.iter().skip(8).any(|range| {
                let mut ends = range.splitn(2, '-');
                let lo = ends.next().and_then(|v| v.parse::<u16>().ok());
                let hi = ends.next().and_then(|v| v.parse::<u16>().ok()).or(lo);
                matches!((lo, hi), (Some(lo), Some(hi)) if lo <= slot && slot <= hi)
            });
            serves.then(|| fields[0].to_string())
        })
    }

    fn id(&self, node: usize) -> String {
        self.cli(node, &["cluster", "myid"]).trim().to_string()
    }

    fn cli(&self, node: usize, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.nodes[node].port.to_string()])
            .args(args)
            .output()
            .expect("run redis-cli");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success() && !text.starts_with("ERR"),
            "redis-cli {args:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }
}

fn redis_binary() -> String {
    std::env::var("NERVE_REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_string())
}

fn wait_for_ping(port: u16) {
    use std::io::{Read, Write};
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
            if s.write_all(b"PING\r\n").is_ok() {
                let mut buf = [0u8; 16];
                if let Ok(n) = s.read(&mut buf)
                    && buf[..n].starts_with(b"+PONG")
                {
                    return;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "redis-server on {port} did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
