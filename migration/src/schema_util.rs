//! Column and table builders shared by the migrations, so the three statistics
//! tables cannot drift apart and both backends get the types they need.

use sea_orm_migration::prelude::*;
pub use sea_orm_migration::sea_orm::DbBackend;

/// A table and its secondary indexes, as one migration creates them.
pub type TableDef = (TableCreateStatement, Vec<IndexCreateStatement>);

pub fn id(name: &str) -> ColumnDef {
    ColumnDef::new(Alias::new(name))
        .big_integer()
        .not_null()
        .auto_increment()
        .primary_key()
        .to_owned()
}

pub fn string(name: &str, len: u32) -> ColumnDef {
    ColumnDef::new(Alias::new(name)).string_len(len).to_owned()
}

pub fn int(name: &str) -> ColumnDef {
    ColumnDef::new(Alias::new(name)).integer().to_owned()
}

pub fn bigint(name: &str) -> ColumnDef {
    ColumnDef::new(Alias::new(name)).big_integer().to_owned()
}

pub fn decimal(name: &str, precision: u32, scale: u32) -> ColumnDef {
    ColumnDef::new(Alias::new(name))
        .decimal_len(precision, scale)
        .to_owned()
}

pub fn text(name: &str) -> ColumnDef {
    ColumnDef::new(Alias::new(name)).text().to_owned()
}

/// DATETIME with millisecond precision on MySQL (sea-query's `date_time()`
/// has no fractional seconds there); SQLite stores text either way.
pub fn datetime_ms(backend: DbBackend, name: &str) -> ColumnDef {
    match backend {
        DbBackend::Sqlite => ColumnDef::new(Alias::new(name)).date_time().to_owned(),
        _ => ColumnDef::new(Alias::new(name))
            .custom(Alias::new("DATETIME(3)"))
            .to_owned(),
    }
}

/// Whole-second DATETIME, as the spec asks for minute and hourly buckets.
pub fn datetime(name: &str) -> ColumnDef {
    ColumnDef::new(Alias::new(name)).date_time().to_owned()
}

pub fn date(name: &str) -> ColumnDef {
    ColumnDef::new(Alias::new(name)).date().to_owned()
}

/// `DEFAULT CURRENT_TIMESTAMP(3)`: MySQL rejects a default whose precision
/// differs from the column's. The application always writes these columns
/// itself (with its own clock, in UTC); the default serves hand-written SQL.
pub fn now_default(backend: DbBackend) -> SimpleExpr {
    match backend {
        DbBackend::Sqlite => Expr::cust("CURRENT_TIMESTAMP"),
        _ => Expr::cust("CURRENT_TIMESTAMP(3)"),
    }
}

/// A `DATETIME(3)` stamp column that defaults to now: `created_at` and
/// `updated_at` of every table the application writes.
pub fn stamped(backend: DbBackend, name: &str) -> ColumnDef {
    datetime_ms(backend, name)
        .not_null()
        .default(now_default(backend))
        .to_owned()
}

/// `CREATE TABLE name`, to which a migration adds its columns.
pub fn create(name: &str) -> TableCreateStatement {
    Table::create().table(Alias::new(name)).to_owned()
}

pub fn index(table: &str, name: &str, columns: &[&str]) -> IndexCreateStatement {
    let mut index = Index::create();
    index.name(name).table(Alias::new(table));
    for column in columns {
        index.col(Alias::new(*column));
    }
    index.to_owned()
}

