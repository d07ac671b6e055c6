//! Runs Prometheus' own PromQL test cases (`promql/promqltest/testdata`,
//! shipped in `shared/promql-testdata/` beside the project) through the
//! engine, classifies every eval case and fails on any wrong answer.
//!
//! * passed: the engine's answer matches Prometheus' expectation (values
//!   within promqltest's relative tolerance 1e-6, label sets, order only
//!   with `expect ordered`, errors for `expect fail`, with message/regex).
//!   Like promqltest, an instant query is also evaluated as a range query
//!   ending at the same time, and the last step must agree.
//! * failed: a wrong answer, an error where a result was expected, or a
//!   panic. Any failure not in [`KNOWN_FAILURES`] fails the test.
//! * unsupported: the engine answers "not supported yet", the case needs
//!   something the runner cannot load (native histograms), promql-parser
//!   rejects what Prometheus accepts, or the answer is right but the case
//!   expects an annotation (warning/info), which the engine does not emit.
//! * skipped: the case uses a feature Prometheus itself gates behind a
//!   feature flag.

use std::collections::{BTreeMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::FutureExt;
use promql_parser::label::MatchOp as AstMatchOp;
use promql_parser::parser::{Expr, VectorSelector};
use tidemark_query::engine::{Annotations, QueryError, QueryOptions, QueryResult, QueryValue};
use tidemark_query::test_store::MemStore;
use tidemark_query::{Engine, EngineOptions};
use tidemark_storage::matcher::matches_all;
use tidemark_storage::{is_stale_nan, Label, Labels, MatchOp, Matcher, Sample, STALE_NAN_BITS};

const TENANT: &str = "conformance";

/// Cases known to fail, as `file:line` and why. The test checks that each
/// still fails, so that a fixed case leaves this list.
const KNOWN_FAILURES: &[(&str, &str)] = &[];

/// Whole files of features Prometheus gates behind feature flags.
const EXPERIMENTAL_FILES: &[(&str, &str)] = &[
    (
        "duration_expression.test",
        "duration expressions (promql-duration-expr)",
    ),
    (
        "extended_vectors.test",
        "extended range selectors anchored/smoothed (promql-extended-range-selectors)",
    ),
    (
        "fill-modifier.test",
        "fill/fill_left/fill_right binary modifiers (promql-binop-fill-modifiers)",
    ),
    ("info.test", "info() (promql-experimental-functions)"),
    (
        "type_and_unit.test",
        "type-and-unit labels (type-and-unit-labels)",
    ),
    (
        "start_timestamps.test",
        "start-timestamp-aware rate/increase (@st series; st-storage)",
    ),
];

/// Functions and aggregations Prometheus marks experimental.
const EXPERIMENTAL_FUNCTIONS: &[&str] = &["info"];

fn data_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/promql-testdata"
    ))
}

/// Extra directories of `.test` files to run, from
/// `TIDEMARK_PROMQL_TESTDATA` (separated by `:`).
fn extra_dirs() -> Vec<PathBuf> {
    std::env::var_os("TIDEMARK_PROMQL_TESTDATA")
        .map(|v| std::env::split_paths(&v).filter(|p| !p.as_os_str().is_empty()).collect())
        .unwrap_or_default()
}

/// The `.test` files of a directory, sorted.
fn test_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "test"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .test files in {}", dir.display());
    files
}

// ---------------------------------------------------------------------------
// The script format.

/// An expectation of an eval command.
#[derive(Debug, Default)]
struct Expect {
    fail: bool,
    fail_msg: Option<String>,
    fail_regex: Option<String>,
    ordered: bool,
    warn: bool,
    info: bool,
    /// `expect warn [msg:|regex:] ...` lines.
    warn_exps: Vec<AnnotationExpect>,
    /// `expect info [msg:|regex:] ...` lines.
    info_exps: Vec<AnnotationExpect>,
    no_warn: bool,
    no_info: bool,
    string: Option<String>,
    /// `expect range vector from <start> to <end> step <step>`.
    range_vector: Option<(i64, i64, i64)>,
    /// Expected series/values (bodies of `{...} values` or scalar lines).
    results: Vec<ExpectedLine>,
    /// Why the expectations cannot be checked, if they cannot.
    unloadable: Option<String>,
}

/// What an `expect warn` / `expect info` line accepts.
#[derive(Debug)]
enum AnnotationExpect {
    Any,
    Msg(String),
    Regex(String),
}

impl AnnotationExpect {
    fn parse(arg: &str) -> Self {
        if let Some(m) = arg.strip_prefix("msg:") {
            AnnotationExpect::Msg(m.trim().to_owned())
        } else if let Some(r) = arg.strip_prefix("regex:") {
            AnnotationExpect::Regex(r.trim().to_owned())
        } else {
            AnnotationExpect::Any
        }
    }

    fn matches(&self, anno: &str) -> bool {
        match self {
            AnnotationExpect::Any => true,
            AnnotationExpect::Msg(m) => m == anno,
            AnnotationExpect::Regex(re) => regex_matches(re, anno),
        }
    }
}

/// An unanchored match, as Go's `regexp.MatchString`.
fn regex_matches(re: &str, s: &str) -> bool {
    Matcher::new(MatchOp::Regex, "msg", format!("(?s:.*(?:{re}).*)")).is_ok_and(|r| r.matches(s))
}

/// promqltest's annotation check: every expect line matches an annotation
/// of its kind and, when there are expect lines of a kind, every
/// annotation of that kind matches one; `no_warn` / `no_info` forbid them.
fn check_annotations(expect: &Expect, a: &Annotations) -> Result<(), String> {
    if expect.warn && a.warnings.is_empty() {
        return Err("expected warnings but got none".into());
    }
    if expect.info && a.infos.is_empty() {
        return Err("expected infos but got none".into());
    }
    for (kind, exps, got, forbid) in [
        ("warn", &expect.warn_exps, &a.warnings, expect.no_warn),
        ("info", &expect.info_exps, &a.infos, expect.no_info),
    ] {
        if forbid && !got.is_empty() {
            return Err(format!("unexpected {kind} annotations: {got:?}"));
        }
        if exps.is_empty() {
            continue;
        }
        for e in exps {
            if !got.iter().any(|g| e.matches(g)) {
                return Err(format!("expected {kind} annotation {e:?}, got {got:?}"));
            }
        }
        for g in got {
            if !exps.iter().any(|e| e.matches(g)) {
                return Err(format!("unexpected {kind} annotation {g:?}"));
            }
        }
    }
    Ok(())
}

#[derive(Debug)]
struct ExpectedLine {
    /// `None` for a scalar.
    labels: Option<Labels>,
    values: Vec<Option<f64>>,
}

#[derive(Debug)]
enum Query {
    Instant { at: i64 },
    Range { start: i64, end: i64, step: i64 },
}

#[derive(Debug)]
struct EvalCase {
    line: usize,
    query: Query,
    expr: String,
    expect: Expect,
}

#[derive(Debug)]
enum Command {
    Clear,
    Load {
        series: Vec<LoadSeries>,
        nhcb: bool,
    },
    Eval(Box<EvalCase>),
    /// A command the runner does not know.
    Unknown {
        line: usize,
        text: String,
    },
}

