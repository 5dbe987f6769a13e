//! One in-memory partition queue with the same semantics as a Redis stream plus consumer group:
//! never-delivered entries, a pending list with owners, idle times and delivery counts, a delayed
//! set for scheduling and backoff, a dead-letter list, a dedupe window and an owner lease.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::envelope::Envelope;
use crate::transport::{DeadLetter, Delivery, EnqueueOutcome, Partition, QueueLevels};

struct Pending {
    consumer: String,
    since: Instant,
    count: u32,
}

/// The state of one partition.
#[derive(Default)]
pub(super) struct Queue {
    next_seq: u64,
    entries: BTreeMap<u64, Envelope>,
    delivered_up_to: u64,
    pending: BTreeMap<u64, Pending>,
    delayed: BTreeMap<(u64, u64), String>,
    delayed_payload: HashMap<String, ((u64, u64), Envelope)>,
    dead: BTreeMap<u64, DeadLetter>,
    dedupe: HashMap<String, u64>,
    dedupe_expiry: VecDeque<(u64, String)>,
    owner: Option<(String, Instant)>,
}

fn parse_seq(entry_id: &str) -> Option<u64> {
    entry_id.parse().ok()
}

impl Queue {
    fn seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    fn append(&mut self, env: Envelope) {
        let s = self.seq();
        self.entries.insert(s, env);
    }

    fn schedule(&mut self, env: Envelope, due_ms: u64) {
        let key = (due_ms, self.seq());
        self.delayed.insert(key, env.id.clone());
        self.delayed_payload.insert(env.id.clone(), (key, env));
    }

    pub fn enqueue(
        &mut self,
        env: &Envelope,
        deliver_at_ms: Option<u64>,
        now_ms: u64,
        dedupe_ms: u64,
    ) -> EnqueueOutcome {
        // Ids are remembered in expiry order, so forgetting old ones is cheap.
        while let Some((exp, id)) = self.dedupe_expiry.front() {
            if *exp > now_ms {
                break;
            }
            if self.dedupe.get(id) == Some(exp) {
                self.dedupe.remove(id);
            }
            self.dedupe_expiry.pop_front();
        }
        if self.dedupe.contains_key(&env.id) {
            return EnqueueOutcome::Duplicate;
        }
        let exp = now_ms + dedupe_ms;
        self.dedupe.insert(env.id.clone(), exp);
        self.dedupe_expiry.push_back((exp, env.id.clone()));
        match deliver_at_ms {
            Some(at) if at > now_ms => {
                self.schedule(env.clone(), at);
                EnqueueOutcome::Scheduled
            }
            _ => {
                self.append(env.clone());
                EnqueueOutcome::Enqueued
            }
        }
    }

    pub fn cancel_scheduled(&mut self, id: &str) -> bool {
        match self.delayed_payload.remove(id) {
            Some((key, _)) => self.delayed.remove(&key).is_some(),
            None => false,
        }
    }

    pub fn fetch(&mut self, p: &Partition, consumer: &str, max: usize) -> Vec<Delivery> {
        let now = Instant::now();
        let ids: Vec<u64> = self
            .entries
            .range(self.delivered_up_to + 1..)
            .take(max)
            .map(|(s, _)| *s)
            .collect();
        let mut out = Vec::with_capacity(ids.len());
        for s in ids {
            self.delivered_up_to = s;
            self.pending.insert(
                s,
                Pending {
                    consumer: consumer.to_string(),
                    since: now,
                    count: 1,
                },
            );
            if let Some(env) = self.entries.get(&s) {
                out.push(delivery(p, s, env, 1));
            }
        }
        out
    }

