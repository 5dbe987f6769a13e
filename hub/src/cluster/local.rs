//! The in-memory broker: one node is the whole hub. Sends are a direct fan-out into local
//! outboxes (no copy, no hop); every cross-node question has the empty answer.

use std::sync::{Arc, Weak};

use async_trait::async_trait;

use super::history::{HistoryPage, HistoryPolicy, MemoryHistory};
use super::{Broker, Command, Inbound, Member, Scope, SessionStore, Target, deliver_local};
use crate::registry::{Connection, Delivery, FanOut, Hub, Membership};

/// The broker of a single node, keeping the group histories its hubs ask for in memory.
#[derive(Default)]
pub struct LocalBroker {
    history: MemoryHistory,
}

impl LocalBroker {
    /// A broker keeping the histories `policy` asks for.
    pub fn new(policy: HistoryPolicy) -> Self {
        LocalBroker {
            history: MemoryHistory::new(policy),
        }
    }
}

impl Membership for LocalBroker {
    fn connection_added(&self, _: &Connection) {}
    fn connection_removed(&self, _: &Connection) {}
    fn member_added(&self, _: &str, _: &Connection, _: &str, _: bool) {}
    fn member_removed(&self, _: &str, _: &Connection, _: &str, _: bool) {}
}

#[async_trait]
impl Broker for LocalBroker {
    fn node_id(&self) -> &str {
        "local"
    }

    fn attach(&self, _: Weak<dyn Inbound>) {}

    fn is_ready(&self) -> bool {
        true
    }

    fn publish(
        &self,
        hub: &str,
        local: Option<&Arc<Hub>>,
        target: Target,
        scope: Scope,
        d: Arc<Delivery>,
    ) -> FanOut {
        let deliver = |d: &Arc<Delivery>| {
            local.map_or_else(FanOut::default, |h| deliver_local(h, &target, &scope, d))
        };
        if let Target::Group(group) = &target
            && let Some(out) = self.history.append(hub, group, &d, &scope, deliver)
        {
            return out;
        }
        deliver(&d)
    }

    fn command(&self, _: &str, _: Command) {}

    async fn group_ready(&self, _: &str, _: &str) {}

    async fn remote_connection(&self, _: &str, _: &str) -> bool {
        false
    }

    async fn remote_user(&self, _: &str, _: &str) -> bool {
        false
    }

    async fn remote_members(&self, _: &str, _: &str) -> Vec<Member> {
        Vec::new()
    }

    async fn remote_roles(&self, _: &str, _: &str) -> Option<Vec<String>> {
        None
    }

    async fn history_page(
        &self,
        hub: &str,
        group: &str,
        after: Option<nerve_protocol::Offset>,
        top: usize,
    ) -> Option<HistoryPage> {
        Some(self.history.page(hub, group, after, top))
    }

    fn sessions(&self) -> Option<&dyn SessionStore> {
        None
    }
}
