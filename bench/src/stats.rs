//! Latency histograms: recorded in microseconds by every load-generator process, shipped to the
//! runner as serialized HDR histograms, merged there and summarized into percentiles.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use serde::{Deserialize, Serialize};

/// Highest latency recorded (60 s); slower deliveries are clamped to it.
const MAX_MICROS: u64 = 60_000_000;

/// Errors moving histograms between processes.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// The base64 text was not valid.
    #[error("histogram is not base64: {0}")]
    Base64(#[from] base64::DecodeError),
    /// The bytes were not a V2 histogram.
    #[error("histogram does not decode: {0}")]
    Decode(String),
    /// Histograms could not be created or merged.
    #[error("histogram: {0}")]
    Histogram(String),
}

/// A new empty latency histogram (1 µs .. 60 s, 3 significant digits).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("constant histogram bounds are valid")
}

/// Records one latency in microseconds.
pub fn record(h: &mut Histogram<u64>, micros: u64) {
    let _ = h.record(micros.clamp(1, MAX_MICROS));
}

/// Serializes a histogram to base64 text for the control channel.
pub fn encode(h: &Histogram<u64>) -> Result<String, StatsError> {
    let mut buf = Vec::new();
    V2Serializer::new()
        .serialize(h, &mut buf)
        .map_err(|e| StatsError::Histogram(format!("{e:?}")))?;
    Ok(STANDARD.encode(buf))
}

/// Parses a histogram produced by [`encode`].
pub fn decode(text: &str) -> Result<Histogram<u64>, StatsError> {
    let bytes = STANDARD.decode(text)?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| StatsError::Decode(format!("{e:?}")))
}

/// Adds `other` into `into`.
pub fn merge(into: &mut Histogram<u64>, other: &Histogram<u64>) -> Result<(), StatsError> {
    into.add(other)
        .map_err(|e| StatsError::Histogram(format!("{e:?}")))
}

/// Percentiles of a latency distribution, in microseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    /// Number of samples.
    pub count: u64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest sample.
    pub max_us: u64,
    /// The cumulative distribution as (latency µs, fraction ≤ it) points, for plots.
    pub cdf: Vec<(u64, f64)>,
}

/// Summarizes a histogram.
pub fn summarize(h: &Histogram<u64>) -> Latency {
    if h.is_empty() {
        return Latency::default();
    }
    let quantiles = [
        0.0, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995,
        0.999, 0.9999, 1.0,
    ];
    Latency {
        count: h.len(),
        p50_us: h.value_at_quantile(0.5),
        p90_us: h.value_at_quantile(0.9),
        p99_us: h.value_at_quantile(0.99),
        p999_us: h.value_at_quantile(0.999),
        max_us: h.max(),
        cdf: quantiles
            .iter()
            .map(|&q| (h.value_at_quantile(q), q))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_merge_and_summarize() {
        let mut a = new_histogram();
        for v in 1..=1000 {
            record(&mut a, v);
        }
        let mut b = decode(&encode(&a).unwrap()).unwrap();
        assert_eq!(b.len(), 1000);
        merge(&mut b, &a).unwrap();
        let s = summarize(&b);
        assert_eq!(s.count, 2000);
        assert!((495..=505).contains(&s.p50_us), "{}", s.p50_us);
        assert!(s.p99_us >= 985 && s.p99_us <= s.p999_us);
        assert_eq!(s.cdf.last().map(|p| p.1), Some(1.0));
    }

    #[test]
    fn empty_summary_is_zero_and_huge_values_clamp() {
        assert_eq!(summarize(&new_histogram()).count, 0);
        let mut h = new_histogram();
        record(&mut h, u64::MAX);
        record(&mut h, 0);
        assert_eq!(h.len(), 2);
    }
}
