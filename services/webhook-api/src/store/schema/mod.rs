//! The bot's `avatars` columns as this database really has them. The bot owns the table: on
//! its live database `status` and `training_type` are native enums and `fal_response_data` is
//! `json`; a database its ORM created afresh has `varchar(N)` for them; one without the bot
//! has the table our migrations create. Read at start, so every statement binds each value in
//! its column's own type (PostgreSQL never has to guess), and a column that cannot hold a value
//! the service writes stops the start with one line naming it.

use tokio_postgres::GenericClient;

use crate::avatar::{AvatarStatus, FollowupPolicy, TrainingType};

/// The `avatars` columns whose type decides how a value is bound.
const INSPECTED: [&str; 6] = [
    "status",
    "training_type",
    "fal_response_data",
    "diffusers_lora_file_url",
    "config_file_url",
    "training_error",
];

const COLUMNS: &str = "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), \
       format_type(a.atttypid, NULL), t.typname::text, t.typtype::text, \
       CASE WHEN t.typname IN ('varchar', 'bpchar') AND a.atttypmod > 4 \
         THEN a.atttypmod - 4 END, \
       ARRAY(SELECT e.enumlabel::text FROM pg_enum e WHERE e.enumtypid = t.oid \
             ORDER BY e.enumsortorder) \
     FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
     WHERE a.attrelid = to_regclass('avatars') AND a.attnum > 0 AND NOT a.attisdropped \
       AND a.attname = ANY($1)";

/// What a column can hold, as far as the service's writes are concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A native enum: values are cast to `type_name`, and only `labels` fit.
    Enum {
        type_name: String,
        labels: Vec<String>,
    },
    /// `text` (no limit) or `varchar(N)`: bound as text, PostgreSQL's assignment checks N.
    Text {
        max_chars: Option<usize>,
    },
    Json,
    Jsonb,
    /// Anything else (`char(N)` pads, a domain, an integer...): the service does not write it.
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// As PostgreSQL spells it, with its length: for messages.
    pub type_sql: String,
    pub kind: Kind,
}

impl Column {
    /// `true` when `value` can be stored as it is.
    fn holds(&self, value: &str) -> bool {
        match &self.kind {
            Kind::Enum { labels, .. } => labels.iter().any(|l| l == value),
            Kind::Text { max_chars } => max_chars.is_none_or(|max| value.chars().count() <= max),
            Kind::Json | Kind::Jsonb | Kind::Other => false,
        }
    }

    /// The cast that turns a text value into this column's type (empty for text columns,
    /// which take text by assignment, so a too-long value is an error, never truncated).
    fn cast(&self) -> String {
        match &self.kind {
            Kind::Enum { type_name, .. } => format!("::{type_name}"),
            Kind::Json => "::json".into(),
            Kind::Jsonb => "::jsonb".into(),
            Kind::Text { .. } | Kind::Other => String::new(),
        }
    }
}

/// The service cannot write into this database; nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("avatars.{column} is missing: the service reads and writes it")]
    Missing { column: &'static str },
    #[error(
        "avatars.{column} ({type_sql}) cannot hold {value:?}, which the service writes: {fix}"
    )]
    CannotHold {
        column: String,
        type_sql: String,
        value: String,
        fix: String,
    },
    #[error("avatars.{column} ({type_sql}) is not a type the service can write {what} into")]
    WrongType {
        column: String,
        type_sql: String,
        what: &'static str,
    },
}

/// The inspected columns the table has (none when there is no table yet).
#[derive(Debug, Clone, Default)]
pub struct Inspected {
    columns: Vec<Column>,
}

impl Inspected {
    fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Checks the columns that exist. Before migrations this is what stops a start with
    /// nothing written; after them every column must exist.
    pub fn check(&self, require_all: bool) -> Result<(), SchemaError> {
        let statuses = AvatarStatus::WRITTEN.map(AvatarStatus::as_str);
        let kinds = TrainingType::ALL.map(TrainingType::as_str);
        let checks: [(&'static str, &[&str], &'static str); 6] = [
            ("status", &statuses, "a status"),
            ("training_type", &kinds, "a training type"),
            ("fal_response_data", &[], "FAL's response (json)"),
            ("diffusers_lora_file_url", &[], "a URL"),
            ("config_file_url", &[], "a URL"),
            ("training_error", &[], "an error message"),
        ];
        for (name, values, what) in checks {
            let Some(column) = self.column(name) else {
                if require_all {
                    return Err(SchemaError::Missing { column: name });
                }
                continue;
            };
            let writable = match (name, &column.kind) {
                ("fal_response_data", kind) => matches!(
                    kind,
                    Kind::Json | Kind::Jsonb | Kind::Text { max_chars: None }
                ),
                // An enum only where the service writes a known set of values.
                (_, Kind::Enum { .. }) => !values.is_empty(),
                (_, kind) => matches!(kind, Kind::Text { .. }),
            };
            if !writable {
                return Err(SchemaError::WrongType {
                    column: column.name.clone(),
                    type_sql: column.type_sql.clone(),
                    what,
                });
            }
            if let Some(value) = values.iter().find(|v| !column.holds(v)) {
                let fix = match &column.kind {
                    Kind::Enum { type_name, .. } => {
                        format!("add the label (ALTER TYPE {type_name} ADD VALUE '{value}')")
                    }
                    _ => format!("widen the column to at least {} characters", value.len()),
                };
                return Err(SchemaError::CannotHold {
                    column: column.name.clone(),
                    type_sql: column.type_sql.clone(),
                    value: value.to_string(),
                    fix,
                });
            }
        }
        Ok(())
    }
}

