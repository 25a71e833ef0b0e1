//! The statements and refusals for each shape `avatars` can have.

use super::*;

/// How the messages name a column's type in these tests.
fn type_sql(kind: &Kind) -> String {
    match kind {
        Kind::Enum { type_name, .. } => format!("enum {type_name}"),
        Kind::Text { max_chars: None } => "text".into(),
        Kind::Text { max_chars: Some(n) } => format!("varchar({n})"),
        Kind::Json => "json".into(),
        Kind::Jsonb => "jsonb".into(),
        Kind::Other => "other".into(),
    }
}

fn column(name: &str, kind: Kind) -> Column {
    Column {
        name: name.into(),
        type_sql: type_sql(&kind),
        kind,
    }
}

fn enum_of(type_name: &str, labels: &[&str]) -> Kind {
    Kind::Enum {
        type_name: type_name.into(),
        labels: labels.iter().map(|l| l.to_string()).collect(),
    }
}

fn bot_live() -> Inspected {
    let statuses = [
        "draft",
        "training",
        "completed",
        "error",
        "cancelled",
        "DRAFT",
        "TRAINING",
        "COMPLETED",
        "ERROR",
        "CANCELLED",
    ];
    Inspected {
        columns: vec![
            column("status", enum_of("avatarstatus", &statuses)),
            column(
                "training_type",
                enum_of(
                    "avatartrainingtype",
                    &["portrait", "style", "PORTRAIT", "STYLE"],
                ),
            ),
            column("fal_response_data", Kind::Json),
            column(
                "diffusers_lora_file_url",
                Kind::Text {
                    max_chars: Some(500),
                },
            ),
            column(
                "config_file_url",
                Kind::Text {
                    max_chars: Some(500),
                },
            ),
            column("training_error", Kind::Text { max_chars: None }),
        ],
    }
}

fn with(mut schema: Inspected, replaced: Column) -> Inspected {
    let slot = schema
        .columns
        .iter_mut()
        .find(|c| c.name == replaced.name)
        .unwrap();
    *slot = replaced;
    schema
}

#[test]
fn the_bots_live_enums_are_cast_and_compared_by_their_labels() {
    let sql = AvatarSql::new(&bot_live(), "id", &FollowupPolicy::default()).unwrap();
    assert!(sql.apply.contains("status = c.c_status::avatarstatus,"));
    assert!(sql
        .apply
        .contains("COALESCE(training_type, c.c_kind::avatartrainingtype)"));
    assert!(sql.apply.contains("THEN c.c_body::json ELSE"));
    assert_eq!(sql.training, "status IN ('training', 'TRAINING')");
}

#[test]
fn a_change_records_exactly_the_configured_followups_in_its_own_statement() {
    let none = AvatarSql::new(&bot_live(), "id", &FollowupPolicy::default()).unwrap();
    assert!(none.apply.starts_with("UPDATE avatars SET"));
    assert!(!none.apply.contains("avatar_followups"));
    let photos_only = FollowupPolicy {
        delete_photos: true,
        ..FollowupPolicy::default()
    };
    let sql = AvatarSql::new(&bot_live(), "id", &photos_only).unwrap();
    assert!(sql.apply.starts_with("WITH changed AS (UPDATE avatars SET"));
    assert!(sql
        .apply
        .contains("JOIN (VALUES ('COMPLETED', 'delete_photos')) AS k(status, kind)"));
    // A completion with files to copy: its photos are recorded with the copy instead.
    assert!(sql
        .apply
        .contains("AND NOT (k.kind = 'delete_photos' AND changed.followup_copies)"));
    assert_eq!(sql.followups, photos_only);
    let all = FollowupPolicy {
        notify_ready: true,
        notify_failed: true,
        delete_photos: true,
    };
    let sql = AvatarSql::new(&bot_live(), "id", &all).unwrap();
    assert!(sql.apply.contains(
        "(VALUES ('COMPLETED', 'notify_ready'), ('COMPLETED', 'delete_photos'), \
         ('ERROR', 'notify_failed'))"
    ));
    // A fine-tune (flux-pro-trainer) replaces the LoRA URLs; a LoRA result clears it.
    assert!(sql
        .apply
        .contains("diffusers_lora_file_url = CASE WHEN c.c_finetune IS NOT NULL THEN NULL"));
    assert!(sql
        .apply
        .contains("finetune_id = CASE WHEN c.c_status = 'COMPLETED' THEN c.c_finetune"));
}

#[test]
fn varchar_columns_take_text_by_assignment_and_compare_upper_case() {
    let schema = with(
        with(
            bot_live(),
            column(
                "status",
                Kind::Text {
                    max_chars: Some(18),
                },
            ),
        ),
        column("fal_response_data", Kind::Jsonb),
    );
    let sql = AvatarSql::new(&schema, "id", &FollowupPolicy::default()).unwrap();
    assert!(sql.apply.contains("status = c.c_status, "));
    assert!(sql.apply.contains("THEN c.c_body::jsonb ELSE"));
    assert_eq!(sql.training, "upper(status::text) = 'TRAINING'");
}

#[test]
fn an_enum_without_a_written_label_is_refused_naming_column_type_and_value() {
    let schema = with(
        bot_live(),
        column(
            "status",
            enum_of("avatarstatus", &["training", "completed", "TRAINING"]),
        ),
    );
    let error = schema.check(false).unwrap_err().to_string();
    assert_eq!(
        error,
        "avatars.status (enum avatarstatus) cannot hold \"COMPLETED\", which the service \
         writes: add the label (ALTER TYPE avatarstatus ADD VALUE 'COMPLETED')"
    );
}

#[test]
fn a_varchar_too_short_is_refused() {
    let schema = with(
        bot_live(),
        column("training_type", Kind::Text { max_chars: Some(5) }),
    );
    let error = schema.check(false).unwrap_err().to_string();
    assert!(error.starts_with("avatars.training_type (varchar(5)) cannot hold \"PORTRAIT\""));
    assert!(error.ends_with("widen the column to at least 8 characters"));
}

#[test]
fn json_must_be_json_and_missing_columns_count_only_after_migrations() {
    let schema = with(bot_live(), column("fal_response_data", Kind::Other));
    assert!(matches!(
        schema.check(false),
        Err(SchemaError::WrongType { .. })
    ));
    let mut partial = bot_live();
    partial.columns.retain(|c| c.name != "training_error");
    assert!(partial.check(false).is_ok());
    assert_eq!(
        partial.check(true).unwrap_err().to_string(),
        "avatars.training_error is missing: the service reads and writes it"
    );
}

#[test]
fn urls_too_long_for_the_column_are_left_out_and_errors_are_shortened() {
    let schema = with(
        with(
            bot_live(),
            column(
                "diffusers_lora_file_url",
                Kind::Text {
                    max_chars: Some(20),
                },
            ),
        ),
        column(
            "training_error",
            Kind::Text {
                max_chars: Some(10),
            },
        ),
    );
    let sql = AvatarSql::new(&schema, "id", &FollowupPolicy::default()).unwrap();
    assert_eq!(sql.fitting_url("https://a.io/x"), Some("https://a.io/x"));
    assert_eq!(sql.fitting_url("https://v3.fal.media/files/x"), None);
    assert_eq!(sql.fitting_error("short"), "short");
    assert_eq!(sql.fitting_error("out of memory on GPU"), "out of me…");
}
