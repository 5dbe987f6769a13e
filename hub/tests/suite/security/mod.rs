//! Security of the running hub: hostile input, TLS, browser origins, CORS and secrets in logs.

mod hostile;
mod tls;
