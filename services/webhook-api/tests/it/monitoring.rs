//! The Grafana dashboard and the Prometheus alert rules only name metrics that exist: the
//! service's in a running instance's /metrics, nginx's in nginx-prometheus-exporter's set.
//! (`promtool check rules` and `promtool test rules` check the rules themselves: test.sh.)

use std::collections::{BTreeSet, HashSet};

use crate::helpers::{fixture, AppOptions, TestApp};

/// What nginx-prometheus-exporter makes of nginx's stub_status page.
const NGINX_EXPORTER_METRICS: [&str; 8] = [
    "nginx_up",
    "nginx_connections_accepted",
    "nginx_connections_active",
    "nginx_connections_handled",
    "nginx_connections_reading",
    "nginx_connections_waiting",
    "nginx_connections_writing",
    "nginx_http_requests_total",
];

fn monitoring_file(path: &str) -> String {
    let full = format!("{}/../../monitoring/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

/// Every `prefix…` metric name in `text`.
fn names(text: &str, prefix: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|token| token.starts_with(prefix) && token.len() > prefix.len())
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn dashboard_and_alerts_name_only_metrics_that_exist() {
    let app = TestApp::spawn_with(
        AppOptions::default()
            .with("WEBHOOK_SOURCES", "jobs:hmac")
            .with("WEBHOOK_SOURCE_JOBS_SECRETS", "monitoring-secret"),
    )
    .await;
    // A running instance has answered webhooks: the per-request series exist.
    let answer = app.post_fal(&fixture("legacy_in_progress.json")).await;
    assert_eq!(answer.status, 200);
    let scrape = app.get("/metrics").await;
    let text = scrape.json.as_str().expect("the text format");
    let mut exported: HashSet<String> = HashSet::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        {
            exported.insert(name.to_string());
            if kind == "histogram" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    exported.insert(format!("{name}{suffix}"));
                }
            }
        }
    }
    // Labelled series an alert depends on are there from the first scrape.
    for series in [
        r#"webhook_signature_failures_total{reason="mismatch"} 0"#,
        r#"webhook_reconciler_actions_total{action="fal_error"} 0"#,
        r#"webhook_file_jobs{state="dead"} 0"#,
        r#"webhook_avatars_training{state="stale"} 0"#,
        r#"webhook_followups{state="dead"} 0"#,
    ] {
        assert!(text.contains(series), "{series} not in /metrics");
    }

    let dashboard: serde_json::Value =
        serde_json::from_str(&monitoring_file("grafana/dashboards/webhook-cluster.json"))
            .expect("the dashboard is JSON");
    assert_eq!(dashboard["uid"], "webhook-cluster");
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut ids = HashSet::new();
    let mut exprs = String::new();
    let mut rows = 0;
    for panel in panels {
        assert!(
            ids.insert(panel["id"].as_i64().unwrap()),
            "duplicate panel id"
        );
        if panel["type"] == "row" {
            rows += 1;
            continue;
        }
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{} has no query", panel["title"]);
        for target in targets {
            let expr = target["expr"].as_str().expect("a PromQL expression");
            assert!(!expr.trim().is_empty());
            exprs.push_str(expr);
            exprs.push('\n');
        }
    }
    assert_eq!(
        rows, 7,
        "traffic, latency, failures, files, reconciler, owners, instances"
    );

    let alerts = monitoring_file("prometheus/alerts.yml");
    for (what, text) in [("dashboard", &exprs), ("alert rules", &alerts)] {
        let missing: Vec<_> = names(text, "webhook_")
            .into_iter()
            .filter(|name| !exported.contains(name))
            .collect();
        assert!(
            missing.is_empty(),
            "{what} name metrics /metrics lacks: {missing:?}"
        );
        let unknown: Vec<_> = names(text, "nginx_")
            .into_iter()
            .filter(|name| !NGINX_EXPORTER_METRICS.contains(&name.as_str()))
            .collect();
        assert!(
            unknown.is_empty(),
            "{what} name nginx metrics the exporter lacks: {unknown:?}"
        );
    }
    for alert in [
        "WebhookInstanceDown",
        "WebhookServerErrors",
        "WebhookDeadFileJobs",
        "AvatarsStuckInTraining",
        "WebhookSignatureFailuresSpike",
    ] {
        assert!(
            alerts.contains(&format!("alert: {alert}")),
            "{alert} missing"
        );
    }
}
