//! OTLP metric and attribute names to Prometheus names, following the
//! OpenTelemetry-to-Prometheus compatibility rules as Prometheus 3.x applies
//! them (strategy `UnderscoreEscapingWithSuffixes`): unit and type suffixes
//! are added, every character a legacy Prometheus name cannot hold becomes
//! `_`.

use std::borrow::Cow;

/// How a metric is exposed, as far as its name is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NameKind {
    /// Gauges (`_ratio` for unit `1`).
    Gauge,
    /// Monotonic cumulative sums (`_total`).
    Counter,
    /// Non-monotonic sums, histograms and summaries (no type suffix here;
    /// `_bucket`, `_sum`, `_count` are added per series).
    Other,
}

/// Characters a name token may hold; everything else separates tokens.
fn token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == ':'
}

/// The Prometheus unit word for an OTLP (UCUM) unit, or the unit itself.
fn main_unit(unit: &str) -> &str {
    match unit {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tebibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "1" => "",
        "%" => "percent",
        other => other,
    }
}

/// The Prometheus word for the denominator of a `X/Y` unit.
fn per_unit(unit: &str) -> &str {
    match unit {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        other => other,
    }
}

/// A unit word made of name characters: invalid runs become one `_`, no
/// leading or trailing `_`.
fn clean_unit(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    for part in word.split(|c: char| !token_char(c)) {
        if part.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push('_');
        }
        out.push_str(part);
    }
    out
}

/// The suffix words of a unit: the main unit and the `per` unit, each
/// empty when there is none. Annotations (`{requests}`) give no suffix.
pub fn unit_suffixes(unit: &str) -> (String, String) {
    let mut parts = unit.splitn(2, '/');
    let main = parts.next().unwrap_or("").trim();
    let per = parts.next().unwrap_or("").trim();
    let word = |u: &str, map: fn(&str) -> &str| {
        if u.is_empty() || u.contains(['{', '}']) {
            String::new()
        } else {
            clean_unit(map(u))
        }
    };
    (word(main, main_unit), word(per, per_unit))
}

/// The unit as Prometheus metadata carries it (`seconds`,
/// `bytes_per_second`), empty when the unit adds no suffix.
pub fn metadata_unit(unit: &str) -> String {
    let (main, per) = unit_suffixes(unit);
    match (main.is_empty(), per.is_empty()) {
        (_, true) => main,
        (true, false) => format!("per_{per}"),
        (false, false) => format!("{main}_per_{per}"),
    }
}

/// The Prometheus metric name of an OTLP metric.
pub fn metric_name(name: &str, unit: &str, kind: NameKind) -> String {
    let mut tokens: Vec<&str> = name
        .split(|c: char| !token_char(c))
        .filter(|t| !t.is_empty())
        .collect();
    let (main, per) = unit_suffixes(unit);
    if !main.is_empty() && !tokens.contains(&main.as_str()) {
        tokens.push(&main);
    }
    if !per.is_empty() && !tokens.contains(&per.as_str()) {
        tokens.push("per");
        tokens.push(&per);
    }
    if kind == NameKind::Counter {
        tokens.retain(|t| *t != "total");
        tokens.push("total");
    }
    if unit == "1" && kind == NameKind::Gauge {
        tokens.retain(|t| *t != "ratio");
        tokens.push("ratio");
    }
    let mut out = String::with_capacity(name.len() + 16);
    if tokens
        .first()
        .is_some_and(|t| t.starts_with(|c: char| c.is_ascii_digit()))
    {
        out.push('_');
    }
    for (i, t) in tokens.iter().enumerate() {
        if i > 0 {
            out.push('_');
        }
        out.push_str(t);
    }
    out
}

