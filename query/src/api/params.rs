//! Request parameters: form decoding and Prometheus' time and duration
//! formats.

use std::time::Duration;

/// Prometheus' default start of optional time ranges (`MinTime`), ms.
pub const MIN_TIME_MS: i64 = (i64::MIN / 1000 + 62_135_596_801) * 1000;
/// Prometheus' default end of optional time ranges (`MaxTime`), ms.
pub const MAX_TIME_MS: i64 = (i64::MAX / 1000 - 62_135_596_801) * 1000 + 999;

/// The parameters of a request: the form body's (for form POSTs) first,
/// then the URL query's, as Go's `Request.Form` orders them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Decodes a URL query and an optional form body.
    pub fn parse(query: Option<&str>, form_body: Option<&[u8]>) -> Result<Params, String> {
        let mut pairs = Vec::new();
        if let Some(body) = form_body {
            let body =
                std::str::from_utf8(body).map_err(|_| "form body is not UTF-8".to_owned())?;
            decode_into(body, &mut pairs)?;
        }
        if let Some(q) = query {
            decode_into(q, &mut pairs)?;
        }
        Ok(Params(pairs))
    }

    /// The first value of `name`; empty when absent, as Go's `FormValue`.
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Decodes `application/x-www-form-urlencoded` text.
fn decode_into(s: &str, out: &mut Vec<(String, String)>) -> Result<(), String> {
    for part in s.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        out.push((percent_decode(k)?, percent_decode(v)?));
    }
    Ok(())
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| {
                        format!(
                            "invalid URL escape {:?}",
                            s.get(i..(i + 3).min(s.len())).unwrap_or("%")
                        )
                    })?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| format!("parameter {s:?} is not UTF-8"))
}

/// Parses a timestamp as Prometheus does: unix seconds (fractions rounded
/// to milliseconds) or RFC 3339. Returns milliseconds.
pub fn parse_time(s: &str) -> Result<i64, String> {
    let err = || format!("cannot parse {s:?} to a valid timestamp");
    if let Ok(f) = s.parse::<f64>() {
        if !f.is_finite() || looks_like_word(s) {
            return Err(err());
        }
        let secs = f.trunc();
        let frac_ms = ((f - secs) * 1000.0).round();
        return Ok((secs as i64)
            .saturating_mul(1000)
            .saturating_add(frac_ms as i64));
    }
    parse_rfc3339(s).ok_or_else(err)
}

/// Rust parses `inf`/`nan`/`infinity`, which Go would too but which make
/// no sense as times or durations.
fn looks_like_word(s: &str) -> bool {
    s.chars()
        .any(|c| c.is_ascii_alphabetic() && !matches!(c, 'e' | 'E'))
}

/// Parses a duration as Prometheus does: float seconds or a Prometheus
/// duration (`1h30m`, `15s`, `100ms`). Returns milliseconds, truncated.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    if let Ok(f) = s.parse::<f64>() {
        if !f.is_finite() || looks_like_word(s) {
            return Err(format!("cannot parse {s:?} to a valid duration"));
        }
        let ns = f * 1e9;
        if ns > i64::MAX as f64 || ns < i64::MIN as f64 {
            return Err(format!(
                "cannot parse {s:?} to a valid duration. It overflows int64"
            ));
        }
        return Ok((f * 1000.0).trunc() as i64);
    }
    parse_prometheus_duration(s).ok_or_else(|| format!("cannot parse {s:?} to a valid duration"))
}

