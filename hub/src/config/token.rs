//! `nerve token`: a client URL or a REST bearer token from the command line, so nobody has to
//! write JWT code to try the hub. The key and endpoint come from a connection string
//! (`--connection-string` or `NERVE_CONNECTION_STRING`, as the hub prints it) or, failing
//! that, from the same flags, environment and file the hub itself reads.

use clap::Args;

use super::{Cli, Config};
use crate::auth::{AccessKeys, ClientProtocol, ConnectionString};

/// Longest lifetime of a minted token, in minutes (one year, as `:generateToken` allows).
const MAX_MINUTES: u64 = 525_600;

/// `nerve token …`
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The hub's connection string (`Endpoint=…;AccessKey=…;Version=1.0;`, as `nerve` prints
    /// it). Without one, the access key and endpoint come from --access-key, --config and
    /// --public-endpoint (or --listen), like the hub's own.
    #[arg(long, env = "NERVE_CONNECTION_STRING", hide_env_values = true)]
    pub connection_string: Option<String>,
    /// Hub the token is for.
    #[arg(long, default_value = "chat")]
    pub hub: String,
    /// User id (`sub`).
    #[arg(long)]
    pub user: Option<String>,
    /// Role, repeatable: `webpubsub.joinLeaveGroup[.<group>]`,
    /// `webpubsub.sendToGroup[.<group>]`, `bus.serve.<capability>`, `bus.watch`, ….
    #[arg(long = "role", value_name = "ROLE")]
    pub roles: Vec<String>,
    /// Group to join on connect, repeatable.
    #[arg(long = "group", value_name = "GROUP")]
    pub groups: Vec<String>,
    /// Lifetime in minutes.
    #[arg(long, default_value_t = 60)]
    pub minutes: u64,
    /// Client protocol: default (the Web PubSub protocols, what this hub serves), mqtt or
    /// socketio (Azure's other client endpoints).
    #[arg(long, default_value = "default")]
    pub protocol: String,
    /// A bearer token for the REST call at PATH (default `/api/hubs/<hub>/:send`) instead of a
    /// client URL; its `aud` is that URL, as the server SDKs sign.
    #[arg(long, value_name = "PATH", num_args = 0..=1, default_missing_value = "")]
    pub rest: Option<String>,
    /// Print the client token alone, not the client URL (for the agent SDKs).
    #[arg(long)]
    pub token_only: bool,
}

/// What `nerve token` prints for `args`, or why it cannot.
pub fn run(cli: &Cli, args: &TokenArgs) -> Result<String, String> {
    let hub = args.hub.as_str();
    if !crate::names::valid_hub_name(hub) {
        return Err(format!(
            "invalid hub name '{hub}': a letter, then up to 127 letters, digits or _`,.[]"
        ));
    }
    if !(1..=MAX_MINUTES).contains(&args.minutes) {
        return Err(format!(
            "--minutes must be between 1 and {MAX_MINUTES} (one year)"
        ));
    }
    let protocol = ClientProtocol::parse(&args.protocol)?;
    let signer = signer(cli, args)?;
    let keys = AccessKeys::new(vec![signer.access_key]);
    let ttl = args.minutes * 60;
    if let Some(path) = &args.rest {
        if !args.roles.is_empty() || !args.groups.is_empty() || args.user.is_some() {
            return Err(
                "--user, --role and --group belong to client tokens; a REST token names only \
                 its URL"
                    .into(),
            );
        }
        let aud = rest_audience(&signer.endpoint, hub, path);
        return Ok(keys.client_token(&aud, None, &[], &[], ttl));
    }
    let path = protocol.path(hub);
    let aud = format!("{}/{path}", signer.endpoint);
    let user = args.user.as_deref().filter(|u| !u.is_empty());
    let token = keys.client_token(&aud, user, &args.roles, &args.groups, ttl);
    if args.token_only {
        return Ok(token);
    }
    let ws = super::ws_endpoint(&signer.endpoint);
    Ok(format!("{ws}/{path}?access_token={token}"))
}

/// The key and endpoint to sign with: the connection string, else the hub's configuration.
fn signer(cli: &Cli, args: &TokenArgs) -> Result<ConnectionString, String> {
    if let Some(cs) = args.connection_string.as_deref().filter(|c| !c.is_empty()) {
        return ConnectionString::parse(cs).map_err(|e| format!("connection string: {e}"));
    }
    let config = Config::resolve(cli).map_err(|e| e.to_string())?;
    if config.generated_key {
        return Err(
            "no access key: set NERVE_CONNECTION_STRING to the connection string the \
                    hub printed (or pass --connection-string), or pass --access-key (or \
                    --config) as the hub was started"
                .into(),
        );
    }
    Ok(ConnectionString {
        endpoint: config.endpoint(config.listen),
        access_key: config.access_keys[0].clone(),
    })
}

