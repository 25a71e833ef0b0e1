//! Group commit's set-based batch must leave the database exactly as committing the same
//! deliveries one by one does: same answers, same avatars, same events, same file jobs.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

use crate::helpers::{insert_avatar, insert_avatars, pg_connect, TestDatabase};
use webhook_api::fal;
use webhook_api::store::ingest::{self, BatchError, Delivery, Outcome};
use webhook_api::store::migrations;
use webhook_api::store::schema::AvatarSql;
use webhook_api::verify::FalScheme;

async fn database_with_avatars() -> (TestDatabase, Pool, AvatarSql) {
    let database = TestDatabase::create().await;
    let mut client = pg_connect(&database.url).await;
    let sql = migrations::run(&mut client, &Default::default())
        .await
        .expect("migrations");
    for request_id in ["b-1", "b-2", "b-3", "b-4"] {
        insert_avatar(&client, request_id, "TRAINING", "PORTRAIT").await;
    }
    insert_avatar(&client, "b-done", "COMPLETED", "PORTRAIT").await;
    let manager = Manager::from_config(
        database.url.parse().unwrap(),
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager).max_size(2).build().unwrap();
    (database, pool, sql)
}

fn delivery(body: &str) -> Delivery {
    Delivery {
        callback: fal::parse(body.as_bytes()).unwrap(),
        body: body.to_string(),
        scheme: FalScheme::Hmac,
        http_request_id: "it".into(),
        instance_id: "it".into(),
        training_type: None,
        received: std::time::Instant::now(),
    }
}

fn completion(request_id: &str) -> String {
    format!(
        r#"{{"request_id":"{request_id}","status":"OK","error":null,"payload":{{"diffusers_lora_file":{{"url":"https://v3.fal.media/files/b/{request_id}.safetensors","file_size":10}},"config_file":{{"url":"https://v3.fal.media/files/b/{request_id}.json","file_size":2}}}}}}"#
    )
}

/// Everything a delivery can change, in a comparable form.
async fn state(pool: &Pool) -> Vec<String> {
    let client = pool.get().await.unwrap();
    let mut lines = Vec::new();
    for row in client
        .query(
            "SELECT fal_request_id, status::text, training_progress, diffusers_lora_file_url, \
               training_error, (fal_response_data IS NOT NULL), \
               (SELECT count(*) FROM file_jobs j WHERE j.avatar_id = a.id) \
             FROM avatars a ORDER BY fal_request_id",
            &[],
        )
        .await
        .unwrap()
    {
        lines.push(format!(
            "avatar {:?} {:?} {:?} {:?} {:?} response={:?} jobs={:?}",
            row.get::<_, Option<String>>(0),
            row.get::<_, String>(1),
            row.get::<_, Option<i32>>(2),
            row.get::<_, Option<String>>(3),
            row.get::<_, Option<String>>(4),
            row.get::<_, bool>(5),
            row.get::<_, i64>(6),
        ));
    }
    for row in client
        .query(
            "SELECT delivery_key, outcome, deliveries, avatar_id IS NOT NULL, outcome_reason \
             FROM webhook_events ORDER BY delivery_key",
            &[],
        )
        .await
        .unwrap()
    {
        lines.push(format!(
            "event {} {} x{} matched={} {:?}",
            row.get::<_, String>(0),
            row.get::<_, String>(1),
            row.get::<_, i32>(2),
            row.get::<_, bool>(3),
            row.get::<_, Option<String>>(4),
        ));
    }
    lines
}

