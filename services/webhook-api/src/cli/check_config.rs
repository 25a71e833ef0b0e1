//! `check-config`: the configuration as `serve` reads it, summed up without a secret.

use crate::config::Config;

/// One line an operator can check a new `prod.env` against; no secret in it.
pub fn summary(config: &Config) -> String {
    let names = |items: Vec<&str>| {
        if items.is_empty() {
            "none".to_string()
        } else {
            items.join(",")
        }
    };
    format!(
        "configuration ok: environment {:?}, database {}@{}, sources {}, operator tokens {}, deploys {}, reconciler {}, telegram notifications {}, training photos {}",
        config.environment,
        config.database.pg.get_dbname().unwrap_or("?"),
        match config.database.pg.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
            Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
            None => "?".into(),
        },
        names(config.sources.iter().map(|s| s.name.as_str()).collect()),
        names(config.operator_tokens.iter().map(|t| t.name.as_str()).collect()),
        if config.deploy.is_some() { "on" } else { "off" },
        if config.reconcile.is_some() { "on" } else { "off" },
        match &config.followups.telegram {
            None => "off (no TELEGRAM_TOKEN)",
            Some(t) if t.notify_on_failure => "on (ready and failed)",
            Some(_) => "on (ready only)",
        },
        match &config.followups.photos {
            p if !p.delete_after_training => "kept".to_string(),
            p => format!(
                "deleted after training from bucket {}{}",
                p.bucket,
                if p.keep_preview { ", preview kept" } else { "" }
            ),
        },
    )
}
