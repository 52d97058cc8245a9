//! The `Queue` contract. Timings use whole seconds because SQS visibility has 1 s granularity.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::port::queue::{DeadLetterInfo, Queue, QueueError, QueueSettings};

/// What a backend can report beyond the port's required behaviour.
#[derive(Debug, Clone, Copy)]
pub struct Capabilities {
    /// `stats().oldest_age` is known (SQLite: yes; SQS: no, it is a CloudWatch metric).
    pub reports_oldest_age: bool,
    /// An ack with a stale receipt never deletes the redelivered message (SQLite: yes; SQS:
    /// "the request succeeds, but the message might not be deleted", and moto deletes it).
    pub guards_stale_receipts: bool,
}

/// Run every rule of the contract; `make` creates a fresh, empty queue (and DLQ) per rule.
///
/// # Panics
/// On the first broken rule.
pub async fn queue_contract<F, Fut>(make: F)
where
    F: Fn(QueueSettings) -> Fut,
    Fut: Future<Output = Arc<dyn Queue>>,
{
    queue_contract_with(
        make,
        Capabilities {
            reports_oldest_age: true,
            guards_stale_receipts: true,
        },
    )
    .await;
}

/// [`queue_contract`] for a backend with `caps`.
///
/// # Panics
/// On the first broken rule.
pub async fn queue_contract_with<F, Fut>(make: F, caps: Capabilities)
where
    F: Fn(QueueSettings) -> Fut,
    Fut: Future<Output = Arc<dyn Queue>>,
{
    let settings = |vis: u64, max: u32| {
        let name = super::unique_name("q");
        QueueSettings {
            dlq_name: format!("{name}-dlq"),
            name,
            visibility_timeout: Duration::from_secs(vis),
            max_receive_count: max,
        }
    };
    send_receive_ack_preserves_body(&*make(settings(30, 5)).await).await;
    empty_receive_waits_then_returns_nothing(&*make(settings(30, 5)).await).await;
    long_poll_returns_when_a_message_arrives(make(settings(30, 5)).await).await;
    receive_respects_max(&*make(settings(30, 5)).await).await;
    invisible_until_timeout_then_redelivered(&*make(settings(1, 5)).await).await;
    if caps.guards_stale_receipts {
        stale_receipt_never_deletes(&*make(settings(1, 5)).await).await;
    }
    extend_visibility_holds_and_zero_releases(&*make(settings(1, 5)).await).await;
    ack_batch_reports_per_entry_failures(&*make(settings(30, 5)).await).await;
    redrive_moves_to_dlq_after_max_receives(&*make(settings(1, 2)).await).await;
    explicit_dead_letter_keeps_reason_and_redrive_returns(&*make(settings(30, 5)).await).await;
    stats_report_depths_and_age(&*make(settings(30, 5)).await, caps).await;
}

async fn recv_one(q: &dyn Queue, wait: Duration) -> crate::port::queue::Message {
    let mut m = q.receive(1, wait).await.expect("receive");
    assert_eq!(m.len(), 1, "expected one message");
    m.pop().expect("one message")
}

async fn send_receive_ack_preserves_body(q: &dyn Queue) {
    let body = "{\"k\":\"ünï 🦀\\n\",\"tab\":\"\t\"}";
    let id = q.send(body).await.expect("send");
    let m = recv_one(q, Duration::from_secs(2)).await;
    assert_eq!(m.body, body);
    assert_eq!(m.id, id);
    assert_eq!(m.receive_count, 1);
    let age = time::OffsetDateTime::now_utc() - m.sent_at;
    assert!(
        age < time::Duration::seconds(60) && age > time::Duration::seconds(-5),
        "sent_at {age}"
    );
    q.ack(&m.receipt).await.expect("ack");
    assert!(
        q.receive(10, Duration::ZERO)
            .await
            .expect("receive")
            .is_empty()
    );
    let e = q.send("").await.expect_err("empty body");
    assert!(matches!(e, QueueError::Invalid(_)), "{e:?}");
}

async fn empty_receive_waits_then_returns_nothing(q: &dyn Queue) {
    let t = Instant::now();
    assert!(
        q.receive(10, Duration::from_secs(1))
            .await
            .expect("receive")
            .is_empty()
    );
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "returned after {took:?}, before the wait"
    );
    assert!(took < Duration::from_secs(5), "long poll overran: {took:?}");
}

async fn long_poll_returns_when_a_message_arrives(q: Arc<dyn Queue>) {
    let sender = q.clone();
    let t = Instant::now();
    let send = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        sender.send("late").await.expect("send");
    });
    let m = q
        .receive(1, Duration::from_secs(10))
        .await
        .expect("receive");
    assert_eq!(m.len(), 1);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "long poll did not wake: {:?}",
        t.elapsed()
    );
    send.await.expect("sender");
}

async fn receive_respects_max(q: &dyn Queue) {
    for i in 0..15 {
        q.send(&format!("m{i}")).await.expect("send");
    }
    let mut seen = std::collections::HashSet::new();
    let first = q.receive(4, Duration::from_secs(1)).await.expect("receive");
    assert!(!first.is_empty() && first.len() <= 4, "got {}", first.len());
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut batch = first;
    loop {
        for m in &batch {
            assert!(
                seen.insert(m.body.clone()),
                "{} delivered twice while invisible",
                m.body
            );
            q.ack(&m.receipt).await.expect("ack");
        }
        if seen.len() == 15 || Instant::now() > deadline {
            break;
        }
        batch = q
            .receive(10, Duration::from_secs(1))
            .await
            .expect("receive");
        assert!(batch.len() <= 10);
    }
    assert_eq!(seen.len(), 15);
}