/// The Prometheus label name of an OTLP attribute: invalid characters
/// become `_`; a leading digit gets `key_` in front, a single leading `_`
/// gets `key` (`__` prefixes stay).
pub fn label_name(attr: &str) -> Cow<'_, str> {
    // The usual case: a letter, then letters, digits and `_`.
    let b = attr.as_bytes();
    if b.first().is_some_and(u8::is_ascii_alphabetic)
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
    {
        return Cow::Borrowed(attr);
    }
    let valid = attr.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    // Prefixes as Prometheus adds them after sanitising, where every
    // character but [a-zA-Z0-9] reads as `_`.
    let underscore = |c: char| !c.is_ascii_alphanumeric();
    let mut chars = attr.chars();
    let prefix = match (chars.next(), chars.next()) {
        (Some(c), _) if c.is_ascii_digit() => "key_",
        (Some(c0), c1) if underscore(c0) && !c1.is_some_and(underscore) => "key",
        _ => "",
    };
    if valid && prefix.is_empty() {
        return Cow::Borrowed(attr);
    }
    let mut out = String::with_capacity(attr.len() + prefix.len());
    out.push_str(prefix);
    for c in attr.chars() {
        out.push(if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        });
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names() {
        let cases = [
            (
                "http.server.request.duration",
                "s",
                NameKind::Other,
                "http_server_request_duration_seconds",
            ),
            (
                "system.memory.usage",
                "By",
                NameKind::Gauge,
                "system_memory_usage_bytes",
            ),
            (
                "requests",
                "{requests}",
                NameKind::Counter,
                "requests_total",
            ),
            ("requests_total", "", NameKind::Counter, "requests_total"),
            ("total.requests", "", NameKind::Counter, "requests_total"),
            (
                "cpu.utilization",
                "1",
                NameKind::Gauge,
                "cpu_utilization_ratio",
            ),
            ("cpu.ratio", "1", NameKind::Gauge, "cpu_ratio"),
            ("ratio.cpu", "1", NameKind::Gauge, "cpu_ratio"),
            ("in.flight", "1", NameKind::Other, "in_flight"),
            ("hits", "1", NameKind::Counter, "hits_total"),
            ("net.io", "By/s", NameKind::Gauge, "net_io_bytes_per_second"),
            ("rate", "1/s", NameKind::Gauge, "rate_per_second"),
            ("latency_seconds", "s", NameKind::Other, "latency_seconds"),
            ("latency", "ms", NameKind::Other, "latency_milliseconds"),
            ("temp", "Cel", NameKind::Gauge, "temp_celsius"),
            ("odd", "foo-bar", NameKind::Gauge, "odd_foo_bar"),
            ("weird--name__x", "", NameKind::Gauge, "weird_name_x"),
            ("2xx.count", "", NameKind::Gauge, "_2xx_count"),
            ("a:b.c", "", NameKind::Gauge, "a:b_c"),
            ("spaced", " s ", NameKind::Gauge, "spaced_seconds"),
            ("ünicode.name", "", NameKind::Gauge, "nicode_name"),
            ("mem", "MiBy", NameKind::Gauge, "mem_mebibytes"),
            ("queue", "{items}/s", NameKind::Gauge, "queue_per_second"),
        ];
        for (name, unit, kind, want) in cases {
            assert_eq!(
                metric_name(name, unit, kind),
                want,
                "{name} {unit} {kind:?}"
            );
        }
    }

    #[test]
    fn metadata_units() {
        assert_eq!(metadata_unit("s"), "seconds");
        assert_eq!(metadata_unit("By/s"), "bytes_per_second");
        assert_eq!(metadata_unit("1"), "");
        assert_eq!(metadata_unit("{req}"), "");
        assert_eq!(metadata_unit("1/s"), "per_second");
    }

    #[test]
    fn label_names() {
        let cases = [
            ("service.name", "service_name"),
            ("http-method", "http_method"),
            ("2xx", "key_2xx"),
            ("_private", "key_private"),
            ("__reserved", "__reserved"),
            ("ok_name", "ok_name"),
            ("é", "key_"),
            ("_", "key_"),
            ("._x", "__x"),
            (".hidden", "key_hidden"),
            ("", ""),
        ];
        for (attr, want) in cases {
            assert_eq!(label_name(attr), want, "{attr}");
            assert_eq!(
                matches!(label_name(attr), Cow::Borrowed(_)),
                attr == want,
                "{attr}: borrowed when unchanged"
            );
        }
    }
}
