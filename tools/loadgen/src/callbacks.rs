//! The callbacks the load generator sends, in FAL's exact format and signed as FAL (ED25519,
//! checked against our own JWKS) or a shared-secret sender (HMAC-SHA256 `X-Signature`) signs.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use ed25519_dalek::{Signer as _, SigningKey};
use hmac::{Hmac, Mac};
use http::{HeaderName, HeaderValue};
use rand::Rng;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// The first completion of an avatar in `training`: a commit that changes the avatar.
    New,
    /// A completion sent again (FAL retries): answered `duplicate`.
    Redelivery,
    /// An `in_progress` update for some avatar.
    Progress,
    /// A completion whose signature does not match: answered 401.
    BadSignature,
}

impl Kind {
    pub const ALL: [Kind; 4] = [
        Kind::New,
        Kind::Redelivery,
        Kind::Progress,
        Kind::BadSignature,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::New => "new",
            Kind::Redelivery => "redelivery",
            Kind::Progress => "progress",
            Kind::BadSignature => "bad",
        }
    }

    pub fn expected_status(self) -> u16 {
        match self {
            Kind::BadSignature => 401,
            _ => 200,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Relative weights of the kinds, e.g. `new=90,redelivery=5,progress=5,bad=0`.
#[derive(Debug, Clone)]
pub struct Mix {
    weights: Vec<(Kind, u32)>,
    total: u32,
}

impl FromStr for Mix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut weights = Vec::new();
        for part in s.split(',').filter(|p| !p.trim().is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not kind=weight"))?;
            let kind = Kind::ALL
                .into_iter()
                .find(|k| k.name() == name.trim())
                .ok_or_else(|| format!("{name:?} is not one of new, redelivery, progress, bad"))?;
            let weight: u32 = weight
                .trim()
                .parse()
                .map_err(|_| format!("weight {weight:?} of {name} is not a whole number"))?;
            weights.push((kind, weight));
        }
        let total = weights.iter().map(|(_, w)| w).sum();
        if total == 0 {
            return Err("the mix needs at least one kind with a weight above 0".into());
        }
        Ok(Mix { weights, total })
    }
}

impl Mix {
    fn pick(&self, rng: &mut impl Rng) -> Kind {
        let mut roll = rng.random_range(0..self.total);
        for (kind, weight) in &self.weights {
            if roll < *weight {
                return *kind;
            }
            roll -= weight;
        }
        unreachable!("roll is below the total of the weights")
    }
}

pub enum Signer {
    Hmac {
        secret: Vec<u8>,
    },
    Ed25519 {
        key: Box<SigningKey>,
        user_id: String,
    },
}

impl Signer {
    /// A key derived from a seed, so that the JWKS it publishes is the same on every run.
    pub fn ed25519_from_seed(seed: &str) -> Self {
        let key = Box::new(SigningKey::from_bytes(
            &Sha256::digest(seed.as_bytes()).into(),
        ));
        Signer::Ed25519 {
            key,
            user_id: "loadgen-user".into(),
        }
    }

    /// The JWKS a FAL-style verifier fetches to check this signer's signatures.
    pub fn jwks(&self) -> Option<String> {
        match self {
            Signer::Hmac { .. } => None,
            Signer::Ed25519 { key, .. } => {
                let x = URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes());
                Some(format!(
                    r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","x":"{x}"}}]}}"#
                ))
            }
        }
    }

    /// The headers that sign `body` as FAL does (`corrupt`: a signature that does not match).
    pub fn headers(
        &self,
        request_id: &str,
        body: &[u8],
        corrupt: bool,
    ) -> Vec<(HeaderName, HeaderValue)> {
        let mut headers = vec![(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )];
        match self {
            Signer::Hmac { secret } => {
                let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
                mac.update(body);
                let mut digest = mac.finalize().into_bytes();
                if corrupt {
                    digest[0] ^= 0xff;
                }
                headers.push((
                    HeaderName::from_static("x-signature"),
                    value(format!("sha256={}", hex::encode(digest))),
                ));
            }
            Signer::Ed25519 { key, user_id } => {
                let timestamp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .expect("clock after 1970")
                    .as_secs()
                    .to_string();
                // FAL signs request id, user id, timestamp and the body's SHA-256, one per line.
                let message = format!(
                    "{request_id}\n{user_id}\n{timestamp}\n{}",
                    hex::encode(Sha256::digest(body))
                );
                let mut signature = key.sign(message.as_bytes()).to_bytes();
                if corrupt {
                    signature[0] ^= 0xff;
                }
                for (name, v) in [
                    ("x-fal-webhook-request-id", request_id.to_string()),
                    ("x-fal-webhook-user-id", user_id.clone()),
                    ("x-fal-webhook-timestamp", timestamp),
                    ("x-fal-webhook-signature", hex::encode(signature)),
                ] {
                    headers.push((HeaderName::from_static(name), value(v)));
                }
            }
        }
        headers
    }
}

fn value(s: String) -> HeaderValue {
    HeaderValue::try_from(s).expect("hex, digits and ids are valid header values")
}

