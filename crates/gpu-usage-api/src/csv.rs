//! CSV of any row type, from its `Serialize` and `ToSchema` derives: the
//! header is the row's documented fields in order, the cells are what its
//! JSON would hold (RFC 4180 quoting by the `csv` crate; nulls are empty
//! cells). The database `id` is not exported.

use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::{RefOr, Schema};

/// Fields of a row type that stay out of CSV exports.
const NOT_EXPORTED: &[&str] = &["id"];

/// The CSV header of `T`: its fields in declaration order.
pub fn header<T: utoipa::ToSchema>() -> Vec<String> {
    match T::schema() {
        RefOr::T(Schema::Object(o)) => o
            .properties
            .keys()
            .filter(|k| !NOT_EXPORTED.contains(&k.as_str()))
            .cloned()
            .collect(),
        _ => Vec::new(),
    }
}

pub fn render<T: Serialize + utoipa::ToSchema>(rows: &[T]) -> Result<String, csv::Error> {
    let header = header::<T>();
    let mut out = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::with_capacity(64 * (rows.len() + 1)));
    out.write_record(&header)?;
    for row in rows {
        let value =
            serde_json::to_value(row).map_err(|e| csv::Error::from(std::io::Error::other(e)))?;
        out.write_record(header.iter().map(|name| cell(value.get(name))))?;
    }
    let bytes = out
        .into_inner()
        .map_err(|e| csv::Error::from(std::io::Error::other(e.to_string())))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => text(s),
        // Decimals print as the shortest form that reads back the same
        // (`3`, `0.5`), integers as integers.
        Some(Value::Number(n)) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i.to_string(),
            (None, Some(f)) => f.to_string(),
            _ => n.to_string(),
        },
        Some(other) => other.to_string(),
    }
}

/// Names come from clients; a leading `=`, `+`, `-` or `@` would run as a
/// formula when the file is opened in a spreadsheet.
fn text(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, utoipa::ToSchema)]
    struct Example {
        id: i64,
        name: String,
        hours: f64,
        note: Option<String>,
    }

    #[test]
    fn quoting_formula_guard_and_numbers() {
        let rows = [
            Example {
                id: 1,
                name: "a,b".into(),
                hours: 3.0,
                note: None,
            },
            Example {
                id: 2,
                name: "=SUM(A1)".into(),
                hours: 0.25,
                note: Some("say \"hi\"".into()),
            },
        ];
        assert_eq!(
            render(&rows).unwrap(),
            "name,hours,note\r\n\"a,b\",3,\r\n'=SUM(A1),0.25,\"say \"\"hi\"\"\"\r\n"
        );
        assert_eq!(render::<Example>(&[]).unwrap(), "name,hours,note\r\n");
    }
}
