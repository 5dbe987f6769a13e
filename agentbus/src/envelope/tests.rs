//! Unit tests for parsing and validating envelopes.

use super::*;
use serde_json::json;

fn valid() -> Value {
    json!({
        "specversion": "1.0",
        "id": "01JD0000000000000000000000",
        "source": "agent://planner/ctx-42",
        "type": "bus.task.status",
        "time": "2026-03-12T10:00:00.123Z",
        "correlationid": "01JD0000000000000000000001",
        "causationid": "01JD0000000000000000000002",
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "taskid": "t1",
        "contextid": "ctx-42",
        "partitionkey": "ctx-42",
        "replyto": "inbox:planner-1",
        "expirytime": "2026-03-12T10:05:00+00:00",
        "attempt": 2,
        "sequence": "000000000017",
        "data": {"statusUpdate": {"taskId": "t1", "status": {"state": "TASK_STATE_WORKING"}}}
    })
}

fn parse(v: &Value) -> Result<Envelope, EnvelopeError> {
    Envelope::from_json(&v.to_string())
}

fn with(field: &str, value: Value) -> Result<Envelope, EnvelopeError> {
    let mut v = valid();
    v[field] = value;
    parse(&v)
}

fn without(field: &str) -> Result<Envelope, EnvelopeError> {
    let mut v = valid();
    v.as_object_mut().map(|m| m.remove(field));
    parse(&v)
}

#[test]
fn parses_a_full_envelope_and_round_trips() {
    let env = parse(&valid()).expect("valid");
    assert_eq!(env.attempt, 2);
    assert_eq!(env.taskid.as_deref(), Some("t1"));
    assert_eq!(env.extensions.get("sequence"), Some(&json!("000000000017")));
    let again = Envelope::from_json(&env.to_json()).expect("round trip");
    assert_eq!(again, env);
}

#[test]
fn new_envelopes_are_valid_and_sortable() {
    let a = Envelope::new("agent://a", types::TASK_SUBMITTED);
    let b = Envelope::new("agent://a", types::TASK_SUBMITTED);
    a.validate().expect("valid");
    assert_eq!(a.id.len(), 26, "ULID");
    assert!(a.id < b.id, "ids sort by creation order");
    let many: Vec<String> = (0..1000).map(|_| super::new_id()).collect();
    assert!(
        many.windows(2).all(|w| w[0] < w[1]),
        "ids made in the same millisecond sort in creation order"
    );
    let c = Envelope::caused_by(&a, "agent://b", types::TASK_STATUS);
    assert_eq!(c.correlation_id(), a.id);
    assert_eq!(c.causationid.as_deref(), Some(a.id.as_str()));
}

#[test]
fn required_attributes() {
    for f in ["specversion", "id", "source", "type"] {
        assert!(
            matches!(without(f), Err(EnvelopeError::Missing(n)) if n == f),
            "{f}"
        );
    }
    assert_eq!(
        with("id", json!("")),
        Err(EnvelopeError::Empty("id".into()))
    );
    assert_eq!(
        with("type", json!("")),
        Err(EnvelopeError::Empty("type".into()))
    );
    assert!(matches!(
        with("source", json!("agent:// x")),
        Err(EnvelopeError::WrongType { .. })
    ));
    assert_eq!(
        with("id", json!("x".repeat(2000))),
        Err(EnvelopeError::TooLong("id".into()))
    );
}

#[test]
fn wrong_types_and_versions() {
    assert_eq!(
        with("specversion", json!("0.3")),
        Err(EnvelopeError::SpecVersion("0.3".into()))
    );
    assert!(matches!(
        with("id", json!(7)),
        Err(EnvelopeError::WrongType { name, .. }) if name == "id"
    ));
    assert!(matches!(
        with("taskid", json!({})),
        Err(EnvelopeError::WrongType { name, .. }) if name == "taskid"
    ));
    assert_eq!(parse(&json!([1])), Err(EnvelopeError::NotObject));
    assert!(matches!(
        Envelope::from_json("{"),
        Err(EnvelopeError::Json(_))
    ));
    assert_eq!(
        with("data_base64", json!("AA==")),
        Err(EnvelopeError::Unsupported("data_base64"))
    );
}

#[test]
fn timestamps_must_be_rfc3339() {
    assert!(matches!(
        with("time", json!("2026-03-12 10:00")),
        Err(EnvelopeError::Timestamp { name: "time", .. })
    ));
    assert!(matches!(
        with("expirytime", json!("tomorrow")),
        Err(EnvelopeError::Timestamp {
            name: "expirytime",
            ..
        })
    ));
}

#[test]
fn traceparent_syntax() {
    let bad = [
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "four",
        ),
        (
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "trace-id",
        ),
        (
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "zeros",
        ),
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "zeros",
        ),
        (
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "ff",
        ),
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "flags",
        ),
    ];
    for (tp, hint) in bad {
        match with("traceparent", json!(tp)) {
            Err(EnvelopeError::TraceParent { reason, .. }) => {
                assert!(reason.contains(hint), "{tp}: {reason}")
            }
            other => panic!("{tp}: {other:?}"),
        }
    }
}

#[test]
fn extension_rules() {
    assert!(matches!(
        with("Bad-Name", json!("x")),
        Err(EnvelopeError::ExtensionName { .. })
    ));
    assert!(matches!(
        with("averyveryverylongextensionname", json!("x")),
        Err(EnvelopeError::ExtensionName { .. })
    ));
    assert_eq!(
        with("nested", json!({"a": 1})),
        Err(EnvelopeError::ExtensionValue("nested".into()))
    );
    assert!(with("priority", json!(5)).is_ok());
    assert!(with("flag", json!(true)).is_ok());
}

#[test]
fn attempt_rules() {
    assert_eq!(with("attempt", json!("3")).map(|e| e.attempt), Ok(3));
    assert!(matches!(
        with("attempt", json!(-1)),
        Err(EnvelopeError::Attempt(_))
    ));
    assert!(matches!(
        with("attempt", json!("x")),
        Err(EnvelopeError::Attempt(_))
    ));
}

#[test]
fn expiry() {
    let env = Envelope::new("agent://a", "t").with_ttl(std::time::Duration::from_secs(60));
    let exp = env.expiry_ms().expect("expiry set");
    assert!(!env.is_expired_at(exp - 1));
    assert!(env.is_expired_at(exp));
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            // Eighths print and parse exactly; serde_json may round the last digit of others.
            (-1_000_000i64..1_000_000).prop_map(|n| Value::from(n as f64 / 8.0)),
            "[ -~]{0,40}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map("[a-zA-Z_]{1,8}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    const FIELDS: [&str; 12] = [
        "specversion",
        "id",
        "source",
        "type",
        "time",
        "traceparent",
        "attempt",
        "expirytime",
        "taskid",
        "data",
        "data_base64",
        "ext",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Arbitrary text never panics the parser.
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
            let _ = Envelope::from_json(&text);
        }

        /// A valid envelope with any field replaced by any JSON either parses into an envelope
        /// that validates and round-trips, or is refused with an error.
        #[test]
        fn mutated_envelopes_parse_or_fail_cleanly(field in proptest::sample::select(FIELDS.to_vec()), value in arb_json()) {
            let mut v = valid();
            v[field] = value;
            if let Ok(env) = parse(&v) {
                prop_assert!(env.validate().is_ok());
                prop_assert_eq!(Envelope::from_json(&env.to_json()), Ok(env));
            }
        }
    }
}
