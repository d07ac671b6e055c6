//! Per-series validation, applied before anything is written.
//!
//! A series that fails is dropped with an error naming it; the rest of the
//! request is still written.

use tidemark_schemas::prometheus::TimeSeries;

use crate::scan::{label_refs, LabelRef};

use crate::config::ValidationLimits;

const METRIC_NAME: &[u8] = b"__name__";

/// Why a series or sample was refused; `reason` labels the discard metric.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ValidationError {
    pub reason: &'static str,
    pub message: String,
    /// Samples of the series this error discarded.
    pub discarded_samples: usize,
}

/// Whether labels must be sorted or have empty values dropped before
/// they can be checked and hashed.
pub fn needs_normalizing(labels: &[LabelRef<'_>]) -> bool {
    labels.iter().any(|l| l.value.is_empty()) || !labels.windows(2).all(|w| w[0].name <= w[1].name)
}

/// Checks labels sorted by name with no empty values: metric name present
/// and valid, label names valid and unique, UTF-8 values, limits.
/// `samples` is what the series carries, reported as discarded on error.
pub fn check_labels(
    labels: &[LabelRef<'_>],
    limits: &ValidationLimits,
    samples: usize,
) -> Result<(), ValidationError> {
    check_labels_of(labels, limits, samples, false)
}

/// [`check_labels`] for labels whose values are known to be UTF-8 already
/// (remote write 2.0's symbol table is checked once per symbol).
pub fn check_labels_utf8(
    labels: &[LabelRef<'_>],
    limits: &ValidationLimits,
    samples: usize,
) -> Result<(), ValidationError> {
    check_labels_of(labels, limits, samples, true)
}

fn check_labels_of(
    labels: &[LabelRef<'_>],
    limits: &ValidationLimits,
    samples: usize,
    values_are_utf8: bool,
) -> Result<(), ValidationError> {
    let fail = |reason: &'static str, message: String| ValidationError {
        reason,
        message: with_error_id(reason, message),
        discarded_samples: samples,
    };
    let Some(name) = labels.iter().find(|l| l.name == METRIC_NAME) else {
        return Err(fail(
            "missing_metric_name",
            "received a series without metric name".into(),
        ));
    };
    if !is_valid_metric_name(name.value) {
        let msg = format!(
            "received a series with invalid metric name: '{}'",
            String::from_utf8_lossy(name.value)
        );
        return Err(fail("metric_name_invalid", msg));
    }
    if labels.len() > limits.max_label_names_per_series {
        let msg = format!(
            "received a series whose number of labels exceeds the limit (actual: {}, limit: {}) series: '{}'",
            labels.len(),
            limits.max_label_names_per_series,
            series_string(labels)
        );
        return Err(fail("max_label_names_per_series", msg));
    }
    for (i, l) in labels.iter().enumerate() {
        if i > 0 && labels[i - 1].name == l.name {
            let msg = format!(
                "received a series with duplicate label name, label: '{}' series: '{}'",
                String::from_utf8_lossy(l.name),
                series_string(labels)
            );
            return Err(fail("duplicate_label_names", msg));
        }
        if !is_valid_label_name(l.name) {
            let msg = format!(
                "received a series with an invalid label: '{}' series: '{}'",
                String::from_utf8_lossy(l.name),
                series_string(labels)
            );
            return Err(fail("label_invalid", msg));
        }
        if l.name.len() > limits.max_label_name_length {
            let msg = format!(
                "received a series whose label name length exceeds the limit (actual: {}, limit: {}), label: '{}' series: '{}'",
                l.name.len(),
                limits.max_label_name_length,
                truncate(&String::from_utf8_lossy(l.name), 200),
                series_string(labels)
            );
            return Err(fail("label_name_too_long", msg));
        }
        if !values_are_utf8 && std::str::from_utf8(l.value).is_err() {
            let msg = format!(
                "received a series with a label value that is not valid UTF-8, label: '{}' series: '{}'",
                String::from_utf8_lossy(l.name),
                series_string(labels)
            );
            return Err(fail("label_value_invalid", msg));
        }
        if l.value.len() > limits.max_label_value_length {
            let msg = format!(
                "received a series whose label value length exceeds the limit (actual: {}, limit: {}), label name: '{}' series: '{}'",
                l.value.len(),
                limits.max_label_value_length,
                String::from_utf8_lossy(l.name),
                series_string(labels)
            );
            return Err(fail("label_value_too_long", msg));
        }
    }
    Ok(())
}

/// The error for samples past `limit_ms` (the creation grace period).
pub fn too_far_in_future(
    labels: &[LabelRef<'_>],
    timestamp: i64,
    discarded: usize,
) -> ValidationError {
    let reason = "too_far_in_future";
    ValidationError {
        reason,
        message: with_error_id(
            reason,
            format!(
                "received a sample whose timestamp is too far in the future, timestamp: {} series: '{}'",
                timestamp,
                series_string(labels)
            ),
        ),
        discarded_samples: discarded,
    }
}

/// The error for samples older than the past grace period allows.
pub fn too_far_in_past(
    labels: &[LabelRef<'_>],
    timestamp: i64,
    discarded: usize,
) -> ValidationError {
    let reason = "too_far_in_past";
    ValidationError {
        reason,
        message: with_error_id(
            reason,
            format!(
                "received a sample whose timestamp is too far in the past, timestamp: {} series: '{}'",
                timestamp,
                series_string(labels)
            ),
        ),
        discarded_samples: discarded,
    }
}

/// The oldest sample timestamp `limits` accept at `now_ms` (`i64::MIN`
/// when the past grace period is 0, no limit).
pub fn oldest_allowed(limits: &ValidationLimits, now_ms: i64) -> i64 {
    if limits.past_grace_period.is_zero() {
        i64::MIN
    } else {
        now_ms.saturating_sub(limits.past_grace_period.as_millis() as i64)
    }
}

/// Drops the samples older than the past grace period allows; the error
/// when some were.
fn drop_too_old(
    ts: &mut TimeSeries,
    limits: &ValidationLimits,
    now_ms: i64,
) -> Option<ValidationError> {
    let oldest = oldest_allowed(limits, now_ms);
    let bad_ts = ts.samples.iter().find(|s| s.timestamp < oldest)?.timestamp;
    let before = ts.samples.len();
    ts.samples.retain(|s| s.timestamp >= oldest);
    Some(too_far_in_past(
        &label_refs(&ts.labels),
        bad_ts,
        before - ts.samples.len(),
    ))
}

/// The stable ID of a refusal reason, as Mimir's `err-mimir-...`:
/// `err-tidemark-` and the reason with dashes. Each is documented in
/// docs/errors.md.
pub fn error_id(reason: &str) -> String {
    format!("err-tidemark-{}", reason.replace('_', "-"))
}

/// The message with its error ID and, for a limit, the flag that sets it.
pub fn with_error_id(reason: &str, message: String) -> String {
    let flag = match reason {
        "max_label_names_per_series" => Some("-validation.max-label-names-per-series"),
        "label_name_too_long" => Some("-validation.max-length-label-name"),
        "label_value_too_long" => Some("-validation.max-length-label-value"),
        "too_far_in_future" => Some("-validation.create-grace-period"),
        "too_far_in_past" => Some("-validation.past-grace-period"),
        "metadata_metric_name_too_long" | "metadata_help_too_long" | "metadata_unit_too_long" => {
            Some("-validation.max-metadata-length")
        }
        "rate_limited" => Some("-distributor.ingestion-rate-limit and -distributor.ingestion-burst-size"),
        "request_rate_limited" => Some("-distributor.request-rate-limit and -distributor.request-burst-size"),
        _ => None,
    };
    match flag {
        Some(f) => format!(
            "{message} ({}). To adjust the related limit, configure {f}, or contact your service administrator.",
            error_id(reason)
        ),
        None => format!("{message} ({})", error_id(reason)),
    }
}

/// Checks one metric metadata entry as Mimir does: a metric family name,
/// and name, help and unit no longer than `max_metadata_length`. Invalid
/// metadata is dropped and reported; it never fails the samples.
pub fn check_metadata(
    name: &[u8],
    help: &[u8],
    unit: &[u8],
    limits: &ValidationLimits,
) -> Result<(), ValidationError> {
    let fail = |reason: &'static str, message: String| ValidationError {
        reason,
        message: with_error_id(reason, message),
        discarded_samples: 0,
    };
    let max = limits.max_metadata_length;
    let too_long = |what: &str, len: usize| {
        let shown = String::from_utf8_lossy(&name[..name.len().min(64)]).into_owned();
        format!("metadata of {shown:?} refused: its {what} is {len} bytes long, the limit is {max}")
    };
    if name.is_empty() {
        return Err(fail("metadata_missing_metric_name", "metadata without a metric family name refused".into()));
    }
    if name.len() > max {
        return Err(fail("metadata_metric_name_too_long", too_long("metric family name", name.len())));
    }
    if help.len() > max {
        return Err(fail("metadata_help_too_long", too_long("help", help.len())));
    }
    if unit.len() > max {
        return Err(fail("metadata_unit_too_long", too_long("unit", unit.len())));
    }
    if [name, help, unit].iter().any(|b| std::str::from_utf8(b).is_err()) {
        let shown = String::from_utf8_lossy(&name[..name.len().min(64)]).into_owned();
        return Err(fail("metadata_invalid_utf8", format!("metadata of {shown:?} refused: not valid UTF-8")));
    }
    Ok(())
}

/// Validates and normalises a decoded series in place: drops empty-valued
/// labels, sorts labels by name and drops samples too far in the future.
/// Returns an error when the series must be dropped as a whole, or when some
/// of its samples were (then the series, with the rest, is still written).
pub fn validate_series(
    ts: &mut TimeSeries,
    limits: &ValidationLimits,
    now_ms: i64,
) -> Result<(), ValidationError> {
    ts.labels.retain(|l| !l.value.is_empty());
    if !ts.labels.windows(2).all(|w| w[0].name <= w[1].name) {
        ts.labels.sort_by(|a, b| a.name.cmp(&b.name));
    }
    let view = label_refs(&ts.labels);
    check_labels(&view, limits, ts.samples.len())?;
    let limit = now_ms.saturating_add(limits.creation_grace_period.as_millis() as i64);
    if let Some(bad_ts) = ts
        .samples
        .iter()
        .find(|s| s.timestamp > limit)
        .map(|s| s.timestamp)
    {
        let before = ts.samples.len();
        let keep: Vec<_> = ts
            .samples
            .iter()
            .filter(|s| s.timestamp <= limit)
            .copied()
            .collect();
        let e = too_far_in_future(&view, bad_ts, before - keep.len());
        drop(view);
        ts.samples = keep;
        return Err(e);
    }
    drop(view);
    match drop_too_old(ts, limits, now_ms) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// [`validate_series`], with a refusal reported in `errors`: whether the
/// series (maybe with fewer samples) is still to be written.
pub fn validate_or_report(
    ts: &mut TimeSeries,
    limits: &ValidationLimits,
    now_ms: i64,
    errors: &mut Vec<ValidationError>,
) -> bool {
    match validate_series(ts, limits, now_ms) {
        Ok(()) => true,
        Err(e) => {
            let future = e.reason == "too_far_in_future";
            let partial = (future || e.reason == "too_far_in_past") && !ts.samples.is_empty();
            errors.push(e);
            if partial && future {
                // The future check returns first; old samples may remain.
                if let Some(old) = drop_too_old(ts, limits, now_ms) {
                    errors.push(old);
                    return !ts.samples.is_empty();
                }
            }
            partial
        }
    }
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
pub fn is_valid_metric_name(name: &[u8]) -> bool {
    match name.split_first() {
        Some((first, rest)) => {
            (first.is_ascii_alphabetic() || *first == b'_' || *first == b':')
                && rest
                    .iter()
                    .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b':')
        }
        None => false,
    }
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`
pub fn is_valid_label_name(name: &[u8]) -> bool {
    match name.split_first() {
        Some((first, rest)) => {
            (first.is_ascii_alphabetic() || *first == b'_')
                && rest.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
        }
        None => false,
    }
}

/// `name{a="b", ...}` for error messages, cut at 200 characters.
pub fn series_string(labels: &[LabelRef<'_>]) -> String {
    let mut out = String::new();
    if let Some(n) = labels.iter().find(|l| l.name == METRIC_NAME) {
        out.push_str(&String::from_utf8_lossy(n.value));
    }
    out.push('{');
    let mut first = true;
    for l in labels.iter().filter(|l| l.name != METRIC_NAME) {
        if !first {
            out.push_str(", ");
        }
        first = false;
        out.push_str(&String::from_utf8_lossy(l.name));
        out.push_str("=\"");
        out.push_str(&String::from_utf8_lossy(l.value));
        out.push('"');
        if out.len() > 200 {
            break;
        }
    }
    out.push('}');
    truncate(&out, 200)
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use tidemark_schemas::prometheus::{Label, Sample};

    fn series(labels: &[(&str, &str)]) -> TimeSeries {
        TimeSeries {
            labels: labels
                .iter()
                .map(|(n, v)| Label {
                    name: Bytes::copy_from_slice(n.as_bytes()),
                    value: Bytes::copy_from_slice(v.as_bytes()),
                })
                .collect(),
            samples: vec![Sample {
                value: 1.0,
                timestamp: 1000,
            }],
            exemplars: vec![],
        }
    }

    fn check(labels: &[(&str, &str)]) -> Result<TimeSeries, ValidationError> {
        let mut ts = series(labels);
        validate_series(&mut ts, &ValidationLimits::default(), 1000).map(|_| ts)
    }

    #[test]
    fn sorts_and_drops_empty_values() {
        let ts = check(&[("z", "1"), ("__name__", "up"), ("a", ""), ("job", "j")]).unwrap();
        let names: Vec<&[u8]> = ts.labels.iter().map(|l| l.name.as_ref()).collect();
        assert_eq!(names, [b"__name__".as_ref(), b"job", b"z"]);
    }

    #[test]
    fn rejects_bad_series_with_named_errors() {
        let e = check(&[("job", "j")]).unwrap_err();
        assert_eq!(e.reason, "missing_metric_name");
        let e = check(&[("__name__", "1up")]).unwrap_err();
        assert_eq!(e.reason, "metric_name_invalid");
        let e = check(&[("__name__", "up"), ("bad-name", "x")]).unwrap_err();
        assert_eq!(e.reason, "label_invalid");
        assert!(
            e.message.contains("bad-name") && e.message.contains("up{"),
            "{}",
            e.message
        );
        let e = check(&[("__name__", "up"), ("a", "1"), ("a", "2")]).unwrap_err();
        assert_eq!(e.reason, "duplicate_label_names");
        let long = "v".repeat(3000);
        let e = check(&[("__name__", "up"), ("a", &long)]).unwrap_err();
        assert_eq!(e.reason, "label_value_too_long");
        assert!(e.message.len() < 600);
        let many: Vec<(String, String)> = (0..31)
            .map(|i| (format!("l{i}"), "v".to_string()))
            .collect();
        let mut labels: Vec<(&str, &str)> =
            many.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        labels.push(("__name__", "up"));
        let e = check(&labels).unwrap_err();
        assert_eq!(e.reason, "max_label_names_per_series");
    }

    #[test]
    fn invalid_utf8_value() {
        let mut ts = series(&[("__name__", "up")]);
        ts.labels.push(Label {
            name: Bytes::from_static(b"a"),
            value: Bytes::from_static(&[0xff, 0xfe]),
        });
        let e = validate_series(&mut ts, &ValidationLimits::default(), 0).unwrap_err();
        assert_eq!(e.reason, "label_value_invalid");
    }

    #[test]
    fn future_samples_dropped_rest_kept() {
        let mut ts = series(&[("__name__", "up")]);
        ts.samples = vec![
            Sample {
                value: 1.0,
                timestamp: 1000,
            },
            Sample {
                value: 2.0,
                timestamp: 10_000_000,
            },
        ];
        let e = validate_series(&mut ts, &ValidationLimits::default(), 1000).unwrap_err();
        assert_eq!(e.reason, "too_far_in_future");
        assert_eq!(e.discarded_samples, 1);
        assert_eq!(ts.samples.len(), 1);
    }

    #[test]
    fn name_rules() {
        assert!(is_valid_metric_name(b"a:b_c1"));
        assert!(!is_valid_metric_name(b""));
        assert!(is_valid_label_name(b"_x1"));
        assert!(!is_valid_label_name(b"a:b"));
    }
}

#[cfg(test)]
mod error_id_tests {
    use super::*;

    #[test]
    fn messages_carry_stable_ids() {
        let limits = ValidationLimits::default();
        let e = check_labels(&[], &limits, 1).unwrap_err();
        assert!(
            e.message.ends_with("(err-tidemark-missing-metric-name)"),
            "{}",
            e.message
        );
        let name = [LabelRef {
            name: b"__name__",
            value: b"up",
        }];
        let e = too_far_in_future(&name, 1, 1);
        assert!(
            e.message
                .contains("(err-tidemark-too-far-in-future). To adjust the related limit, configure -validation.create-grace-period"),
            "{}",
            e.message
        );
    }
}

#[cfg(test)]
mod errors_doc_tests {
    use super::*;

    /// Every refusal reason the distributor gives is documented.
    #[test]
    fn every_error_id_is_in_docs_errors_md() {
        let doc = include_str!("../../docs/errors.md");
        let sources = [
            include_str!("validation.rs"),
            include_str!("rw2.rs"),
            include_str!("distributor.rs"),
        ];
        let mut reasons = Vec::new();
        for src in sources {
            // The code, not its tests.
            let src = src.split("#[cfg(test)]").next().unwrap_or(src);
            for (i, _) in src.match_indices("reason") {
                let rest = &src[i..];
                // `reason: "x"`, `reason = "x"` and `fail("x", ...)` forms.
                let Some(q) = rest.find('"') else { continue };
                if q > 12 {
                    continue;
                }
                let after = &rest[q + 1..];
                if let Some(end) = after.find('"') {
                    let r = &after[..end];
                    if !r.is_empty() && r.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                        reasons.push(r.to_owned());
                    }
                }
            }
            for (i, _) in src.match_indices("fail(\n") {
                let rest = &src[i..];
                if let Some(q) = rest.find('"') {
                    let after = &rest[q + 1..];
                    if let Some(end) = after.find('"') {
                        reasons.push(after[..end].to_owned());
                    }
                }
            }
            for (i, _) in src.match_indices("Err(fail(\"") {
                let after = &src[i + 10..];
                if let Some(end) = after.find('"') {
                    reasons.push(after[..end].to_owned());
                }
            }
        }
        reasons.sort();
        reasons.dedup();
        assert!(reasons.len() >= 10, "found only {reasons:?}");
        for r in reasons {
            let id = error_id(&r);
            assert!(doc.contains(&format!("`{id}`")), "{id} is not in docs/errors.md");
        }
    }
}
