//! Reading a correlation chain back as a tree: every task in the chain is a node, sub-tasks hang
//! under the task whose event caused them, and each node lists its events with times relative to
//! the start of the chain.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::a2a::{StreamResponse, TaskState};
use crate::bus::Bus;
use crate::envelope::{Envelope, types};
use crate::error::BusError;

/// One event in the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventSummary {
    /// Event id.
    pub id: String,
    /// Event type.
    pub event_type: String,
    /// Producer.
    pub source: String,
    /// The task state it reports, for status events.
    pub state: Option<TaskState>,
    /// Milliseconds since the first event of the chain.
    pub at_ms: u64,
}

/// One task in the chain with its events and sub-tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskNode {
    /// Task id.
    pub task_id: String,
    /// Capability it was submitted to.
    pub capability: String,
    /// Agent that last reported on it.
    pub agent: Option<String>,
    /// Last reported state.
    pub state: TaskState,
    /// Milliseconds from chain start to submission.
    pub submitted_at_ms: u64,
    /// Milliseconds from submission to a terminal state, if finished.
    pub duration_ms: Option<u64>,
    /// The task's events in order.
    pub events: Vec<EventSummary>,
    /// Sub-tasks it caused.
    pub children: Vec<TaskNode>,
}

/// A whole chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CorrelationTree {
    /// The chain id.
    pub correlation_id: String,
    /// Unix ms of the first event.
    pub started_ms: u64,
    /// Tasks not caused by another task of the chain.
    pub roots: Vec<TaskNode>,
    /// Events that belong to no task (requests, replies, context updates).
    pub other_events: Vec<EventSummary>,
}

fn summary(e: &Envelope, start: u64) -> EventSummary {
    let state = match e.data.as_ref().and_then(StreamResponse::from_value) {
        Some(StreamResponse::StatusUpdate(s)) => Some(s.status.state),
        Some(StreamResponse::Task(t)) => Some(t.status.state),
        _ => None,
    };
    EventSummary {
        id: e.id.clone(),
        event_type: e.event_type.clone(),
        source: e.source.clone(),
        state,
        at_ms: e.time_ms().unwrap_or(start).saturating_sub(start),
    }
}

/// Builds the tree from a chain's events (in recording order).
pub fn build(correlation_id: &str, events: &[Envelope]) -> CorrelationTree {
    let start = events
        .iter()
        .filter_map(Envelope::time_ms)
        .min()
        .unwrap_or(0);
    let task_of: HashMap<&str, &str> = events
        .iter()
        .filter_map(|e| e.taskid.as_deref().map(|t| (e.id.as_str(), t)))
        .collect();
    let mut nodes: BTreeMap<String, TaskNode> = BTreeMap::new();
    let mut parent: HashMap<String, String> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut other = Vec::new();
    // First every submission, so events recorded out of order across processes still find
    // their task; then everything else in recording order.
    for e in events
        .iter()
        .filter(|e| e.event_type == types::TASK_SUBMITTED)
    {
        let Some(task_id) = e.taskid.clone() else {
            continue;
        };
        if nodes.contains_key(&task_id) {
            continue;
        }
        let s = summary(e, start);
        let cap = e
            .extensions
            .get("capability")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        nodes.insert(
            task_id.clone(),
            TaskNode {
                task_id: task_id.clone(),
                capability: cap.to_string(),
                agent: None,
                state: TaskState::Submitted,
                submitted_at_ms: s.at_ms,
                duration_ms: None,
                events: vec![s],
                children: Vec::new(),
            },
        );
        order.push(task_id.clone());
        let cause_task = e
            .causationid
            .as_deref()
            .and_then(|c| task_of.get(c))
            .filter(|t| **t != task_id);
        if let Some(p) = cause_task {
            parent.insert(task_id.clone(), p.to_string());
        }
    }
    let mut submissions_seen: HashSet<&str> = HashSet::new();
    for e in events {
        let s = summary(e, start);
        let node = e.taskid.as_deref().and_then(|t| nodes.get_mut(t));
        let Some(node) = node else {
            other.push(s);
            continue;
        };
        if e.event_type == types::TASK_SUBMITTED && submissions_seen.insert(e.id.as_str()) {
            continue;
        }
        if let Some(state) = s.state.filter(|_| e.event_type == types::TASK_STATUS) {
            node.state = state;
            if state.is_terminal() && node.duration_ms.is_none() {
                node.duration_ms = Some(s.at_ms.saturating_sub(node.submitted_at_ms));
            }
            if let Some(agent) = e.source.strip_prefix("agent://") {
                node.agent = Some(agent.to_string());
            }
        }
        node.events.push(s);
    }
    // Attach children deepest-first so each child is complete when it moves into its parent.
    let mut depth: HashMap<String, usize> = HashMap::new();
    for id in &order {
        let mut d = 0;
        let mut cur = id.clone();
        while let Some(p) = parent.get(&cur) {
            d += 1;
            cur = p.clone();
            if d > order.len() {
                break;
            }
        }
        depth.insert(id.clone(), d);
    }
    let mut by_depth = order.clone();
    by_depth.sort_by_key(|id| std::cmp::Reverse(depth.get(id).copied().unwrap_or(0)));
    for id in by_depth {
        let Some(p) = parent.get(&id).cloned() else {
            continue;
        };
        if let Some(child) = nodes.remove(&id)
            && let Some(pn) = nodes.get_mut(&p)
        {
            pn.children.push(child);
            pn.children.sort_by_key(|c| c.submitted_at_ms);
        }
    }
    let mut roots: Vec<TaskNode> = order.iter().filter_map(|id| nodes.remove(id)).collect();
    roots.sort_by_key(|n| n.submitted_at_ms);
    CorrelationTree {
        correlation_id: correlation_id.to_string(),
        started_ms: start,
        roots,
        other_events: other,
    }
}

