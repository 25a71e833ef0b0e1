//! The cost of checking a callback's signature and parsing it, per request, on a real FAL
//! completion body: `cargo bench -p webhook-api --bench verify`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ed25519_dalek::{Signer, SigningKey};

use webhook_api::config::Secret;
use webhook_api::fal;
use webhook_api::verify::{fal_ed25519, hmac};

const BODY: &[u8] = include_bytes!("../tests/fixtures/fal/ok_flux_lora_fast_training.json");

fn verification(c: &mut Criterion) {
    let secret = Secret::new("bench-secret");
    let secrets = vec![secret.clone()];
    let good = hmac::sign(&secret, BODY);
    c.bench_function("hmac_sha256_verify", |b| {
        b.iter(|| hmac::verify(black_box(&secrets), black_box(BODY), black_box(&good)).unwrap())
    });
    let bad = "0".repeat(64);
    c.bench_function("hmac_sha256_reject", |b| {
        b.iter(|| hmac::verify(black_box(&secrets), black_box(BODY), black_box(&bad)).unwrap_err())
    });

    let key = SigningKey::from_bytes(&[7; 32]);
    let keys = vec![key.verifying_key()];
    let now = 1_790_000_000_i64;
    let timestamp = now.to_string();
    let message = fal_ed25519::signed_message("req-1", "user-1", &timestamp, BODY);
    let signature = hex::encode(key.sign(&message).to_bytes());
    let headers = fal_ed25519::SignatureHeaders {
        request_id: "req-1",
        user_id: "user-1",
        timestamp: &timestamp,
        signature: &signature,
    };
    c.bench_function("fal_ed25519_verify", |b| {
        b.iter(|| {
            fal_ed25519::verify(
                black_box(&keys),
                black_box(&headers),
                black_box(BODY),
                now,
                300,
            )
            .unwrap()
        })
    });

    c.bench_function("fal_parse_completion", |b| {
        b.iter(|| fal::parse(black_box(BODY)).unwrap())
    });
}

criterion_group!(benches, verification);
criterion_main!(benches);
