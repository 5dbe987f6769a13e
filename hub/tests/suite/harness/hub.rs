//! A running `nerve` process: the binary built with this suite, started on a free port with
//! chosen keys, configuration, flags and environment; what it printed; the tokens and URLs its
//! clients need. Every process is killed when its [`Hub`] is dropped.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nerve_hub::auth::AccessKeys;

use super::WAIT;
use super::client::Client;
use super::metrics::{http_get, metric};
use super::rest::Rest;
use super::temp::{TempFile, unique};

/// A running `nerve` process, killed on drop.
pub struct Hub {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its access keys, primary first.
    keys: Vec<String>,
    banner: Vec<String>,
    stdout: Printed,
    stderr: Printed,
    _config: Option<TempFile>,
}

/// Text a process printed on one stream, kept as it arrives.
type Printed = Arc<Mutex<String>>;

impl Hub {
    /// Starts the hub with a random key and default settings.
    pub fn start() -> Self {
        Self::start_with(&[], "", &[])
    }

    /// Starts the hub with a random key and a TOML configuration file holding `toml`.
    pub fn start_with_config(toml: &str) -> Self {
        Self::start_with(&[], toml, &[])
    }

    /// Starts the hub with `keys` (a random one when empty), a TOML file holding `toml` (none
    /// when empty) and extra flags (`--listen` among them replaces 127.0.0.1:0).
    pub fn start_with(keys: &[&str], toml: &str, extra: &[&str]) -> Self {
        Self::start_with_env(keys, toml, extra, &[])
    }

    /// Like [`Hub::start_with`], with extra environment variables.
    pub fn start_with_env(keys: &[&str], toml: &str, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let keys: Vec<String> = if keys.is_empty() {
            vec![format!("test-key-{}", unique())]
        } else {
            keys.iter().map(|k| k.to_string()).collect()
        };
        let mut cmd = nerve_command();
        if !extra.contains(&"--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        for k in &keys {
            cmd.args(["--access-key", k]);
        }
        // The flag may be given once only; warn keeps passing tests quiet.
        if !extra.contains(&"--log-level") {
            cmd.args(["--log-level", "warn"]);
        }
        cmd.args(extra);
        cmd.envs(env.iter().copied());
        let config = (!toml.is_empty()).then(|| TempFile::write("toml", toml));
        if let Some(c) = &config {
            cmd.arg("--config").arg(c.path());
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start nerve");
        let stderr = keep_logging(child.stderr.take().expect("stderr"));
        let stdout = Printed::default();
        let mut lines = BufReader::new(child.stdout.take().expect("stdout"))
            .lines()
            .map_while(Result::ok);
        // The banner ends with the client URL; the endpoint line before it names the port.
        let mut banner = Vec::new();
        for line in lines.by_ref() {
            append(&stdout, &line);
            let last = line.contains("/client/hubs/");
            banner.push(line);
            if last {
                break;
            }
        }
        let Some(port) =
            endpoint_of(&banner).and_then(|e| e.rsplit(':').next()?.parse::<u16>().ok())
        else {
            let _ = child.kill();
            let _ = child.wait();
            // Its logs, echoed above, say why.
            panic!("nerve printed no endpoint: {banner:?}");
        };
        // Keep draining stdout so the process never blocks on a full pipe.
        let out = stdout.clone();
        std::thread::spawn(move || {
            for line in lines {
                append(&out, &line);
            }
        });
        Hub {
            child,
            port,
            keys,
            banner,
            stdout,
            stderr,
            _config: config,
        }
    }

    /// The primary access key.
    pub fn key(&self) -> &str {
        &self.keys[0]
    }

    /// The endpoint of the printed connection string, e.g. `https://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        endpoint_of(&self.banner).expect("endpoint")
    }

    /// The lines the hub printed on stdout up to and including its client URL.
    pub fn banner(&self) -> &[String] {
        &self.banner
    }

    /// Everything the hub logged on stderr so far.
    pub fn logs(&self) -> String {
        self.stderr.lock().expect("stderr").clone()
    }

    /// Everything the hub printed so far, stdout then stderr.
    pub fn printed(&self) -> String {
        let out = self.stdout.lock().expect("stdout").clone();
        out + &self.logs()
    }

