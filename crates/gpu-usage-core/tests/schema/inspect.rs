//! What a database's schema is, read back: information_schema and `SHOW
//! CREATE TABLE` on MariaDB, `sqlite_master` on SQLite, the applied
//! migrations; and how two MariaDB snapshots differ.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use gpu_usage_testing::TestDb;
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};

/// One named list of rows, each rendered as `field=value` pairs.
pub struct Section {
    pub name: &'static str,
    pub rows: Vec<String>,
}

/// Runs a query whose every column is text (or NULL) and renders each row,
/// naming the columns by `fields` (separated by spaces).
pub async fn text_rows(
    db: &DatabaseConnection,
    sql: &str,
    schema: &str,
    fields: &str,
) -> Vec<String> {
    let fields: Vec<&str> = fields.split(' ').collect();
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::MySql,
            sql,
            [schema.into()],
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{sql}"));
    rows.iter()
        .map(|row| {
            fields
                .iter()
                .enumerate()
                .map(|(i, field)| {
                    let value: Option<String> = row
                        .try_get_by_index(i)
                        .unwrap_or_else(|e| panic!("{field}: {e}"));
                    format!("{field}={}", value.as_deref().unwrap_or("<NULL>"))
                })
                .collect::<Vec<_>>()
                .join(" | ")
        })
        .collect()
}

/// The information_schema views compared, each as (section, query of one
/// schema `?` whose columns are all text, the columns' names).
const INFORMATION_SCHEMA: [(&str, &str, &str); 4] = [
    (
        "information_schema.TABLES",
        "SELECT CAST(TABLE_NAME AS CHAR), CAST(TABLE_TYPE AS CHAR), CAST(ENGINE AS CHAR), \
                CAST(TABLE_COLLATION AS CHAR), CAST(ROW_FORMAT AS CHAR), \
                CAST(CREATE_OPTIONS AS CHAR), CAST(TABLE_COMMENT AS CHAR) \
         FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME",
        "table type engine collation row_format options comment",
    ),
    (
        "information_schema.COLUMNS",
        "SELECT CAST(TABLE_NAME AS CHAR), CAST(COLUMN_NAME AS CHAR), \
                CAST(ORDINAL_POSITION AS CHAR), CAST(COLUMN_TYPE AS CHAR), \
                CAST(IS_NULLABLE AS CHAR), CAST(COLUMN_DEFAULT AS CHAR), CAST(EXTRA AS CHAR), \
                CAST(GENERATION_EXPRESSION AS CHAR), CAST(CHARACTER_SET_NAME AS CHAR), \
                CAST(COLLATION_NAME AS CHAR), CAST(COLUMN_KEY AS CHAR), \
                CAST(COLUMN_COMMENT AS CHAR) \
         FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? \
         ORDER BY TABLE_NAME, ORDINAL_POSITION",
        "table column position type nullable default extra generated charset collation key comment",
    ),
    (
        "information_schema.STATISTICS",
        "SELECT CAST(TABLE_NAME AS CHAR), CAST(INDEX_NAME AS CHAR), CAST(NON_UNIQUE AS CHAR), \
                CAST(SEQ_IN_INDEX AS CHAR), CAST(COLUMN_NAME AS CHAR), \
                CAST(SUB_PART AS CHAR), CAST(COLLATION AS CHAR), CAST(NULLABLE AS CHAR), \
                CAST(INDEX_TYPE AS CHAR) \
         FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? \
         ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX",
        "table index non_unique seq column sub_part order nullable type",
    ),
    (
        "information_schema.TABLE_CONSTRAINTS",
        "SELECT CAST(TABLE_NAME AS CHAR), CAST(CONSTRAINT_NAME AS CHAR), \
                CAST(CONSTRAINT_TYPE AS CHAR) \
         FROM information_schema.TABLE_CONSTRAINTS WHERE TABLE_SCHEMA = ? \
         ORDER BY TABLE_NAME, CONSTRAINT_NAME",
        "table constraint type",
    ),
];