/// Renders the tree as indented text with timings.
pub fn render(tree: &CorrelationTree) -> String {
    fn node(out: &mut String, n: &TaskNode, depth: usize) {
        let pad = "  ".repeat(depth);
        let took = n
            .duration_ms
            .map_or("running".to_string(), |d| format!("{d} ms"));
        let _ = writeln!(
            out,
            "{pad}task {} [{}] {} by {} (+{} ms, {took})",
            n.task_id,
            n.capability,
            n.state,
            n.agent.as_deref().unwrap_or("-"),
            n.submitted_at_ms
        );
        for e in &n.events {
            let state = e.state.map(|s| format!(" {s}")).unwrap_or_default();
            let _ = writeln!(
                out,
                "{pad}  +{} ms {}{state} from {}",
                e.at_ms, e.event_type, e.source
            );
        }
        for c in &n.children {
            node(out, c, depth + 1);
        }
    }
    let mut out = format!("chain {}\n", tree.correlation_id);
    for r in &tree.roots {
        node(&mut out, r, 1);
    }
    for e in &tree.other_events {
        let _ = writeln!(
            out,
            "  +{} ms {} {} from {}",
            e.at_ms, e.event_type, e.id, e.source
        );
    }
    out
}

impl Bus {
    /// Reads a correlation chain back as a tree of tasks with timings.
    pub async fn correlation_tree(
        &self,
        correlation_id: &str,
    ) -> Result<CorrelationTree, BusError> {
        let events = self.transport().correlation(correlation_id).await?;
        Ok(build(correlation_id, &events))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::a2a::{StreamResponse, TaskStatus, TaskStatusUpdateEvent};

    fn submitted(task: &str, cap: &str, cause: Option<&str>, ms: u64) -> Envelope {
        let mut e = Envelope::new("bus://client", types::TASK_SUBMITTED);
        e.id = format!("sub-{task}");
        e.taskid = Some(task.into());
        e.causationid = cause.map(str::to_string);
        e.time = Some(crate::clock::format_ms(ms));
        e.extensions.insert("capability".into(), cap.into());
        e
    }

    fn status(task: &str, agent: &str, state: TaskState, ms: u64) -> Envelope {
        let mut e = Envelope::new(format!("agent://{agent}"), types::TASK_STATUS);
        e.taskid = Some(task.into());
        e.causationid = Some(format!("sub-{task}"));
        e.time = Some(crate::clock::format_ms(ms));
        e.data = Some(
            StreamResponse::StatusUpdate(TaskStatusUpdateEvent {
                task_id: task.into(),
                context_id: "c".into(),
                status: TaskStatus {
                    state,
                    message: None,
                    timestamp: None,
                },
                metadata: Default::default(),
            })
            .to_value(),
        );
        e
    }

    #[test]
    fn builds_a_tree_even_from_out_of_order_logs() {
        let t0 = 1_000_000;
        let events = vec![
            submitted("a", "plan", None, t0),
            status("a", "planner", TaskState::Working, t0 + 5),
            // The child's worker recorded before its submitter did.
            status("b", "writer", TaskState::Working, t0 + 12),
            submitted("b", "write", Some("sub-a"), t0 + 10),
            status("b", "writer", TaskState::Completed, t0 + 30),
            status("a", "planner", TaskState::Completed, t0 + 40),
        ];
        let tree = build("a", &events);
        assert!(tree.other_events.is_empty());
        assert_eq!(tree.roots.len(), 1);
        let a = &tree.roots[0];
        assert_eq!((a.capability.as_str(), a.duration_ms), ("plan", Some(40)));
        assert_eq!(a.children.len(), 1);
        let b = &a.children[0];
        assert_eq!(b.agent.as_deref(), Some("writer"));
        assert_eq!((b.submitted_at_ms, b.duration_ms), (10, Some(20)));
        let kinds: Vec<&str> = b.events.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(
            kinds,
            [
                types::TASK_SUBMITTED,
                types::TASK_STATUS,
                types::TASK_STATUS
            ]
        );
        assert!(render(&tree).contains("task b [write] TASK_STATE_COMPLETED by writer"));
    }
}
