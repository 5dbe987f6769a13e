//! Unit and property tests for the task state machine.

use super::*;
use crate::a2a::Role;
use proptest::prelude::*;

fn record() -> TaskRecord {
    TaskRecord::submitted("t1", "c1", "echo", Message::user_text("hi"), "corr", "ev1")
}

#[test]
fn happy_path_with_input() {
    let mut r = record();
    assert_eq!(
        r.apply(&TaskEvent::status(TaskState::Working), None),
        Ok(Applied::Changed)
    );
    let ask = TaskEvent::Status {
        state: TaskState::InputRequired,
        message: Some(Message::agent_text("which one?")),
        metadata: Map::new(),
    };
    assert_eq!(r.apply(&ask, Some(2)), Ok(Applied::Changed));
    let answer = Message::user_text("the blue one");
    let reply = TaskEvent::Reply { message: answer };
    assert_eq!(r.apply(&reply, None), Ok(Applied::Changed));
    assert_eq!(r.apply(&reply, None), Ok(Applied::Duplicate));
    assert_eq!(r.state(), TaskState::Working);
    assert_eq!(r.task.history.len(), 3);
    assert_eq!(
        r.apply(&TaskEvent::status(TaskState::Completed), None),
        Ok(Applied::Changed)
    );
    assert_eq!(r.version, 5);
}

#[test]
fn terminal_absorbs() {
    let mut r = record();
    r.apply(&TaskEvent::status(TaskState::Canceled), None)
        .expect("cancel");
    assert_eq!(
        r.apply(&TaskEvent::status(TaskState::Canceled), None),
        Ok(Applied::Duplicate)
    );
    assert_eq!(
        r.apply(&TaskEvent::status(TaskState::Working), None),
        Err(TransitionError::Terminal(TaskState::Canceled))
    );
    assert_eq!(
        r.apply(&TaskEvent::status(TaskState::Completed), None),
        Err(TransitionError::Terminal(TaskState::Canceled))
    );
}

#[test]
fn illegal_and_stale() {
    let mut r = record();
    assert_eq!(
        r.apply(&TaskEvent::status(TaskState::InputRequired), None),
        Err(TransitionError::Illegal {
            from: TaskState::Submitted,
            to: TaskState::InputRequired
        })
    );
    r.apply(&TaskEvent::status(TaskState::Working), None)
        .expect("working");
    assert_eq!(
        r.apply(&TaskEvent::status(TaskState::Completed), Some(1)),
        Ok(Applied::Stale),
        "an update based on version 1 is late once the task is at version 2"
    );
    assert_eq!(
        r.apply(
            &TaskEvent::Reply {
                message: Message::user_text("x")
            },
            None
        ),
        Err(TransitionError::NotInterrupted(TaskState::Working))
    );
}

#[test]
fn artifacts_append_and_dedupe() {
    let mut r = record();
    let a = Artifact::text("a1", "part one");
    let ev = TaskEvent::Artifact {
        artifact: a.clone(),
        append: false,
        last_chunk: false,
    };
    assert_eq!(r.apply(&ev, None), Ok(Applied::Changed));
    assert_eq!(r.apply(&ev, None), Ok(Applied::Duplicate));
    let more = TaskEvent::Artifact {
        artifact: Artifact::text("a1", "part two"),
        append: true,
        last_chunk: true,
    };
    assert_eq!(r.apply(&more, None), Ok(Applied::Changed));
    assert_eq!(r.task.artifacts[0].parts.len(), 2);
}

fn arb_state() -> impl Strategy<Value = TaskState> {
    proptest::sample::select(TaskState::ALL.to_vec())
}

fn arb_event() -> impl Strategy<Value = TaskEvent> {
    prop_oneof![
        4 => arb_state().prop_map(TaskEvent::status),
        1 => (0u8..3, any::<bool>()).prop_map(|(n, append)| TaskEvent::Artifact {
            artifact: Artifact::text(format!("a{n}"), format!("chunk {n}")),
            append,
            last_chunk: false,
        }),
        1 => (0u8..3).prop_map(|n| TaskEvent::Reply {
            message: Message {
                message_id: format!("reply-{n}"),
                ..Message::new(Role::User, vec![])
            },
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any sequence of updates (with random, possibly stale, versions) only ever moves the task
    /// along legal edges, never leaves a terminal state, and changes the version by exactly one
    /// per applied change.
    #[test]
    fn random_updates_never_reach_an_illegal_state(
        updates in proptest::collection::vec((arb_event(), proptest::option::of(0u64..12)), 0..40)
    ) {
        let mut r = record();
        let mut terminal_seen: Option<TaskState> = None;
        for (event, if_version) in updates {
            let before = r.clone();
            match r.apply(&event, if_version) {
                Ok(Applied::Changed) => {
                    prop_assert_eq!(r.version, before.version + 1);
                    prop_assert!(
                        r.state() == before.state() || can_transition(before.state(), r.state()),
                        "illegal move {} -> {}", before.state(), r.state()
                    );
                    prop_assert!(!before.state().is_terminal());
                }
                Ok(Applied::Duplicate) | Ok(Applied::Stale) | Err(_) => {
                    prop_assert_eq!(&r, &before, "a refused or no-op update changed the record");
                }
            }
            if let Some(t) = terminal_seen {
                prop_assert_eq!(r.state(), t, "left a terminal state");
            } else if r.state().is_terminal() {
                terminal_seen = Some(r.state());
            }
        }
    }

    /// Applying the same update twice in a row never changes the record the second time, unless
    /// the first was refused.
    #[test]
    fn repeated_updates_are_idempotent(event in arb_event(), first in arb_state()) {
        let mut r = record();
        let _ = r.apply(&TaskEvent::status(TaskState::Working), None);
        let _ = r.apply(&TaskEvent::status(first), None);
        if r.apply(&event, None).is_ok() {
            let after_first = r.clone();
            let second = r.apply(&event, None);
            let appends = matches!(event, TaskEvent::Artifact { append: true, .. });
            if !appends && !matches!(&event, TaskEvent::Status { state: TaskState::Working, .. }) {
                prop_assert!(matches!(second, Ok(Applied::Duplicate)), "{:?}", second);
                prop_assert_eq!(r, after_first);
            }
        }
    }
}
