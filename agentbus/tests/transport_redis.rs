//! The shared transport suite on the Redis Streams transport, against a real `redis-server`
//! started per test on a free port.

mod common;
mod suite;

use common::RedisHarness;

transport_suite!(RedisHarness::new());