#[derive(Debug)]
enum LoadSeries {
    Floats(Labels, Vec<Sample>),
    /// A series the runner cannot load, with the labels it would have.
    Unloadable(Option<Labels>, String),
}

fn ms(s: &str) -> Result<i64, String> {
    tidemark_query::api::params::parse_prometheus_duration(s)
        .ok_or_else(|| format!("bad duration {s:?}"))
}

fn parse_script(text: &str) -> Vec<Command> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let raw = lines[i];
        let line = raw.trim();
        let lineno = i + 1;
        i += 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut body = Vec::new();
        while i < lines.len()
            && !lines[i].trim().is_empty()
            && (lines[i].starts_with(' ') || lines[i].starts_with('\t'))
        {
            let l = lines[i].trim();
            if !l.starts_with('#') {
                body.push(l);
            }
            i += 1;
        }
        out.push(parse_command(line, lineno, &body));
    }
    out
}

fn parse_command(line: &str, lineno: usize, body: &[&str]) -> Command {
    let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let rest = rest.trim();
    match word {
        "clear" => Command::Clear,
        "load" | "load_with_nhcb" => match ms(rest) {
            Ok(interval) => Command::Load {
                series: body.iter().map(|l| parse_load_line(l, interval)).collect(),
                nhcb: word == "load_with_nhcb",
            },
            Err(e) => Command::Unknown {
                line: lineno,
                text: format!("{line}: {e}"),
            },
        },
        "eval" | "eval_fail" | "eval_warn" | "eval_info" | "eval_ordered" => {
            match parse_eval(word, rest, lineno, body) {
                Ok(c) => Command::Eval(Box::new(c)),
                Err(e) => Command::Unknown {
                    line: lineno,
                    text: format!("{line}: {e}"),
                },
            }
        }
        _ => Command::Unknown {
            line: lineno,
            text: line.to_owned(),
        },
    }
}

fn parse_eval(word: &str, rest: &str, lineno: usize, body: &[&str]) -> Result<EvalCase, String> {
    let (query, expr) = if let Some(r) = rest.strip_prefix("instant at ") {
        let (at, expr) = r
            .trim()
            .split_once(char::is_whitespace)
            .ok_or("no expression")?;
        (Query::Instant { at: ms(at)? }, expr)
    } else if let Some(r) = rest.strip_prefix("range from ") {
        let w: Vec<&str> = r.trim().splitn(6, char::is_whitespace).collect();
        if w.len() != 6 || w[1] != "to" || w[3] != "step" {
            return Err("bad range command".into());
        }
        (
            Query::Range {
                start: ms(w[0])?,
                end: ms(w[2])?,
                step: ms(w[4])?,
            },
            w[5],
        )
    } else {
        return Err("bad eval command".into());
    };
    let mut expect = Expect {
        fail: word == "eval_fail",
        warn: word == "eval_warn",
        info: word == "eval_info",
        ordered: word == "eval_ordered",
        ..Default::default()
    };
    for l in body {
        if let Some(e) = l.strip_prefix("expect ") {
            let e = e.trim();
            let (kind, arg) = e.split_once(char::is_whitespace).unwrap_or((e, ""));
            let arg = arg.trim();
            match kind {
                "fail" => {
                    expect.fail = true;
                    if let Some(m) = arg.strip_prefix("msg:") {
                        expect.fail_msg = Some(m.trim().to_owned());
                    } else if let Some(r) = arg.strip_prefix("regex:") {
                        expect.fail_regex = Some(r.trim().to_owned());
                    }
                }
                "warn" => expect.warn_exps.push(AnnotationExpect::parse(arg)),
                "info" => expect.info_exps.push(AnnotationExpect::parse(arg)),
                "no_warn" => expect.no_warn = true,
                "no_info" => expect.no_info = true,
                "ordered" => expect.ordered = true,
                "string" => expect.string = Some(unquote(arg)?),
                "range" => {
                    // `range vector from <start> to <end> step <step>`
                    let w: Vec<&str> = arg.split_whitespace().collect();
                    match w.as_slice() {
                        ["vector", "from", s, "to", e, "step", st] => {
                            expect.range_vector = Some((ms(s)?, ms(e)?, ms(st)?))
                        }
                        _ => return Err(format!("bad range vector expectation {arg:?}")),
                    }
                }
                other => return Err(format!("unknown expectation {other:?}")),
            }
            continue;
        }
        if l.contains("{{") {
            expect.unloadable = Some("native histograms in expected results".into());
            continue;
        }
        match parse_expected_line(l) {
            Ok(e) => expect.results.push(e),
            Err(err) => expect.unloadable = Some(format!("expected line {l:?}: {err}")),
        }
    }
    Ok(EvalCase {
        line: lineno,
        query,
        expr: expr.trim().to_owned(),
        expect,
    })
}

/// A double- or back-quoted string of an `expect string` line.
fn unquote(arg: &str) -> Result<String, String> {
    let arg = arg.trim();
    if arg.len() >= 2 && arg.starts_with('`') && arg.ends_with('`') {
        return Ok(arg[1..arg.len() - 1].to_owned());
    }
    if arg.len() >= 2 && arg.starts_with('"') && arg.ends_with('"') {
        let mut out = String::new();
        let mut chars = arg[1..arg.len() - 1].chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some(o) => out.push(o),
                    None => {}
                }
            } else {
                out.push(c);
            }
        }
        return Ok(out);
    }
    Err(format!("expected a quoted string, got {arg:?}"))
}

fn parse_expected_line(l: &str) -> Result<ExpectedLine, String> {
    let first = l.chars().next().unwrap_or(' ');
    if first.is_ascii_digit()
        || first == '-'
        || first == '+'
        || first == '.'
        || l.starts_with("Inf")
        || l.starts_with("NaN")
    {
        let values = expand(l)?;
        return Ok(ExpectedLine {
            labels: None,
            values,
        });
    }
    let (labels, rest) = parse_series_desc(l)?;
    Ok(ExpectedLine {
        labels: Some(labels),
        values: expand(rest)?,
    })
}

fn parse_load_line(l: &str, interval: i64) -> LoadSeries {
    let (labels, rest) = match parse_series_desc(l) {
        Ok(x) => x,
        Err(e) => return LoadSeries::Unloadable(None, format!("series {l:?}: {e}")),
    };
    if rest.contains("{{") {
        return LoadSeries::Unloadable(Some(labels), "native histogram samples".into());
    }
    match expand(rest) {
        Ok(values) => LoadSeries::Floats(
            labels,
            values
                .into_iter()
                .enumerate()
                .filter_map(|(k, v)| {
                    v.map(|v| Sample {
                        t: k as i64 * interval,
                        v,
                    })
                })
                .collect(),
        ),
        Err(e) => LoadSeries::Unloadable(Some(labels), format!("series {l:?}: {e}")),
    }
}

