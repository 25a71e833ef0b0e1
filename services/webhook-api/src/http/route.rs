//! The routes: which path is which, what method and token each takes. `openapi.json`
//! describes the same routes; the tests below keep the two in step.

use http::Method;

use super::avatar_status;
use crate::config::{Config, Scope};

/// This API's description, served as it is in the repository.
pub(super) const OPENAPI: &str = include_str!("../../openapi.json");
const OPENAPI_PATH: &str = "/openapi.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    StatusUpdate,
    /// A configured source, by its index in `Config::sources`.
    Source(usize),
    AvatarStatus,
    Health,
    HealthLive,
    HealthReady,
    Metrics,
    DeliveryMetrics,
    DeliveryHealth,
    DeliveryFailures,
    DeliveryEvent(i64),
    DeliveryReplay(i64),
    Deploys,
    Deploy(i64),
    /// `openapi.json`: this API, described.
    OpenApi,
}

const WEBHOOKS: &str = "/api/v1/webhooks/";
const DEPLOYS: &str = "/api/v1/deploys";

impl Route {
    pub(super) fn label(self) -> &'static str {
        match self {
            Route::StatusUpdate => "status_update",
            Route::Source(_) => "source_webhook",
            Route::AvatarStatus => "avatar_status",
            Route::Health => "health",
            Route::HealthLive => "health_live",
            Route::HealthReady => "health_ready",
            Route::Metrics => "metrics",
            Route::DeliveryMetrics => "deliveries_metrics",
            Route::DeliveryHealth => "deliveries_health",
            Route::DeliveryFailures => "deliveries_failures",
            Route::DeliveryEvent(_) => "deliveries_event",
            Route::DeliveryReplay(_) => "deliveries_replay",
            Route::Deploys | Route::Deploy(_) => "deploys",
            Route::OpenApi => "openapi",
        }
    }

    /// What a token must allow here; `None` for the public routes (`/health` shows its
    /// details only to a `read` token).
    pub(super) fn scope(self) -> Option<Scope> {
        match self {
            Route::Metrics
            | Route::DeliveryMetrics
            | Route::DeliveryHealth
            | Route::DeliveryFailures
            | Route::DeliveryEvent(_) => Some(Scope::Read),
            Route::DeliveryReplay(_) => Some(Scope::Replay),
            Route::Deploys | Route::Deploy(_) => Some(Scope::Deploy),
            Route::StatusUpdate
            | Route::Source(_)
            | Route::AvatarStatus
            | Route::Health
            | Route::HealthLive
            | Route::HealthReady
            | Route::OpenApi => None,
        }
    }

    /// Calls that change something or read deploy output leave an audit row.
    pub(super) fn audited(self) -> bool {
        matches!(
            self,
            Route::DeliveryReplay(_) | Route::Deploys | Route::Deploy(_)
        )
    }

    pub(super) fn allowed(self) -> (&'static str, &'static [Method]) {
        match self {
            Route::StatusUpdate | Route::Source(_) | Route::DeliveryReplay(_) => {
                ("POST", &[Method::POST])
            }
            _ => ("GET, HEAD", &[Method::GET, Method::HEAD]),
        }
    }

    pub(super) fn resolve(path: &str, config: &Config) -> Option<Route> {
        Some(match path {
            "/api/v1/avatar/status_update" => Route::StatusUpdate,
            "/health" => Route::Health,
            "/health/live" => Route::HealthLive,
            "/health/ready" => Route::HealthReady,
            "/metrics" => Route::Metrics,
            OPENAPI_PATH => Route::OpenApi,
            DEPLOYS => Route::Deploys,
            p if avatar_status::avatar_id_segment(p).is_some() => Route::AvatarStatus,
            p if p.starts_with(WEBHOOKS) => {
                return Self::resolve_webhooks(&p[WEBHOOKS.len()..], config)
            }
            p => {
                let id = p.strip_prefix(DEPLOYS)?.strip_prefix('/')?;
                Route::Deploy(id.parse().ok()?)
            }
        })
    }

    /// Below `/api/v1/webhooks/`: the operator API's fixed names, else a configured source.
    fn resolve_webhooks(rest: &str, config: &Config) -> Option<Route> {
        Some(match rest {
            "metrics" => Route::DeliveryMetrics,
            "health" => Route::DeliveryHealth,
            "failures" => Route::DeliveryFailures,
            _ => match rest.strip_prefix("events/") {
                Some(event) => match event.strip_suffix("/replay") {
                    Some(id) => Route::DeliveryReplay(id.parse().ok()?),
                    None => Route::DeliveryEvent(event.parse().ok()?),
                },
                None => Route::Source(config.sources.iter().position(|s| s.name == rest)?),
            },
        })
    }

    /// The source whose refused requests are kept as `rejected` events.
    pub(super) fn webhook_source(self, config: &Config) -> Option<(&str, &str)> {
        match self {
            Route::StatusUpdate => Some(("fal", "fal")),
            Route::Source(index) => config
                .sources
                .get(index)
                .map(|s| (s.name.as_str(), s.scheme.name())),
            _ => None,
        }
    }
}