async fn invisible_until_timeout_then_redelivered(q: &dyn Queue) {
    q.send("again").await.expect("send");
    let first = recv_one(q, Duration::from_secs(2)).await;
    assert!(
        q.receive(1, Duration::ZERO)
            .await
            .expect("receive")
            .is_empty(),
        "visible while in flight"
    );
    let second = recv_one(q, Duration::from_secs(5)).await;
    assert_eq!(second.id, first.id);
    assert_eq!(second.receive_count, 2);
    assert_ne!(second.receipt, first.receipt);
    q.ack(&second.receipt).await.expect("ack");
}

async fn stale_receipt_never_deletes(q: &dyn Queue) {
    q.send("stale").await.expect("send");
    let first = recv_one(q, Duration::from_secs(2)).await;
    let second = recv_one(q, Duration::from_secs(5)).await;
    // The first receipt is stale now: acking with it must not delete the redelivered message.
    let _ = q.ack(&first.receipt).await;
    q.extend_visibility(&second.receipt, Duration::ZERO)
        .await
        .expect("release");
    let third = recv_one(q, Duration::from_secs(2)).await;
    assert_eq!(third.id, first.id, "a stale receipt deleted the message");
    q.ack(&third.receipt)
        .await
        .expect("ack with the latest receipt");
}

async fn extend_visibility_holds_and_zero_releases(q: &dyn Queue) {
    q.send("hold").await.expect("send");
    let m = recv_one(q, Duration::from_secs(2)).await;
    q.extend_visibility(&m.receipt, Duration::from_secs(3))
        .await
        .expect("extend");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        q.receive(1, Duration::ZERO)
            .await
            .expect("receive")
            .is_empty(),
        "extension ignored"
    );
    q.extend_visibility(&m.receipt, Duration::ZERO)
        .await
        .expect("release");
    let again = recv_one(q, Duration::from_secs(2)).await;
    assert_eq!(again.id, m.id);
    q.ack(&again.receipt).await.expect("ack");
}

async fn ack_batch_reports_per_entry_failures(q: &dyn Queue) {
    for i in 0..3 {
        q.send(&format!("b{i}")).await.expect("send");
    }
    let mut got = Vec::new();
    while got.len() < 3 {
        got.extend(
            q.receive(10, Duration::from_secs(1))
                .await
                .expect("receive"),
        );
    }
    let mut receipts: Vec<String> = got.iter().map(|m| m.receipt.clone()).collect();
    receipts.push("0.bogus".into());
    let failed = q.ack_batch(&receipts).await.expect("ack batch");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].0, "0.bogus");
    assert_eq!(q.stats().await.expect("stats").visible, 0);
}

async fn redrive_moves_to_dlq_after_max_receives(q: &dyn Queue) {
    q.send("poison").await.expect("send");
    for _ in 0..2 {
        let m = recv_one(q, Duration::from_secs(5)).await;
        assert_eq!(m.body, "poison");
    }
    // The third receive finds it past max_receive_count: it moves to the DLQ, is not delivered.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let none = q.receive(1, Duration::from_secs(1)).await.expect("receive");
    assert!(none.is_empty(), "delivered a third time");
    let dlq = super::eventually(Duration::from_secs(10), "message in the DLQ", || async {
        let d = q.dead_letters(10).await.expect("dead letters");
        (!d.is_empty()).then_some(d)
    })
    .await;
    assert_eq!(dlq[0].body, "poison");
    assert_eq!(q.stats().await.expect("stats").dlq_visible, 1);
}

async fn explicit_dead_letter_keeps_reason_and_redrive_returns(q: &dyn Queue) {
    q.send("bad").await.expect("send");
    let m = recv_one(q, Duration::from_secs(2)).await;
    let info = DeadLetterInfo {
        error_code: crate::error::ErrorCode::UndecodableImage,
        worker: "resize".into(),
        reason: "not an image".into(),
    };
    q.dead_letter(&m, &info).await.expect("dead letter");
    assert!(
        q.receive(1, Duration::ZERO)
            .await
            .expect("receive")
            .is_empty()
    );
    let dl = q.dead_letters(10).await.expect("dead letters");
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0].body, "bad");
    assert_eq!(dl[0].info.as_ref(), Some(&info));
    assert_eq!(q.redrive().await.expect("redrive"), 1);
    let back = recv_one(q, Duration::from_secs(5)).await;
    assert_eq!(back.body, "bad");
    assert_eq!(back.receive_count, 1, "redrive resets the receive count");
    q.ack(&back.receipt).await.expect("ack");
    assert_eq!(q.stats().await.expect("stats").dlq_visible, 0);
}

async fn stats_report_depths_and_age(q: &dyn Queue, caps: Capabilities) {
    let s = q.stats().await.expect("stats");
    assert_eq!((s.visible, s.in_flight, s.dlq_visible), (0, 0, 0));
    assert_eq!(s.oldest_age, None);
    for i in 0..3 {
        q.send(&format!("s{i}")).await.expect("send");
    }
    let m = recv_one(q, Duration::from_secs(2)).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let s = q.stats().await.expect("stats");
    assert_eq!((s.visible, s.in_flight), (2, 1));
    if caps.reports_oldest_age {
        assert!(s.oldest_age.expect("an age") >= Duration::from_secs(1));
    } else {
        assert_eq!(s.oldest_age, None, "an age the backend cannot know");
    }
    q.ack(&m.receipt).await.expect("ack");
}