/// Parses `name{a="b", "c"="d"}` (each part optional) and returns the
/// labels and the rest of the line.
fn parse_series_desc(s: &str) -> Result<(Labels, &str), String> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut labels = Vec::new();
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
        i += 1;
    }
    if i > 0 {
        labels.push(Label::new("__name__", &s[..i]));
    }
    if i < b.len() && b[i] == b'{' {
        i += 1;
        loop {
            while i < b.len() && (b[i] == b' ' || b[i] == b'\t' || b[i] == b',') {
                i += 1;
            }
            if i >= b.len() {
                return Err("unterminated labels".into());
            }
            if b[i] == b'}' {
                i += 1;
                break;
            }
            let name = if b[i] == b'"' {
                let (v, n) = parse_string(&s[i..])?;
                i += n;
                v
            } else {
                let st = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                if st == i {
                    return Err(format!("bad label at {}", &s[st..]));
                }
                s[st..i].to_owned()
            };
            while i < b.len() && b[i] == b' ' {
                i += 1;
            }
            if i < b.len() && b[i] == b'=' {
                i += 1;
                while i < b.len() && b[i] == b' ' {
                    i += 1;
                }
                let (v, n) = parse_string(&s[i..])?;
                i += n;
                labels.push(Label::new(name, v));
            } else {
                // A quoted metric name.
                labels.push(Label::new("__name__", name));
            }
        }
    }
    if i == 0 {
        return Err("no series description".into());
    }
    let rest = &s[i..];
    if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return Err(format!("unexpected {rest:?} after labels"));
    }
    Ok((Labels::new(labels), rest.trim()))
}

/// Parses a double-quoted Go string at the start of `s`: its value and
/// length in bytes.
fn parse_string(s: &str) -> Result<(String, usize), String> {
    let b = s.as_bytes();
    if b.first() != Some(&b'"') {
        return Err(format!("expected a string at {s:?}"));
    }
    let mut out = Vec::new();
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'"' => return Ok((String::from_utf8_lossy(&out).into_owned(), i + 1)),
            b'\\' if i + 1 < b.len() => {
                i += 1;
                match b[i] {
                    b'n' => out.push(b'\n'),
                    b't' => out.push(b'\t'),
                    b'\\' => out.push(b'\\'),
                    b'"' => out.push(b'"'),
                    b'x' if i + 2 < b.len() => {
                        let h =
                            u8::from_str_radix(&s[i + 1..i + 3], 16).map_err(|e| e.to_string())?;
                        out.push(h);
                        i += 2;
                    }
                    c => return Err(format!("unknown escape \\{}", c as char)),
                }
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Err("unterminated string".into())
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "Inf" | "+Inf" | "inf" | "+inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        "stale" => Some(f64::from_bits(STALE_NAN_BITS)),
        // No hexadecimal: promqltest's lexer disallows it in series
        // descriptions, where `0x59` is 0 repeated.
        _ => s.parse().ok(),
    }
}

/// Expands series notation into one entry per step (`None` for `_`).
fn expand(values: &str) -> Result<Vec<Option<f64>>, String> {
    let mut out = Vec::new();
    for tok in values.split_whitespace() {
        if tok == "_" {
            out.push(None);
        } else if let Some(n) = tok.strip_prefix("_x") {
            let n: usize = n.parse().map_err(|_| format!("bad repeat {tok:?}"))?;
            out.extend(std::iter::repeat_n(None, n));
        } else if let Some(v) = parse_value(tok) {
            out.push(Some(v));
        } else if let Some((seq, n)) = tok.rsplit_once('x') {
            let n: usize = n.parse().map_err(|_| format!("bad repeat {tok:?}"))?;
            // `a+b`, `a-b` (a possibly negative or with an exponent) or `a`.
            let split = seq
                .char_indices()
                .skip(1)
                .find(|&(i, c)| {
                    (c == '+' || c == '-') && !matches!(seq.as_bytes()[i - 1], b'e' | b'E')
                })
                .map(|(i, _)| i);
            let (a, b) = match split {
                None => (
                    parse_value(seq).ok_or_else(|| format!("bad value {tok:?}"))?,
                    0.0,
                ),
                Some(i) => {
                    let a = parse_value(&seq[..i]).ok_or_else(|| format!("bad start {tok:?}"))?;
                    let b =
                        parse_value(&seq[i + 1..]).ok_or_else(|| format!("bad step {tok:?}"))?;
                    (a, if &seq[i..i + 1] == "-" { -b } else { b })
                }
            };
            // promqltest accumulates, as here.
            let mut v = a;
            out.push(Some(v));
            for _ in 0..n {
                v += b;
                out.push(Some(v));
            }
        } else {
            return Err(format!("bad value {tok:?}"));
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Classification.

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Passed,
    Failed(String),
    Unsupported(String),
    Skipped(String),
}

/// What is loaded: float series and the labels of series the runner could
/// not load (native histograms).
#[derive(Default)]
struct Loaded {
    floats: Vec<(Labels, Vec<Sample>)>,
    unloadable: Vec<(Option<Labels>, String)>,
    store: Option<Arc<MemStore>>,
}

impl Loaded {
    fn engine(&mut self) -> Engine {
        let store = self
            .store
            .get_or_insert_with(|| {
                let mut s = MemStore::default();
                for (l, samples) in &self.floats {
                    s.add(TENANT, l.clone(), samples.clone());
                }
                Arc::new(s)
            })
            .clone();
        // As Prometheus' test engine: experimental functions enabled (the
        // runner skips the cases of those not implemented).
        Engine::new(
            store,
            EngineOptions {
                experimental_functions: true,
                ..EngineOptions::default()
            },
        )
    }
}

fn experimental_reason(file: &str, expr: &str) -> Option<String> {
    if let Some((_, why)) = EXPERIMENTAL_FILES.iter().find(|(f, _)| *f == file) {
        return Some(why.to_string());
    }
    let idents = identifiers_followed_by_paren(expr);
    for f in EXPERIMENTAL_FUNCTIONS {
        if idents.iter().any(|(i, _)| i == f) {
            return Some(format!("{f}() (promql-experimental-functions)"));
        }
    }
    for (i, after_at) in &idents {
        if ["step", "range"].contains(&i.as_str())
            || (!after_at && ["start", "end"].contains(&i.as_str()))
        {
            return Some(format!(
                "{i}() in a duration expression (promql-duration-expr)"
            ));
        }
        if ["fill", "fill_left", "fill_right"].contains(&i.as_str()) {
            return Some("fill modifiers (promql-binop-fill-modifiers)".into());
        }
    }
    for w in ["anchored", "smoothed"] {
        if expr
            .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .any(|t| t == w)
        {
            return Some(format!(
                "{w} range selectors (promql-extended-range-selectors)"
            ));
        }
    }
    if has_duration_expression(expr) {
        return Some("duration expressions (promql-duration-expr)".into());
    }
    None
}

/// Identifiers directly followed by `(`, and whether `@` precedes them.
fn identifiers_followed_by_paren(expr: &str) -> Vec<(String, bool)> {
    let b = expr.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut in_str: Option<u8> = None;
    while i < b.len() {
        let c = b[i];
        if let Some(q) = in_str {
            if c == b'\\' {
                i += 1;
            } else if c == q {
                in_str = None;
            }
            i += 1;
            continue;
        }
        if c == b'"' || c == b'\'' || c == b'`' {
            in_str = Some(c);
            i += 1;
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            let st = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
                i += 1;
            }
            let mut j = i;
            while j < b.len() && b[j] == b' ' {
                j += 1;
            }
            if j < b.len() && b[j] == b'(' {
                let before = expr[..st].trim_end();
                out.push((expr[st..i].to_owned(), before.ends_with('@')));
            }
            continue;
        }
        i += 1;
    }
    out
}

/// Arithmetic or parentheses inside `[...]`, or after `offset`.
/// The expression with the contents of its string literals removed, so
/// that `[`, `-` and the like inside regexes are not taken for syntax.
fn without_strings(expr: &str) -> String {
    let mut out = String::with_capacity(expr.len());
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in expr.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' && q != '`' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                    out.push(c);
                }
            }
            None => {
                if matches!(c, '"' | '\'' | '`') {
                    quote = Some(c);
                }
                out.push(c);
            }
        }
    }
    out
}