#[tokio::test]
async fn a_batch_ends_exactly_as_the_same_deliveries_one_by_one() {
    let bodies = [
        r#"{"request_id":"b-1","status":"in_progress","progress":40}"#.to_string(),
        // The same avatar again in the same batch: applied after the first.
        r#"{"request_id":"b-1","status":"in_progress","progress":60}"#.to_string(),
        completion("b-2"),
        completion("b-2"), // the same delivery twice in one batch
        completion("b-3"), // already committed before the batch
        completion("b-unknown"),
        completion("b-done"), // terminal: ignored
        r#"{"request_id":"b-4","status":"ERROR","error":"GPU fell over","payload":null}"#
            .to_string(),
    ];
    let mut deliveries: Vec<Delivery> = bodies.iter().map(|b| delivery(b)).collect();
    deliveries.sort_by_cached_key(|d| d.callback.delivery_key());

    let (_batch_db, batch_pool, sql) = database_with_avatars().await;
    let (_single_db, single_pool, _) = database_with_avatars().await;
    let earlier = delivery(&completion("b-3"));
    for pool in [&batch_pool, &single_pool] {
        ingest::ingest(pool, &sql, &earlier).await.unwrap();
    }

    let mut client = batch_pool.get().await.unwrap();
    let tx = client.transaction().await.unwrap();
    let together = ingest::ingest_all(&tx, &sql, &deliveries.iter().collect::<Vec<_>>())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut one_by_one = Vec::new();
    for d in &deliveries {
        one_by_one.push(ingest::ingest(&single_pool, &sql, d).await.unwrap());
    }

    let outcomes = |results: &[ingest::Ingested]| -> Vec<(String, Outcome, bool, bool)> {
        deliveries
            .iter()
            .zip(results)
            .map(|(d, r)| {
                (
                    d.callback.delivery_key(),
                    r.outcome,
                    r.changed.is_some(),
                    r.file_job.is_some(),
                )
            })
            .collect()
    };
    assert_eq!(outcomes(&together), outcomes(&one_by_one));
    assert_eq!(state(&batch_pool).await, state(&single_pool).await);

    // And the expected answers themselves, not only the agreement.
    let by_key = |key: &str| {
        outcomes(&together)
            .into_iter()
            .filter(|(k, ..)| k == key)
            .map(|(_, outcome, ..)| outcome)
            .collect::<Vec<_>>()
    };
    assert_eq!(by_key("fal:b-1:in_progress:40"), [Outcome::Applied]);
    assert_eq!(by_key("fal:b-1:in_progress:60"), [Outcome::Applied]);
    assert_eq!(
        by_key("fal:b-2:completed"),
        [Outcome::Applied, Outcome::Duplicate]
    );
    assert_eq!(by_key("fal:b-3:completed"), [Outcome::Duplicate]);
    assert_eq!(by_key("fal:b-unknown:completed"), [Outcome::Unmatched]);
    assert_eq!(by_key("fal:b-done:completed"), [Outcome::Ignored]);
    let views: Vec<_> = together.iter().filter_map(|r| r.changed.as_ref()).collect();
    assert!(views
        .iter()
        .any(|v| v.fal_request_id.as_deref() == Some("b-1") && v.progress == 60));
    let state = state(&batch_pool).await;
    assert!(
        state
            .iter()
            .any(|l| l.contains("fal:b-2:completed applied x2")),
        "{state:#?}"
    );
}

#[tokio::test]
async fn an_unmatched_delivery_that_now_matches_sends_the_batch_one_by_one() {
    let (_db, pool, sql) = database_with_avatars().await;
    let late = delivery(&completion("b-late"));
    assert_eq!(
        ingest::ingest(&pool, &sql, &late).await.unwrap().outcome,
        Outcome::Unmatched
    );
    insert_avatar(&pool.get().await.unwrap(), "b-late", "TRAINING", "PORTRAIT").await;

    let others = delivery(&completion("b-1"));
    let mut client = pool.get().await.unwrap();
    let tx = client.transaction().await.unwrap();
    let result = ingest::ingest_all(&tx, &sql, &[&others, &late]).await;
    assert!(
        matches!(result, Err(BatchError::OneByOne(_))),
        "{:?}",
        result.map(|r| r.len())
    );
    drop(tx);
    // What the group committer then does: one by one, and the late delivery is applied.
    assert_eq!(
        ingest::ingest(&pool, &sql, &late).await.unwrap().outcome,
        Outcome::Applied
    );
}

