//! Shared by the test binaries (`it`, `cluster`): where the test services are, and ports.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::OnceLock;

/// The shared test PostgreSQL (started by scripts/dev/deps.sh).
pub fn admin_database_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgresql://webhook:webhook@127.0.0.1:5432/webhook".into())
}

/// A free port for a server a test starts as a process, never the same twice in this
/// process: asking the kernel for port 0 can hand one port to two tests running side by side
/// before either binds it. Taken below the ephemeral range (32768 and up) so that no outgoing
/// connection holds it meanwhile.
pub fn free_port() -> u16 {
    static NEXT: OnceLock<AtomicU16> = OnceLock::new();
    let next = NEXT.get_or_init(|| AtomicU16::new(rand::random_range(20_000..30_000)));
    loop {
        let port = next.fetch_add(1, Ordering::Relaxed);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Drops a test database and its connections. Callable from `Drop` inside a test's runtime:
/// the async work runs on a thread of its own.
pub fn drop_database(name: &str) {
    let name = name.to_string();
    let _ = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            if let Ok((admin, connection)) =
                tokio_postgres::connect(&admin_database_url(), tokio_postgres::NoTls).await
            {
                tokio::spawn(connection);
                let _ = admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await;
            }
        });
    })
    .join();
}