fn has_duration_expression(expr: &str) -> bool {
    let expr = without_strings(expr);
    let expr = expr.as_str();
    let mut rest = expr;
    while let Some(i) = rest.find('[') {
        let Some(j) = rest[i..].find(']') else { break };
        let inner = &rest[i + 1..i + j];
        if inner.contains(['+', '*', '/', '(', '%', '^'])
            || inner.trim_start().starts_with('-')
            || inner.split(':').any(|p| p.trim().contains('-'))
        {
            return true;
        }
        rest = &rest[i + j..];
    }
    let lower = expr.to_ascii_lowercase();
    let mut rest = lower.as_str();
    while let Some(i) = rest.find("offset") {
        let after = rest[i + 6..].trim_start();
        let after = after.strip_prefix('-').unwrap_or(after).trim_start();
        if after.starts_with('(') {
            return true;
        }
        let token: String = after
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != ')' && *c != ',')
            .collect();
        if token.contains(['+', '*', '/', '%', '^']) {
            return true;
        }
        rest = &rest[i + 6..];
    }
    false
}

/// Every vector selector of an expression.
fn selectors<'a>(e: &'a Expr, out: &mut Vec<&'a VectorSelector>) {
    match e {
        Expr::Aggregate(a) => {
            selectors(&a.expr, out);
            if let Some(p) = &a.param {
                selectors(p, out);
            }
        }
        Expr::Unary(u) => selectors(&u.expr, out),
        Expr::Binary(b) => {
            selectors(&b.lhs, out);
            selectors(&b.rhs, out);
        }
        Expr::Paren(p) => selectors(&p.expr, out),
        Expr::Subquery(s) => selectors(&s.expr, out),
        Expr::VectorSelector(vs) => out.push(vs),
        Expr::MatrixSelector(ms) => out.push(&ms.vs),
        Expr::Call(c) => c.args.args.iter().for_each(|a| selectors(a, out)),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

fn storage_matchers(ms: &[promql_parser::label::Matcher]) -> Vec<Matcher> {
    ms.iter()
        .filter_map(|m| {
            let op = match &m.op {
                AstMatchOp::Equal => MatchOp::Equal,
                AstMatchOp::NotEqual => MatchOp::NotEqual,
                AstMatchOp::Re(_) => MatchOp::Regex,
                AstMatchOp::NotRe(_) => MatchOp::NotRegex,
            };
            Matcher::new(op, m.name.clone(), m.value.clone()).ok()
        })
        .collect()
}

/// Whether a selector of `expr` may read a series the runner could not load.
fn touches_unloadable(expr: &Expr, loaded: &Loaded) -> Option<String> {
    if loaded.unloadable.is_empty() {
        return None;
    }
    let mut sels = Vec::new();
    selectors(expr, &mut sels);
    for vs in sels {
        let mut groups = vec![vs.matchers.matchers.clone()];
        groups.extend(vs.matchers.or_matchers.iter().cloned());
        for g in groups {
            let mut m = storage_matchers(&g);
            if let Some(name) = &vs.name {
                m.push(Matcher::equal("__name__", name.clone()));
            }
            for (labels, why) in &loaded.unloadable {
                match labels {
                    Some(l) if !matches_all(&m, l) => {}
                    _ => return Some(why.clone()),
                }
            }
        }
    }
    None
}

/// promqltest's `almost.Equal` with its default epsilon.
fn almost_equal(a: f64, b: f64) -> bool {
    const EPS: f64 = 1e-6;
    const MIN_NORMAL: f64 = 2.2250738585072014e-308;
    if is_stale_nan(a) || is_stale_nan(b) {
        return is_stale_nan(a) && is_stale_nan(b);
    }
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < MIN_NORMAL {
        return diff < EPS * MIN_NORMAL;
    }
    diff / abs_sum.min(f64::MAX) < EPS
}

enum Run {
    Value(QueryResult),
    Error(QueryError),
    Panic(String),
}

async fn run_guarded<F: std::future::Future<Output = Result<QueryResult, QueryError>>>(
    f: F,
) -> Run {
    match AssertUnwindSafe(f).catch_unwind().await {
        Ok(Ok(v)) => Run::Value(v),
        Ok(Err(e)) => Run::Error(e),
        Err(p) => Run::Panic(
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into()),
        ),
    }
}

/// Why a case is skipped when it needs native histograms: they are a
/// separate capability, not part of the float engine.
const NATIVE_HISTOGRAMS: &str = "native histograms (not part of the engine yet)";

async fn classify(file: &str, case: &EvalCase, loaded: &mut Loaded) -> Outcome {
    match classify_case(file, case, loaded).await {
        Outcome::Unsupported(why)
            if why.contains("native histogram") || why.contains("trim operators") =>
        {
            Outcome::Skipped(format!("{NATIVE_HISTOGRAMS}: {why}"))
        }
        other => other,
    }
}

