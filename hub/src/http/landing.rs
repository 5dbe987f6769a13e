//! `GET /`: the page a person sees first when they open the hub in a browser. It says what the
//! hub is, lists its endpoints as this caller reaches them, links the demo pages (or says why
//! they are off), and, for a browser on the hub's own machine, shows the connection string
//! to copy. It is rendered here, with no script needed to read it.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};

use crate::node::Node;

const TEMPLATE: &str = include_str!("../../pages/landing.html");

/// `GET /`
pub async fn page(
    State(node): State<Arc<Node>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let http = node.endpoint_for(&headers);
    let ws = crate::config::ws_endpoint(&http);
    let refusal = crate::bus::demo_refusal(&node, peer, &headers);
    let connect = match refusal {
        None => connect_local(&node, &http),
        Some(_) => connect_elsewhere(&http),
    };
    let html = fill(
        TEMPLATE,
        &[
            ("node", escape(&node.config.node_id)),
            ("version", escape(env!("CARGO_PKG_VERSION"))),
            ("http", escape(&http)),
            ("ws", escape(&ws)),
            ("bus_hub", escape(&node.config.bus.hub)),
            ("connect", connect),
            ("demo", demo(refusal.as_deref())),
        ],
    );
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // It may carry the access key: never kept by a cache.
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response()
}

/// The connection string and how to use it, for a browser on this machine.
fn connect_local(node: &Node, http: &str) -> String {
    let cs = escape(&format!(
        "Endpoint={http};AccessKey={};Version=1.0;",
        node.keys.primary()
    ));
    let generated = if node.config.generated_key {
        " This key was generated when the hub started and changes when it restarts; pass \
         <code>--access-key</code> to keep one."
    } else {
        ""
    };
    format!(
        r#"<div class="panel" id="connect"><h3 style="margin-top:0">Connect</h3>
<p>The connection string, for the Azure Web PubSub server SDKs, <code>nerve token</code> and the Nerve clients:</p>
<div class="row"><code class="grow copyable" id="connection-string">{cs}</code><button class="ghost" data-copy="connection-string">Copy</button></div>
<p>The examples in the README read it from the environment:</p>
<div class="row"><code class="grow copyable" id="export">export NERVE_CONNECTION_STRING='{cs}'</code><button class="ghost" data-copy="export">Copy</button></div>
<p>Then <code>nerve token --hub chat --user alice --role webpubsub.joinLeaveGroup --role webpubsub.sendToGroup</code>
prints a client URL, and <code>nerve token --rest /api/hubs/chat/:send</code> a bearer token for that REST call.</p>
<p class="muted">Shown because this browser is on the hub's own machine and the hub listens on loopback. It
holds the access key: treat it as a password.{generated}</p></div>"#
    )
}

/// How to connect, for a browser elsewhere: the key is not shown.
fn connect_elsewhere(http: &str) -> String {
    let http = escape(http);
    format!(
        r#"<div class="panel" id="connect"><h3 style="margin-top:0">Connect</h3>
<p>Clients need a token signed with the hub's access key. <code>nerve</code> prints the connection string that
holds the key when it starts; this page shows it only to a browser on the hub's own machine while the hub
listens on loopback. With the key, <code>nerve token --access-key KEY --public-endpoint {http} --hub chat --user alice</code>
prints a client URL.</p></div>"#
    )
}

/// The demo pages, or why they are off.
fn demo(refusal: Option<&str>) -> String {
    let notice = refusal.map_or_else(String::new, |why| {
        format!(
            r#"<p class="panel notice" id="demo-off">{}</p>"#,
            escape(why)
        )
    });
    format!(
        r#"<div class="panel" id="demo"><h3 style="margin-top:0">Demo pages</h3>{notice}<ul>
<li><a href="/demo/chat">Chat</a>: rooms (groups), users, typing indicators.</li>
<li><a href="/demo/dashboard">Dashboard</a>: connections, groups, messages per second, latency, Redis health, bus queues and dead letters.</li>
<li><a href="/demo/tasks">Tasks</a>: ask agents and watch the correlation chain live; answer the steps that wait for a person.
Start the agents of <code>examples/support-chat</code> first.</li>
</ul></div>"#
    )
}

/// `template` with every `{{name}}` replaced by its (already escaped) value.
fn fill(template: &str, values: &[(&str, String)]) -> String {
    let mut out = template.to_string();
    for (name, value) in values {
        out = out.replace(&format!("{{{{{name}}}}}"), value);
    }
    out
}

/// Text made safe to place in HTML, inside elements or quoted attributes.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_and_every_slot_filled() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        let page = fill(
            "{{a}} and {{b}}",
            &[("a", "1".into()), ("b", escape("<2>"))],
        );
        assert_eq!(page, "1 and &lt;2&gt;");
    }

    #[test]
    fn the_template_has_no_slot_left_unfilled() {
        let names = [
            "node", "version", "http", "ws", "bus_hub", "connect", "demo",
        ];
        let values: Vec<(&str, String)> = names.iter().map(|n| (*n, String::new())).collect();
        assert!(!fill(TEMPLATE, &values).contains("{{"));
    }
}
