//! The gateway's A2A agent card: one card for the hub, whose skills are the skills of every
//! agent registered on the bus (deduplicated by id), so a client discovers what it can ask for.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::bus::BridgeCell;

/// `GET /.well-known/agent-card.json`
pub async fn agent_card(State(cell): State<BridgeCell>, headers: HeaderMap) -> Response {
    let bridge = match cell.get() {
        Ok(b) => b,
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    };
    let cards = match bridge.bus.transport().agents().await {
        Ok(c) => c,
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    };
    let mut skills: BTreeMap<String, Value> = BTreeMap::new();
    for card in &cards {
        for s in &card.skills {
            skills.entry(s.id.clone()).or_insert_with(|| {
                json!({
                    "id": s.id,
                    "name": s.name,
                    "description": if s.description.is_empty() { format!("{} ({})", s.name, card.name) } else { s.description.clone() },
                    "tags": if s.tags.is_empty() { vec!["bus".to_string()] } else { s.tags.clone() },
                    "examples": s.examples,
                    "inputModes": ["text/plain", "application/json"],
                    "outputModes": ["text/plain", "application/json"],
                })
            });
        }
    }
    let base = cell.app.endpoint_for(&headers);
    Json(json!({
        "name": "Nerve agent bus",
        "description": "A2A gateway to the agents on this hub's bus; name a skill in message.metadata.capability",
        "version": env!("CARGO_PKG_VERSION"),
        "supportedInterfaces": [
            {"url": format!("{base}/a2a"), "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}
        ],
        "capabilities": {"streaming": true, "pushNotifications": true, "extendedAgentCard": false},
        "defaultInputModes": ["text/plain", "application/json"],
        "defaultOutputModes": ["text/plain", "application/json"],
        "securitySchemes": {
            "bearer": {"httpAuthSecurityScheme": {"scheme": "Bearer", "bearerFormat": "JWT",
                "description": "A hub client token for the bus hub carrying bus.* roles"}}
        },
        "securityRequirements": [{"schemes": {"bearer": {"list": []}}}],
        "skills": skills.into_values().collect::<Vec<_>>(),
    }))
    .into_response()
}
