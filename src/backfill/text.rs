//! A streaming parser of the OpenMetrics and Prometheus text exposition
//! formats, for historic data: every sample must carry a timestamp.
//!
//! * `name{label="value",...} value [timestamp] [# exemplar]`, with `\\`,
//!   `\"` and `\n` escapes in label values, quoted metric and label names
//!   (`{"my.metric","a.b"="c"}`), `NaN`, `+Inf` and `-Inf` values.
//! * `# TYPE`, `# HELP`, `# UNIT` and other comments are skipped; `# EOF`
//!   ends the input.
//! * Timestamps are seconds (with up to millisecond precision, exact) in
//!   OpenMetrics, integer milliseconds in the Prometheus text format.

use std::io::{BufRead, Read};

/// Longest line accepted, so that a file without newlines cannot take all
/// the memory.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// Which text format, for the unit of timestamps and the escapes allowed.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum TextFormat {
    /// OpenMetrics 1.0: timestamps in seconds (`1700000000.5`).
    #[value(name = "openmetrics")]
    OpenMetrics,
    /// Prometheus text format 0.0.4: timestamps in milliseconds.
    Prometheus,
}

/// One sample of the input.
#[derive(Debug, Clone, PartialEq)]
pub struct TextSample {
    /// `__name__` first, then the labels in input order.
    pub labels: Vec<(String, String)>,
    pub value: f64,
    pub timestamp_ms: i64,
}

/// What a line holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    Sample(TextSample),
    /// A comment, metadata or an empty line.
    Skip,
    /// `# EOF`: the end of the exposition.
    Eof,
}

/// Parses one line (without its line ending).
pub fn parse_line(line: &str, format: TextFormat) -> Result<Line, String> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.trim().is_empty() {
        return Ok(Line::Skip);
    }
    if let Some(rest) = line.strip_prefix('#') {
        if rest.trim() == "EOF" {
            return Ok(Line::Eof);
        }
        return Ok(Line::Skip);
    }
    let mut c = Cursor { s: line, pos: 0 };
    let mut labels: Vec<(String, String)> = Vec::new();
    let mut name: Option<String> = None;
    if c.peek() != Some('{') {
        let n = c.take_while(is_metric_name_char);
        if n.is_empty() {
            return Err(format!(
                "expected a metric name, found {:?}",
                c.rest_preview()
            ));
        }
        name = Some(n.to_owned());
        // The Prometheus text format allows blanks before the label set.
        let after = c.pos;
        c.skip_ws();
        if c.peek() != Some('{') {
            c.pos = after;
        }
    }
    if c.peek() == Some('{') {
        c.pos += 1;
        parse_label_set(&mut c, &mut name, &mut labels, format)?;
    }
    let Some(name) = name else {
        return Err("the sample has no metric name".into());
    };
    if name.is_empty() {
        return Err("the metric name is empty".into());
    }
    labels.insert(0, ("__name__".to_owned(), name));
    for (i, (n, _)) in labels.iter().enumerate() {
        if labels[..i].iter().any(|(m, _)| m == n) {
            return Err(format!("label {n:?} appears twice"));
        }
    }
    // The value, the timestamp, and an OpenMetrics exemplar after " # ".
    let rest = &c.s[c.pos..];
    if !rest.starts_with([' ', '\t']) {
        return Err(format!(
            "expected a space before the value, found {:?}",
            c.rest_preview()
        ));
    }
    let rest = match rest.find('#') {
        Some(i) => &rest[..i],
        None => rest,
    };
    let mut fields = rest.split([' ', '\t']).filter(|f| !f.is_empty());
    let value = fields.next().ok_or("the sample has no value")?;
    let value = parse_value(value)?;
    let ts = fields.next().ok_or(
        "the sample has no timestamp: backfilling needs the original time of every sample",
    )?;
    let timestamp_ms = match format {
        TextFormat::OpenMetrics => parse_seconds(ts)?,
        TextFormat::Prometheus => ts.parse::<i64>().map_err(|_| {
            format!("invalid timestamp {ts:?}: the Prometheus text format has integer milliseconds")
        })?,
    };
    if let Some(extra) = fields.next() {
        return Err(format!("unexpected {extra:?} after the timestamp"));
    }
    Ok(Line::Sample(TextSample {
        labels,
        value,
        timestamp_ms,
    }))
}

fn is_metric_name_char(ch: char, first: bool) -> bool {
    ch.is_ascii_alphabetic() || ch == '_' || ch == ':' || (!first && ch.is_ascii_digit())
}

fn is_label_name_char(ch: char, first: bool) -> bool {
    ch.is_ascii_alphabetic() || ch == '_' || (!first && ch.is_ascii_digit())
}

struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<char> {
        self.s[self.pos..].chars().next()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.pos += 1;
        }
    }

    fn take_while(&mut self, f: impl Fn(char, bool) -> bool) -> &'a str {
        let start = self.pos;
        while let Some(ch) = self.peek() {
            if !f(ch, self.pos == start) {
                break;
            }
            self.pos += ch.len_utf8();
        }
        &self.s[start..self.pos]
    }

    fn rest_preview(&self) -> String {
        let rest = &self.s[self.pos..];
        match rest.char_indices().nth(20) {
            Some((i, _)) => format!("{}...", &rest[..i]),
            None => rest.to_owned(),
        }
    }

    /// A double-quoted string (the opening quote is next), unescaped.
    fn quoted(&mut self, format: TextFormat, what: &str) -> Result<String, String> {
        if self.peek() != Some('"') {
            return Err(format!(
                "expected a quoted {what}, found {:?}",
                self.rest_preview()
            ));
        }
        self.pos += 1;
        let mut out = String::new();
        let mut chars = self.s[self.pos..].char_indices();
        while let Some((i, ch)) = chars.next() {
            match ch {
                '"' => {
                    self.pos += i + 1;
                    return Ok(out);
                }
                '\\' => match chars.next() {
                    Some((_, '\\')) => out.push('\\'),
                    Some((_, '"')) => out.push('"'),
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, other)) => match format {
                        // Prometheus keeps unknown escapes as written.
                        TextFormat::Prometheus => {
                            out.push('\\');
                            out.push(other);
                        }
                        TextFormat::OpenMetrics => {
                            return Err(format!("invalid escape \\{other} in a {what}: only \\\\, \\\" and \\n are allowed"));
                        }
                    },
                    None => break,
                },
                '\n' => return Err(format!("newline in a {what}")),
                _ => out.push(ch),
            }
        }
        Err(format!("unterminated {what}: missing closing quote"))
    }
}

/// The inside of `{...}` (the `{` is consumed).
fn parse_label_set(
    c: &mut Cursor<'_>,
    name: &mut Option<String>,
    labels: &mut Vec<(String, String)>,
    format: TextFormat,
) -> Result<(), String> {
    loop {
        c.skip_ws();
        match c.peek() {
            Some('}') => {
                c.pos += 1;
                return Ok(());
            }
            None => return Err("unterminated label set: missing '}'".into()),
            _ => {}
        }
        // A label name, or a quoted metric or label name.
        let (label, quoted) = if c.peek() == Some('"') {
            (c.quoted(format, "name")?, true)
        } else {
            let n = c.take_while(is_label_name_char);
            if n.is_empty() {
                return Err(format!(
                    "expected a label name, found {:?}",
                    c.rest_preview()
                ));
            }
            (n.to_owned(), false)
        };
        c.skip_ws();
        if c.peek() == Some('=') {
            c.pos += 1;
            c.skip_ws();
            let value = c.quoted(format, "label value")?;
            labels.push((label, value));
        } else if quoted && name.is_none() && labels.is_empty() {
            *name = Some(label);
        } else {
            return Err(format!("expected '=' after label name {label:?}"));
        }
        c.skip_ws();
        match c.peek() {
            Some(',') => c.pos += 1,
            Some('}') => {}
            None => return Err("unterminated label set: missing '}'".into()),
            Some(_) => {
                return Err(format!(
                    "expected ',' or '}}' in the label set, found {:?}",
                    c.rest_preview()
                ))
            }
        }
    }
}

/// A float as Prometheus writes them: digits, `NaN`, `+Inf`, `-Inf`.
pub fn parse_value(s: &str) -> Result<f64, String> {
    let bad = || format!("invalid value {s:?}");
    let lower = s.to_ascii_lowercase();
    match lower.as_str() {
        "nan" => return Ok(f64::NAN),
        "+inf" | "inf" => return Ok(f64::INFINITY),
        "-inf" => return Ok(f64::NEG_INFINITY),
        _ => {}
    }
    // Rust accepts "infinity" and "nan" spellings Prometheus does not
    // write; refuse anything that is not a number.
    if lower.contains("inf") || lower.contains("nan") {
        return Err(bad());
    }
    s.parse::<f64>().map_err(|_| bad())
}