async fn classify_case(file: &str, case: &EvalCase, loaded: &mut Loaded) -> Outcome {
    if let Some(why) = experimental_reason(file, &case.expr) {
        return Outcome::Skipped(why);
    }
    if let Some(why) = &case.expect.unloadable {
        return Outcome::Unsupported(why.clone());
    }
    let parsed = match std::panic::catch_unwind(|| promql_parser::parser::parse(&case.expr)) {
        Ok(Ok(e)) => Some(e),
        Ok(Err(_))
            if !case.expect.fail && (case.expr.contains("</") || case.expr.contains(">/")) =>
        {
            return Outcome::Unsupported(
                "promql-parser 0.11 rejects the histogram trim operators </ and >/".into(),
            );
        }
        Ok(Err(msg)) if !case.expect.fail => {
            return Outcome::Unsupported(format!(
                "promql-parser rejects: {}",
                msg.lines().next().unwrap_or("")
            ));
        }
        Ok(Err(_)) => None,
        Err(_) if !case.expect.fail => return Outcome::Unsupported("promql-parser panics".into()),
        Err(_) => None,
    };
    if let Some(e) = &parsed {
        if let Some(why) = touches_unloadable(e, loaded) {
            return Outcome::Unsupported(why);
        }
    }
    let engine = loaded.engine();
    let opts = QueryOptions::default();
    let run = match case.query {
        Query::Instant { at } => {
            run_guarded(engine.instant_query_result(TENANT, &case.expr, at, &opts)).await
        }
        Query::Range { start, end, step } => {
            run_guarded(engine.range_query_result(TENANT, &case.expr, start, end, step, &opts))
                .await
        }
    };
    let result = match run {
        Run::Panic(p) => return Outcome::Failed(format!("panic: {p}")),
        Run::Error(QueryError::Unsupported(what)) => {
            return Outcome::Unsupported(format!("engine: {what} is not supported yet"))
        }
        Run::Error(e) => {
            let msg = e.to_string();
            if !case.expect.fail {
                return Outcome::Failed(format!("unexpected error: {msg}"));
            }
            if let Some(want) = &case.expect.fail_msg {
                if &msg != want {
                    return Outcome::Failed(format!("error message: want {want:?}, got {msg:?}"));
                }
            }
            if let Some(re) = &case.expect.fail_regex {
                if !regex_matches(re, &msg) {
                    return Outcome::Failed(format!("error {msg:?} does not match /{re}/"));
                }
            }
            return Outcome::Passed;
        }
        Run::Value(v) => v,
    };
    let value = &result.value;
    if case.expect.fail {
        return Outcome::Failed(format!("expected an error, got {}", summarize(value)));
    }
    if let Err(diff) = check_annotations(&case.expect, &result.annotations) {
        return Outcome::Failed(diff);
    }
    if let Some(want) = &case.expect.string {
        return match value {
            QueryValue::String { v, .. } if v == want => Outcome::Passed,
            other => Outcome::Failed(format!("want string {want:?}, got {}", summarize(other))),
        };
    }
    if let Some((start, end, step)) = case.expect.range_vector {
        return match compare_range(&case.expect, value, start, end, step) {
            Ok(()) => Outcome::Passed,
            Err(diff) => Outcome::Failed(format!("range vector: {diff}")),
        };
    }
    let check = match case.query {
        Query::Instant { at } => compare_instant(&case.expect, value, at),
        Query::Range { start, end, step } => compare_range(&case.expect, value, start, end, step),
    };
    if let Err(diff) = check {
        return Outcome::Failed(diff);
    }
    // As promqltest does: the instant query as a range query around the
    // same time must agree with it at that time (not for queries whose
    // start()/end()/range()/step() differ between the two).
    if let Query::Instant { at } = case.query {
        if query_context_functions(&case.expr) {
            return Outcome::Passed;
        }
        let run = run_guarded(engine.range_query_result(
            TENANT,
            &case.expr,
            at - 60_000,
            at + 60_000,
            60_000,
            &opts,
        ))
        .await;
        match run {
            Run::Panic(p) => return Outcome::Failed(format!("range mode: panic: {p}")),
            Run::Error(QueryError::Unsupported(what)) => {
                return Outcome::Unsupported(format!(
                    "engine (range mode): {what} is not supported yet"
                ))
            }
            Run::Error(e) => return Outcome::Failed(format!("range mode: unexpected error: {e}")),
            Run::Value(QueryResult {
                value: QueryValue::Matrix(series),
                ..
            }) => {
                let got: Vec<(Labels, f64)> = series
                    .iter()
                    .filter_map(|s| {
                        s.points
                            .iter()
                            .find(|p| p.t == at)
                            .map(|p| (s.labels.clone(), p.v))
                    })
                    .collect();
                let mut want: Vec<(Labels, f64)> = match value {
                    QueryValue::Vector(v) => v.iter().map(|s| (s.labels.clone(), s.v)).collect(),
                    QueryValue::Scalar { v, .. } => vec![(Labels::default(), *v)],
                    QueryValue::Matrix(_) | QueryValue::String { .. } => vec![],
                };
                want.sort_by(|a, b| a.0.cmp(&b.0));
                let mut got = got;
                got.sort_by(|a, b| a.0.cmp(&b.0));
                let same = want.len() == got.len()
                    && want
                        .iter()
                        .zip(&got)
                        .all(|(w, g)| w.0 == g.0 && almost_equal(w.1, g.1));
                if !same {
                    return Outcome::Failed(format!(
                        "range mode differs at {at}: instant {want:?}, range {got:?}"
                    ));
                }
            }
            Run::Value(r) => {
                return Outcome::Failed(format!("range mode returned {}", summarize(&r.value)))
            }
        }
    }
    Outcome::Passed
}

/// promqltest's `reQueryContextFuncs`: queries it does not re-run in range
/// mode.
fn query_context_functions(expr: &str) -> bool {
    ["start()", "end()", "range()", "step()"]
        .iter()
        .any(|f| expr.contains(f))
}

fn summarize(v: &QueryValue) -> String {
    let s = format!("{v:?}");
    if s.len() > 300 {
        format!("{}...", &s[..300])
    } else {
        s
    }
}

fn fmt_series(l: &Labels, vals: &[String]) -> String {
    format!("{l} {}", vals.join(" "))
}

fn compare_instant(expect: &Expect, value: &QueryValue, at: i64) -> Result<(), String> {
    match value {
        QueryValue::Scalar { v, .. } => {
            let [e] = expect.results.as_slice() else {
                return Err(format!(
                    "got scalar {v}, want {} result lines",
                    expect.results.len()
                ));
            };
            if e.labels.is_some() || e.values.len() != 1 {
                return Err(format!("got scalar {v}, want a series {e:?}"));
            }
            match e.values[0] {
                Some(w) if almost_equal(w, *v) => Ok(()),
                w => Err(format!("scalar: want {w:?}, got {v}")),
            }
        }
        QueryValue::Vector(samples) => {
            let mut want: Vec<(Labels, f64)> = Vec::new();
            for e in &expect.results {
                let Some(l) = &e.labels else {
                    return Err(format!(
                        "want a scalar, got a vector of {} samples",
                        samples.len()
                    ));
                };
                match e.values.as_slice() {
                    [Some(v)] => want.push((l.clone(), *v)),
                    _ => return Err(format!("bad expected line for {l}")),
                }
            }
            if let Some(s) = samples.iter().find(|s| s.t != at) {
                return Err(format!("{}: timestamp {} != {at}", s.labels, s.t));
            }
            let got: Vec<(Labels, f64)> = samples.iter().map(|s| (s.labels.clone(), s.v)).collect();
            if expect.ordered {
                for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                    if g.0 != w.0 {
                        return Err(format!("ordered: position {k}: want {}, got {}", w.0, g.0));
                    }
                }
            }
            let index: BTreeMap<&Labels, f64> = want.iter().map(|(l, v)| (l, *v)).collect();
            for (l, v) in &got {
                match index.get(l) {
                    None => return Err(format!("unexpected series {l} {v}; want {}", list(&want))),
                    Some(w) if !almost_equal(*w, *v) => {
                        return Err(format!("{l}: want {w}, got {v}"))
                    }
                    _ => {}
                }
            }
            if got.len() != want.len() {
                return Err(format!(
                    "want {} series ({}), got {} ({})",
                    want.len(),
                    list(&want),
                    got.len(),
                    list(&got)
                ));
            }
            Ok(())
        }
        QueryValue::Matrix(_) | QueryValue::String { .. } => Err(format!(
            "instant query returned {}",
            summarize(value)
        )),
    }
}

