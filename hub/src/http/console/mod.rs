//! The operator console: the page at `/console/` and its read API under `/console/api/`.
//!
//! The page holds no privilege of its own. Every call it makes carries a token it signs with
//! the access key the operator gave it (or, for a browser on the hub's own machine while the
//! hub listens on loopback, the key the page was served with, as the landing page shows it):
//! reads go to `/console/api/…`, actions to the REST API (`/api/hubs/…`) and bus operations to
//! `POST /bus/api/{op}`, exactly as an operator's script would call them.

mod api;
mod samples;
mod stream;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router as HttpRouter;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::bus::demo::{STYLE_CSS, asset};
use crate::node::Node;
pub use samples::Samples;

const PAGE: &str = include_str!("../../../pages/console.html");
const SCRIPT: &str = include_str!("../../../pages/console.js");

/// What the console's handlers share.
#[derive(Clone)]
pub struct Console {
    /// The hub's state.
    pub node: Arc<Node>,
    /// The per-second samples of this node.
    pub samples: Arc<Samples>,
}

/// The console's routes (none when `console.enabled` is false); starts its sampler.
pub fn routes(node: Arc<Node>) -> HttpRouter<Arc<Node>> {
    if !node.config.console.enabled {
        return HttpRouter::new();
    }
    let samples = Arc::new(Samples::new(node.config.console.history_secs as usize));
    tokio::spawn(samples::run(node.clone(), samples.clone()));
    let console = Console { node, samples };
    HttpRouter::new()
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route("/console/", get(page))
        .route(
            "/console/console.js",
            get(|| asset(SCRIPT, "text/javascript")),
        )
        .route("/console/style.css", get(|| asset(STYLE_CSS, "text/css")))
        .merge(api::routes())
        .with_state(console)
}

/// `GET /console/`: the page; for a browser on this machine with the hub on loopback, with
/// the access key so the operator need not type it.
async fn page(
    State(console): State<Console>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let node = &console.node;
    let local =
        node.config.listen.ip().is_loopback() && crate::tls::from_this_machine(peer.ip(), &headers);
    let boot = serde_json::json!({
        "node": node.config.node_id,
        "busHub": node.config.bus.hub,
        "key": local.then(|| node.keys.primary()),
        "payloadsAllowed": node.trace.payloads_allowed(),
    });
    // Safe inside <script>: no `<` survives, so no `</script>` either.
    let boot = boot.to_string().replace('<', "\\u003c");
    let html = PAGE.replace("{{boot}}", &boot);
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // It may carry the access key: never kept by a cache.
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response()
}
