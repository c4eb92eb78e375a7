//! The AIP storage suite (`aip.rs`), run against both backends on fresh databases (the helpers of
//! `tests.rs`): idempotent inserts, containment once and only from `active`, the delivery upsert,
//! the pipeline's reads, and nudge claims, including 20 concurrent claimers of one nudge across
//! two connection pools.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::AssertSqlSafe;

use super::tests::{TestDb, at, checkpoint, scalar_i64};
use super::*;

const FOUR_HOURS: Duration = Duration::from_secs(4 * 3600);
const CLAIM: Duration = Duration::from_secs(30);

async fn exec_both(store: &Store, sql: &str) -> u64 {
    match &store.pool {
        Pool::Postgres(pool) => sqlx::query(AssertSqlSafe(sql.to_owned()))
            .execute(pool)
            .await
            .map(|r| r.rows_affected()),
        Pool::Sqlite(pool) => sqlx::query(AssertSqlSafe(sql.to_owned()))
            .execute(pool)
            .await
            .map(|r| r.rows_affected()),
    }
    .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn text(store: &Store, sql: &str) -> Option<String> {
    match &store.pool {
        Pool::Postgres(pool) => {
            sqlx::query_scalar::<_, Option<String>>(AssertSqlSafe(sql.to_owned()))
                .fetch_one(pool)
                .await
        }
        Pool::Sqlite(pool) => {
            sqlx::query_scalar::<_, Option<String>>(AssertSqlSafe(sql.to_owned()))
                .fetch_one(pool)
                .await
        }
    }
    .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn time(store: &Store, sql: &str) -> Option<DateTime<Utc>> {
    match &store.pool {
        Pool::Postgres(pool) => {
            sqlx::query_scalar::<_, Option<DateTime<Utc>>>(AssertSqlSafe(sql.to_owned()))
                .fetch_one(pool)
                .await
        }
        Pool::Sqlite(pool) => {
            sqlx::query_scalar::<_, Option<DateTime<Utc>>>(AssertSqlSafe(sql.to_owned()))
                .fetch_one(pool)
                .await
        }
    }
    .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// A migrated database with one agent; returns its id.
async fn agent(store: &Store, hash: &str) -> String {
    store.migrate().await.unwrap();
    store
        .get_or_create_agent(hash, &format!("smolt-{}", &hash[..8]))
        .await
        .unwrap()
        .id
}

fn nudge(id: &str, agent_id: &str, checkpoint_id: &str, created_at: DateTime<Utc>) -> NudgeRecord {
    NudgeRecord {
        id: id.to_owned(),
        agent_id: agent_id.to_owned(),
        checkpoint_id: checkpoint_id.to_owned(),
        session_id: "s".to_owned(),
        nudge_content: format!("[INTEGRITY NOTICE] {id}"),
        concerns_summary: "deception: misleading the user".to_owned(),
        created_at,
    }
}

/// Checkpoints `ic-<n>` for each name and a pending nudge `nudge-<n>` on each, created at
/// `created_at(n)`.
async fn nudges_on(
    store: &Store,
    agent_id: &str,
    names: &[&str],
    created_at: impl Fn(usize) -> DateTime<Utc>,
) {
    let checkpoints: Vec<CheckpointRecord> = names
        .iter()
        .enumerate()
        .map(|(i, n)| checkpoint(&format!("ic-{n}"), agent_id, "s", i as i64))
        .collect();
    store.insert_checkpoints(&checkpoints).await.unwrap();
    let nudges: Vec<NudgeRecord> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            nudge(
                &format!("nudge-{n}"),
                agent_id,
                &format!("ic-{n}"),
                created_at(i),
            )
        })
        .collect();
    assert_eq!(
        store.insert_nudges(&nudges).await.unwrap(),
        names.len() as u64
    );
}

fn ids(claimed: &[ClaimedNudge]) -> Vec<&str> {
    claimed.iter().map(|c| c.id.as_str()).collect()
}

fn minutes(n: i64) -> chrono::TimeDelta {
    chrono::TimeDelta::minutes(n)
}

// ---------------------------------------------------------------------------------------------
// Writes.

async fn nudges_insert_idempotently(store: &Store) {
    let id = agent(store, "0123456789abcdef").await;
    store
        .insert_checkpoints(&[
            checkpoint("ic-1", &id, "s", 0),
            checkpoint("ic-2", &id, "s", 1),
        ])
        .await
        .unwrap();
    let first = nudge("nudge-1", &id, "ic-1", at(0));
    assert_eq!(
        store
            .insert_nudges(std::slice::from_ref(&first))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .insert_nudges(std::slice::from_ref(&first))
            .await
            .unwrap(),
        0
    );
    // Another id for the same checkpoint, and the same id in one batch twice: skipped.
    let twin = nudge("nudge-1b", &id, "ic-1", at(1));
    let second = nudge("nudge-2", &id, "ic-2", at(2));
    assert_eq!(
        store
            .insert_nudges(&[twin, second.clone(), second])
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        scalar_i64(store, "SELECT count(*) FROM enforcement_nudges").await,
        2
    );
    assert_eq!(
        scalar_i64(
            store,
            "SELECT count(*) FROM enforcement_nudges WHERE status = 'pending' \
             AND claim_token IS NULL AND claimed_until IS NULL"
        )
        .await,
        2
    );
    assert_eq!(
        text(
            store,
            "SELECT nudge_content FROM enforcement_nudges WHERE id = 'nudge-1'"
        )
        .await
        .as_deref(),
        Some(first.nudge_content.as_str())
    );
    assert_eq!(
        time(
            store,
            "SELECT created_at FROM enforcement_nudges WHERE id = 'nudge-1'"
        )
        .await,
        Some(at(0))
    );
    // A nudge before its checkpoint breaks the foreign key: a record error.
    let error = store
        .insert_nudges(&[nudge("nudge-x", &id, "ic-missing", at(0))])
        .await
        .unwrap_err();
    assert!(error.is_record_error(), "{error}");
}

fn drift(id: &str, agent_id: &str, dedup_key: &str) -> DriftAlertRecord {
    DriftAlertRecord {
        id: id.to_owned(),
        agent_id: agent_id.to_owned(),
        card_id: Some("ac-01234567".to_owned()),
        session_id: "s".to_owned(),
        alert_type: "value_erosion".to_owned(),
        severity: "medium".to_owned(),
        description: "three non-clear verdicts in a row".to_owned(),
        drift_data: serde_json::json!({"streak_length": 3, "checkpoint_ids": ["ic-1", "ic-2"]}),
        dedup_key: dedup_key.to_owned(),
        created_at: at(5),
    }
}

async fn drift_alerts_skip_duplicate_ids_and_keys(store: &Store) {
    let id = agent(store, "1123456789abcdef").await;
    let alert = drift("ida-1", &id, "k1");
    assert_eq!(
        store
            .insert_drift_alerts(std::slice::from_ref(&alert))
            .await
            .unwrap(),
        1
    );
    assert_eq!(store.insert_drift_alerts(&[alert]).await.unwrap(), 0);
    // The same streak seen by another pod: another id, the same key.
    assert_eq!(
        store
            .insert_drift_alerts(&[drift("ida-2", &id, "k1"), drift("ida-3", &id, "k2")])
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        scalar_i64(store, "SELECT count(*) FROM drift_alerts").await,
        2
    );
    assert_eq!(
        text(store, "SELECT id FROM drift_alerts WHERE dedup_key = 'k1'")
            .await
            .as_deref(),
        Some("ida-1")
    );
    assert_eq!(
        scalar_i64(
            store,
            "SELECT count(*) FROM drift_alerts WHERE id = 'ida-1' AND session_id = 's' \
             AND card_id = 'ac-01234567' AND severity = 'medium'"
        )
        .await,
        1
    );
    let mut bad = drift("ida-4", &id, "k4");
    bad.severity = "critical".to_owned();
    let error = store.insert_drift_alerts(&[bad]).await.unwrap_err();
    assert!(error.is_record_error(), "{error}");
}

fn containment(log_id: &str, agent_id: &str, ms: i64) -> ContainmentRecord {
    ContainmentRecord {
        log_id: log_id.to_owned(),
        agent_id: agent_id.to_owned(),
        action: "auto_pause".to_owned(),
        actor: "system".to_owned(),
        reason: "Auto-contained: 3 consecutive boundary violations".to_owned(),
        previous_status: ContainmentStatus::Active,
        new_status: ContainmentStatus::Paused,
        metadata: serde_json::json!({"checkpoint_id": "ic-9"}),
        at: at(ms),
    }
}

async fn containment_happens_once_and_only_from_active(store: &Store) {
    let id = agent(store, "2123456789abcdef").await;
    let record = containment("ctl-1", &id, 10);
    assert_eq!(
        store
            .apply_containments(std::slice::from_ref(&record))
            .await
            .unwrap(),
        1
    );
    let agent = store.agent(&id).await.unwrap().unwrap();
    assert_eq!(agent.settings.containment_status, ContainmentStatus::Paused);
    let column = |c: &str| format!("SELECT {c} FROM agents WHERE id = '{id}'");
    assert_eq!(time(store, &column("contained_at")).await, Some(at(10)));
    assert_eq!(
        text(store, &column("contained_by")).await.as_deref(),
        Some("system")
    );
    assert_eq!(
        text(store, &column("containment_reason")).await.as_deref(),
        Some(record.reason.as_str())
    );
    assert_eq!(
        scalar_i64(
            store,
            "SELECT count(*) FROM agent_containment_log WHERE id = 'ctl-1' \
             AND action = 'auto_pause' AND actor = 'system' AND previous_status = 'active' \
             AND new_status = 'paused'"
        )
        .await,
        1
    );
    assert_eq!(
        time(
            store,
            "SELECT created_at FROM agent_containment_log WHERE id = 'ctl-1'"
        )
        .await,
        Some(at(10))
    );
    // Replayed, or a second streak: the agent is no longer active, nothing is logged.
    assert_eq!(
        store
            .apply_containments(&[record.clone(), containment("ctl-2", &id, 20)])
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        scalar_i64(store, "SELECT count(*) FROM agent_containment_log").await,
        1
    );
    assert_eq!(time(store, &column("contained_at")).await, Some(at(10)));

    // A person resumes the agent: a replay of the old record does not pause it again.
    exec_both(
        store,
        &format!(
            "UPDATE agents SET containment_status = 'active', contained_at = NULL WHERE id = '{id}'"
        ),
    )
    .await;
    assert_eq!(store.apply_containments(&[record]).await.unwrap(), 0);
    assert_eq!(
        store
            .agent(&id)
            .await
            .unwrap()
            .unwrap()
            .settings
            .containment_status,
        ContainmentStatus::Active
    );

    // Killed agents are not paused.
    exec_both(
        store,
        &format!(
            "UPDATE agents SET containment_status = 'killed', contained_at = '2030-01-01T00:00:00.000Z' \
             WHERE id = '{id}'"
        ),
    )
    .await;
    assert_eq!(
        store
            .apply_containments(&[containment("ctl-3", &id, 30)])
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .agent(&id)
            .await
            .unwrap()
            .unwrap()
            .settings
            .containment_status,
        ContainmentStatus::Killed
    );

    // Ten pods contain one agent at once: one succeeds, one row is logged.
    let other = store
        .get_or_create_agent("3123456789abcdef", "smolt-31234567")
        .await
        .unwrap()
        .id;
    let second = Store::connect_lazy(store.config()).unwrap();
    let tasks: Vec<_> = (0..10)
        .map(|n| {
            let s = if n % 2 == 0 {
                store.clone()
            } else {
                second.clone()
            };
            let record = containment(&format!("ctl-race-{n}"), &other, n);
            tokio::spawn(async move { s.apply_containments(&[record]).await.unwrap() })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    assert_eq!(total, 1);
    assert_eq!(
        scalar_i64(
            store,
            &format!("SELECT count(*) FROM agent_containment_log WHERE agent_id = '{other}'")
        )
        .await,
        1
    );
    second.close().await;
}

fn delivery(
    id: &str,
    delivered: bool,
    attempts: i32,
    status: Option<i32>,
    ms: i64,
) -> WebhookDeliveryRecord {
    WebhookDeliveryRecord {
        id: id.to_owned(),
        registration_id: "whr-1".to_owned(),
        checkpoint_id: "ic-1".to_owned(),
        event_type: "verdict.boundary_violation".to_owned(),
        delivered,
        attempts,
        last_status: status,
        last_error: (!delivered).then(|| format!("HTTP {}", status.unwrap_or(0))),
        created_at: at(ms),
    }
}

async fn webhook_deliveries_upsert_without_going_backwards(store: &Store) {
    let id = agent(store, "4123456789abcdef").await;
    store
        .insert_checkpoints(&[
            checkpoint("ic-1", &id, "s", 0),
            checkpoint("ic-2", &id, "s", 1),
        ])
        .await
        .unwrap();
    exec_both(
        store,
        &format!(
            "INSERT INTO aip_webhook_registrations (id, agent_id, callback_url, secret) \
             VALUES ('whr-1', '{id}', 'https://example.test/hook', 'secret')"
        ),
    )
    .await;
    let row = "SELECT count(*) FROM aip_webhook_deliveries WHERE registration_id = 'whr-1' \
               AND checkpoint_id = 'ic-1'";
    let state = |cond: &str| format!("{row} AND {cond}");

    let failed = delivery("del-1", false, 1, Some(500), 0);
    assert_eq!(
        store
            .upsert_webhook_deliveries(std::slice::from_ref(&failed))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        scalar_i64(
            store,
            &state(
                "NOT delivered AND attempts = 1 AND last_status = 500 AND last_error = 'HTTP 500'"
            )
        )
        .await,
        1
    );
    // A redelivery that succeeded on its third attempt replaces the outcome.
    let succeeded = delivery("del-2", true, 3, Some(200), 50);
    assert_eq!(
        store
            .upsert_webhook_deliveries(std::slice::from_ref(&succeeded))
            .await
            .unwrap(),
        1
    );
    let delivered = state(
        "delivered AND attempts = 3 AND last_status = 200 AND last_error IS NULL \
         AND id = 'del-1'",
    );
    assert_eq!(scalar_i64(store, &delivered).await, 1);
    assert_eq!(
        time(
            store,
            "SELECT created_at FROM aip_webhook_deliveries WHERE id = 'del-1'"
        )
        .await,
        Some(at(0)),
        "the first attempt's time stays"
    );
    // Replays of older or equal outcomes change nothing; attempts never decrease, delivered
    // never goes back.
    for stale in [
        failed,
        delivery("del-3", false, 3, Some(503), 60),
        succeeded,
    ] {
        assert_eq!(store.upsert_webhook_deliveries(&[stale]).await.unwrap(), 0);
        assert_eq!(scalar_i64(store, &delivered).await, 1);
    }
    // Several outcomes for one pair in one batch collapse to the one with the most attempts.
    let mut a = delivery("del-a", false, 2, Some(502), 0);
    a.checkpoint_id = "ic-2".to_owned();
    let mut b = delivery("del-b", false, 4, Some(504), 10);
    b.checkpoint_id = "ic-2".to_owned();
    let mut c = delivery("del-c", false, 3, Some(503), 20);
    c.checkpoint_id = "ic-2".to_owned();
    assert_eq!(
        store.upsert_webhook_deliveries(&[a, b, c]).await.unwrap(),
        1
    );
    assert_eq!(
        scalar_i64(
            store,
            "SELECT count(*) FROM aip_webhook_deliveries WHERE checkpoint_id = 'ic-2' \
             AND id = 'del-a' AND attempts = 4 AND last_status = 504"
        )
        .await,
        1
    );
    assert_eq!(
        scalar_i64(store, "SELECT count(*) FROM aip_webhook_deliveries").await,
        2
    );
}

// ---------------------------------------------------------------------------------------------
// Reads.

async fn active_card_comes_with_its_conscience_values(store: &Store) {
    let id = agent(store, "5123456789abcdef").await;
    let card = store.active_card(&id).await.unwrap().unwrap();
    assert_eq!(card.id, default_card_id(&id));
    assert_eq!(card.card_json["card_id"], default_card_id(&id).as_str());
    assert_eq!(card.conscience_values, None);
    exec_both(
        store,
        &format!(
            "UPDATE alignment_cards SET conscience_values = '[{{\"type\": \"BOUNDARY\", \
             \"content\": \"never share secrets\"}}]' WHERE agent_id = '{id}'"
        ),
    )
    .await;
    let card = store.active_card(&id).await.unwrap().unwrap();
    assert_eq!(
        card.conscience_values,
        Some(serde_json::json!([{"type": "BOUNDARY", "content": "never share secrets"}]))
    );
    exec_both(
        store,
        &format!("UPDATE alignment_cards SET is_active = false WHERE agent_id = '{id}'"),
    )
    .await;
    assert_eq!(store.active_card(&id).await.unwrap(), None);
    assert_eq!(store.active_card("smolt-ffffffff").await.unwrap(), None);
}

async fn recent_verdicts_and_session_violations(store: &Store) {
    let id = agent(store, "6123456789abcdef").await;
    let verdicts = [
        ("ic-1", Verdict::Clear, "s1"),
        ("ic-2", Verdict::BoundaryViolation, "s1"),
        ("ic-3", Verdict::ReviewNeeded, "s1"),
        ("ic-4", Verdict::BoundaryViolation, "s2"),
        ("ic-5", Verdict::BoundaryViolation, "s2"),
    ];
    let records: Vec<CheckpointRecord> = verdicts
        .iter()
        .enumerate()
        .map(|(i, (cp, verdict, session))| {
            let mut r = checkpoint(cp, &id, session, i as i64);
            r.verdict = *verdict;
            r
        })
        .collect();
    store.insert_checkpoints(&records).await.unwrap();
    // Arrival order decides, then verdict time: ic-1 arrived last; ic-2..ic-5 arrived together.
    exec_both(
        store,
        "UPDATE integrity_checkpoints SET created_at = '2030-01-01T00:00:00.000Z'",
    )
    .await;
    exec_both(
        store,
        "UPDATE integrity_checkpoints SET created_at = '2030-01-01T00:00:01.000Z' \
         WHERE checkpoint_id = 'ic-1'",
    )
    .await;
    let recent = store.recent_agent_verdicts(&id, 3).await.unwrap();
    assert_eq!(
        recent,
        [
            ("ic-1".to_owned(), Verdict::Clear, at(0)),
            ("ic-5".to_owned(), Verdict::BoundaryViolation, at(4)),
            ("ic-4".to_owned(), Verdict::BoundaryViolation, at(3)),
        ]
    );
    assert_eq!(store.recent_agent_verdicts(&id, 10).await.unwrap().len(), 5);
    assert!(
        store
            .recent_agent_verdicts(&id, 0)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .recent_agent_verdicts("smolt-ffffffff", 5)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.count_session_violations(&id, "s1").await.unwrap(), 1);
    assert_eq!(store.count_session_violations(&id, "s2").await.unwrap(), 2);
    assert_eq!(store.count_session_violations(&id, "s3").await.unwrap(), 0);
}

// ---------------------------------------------------------------------------------------------
// Nudge claims.

async fn claims_take_young_pending_nudges_oldest_first(store: &Store) {
    let id = agent(store, "7123456789abcdef").await;
    let now = at(0) + chrono::TimeDelta::hours(10);
    // a..g: created 5 h, 3 h, 2 h, 1 h, 50, 40 and 30 minutes ago.
    let ages = [300, 180, 120, 60, 50, 40, 30];
    nudges_on(store, &id, &["a", "b", "c", "d", "e", "f", "g"], |i| {
        now - minutes(ages[i])
    })
    .await;
    exec_both(
        store,
        "UPDATE enforcement_nudges SET status = 'delivered', delivered_at = created_at \
         WHERE id = 'nudge-c'",
    )
    .await;
    assert_eq!(
        store
            .pending_nudge_count(&id, now, FOUR_HOURS)
            .await
            .unwrap(),
        5,
        "b, d, e, f, g"
    );
    let first = store
        .claim_pending_nudges(&id, "tok-1", now, FOUR_HOURS, CLAIM, 5)
        .await
        .unwrap();
    assert_eq!(
        ids(&first),
        ["nudge-b", "nudge-d", "nudge-e", "nudge-f", "nudge-g"]
    );
    assert_eq!(first[0].checkpoint_id, "ic-b");
    assert_eq!(first[0].nudge_content, "[INTEGRITY NOTICE] nudge-b");
    assert_eq!(first[0].created_at, now - minutes(180));
    assert_eq!(
        time(
            store,
            "SELECT claimed_until FROM enforcement_nudges WHERE id = 'nudge-b'"
        )
        .await,
        Some(now + chrono::TimeDelta::seconds(30))
    );
    // Held: nobody else gets them, claimed or not they still count as pending.
    assert!(
        store
            .claim_pending_nudges(&id, "tok-2", now, FOUR_HOURS, CLAIM, 5)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .pending_nudge_count(&id, now, FOUR_HOURS)
            .await
            .unwrap(),
        5
    );
    // The limit takes the oldest.
    store.release_nudges("tok-1").await.unwrap();
    let two = store
        .claim_pending_nudges(&id, "tok-3", now, FOUR_HOURS, CLAIM, 2)
        .await
        .unwrap();
    assert_eq!(ids(&two), ["nudge-b", "nudge-d"]);
    assert!(
        store
            .claim_pending_nudges(&id, "tok-4", now, FOUR_HOURS, CLAIM, 0)
            .await
            .unwrap()
            .is_empty()
    );
    // Another agent's nudges are not this agent's.
    let other = store
        .get_or_create_agent("8123456789abcdef", "smolt-81234567")
        .await
        .unwrap()
        .id;
    assert!(
        store
            .claim_pending_nudges(&other, "tok-5", now, FOUR_HOURS, CLAIM, 5)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .pending_nudge_count(&other, now, FOUR_HOURS)
            .await
            .unwrap(),
        0
    );
}

async fn confirm_release_and_lapse(store: &Store) {
    let id = agent(store, "9123456789abcdef").await;
    let now = at(0) + chrono::TimeDelta::hours(10);
    nudges_on(store, &id, &["a", "b"], |i| now - minutes(20 - i as i64)).await;

    // Released (the upstream refused the request): a confirm with that token does nothing, and
    // the nudges can be claimed again at once.
    let claimed = store
        .claim_pending_nudges(&id, "tok-r", now, FOUR_HOURS, CLAIM, 5)
        .await
        .unwrap();
    assert_eq!(ids(&claimed), ["nudge-a", "nudge-b"]);
    assert_eq!(store.release_nudges("tok-r").await.unwrap(), 2);
    assert_eq!(store.release_nudges("tok-r").await.unwrap(), 0);
    assert_eq!(
        store.confirm_nudges("tok-r", "sess-r", now).await.unwrap(),
        0
    );
    assert_eq!(
        scalar_i64(
            store,
            "SELECT count(*) FROM enforcement_nudges WHERE status = 'pending' \
             AND claim_token IS NULL AND claimed_until IS NULL"
        )
        .await,
        2
    );

    // A claim that lapses (its request died) can be taken by another request; the first
    // request's confirm then does nothing.
    let claimed = store
        .claim_pending_nudges(&id, "tok-1", now, FOUR_HOURS, CLAIM, 5)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    let later = now + chrono::TimeDelta::seconds(29);
    assert!(
        store
            .claim_pending_nudges(&id, "tok-2", later, FOUR_HOURS, CLAIM, 5)
            .await
            .unwrap()
            .is_empty(),
        "still held"
    );
    let lapsed = now + chrono::TimeDelta::seconds(31);
    let retaken = store
        .claim_pending_nudges(&id, "tok-2", lapsed, FOUR_HOURS, CLAIM, 5)
        .await
        .unwrap();
    assert_eq!(ids(&retaken), ["nudge-a", "nudge-b"]);
    assert_eq!(
        store
            .confirm_nudges("tok-1", "sess-1", lapsed)
            .await
            .unwrap(),
        0
    );

    // Confirmed: delivered, in that session, at that time, claim cleared; never claimed again.
    let delivered_at = lapsed + chrono::TimeDelta::seconds(2);
    assert_eq!(
        store
            .confirm_nudges("tok-2", "sess-2", delivered_at)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        scalar_i64(
            store,
            "SELECT count(*) FROM enforcement_nudges WHERE status = 'delivered' \
             AND delivery_session_id = 'sess-2' AND claim_token IS NULL AND claimed_until IS NULL"
        )
        .await,
        2
    );
    assert_eq!(
        time(
            store,
            "SELECT delivered_at FROM enforcement_nudges WHERE id = 'nudge-a'"
        )
        .await,
        Some(delivered_at)
    );
    assert_eq!(
        store
            .confirm_nudges("tok-2", "sess-3", delivered_at)
            .await
            .unwrap(),
        0
    );
    assert_eq!(store.release_nudges("tok-2").await.unwrap(), 0);
    assert!(
        store
            .claim_pending_nudges(&id, "tok-3", delivered_at, FOUR_HOURS, CLAIM, 5)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .pending_nudge_count(&id, delivered_at, FOUR_HOURS)
            .await
            .unwrap(),
        0
    );
}

async fn the_observer_expires_claimed_nudges(store: &Store) {
    let id = agent(store, "a123456789abcdef").await;
    let now = at(0) + chrono::TimeDelta::hours(10);
    let hours = chrono::TimeDelta::hours;
    // Created 5 h ago; claimed 2 h ago (when it was 3 h old) by a request that never came back.
    nudges_on(store, &id, &["old", "young"], |i| {
        if i == 0 {
            now - hours(5)
        } else {
            now - hours(1)
        }
    })
    .await;
    let then = now - hours(2);
    let claimed = store
        .claim_pending_nudges(&id, "tok-lost", then, FOUR_HOURS, CLAIM, 1)
        .await
        .unwrap();
    assert_eq!(ids(&claimed), ["nudge-old"]);
    assert_eq!(
        store
            .expire_nudges(now - hours(4), now, 1000)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        text(
            store,
            "SELECT status FROM enforcement_nudges WHERE id = 'nudge-old'"
        )
        .await
        .as_deref(),
        Some("expired")
    );
    assert_eq!(
        store.confirm_nudges("tok-lost", "sess", now).await.unwrap(),
        0
    );
    // Past the window a nudge is not claimable even before the sweep ran.
    assert_eq!(
        ids(&store
            .claim_pending_nudges(&id, "tok-now", now + hours(4), FOUR_HOURS, CLAIM, 5)
            .await
            .unwrap()),
        Vec::<&str>::new()
    );
    assert_eq!(
        ids(&store
            .claim_pending_nudges(&id, "tok-now", now, FOUR_HOURS, CLAIM, 5)
            .await
            .unwrap()),
        ["nudge-young"]
    );
}

async fn twenty_concurrent_claimers_get_one_nudge_once(store: &Store) {
    let id = agent(store, "b123456789abcdef").await;
    let now = at(0) + chrono::TimeDelta::hours(10);
    // Two pools on one database: two gateway processes.
    let second = Store::connect_lazy(store.config()).unwrap();
    for round in 0..3 {
        let name = format!("n{round}");
        nudges_on(store, &id, &[name.as_str()], |_| now - minutes(5)).await;
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(20));
        let tasks: Vec<_> = (0..20)
            .map(|n| {
                let s = if n % 2 == 0 {
                    store.clone()
                } else {
                    second.clone()
                };
                let id = id.clone();
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    let token = format!("tok-{round}-{n}");
                    barrier.wait().await;
                    let claimed = s
                        .claim_pending_nudges(&id, &token, now, FOUR_HOURS, CLAIM, 5)
                        .await
                        .unwrap();
                    let confirmed = s.confirm_nudges(&token, "sess", now).await.unwrap();
                    (claimed, confirmed)
                })
            })
            .collect();
        let mut winners = Vec::new();
        let mut confirmed = 0;
        for task in tasks {
            let (claimed, n) = task.await.unwrap();
            confirmed += n;
            if !claimed.is_empty() {
                winners.push(claimed);
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        assert_eq!(ids(&winners[0]), [format!("nudge-{name}")]);
        assert_eq!(confirmed, 1, "round {round}");
    }
    assert_eq!(
        scalar_i64(
            store,
            "SELECT count(*) FROM enforcement_nudges WHERE status = 'delivered'"
        )
        .await,
        3
    );
    second.close().await;
}

macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        mod postgres_suite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let db = super::TestDb::postgres().await;
                    super::$test(&db.store).await;
                    db.finish().await;
                }
            )*
        }
        mod sqlite_suite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let db = super::TestDb::sqlite();
                    super::$test(&db.store).await;
                    db.finish().await;
                }
            )*
        }
    };
}

