//! The limits of `[limits]` as users meet them, and the metrics that count what happened.

mod enforced;
mod metrics;