/// OpenMetrics seconds to milliseconds: exact for up to three decimals,
/// rounded to the nearest millisecond beyond.
pub fn parse_seconds(s: &str) -> Result<i64, String> {
    let bad =
        || format!("invalid timestamp {s:?}: OpenMetrics timestamps are seconds since the epoch");
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (int, frac) = match digits.split_once('.') {
        Some((i, f)) => (i, f),
        None => (digits, ""),
    };
    let plain = !int.is_empty()
        && int.len() <= 12
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit());
    if plain {
        let secs: i64 = int.parse().map_err(|_| bad())?;
        let mut ms = secs * 1000;
        let mut scale = 100;
        for b in frac.bytes().take(3) {
            ms += i64::from(b - b'0') * scale;
            scale /= 10;
        }
        if frac.len() > 3 && frac.as_bytes()[3] >= b'5' {
            ms += 1;
        }
        return Ok(if neg { -ms } else { ms });
    }
    let f: f64 = s.parse().map_err(|_| bad())?;
    let ms = (f * 1000.0).round();
    if !ms.is_finite() || ms.abs() > 9.0e15 {
        return Err(bad());
    }
    Ok(ms as i64)
}

/// Reads samples from a text exposition, tracking the byte offset after
/// each line so that a run can resume there.
pub struct TextReader<R> {
    reader: R,
    format: TextFormat,
    buf: Vec<u8>,
    /// Bytes consumed: the offset of the next line.
    pub offset: u64,
    /// The number of the last line read (1-based).
    pub line: u64,
    done: bool,
}

impl<R: BufRead> TextReader<R> {
    /// Reads from `reader`, positioned at byte `offset` which is the start
    /// of line `line + 1`.
    pub fn new(reader: R, format: TextFormat, offset: u64, line: u64) -> Self {
        TextReader {
            reader,
            format,
            buf: Vec::new(),
            offset,
            line,
            done: false,
        }
    }