fn list(v: &[(Labels, f64)]) -> String {
    v.iter()
        .map(|(l, x)| format!("{l} {x}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn compare_range(
    expect: &Expect,
    value: &QueryValue,
    start: i64,
    end: i64,
    step: i64,
) -> Result<(), String> {
    let QueryValue::Matrix(series) = value else {
        return Err(format!("range query returned {}", summarize(value)));
    };
    let steps: Vec<i64> = (0..)
        .map(|k| start + k * step)
        .take_while(|t| *t <= end)
        .collect();
    let mut want: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
    for e in &expect.results {
        let l = e.labels.clone().unwrap_or_default();
        if e.values.len() > steps.len() {
            return Err(format!(
                "{l}: {} expected values for {} steps",
                e.values.len(),
                steps.len()
            ));
        }
        let points = e
            .values
            .iter()
            .enumerate()
            .filter_map(|(k, v)| v.map(|v| Sample { t: steps[k], v }))
            .collect();
        want.insert(l, points);
    }
    let mut seen = HashSet::new();
    for g in series {
        let Some(w) = want.get(&g.labels) else {
            return Err(format!(
                "unexpected series {}",
                fmt_series(&g.labels, &points(&g.points))
            ));
        };
        seen.insert(g.labels.clone());
        let same = w.len() == g.points.len()
            && w.iter()
                .zip(&g.points)
                .all(|(a, b)| a.t == b.t && almost_equal(a.v, b.v));
        if !same {
            return Err(format!(
                "{}: want [{}], got [{}]",
                g.labels,
                points(w).join(" "),
                points(&g.points).join(" ")
            ));
        }
    }
    if let Some((l, _)) = want.iter().find(|(l, _)| !seen.contains(*l)) {
        return Err(format!("missing series {l}"));
    }
    Ok(())
}

fn points(p: &[Sample]) -> Vec<String> {
    p.iter().map(|s| format!("{}@{}", s.v, s.t)).collect()
}

// ---------------------------------------------------------------------------

/// Writes a line of the report straight to stderr, past the test harness'
/// output capture, so that the counts and every skip reason are in the
/// test log of every run, passing or not.
macro_rules! report {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

#[derive(Default, Clone, Copy)]
struct Counts {
    passed: usize,
    failed: usize,
    unsupported: usize,
    skipped: usize,
}

#[tokio::test]
async fn promql_conformance() {
    let dir = data_dir();
    assert!(
        dir.is_dir(),
        "PromQL conformance data not found at {} (expected `shared/promql-testdata/` beside the project clone)",
        dir.display()
    );
    let mut files = test_files(&dir);
    for extra in extra_dirs() {
        report!("also running {}", extra.display());
        files.extend(test_files(&extra));
    }

    let mut per_file: Vec<(String, Counts)> = Vec::new();
    let mut failures: Vec<(String, String, String)> = Vec::new();
    let mut reasons: BTreeMap<(bool, String), usize> = BTreeMap::new();
    let mut unknown_commands = Vec::new();
    let mut flagged_seen = HashSet::new();
    let mut per_case: Vec<(String, bool, String)> = Vec::new();
    for path in &files {
        let (name, counts) = run_file(
            path,
            &mut failures,
            &mut reasons,
            &mut per_case,
            &mut unknown_commands,
            &mut flagged_seen,
        )
        .await;
        per_file.push((name, counts));
    }
    let unseen: Vec<&str> = FLAGGED_CASES
        .iter()
        .map(|f| f.at)
        .filter(|a| !flagged_seen.contains(*a))
        .collect();
    assert!(
        unseen.is_empty(),
        "FLAGGED_CASES entries matching no case: {unseen:?}"
    );

    report!(
        "\n{:<28} {:>7} {:>7} {:>12} {:>8}",
        "file", "passed", "failed", "unsupported", "skipped"
    );
    let mut total = Counts::default();
    for (name, c) in &per_file {
        report!(
            "{name:<28} {:>7} {:>7} {:>12} {:>8}",
            c.passed, c.failed, c.unsupported, c.skipped
        );
        total.passed += c.passed;
        total.failed += c.failed;
        total.unsupported += c.unsupported;
        total.skipped += c.skipped;
    }
    report!(
        "{:<28} {:>7} {:>7} {:>12} {:>8}",
        "total", total.passed, total.failed, total.unsupported, total.skipped
    );

    report!("\nskipped and unsupported cases, each with its reason:");
    for (at, skipped, why) in &per_case {
        report!(
            "  {} {at}: {why}",
            if *skipped { "skipped" } else { "UNSUPPORTED" }
        );
    }

    report!("\nunsupported / skipped reasons (count):");
    for ((skipped, why), n) in &reasons {
        report!(
            "  {:>5} {} {why}",
            n,
            if *skipped { "skipped:" } else { "unsupported:" }
        );
    }

    let known: BTreeMap<&str, &str> = KNOWN_FAILURES.iter().copied().collect();
    let mut unexpected = Vec::new();
    if !failures.is_empty() {
        report!("\nfailed cases:");
    }
    for (at, expr, diff) in &failures {
        let tag = if known.contains_key(at.as_str()) {
            " [known]"
        } else {
            ""
        };
        report!("  {at}{tag}: {expr}\n      {diff}");
        if !known.contains_key(at.as_str()) {
            unexpected.push(at.clone());
        }
    }
    let failed_at: HashSet<&str> = failures.iter().map(|f| f.0.as_str()).collect();
    let fixed: Vec<&str> = known
        .keys()
        .copied()
        .filter(|k| !failed_at.contains(k))
        .collect();
    let unexpected_failed = unexpected.len();
    report!(
        "\npromql conformance: {} passed, {} failed, {} unsupported, {} skipped",
        total.passed, unexpected_failed, total.unsupported, total.skipped
    );
    if !known.is_empty() {
        report!(
            "({} known failures listed in KNOWN_FAILURES)",
            failures.len() - unexpected_failed
        );
    }
    assert!(
        unknown_commands.is_empty(),
        "commands the runner cannot parse: {unknown_commands:#?}"
    );
    assert!(
        unexpected.is_empty(),
        "PromQL conformance failures: {unexpected:#?}"
    );
    // Every case that is not skipped (experimental features, native
    // histograms) must pass.
    let unsupported: Vec<&str> = per_case
        .iter()
        .filter(|c| !c.1)
        .map(|c| c.0.as_str())
        .collect();
    assert!(
        unsupported.is_empty(),
        "cases the engine does not support: {unsupported:#?}"
    );
    assert!(
        fixed.is_empty(),
        "known failures that no longer fail; remove them from KNOWN_FAILURES: {fixed:?}"
    );
    // Guard against a runner that silently evaluates nothing.
    assert!(
        total.passed > 100,
        "suspiciously few passing cases: {}",
        total.passed
    );
}

async fn run_file(
    path: &Path,
    failures: &mut Vec<(String, String, String)>,
    reasons: &mut BTreeMap<(bool, String), usize>,
    per_case: &mut Vec<(String, bool, String)>,
    unknown: &mut Vec<String>,
    flagged_seen: &mut HashSet<String>,
) -> (String, Counts) {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut counts = Counts::default();
    for (line, expr, outcome) in run_text(&name, &text, unknown, flagged_seen).await {
        if std::env::var_os("PROMQL_CONFORMANCE_VERBOSE").is_some() {
            println!("{name}:{line}: {expr}: {outcome:?}");
        }
        match outcome {
            Outcome::Passed => counts.passed += 1,
            Outcome::Failed(diff) => {
                counts.failed += 1;
                failures.push((format!("{name}:{line}"), expr, diff));
            }
            Outcome::Unsupported(why) => {
                counts.unsupported += 1;
                *reasons.entry((false, generalize(&why))).or_default() += 1;
                per_case.push((format!("{name}:{line}"), false, why));
            }
            Outcome::Skipped(why) => {
                counts.skipped += 1;
                *reasons.entry((true, generalize(&why))).or_default() += 1;
                per_case.push((format!("{name}:{line}"), true, why));
            }
        }
    }
    (name, counts)
}

/// Runs a script: the line, expression and outcome of each eval case.
async fn run_text(
    name: &str,
    text: &str,
    unknown: &mut Vec<String>,
    flagged_seen: &mut HashSet<String>,
) -> Vec<(usize, String, Outcome)> {
    let mut out = Vec::new();
    let mut loaded = Loaded::default();
    for cmd in parse_script(text) {
        match cmd {
            Command::Clear => loaded = Loaded::default(),
            Command::Load { series, nhcb } => {
                loaded.store = None;
                for s in series {
                    match s {
                        LoadSeries::Floats(l, samples) => {
                            if nhcb
                                && l.metric_name().is_some_and(|n| n.ends_with("_bucket"))
                                && l.get("le").is_some()
                            {
                                // load_with_nhcb also loads a native histogram
                                // with custom buckets named without `_bucket`.
                                let name = l.metric_name().unwrap_or_default();
                                let n = name.strip_suffix("_bucket").unwrap_or(name).to_owned();
                                let hl: Vec<Label> = l
                                    .iter()
                                    .filter(|x| x.name != "le")
                                    .map(|x| {
                                        if x.name == "__name__" {
                                            Label::new("__name__", n.clone())
                                        } else {
                                            x.clone()
                                        }
                                    })
                                    .collect();
                                loaded.unloadable.push((
                                    Some(Labels::new(hl)),
                                    "native histograms with custom buckets (load_with_nhcb)".into(),
                                ));
                            }
                            loaded.floats.push((l, samples));
                        }
                        LoadSeries::Unloadable(l, why) => loaded.unloadable.push((l, why)),
                    }
                }
            }
            Command::Unknown { line, text } => unknown.push(format!("{name}:{line}: {text}")),
            Command::Eval(case) => {
                let at = format!("{name}:{}", case.line);
                let outcome = match FLAGGED_CASES.iter().find(|f| f.at == at) {
                    Some(f) => {
                        flagged_seen.insert(at);
                        flagged_outcome(f, &case, &mut loaded).await
                    }
                    None => classify(name, &case, &mut loaded).await,
                };
                out.push((case.line, case.expr, outcome));
            }
        }
    }
    out
}

/// A case whose expected result depends on a Prometheus feature flag that
/// its test engine turns on, while Prometheus' default gives another
/// answer, which the engine must give.
struct FlaggedCase {
    at: &'static str,
    expr: &'static str,
    flag: &'static str,
    /// Prometheus' answer with the flag off.
    default: DefaultAnswer,
}

/// Prometheus' answer to a [`FlaggedCase`] with the flag off.
enum DefaultAnswer {
    /// This error message.
    Error(&'static str),
    /// An instant vector: (labels as `Labels` displays them, value), in
    /// label order.
    Vector(&'static [(&'static str, f64)]),
}

impl std::fmt::Display for DefaultAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DefaultAnswer::Error(e) => write!(f, "error {e:?}"),
            DefaultAnswer::Vector(v) => write!(f, "vector {v:?}"),
        }
    }
}

