//! Kept-alive connections to the target: plain or TLS (trusting a given CA, as FAL trusts our
//! certificate), HTTP/1.1 or HTTP/2.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    Http1,
    Http2,
}

pub struct Target {
    pub uri: Uri,
    /// What requests carry: origin-form and a Host header over HTTP/1.1 (as browsers and FAL
    /// send it; nginx refuses a request without Host), the full URI over HTTP/2.
    pub request_uri: Uri,
    pub host_header: http::HeaderValue,
    address: String,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    pub protocol: Protocol,
}

impl Target {
    pub fn new(url: &str, protocol: Protocol, ca_cert: Option<&Path>) -> anyhow::Result<Self> {
        let uri: Uri = url
            .parse()
            .with_context(|| format!("{url:?} is not a URL"))?;
        let host = uri.host().context("the URL has no host")?.to_string();
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => bail!("the URL must start with http:// or https://"),
        };
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = if https {
            let mut roots = rustls::RootCertStore::empty();
            let ca_cert = ca_cert
                .context("an https URL needs --ca-cert (the server's certificate or its CA)")?;
            for cert in CertificateDer::pem_file_iter(ca_cert)
                .with_context(|| format!("reading {}", ca_cert.display()))?
            {
                roots.add(cert.context("a certificate in the CA file")?)?;
            }
            let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
            config.alpn_protocols = vec![match protocol {
                Protocol::Http1 => b"http/1.1".to_vec(),
                Protocol::Http2 => b"h2".to_vec(),
            }];
            let name = ServerName::try_from(host.clone())?;
            Some((TlsConnector::from(Arc::new(config)), name))
        } else {
            None
        };
        let request_uri = match protocol {
            Protocol::Http1 => uri.path_and_query().map_or("/", |p| p.as_str()).parse()?,
            Protocol::Http2 => uri.clone(),
        };
        let host_header = uri
            .authority()
            .context("the URL has no host")?
            .as_str()
            .parse()?;
        Ok(Self {
            address: format!("{host}:{port}"),
            request_uri,
            host_header,
            uri,
            tls,
            protocol,
        })
    }

    pub async fn connect(&self) -> anyhow::Result<Sender> {
        let tcp = TcpStream::connect(&self.address)
            .await
            .with_context(|| format!("connecting to {}", self.address))?;
        tcp.set_nodelay(true)?;
        match &self.tls {
            None => self.handshake(TokioIo::new(tcp)).await,
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .context("TLS handshake")?;
                self.handshake(TokioIo::new(tls)).await
            }
        }
    }

    async fn handshake<T>(&self, io: TokioIo<T>) -> anyhow::Result<Sender>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        Ok(match self.protocol {
            Protocol::Http1 => {
                let (sender, connection) = http1::handshake(io).await?;
                tokio::spawn(connection);
                Sender::Http1(sender)
            }
            Protocol::Http2 => {
                let (sender, connection) = http2::handshake(TokioExecutor::new(), io).await?;
                tokio::spawn(connection);
                Sender::Http2(sender)
            }
        })
    }
}

/// One HTTP/1.1 connection, or a handle on an HTTP/2 connection (shared by cloning it).
pub enum Sender {
    Http1(http1::SendRequest<Full<Bytes>>),
    Http2(http2::SendRequest<Full<Bytes>>),
}

impl Sender {
    /// Sends the request and reads the whole answer, so the connection can be used again.
    pub async fn send(&mut self, request: Request<Full<Bytes>>) -> anyhow::Result<Response<Bytes>> {
        let response = match self {
            Sender::Http1(sender) => {
                sender.ready().await?;
                sender.send_request(request).await?
            }
            Sender::Http2(sender) => {
                sender.ready().await?;
                sender.send_request(request).await?
            }
        };
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Response::from_parts(parts, body))
    }

    /// Another handle on the same connection: HTTP/2 multiplexes, HTTP/1.1 cannot.
    pub fn share(&self) -> Option<Sender> {
        match self {
            Sender::Http1(_) => None,
            Sender::Http2(sender) => Some(Sender::Http2(sender.clone())),
        }
    }

    pub fn is_closed(&self) -> bool {
        match self {
            Sender::Http1(sender) => sender.is_closed(),
            Sender::Http2(sender) => sender.is_closed(),
        }
    }
}
