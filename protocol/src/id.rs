//! Ids the bus mints on the wire (event ids, message ids): ULIDs, sortable by creation time.

/// A new sortable id (ULID), strictly increasing within the process, so ids made in the same
/// millisecond still sort in creation order.
pub fn new_id() -> String {
    static GENERATOR: std::sync::Mutex<ulid::Generator> =
        std::sync::Mutex::new(ulid::Generator::new());
    let mut generator = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
    // The random part overflows only after 2^80 ids in one millisecond.
    generator
        .generate()
        .unwrap_or_else(|_| ulid::Ulid::new())
        .to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_increase() {
        let a = super::new_id();
        let b = super::new_id();
        assert!(a < b, "{a} !< {b}");
    }
}