    /// The process's resident memory in KiB.
    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.split_whitespace().next()?.parse().ok())
            })
            .expect("VmRSS")
    }

    /// Sends SIGTERM and waits for the process to exit; returns whether it exited cleanly.
    pub fn terminate(&mut self) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        nerve_testkit::eventually_blocking(Duration::from_secs(10), "nerve to exit", || {
            self.child.try_wait().ok().flatten()
        })
        .success()
    }

    /// The audience of client tokens for `hub`.
    pub fn client_audience(&self, hub: &str) -> String {
        format!("{}/client/hubs/{hub}", self.endpoint())
    }

    /// A client token for `hub`, signed with the primary key.
    pub fn token(&self, hub: &str, user: Option<&str>, roles: &[&str], groups: &[&str]) -> String {
        let keys = AccessKeys::new(vec![self.key().to_string()]);
        let roles: Vec<String> = roles.iter().map(|s| s.to_string()).collect();
        let groups: Vec<String> = groups.iter().map(|s| s.to_string()).collect();
        keys.client_token(&self.client_audience(hub), user, &roles, &groups, 600)
    }

    /// An MQTT client token for `hub` (audience `…/clients/mqtt/hubs/{hub}`).
    pub fn mqtt_token(&self, hub: &str, user: Option<&str>, roles: &[&str]) -> String {
        let keys = AccessKeys::new(vec![self.key().to_string()]);
        let roles: Vec<String> = roles.iter().map(|s| s.to_string()).collect();
        let aud = format!("{}/clients/mqtt/hubs/{hub}", self.endpoint());
        keys.client_token(&aud, user, &roles, &[], 600)
    }

    /// `ws://127.0.0.1:PORT/clients/mqtt/hubs/{hub}?access_token={token}`.
    pub fn mqtt_url(&self, hub: &str, token: &str) -> String {
        let ws = self.endpoint().replacen("http", "ws", 1);
        format!("{ws}/clients/mqtt/hubs/{hub}?access_token={token}")
    }

    /// `ws://127.0.0.1:PORT/client/hubs/{hub}?access_token={token}` (`wss` over TLS).
    pub fn url(&self, hub: &str, token: &str) -> String {
        let ws = self.client_audience(hub).replacen("http", "ws", 1);
        format!("{ws}?access_token={token}")
    }

    /// The client URL of `hub` with a token of `user` carrying `roles`.
    pub fn client_url(&self, hub: &str, user: Option<&str>, roles: &[&str]) -> String {
        self.url(hub, &self.token(hub, user, roles, &[]))
    }

    /// Connects a client with a token of the given user and roles.
    pub async fn connect(
        &self,
        hub: &str,
        user: Option<&str>,
        roles: &[&str],
        protocol: Option<&str>,
    ) -> Client {
        Client::connect(&self.client_url(hub, user, roles), protocol)
            .await
            .expect("connect")
    }

    /// Connects a client of `hub` as `user` with no roles; returns it with its connection id
    /// (empty for a simple client, which gets no `connected` frame).
    pub async fn client(
        &self,
        hub: &str,
        user: Option<&str>,
        protocol: Option<&str>,
    ) -> (Client, String) {
        let mut c = self.connect(hub, user, &[], protocol).await;
        if protocol.is_none() {
            return (c, String::new());
        }
        let hello = c.next_json().await;
        let id = hello["connectionId"]
            .as_str()
            .expect("connectionId")
            .to_string();
        (c, id)
    }

    /// A REST caller signing with key number `key`.
    pub fn rest(&self, key: usize) -> Rest {
        Rest::new(format!("http://127.0.0.1:{}", self.port), &self.keys[key])
    }

    /// Scrapes `/metrics`.
    pub async fn metrics(&self) -> String {
        http_get(self.port, "/metrics").await
    }

    /// Waits until metric `name` (summed over its label sets) satisfies `ok`.
    pub async fn wait_for_metric(&self, name: &str, what: &str, ok: impl Fn(f64) -> bool) {
        let ok = &ok;
        nerve_testkit::eventually(WAIT, what, || async move {
            ok(metric(&self.metrics().await, name)).then_some(())
        })
        .await
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `nerve config check` on a file holding `toml`.
pub fn config_check(toml: &str) -> std::process::Output {
    let config = TempFile::write("toml", toml);
    let path = config.path().to_str().expect("path");
    run_nerve(&["config", "check", path], &[])
}

/// Runs the `nerve` binary with `args` and extra environment variables (and no
/// `NERVE_CONNECTION_STRING` of the suite's own) to its end.
pub fn run_nerve(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    nerve_command()
        .env_remove("NERVE_CONNECTION_STRING")
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run nerve")
}

/// The `nerve` binary without the `OTEL_*`/`NERVE_OTLP*` variables of the suite's own
/// environment, so a tracing setup around the run cannot change what a hub exports or prints.
fn nerve_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nerve"));
    for (k, _) in std::env::vars_os() {
        let name = k.to_string_lossy();
        if name.starts_with("OTEL_") || name.starts_with("NERVE_OTLP") {
            cmd.env_remove(&k);
        }
    }
    cmd
}

/// The endpoint of the connection string in `banner`.
fn endpoint_of(banner: &[String]) -> Option<&str> {
    banner
        .iter()
        .find_map(|l| l.strip_prefix("Endpoint="))
        .and_then(|l| l.split(';').next())
}

/// Keeps every line the hub logs, and echoes it so a failing test shows what the hub said.
fn keep_logging(stderr: impl Read + Send + 'static) -> Printed {
    let logs = Printed::default();
    let out = logs.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("{line}");
            append(&out, &line);
        }
    });
    logs
}

fn append(printed: &Printed, line: &str) {
    let mut p = printed.lock().expect("printed");
    p.push_str(line);
    p.push('\n');
}
