//! Warnings and infos a query returns beside its result, worded as
//! Prometheus words them (`PromQL warning: ... (line:col)`).

use std::sync::Mutex;

use super::position::Pos;

/// Most distinct warnings (and, separately, infos) a query keeps; more are
/// dropped so that a query over many series cannot grow this list without
/// bound.
pub const MAX_ANNOTATIONS: usize = 100;

/// The annotations of a query result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Annotations {
    pub warnings: Vec<String>,
    pub infos: Vec<String>,
}

impl Annotations {
    pub fn is_empty(&self) -> bool {
        self.warnings.is_empty() && self.infos.is_empty()
    }
}

/// Collects the annotations of one evaluation, deduplicated.
#[derive(Debug, Default)]
pub(crate) struct AnnotationSink {
    inner: Mutex<Annotations>,
}

fn with_pos(msg: String, pos: Option<Pos>) -> String {
    match pos {
        Some(p) => format!("{msg} ({p})"),
        None => msg,
    }
}

fn push(list: &mut Vec<String>, msg: String) {
    if list.len() < MAX_ANNOTATIONS && !list.contains(&msg) {
        list.push(msg);
    }
}

impl AnnotationSink {
    /// Adds `PromQL warning: {msg} ({pos})`.
    pub fn warn(&self, msg: impl AsRef<str>, pos: Option<Pos>) {
        let s = with_pos(format!("PromQL warning: {}", msg.as_ref()), pos);
        if let Ok(mut a) = self.inner.lock() {
            push(&mut a.warnings, s);
        }
    }

    /// Adds `PromQL info: {msg} ({pos})`.
    pub fn info(&self, msg: impl AsRef<str>, pos: Option<Pos>) {
        let s = with_pos(format!("PromQL info: {}", msg.as_ref()), pos);
        if let Ok(mut a) = self.inner.lock() {
            push(&mut a.infos, s);
        }
    }

    /// What was collected.
    pub fn take(&self) -> Annotations {
        self.inner
            .lock()
            .map(|mut a| std::mem::take(&mut *a))
            .unwrap_or_default()
    }
}

/// The warning for a quantile outside [0, 1].
pub(crate) fn invalid_quantile(q: f64) -> String {
    format!("quantile value should be between 0 and 1, got {}", fmt_g(q))
}

/// Go's `%g` for the floats annotations print.
pub(crate) fn fmt_g(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_owned();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    let s = format!("{v}");
    let exp = if v == 0.0 { 0 } else { v.abs().log10().floor() as i32 };
    if !(-4..21).contains(&exp) {
        // Go switches to exponent form: 1e+21, 1e-05.
        let e = format!("{v:e}");
        if let Some((m, x)) = e.split_once('e') {
            let x: i32 = x.parse().unwrap_or(0);
            let sign = if x < 0 { '-' } else { '+' };
            return format!("{m}e{sign}{:02}", x.abs());
        }
    }
    s
}

/// Go's `%.{prec}g`.
pub(crate) fn fmt_g_prec(v: f64, prec: usize) -> String {
    if !v.is_finite() {
        return fmt_g(v);
    }
    let prec = prec.max(1);
    let e = format!("{:.*e}", prec - 1, v);
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let trim = |m: &str| {
        if m.contains('.') {
            m.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            m.to_owned()
        }
    };
    if exp < -4 || exp >= prec as i32 {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mant), exp.abs())
    } else {
        let decimals = (prec as i32 - 1 - exp).max(0) as usize;
        trim(&format!("{v:.decimals$}"))
    }
}

/// `maybeAddMetricName`: ` for metric name "x"` when the name is known.
pub(crate) fn for_metric_name(name: Option<&str>) -> String {
    match name {
        Some(n) if !n.is_empty() => format!(" for metric name {}", go_quote(n)),
        _ => String::new(),
    }
}

/// Go's `%q` of a string.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deduplicates_and_formats() {
        let s = AnnotationSink::default();
        let p = Some(Pos { line: 1, col: 25 });
        s.warn("a", p);
        s.warn("a", p);
        s.info("b", None);
        let a = s.take();
        assert_eq!(a.warnings, vec!["PromQL warning: a (1:25)"]);
        assert_eq!(a.infos, vec!["PromQL info: b"]);
    }

    #[test]
    fn go_float_format() {
        assert_eq!(fmt_g(1.1), "1.1");
        assert_eq!(fmt_g(-1.0), "-1");
        assert_eq!(fmt_g(f64::NAN), "NaN");
        assert_eq!(fmt_g(1e21), "1e+21");
        assert_eq!(fmt_g(0.00001), "1e-05");
        assert_eq!(fmt_g_prec(0.5, 2), "0.5");
        assert_eq!(fmt_g_prec(12.0, 2), "12");
        assert_eq!(fmt_g_prec(123.0, 2), "1.2e+02");
        assert_eq!(fmt_g_prec(0.000012345, 2), "1.2e-05");
    }

    #[test]
    fn bounded() {
        let s = AnnotationSink::default();
        for i in 0..(MAX_ANNOTATIONS + 10) {
            s.info(i.to_string(), None);
        }
        assert_eq!(s.take().infos.len(), MAX_ANNOTATIONS);
    }
}
