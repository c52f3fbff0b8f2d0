//! Checks on a `/metrics` exposition (Prometheus text or OpenMetrics) that
//! hold for every process of the service.

/// Panics unless `text` is an exposition whose metrics read well once
/// scraped:
///
/// - it has `# HELP` lines, and none ends with `..`: `prometheus-client`
///   appends the final period itself, so a help text registered with one
///   would be shown with two;
/// - no sample carries a label named `job`: Prometheus sets `job` on every
///   scraped series itself and renames a scraped one to `exported_job`.
pub fn assert_exposition_well_formed(text: &str) {
    let help: Vec<&str> = text.lines().filter(|l| l.starts_with("# HELP ")).collect();
    assert!(!help.is_empty(), "no # HELP line in\n{text}");
    for line in &help {
        assert!(
            !line.ends_with(".."),
            "help text ends with a doubled period: {line:?}"
        );
    }
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(open) = line.find('{') else { continue };
        let labels = &line[open + 1..];
        assert!(
            !labels.starts_with("job=") && !labels.contains(",job="),
            "a sample carries Prometheus's own target label `job`: {line:?}"
        );
    }
}

/// Panics unless `text` contains every one of `needles`, naming the first
/// one missing.
pub fn assert_contains_all(text: &str, needles: &[&str]) {
    for needle in needles {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str =
        "# HELP a_total Things counted.\n# TYPE a_total counter\na_total{job_name=\"x\"} 1\n";

    #[test]
    fn accepts_single_periods_and_job_name() {
        assert_exposition_well_formed(GOOD);
    }

    #[test]
    #[should_panic(expected = "doubled period")]
    fn refuses_a_doubled_period() {
        assert_exposition_well_formed(&GOOD.replace("counted.", "counted.."));
    }

    #[test]
    #[should_panic(expected = "target label")]
    fn refuses_a_job_label() {
        assert_exposition_well_formed(&GOOD.replace("job_name=", "job="));
    }
}
