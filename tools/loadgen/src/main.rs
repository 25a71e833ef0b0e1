//! webhook-loadgen: signed FAL callbacks against webhook-api (one instance or the cluster
//! through nginx), at saturation or at a fixed rate; prints throughput, HDR latency
//! percentiles and answers by status, and writes them as JSON for `scripts/bench/run.sh`.

mod callbacks;
mod client;
mod deliver;
mod end_to_end;
mod run;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use callbacks::{Generator, Mix, Signer};
use client::{Protocol, Target};

#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send callbacks and report.
    Run(RunArgs),
    /// Each completion once, at a steady rate, retried on a 5xx or a broken connection as FAL
    /// retries; prints a JSON summary (sent, ok, failed, retries, 5xx answers, results).
    Deliver(DeliverArgs),
    /// Completions at a steady rate, each timed from its sending to its answer, to its
    /// avatar's row reading COMPLETED and to its entry on the bot's stream; prints JSON.
    EndToEnd(EndToEndArgs),
    /// Serve the JWKS of the ED25519 signing key (point the service's FAL_JWKS_URL here).
    Jwks {
        #[arg(long, default_value = "127.0.0.1:18490")]
        listen: SocketAddr,
        /// The key is derived from this seed, so `run --seed` signs with the same key.
        #[arg(long, default_value = "webhook-loadgen")]
        seed: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum FalScheme {
    /// `X-Signature: sha256=<hex>` with the secret in the WEBHOOK_SECRET environment variable.
    Hmac,
    /// FAL's ED25519 headers, signed with the key `jwks` publishes.
    Ed25519,
}

/// Where callbacks go and how they are signed: the same for every subcommand that sends.
#[derive(clap::Args)]
struct Destination {
    /// The callback URL, e.g. https://localhost:8443/api/v1/avatar/status_update.
    url: String,
    #[arg(long, value_enum, default_value = "hmac")]
    scheme: FalScheme,
    #[arg(long, default_value = "webhook-loadgen")]
    seed: String,
    /// Certificate (PEM) to trust for an https URL.
    #[arg(long)]
    ca_cert: Option<PathBuf>,
}

impl Destination {
    fn signer(&self) -> anyhow::Result<Signer> {
        signer(self.scheme, &self.seed)
    }

    fn target(&self, protocol: Protocol) -> anyhow::Result<Target> {
        Target::new(&self.url, protocol, self.ca_cert.as_deref())
    }
}

#[derive(Parser)]
struct RunArgs {
    #[command(flatten)]
    to: Destination,
    #[arg(long, value_enum, default_value = "http1")]
    protocol: Protocol,
    /// Concurrent requests: one kept-alive connection each over HTTP/1.1.
    #[arg(long, short = 'c', default_value_t = 32)]
    connections: usize,
    /// HTTP/2: connections shared by the concurrent requests.
    #[arg(long, default_value_t = 2)]
    h2_connections: usize,
    /// Measured time, in seconds.
    #[arg(long, short = 'd', default_value_t = 20.0)]
    duration: f64,
    /// Seconds sent before measuring starts (connections, caches, JIT of plans).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Requests per second on a fixed schedule; saturation when omitted.
    #[arg(long)]
    rate: Option<f64>,
    /// Kinds of callbacks and their weights: new, redelivery, progress, bad.
    #[arg(long, default_value = "new=100")]
    mix: Mix,
    /// Avatars `{prefix}1` ..= `{prefix}{avatars}` exist in `training` before the run.
    #[arg(long, default_value_t = 200_000)]
    avatars: u64,
    #[arg(long, default_value = "load-")]
    prefix: String,
    /// Extra bytes in each completion's payload.
    #[arg(long, default_value_t = 0)]
    padding: usize,
    /// Seconds to wait for an answer.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    #[arg(long, default_value = "load")]
    label: String,
    /// Print answers and the slowest latency of each second (to see stalls).
    #[arg(long)]
    timeline: bool,
    /// Also write the report as JSON here (appended as one line).
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Parser)]
struct DeliverArgs {
    #[command(flatten)]
    to: Destination,
    /// Request ids `{prefix}1` ..= `{prefix}{count}`.
    #[arg(long)]
    prefix: String,
    #[arg(long, default_value_t = 1)]
    count: u64,
    /// The body; `{request_id}` stands for each id. By default a completion without files.
    #[arg(
        long,
        default_value = r#"{"request_id":"{request_id}","status":"completed"}"#
    )]
    body: String,
    /// Callbacks started a second.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Tries of one callback, half a second apart, before it counts as failed.
    #[arg(long, default_value_t = 60)]
    tries: u32,
    /// Seconds to wait for one answer.
    #[arg(long, default_value_t = 15.0)]
    timeout: f64,
    /// Once this file exists no new callback starts; the summary counts the rest as unsent.
    #[arg(long)]
    stop_file: Option<PathBuf>,
}