/// A batch reads which of its keys are recorded after locking its avatars; a delivery with no
/// avatar to lock can still be recorded by another instance before the batch writes. The
/// database then refuses the batch's insert (unique delivery key), which aborts its
/// transaction: the COMMIT sent behind it rolls it back, and nothing is counted twice.
#[tokio::test]
async fn a_key_recorded_after_the_batch_read_it_is_refused_by_the_database() {
    let (_db, pool, sql) = database_with_avatars().await;
    let unmatched = delivery(&completion("b-nobody"));
    let applied = delivery(&completion("b-1"));
    let deliveries = [&applied, &unmatched];

    let mut client = pool.get().await.unwrap();
    let tx = client.transaction().await.unwrap();
    let plan = ingest::plan_batch(&tx, &sql, &deliveries).await.unwrap();
    // Meanwhile, on the pool's other connection: nothing was locked for it.
    assert_eq!(
        ingest::ingest(&pool, &sql, &unmatched)
            .await
            .unwrap()
            .outcome,
        Outcome::Unmatched
    );
    let refused = plan.write(&tx, &sql).await;
    let Err(BatchError::Store(error)) = &refused else {
        panic!("written: {:?}", refused.map(|r| r.len()));
    };
    assert!(error.to_string().contains("webhook_events"), "{error}");
    drop(tx);

    let state = state(&pool).await;
    assert!(
        state
            .iter()
            .any(|l| l.contains("fal:b-nobody:completed unmatched x1")),
        "{state:#?}"
    );
    assert!(!state.iter().any(|l| l.contains("fal:b-1:")), "{state:#?}");
}

/// The group committer opens a batch's transaction without waiting for BEGIN's answer; a
/// batch sent one by one must be rolled back first, or its rows would be committed by the
/// next transaction on the same connection (the pool here has one) and the retried
/// deliveries would find themselves already recorded.
#[tokio::test]
async fn a_batch_sent_one_by_one_leaves_nothing_behind_on_its_connection() {
    use std::sync::Arc;
    use webhook_api::store::group::GroupCommitter;

    let (database, _, sql) = database_with_avatars().await;
    let late = delivery(&completion("b-late"));
    let one_connection = Pool::builder(Manager::from_config(
        database.url.parse().unwrap(),
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    ))
    .max_size(1)
    .build()
    .unwrap();
    assert_eq!(
        ingest::ingest(&one_connection, &sql, &late)
            .await
            .unwrap()
            .outcome,
        Outcome::Unmatched
    );
    insert_avatar(
        &one_connection.get().await.unwrap(),
        "b-late",
        "TRAINING",
        "PORTRAIT",
    )
    .await;

    let committer = GroupCommitter::start(one_connection.clone(), Arc::new(sql), 1, 64);
    // Queued together (this test's runtime has one thread): one batch, which the late
    // delivery sends one by one.
    let (others, late) = tokio::join!(
        committer.ingest(delivery(&completion("b-1"))),
        committer.ingest(late),
    );
    assert_eq!(others.unwrap().outcome, Outcome::Applied);
    assert_eq!(late.unwrap().outcome, Outcome::Applied);
    let after = committer
        .ingest(delivery(&completion("b-2")))
        .await
        .unwrap();
    assert_eq!(after.outcome, Outcome::Applied);

    let state = state(&one_connection).await;
    // b-late's event counts its first, unmatched delivery too.
    for event in [
        "b-1:completed applied x1",
        "b-2:completed applied x1",
        "b-late:completed applied x2",
    ] {
        assert!(
            state
                .iter()
                .any(|l| l.contains(&format!("fal:{event} matched=true"))),
            "{event}: {state:#?}"
        );
    }
}