const DELAYED_NAME_REMOVAL: &str = "delayed __name__ removal (promql-delayed-name-removal)";

const FLAGGED_CASES: &[FlaggedCase] = &[
    FlaggedCase {
        // "This is an accidental side effect of delayed __name__ label dropping."
        at: "name_label_dropping.test:89",
        expr: r#"sum(rate({env="1"}[10m])) by (env)"#,
        flag: DELAYED_NAME_REMOVAL,
        default: DefaultAnswer::Error(tidemark_query::engine::DUPLICATE_LABELSET),
    },
    // With the flag off the left operand of `or` keeps its name, so the
    // two operands form two groups.
    FlaggedCase {
        at: "name_label_dropping.test:119",
        expr: r#"sum by (__name__) (metric_total{env="1"} or rate(metric_total{env="2"}[5m]))"#,
        flag: DELAYED_NAME_REMOVAL,
        default: DefaultAnswer::Vector(&[("{}", 0.05), ("metric_total{}", 10.0)]),
    },
    FlaggedCase {
        at: "name_label_dropping.test:123",
        expr: r#"sum by (__name__) (rate(metric_total{env="2"}[5m]) or metric_total{env="1"})"#,
        flag: DELAYED_NAME_REMOVAL,
        default: DefaultAnswer::Vector(&[("{}", 0.05), ("metric_total{}", 10.0)]),
    },
    // With the flag off `rate` drops the names at once: the two series
    // collide, as Prometheus' default answers.
    FlaggedCase {
        at: "name_label_dropping.test:59",
        expr: r#"label_replace(rate({env="1"}[10m]), "my_name", "rate_$1", "__name__", "(.+)")"#,
        flag: DELAYED_NAME_REMOVAL,
        default: DefaultAnswer::Error(tidemark_query::engine::DUPLICATE_LABELSET),
    },
    FlaggedCase {
        at: "name_label_dropping.test:64",
        expr: r#"label_replace(rate({env="1"}[10m]), "__name__", "rate_$1", "__name__", "(.+)")"#,
        flag: DELAYED_NAME_REMOVAL,
        default: DefaultAnswer::Error(tidemark_query::engine::DUPLICATE_LABELSET),
    },
    FlaggedCase {
        at: "name_label_dropping.test:69",
        expr: r#"label_join(rate({env="1"}[10m]), "my_name", "_", "__name__")"#,
        flag: DELAYED_NAME_REMOVAL,
        default: DefaultAnswer::Error(tidemark_query::engine::DUPLICATE_LABELSET),
    },
    FlaggedCase {
        at: "name_label_dropping.test:74",
        expr: r#"label_join(rate({env="1"}[10m]), "__name__", "_", "__name__", "env")"#,
        flag: DELAYED_NAME_REMOVAL,
        default: DefaultAnswer::Error(tidemark_query::engine::DUPLICATE_LABELSET),
    },
    // The name is gone before label_replace reads it.
    FlaggedCase {
        at: "name_label_dropping.test:115",
        expr: r#"label_replace(sum by (__name__) (rate(metric_total{env="2"}[5m])), "__name__", "$1", "__name__", "(.+)")"#,
        flag: DELAYED_NAME_REMOVAL,
        default: DefaultAnswer::Vector(&[("{}", 0.05)]),
    },
];