/// Creates a table with its secondary indexes. On MySQL the indexes are
/// inline, so the whole migration is one DDL statement; SQLite has no inline
/// `KEY` and gets `CREATE INDEX` statements inside its DDL transaction.
pub async fn create_table_with_indexes(
    manager: &SchemaManager<'_>,
    table_name: &str,
    mut table: TableCreateStatement,
    indexes: Vec<IndexCreateStatement>,
) -> Result<(), DbErr> {
    match manager.get_database_backend() {
        DbBackend::Sqlite => {
            // SQLite index names are per database, not per table: the three
            // statistics tables would clash on `uk_time_scope`.
            manager.create_table(table).await?;
            for mut index in indexes {
                let name = index
                    .get_index_spec()
                    .get_name()
                    .unwrap_or_default()
                    .to_owned();
                index.name(format!("{table_name}_{name}"));
                manager.create_index(index).await?;
            }
            Ok(())
        }
        _ => {
            for mut index in indexes {
                table.index(&mut index);
            }
            // Binary collation: task ids, endpoint and spec names are
            // case- and accent-sensitive keys ("A100" and "a100" are two
            // specs), so the unique keys must not fold them together.
            table
                .engine("InnoDB")
                .character_set("utf8mb4")
                .collate("utf8mb4_bin");
            manager.create_table(table).await
        }
    }
}

pub async fn drop_table(manager: &SchemaManager<'_>, name: &str) -> Result<(), DbErr> {
    manager
        .drop_table(Table::drop().table(Alias::new(name)).to_owned())
        .await
}

/// Which statistics table: they share every column but the bucket type, the
/// minute-only `total_gpu_seconds` and the level's peak/capacity columns.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum StatsLevel {
    Minute,
    Hourly,
    Daily,
}

pub fn statistics_table(backend: DbBackend, name: &str, level: StatsLevel) -> TableDef {
    let mut table = Table::create();
    table.table(Alias::new(name)).col(id("id"));
    let mut bucket = match level {
        StatsLevel::Daily => date("time_bucket"),
        _ => datetime("time_bucket"),
    };
    table
        .col(bucket.not_null().to_owned())
        .col(string("scope_type", 50).not_null())
        .col(string("scope_value", 255).null())
        .col(int("total_tasks").not_null().default(0))
        .col(int("completed_tasks").not_null().default(0))
        .col(int("failed_tasks").not_null().default(0));
    if level == StatsLevel::Minute {
        table.col(decimal("total_gpu_seconds", 18, 3).not_null().default(0));
    }
    table
        .col(decimal("total_gpu_hours", 16, 6).not_null().default(0))
        .col(decimal("avg_gpu_count", 10, 2).not_null().default(0))
        .col(int("max_gpu_count").not_null().default(0))
        // Exact integers the rollups recombine from: GPU time in
        // GPU-milliseconds and the sum of gpu_count over completed tasks (so
        // coarser averages are task-weighted, never a mean of means).
        .col(bigint("gpu_milliseconds").not_null().default(0))
        .col(bigint("gpu_count_sum").not_null().default(0));
    match level {
        StatsLevel::Minute => {}
        StatsLevel::Hourly => {
            table
                .col(datetime("peak_minute").null())
                .col(decimal("peak_gpu_hours", 16, 6).null());
        }
        StatsLevel::Daily => {
            table
                .col(datetime("peak_hour").null())
                .col(decimal("peak_gpu_hours", 16, 6).null())
                .col(decimal("available_gpu_hours", 16, 6).null())
                .col(decimal("utilization_rate", 7, 4).null());
        }
    }
    table
        .col(datetime_ms(backend, "period_start").not_null())
        .col(datetime_ms(backend, "period_end").not_null())
        .col(stamped(backend, "updated_at"))
        // Never NOT NULL (MariaDB rejects it on generated columns) and never
        // written by the application.
        .col(string("scope_value_key", 255).generated(
            Func::coalesce([
                Expr::col(Alias::new("scope_value")),
                Expr::val("__GLOBAL__"),
            ]),
            true,
        ));
    let indexes = vec![
        index(
            name,
            "uk_time_scope",
            &["time_bucket", "scope_type", "scope_value_key"],
        )
        .unique()
        .to_owned(),
        index(name, "idx_time_bucket", &["time_bucket"]),
        index(name, "idx_scope", &["scope_type", "scope_value"]),
        index(name, "idx_updated_at", &["updated_at"]),
    ];
    (table.to_owned(), indexes)
}