/// A batch's statements are prepared once per connection and run their generic plans
/// (`ingest::BEGIN_BATCH`), planned for arrays of unknown length and kept. So the generic plan
/// of each must find its rows through an index and never read a whole table: on a fresh
/// install's empty, never analyzed tables (a plan made then is kept until autovacuum first
/// analyzes them), and on tables the size of a busy bot's.
#[tokio::test]
async fn every_batch_statements_generic_plan_reads_through_indexes() {
    let database = TestDatabase::create().await;
    let mut client = pg_connect(&database.url).await;
    let sql = migrations::run(&mut client, &Default::default())
        .await
        .expect("migrations");
    assert_batch_plans_use_indexes(&client, &sql, "fresh").await;

    insert_avatars(&client, "gp-", 20_000, "TRAINING", "PORTRAIT").await;
    client
        .batch_execute(
            "INSERT INTO webhook_events (source, delivery_key, fal_request_id, event, outcome, \
               signature_scheme, http_request_id, instance_id, payload) \
             SELECT 'fal', 'fal:gp-' || g || ':completed', 'gp-' || g, 'completed', 'applied', \
               'hmac', 'it', 'it', '{}' FROM generate_series(1, 20000) g; \
             ANALYZE avatars; ANALYZE webhook_events; ANALYZE file_jobs",
        )
        .await
        .unwrap();
    assert_batch_plans_use_indexes(&client, &sql, "large").await;
}

/// Prepares each batch statement in a batch's transaction and asks for its generic plan.
async fn assert_batch_plans_use_indexes(
    client: &tokio_postgres::Client,
    sql: &AvatarSql,
    tables: &str,
) {
    client.batch_execute(ingest::BEGIN_BATCH).await.unwrap();
    for (n, statement) in ingest::batch_statements(sql).iter().enumerate() {
        let name = format!("batch_{tables}_{n}");
        client
            .batch_execute(&format!("PREPARE {name} AS {statement}"))
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
        let parameters: i32 = client
            .query_one(
                "SELECT cardinality(parameter_types) FROM pg_prepared_statements WHERE name = $1",
                &[&name],
            )
            .await
            .unwrap()
            .get(0);
        let nulls = vec!["NULL"; parameters as usize].join(", ");
        let plan: Vec<String> = client
            .query(&format!("EXPLAIN EXECUTE {name}({nulls})"), &[])
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        let plan = plan.join("\n");
        for table in ["avatars", "webhook_events", "file_jobs"] {
            assert!(
                !plan.contains(&format!("Seq Scan on {table}")),
                "the generic plan of {statement}\nreads all of {table} ({tables} tables):\n{plan}"
            );
        }
    }
    client.batch_execute(ingest::ROLLBACK).await.unwrap();
}

#[tokio::test]
async fn a_batch_held_up_by_a_locked_avatar_does_not_hold_up_the_next() {
    use std::sync::Arc;
    use std::time::Duration;
    use webhook_api::store::group::GroupCommitter;

    let (database, pool, sql) = database_with_avatars().await;
    let committer = GroupCommitter::start(pool.clone(), Arc::new(sql), 2, 64);
    // The bot holds b-1's row, as a session between its SELECT … FOR UPDATE and its commit.
    let mut bot = pg_connect(&database.url).await;
    let bot_tx = bot.transaction().await.unwrap();
    bot_tx
        .execute(
            "SELECT 1 FROM avatars WHERE fal_request_id = 'b-1' FOR UPDATE",
            &[],
        )
        .await
        .unwrap();

    let held = tokio::spawn({
        let committer = committer.clone();
        async move { committer.ingest(delivery(&completion("b-1"))).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let other = tokio::time::timeout(
        Duration::from_secs(2),
        committer.ingest(delivery(&completion("b-2"))),
    )
    .await
    .expect("the next batch runs while b-1's waits for the bot")
    .unwrap();
    assert_eq!(other.outcome, Outcome::Applied);
    assert!(!held.is_finished(), "b-1 waits for the bot's lock");

    bot_tx.commit().await.unwrap();
    let held = held.await.unwrap().unwrap();
    assert_eq!(held.outcome, Outcome::Applied);
}
