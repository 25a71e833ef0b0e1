//! The bot's database as it really is: callbacks leave rows its SQLAlchemy ORM loads, on each
//! shape `avatars` can have (the bot's live enums, the bot's fresh `create_all` varchars, the
//! table the service creates itself), and the bot's own schema and rows stay as they were.

use std::collections::HashMap;

use serde_json::Value;
use uuid::Uuid;

use crate::helpers::{
    bot_orm, fixture, insert_avatar, pg_connect, AppOptions, AvatarsSchema, Instance, TestApp,
    TestDatabase,
};

const OK_ID: &str = "a6823810-a615-4ac8-aca3-5d2546aa81b8";
const ERROR_ID: &str = "123e4567-e89b-12d3-a456-426614174000";
const PROGRESS_ID: &str = "test-123";

/// The first column of every row `query` returns, as text.
async fn texts(db: &tokio_postgres::Client, query: &str) -> Vec<String> {
    db.query(query, &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// The bot's schema as `information_schema` and the catalogs describe it, one line a fact.
async fn bot_schema(db: &tokio_postgres::Client) -> Vec<String> {
    let queries = [
        "SELECT 'column ' || table_name || '.' || column_name || ' ' || data_type || ' ' || \
           udt_name || ' ' || coalesce(character_maximum_length::text, '-') || ' ' || \
           is_nullable || ' ' || coalesce(column_default, '-') \
         FROM information_schema.columns WHERE table_schema = 'public' \
           AND table_name IN ('users', 'avatars', 'avatar_photos') ORDER BY 1",
        "SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = 'public' \
           AND tablename IN ('users', 'avatars', 'avatar_photos') ORDER BY 1",
        "SELECT 'constraint ' || conrelid::regclass::text || ' ' || conname || ' ' || \
           pg_get_constraintdef(oid) FROM pg_constraint \
         WHERE conrelid IN (SELECT oid FROM pg_class WHERE relname IN \
           ('users', 'avatars', 'avatar_photos') AND relnamespace = 'public'::regnamespace) \
         ORDER BY 1",
        "SELECT 'type ' || t.typname || ' ' || string_agg(e.enumlabel, ',' ORDER BY \
           e.enumsortorder) FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid \
         GROUP BY t.typname ORDER BY 1",
    ];
    let mut facts = Vec::new();
    for query in queries {
        facts.extend(texts(db, query).await);
    }
    facts
}

/// The bot's rows that no callback names, as JSON (without the columns the service adds).
async fn bystanders(db: &tokio_postgres::Client, avatar: Uuid) -> Vec<String> {
    let ours = "'{lora_object_key,config_object_key,files_stored_at,files_error,\
                status_check_failures}'::text[]";
    let mut rows = Vec::new();
    for query in [
        format!("SELECT (to_jsonb(a) - {ours})::text FROM avatars a WHERE id = $1"),
        "SELECT to_jsonb(u)::text FROM users u WHERE id = (SELECT user_id FROM avatars \
           WHERE id = $1)"
            .to_string(),
    ] {
        for row in db.query(&query, &[&avatar]).await.unwrap() {
            rows.push(row.get(0));
        }
    }
    rows
}

/// Every avatar as the bot's ORM loads it, by id; fails if any cannot be loaded.
fn loaded_by_the_bot(url: &str, schema: AvatarsSchema) -> HashMap<String, Value> {
    let mut args = vec!["load", url];
    if schema == AvatarsSchema::Own {
        args.push("--core");
    }
    let rows: Vec<Value> = serde_json::from_str(&bot_orm(&args)).expect("load prints JSON");
    rows.into_iter()
        .map(|row| (row["id"].as_str().unwrap().to_string(), row))
        .collect()
}

async fn callbacks_leave_rows_the_bots_orm_loads(schema: AvatarsSchema) {
    let database = TestDatabase::create_with(schema).await;
    let db = pg_connect(&database.url).await;
    let options = AppOptions::default().shared_database(&database.url);

    // The bot submits three trainings (one of them STYLE) and has a draft no callback names.
    let (app, ids, before) = if schema == AvatarsSchema::Own {
        let app = TestApp::spawn_with(options).await;
        let mut ids = HashMap::new();
        for (kind, id) in [
            ("PORTRAIT", OK_ID),
            ("STYLE", ERROR_ID),
            ("PORTRAIT", PROGRESS_ID),
        ] {
            ids.insert(
                id.to_string(),
                insert_avatar(&db, id, "TRAINING", kind).await,
            );
        }
        ids.insert(
            "draft".into(),
            insert_avatar(&db, "never-sent", "DRAFT", "PORTRAIT").await,
        );
        (app, ids, None)
    } else {
        let seeded = bot_orm(&[
            "seed",
            &database.url,
            &format!("PORTRAIT:{OK_ID}"),
            &format!("STYLE:{ERROR_ID}"),
            &format!("PORTRAIT:{PROGRESS_ID}"),
        ]);
        let ids: HashMap<String, Uuid> = serde_json::from_str(&seeded).unwrap();
        let before = (bot_schema(&db).await, bystanders(&db, ids["draft"]).await);
        (TestApp::spawn_with(options).await, ids, Some(before))
    };

    for name in [
        "ok_flux_lora_fast_training.json",
        "error_validation.json",
        "legacy_in_progress.json",
    ] {
        let answer = app.post_fal(&fixture(name)).await;
        assert_eq!(answer.status, 200, "{schema:?} {name}: {:?}", answer.json);
        assert_eq!(answer.result(), "applied", "{schema:?} {name}");
    }

    let rows = loaded_by_the_bot(&database.url, schema);
    let row = |id: &str| &rows[&ids[id].to_string()];
    let completed = row(OK_ID);
    assert_eq!(completed["status"], "COMPLETED", "{schema:?}: {completed}");
    assert_eq!(completed["progress"], 100);
    assert!(completed["completed_at"].is_string());
    assert_eq!(
        completed["lora_url"],
        "https://v3.fal.media/files/koala/Yx3k_pytorch_lora_weights.safetensors"
    );
    assert_eq!(
        completed["config_url"],
        "https://v3.fal.media/files/koala/Q9pe_config.json"
    );
    assert_eq!(completed["fal_response_data"]["request_id"], OK_ID);
    assert_eq!(completed["training_type"], "PORTRAIT");
    let failed = row(ERROR_ID);
    assert_eq!(failed["status"], "ERROR", "{schema:?}: {failed}");
    assert!(failed["error"]
        .as_str()
        .unwrap()
        .contains("Invalid status code: 422"));
    assert_eq!(failed["training_type"], "STYLE");
    let training = row(PROGRESS_ID);
    assert_eq!(training["status"], "TRAINING", "{schema:?}: {training}");
    assert_eq!(training["progress"], 40);
    assert_eq!(row("draft")["status"], "DRAFT");

    // The API and the bot's stream speak the same names.
    let status = app
        .get(&format!("/api/v1/avatar/{}/status", ids[OK_ID]))
        .await;
    assert_eq!(status.json["status"], "COMPLETED");
    assert_eq!(status.json["training_type"], "PORTRAIT");
    let mut announced: Vec<String> = app
        .stream_entries()
        .await
        .iter()
        .map(|entry| entry.get("status").unwrap())
        .collect();
    announced.sort();
    assert_eq!(announced, ["COMPLETED", "ERROR", "TRAINING"]);

    if let Some((schema_before, rows_before)) = before {
        let schema_after = bot_schema(&db).await;
        let added: Vec<&String> = schema_after
            .iter()
            .filter(|fact| !schema_before.contains(fact))
            .collect();
        let removed: Vec<&String> = schema_before
            .iter()
            .filter(|fact| !schema_after.contains(fact))
            .collect();
        assert!(
            removed.is_empty(),
            "{schema:?}: changed or removed {removed:#?}"
        );
        let ours = [
            "column avatars.lora_object_key ",
            "column avatars.config_object_key ",
            "column avatars.files_stored_at ",
            "column avatars.files_error ",
            "column avatars.status_check_failures ",
            "index CREATE INDEX avatars_training_idx ",
        ];
        assert!(
            added
                .iter()
                .all(|fact| ours.iter().any(|o| fact.starts_with(o))),
            "{schema:?}: added more than the service's columns and index: {added:#?}"
        );
        assert_eq!(added.len(), ours.len(), "{added:#?}");
        assert_eq!(bystanders(&db, ids["draft"]).await, rows_before);
    }
}

#[tokio::test]
async fn on_the_bots_live_schema_callbacks_leave_rows_its_orm_loads() {
    callbacks_leave_rows_the_bots_orm_loads(AvatarsSchema::BotLive).await;
}

#[tokio::test]
async fn on_the_bots_create_all_schema_callbacks_leave_rows_its_orm_loads() {
    callbacks_leave_rows_the_bots_orm_loads(AvatarsSchema::BotCreateAll).await;
}

#[tokio::test]
async fn on_the_services_own_table_callbacks_leave_rows_the_bots_orm_loads() {
    callbacks_leave_rows_the_bots_orm_loads(AvatarsSchema::Own).await;
}

fn live_schema() -> String {
    let path = format!(
        "{}/tests/fixtures/bot/live_schema.sql",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(path).unwrap()
}

/// Starts the real binary on `database`, which must refuse to start; the `error` of the one
/// line (of its JSON log, as in production) that says why.
async fn refused_start(database: &TestDatabase) -> String {
    let mut instance = Instance::start_logged(&database.url, &[("LOG_FORMAT", "json".to_string())]);
    let status = instance.wait_exit(std::time::Duration::from_secs(20));
    assert!(
        !status.success(),
        "the service started on a schema it cannot write"
    );
    let logs = instance.logs();
    let errors: Vec<String> = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["level"] == "ERROR")
        .map(|line| line["error"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(errors.len(), 1, "{logs}");
    errors[0].clone()
}

async fn written_by_the_service(db: &tokio_postgres::Client) -> Vec<String> {
    texts(
        db,
        "SELECT relname::text FROM pg_class WHERE relname IN ('refinery_schema_history', \
           'webhook_events', 'file_jobs', 'avatars_training_idx') \
         UNION ALL SELECT 'avatars.' || column_name::text FROM information_schema.columns \
           WHERE table_name = 'avatars' AND column_name IN ('lora_object_key', 'files_error')",
    )
    .await
}

#[tokio::test]
async fn a_status_enum_without_the_completed_label_stops_the_start_and_nothing_is_written() {
    let database = TestDatabase::create_with(AvatarsSchema::Own).await;
    let db = pg_connect(&database.url).await;
    let without_completed = live_schema().replace("'TRAINING', 'COMPLETED',", "'TRAINING',");
    assert_ne!(without_completed, live_schema());
    db.batch_execute(&without_completed).await.unwrap();

    assert_eq!(
        refused_start(&database).await,
        "avatars.status (avatarstatus) cannot hold \"COMPLETED\", which the service writes: \
         add the label (ALTER TYPE avatarstatus ADD VALUE 'COMPLETED')"
    );
    assert!(written_by_the_service(&db).await.is_empty());
}

#[tokio::test]
async fn a_training_type_column_too_short_stops_the_start_and_nothing_is_written() {
    let database = TestDatabase::create_with(AvatarsSchema::BotCreateAll).await;
    let db = pg_connect(&database.url).await;
    db.batch_execute("ALTER TABLE avatars ALTER COLUMN training_type TYPE varchar(5)")
        .await
        .unwrap();

    assert_eq!(
        refused_start(&database).await,
        "avatars.training_type (character varying(5)) cannot hold \"PORTRAIT\", which the \
         service writes: widen the column to at least 8 characters"
    );
    assert!(written_by_the_service(&db).await.is_empty());
}

/// V1–V5 as a database that migrated before they were corrected has them: the old V1 and V5
/// (`tests/fixtures/migrations_v1_v5`), V2–V4 as they still are.
fn migrations_before_the_bot_schema() -> refinery::Runner {
    let dir = env!("CARGO_MANIFEST_DIR");
    let migrations: Vec<refinery::Migration> = [
        "fixtures/migrations_v1_v5/V1__avatars.sql",
        "../migrations/V2__webhook_events.sql",
        "../migrations/V3__file_jobs.sql",
        "../migrations/V4__deliveries.sql",
        "fixtures/migrations_v1_v5/V5__reconciler.sql",
    ]
    .iter()
    .map(|path| {
        let path = format!("{dir}/tests/{path}");
        let name = path.rsplit('/').next().unwrap().trim_end_matches(".sql");
        let sql = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        refinery::Migration::unapplied(name, &sql).unwrap()
    })
    .collect();
    refinery::Runner::new(&migrations)
}

/// Indexes on `avatars` whose first column is `fal_request_id`.
async fn request_id_indexes(db: &tokio_postgres::Client) -> Vec<String> {
    texts(
        db,
        "SELECT c.relname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
         WHERE i.indrelid = 'avatars'::regclass AND a.attname = 'fal_request_id' ORDER BY 1",
    )
    .await
}

#[tokio::test]
async fn a_database_that_applied_the_old_v1_to_v5_migrates_cleanly() {
    for schema in [AvatarsSchema::BotLive, AvatarsSchema::Own] {
        let database = TestDatabase::create_with(schema).await;
        let mut db = pg_connect(&database.url).await;
        migrations_before_the_bot_schema()
            .run_async(&mut db)
            .await
            .expect("the old migrations apply");
        if schema == AvatarsSchema::BotLive {
            assert_eq!(
                request_id_indexes(&db).await,
                ["avatars_fal_request_id_idx", "ix_avatars_fal_request_id"]
            );
        }

        let app = TestApp::spawn_with(AppOptions::default().shared_database(&database.url)).await;
        let avatar = app.insert_training_avatar(OK_ID).await;
        let answer = app
            .post_fal(&fixture("ok_flux_lora_fast_training.json"))
            .await;
        assert_eq!(answer.status, 200, "{schema:?}: {:?}", answer.json);
        assert_eq!(app.avatar(avatar).await.status, "COMPLETED");

        let expected_index = match schema {
            AvatarsSchema::BotLive => ["ix_avatars_fal_request_id"],
            _ => ["avatars_fal_request_id_idx"],
        };
        assert_eq!(request_id_indexes(&db).await, expected_index, "{schema:?}");
        let predicate: String = db
            .query_one(
                "SELECT pg_get_expr(indpred, indrelid) FROM pg_index \
                 WHERE indexrelid = 'avatars_training_idx'::regclass",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        let expected = match schema {
            AvatarsSchema::BotLive => "'training'::avatarstatus, 'TRAINING'::avatarstatus",
            _ => "upper(status) = 'TRAINING'::text",
        };
        assert!(predicate.contains(expected), "{schema:?}: {predicate}");
        let applied: i64 = db
            .query_one(
                "SELECT count(*) FROM refinery_schema_history WHERE version = 6",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(applied, 1);
    }
}
