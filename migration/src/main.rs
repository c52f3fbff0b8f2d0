//! `cargo run -p migration -- up|down|status|fresh` against the database the
//! services are configured for (`gpu_usage_config`: the same layers, the
//! same `database.url`).

use gpu_usage_config::Settings;
use migration::Migrator;
use sea_orm_migration::sea_orm::{ConnectOptions, Database};
use secrecy::ExposeSecret;

#[tokio::main]
async fn main() {
    sea_orm_migration::cli::run_cli_with_custom_connection(Migrator, async || {
        let settings = Settings::load().map_err(|e| {
            sea_orm_migration::sea_orm::DbErr::Custom(format!("configuration: {e}"))
        })?;
        let mut options = ConnectOptions::new(settings.database.url.expose_secret());
        options
            .sqlx_logging(false)
            .max_connections(2)
            .map_sqlx_mysql_opts(|o| o.timezone(Some("+00:00".to_owned())))
            .map_sqlx_sqlite_opts(|o| o.create_if_missing(true));
        Database::connect(options).await
    })
    .await;
}