/// Everything information_schema says about the tables of one database, plus
/// `SHOW CREATE TABLE` of each (in that order; TABLES first).
pub async fn mysql_snapshot(db: &DatabaseConnection, schema: &str) -> Vec<Section> {
    let mut sections = Vec::new();
    for (name, sql, fields) in INFORMATION_SCHEMA {
        let rows = text_rows(db, sql, schema, fields).await;
        sections.push(Section { name, rows });
    }
    let mut create = Vec::new();
    for table in table_names(&sections) {
        let row = db
            .query_one_raw(Statement::from_string(
                DbBackend::MySql,
                format!("SHOW CREATE TABLE `{table}`"),
            ))
            .await
            .unwrap_or_else(|e| panic!("SHOW CREATE TABLE {table}: {e}"))
            .unwrap_or_else(|| panic!("SHOW CREATE TABLE {table}: no row"));
        let ddl: String = row.try_get_by_index(1).unwrap();
        create.extend(ddl.lines().map(|l| format!("{table}: {l}")));
    }
    sections.push(Section {
        name: "SHOW CREATE TABLE",
        rows: create,
    });
    sections
}

/// Empty when both snapshots agree; otherwise a readable list of the rows
/// found only on one side, per section.
pub fn snapshot_diff(
    left_name: &str,
    left: &[Section],
    right_name: &str,
    right: &[Section],
) -> String {
    let mut out = String::new();
    for (l, r) in left.iter().zip(right) {
        assert_eq!(l.name, r.name);
        if l.rows == r.rows {
            continue;
        }
        let _ = writeln!(out, "== {} differs", l.name);
        let l_set: BTreeSet<&String> = l.rows.iter().collect();
        let r_set: BTreeSet<&String> = r.rows.iter().collect();
        for row in l.rows.iter().filter(|row| !r_set.contains(row)) {
            let _ = writeln!(out, "  - only in {left_name}: {row}");
        }
        for row in r.rows.iter().filter(|row| !l_set.contains(row)) {
            let _ = writeln!(out, "  + only in {right_name}: {row}");
        }
        if l_set == r_set {
            let _ = writeln!(out, "  (same rows, different order)");
        }
    }
    out
}

/// Panics with `what` and the rows found on one side only unless the two
/// named snapshots agree.
#[track_caller]
pub fn assert_same_schema(left: (&str, &[Section]), right: (&str, &[Section]), what: &str) {
    let diff = snapshot_diff(left.0, left.1, right.0, right.1);
    assert!(diff.is_empty(), "{what}:\n{diff}");
}

/// [`assert_same_schema`] of `t`'s schema now, as `label`, and `expected`.
pub async fn assert_schema_of(t: &TestDb, label: &str, expected: (&str, &[Section]), what: &str) {
    let now = mysql_snapshot(&t.db, t.database_name().unwrap()).await;
    assert_same_schema(expected, (label, &now), what);
}

pub fn table_names(snapshot: &[Section]) -> Vec<String> {
    table_names_of(&snapshot[0].rows)
}

/// The `table=` field of rows rendered by [`text_rows`].
pub fn table_names_of(rows: &[String]) -> Vec<String> {
    rows.iter()
        .map(|row| {
            row.split(" | ")
                .next()
                .and_then(|f| f.strip_prefix("table="))
                .unwrap()
                .to_owned()
        })
        .collect()
}

pub fn migration_names() -> Vec<String> {
    Migrator::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .collect()
}

pub async fn applied_versions(db: &DatabaseConnection) -> Vec<String> {
    let backend = db.get_database_backend();
    let rows = db
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT version FROM seaql_migrations ORDER BY version",
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|r| r.try_get::<String>("", "version").unwrap())
        .collect()
}

pub async fn user_tables_sqlite(db: &DatabaseConnection) -> Vec<String> {
    sqlite_master(db)
        .await
        .into_iter()
        .filter(|row| row.starts_with("table|"))
        .map(|row| row.split('|').nth(1).unwrap().to_owned())
        .collect()
}

/// `type|name|table|sql` of every schema object, in a stable order.
pub async fn sqlite_master(db: &DatabaseConnection) -> Vec<String> {
    let rows = db
        .query_all_raw(Statement::from_string(
            DbBackend::Sqlite,
            "SELECT type, name, tbl_name, COALESCE(sql, '') AS sql FROM sqlite_master \
             WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name",
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|r| {
            let get = |c: &str| r.try_get::<String>("", c).unwrap();
            format!(
                "{}|{}|{}|{}",
                get("type"),
                get("name"),
                get("tbl_name"),
                get("sql")
            )
        })
        .collect()
}