    /// The next sample, or `None` at the end of the input or `# EOF`.
    /// Errors name the line.
    pub fn next_sample(&mut self) -> Result<Option<TextSample>, String> {
        while !self.done {
            self.buf.clear();
            let n = std::io::Read::by_ref(&mut self.reader)
                .take(MAX_LINE_BYTES as u64 + 1)
                .read_until(b'\n', &mut self.buf)
                .map_err(|e| format!("line {}: read failed: {e}", self.line + 1))?;
            if n == 0 {
                self.done = true;
                break;
            }
            self.line += 1;
            if n > MAX_LINE_BYTES {
                return Err(format!(
                    "line {}: longer than {MAX_LINE_BYTES} bytes",
                    self.line
                ));
            }
            self.offset += n as u64;
            let bytes = self.buf.strip_suffix(b"\n").unwrap_or(&self.buf);
            let text = std::str::from_utf8(bytes)
                .map_err(|_| format!("line {}: not valid UTF-8", self.line))?;
            match parse_line(text, self.format).map_err(|e| format!("line {}: {e}", self.line))? {
                Line::Sample(s) => return Ok(Some(s)),
                Line::Skip => {}
                Line::Eof => self.done = true,
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(line: &str) -> TextSample {
        match parse_line(line, TextFormat::OpenMetrics) {
            Ok(Line::Sample(s)) => s,
            other => panic!("{line}: {other:?}"),
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn plain_samples() {
        let s = sample("http_requests_total{method=\"post\",code=\"200\"} 1027 1700000000");
        assert_eq!(
            s.labels,
            labels(&[
                ("__name__", "http_requests_total"),
                ("method", "post"),
                ("code", "200")
            ])
        );
        assert_eq!(s.value, 1027.0);
        assert_eq!(s.timestamp_ms, 1_700_000_000_000);
        let s = sample("up 1 1700000000.25");
        assert_eq!(s.labels, labels(&[("__name__", "up")]));
        assert_eq!(s.timestamp_ms, 1_700_000_000_250);
        let s = sample("m{} 1.5e3 1700000000.0004");
        assert_eq!(s.value, 1500.0);
        assert_eq!(s.timestamp_ms, 1_700_000_000_000);
        let s = sample("m{a=\"b\",} 2 1700000000.0005");
        assert_eq!(s.timestamp_ms, 1_700_000_000_001);
        assert_eq!(sample("m 1 1.7e9").timestamp_ms, 1_700_000_000_000);
        assert_eq!(sample("m 1 -1.5").timestamp_ms, -1500);
        let s = sample("m { a = \"b\" , c=\"d\" }\t3\t1700000000");
        assert_eq!(
            s.labels,
            labels(&[("__name__", "m"), ("a", "b"), ("c", "d")])
        );
    }

    #[test]
    fn escapes_in_label_values() {
        let s = sample(r#"m{path="C:\\dir\\",msg="say \"hi\"\nbye",x="{},#"} 1 10"#);
        assert_eq!(
            s.labels,
            labels(&[
                ("__name__", "m"),
                ("path", "C:\\dir\\"),
                ("msg", "say \"hi\"\nbye"),
                ("x", "{},#")
            ])
        );
        assert!(parse_line(r#"m{a="\t"} 1 10"#, TextFormat::OpenMetrics)
            .unwrap_err()
            .contains("invalid escape"));
        match parse_line(r#"m{a="\t"} 1 10"#, TextFormat::Prometheus) {
            Ok(Line::Sample(s)) => assert_eq!(s.labels[1].1, "\\t"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn quoted_names() {
        let s = sample(r#"{"my.metric","a.b"="c"} 1 10"#);
        assert_eq!(s.labels, labels(&[("__name__", "my.metric"), ("a.b", "c")]));
    }

    #[test]
    fn special_values() {
        assert!(sample("m NaN 1").value.is_nan());
        assert_eq!(sample("m +Inf 1").value, f64::INFINITY);
        assert_eq!(sample("m -Inf 1").value, f64::NEG_INFINITY);
        assert_eq!(sample("m -0.5 1").value, -0.5);
        assert!(parse_value("infinity").is_err());
        assert!(parse_value("1,5").is_err());
    }

    #[test]
    fn exemplars_are_ignored() {
        let s = sample(r#"foo_bucket{le="0.5"} 3 1700000000 # {trace_id="abc"} 0.3 1699999999"#);
        assert_eq!(s.value, 3.0);
        assert_eq!(s.timestamp_ms, 1_700_000_000_000);
    }

    #[test]
    fn prometheus_milliseconds() {
        match parse_line("m{a=\"b\"} 4 1700000000123", TextFormat::Prometheus) {
            Ok(Line::Sample(s)) => assert_eq!(s.timestamp_ms, 1_700_000_000_123),
            other => panic!("{other:?}"),
        }
        assert!(parse_line("m 4 1700000000.5", TextFormat::Prometheus).is_err());
    }

    #[test]
    fn comments_and_eof() {
        for l in [
            "# TYPE m counter",
            "# HELP m Some help",
            "# UNIT m seconds",
            "",
            "  ",
            "# anything",
        ] {
            assert_eq!(
                parse_line(l, TextFormat::OpenMetrics),
                Ok(Line::Skip),
                "{l:?}"
            );
        }
        assert_eq!(parse_line("# EOF", TextFormat::OpenMetrics), Ok(Line::Eof));
    }

    #[test]
    fn bad_lines() {
        for (line, want) in [
            ("m 1", "no timestamp"),
            ("m", "space before the value"),
            ("m ", "no value"),
            ("m abc 1", "invalid value"),
            ("m 1 abc", "invalid timestamp"),
            ("m 1 2 3", "after the timestamp"),
            ("m{a=\"b\" 1 2", "expected ',' or '}'"),
            ("m{a=\"b 1 2", "unterminated"),
            ("m{a} 1 2", "expected '='"),
            ("m{a=b} 1 2", "expected a quoted label value"),
            ("m{a=\"1\",a=\"2\"} 1 2", "appears twice"),
            ("{a=\"1\"} 1 2", "no metric name"),
            ("1m 1 2", "expected a metric name"),
            ("m{1a=\"x\"} 1 2", "expected a label name"),
        ] {
            let err = parse_line(line, TextFormat::OpenMetrics).expect_err(line);
            assert!(err.contains(want), "{line:?}: {err}");
        }
    }

    #[test]
    fn reader_counts_lines_and_offsets() {
        let text = "# TYPE a gauge\na 1 10\n\na{x=\"y\"} 2 20\r\n# EOF\nignored 3 30\n";
        let mut r = TextReader::new(text.as_bytes(), TextFormat::OpenMetrics, 0, 0);
        let s = r.next_sample().unwrap().unwrap();
        assert_eq!((s.value, r.line, r.offset), (1.0, 2, 22));
        let s = r.next_sample().unwrap().unwrap();
        assert_eq!((s.value, s.timestamp_ms, r.line), (2.0, 20_000, 4));
        assert_eq!(r.next_sample().unwrap(), None);

        let bad = "a 1 10\nb 2 20\nc{ 3 30\n";
        let mut r = TextReader::new(bad.as_bytes(), TextFormat::OpenMetrics, 0, 0);
        assert!(r.next_sample().unwrap().is_some());
        assert!(r.next_sample().unwrap().is_some());
        let err = r.next_sample().unwrap_err();
        assert!(err.starts_with("line 3: "), "{err}");

        // Resuming at an offset keeps counting lines from there.
        let mut r = TextReader::new(&bad.as_bytes()[7..], TextFormat::OpenMetrics, 7, 1);
        assert_eq!(r.next_sample().unwrap().unwrap().value, 2.0);
        assert!(r.next_sample().unwrap_err().starts_with("line 3: "));
    }
}
