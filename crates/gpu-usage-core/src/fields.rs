//! What every wire form shares: a JSON value as the client sent it
//! ([`Field`]), the field rules ([`Checks`]) and the one error a parsed
//! item can have ([`Invalid`]): its identity and every problem, field by
//! field. Records, worker sessions and heartbeats all parse through these.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer};

use crate::error::DomainError;
use crate::types::parse_utc;

/// Largest gpu_count accepted: above it is a client bug, not a machine.
pub const MAX_GPU_COUNT: i64 = 1024;

/// A value as a JSON client sent it: absent, `null`, of the right type, or
/// of a wrong one (kept to name it in the error).
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Field<T> {
    #[default]
    Absent,
    Null,
    Value(T),
    Wrong(serde_json::Value),
}

impl<T> From<T> for Field<T> {
    fn from(v: T) -> Self {
        Field::Value(v)
    }
}

impl<T> From<Option<T>> for Field<T> {
    fn from(v: Option<T>) -> Self {
        v.map_or(Field::Absent, Field::Value)
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        if v.is_null() {
            return Ok(Field::Null);
        }
        Ok(T::deserialize(v.clone()).map_or(Field::Wrong(v), Field::Value))
    }
}

impl<T> Field<T> {
    pub fn wrong(&self) -> Option<&serde_json::Value> {
        match self {
            Field::Wrong(v) => Some(v),
            _ => None,
        }
    }

    pub fn into_option(self) -> Option<T> {
        match self {
            Field::Value(v) => Some(v),
            _ => None,
        }
    }
}

impl Field<String> {
    /// The value, when it is a string (for naming the item in errors).
    pub fn text(&self) -> Option<String> {
        match self {
            Field::Value(t) => Some(t.trim().to_owned()),
            _ => None,
        }
    }
}

/// Why an item could not be taken: the identity it claims (task_id of a
/// record, worker_id of a session or heartbeat), and every problem with
/// it, field by field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub key: Option<String>,
    /// (field, message), in field order.
    pub problems: Vec<(String, String)>,
}

impl Invalid {
    /// An item that is not of the expected shape at all.
    pub fn malformed(field: &str, why: impl Into<String>) -> Self {
        Invalid {
            key: None,
            problems: vec![(field.to_owned(), why.into())],
        }
    }
}

/// The field rules, shared by every wire form's conversion. Problems are
/// collected, not returned at the first: a client fixes them all at once.
pub struct Checks {
    key: Option<String>,
    problems: Vec<(String, String)>,
}

impl Checks {
    pub fn new(key: Option<String>) -> Self {
        Checks {
            key,
            problems: Vec::new(),
        }
    }

    pub fn fail(&mut self, field: &str, message: impl Into<String>) {
        self.problems.push((field.to_owned(), message.into()));
    }

    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// Wrong JSON types are reported first and alone: what a field means
    /// is not judged while its type is wrong. `Err` when any was wrong.
    pub fn types(
        mut self,
        fields: &[(&str, Option<&serde_json::Value>, &str)],
    ) -> Result<Self, Invalid> {
        for (field, value, expected) in fields {
            if let Some(v) = value {
                self.fail(field, format!("expected {expected}, got {v}"));
            }
        }
        if self.is_clean() {
            Ok(self)
        } else {
            Err(self.into_invalid())
        }
    }

    /// `item` when no rule failed, else every problem.
    pub fn finish<T>(self, item: Option<T>) -> Result<T, Invalid> {
        match item {
            Some(t) if self.is_clean() => Ok(t),
            _ => Err(self.into_invalid()),
        }
    }

    pub fn into_invalid(self) -> Invalid {
        Invalid {
            key: self.key,
            problems: self.problems,
        }
    }

    /// Identifiers are trimmed: MySQL's PAD SPACE collations would make
    /// "a" and "a " the same key anyway.
    pub fn text(
        &mut self,
        field: &str,
        v: Field<String>,
        max: usize,
        required: bool,
    ) -> Option<String> {
        let v = v.into_option().map(|s| s.trim().to_owned());
        match v {
            None if required => {
                self.fail(field, "is required");
                None
            }
            Some(s) if required && s.is_empty() => {
                self.fail(field, "must not be empty");
                None
            }
            Some(s) if s.chars().count() > max => {
                self.fail(field, format!("is longer than {max} characters"));
                None
            }
            other => other,
        }
    }

    pub fn gpu_count(&mut self, v: Field<i64>) -> Option<i32> {
        match v.into_option() {
            None => {
                self.fail("gpu_count", "is required");
                None
            }
            Some(n) if !(0..=MAX_GPU_COUNT).contains(&n) => {
                self.fail(
                    "gpu_count",
                    format!("must be between 0 and {MAX_GPU_COUNT}, got {n}"),
                );
                None
            }
            Some(n) => i32::try_from(n).ok(),
        }
    }

    /// A required instant.
    pub fn time(&mut self, field: &'static str, v: Field<String>) -> Option<DateTime<Utc>> {
        let Some(s) = v.into_option() else {
            self.fail(field, "is required");
            return None;
        };
        self.parse_time(field, &s)
    }

    /// An optional instant: absent and `null` are `Some(None)`; a bad one
    /// is `None`, with its problem recorded.
    pub fn optional_time(
        &mut self,
        field: &'static str,
        v: Field<String>,
    ) -> Option<Option<DateTime<Utc>>> {
        match v.into_option() {
            None => Some(None),
            Some(s) => self.parse_time(field, &s).map(Some),
        }
    }

    fn parse_time(&mut self, field: &'static str, s: &str) -> Option<DateTime<Utc>> {
        match parse_utc(field, s) {
            Ok(t) => Some(t),
            Err(DomainError::Invalid { message, .. }) => {
                self.fail(field, message);
                None
            }
            Err(other) => {
                self.fail(field, other.to_string());
                None
            }
        }
    }

    /// `end` must not precede `start`.
    pub fn ordered(
        &mut self,
        end_field: &str,
        start_field: &str,
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
    ) {
        if let (Some(s), Some(e)) = (start, end)
            && e < s
        {
            self.fail(end_field, format!("is before {start_field}"));
        }
    }
}
