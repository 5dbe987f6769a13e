//! The in-memory broker: one node is the whole hub. Sends are a direct fan-out into local
//! outboxes (no copy, no hop); every cross-node question has the empty answer.

use std::sync::{Arc, Weak};

use async_trait::async_trait;

use super::{Broker, Command, Inbound, Member, Scope, SessionStore, Target, deliver_local};
use crate::registry::{Connection, Delivery, FanOut, Hub, Membership};

/// The broker of a single node.
#[derive(Debug, Default)]
pub struct LocalBroker;

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
        _: &str,
        local: Option<&Arc<Hub>>,
        target: Target,
        scope: Scope,
        d: Arc<Delivery>,
    ) -> FanOut {
        local.map_or_else(FanOut::default, |h| deliver_local(h, &target, &scope, &d))
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

    fn sessions(&self) -> Option<&dyn SessionStore> {
        None
    }
}
