//! A PostgreSQL schema of its own for each test, on the local server (default
//! `postgres://postgres@127.0.0.1:5432/test`, or `HOOKFLOW_PG_URL`), dropped when the test ends.
//! Without a reachable server the PostgreSQL tests say so and pass — unless
//! `HOOKFLOW_PG_TESTS=required` (set by `scripts/test.sh`, so CI never skips them).

use std::str::FromStr;

use sqlx::ConnectOptions;
use sqlx::postgres::PgConnectOptions;

/// The server's URL.
pub fn server_url() -> String {
    std::env::var("HOOKFLOW_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A fresh, empty schema; `url` points hookflow at it (through the connection's search path).
pub struct Schema {
    pub name: String,
    pub url: String,
}

impl Schema {
    /// A new schema, or `None` (after saying why) when no PostgreSQL answers and it is not
    /// required.
    pub async fn create() -> Option<Schema> {
        let server = server_url();
        let required = std::env::var("HOOKFLOW_PG_TESTS").is_ok_and(|v| v == "required");
        let mut conn = match PgConnectOptions::from_str(&server).unwrap().connect().await {
            Ok(c) => c,
            Err(e) => {
                assert!(
                    !required,
                    "PostgreSQL at {server} is required (HOOKFLOW_PG_TESTS=required): {e}"
                );
                eprintln!("SKIPPED: no PostgreSQL at {server} ({e}); set HOOKFLOW_PG_URL");
                return None;
            }
        };
        let name = format!("hft_{}", ulid::Ulid::new().to_string().to_lowercase());
        sqlx::query(&format!("CREATE SCHEMA {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        let sep = if server.contains('?') { '&' } else { '?' };
        let url = format!("{server}{sep}options=-c%20search_path%3D{name}");
        Some(Schema { name, url })
    }

    /// A hookflow store on the schema.
    pub async fn store(&self) -> std::sync::Arc<dyn hookflow::store::Store> {
        std::sync::Arc::new(
            hookflow::store::PgStore::connect(&self.url, &Default::default())
                .await
                .unwrap(),
        )
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let server = server_url();
        let name = self.name.clone();
        // Drop runs outside any runtime's async context: a thread with its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut conn) = PgConnectOptions::from_str(&server).unwrap().connect().await {
                    let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}