pub async fn inspect(client: &impl GenericClient) -> Result<Inspected, tokio_postgres::Error> {
    let mut columns = Vec::new();
    for row in client.query(COLUMNS, &[&&INSPECTED[..]]).await? {
        let type_name: String = row.try_get(2)?;
        let base: String = row.try_get(3)?;
        let type_class: String = row.try_get(4)?;
        let max_chars: Option<i32> = row.try_get(5)?;
        let kind = match (type_class.as_str(), base.as_str()) {
            ("e", _) => Kind::Enum {
                type_name,
                labels: row.try_get(6)?,
            },
            (_, "text") => Kind::Text { max_chars: None },
            (_, "varchar") => Kind::Text {
                max_chars: max_chars.map(|n| n as usize),
            },
            (_, "json") => Kind::Json,
            (_, "jsonb") => Kind::Jsonb,
            _ => Kind::Other,
        };
        columns.push(Column {
            name: row.try_get(0)?,
            type_sql: row.try_get(1)?,
            kind,
        });
    }
    Ok(Inspected { columns })
}

/// The avatar statements, written for this database's column types. Built once at start from
/// a schema that passed `Inspected::check(true)`.
#[derive(Debug)]
pub struct AvatarSql {
    /// `UPDATE avatars` over arrays (one `unnest`, one delivery or a batch): `$1` ids, `$2`
    /// statuses, `$3` progress, `$4` LoRA URLs, `$5` config URLs, `$6` errors, `$7` bodies,
    /// `$8` training types, `$9` fine-tune ids, `$10` delivery keys (all text but `$1`, `$3`),
    /// `$11` whether the change has files to copy; with the follow-ups of `followups` in the
    /// same statement (the photos of a change with files go when its copy is recorded:
    /// `store::jobs::complete`).
    pub apply: String,
    /// What a change records to be done after its commit.
    pub followups: FollowupPolicy,
    /// "The avatar is training", in a form that matches the partial index `avatars_training_idx`
    /// (a native enum's labels cannot be compared through an (immutable) cast).
    pub training: String,
    url_max_chars: Option<usize>,
    error_max_chars: Option<usize>,
}