on_both_backends!(
    nudges_insert_idempotently,
    drift_alerts_skip_duplicate_ids_and_keys,
    containment_happens_once_and_only_from_active,
    webhook_deliveries_upsert_without_going_backwards,
    active_card_comes_with_its_conscience_values,
    recent_verdicts_and_session_violations,
    claims_take_young_pending_nudges_oldest_first,
    confirm_release_and_lapse,
    the_observer_expires_claimed_nudges,
    twenty_concurrent_claimers_get_one_nudge_once,
);

/// The pipeline spawns these futures: they must be `Send`.
#[test]
fn operations_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let config = StoreConfig::from_url(Some("sqlite::memory:"), std::path::Path::new(".")).unwrap();
    let store = Store::connect_lazy(&config).unwrap();
    let now = Utc::now();
    assert_send(&store.insert_nudges(&[]));
    assert_send(&store.insert_drift_alerts(&[]));
    assert_send(&store.apply_containments(&[]));
    assert_send(&store.upsert_webhook_deliveries(&[]));
    assert_send(&store.active_card("a"));
    assert_send(&store.recent_agent_verdicts("a", 5));
    assert_send(&store.count_session_violations("a", "s"));
    assert_send(&store.claim_pending_nudges("a", "t", now, FOUR_HOURS, CLAIM, 5));
    assert_send(&store.confirm_nudges("t", "s", now));
    assert_send(&store.release_nudges("t"));
    assert_send(&store.pending_nudge_count("a", now, FOUR_HOURS));
}
