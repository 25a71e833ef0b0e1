//! Signature schemes end to end: FAL's JWKS served over HTTP and rotated, HMAC rotation, and
//! the unsigned switch.

use std::sync::{Arc, Mutex};

use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::helpers::{fixture, AppOptions, FalSigner, TestApp, STATUS_UPDATE};
use webhook_api::config::Secret;
use webhook_api::verify::hmac;

/// Plays FAL's JWKS endpoint; the document can be swapped (a key rotation) and fetches counted.
struct JwksServer {
    url: String,
    document: Arc<Mutex<String>>,
    fetches: Arc<Mutex<u32>>,
}

impl JwksServer {
    async fn start(document: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        let document = Arc::new(Mutex::new(document));
        let fetches = Arc::new(Mutex::new(0));
        let (doc, count) = (document.clone(), fetches.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (doc, count) = (doc.clone(), count.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |_request| {
                        *count.lock().unwrap() += 1;
                        let body = doc.lock().unwrap().clone();
                        async move {
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                                bytes::Bytes::from(body),
                            )))
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            url,
            document,
            fetches,
        }
    }

    fn fetches(&self) -> u32 {
        *self.fetches.lock().unwrap()
    }
}

#[tokio::test]
async fn jwks_is_fetched_over_http_cached_and_refetched_once_after_fal_rotates_its_key() {
    let old_key = FalSigner::new(1);
    let new_key = FalSigner::new(2);
    let jwks = JwksServer::start(FalSigner::jwks(&[&old_key])).await;
    let app =
        TestApp::spawn_with(AppOptions::default().with("FAL_JWKS_URL", jwks.url.clone())).await;
    app.insert_training_avatar("test-123").await;
    let progress =
        |p: u32| format!(r#"{{"request_id":"test-123","status":"in_progress","progress":{p}}}"#);
    let post_signed = |signer: &FalSigner, body: String| {
        let headers = signer.headers(&body);
        let app = &app;
        async move { app.post(STATUS_UPDATE, &body, &headers).await }
    };

    assert_eq!(post_signed(&old_key, progress(20)).await.status, 200);
    assert_eq!(post_signed(&old_key, progress(30)).await.status, 200);
    assert_eq!(jwks.fetches(), 1, "keys are cached between requests");

    // FAL rotates: the new key signs before our cache knows it.
    *jwks.document.lock().unwrap() = FalSigner::jwks(&[&old_key, &new_key]);
    let rotated = post_signed(&new_key, progress(40)).await;
    assert_eq!(rotated.status, 200, "{:?}", rotated.json);
    assert_eq!(jwks.fetches(), 2, "one refetch after the mismatch");

    // A forger does not make us hammer FAL: refetches are rate-limited.
    let forger = FalSigner::new(9);
    for p in [50, 60, 70] {
        assert_eq!(post_signed(&forger, progress(p)).await.status, 401);
    }
    assert_eq!(jwks.fetches(), 2);
}

#[tokio::test]
async fn unreachable_jwks_is_503_so_fal_retries() {
    let app = TestApp::spawn_with(
        AppOptions::default().with("FAL_JWKS_URL", "http://127.0.0.1:9/.well-known/jwks.json"),
    )
    .await;
    let answer = app.post_fal(&fixture("legacy_in_progress.json")).await;
    assert_eq!(answer.status, 503);
    assert_eq!(answer.error(), "signature_keys_unavailable");
    assert!(answer.headers.contains_key("retry-after"));
    assert_eq!(app.event_count().await, 0);
}

#[tokio::test]
async fn any_secret_of_the_rotation_list_verifies_hmac() {
    let app = TestApp::spawn().await;
    app.insert_training_avatar("test-123").await;
    let body = fixture("legacy_in_progress.json");
    let signed_by = |secret: &str| {
        (
            "X-Signature",
            hmac::sign(&Secret::new(secret), body.as_bytes()),
        )
    };

    // TestApp configures FAL_WEBHOOK_SECRET="retired-secret,<current>".
    let old = app
        .post(STATUS_UPDATE, &body, &[signed_by("retired-secret")])
        .await;
    assert_eq!(old.status, 200, "{:?}", old.json);
    let unknown = app
        .post(STATUS_UPDATE, &body, &[signed_by("never-configured")])
        .await;
    assert_eq!(unknown.status, 401);
}

#[tokio::test]
async fn unsigned_callbacks_are_refused_unless_explicitly_allowed() {
    let body = fixture("legacy_in_progress.json");
    let strict = TestApp::spawn().await;
    assert_eq!(strict.post(STATUS_UPDATE, &body, &[]).await.status, 401);

    let lenient =
        TestApp::spawn_with(AppOptions::default().with("WEBHOOK_ALLOW_UNSIGNED", "true")).await;
    lenient.insert_training_avatar("test-123").await;
    let answer = lenient.post(STATUS_UPDATE, &body, &[]).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.result(), "applied");
    let scheme: String = lenient
        .db
        .query_one("SELECT signature_scheme FROM webhook_events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(scheme, "unsigned");
}
