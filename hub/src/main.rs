//! The `nerve` binary: parse the configuration, print how to connect, serve until a signal.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use nerve_hub::config::{Cli, Command, Config, ConfigAction};
use nerve_hub::telemetry::Telemetry;
use nerve_hub::{Node, serve};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::Config {
            action: ConfigAction::Check { file },
        }) => return check_config(file),
        Some(Command::Token(args)) => {
            return match nerve_hub::config::token::run(&cli, args) {
                Ok(line) => {
                    println!("{line}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("nerve token: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        None => {}
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nerve: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(file: &std::path::Path) -> ExitCode {
    let cli = Cli::parse_from(["nerve", "--config", &file.display().to_string()]);
    match Config::resolve(&cli) {
        Ok(c) => {
            println!("{}: OK", file.display());
            println!();
            println!(
                "# The effective settings: this file over the defaults (flags and NERVE_* \
                 variables given at start override them)."
            );
            print!("{}", c.report());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::resolve(&cli)?;
    let filter = EnvFilter::try_new(&config.log_level)
        .with_context(|| format!("invalid --log-level '{}'", config.log_level))?;
    // The exporter starts before the runtime and stops after it, so its last batch is sent
    // once every request has finished. The log filter applies to the log lines only: spans of
    // the hub and the bus are exported at info level whatever is logged.
    let telemetry = Telemetry::start(&config.telemetry, &config.node_id, filter)
        .context("start the OTLP trace exporter")?;
    if telemetry.exporting()
        && let Some(url) = config.telemetry.traces_url()
    {
        tracing::info!(%url, service = %config.telemetry.service_name, "exporting traces over OTLP/HTTP");
    }
    let result = serve_until_signal(config);
    telemetry.shutdown();
    result
}

fn serve_until_signal(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("listen on {}", config.listen))?;
        let bound = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let state = Node::new(config, shutdown.clone());
        print_banner(&state, bound);
        tokio::spawn(wait_for_signal(shutdown));
        serve(state, listener).await.context("serve")
    })
}

fn print_banner(state: &Node, bound: std::net::SocketAddr) {
    let config = state.config();
    let endpoint = config.endpoint(bound);
    let key = state.keys().primary();
    let hub = "chat";
    let roles = [
        "webpubsub.joinLeaveGroup".to_string(),
        "webpubsub.sendToGroup".to_string(),
    ];
    let aud = format!("{endpoint}/client/hubs/{hub}");
    let token = state
        .keys()
        .client_token(&aud, Some("demo"), &roles, &[], 3600);
    println!("Nerve is listening on {bound}");
    if bound.ip().is_unspecified() && config.public_endpoint.is_none() {
        println!(
            "(on every interface: the URLs below name this machine; pass --public-endpoint \
             with the address clients use)"
        );
    }
    println!();
    println!("Start page (endpoints, demo pages, how to connect): {endpoint}/");
    if !config.demo_tokens {
        println!(
            "The demo pages are off: {}",
            if bound.ip().is_loopback() {
                "[demo] enabled = false"
            } else {
                "they mint tokens, so they run only on a loopback listener"
            }
        );
    }
    println!();
    println!(
        "Connection string (for the Azure Web PubSub server SDKs, `nerve token` and the Nerve clients):"
    );
    println!("Endpoint={endpoint};AccessKey={key};Version=1.0;");
    if config.generated_key {
        println!("(a random access key was generated; pass --access-key to fix one)");
    }
    println!();
    println!("Client URL for hub '{hub}', user 'demo', valid for one hour:");
    println!(
        "{}/client/hubs/{hub}?access_token={token}",
        nerve_hub::config::ws_endpoint(&endpoint)
    );
    use std::io::Write;
    let _ = std::io::stdout().flush();
}

async fn wait_for_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("shutting down");
    shutdown.cancel();
}