async fn flagged_outcome(f: &FlaggedCase, case: &EvalCase, loaded: &mut Loaded) -> Outcome {
    if case.expr != f.expr {
        return Outcome::Failed(format!(
            "FLAGGED_CASES entry {} is stale: the case is now {:?}",
            f.at, case.expr
        ));
    }
    let engine = loaded.engine();
    let opts = QueryOptions::default();
    let run = match case.query {
        Query::Instant { at } => {
            run_guarded(engine.instant_query_result(TENANT, &case.expr, at, &opts)).await
        }
        Query::Range { start, end, step } => {
            run_guarded(engine.range_query_result(TENANT, &case.expr, start, end, step, &opts))
                .await
        }
    };
    let matches = match (&run, &f.default) {
        (Run::Error(e), DefaultAnswer::Error(want)) => e.to_string() == *want,
        (
            Run::Value(QueryResult {
                value: QueryValue::Vector(got),
                ..
            }),
            DefaultAnswer::Vector(want),
        ) => {
            got.len() == want.len()
                && got.iter().zip(want.iter()).all(|(g, (labels, v))| {
                    g.labels.to_string() == *labels && (g.v - v).abs() <= 1e-9 * v.abs()
                })
        }
        _ => false,
    };
    if matches {
        return Outcome::Skipped(format!(
            "{} (the engine gives Prometheus' default answer)",
            f.flag
        ));
    }
    match run {
        Run::Panic(p) => Outcome::Failed(format!("panic: {p}")),
        Run::Error(e) => Outcome::Failed(format!(
            "want Prometheus' default answer, {}, got error {e}",
            f.default
        )),
        Run::Value(v) => Outcome::Failed(format!(
            "want Prometheus' default answer, {}, got {}",
            f.default,
            summarize(&v.value)
        )),
    }
}

/// Groups reasons: the engine's and parser's messages, without details
/// that vary per case.
fn generalize(why: &str) -> String {
    if why.starts_with("promql-parser rejects") {
        let s: String = why.chars().take(110).collect();
        return s;
    }
    if why.starts_with("series ") || why.starts_with("expected line") {
        return "series notation the runner cannot load".into();
    }
    why.to_owned()
}

// ---------------------------------------------------------------------------
// The runner's own checks: it must be able to fail.

#[test]
fn series_notation_expands_like_promqltest() {
    let v = |s: &str| expand(s).unwrap();
    assert_eq!(v("1+2x3"), [Some(1.0), Some(3.0), Some(5.0), Some(7.0)]);
    assert_eq!(
        v("-1-1x2 _ _x2 5x1"),
        [
            Some(-1.0),
            Some(-2.0),
            Some(-3.0),
            None,
            None,
            None,
            Some(5.0),
            Some(5.0)
        ]
    );
    assert_eq!(v("1e-3+1e-3x1"), [Some(1e-3), Some(2e-3)]);
    assert_eq!(v("0x2"), [Some(0.0), Some(0.0), Some(0.0)]);
    assert!(is_stale_nan(v("stale")[0].unwrap()));
    assert!(expand("1+x").is_err());
    let (l, rest) = parse_series_desc(r#"m{a="x\"y", "b.c"="d"} 1 2"#).unwrap();
    assert_eq!(
        l,
        Labels::from_pairs([("__name__", "m"), ("a", "x\"y"), ("b.c", "d")])
    );
    assert_eq!(rest, "1 2");
    let (l, _) = parse_series_desc(r#"{"quoted.name", x="1"} 1"#).unwrap();
    assert_eq!(l.metric_name(), Some("quoted.name"));
}

#[test]
fn tolerance_is_promqltests() {
    assert!(almost_equal(1.0, 1.0 + 1e-7));
    assert!(!almost_equal(1.0, 1.0 + 1e-5));
    assert!(almost_equal(f64::NAN, f64::NAN));
    assert!(!almost_equal(0.0, 1e-300));
    assert!(!almost_equal(f64::NAN, f64::from_bits(STALE_NAN_BITS)));
}

#[tokio::test]
async fn runner_reports_wrong_answers() {
    let script = r#"
load 5m
  m{job="a"} 0+10x10
  m{job="b"} 0+20x10
  h{job="a"} {{schema:0 sum:1 count:1}}x2

eval instant at 50m sum(m)
  {} 300

eval instant at 50m sum(m)
  {} 300.01

eval instant at 50m sum by (job) (m)
  {job="a"} 100

eval instant at 50m sum by (job) (m)
  {job="a"} 100
  {job="c"} 200

eval instant at 50m m
  expect ordered
  m{job="b"} 200
  m{job="a"} 100

eval instant at 50m m
  m{job="b"} 200
  m{job="a"} 100

eval instant at 50m sum(m)
  expect fail

eval instant at 50m sum(m) +
  expect fail msg: something else

eval instant at 50m 1 + 1
  {} 2

eval instant at 50m 1 + 1
  2

eval range from 0 to 10m step 5m m{job="a"}
  m{job="a"} 0 10 20

eval range from 0 to 10m step 5m m{job="a"}
  m{job="a"} 0 _ 20

eval instant at 50m histogram_quantile(0.5, m)
  {job="a"} 100

eval instant at 5m sum(h)
  {} 1

eval instant at 50m sum(m) +
  expect fail

eval instant at 50m rate(m[10m])
  expect no_info
  {job="a"} 0.03333333333333333
  {job="b"} 0.06666666666666667

eval instant at 50m rate(m[10m])
  expect info msg: PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: "m" (1:6)
  {job="a"} 0.03333333333333333
  {job="b"} 0.06666666666666667

eval instant at 50m rate(m[10m])
  expect info msg: PromQL info: something else (1:6)
  {job="a"} 0.03333333333333333
  {job="b"} 0.06666666666666667

eval instant at 50m sum(m)
  expect warn
  {} 300
"#;
    let mut unknown = Vec::new();
    let got: Vec<(usize, Outcome)> =
        run_text("self.test", script, &mut unknown, &mut HashSet::new())
            .await
            .into_iter()
            .map(|(l, _, o)| (l, o))
            .collect();
    assert!(unknown.is_empty(), "{unknown:?}");
    let kinds: Vec<(usize, &str)> = got
        .iter()
        .map(|(l, o)| {
            (
                *l,
                match o {
                    Outcome::Passed => "passed",
                    Outcome::Failed(_) => "failed",
                    Outcome::Unsupported(_) => "unsupported",
                    Outcome::Skipped(_) => "skipped",
                },
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            (7, "passed"),
            (10, "failed"),
            (13, "failed"),
            (16, "failed"),
            (20, "failed"),
            (25, "passed"),
            (29, "failed"),
            (32, "failed"),
            (35, "failed"),
            (38, "passed"),
            (41, "passed"),
            (44, "failed"),
            (47, "failed"),
            (50, "skipped"),
            (53, "passed"),
            (56, "failed"),
            (61, "passed"),
            (66, "failed"),
            (71, "failed"),
        ],
        "{got:#?}"
    );
}
