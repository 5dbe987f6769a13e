//! Starts the real `nerve` binary on a free port and mints tokens for it.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::json;

/// The access key every test hub uses.
pub const KEY: &str = "rust-client-test-key";

/// A running `nerve`, killed on drop.
pub struct Nerve {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    child: Child,
}

fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("NERVE_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var("CARGO_TARGET_DIR").map_or_else(
        |_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        PathBuf::from,
    );
    let bin = target.join("debug/nerve");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p nerve-hub --bin nerve` (or set NERVE_BIN)",
        bin.display()
    );
    bin
}

impl Nerve {
    /// Starts `nerve --listen 127.0.0.1:0` and reads its endpoint from stdout.
    pub fn start() -> Nerve {
        Nerve::start_on(0)
    }

    /// Starts `nerve` on `port` (0: any free port).
    pub fn start_on(port: u16) -> Nerve {
        Nerve::start_with(port, &[])
    }

    /// Starts `nerve` on `port` (0: any free port) with more arguments.
    pub fn start_with(port: u16, extra: &[&str]) -> Nerve {
        let listen = format!("127.0.0.1:{port}");
        let mut child = Command::new(binary())
            .args([
                "--listen",
                &listen,
                "--access-key",
                KEY,
                "--log-level",
                "warn",
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start nerve");
        let stdout = child.stdout.take().expect("nerve stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Keeps draining stdout so the hub never blocks on it.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("Endpoint=") {
                    let endpoint = rest.split(';').next().unwrap_or_default().to_string();
                    let _ = tx.send(endpoint);
                }
            }
        });
        let endpoint = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("nerve printed no endpoint");
        Nerve { endpoint, child }
    }

    /// The port it listens on.
    #[allow(dead_code)]
    pub fn port(&self) -> u16 {
        self.endpoint
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port in endpoint")
    }

    /// Kills the process (a crash: every session is lost).
    #[allow(dead_code)]
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A client URL for `hub` with user `sub` and `roles`.
    #[allow(dead_code)] // not every test binary uses every helper
    pub fn client_url(&self, hub: &str, sub: &str, roles: &[&str]) -> String {
        let aud = format!("{}/client/hubs/{hub}", self.endpoint);
        let ws = self.endpoint.replacen("http://", "ws://", 1);
        format!(
            "{ws}/client/hubs/{hub}?access_token={}",
            mint(&aud, sub, roles)
        )
    }

    /// A bus token (hub `bus`).
    #[allow(dead_code)]
    pub fn bus_token(&self, sub: &str, roles: &[&str]) -> String {
        mint(&format!("{}/client/hubs/bus", self.endpoint), sub, roles)
    }
}

impl Drop for Nerve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HS256 token signed with the UTF-8 bytes of `KEY`.
pub fn mint(aud: &str, sub: &str, roles: &[&str]) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let claims = json!({"aud": aud, "sub": sub, "role": roles, "iat": now, "exp": now + 3600});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(KEY.as_bytes()),
    )
    .expect("sign token")
}