pub struct Prepared {
    pub kind: Kind,
    /// FAL's request id in the body.
    pub request_id: String,
    pub body: Bytes,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// Makes the requests. Avatars are `{prefix}{n}` for n in 1..=avatars, all in `training`
/// before the run; each `new` completion takes the next one.
pub struct Generator {
    pub prefix: String,
    pub avatars: u64,
    pub mix: Mix,
    pub signer: Signer,
    /// Extra bytes inside FAL's `payload`, to study the cost of larger callbacks.
    padding: String,
    completions_sent: AtomicU64,
}

impl Generator {
    pub fn new(prefix: String, avatars: u64, mix: Mix, signer: Signer, padding: usize) -> Self {
        Self {
            prefix,
            avatars,
            mix,
            signer,
            padding: "x".repeat(padding),
            completions_sent: AtomicU64::new(0),
        }
    }

    /// How many `new` completions were handed out (more than `avatars` means some repeated).
    pub fn completions_sent(&self) -> u64 {
        self.completions_sent.load(Ordering::Relaxed)
    }

    pub fn next(&self, rng: &mut impl Rng) -> Prepared {
        let mut kind = self.mix.pick(rng);
        let sent = self.completions_sent();
        if kind == Kind::Redelivery && sent == 0 {
            // Nothing to redeliver yet.
            kind = Kind::New;
        }
        let (request_id, body) = match kind {
            Kind::New => {
                let n = self.completions_sent.fetch_add(1, Ordering::Relaxed);
                self.completion(n % self.avatars + 1)
            }
            Kind::Redelivery => self.completion(rng.random_range(0..sent) % self.avatars + 1),
            Kind::BadSignature => self.completion(rng.random_range(1..=self.avatars)),
            Kind::Progress => {
                let request_id = format!("{}{}", self.prefix, rng.random_range(1..=self.avatars));
                let progress: u8 = rng.random_range(1..100);
                let body = format!(
                    r#"{{"request_id":"{request_id}","status":"in_progress","progress":{progress}}}"#
                );
                (request_id, body)
            }
        };
        let headers = self
            .signer
            .headers(&request_id, body.as_bytes(), kind == Kind::BadSignature);
        Prepared {
            kind,
            request_id,
            body: Bytes::from(body),
            headers,
        }
    }

    /// A completion as FAL's queue sends it for flux-lora-fast-training.
    fn completion(&self, n: u64) -> (String, String) {
        let request_id = format!("{}{n}", self.prefix);
        let padding = if self.padding.is_empty() {
            String::new()
        } else {
            format!(r#","loadgen_padding":"{}""#, self.padding)
        };
        let body = format!(
            r#"{{"request_id":"{request_id}","gateway_request_id":"{request_id}","status":"OK","error":null,"payload":{{"diffusers_lora_file":{{"url":"https://v3.fal.media/files/load/{n}_pytorch_lora_weights.safetensors","content_type":"application/octet-stream","file_name":"pytorch_lora_weights.safetensors","file_size":89745224}},"config_file":{{"url":"https://v3.fal.media/files/load/{n}_config.json","content_type":"application/octet-stream","file_name":"config.json","file_size":942}},"debug_preprocessed_output":null{padding}}}}}"#
        );
        (request_id, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_parses_and_refuses_nonsense() {
        let mix: Mix = "new=90, redelivery=10".parse().unwrap();
        assert_eq!(mix.total, 100);
        assert!("new=0".parse::<Mix>().is_err());
        assert!("fresh=1".parse::<Mix>().unwrap_err().contains("fresh"));
        assert!("new".parse::<Mix>().is_err());
    }

    #[test]
    fn completions_are_valid_json_of_distinct_avatars() {
        let generator = Generator::new(
            "load-".into(),
            10,
            "new=1".parse().unwrap(),
            Signer::Hmac {
                secret: b"s".to_vec(),
            },
            100,
        );
        let mut rng = rand::rng();
        let first = generator.next(&mut rng);
        let second = generator.next(&mut rng);
        let a: serde_json::Value = serde_json::from_slice(&first.body).unwrap();
        let b: serde_json::Value = serde_json::from_slice(&second.body).unwrap();
        assert_eq!(a["request_id"], "load-1");
        assert_eq!(b["request_id"], "load-2");
        assert_eq!(a["payload"]["loadgen_padding"].as_str().unwrap().len(), 100);
    }

    #[test]
    fn ed25519_signature_verifies_against_the_published_jwks() {
        use ed25519_dalek::{Signature, Verifier, VerifyingKey};
        let signer = Signer::ed25519_from_seed("seed");
        let jwks: serde_json::Value = serde_json::from_str(&signer.jwks().unwrap()).unwrap();
        let x = URL_SAFE_NO_PAD
            .decode(jwks["keys"][0]["x"].as_str().unwrap())
            .unwrap();
        let key = VerifyingKey::from_bytes(&x.try_into().unwrap()).unwrap();
        let body = br#"{"request_id":"r"}"#;
        let headers = signer.headers("r", body, false);
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.to_str().unwrap().to_string())
                .unwrap()
        };
        let message = format!(
            "r\nloadgen-user\n{}\n{}",
            get("x-fal-webhook-timestamp"),
            hex::encode(Sha256::digest(body))
        );
        let signature: [u8; 64] = hex::decode(get("x-fal-webhook-signature"))
            .unwrap()
            .try_into()
            .unwrap();
        assert!(key
            .verify(message.as_bytes(), &Signature::from_bytes(&signature))
            .is_ok());
        let corrupted = signer.headers("r", body, true);
        assert_ne!(corrupted[4].1, headers[4].1);
    }
}