/// A non-negative duration parameter as a [`Duration`].
pub fn parse_std_duration(s: &str) -> Result<Duration, String> {
    let ms = parse_duration(s)?;
    Ok(Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
}

/// Parses Prometheus' duration syntax: units `y w d h m s ms`, each at most
/// once, largest first (`1d12h`, `5m`, `0`). Returns milliseconds.
pub fn parse_prometheus_duration(s: &str) -> Option<i64> {
    if s == "0" {
        return Some(0);
    }
    const UNITS: [(&str, i64); 7] = [
        ("y", 365 * 24 * 3_600_000),
        ("w", 7 * 24 * 3_600_000),
        ("d", 24 * 3_600_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ];
    let mut rest = s;
    let mut total: i64 = 0;
    let mut next_unit = 0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let idx = UNITS.iter().position(|(u, _)| *u == unit)?;
        if idx < next_unit {
            return None;
        }
        next_unit = idx + 1;
        total = total.checked_add(n.checked_mul(UNITS[idx].1)?)?;
    }
    Some(total)
}

/// Parses RFC 3339 (`2023-11-14T22:13:20Z`, `...20.123+02:00`) to ms.
fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || min > 59
        || sec > 59
    {
        return None;
    }
    let mut i = 19;
    let mut millis = 0;
    if b[i] == b'.' {
        let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        let frac = &s[i + 1..i + 1 + digits];
        millis = format!("{frac:0<3}")[..3].parse::<i64>().ok()?;
        i += 1 + digits;
    }
    let offset_secs = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let off = oh * 3600 + om * 60;
            if *sign == b'-' {
                -off
            } else {
                off
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset_secs;
    Some(secs * 1000 + millis)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_both_formats() {
        assert_eq!(parse_time("1700000000"), Ok(1_700_000_000_000));
        assert_eq!(parse_time("1700000000.123"), Ok(1_700_000_000_123));
        assert_eq!(parse_time("1700000000.1236"), Ok(1_700_000_000_124));
        assert_eq!(parse_time("-1.5"), Ok(-1500));
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Ok(1_700_000_000_000));
        assert_eq!(parse_time("2023-11-14T22:13:20.5Z"), Ok(1_700_000_000_500));
        assert_eq!(
            parse_time("2023-11-15T00:13:20.123456789+02:00"),
            Ok(1_700_000_000_123)
        );
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_time("2024-02-29T00:00:00Z"), Ok(1_709_164_800_000));
        assert_eq!(
            parse_time("abc"),
            Err("cannot parse \"abc\" to a valid timestamp".to_owned())
        );
        for bad in [
            "",
            "NaN",
            "inf",
            "2023-02-30T00:00:00Z",
            "2023-11-14 22:13:20Z",
            "2023-11-14T22:13:20",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_in_both_formats() {
        assert_eq!(parse_duration("15s"), Ok(15_000));
        assert_eq!(parse_duration("1m30s"), Ok(90_000));
        assert_eq!(parse_duration("1h"), Ok(3_600_000));
        assert_eq!(parse_duration("100ms"), Ok(100));
        assert_eq!(parse_duration("1d2h"), Ok(26 * 3_600_000));
        assert_eq!(parse_duration("1y"), Ok(365 * 24 * 3_600_000));
        assert_eq!(parse_duration("15"), Ok(15_000));
        assert_eq!(parse_duration("0.5"), Ok(500));
        assert_eq!(parse_duration("0"), Ok(0));
        assert_eq!(parse_duration("-3"), Ok(-3000));
        for bad in ["", "1x", "s", "30s1m", "1m1m", "Inf", "1e300"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_duration("abc"),
            Err("cannot parse \"abc\" to a valid duration".to_owned())
        );
    }

    #[test]
    fn forms_decode_and_keep_order() {
        let p = Params::parse(
            Some("match%5B%5D=up&match[]=a%7Bb%3D%22c%22%7D&x=1+2"),
            Some(b"match[]=first"),
        )
        .unwrap();
        assert_eq!(p.all("match[]"), vec!["first", "up", "a{b=\"c\"}"]);
        assert_eq!(p.get("x"), "1 2");
        assert_eq!(p.get("missing"), "");
        assert!(Params::parse(Some("a=%zz"), None).is_err());
        assert!(Params::parse(Some("a=%4"), None).is_err());
    }

    #[test]
    fn default_range_matches_prometheus() {
        assert_eq!(MIN_TIME_MS, -9_223_309_901_257_974_000);
        assert_eq!(MAX_TIME_MS, 9_223_309_901_257_974_999);
    }
}
