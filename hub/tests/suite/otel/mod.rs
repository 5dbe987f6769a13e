//! OpenTelemetry trace export from the running hub to a real OTLP receiver.

mod collector;
mod traces;
