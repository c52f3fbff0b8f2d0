//! The one table the suite prints.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Row {
    pub figure: String,
    pub ours: String,
    pub database: String,
    /// ours / database (for times; database / ours for rates, so above 1
    /// always means "we are slower").
    pub ratio: Option<f64>,
    pub target: String,
    pub note: String,
}

impl Row {
    pub fn new(figure: impl Into<String>) -> Self {
        Self {
            figure: figure.into(),
            ours: String::new(),
            database: "—".to_owned(),
            ratio: None,
            target: "—".to_owned(),
            note: String::new(),
        }
    }
    pub fn ours(mut self, s: impl Into<String>) -> Self {
        self.ours = s.into();
        self
    }
    pub fn db(mut self, s: impl Into<String>) -> Self {
        self.database = s.into();
        self
    }
    pub fn ratio(mut self, r: f64) -> Self {
        self.ratio = r.is_finite().then_some(r);
        self
    }
    pub fn target(mut self, s: impl Into<String>) -> Self {
        self.target = s.into();
        self
    }
    pub fn note(mut self, s: impl Into<String>) -> Self {
        self.note = s.into();
        self
    }
}

/// Seconds with sensible precision.
pub fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 100.0 {
        format!("{s:.0} s")
    } else if s >= 1.0 {
        format!("{s:.2} s")
    } else {
        format!("{:.1} ms", s * 1e3)
    }
}

pub fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0} ms")
    } else if v >= 1.0 {
        format!("{v:.1} ms")
    } else {
        format!("{v:.2} ms")
    }
}

pub fn rate(per_sec: f64, unit: &str) -> String {
    if per_sec >= 10_000.0 {
        format!("{:.1}k {unit}/s", per_sec / 1e3)
    } else {
        format!("{per_sec:.0} {unit}/s")
    }
}

pub fn ratio_of(ours: Duration, db: Duration) -> f64 {
    ours.as_secs_f64() / db.as_secs_f64()
}

/// Markdown, so the same text reads in a terminal and in a document.
pub fn render(rows: &[Row]) -> String {
    let head = [
        "figure",
        "ours",
        "database, same work",
        "ratio",
        "target",
        "note",
    ];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                r.figure.clone(),
                r.ours.clone(),
                r.database.clone(),
                r.ratio.map_or("—".to_owned(), |x| format!("{x:.2}")),
                r.target.clone(),
                r.note.clone(),
            ]
        })
        .collect();
    let mut w = head.map(|h| h.chars().count());
    for c in &cells {
        for (i, s) in c.iter().enumerate() {
            w[i] = w[i].max(s.chars().count());
        }
    }
    let line = |c: &[String]| -> String {
        let mut s = String::from("|");
        for (i, x) in c.iter().enumerate() {
            let pad = w[i] - x.chars().count();
            s.push(' ');
            s.push_str(x);
            s.push_str(&" ".repeat(pad));
            s.push_str(" |");
        }
        s
    };
    let mut out = line(&head.map(str::to_owned));
    out.push('\n');
    out.push('|');
    for wi in w {
        out.push_str(&"-".repeat(wi + 2));
        out.push('|');
    }
    out.push('\n');
    for c in &cells {
        out.push_str(&line(c));
        out.push('\n');
    }
    out
}