/// The `aud` of a REST token: the endpoint and the call's path (a full URL is taken as it
/// is), without its query, which the hub does not compare.
fn rest_audience(endpoint: &str, hub: &str, path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    if path.starts_with("http://") || path.starts_with("https://") {
        return path.to_string();
    }
    if path.is_empty() {
        return format!("{endpoint}/api/hubs/{hub}/:send");
    }
    format!("{endpoint}/{}", path.trim_start_matches('/'))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::auth::audience_matches;
    use crate::config::Command;

    fn token(args: &[&str]) -> Result<String, String> {
        let cli = Cli::parse_from(["nerve"].iter().chain(args));
        let Some(Command::Token(t)) = &cli.command else {
            panic!("not a token command");
        };
        run(&cli, t)
    }

    fn claims(token: &str, key: &str, aud: &str) -> crate::auth::Claims {
        AccessKeys::new(vec![key.into()])
            .verify(token, |a| audience_matches(a, aud))
            .expect("verifies")
    }

    #[test]
    fn a_client_url_from_a_connection_string() {
        let url = token(&[
            "token",
            "--connection-string",
            "Endpoint=http://127.0.0.1:9000;AccessKey=k1;Version=1.0;",
            "--hub",
            "chat",
            "--user",
            "alice",
            "--role",
            "webpubsub.joinLeaveGroup",
            "--group",
            "lobby",
            "--minutes",
            "5",
        ])
        .unwrap();
        let (base, t) = url.split_once("?access_token=").unwrap();
        assert_eq!(base, "ws://127.0.0.1:9000/client/hubs/chat");
        let c = claims(t, "k1", "http://127.0.0.1:9000/client/hubs/chat");
        assert_eq!(c.sub.as_deref(), Some("alice"));
        assert_eq!((c.role.len(), c.groups.len()), (1, 1));
        assert!(c.exp <= crate::auth::now_secs() + 300);
    }

    #[test]
    fn the_hubs_own_flags_sign_when_there_is_no_connection_string() {
        let t = token(&[
            "--access-key",
            "k2",
            "--listen",
            "127.0.0.1:7000",
            "token",
            "--connection-string",
            "",
            "--hub",
            "bus",
            "--token-only",
            "--role",
            "bus.watch",
        ])
        .unwrap();
        let c = claims(&t, "k2", "http://127.0.0.1:7000/client/hubs/bus");
        assert_eq!(c.role, vec!["bus.watch"]);
        let e = token(&[
            "--listen",
            "127.0.0.1:7000",
            "token",
            "--connection-string",
            "",
        ])
        .unwrap_err();
        assert!(e.contains("NERVE_CONNECTION_STRING"), "{e}");
    }

    #[test]
    fn rest_tokens_name_their_url() {
        let cs = "Endpoint=https://h;AccessKey=k3;Version=1.0;";
        let t = token(&["token", "--connection-string", cs, "--rest"]).unwrap();
        claims(&t, "k3", "https://h/api/hubs/chat/:send");
        let t = token(&[
            "token",
            "--connection-string",
            cs,
            "--rest",
            "/api/hubs/chat/groups/g/:send?api-version=2024-01-01",
        ])
        .unwrap();
        claims(&t, "k3", "https://h/api/hubs/chat/groups/g/:send");
        assert!(token(&["token", "--connection-string", cs, "--rest", "--role", "r"]).is_err());
    }

    #[test]
    fn protocols_hubs_and_lifetimes_are_checked() {
        let cs = "Endpoint=http://h;AccessKey=k;";
        let url = token(&["token", "--connection-string", cs, "--protocol", "mqtt"]).unwrap();
        assert!(
            url.starts_with("ws://h/clients/mqtt/hubs/chat?access_token="),
            "{url}"
        );
        assert!(token(&["token", "--connection-string", cs, "--protocol", "x"]).is_err());
        assert!(token(&["token", "--connection-string", cs, "--hub", "1bad"]).is_err());
        assert!(token(&["token", "--connection-string", cs, "--minutes", "0"]).is_err());
        assert!(token(&["token", "--connection-string", "AccessKey=k"]).is_err());
    }
}