#[derive(Parser)]
struct EndToEndArgs {
    #[command(flatten)]
    to: Destination,
    /// Avatars `{prefix}1` ..= `{prefix}{count}` exist in `training` before the run; one
    /// completion each.
    #[arg(long)]
    prefix: String,
    #[arg(long)]
    count: u64,
    /// Completions sent a second.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// The database the avatars are in (read-only here).
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    #[arg(long, env = "REDIS_URL")]
    redis_url: String,
    /// The bot's stream: the instances' REDIS_KEY_PREFIX, then `avatar:events`.
    #[arg(long, default_value = "avatar:events")]
    stream: String,
    /// Milliseconds between reads of the pending avatars' rows.
    #[arg(long, default_value_t = 1.0)]
    poll_ms: f64,
    /// Seconds to wait for the last row and entry once every completion was sent.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    #[arg(long, default_value = "end-to-end")]
    label: String,
    /// Also append the report as one JSON line here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run(args) => run_load(args).await,
        Command::Deliver(args) => deliver(args).await,
        Command::EndToEnd(args) => end_to_end(args).await,
        Command::Jwks { listen, seed } => {
            let jwks = Signer::ed25519_from_seed(&seed)
                .jwks()
                .expect("an ED25519 signer has a JWKS");
            serve_jwks(listen, jwks).await
        }
    }
}

fn signer(scheme: FalScheme, seed: &str) -> anyhow::Result<Signer> {
    Ok(match scheme {
        FalScheme::Hmac => Signer::Hmac {
            secret: std::env::var("WEBHOOK_SECRET")
                .context("--scheme hmac needs the secret in WEBHOOK_SECRET")?
                .into_bytes(),
        },
        FalScheme::Ed25519 => Signer::ed25519_from_seed(seed),
    })
}

async fn deliver(args: DeliverArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.rate > 0.0, "--rate must be above 0");
    anyhow::ensure!(args.tries > 0, "--tries must be at least 1");
    let signer = args.to.signer()?;
    let target = args.to.target(Protocol::Http1)?;
    let plan = deliver::Plan {
        prefix: args.prefix,
        count: args.count,
        body: args.body,
        rate: args.rate,
        tries: args.tries,
        retry_after: Duration::from_millis(500),
        timeout: Duration::from_secs_f64(args.timeout),
        stop_file: args.stop_file,
    };
    let summary = deliver::deliver(Arc::new(target), Arc::new(signer), plan).await;
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}

async fn end_to_end(args: EndToEndArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.rate > 0.0, "--rate must be above 0");
    anyhow::ensure!(args.count > 0, "--count must be at least 1");
    anyhow::ensure!(args.poll_ms > 0.0, "--poll-ms must be above 0");
    let signer = args.to.signer()?;
    let mix = "new=1".parse().map_err(|e: String| anyhow::anyhow!(e))?;
    let generator = Generator::new(args.prefix, args.count, mix, signer, 0);
    let target = args.to.target(Protocol::Http1)?;
    let plan = end_to_end::Plan {
        label: args.label,
        count: args.count,
        rate: args.rate,
        database_url: args.database_url,
        redis_url: args.redis_url,
        stream: args.stream,
        poll: Duration::from_secs_f64(args.poll_ms / 1000.0),
        timeout: Duration::from_secs_f64(args.timeout),
    };
    let report = end_to_end::run(Arc::new(target), Arc::new(generator), plan).await?;
    let line = serde_json::to_string(&report)?;
    println!("{line}");
    if let Some(path) = args.json {
        append_line(&path, &line)?;
    }
    Ok(())
}

fn append_line(path: &std::path::Path, line: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    writeln!(file, "{line}")?;
    Ok(())
}

async fn run_load(args: RunArgs) -> anyhow::Result<()> {
    let signer = args.to.signer()?;
    anyhow::ensure!(args.avatars > 0, "--avatars must be at least 1");
    anyhow::ensure!(args.connections > 0, "--connections must be at least 1");
    let generator = Generator::new(args.prefix, args.avatars, args.mix, signer, args.padding);
    let target = args.to.target(args.protocol)?;
    let plan = run::Plan {
        connections: args.connections,
        h2_connections: args.h2_connections,
        warmup: Duration::from_secs_f64(args.warmup),
        duration: Duration::from_secs_f64(args.duration),
        rate: args.rate,
        timeout: Duration::from_secs_f64(args.timeout),
    };
    let report = run::run(args.label, Arc::new(target), Arc::new(generator), plan).await?;
    run::print(&report, args.timeline);
    if report.completions_sent > args.avatars {
        println!(
            "  note: {} completions for {} avatars: the later ones were redeliveries",
            report.completions_sent, args.avatars
        );
    }
    if let Some(path) = args.json {
        append_line(&path, &serde_json::to_string(&report)?)?;
    }
    Ok(())
}

async fn serve_jwks(listen: SocketAddr, jwks: String) -> anyhow::Result<()> {
    use http_body_util::Full;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    eprintln!("serving the JWKS on http://{listen}/");
    let jwks = bytes::Bytes::from(jwks);
    loop {
        let (stream, _) = listener.accept().await?;
        let jwks = jwks.clone();
        tokio::spawn(async move {
            let service = service_fn(move |_request| {
                let jwks = jwks.clone();
                async move {
                    http::Response::builder()
                        .header(http::header::CONTENT_TYPE, "application/json")
                        .body(Full::new(jwks))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