pub fn boolean(name: &str) -> ColumnDef {
    ColumnDef::new(Alias::new(name)).boolean().to_owned()
}

/// What every level gains for capacity and utilisation, in the order the
/// columns are appended: exact GPU-milliseconds available and idle, the
/// number of minutes where tasks used more than was available (which
/// decides `capacity_complete`), the decimals derived from them, and peak
/// concurrency. Daily rows already had `available_gpu_hours` and
/// `utilization_rate`.
fn capacity_columns(level: StatsLevel) -> Vec<ColumnDef> {
    let mut cols = vec![
        bigint("available_gpu_ms").not_null().default(0).to_owned(),
        bigint("idle_gpu_ms").not_null().default(0).to_owned(),
        int("overused_minutes").not_null().default(0).to_owned(),
    ];
    if level != StatsLevel::Daily {
        cols.push(
            decimal("available_gpu_hours", 16, 6)
                .not_null()
                .default(0)
                .to_owned(),
        );
        cols.push(decimal("utilization_rate", 14, 4).null().to_owned());
    }
    cols.push(
        decimal("idle_gpu_hours", 16, 6)
            .not_null()
            .default(0)
            .to_owned(),
    );
    cols.push(boolean("capacity_complete").null().to_owned());
    cols.push(int("peak_gpus_in_use").not_null().default(0).to_owned());
    cols.push(int("peak_gpus_available").not_null().default(0).to_owned());
    if level == StatsLevel::Minute {
        cols.push(
            decimal("available_gpu_seconds", 18, 3)
                .not_null()
                .default(0)
                .to_owned(),
        );
    }
    cols
}

fn column_name(c: &ColumnDef) -> String {
    c.get_column_name()
}

/// Adds the capacity columns in one `ALTER TABLE` on MySQL (one DDL
/// statement: MySQL commits DDL implicitly), one per column on SQLite
/// (which alters one column at a time, inside the migration's
/// transaction). Daily rates widen to DECIMAL(14,4): incomplete capacity
/// reports can push a rate far above 1. SQLite's types are affinities, so
/// the widening is a no-op there.
pub async fn add_capacity_columns(
    manager: &SchemaManager<'_>,
    table: &str,
    level: StatsLevel,
) -> Result<(), DbErr> {
    let columns = capacity_columns(level);
    if manager.get_database_backend() == DbBackend::Sqlite {
        for mut c in columns {
            let alter = Table::alter()
                .table(Alias::new(table))
                .add_column(&mut c)
                .to_owned();
            manager.alter_table(alter).await?;
        }
        return Ok(());
    }
    let mut alter = Table::alter();
    alter.table(Alias::new(table));
    for mut c in columns {
        alter.add_column(&mut c);
    }
    if level == StatsLevel::Daily {
        alter.modify_column(decimal("utilization_rate", 14, 4).null().to_owned());
    }
    manager.alter_table(alter).await
}

pub async fn drop_capacity_columns(
    manager: &SchemaManager<'_>,
    table: &str,
    level: StatsLevel,
) -> Result<(), DbErr> {
    let names: Vec<String> = capacity_columns(level).iter().map(column_name).collect();
    if manager.get_database_backend() == DbBackend::Sqlite {
        for name in names {
            let alter = Table::alter()
                .table(Alias::new(table))
                .drop_column(Alias::new(name))
                .to_owned();
            manager.alter_table(alter).await?;
        }
        return Ok(());
    }
    let mut alter = Table::alter();
    alter.table(Alias::new(table));
    for name in names {
        alter.drop_column(Alias::new(name));
    }
    if level == StatsLevel::Daily {
        alter.modify_column(decimal("utilization_rate", 7, 4).null().to_owned());
    }
    manager.alter_table(alter).await
}
