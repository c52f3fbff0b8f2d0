//! The scope values that have statistics, for pickers.

use std::collections::BTreeSet;

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::Result;
use crate::level::{Daily, Hourly, Level, Minute, StatsColumn};
use crate::types::ScopeType;

/// Endpoints and specs that have statistics at any level, sorted.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, ToSchema)]
pub struct Scopes {
    pub endpoints: Vec<String>,
    pub specs: Vec<String>,
}

pub async fn scopes(db: &impl ConnectionTrait) -> Result<Scopes> {
    let mut endpoints = BTreeSet::new();
    let mut specs = BTreeSet::new();
    for (scope_type, value) in values::<Minute>(db)
        .await?
        .into_iter()
        .chain(values::<Hourly>(db).await?)
        .chain(values::<Daily>(db).await?)
    {
        match scope_type {
            ScopeType::Endpoint => endpoints.insert(value),
            ScopeType::Spec => specs.insert(value),
            ScopeType::Global => false,
        };
    }
    Ok(Scopes {
        endpoints: endpoints.into_iter().collect(),
        specs: specs.into_iter().collect(),
    })
}

async fn values<L: Level>(db: &impl ConnectionTrait) -> Result<Vec<(ScopeType, String)>> {
    type C<L> = <L as Level>::Column;
    Ok(L::Entity::find()
        .select_only()
        .distinct()
        .column(C::<L>::SCOPE_TYPE)
        .column(C::<L>::SCOPE_VALUE)
        .filter(C::<L>::SCOPE_TYPE.is_in([ScopeType::Endpoint, ScopeType::Spec]))
        .filter(C::<L>::SCOPE_VALUE.is_not_null())
        .into_tuple()
        .all(db)
        .await?)
}
