//! The schema script: its statements, applied through a connection, and
//! the account a `mysql` client runs it with.

use sea_orm::{ConnectionTrait, DatabaseConnection};

use crate::SCHEMA_SQL;

/// The statements of the schema script: comment lines dropped, split at
/// lines that end with `;` (the script's documented convention).
pub fn script_statements(sql: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current = String::new();
    for line in sql.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with("--") {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if trimmed.ends_with(';') {
            let statement = current.trim().trim_end_matches(';').trim().to_owned();
            if !statement.is_empty() {
                statements.push(statement);
            }
            current.clear();
        }
    }
    assert!(
        current.trim().is_empty(),
        "schema script ends with an unterminated statement: {current}"
    );
    statements
}

pub async fn apply_script(db: &DatabaseConnection) {
    for statement in script_statements(SCHEMA_SQL) {
        db.execute_unprepared(&statement)
            .await
            .unwrap_or_else(|e| panic!("schema script statement failed: {e}\n{statement}"));
    }
}

/// `mysql://user[:password]@host[:port]` → (user, password, host, port).
pub fn server_account(url: &str) -> (String, String, String, String) {
    let rest = url.strip_prefix("mysql://").expect("a mysql:// URL");
    let rest = rest.split(['/', '?']).next().unwrap();
    let (userinfo, hostport) = rest.rsplit_once('@').unwrap_or(("root", rest));
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let (host, port) = hostport.split_once(':').unwrap_or((hostport, "3306"));
    (user.into(), password.into(), host.into(), port.into())
}