impl AvatarSql {
    /// `followups`: what a change records to be done after its commit (none: the statement
    /// writes the avatars only).
    pub fn new(
        schema: &Inspected,
        view_columns: &str,
        followups: &FollowupPolicy,
    ) -> Result<Self, SchemaError> {
        schema.check(true)?;
        let column = |name| schema.column(name).expect("checked: every column exists");
        let (status, training_type, response) = (
            column("status"),
            column("training_type"),
            column("fal_response_data"),
        );
        let (training, completed, error) = (
            AvatarStatus::Training.as_str(),
            AvatarStatus::Completed.as_str(),
            AvatarStatus::Error.as_str(),
        );
        let set_columns = format!(
            "status = c.c_status{status_cast}, \
               training_progress = COALESCE(c.c_progress, training_progress), \
               training_started_at = CASE WHEN c.c_status = '{training}' \
                 THEN COALESCE(training_started_at, now()) ELSE training_started_at END, \
               training_completed_at = CASE WHEN c.c_status = '{completed}' THEN now() \
                 ELSE training_completed_at END, \
               diffusers_lora_file_url = CASE WHEN c.c_finetune IS NOT NULL THEN NULL \
                 ELSE COALESCE(c.c_lora, diffusers_lora_file_url) END, \
               config_file_url = CASE WHEN c.c_finetune IS NOT NULL THEN NULL \
                 ELSE COALESCE(c.c_config, config_file_url) END, \
               finetune_id = CASE WHEN c.c_status = '{completed}' THEN c.c_finetune \
                 ELSE finetune_id END, \
               training_error = COALESCE(c.c_error, training_error), \
               fal_response_data = CASE WHEN c.c_status IN ('{completed}', '{error}') \
                 THEN c.c_body{response_cast} ELSE fal_response_data END, \
               training_type = COALESCE(training_type, c.c_kind{kind_cast}), \
               last_status_check = now(), \
               updated_at = now()",
            status_cast = status.cast(),
            response_cast = response.cast(),
            kind_cast = training_type.cast(),
        );
        let update = format!(
            "UPDATE avatars SET {set_columns} \
             FROM unnest($1::uuid[], $2::text[], $3::int[], $4::text[], $5::text[], $6::text[], \
               $7::text[], $8::text[], $9::text[], $10::text[], $11::bool[]) \
               AS c(c_id, c_status, c_progress, c_lora, c_config, c_error, c_body, c_kind, \
                 c_finetune, c_key, c_copies) \
             WHERE avatars.id = c.c_id"
        );
        let apply = match super::followups::recorded_with_changes(followups) {
            None => format!("{update} RETURNING {view_columns}"),
            // The follow-ups commit with the change that calls for them; the extra columns
            // come after the view's, which reads its own by position.
            Some(followed) => format!(
                "WITH changed AS ({update} RETURNING {view_columns}, \
                   c.c_status AS followup_status, c.c_key AS followup_key, \
                   c.c_copies AS followup_copies), \
                 {followed} \
                 SELECT * FROM changed"
            ),
        };
        let text_limit = |name| match column(name).kind {
            Kind::Text { max_chars } => max_chars,
            _ => None,
        };
        Ok(Self {
            apply,
            followups: *followups,
            training: training_predicate(status),
            // One limit for both URL columns: the shorter, where either has one.
            url_max_chars: [
                text_limit("diffusers_lora_file_url"),
                text_limit("config_file_url"),
            ]
            .into_iter()
            .flatten()
            .min(),
            error_max_chars: text_limit("training_error"),
        })
    }

    /// A file URL the bot's column can hold, or `None` (it is still in `fal_response_data`,
    /// and the file job copies it): a cut URL would point nowhere.
    pub fn fitting_url<'a>(&self, url: &'a str) -> Option<&'a str> {
        match self.url_max_chars {
            Some(max) if url.chars().count() > max => {
                tracing::warn!(
                    length = url.chars().count(),
                    max,
                    "a file URL is longer than the avatars column holds; left out of the column"
                );
                None
            }
            _ => Some(url),
        }
    }

    /// An error message shortened to what the column holds (it is for people to read).
    pub fn fitting_error<'a>(&self, error: &'a str) -> std::borrow::Cow<'a, str> {
        match self.error_max_chars {
            Some(max) if error.chars().count() > max => {
                let keep = max.saturating_sub(1);
                let cut: String = error.chars().take(keep).collect();
                std::borrow::Cow::Owned(format!("{cut}…"))
            }
            _ => std::borrow::Cow::Borrowed(error),
        }
    }
}

/// `status` is `TRAINING`, whatever the case it was written in: the enum's labels that spell
/// it (constants, so usable in an index predicate), or `upper()` of a text column.
fn training_predicate(status: &Column) -> String {
    let training = AvatarStatus::Training.as_str();
    match &status.kind {
        Kind::Enum { labels, .. } => {
            let spellings: Vec<String> = labels
                .iter()
                .filter(|l| l.eq_ignore_ascii_case(training))
                .map(|l| format!("'{}'", l.replace('\'', "''")))
                .collect();
            format!("status IN ({})", spellings.join(", "))
        }
        _ => format!("upper(status::text) = '{training}'"),
    }
}

const TRAINING_INDEX: &str = "avatars_training_idx";

/// Makes sure the partial index of trainings matches `training` (the comment on the index
/// records the predicate it was built for; an index built for another one is rebuilt).
pub async fn ensure_training_index(
    client: &impl GenericClient,
    sql: &AvatarSql,
) -> Result<(), tokio_postgres::Error> {
    let built_for: Option<String> = client
        .query_opt(
            "SELECT obj_description(to_regclass($1), 'pg_class')",
            &[&TRAINING_INDEX],
        )
        .await?
        .and_then(|row| row.get(0));
    if built_for.as_deref() == Some(sql.training.as_str()) {
        return Ok(());
    }
    let comment = sql.training.replace('\'', "''");
    client
        .batch_execute(&format!(
            "DROP INDEX IF EXISTS {TRAINING_INDEX}; \
             CREATE INDEX {TRAINING_INDEX} ON avatars (updated_at) \
               WHERE {} AND fal_request_id IS NOT NULL; \
             COMMENT ON INDEX {TRAINING_INDEX} IS '{comment}'",
            sql.training
        ))
        .await?;
    tracing::info!(predicate = %sql.training, "built the partial index of trainings");
    Ok(())
}

#[cfg(test)]
mod tests;
