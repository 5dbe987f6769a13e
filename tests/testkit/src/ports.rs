//! Free TCP ports for processes the tests start.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU16, Ordering};

/// Returns a TCP port on 127.0.0.1 that was free a moment ago.
///
/// Ports are taken from a per-process rotating range and checked by binding, so parallel tests in
/// one process never get the same port, and ports released by the kernel are not reused at once.
pub fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // Each test process starts at a different offset so that concurrently running test binaries
    // rarely probe the same ports.
    let base = 20_000 + (std::process::id() % 200) as u16 * 100;
    for _ in 0..20_000 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + (base - 20_000 + n) % 40_000;
        // Redis cluster needs port + 10000 for its bus; keep below 55535.
        if port >= 55_000 {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok()
            && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok()
        {
            return port;
        }
    }
    panic!("no free TCP port found");
}