    pub fn claim_stale(
        &mut self,
        p: &Partition,
        consumer: &str,
        min_idle: Duration,
        max: usize,
    ) -> Vec<Delivery> {
        let now = Instant::now();
        let mut out = Vec::new();
        let stale: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, pe)| now.duration_since(pe.since) >= min_idle)
            .take(max)
            .map(|(s, _)| *s)
            .collect();
        for s in stale {
            let Some(env) = self.entries.get(&s) else {
                self.pending.remove(&s);
                continue;
            };
            if let Some(pe) = self.pending.get_mut(&s) {
                pe.consumer = consumer.to_string();
                pe.since = now;
                pe.count += 1;
                out.push(delivery(p, s, env, pe.count));
            }
        }
        out
    }

    pub fn renew(&mut self, consumer: &str, entry_ids: &[String]) {
        let now = Instant::now();
        for s in entry_ids.iter().filter_map(|e| parse_seq(e)) {
            if let Some(pe) = self.pending.get_mut(&s) {
                pe.consumer = consumer.to_string();
                pe.since = now;
            }
        }
    }

    fn remove(&mut self, entry_id: &str) -> bool {
        match parse_seq(entry_id) {
            Some(s) => {
                let held = self.pending.remove(&s).is_some();
                self.entries.remove(&s).is_some() && held
            }
            None => false,
        }
    }

    pub fn ack(&mut self, entry_id: &str) {
        self.remove(entry_id);
    }

    pub fn retry_at(&mut self, d: &Delivery, due_ms: u64) {
        if self.remove(&d.entry_id) {
            let mut env = d.envelope.clone();
            env.attempt = env.attempt.saturating_add(1);
            self.schedule(env, due_ms);
        }
    }

    pub fn dead_letter(&mut self, d: &Delivery, reason: &str, description: &str, now_ms: u64) {
        if self.remove(&d.entry_id) {
            let s = self.seq();
            self.dead.insert(
                s,
                DeadLetter {
                    partition: d.partition.clone(),
                    entry_id: s.to_string(),
                    envelope: d.envelope.clone(),
                    reason: reason.to_string(),
                    description: description.to_string(),
                    deliveries: d.deliveries,
                    dead_lettered_ms: now_ms,
                },
            );
        }
    }

    pub fn promote_due(&mut self, now_ms: u64) -> usize {
        let due: Vec<(u64, u64)> = self
            .delayed
            .range(..(now_ms + 1, 0))
            .map(|(k, _)| *k)
            .collect();
        for key in &due {
            if let Some(id) = self.delayed.remove(key)
                && let Some((_, env)) = self.delayed_payload.remove(&id)
            {
                self.append(env);
            }
        }
        due.len()
    }

    pub fn dead_letters(&self, max: usize) -> Vec<DeadLetter> {
        self.dead.values().take(max).cloned().collect()
    }

    pub fn levels(&self) -> QueueLevels {
        QueueLevels {
            waiting: (self.entries.len().saturating_sub(self.pending.len()) + self.delayed.len())
                as u64,
            in_flight: self.pending.len() as u64,
            dead: self.dead.len() as u64,
            delayed: self.delayed.len() as u64,
        }
    }

    pub fn redrive(&mut self, entry_id: &str) -> bool {
        let Some(dl) = parse_seq(entry_id).and_then(|s| self.dead.remove(&s)) else {
            return false;
        };
        let mut env = dl.envelope;
        env.attempt = 0;
        self.append(env);
        true
    }

    pub fn acquire(&mut self, consumer: &str, lease: Duration) -> bool {
        let now = Instant::now();
        match &self.owner {
            Some((owner, until)) if owner != consumer && *until > now => false,
            _ => {
                self.owner = Some((consumer.to_string(), now + lease));
                true
            }
        }
    }

    pub fn release(&mut self, consumer: &str) {
        if self.owner.as_ref().is_some_and(|(o, _)| o == consumer) {
            self.owner = None;
        }
    }
}

fn delivery(p: &Partition, seq: u64, env: &Envelope, count: u32) -> Delivery {
    Delivery {
        partition: p.clone(),
        entry_id: seq.to_string(),
        envelope: env.clone(),
        deliveries: count + env.attempt,
    }
}
