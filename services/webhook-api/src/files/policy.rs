//! What may be fetched and where it is stored: pure rules, no I/O.

use reqwest::Url;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::FilesConfig;
use crate::fal::{FileRef, TrainedFiles};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    Lora,
    Config,
}

impl FileKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::Lora => "lora",
            FileKind::Config => "config",
        }
    }
}

/// One file of a copy job, as stored in `file_jobs.files`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobFile {
    pub kind: FileKind,
    #[serde(flatten)]
    pub source: FileRef,
}

/// The files a completion asks us to copy, in a stable order.
pub fn job_files(files: &TrainedFiles) -> Vec<JobFile> {
    [
        (FileKind::Lora, &files.lora),
        (FileKind::Config, &files.config),
    ]
    .into_iter()
    .filter_map(|(kind, file)| file.clone().map(|source| JobFile { kind, source }))
    .collect()
}

#[derive(Debug, Clone)]
pub struct FetchPolicy {
    allowlist: Vec<String>,
    allow_http: bool,
    allow_private_addresses: bool,
    allowed_ports: Option<Vec<u16>>,
    pub max_bytes: u64,
}

impl FetchPolicy {
    pub fn new(config: &FilesConfig) -> Self {
        Self {
            allowlist: config.host_allowlist.clone(),
            allow_http: config.allow_http,
            allow_private_addresses: config.allow_private_addresses,
            allowed_ports: config.allowed_ports.clone(),
            max_bytes: config.max_bytes,
        }
    }

    /// `https://` (or `http://` where tests allow it) on an allowed host and port, else why
    /// not. The addresses a name resolves to are checked when connecting (`address`).
    pub fn check(&self, url: &Url) -> Result<(), String> {
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            scheme => return Err(format!("{scheme}:// URLs are not fetched; only https://")),
        }
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        if !self.host_allowed(&host) {
            return Err(format!("host {host:?} is not in FILE_HOST_ALLOWLIST"));
        }
        let port = url.port_or_known_default().unwrap_or_default();
        if let Some(allowed) = self.allowed_ports.as_ref().filter(|p| !p.contains(&port)) {
            return Err(format!(
                "port {port} is not in FILE_ALLOWED_PORTS ({allowed:?})"
            ));
        }
        // An address written in the URL is never resolved, so it is checked here.
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
            _ => None,
        };
        match literal {
            Some(ip) if !self.allow_private_addresses && !super::address::is_public(ip) => Err(
                format!("{ip} is not a public address (FILE_ALLOW_PRIVATE_ADDRESSES)"),
            ),
            _ => Ok(()),
        }
    }

    pub fn allow_private_addresses(&self) -> bool {
        self.allow_private_addresses
    }

    fn host_allowed(&self, host: &str) -> bool {
        self.allowlist.iter().any(|allowed| {
            host == allowed
                || host
                    .strip_suffix(allowed.as_str())
                    .is_some_and(|prefix| prefix.ends_with('.'))
        })
    }
}

/// `avatars/{user_id}/{avatar_id}/{kind}/{file_name}`: the contract's `lora/` for the weights,
/// `config/` for the training config, so two files of one name never overwrite each other.
pub fn object_key(user_id: Option<&str>, avatar_id: Uuid, file: &JobFile) -> String {
    format!(
        "{}{}/{}",
        avatar_prefix(user_id, avatar_id),
        file.kind.as_str(),
        file_name(&file.source)
    )
}

/// `avatars/{user_id}/{avatar_id}/`: where every object of one avatar is.
pub fn avatar_prefix(user_id: Option<&str>, avatar_id: Uuid) -> String {
    let user = user_id
        .map(safe_segment)
        .unwrap_or_else(|| "unknown-user".into());
    format!("avatars/{user}/{avatar_id}/")
}

/// The declared name, else the URL's last path segment, reduced to safe characters.
fn file_name(file: &FileRef) -> String {
    let from_url = || {
        Url::parse(&file.url)
            .ok()
            .and_then(|u| u.path_segments()?.next_back().map(str::to_owned))
    };
    let name = file
        .file_name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .or_else(from_url)
        .unwrap_or_default();
    let name = safe_segment(&name);
    if name.is_empty() {
        "file".into()
    } else {
        name
    }
}

fn safe_segment(raw: &str) -> String {
    let cleaned: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    cleaned.trim_start_matches('.').chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow_http: bool) -> FetchPolicy {
        FetchPolicy {
            allowlist: vec![
                "fal.media".into(),
                "storage.googleapis.com".into(),
                "169.254.169.254".into(),
            ],
            allow_http,
            allow_private_addresses: false,
            allowed_ports: Some(if allow_http { vec![443, 80] } else { vec![443] }),
            max_bytes: 1 << 31,
        }
    }

    fn check(p: &FetchPolicy, url: &str) -> Result<(), String> {
        p.check(&Url::parse(url).unwrap())
    }

    #[test]
    fn fal_hosts_and_their_subdomains_are_allowed() {
        let p = policy(false);
        for url in [
            "https://fal.media/files/x",
            "https://v3.fal.media/files/koala/x.safetensors",
            "https://v3b.fal.media/files/b/panda/x",
            "https://storage.googleapis.com/fal-flux-lora/x",
        ] {
            assert_eq!(check(&p, url), Ok(()), "{url}");
        }
    }

    #[test]
    fn look_alike_hosts_and_plain_http_are_refused() {
        let p = policy(false);
        for url in [
            "https://evilfal.media/x",
            "https://fal.media.evil.com/x",
            "https://169.254.169.254/latest/meta-data",
            "http://v3.fal.media/x",
            "file:///etc/passwd",
            "https://v3.fal.media:8443/x",
            "https://v3.fal.media:22/x",
        ] {
            assert!(check(&p, url).is_err(), "{url}");
        }
        let metadata = check(&p, "https://169.254.169.254/latest/meta-data").unwrap_err();
        assert!(metadata.contains("not a public address"), "{metadata}");
        assert_eq!(check(&policy(true), "http://v3.fal.media/x"), Ok(()));
    }

    #[test]
    fn object_keys_follow_the_contract_and_are_safe() {
        let avatar = Uuid::nil();
        let file = |kind: FileKind, url: &str, name: Option<&str>| JobFile {
            kind,
            source: FileRef {
                url: url.into(),
                content_type: None,
                file_name: name.map(Into::into),
                file_size: None,
            },
        };
        let weights = "pytorch_lora_weights.safetensors";
        assert_eq!(
            object_key(
                Some("u1"),
                avatar,
                &file(FileKind::Lora, "https://x/a", Some(weights))
            ),
            format!("avatars/u1/{avatar}/lora/{weights}")
        );
        assert_eq!(
            object_key(
                Some("u1"),
                avatar,
                &file(FileKind::Config, "https://x/files/Q9pe_config.json", None)
            ),
            format!("avatars/u1/{avatar}/config/Q9pe_config.json")
        );
        // One name for both kinds: two objects.
        assert_ne!(
            object_key(
                None,
                avatar,
                &file(FileKind::Lora, "https://x/a", Some("f"))
            ),
            object_key(
                None,
                avatar,
                &file(FileKind::Config, "https://x/a", Some("f"))
            )
        );
        assert_eq!(
            object_key(
                Some("../u"),
                avatar,
                &file(FileKind::Lora, "https://x/a", Some("../../etc/passwd"))
            ),
            format!("avatars/_u/{avatar}/lora/_.._etc_passwd")
        );
    }
}