/// `openapi.json` against the router: the same paths, methods and tokens.
#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;

    /// Every route once; a route added to `Route` must be listed here, and
    /// `documented_path` does not compile until it has a path.
    const EVERY_ROUTE: [Route; 15] = [
        Route::StatusUpdate,
        Route::Source(0),
        Route::AvatarStatus,
        Route::Health,
        Route::HealthLive,
        Route::HealthReady,
        Route::Metrics,
        Route::DeliveryMetrics,
        Route::DeliveryHealth,
        Route::DeliveryFailures,
        Route::DeliveryEvent(7),
        Route::DeliveryReplay(7),
        Route::Deploys,
        Route::Deploy(7),
        Route::OpenApi,
    ];

    fn documented_path(route: Route) -> &'static str {
        match route {
            Route::StatusUpdate => "/api/v1/avatar/status_update",
            Route::Source(_) => "/api/v1/webhooks/{source}",
            Route::AvatarStatus => "/api/v1/avatar/{avatar_id}/status",
            Route::Health => "/health",
            Route::HealthLive => "/health/live",
            Route::HealthReady => "/health/ready",
            Route::Metrics => "/metrics",
            Route::DeliveryMetrics => "/api/v1/webhooks/metrics",
            Route::DeliveryHealth => "/api/v1/webhooks/health",
            Route::DeliveryFailures => "/api/v1/webhooks/failures",
            Route::DeliveryEvent(_) => "/api/v1/webhooks/events/{id}",
            Route::DeliveryReplay(_) => "/api/v1/webhooks/events/{id}/replay",
            Route::Deploys => "/api/v1/deploys",
            Route::Deploy(_) => "/api/v1/deploys/{id}",
            Route::OpenApi => OPENAPI_PATH,
        }
    }

    fn document() -> Value {
        serde_json::from_str(OPENAPI).expect("openapi.json is JSON")
    }

    fn config_with_source(name: &str) -> Config {
        Config::from_lookup(|var| {
            Some(match var {
                "DATABASE_URL" => "postgresql://bot:pw@db:5432/aisha".into(),
                "REDIS_URL" => "redis://redis:6379/0".into(),
                "MINIO_ENDPOINT" => "minio:9000".into(),
                "MINIO_ACCESS_KEY" => "access".into(),
                "MINIO_SECRET_KEY" => "secret-key".into(),
                "MINIO_BUCKET_NAME" => "avatars".into(),
                "WEBHOOK_SOURCES" => format!("{name}:hmac"),
                "WEBHOOK_SOURCE_JOBS_SECRETS" => "a-test-secret-of-some-length".into(),
                _ => return None,
            })
        })
        .expect("a valid configuration")
    }

    /// The methods a path takes, as the document lists them (upper case). `HEAD` goes
    /// with `GET`, as the document's description says.
    fn documented_methods(document: &Value, path: &str) -> BTreeSet<String> {
        document["paths"][path]
            .as_object()
            .unwrap_or_else(|| panic!("openapi.json has no path {path}"))
            .keys()
            .filter(|key| !matches!(key.as_str(), "parameters" | "summary" | "description"))
            .map(|method| method.to_ascii_uppercase())
            .collect()
    }

    #[test]
    fn every_route_is_documented_with_its_methods_and_token() {
        let document = document();
        for route in EVERY_ROUTE {
            let path = documented_path(route);
            let served: BTreeSet<String> = route
                .allowed()
                .1
                .iter()
                .filter(|method| **method != Method::HEAD)
                .map(|method| method.to_string())
                .collect();
            assert_eq!(documented_methods(&document, path), served, "{path}");
            for method in &served {
                let operation = &document["paths"][path][method.to_ascii_lowercase()];
                let schemes: Vec<&Value> = operation["security"]
                    .as_array()
                    .map(|list| list.iter().collect())
                    .unwrap_or_default();
                let token_needed =
                    !schemes.is_empty() && schemes.iter().all(|s| s.get("operatorToken").is_some());
                assert_eq!(
                    token_needed,
                    route.scope().is_some(),
                    "{method} {path}: the document and the router disagree on its token"
                );
            }
        }
    }

    #[test]
    fn every_documented_path_is_a_route() {
        let config = config_with_source("jobs");
        let document = document();
        let paths = document["paths"].as_object().expect("paths");
        for path in paths.keys() {
            let concrete = path
                .replace("{source}", "jobs")
                .replace("{avatar_id}", "0b8e5a4e-7c1f-4a8e-9a36-3f1d2b6c9e01")
                .replace("{id}", "7");
            let route = Route::resolve(&concrete, &config)
                .unwrap_or_else(|| panic!("openapi.json lists {path}; the router has no route"));
            assert_eq!(documented_path(route), path, "{concrete}");
        }
        assert_eq!(paths.len(), EVERY_ROUTE.len(), "one path per route");
    }
}
