//! Reads for the API: statistics pages with whole-range summaries
//! ([`stats`]), the scopes that have data ([`scopes`]), raw usage
//! records ([`records`]) and worker sessions ([`sessions`]).
//!
//! Pages are keyset-paginated ([`cursor`]): a cursor names the last row
//! returned, so rows written or deleted between two page requests never
//! shift a page and no row is lost or repeated (offset pagination did both
//! in the original). Cursors are opaque to clients.

mod cursor;
mod keyset;
pub mod records;
pub mod scopes;
pub mod sessions;
pub mod stats;

use sea_orm::sea_query::{Alias, Expr, ExprTrait, Func, SimpleExpr};
use sea_orm::{ColumnTrait, DbBackend};

pub use keyset::RowsPage;
pub use records::{RecordFilter, RecordsPage, UsageRecord, records};
pub use scopes::{Scopes, scopes};
pub use sessions::{SessionFilter, SessionsPage, WorkerSession, sessions};
pub use stats::{StatsPage, StatsQuery, Summary, statistics};

/// Which rows of which page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// Rows per page, at least 1 (the API bounds it from above).
    pub limit: u64,
    /// `next_cursor` of the previous page; `None` for the first page.
    pub cursor: Option<String>,
}

impl PageRequest {
    pub fn first(limit: u64) -> Self {
        Self {
            limit,
            cursor: None,
        }
    }

    fn limit(&self) -> u64 {
        Ord::max(self.limit, 1)
    }
}

/// Splits `limit + 1` rows into a page and whether another follows.
fn take_page<T>(mut rows: Vec<T>, limit: u64) -> (Vec<T>, bool) {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let more = rows.len() > limit;
    rows.truncate(limit);
    (rows, more)
}

/// `SUM(col)` as a 64-bit integer, 0 over no rows. MySQL widens SUM to
/// DECIMAL, which does not decode as an integer; SQLite's is one already.
fn sum_i64(backend: DbBackend, col: impl ColumnTrait) -> SimpleExpr {
    let sum: SimpleExpr = Func::coalesce([Expr::col(col).sum(), Expr::val(0)]).into();
    match backend {
        DbBackend::MySql => Func::cast_as(sum, Alias::new("SIGNED")).into(),
        _ => sum,
    }
}
