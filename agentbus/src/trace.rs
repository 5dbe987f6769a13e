//! Distributed tracing of deliveries, without a tracing backend in this crate.
//!
//! Every delivery an agent handles runs inside a `bus.deliver` span that records the envelope's
//! W3C `traceparent`. A process that exports traces (the `nerve` hub with OpenTelemetry)
//! installs a [`ParentHook`] once at startup; the bus calls it for every delivery span whose
//! envelope carries a `traceparent`, so the hook can make the span a child of the submitter's
//! span. Without a hook, the span is a plain `tracing` span and costs what any span costs.

use std::sync::OnceLock;

/// Makes `span` a child of the remote span named by the W3C `traceparent` value.
pub type ParentHook = fn(span: &tracing::Span, traceparent: &str);

static PARENT_HOOK: OnceLock<ParentHook> = OnceLock::new();

/// Installs the process-wide parent hook; returns false if one was installed already.
pub fn set_parent_hook(hook: ParentHook) -> bool {
    PARENT_HOOK.set(hook).is_ok()
}

/// The span a delivery is handled in: event type, task, agent and correlation id, and the
/// envelope's `traceparent` (recorded, and handed to the parent hook).
pub(crate) fn delivery_span(env: &crate::envelope::Envelope, agent: &str) -> tracing::Span {
    let span = tracing::info_span!(
        "bus.deliver",
        event_type = %env.event_type,
        task = env.taskid.as_deref().unwrap_or(""),
        correlation = env.correlationid.as_deref().unwrap_or(""),
        agent,
        traceparent = env.traceparent.as_deref().unwrap_or(""),
    );
    if let (Some(tp), Some(hook)) = (env.traceparent.as_deref(), PARENT_HOOK.get()) {
        hook(&span, tp);
    }
    span
}
