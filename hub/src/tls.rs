//! Transport security: TLS for the listener (rustls), so the hub serves `https`/`wss` itself
//! when `[tls]` names a certificate chain and key in PEM files; the browser origin allow-list
//! for WebSocket upgrades; CORS for the REST API (`[security]`); and which requests come from
//! this machine (the only callers shown secrets such as the access key or demo tokens).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;

/// `[tls]`: PEM files of the certificate chain and its private key.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// Certificate chain, leaf first (PEM).
    pub cert_file: Option<PathBuf>,
    /// Private key of the leaf certificate (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
}

impl TlsSettings {
    /// Whether TLS is configured (both files given).
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some() && self.key_file.is_some()
    }

    /// Both files or neither, and when both, a certificate chain and key that load and
    /// match: a file that is missing or wrong is found here, not when the listener starts.
    pub fn validate(&self) -> Result<(), String> {
        match (&self.cert_file, &self.key_file) {
            (None, None) => Ok(()),
            (Some(cert), Some(key)) => {
                for (name, path) in [("cert_file", cert), ("key_file", key)] {
                    std::fs::metadata(path)
                        .map_err(|e| format!("tls.{name} {}: {e}", path.display()))?;
                }
                acceptor(cert, key)
                    .map(|_| ())
                    .map_err(|e| format!("tls: {e}"))
            }
            _ => Err("tls needs both cert_file and key_file (--tls-cert and --tls-key)".into()),
        }
    }
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no usable PEM item.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// rustls refused the certificate and key (e.g. they do not match).
    #[error("invalid TLS certificate or key: {0}")]
    Config(#[from] tokio_rustls::rustls::Error),
}

/// The acceptor for the configured certificate and key (HTTP/1.1 by ALPN).
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let file_error = |path: &Path, e: &dyn std::fmt::Display| TlsError::File {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_error(cert, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(cert, &e))?;
    if chain.is_empty() {
        return Err(file_error(cert, &"no certificate in the file"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| file_error(key, &e))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)?;
    // HTTP/1.1 only: browsers open WebSockets over it (not over HTTP/2 without RFC 8441).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Whether a WebSocket upgrade may proceed: no `Origin` header (not a browser), an empty
/// allow-list, or an origin on it (compared without case and trailing `/`).
pub fn origin_allowed(allowed: &[String], headers: &http::HeaderMap) -> bool {
    let Some(origin) = headers.get(http::header::ORIGIN) else {
        return true;
    };
    if allowed.is_empty() {
        return true;
    }
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let origin = origin.trim_end_matches('/');
    allowed
        .iter()
        .any(|a| a == "*" || a.trim_end_matches('/').eq_ignore_ascii_case(origin))
}

/// Whether a request comes from this machine: a loopback peer that also named a loopback
/// host. The `Host` check keeps out pages of other sites that rebind their DNS name to
/// 127.0.0.1 to read a local hub through the visitor's browser.
pub fn from_this_machine(peer: std::net::IpAddr, headers: &http::HeaderMap) -> bool {
    if !peer.is_loopback() {
        return false;
    }
    let Some(host) = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
    else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The CORS layer of the REST API, or `None` when no origin is configured.
pub fn cors_layer(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use http::{HeaderName, HeaderValue, Method, header};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok()),
        )
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([
                Method::GET,
                Method::HEAD,
                Method::POST,
                Method::PUT,
                Method::DELETE,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("traceparent"),
            ])
            .expose_headers([HeaderName::from_static("x-ms-error-code")])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_loopback_callers_naming_a_loopback_host_are_local() {
        let local: std::net::IpAddr = [127, 0, 0, 1].into();
        let remote: std::net::IpAddr = [10, 0, 0, 7].into();
        let with_host = |h: &str| {
            let mut m = http::HeaderMap::new();
            m.insert(http::header::HOST, h.parse().expect("host"));
            m
        };
        for host in [
            "127.0.0.1:8080",
            "localhost:8080",
            "LOCALHOST",
            "[::1]:8080",
            "127.0.0.2",
        ] {
            assert!(super::from_this_machine(local, &with_host(host)), "{host}");
        }
        for host in ["evil.example:8080", "10.0.0.7:8080", "[2001:db8::1]:80"] {
            assert!(!super::from_this_machine(local, &with_host(host)), "{host}");
        }
        assert!(!super::from_this_machine(local, &http::HeaderMap::new()));
        assert!(!super::from_this_machine(
            remote,
            &with_host("127.0.0.1:8080")
        ));
    }

    use super::*;

    #[test]
    fn origins_are_checked_only_for_browsers_and_only_when_listed() {
        let mut h = http::HeaderMap::new();
        let list = vec!["https://app.example".to_string()];
        assert!(origin_allowed(&list, &h));
        h.insert(http::header::ORIGIN, "https://APP.example".parse().unwrap());
        assert!(origin_allowed(&list, &h));
        assert!(origin_allowed(&[], &h));
        h.insert(
            http::header::ORIGIN,
            "https://evil.example".parse().unwrap(),
        );
        assert!(!origin_allowed(&list, &h));
        assert!(origin_allowed(&["*".to_string()], &h));
    }

    #[test]
    fn half_a_tls_setting_is_an_error() {
        let t = TlsSettings {
            cert_file: Some("c.pem".into()),
            key_file: None,
        };
        assert!(t.validate().is_err() && !t.enabled());
        assert!(TlsSettings::default().validate().is_ok());
    }
}
