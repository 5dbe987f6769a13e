//! Queue levels: what a partition holds waiting, in flight and dead-lettered, as the hub's
//! metrics read them.

use std::time::Duration;

use nerve_agentbus::{Envelope, Partition, QueueLevels, clock};

use crate::common::{Harness, config};

fn levels(waiting: u64, in_flight: u64, dead: u64, delayed: u64) -> QueueLevels {
    QueueLevels {
        waiting,
        in_flight,
        dead,
        delayed,
    }
}

pub async fn queue_levels_follow_waiting_in_flight_and_dead(h: &impl Harness) {
    let bus = h.bus(config()).await;
    let t = bus.transport();
    let p = Partition::new("levels", 0);
    t.declare_capability("levels", config().partitions)
        .await
        .expect("declare");
    assert_eq!(
        t.queue_levels(&p).await.expect("levels"),
        levels(0, 0, 0, 0)
    );
    for _ in 0..3 {
        let env = Envelope::new("test://producer", "test.message");
        t.enqueue(&p, &env, None).await.expect("enqueue");
    }
    let later = Envelope::new("test://producer", "test.message");
    t.enqueue(&p, &later, Some(clock::now_ms() + 600_000))
        .await
        .expect("schedule");
    assert_eq!(
        t.queue_levels(&p).await.expect("levels"),
        levels(4, 0, 0, 1)
    );

    let got = t
        .fetch(&p, "a", 2, Duration::from_millis(200))
        .await
        .expect("fetch");
    assert_eq!(got.len(), 2);
    assert_eq!(
        t.queue_levels(&p).await.expect("levels"),
        levels(2, 2, 0, 1)
    );
    t.ack(&got[0]).await.expect("ack");
    assert_eq!(
        t.queue_levels(&p).await.expect("levels"),
        levels(2, 1, 0, 1)
    );
    t.dead_letter(&got[1], "Poison", "test")
        .await
        .expect("dead letter");
    assert_eq!(
        t.queue_levels(&p).await.expect("levels"),
        levels(2, 0, 1, 1)
    );

    // The bus sums every partition of a capability, and every declared capability.
    assert_eq!(
        bus.queue_levels("levels").await.expect("capability levels"),
        levels(2, 0, 1, 1)
    );
    assert_eq!(
        bus.total_queue_levels().await.expect("total levels"),
        levels(2, 0, 1, 1)
    );
}
