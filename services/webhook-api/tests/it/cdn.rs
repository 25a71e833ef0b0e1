//! Plays FAL's CDN on loopback: files of any size, slow or truncated bodies, 500s, redirects.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

#[derive(Clone)]
pub enum Behavior {
    Serve,
    /// Promises the whole length, sends half, then drops the connection.
    Truncate,
    /// Sends `chunk` bytes at a time with `pause` between them.
    Slow {
        chunk: usize,
        pause: Duration,
    },
    /// Answers 500 to the first `n` requests.
    FailFirst(u32),
    /// 302 to another URL.
    RedirectTo(String),
}

type Files = Arc<Mutex<HashMap<String, (Bytes, Behavior)>>>;
type Hits = Arc<Mutex<HashMap<String, u32>>>;

pub struct FakeCdn {
    pub base: String,
    files: Files,
    hits: Hits,
}

impl FakeCdn {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let files: Files = Arc::default();
        let hits: Hits = Arc::default();
        let (served, counted) = (files.clone(), hits.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (files, hits) = (served.clone(), counted.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request: hyper::Request<_>| {
                        let path = request.uri().path().to_string();
                        let hit = {
                            let mut hits = hits.lock().unwrap();
                            let count = hits.entry(path.clone()).or_insert(0);
                            *count += 1;
                            *count
                        };
                        let file = files.lock().unwrap().get(&path).cloned();
                        async move { Ok::<_, Infallible>(respond(file, hit)) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { base, files, hits }
    }

    /// Serves `body` at `/files/{name}`; returns its URL.
    pub fn add(&self, name: &str, body: Bytes, behavior: Behavior) -> String {
        let path = format!("/files/{name}");
        self.files
            .lock()
            .unwrap()
            .insert(path.clone(), (body, behavior));
        format!("{}{path}", self.base)
    }

    pub fn hits(&self, name: &str) -> u32 {
        let hits = self.hits.lock().unwrap();
        hits.get(&format!("/files/{name}")).copied().unwrap_or(0)
    }
}

fn respond(file: Option<(Bytes, Behavior)>, hit: u32) -> Response<BoxBody<Bytes, std::io::Error>> {
    let Some((body, behavior)) = file else {
        return status(StatusCode::NOT_FOUND);
    };
    let length = body.len();
    let mut response = match behavior {
        Behavior::FailFirst(n) if hit <= n => return status(StatusCode::INTERNAL_SERVER_ERROR),
        Behavior::Serve | Behavior::FailFirst(_) => Response::new(full(body)),
        Behavior::RedirectTo(location) => {
            let mut response = status(StatusCode::FOUND);
            response
                .headers_mut()
                .insert("location", location.parse().unwrap());
            return response;
        }
        Behavior::Truncate => {
            let half = body.slice(..length / 2);
            let frames = futures::stream::iter([
                Ok(Frame::data(half)),
                Err(std::io::Error::other("connection dropped mid-body")),
            ]);
            Response::new(BodyExt::boxed(StreamBody::new(frames)))
        }
        Behavior::Slow { chunk, pause } => {
            let chunks: Vec<Bytes> = (0..length)
                .step_by(chunk)
                .map(|start| body.slice(start..(start + chunk).min(length)))
                .collect();
            let frames = futures::stream::iter(chunks).then(move |c| async move {
                tokio::time::sleep(pause).await;
                Ok(Frame::data(c))
            });
            Response::new(BodyExt::boxed(StreamBody::new(frames)))
        }
    };
    response
        .headers_mut()
        .insert("content-length", length.to_string().parse().unwrap());
    response
        .headers_mut()
        .insert("content-type", "application/octet-stream".parse().unwrap());
    response
}

fn full(body: Bytes) -> BoxBody<Bytes, std::io::Error> {
    Full::new(body).map_err(|never| match never {}).boxed()
}

fn status(code: StatusCode) -> Response<BoxBody<Bytes, std::io::Error>> {
    let mut response = Response::new(full(Bytes::from(code.to_string())));
    *response.status_mut() = code;
    response
}
