//! Where function calls, aggregations and their arguments start in the
//! query text, so that annotations can point at them as Prometheus'
//! (`PromQL warning: ... (1:25)`).
//!
//! The parser keeps no positions, so the query is scanned for tokens and
//! the k-th call of a function in the syntax tree (walked in source order)
//! is matched with the k-th `name (` in the text.

use std::collections::HashMap;

use promql_parser::parser::{AggregateExpr, Call, Expr};

/// A position in the query text: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pos {
    pub line: usize,
    pub col: usize,
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Ident,
    Open,
    Close,
    Comma,
    Other,
}

/// The tokens of a query that matter for locating calls: identifiers,
/// parentheses and commas, with their byte offsets. Strings and comments
/// are skipped; everything else is `Other`.
fn tokens(query: &str) -> Vec<(Tok, usize, usize)> {
    let b = query.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' | b'\'' | b'`' => {
                let start = i;
                i += 1;
                while i < b.len() && b[i] != c {
                    if b[i] == b'\\' && c != b'`' {
                        i += 1;
                    }
                    i += 1;
                }
                i = (i + 1).min(b.len());
                out.push((Tok::Other, start, i));
            }
            b'(' => {
                out.push((Tok::Open, i, i + 1));
                i += 1;
            }
            b')' => {
                out.push((Tok::Close, i, i + 1));
                i += 1;
            }
            b',' => {
                out.push((Tok::Comma, i, i + 1));
                i += 1;
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
                    i += 1;
                }
                out.push((Tok::Ident, start, i));
            }
            _ => {
                let start = i;
                i += query[i..].chars().next().map_or(1, char::len_utf8);
                out.push((Tok::Other, start, i));
            }
        }
    }
    out
}

/// Positions of the calls and aggregations of one query.
#[derive(Debug, Default)]
pub(crate) struct Positions {
    query: String,
    toks: Vec<(Tok, usize, usize)>,
    /// Call or aggregation node address -> index of its name token.
    nodes: HashMap<usize, usize>,
}

impl Positions {
    /// Locates every call and aggregation of `expr`, parsed from `query`.
    pub fn new(query: &str, expr: &Expr) -> Self {
        let toks = tokens(query);
        let mut nodes = HashMap::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        walk(expr, &mut |node| {
            let (addr, name) = match node {
                Node::Call(c) => (c as *const Call as usize, c.func.name.to_owned()),
                Node::Aggregate(a) => (a as *const AggregateExpr as usize, a.op.to_string()),
            };
            let k = seen.entry(name.clone()).or_default();
            if let Some(idx) = nth_name(query, &toks, &name, *k) {
                nodes.insert(addr, idx);
            }
            *k += 1;
        });
        Positions {
            query: query.to_owned(),
            toks,
            nodes,
        }
    }

    /// The query text.
    pub fn query(&self) -> &str {
        &self.query
    }

    fn pos(&self, byte: usize) -> Pos {
        let before = &self.query[..byte.min(self.query.len())];
        let line = before.matches('\n').count() + 1;
        let col = byte - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        Pos { line, col }
    }

    /// Where a call starts (its function name).
    pub fn call(&self, c: &Call) -> Option<Pos> {
        let idx = *self.nodes.get(&(c as *const Call as usize))?;
        Some(self.pos(self.toks[idx].1))
    }

    /// Where argument `arg` of a call starts.
    pub fn call_arg(&self, c: &Call, arg: usize) -> Option<Pos> {
        let idx = *self.nodes.get(&(c as *const Call as usize))?;
        self.arg_after_open(idx + 1, arg)
    }

    /// Where argument `arg` of an aggregation starts (0 is the parameter
    /// of `topk`, `quantile`, ...).
    pub fn aggregate_arg(&self, a: &AggregateExpr, arg: usize) -> Option<Pos> {
        let idx = *self.nodes.get(&(a as *const AggregateExpr as usize))?;
        let mut open = idx + 1;
        // `quantile by (x) (...)`: skip the grouping clause.
        if let Some((Tok::Ident, s, e)) = self.toks.get(open) {
            let word = self.query[*s..*e].to_ascii_lowercase();
            if word == "by" || word == "without" {
                open = self.matching_close(open + 1)? + 1;
            }
        }
        self.arg_after_open(open, arg)
    }

    /// Index of the `)` closing the `(` at `open`.
    fn matching_close(&self, open: usize) -> Option<usize> {
        let mut depth = 0usize;
        for (i, t) in self.toks.iter().enumerate().skip(open) {
            match t.0 {
                Tok::Open => depth += 1,
                Tok::Close => {
                    depth = depth.checked_sub(1)?;
                    if depth == 0 {
                        return Some(i);
                    }
                }
                _ => {}
            }
        }
        None
    }

    /// Start of argument `arg` of the parenthesised list opening at token
    /// `open`.
    fn arg_after_open(&self, open: usize, arg: usize) -> Option<Pos> {
        if self.toks.get(open)?.0 != Tok::Open {
            return None;
        }
        let mut depth = 0usize;
        let mut commas = 0;
        for t in self.toks.iter().skip(open + 1) {
            if depth == 0 && commas == arg && t.0 != Tok::Comma && t.0 != Tok::Close {
                return Some(self.pos(t.1));
            }
            match t.0 {
                Tok::Open => depth += 1,
                Tok::Close if depth == 0 => return None,
                Tok::Close => depth -= 1,
                Tok::Comma if depth == 0 => commas += 1,
                _ => {}
            }
        }
        None
    }
}

/// Index of the `k`-th identifier `name` (case-insensitive, as PromQL
/// keywords are) followed by `(`, `by` or `without`.
fn nth_name(query: &str, toks: &[(Tok, usize, usize)], name: &str, k: usize) -> Option<usize> {
    toks.iter()
        .enumerate()
        .filter(|(i, t)| {
            t.0 == Tok::Ident
                && query[t.1..t.2].eq_ignore_ascii_case(name)
                && match toks.get(i + 1) {
                    Some((Tok::Open, _, _)) => true,
                    Some((Tok::Ident, s, e)) => {
                        let w = query[*s..*e].to_ascii_lowercase();
                        w == "by" || w == "without"
                    }
                    _ => false,
                }
        })
        .nth(k)
        .map(|(i, _)| i)
}

enum Node<'a> {
    Call(&'a Call),
    Aggregate(&'a AggregateExpr),
}

/// Visits calls and aggregations in source order.
fn walk<'a>(expr: &'a Expr, f: &mut impl FnMut(Node<'a>)) {
    match expr {
        Expr::Aggregate(a) => {
            f(Node::Aggregate(a));
            // `quantile(0.5, x)`: the parameter comes first in the text.
            if let Some(p) = &a.param {
                walk(p, f);
            }
            walk(&a.expr, f);
        }
        Expr::Unary(u) => walk(&u.expr, f),
        Expr::Binary(b) => {
            walk(&b.lhs, f);
            walk(&b.rhs, f);
        }
        Expr::Paren(p) => walk(&p.expr, f),
        Expr::Subquery(s) => walk(&s.expr, f),
        Expr::Call(c) => {
            f(Node::Call(c));
            for a in &c.args.args {
                walk(a, f);
            }
        }
        Expr::NumberLiteral(_)
        | Expr::StringLiteral(_)
        | Expr::VectorSelector(_)
        | Expr::MatrixSelector(_)
        | Expr::Extension(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call_of(expr: &Expr) -> &Call {
        match expr {
            Expr::Call(c) => c,
            _ => panic!("not a call"),
        }
    }

    #[test]
    fn finds_calls_and_arguments() {
        let q = "histogram_quantile(0.8, series)";
        let e = promql_parser::parser::parse(q).unwrap();
        let p = Positions::new(q, &e);
        let c = call_of(&e);
        assert_eq!(p.call(c).unwrap().to_string(), "1:1");
        assert_eq!(p.call_arg(c, 1).unwrap().to_string(), "1:25");
        assert_eq!(p.call_arg(c, 0).unwrap().to_string(), "1:20");
    }

    #[test]
    fn nested_calls_of_one_name_in_source_order() {
        let q = "sort(\n  sort( x ) )";
        let e = promql_parser::parser::parse(q).unwrap();
        let p = Positions::new(q, &e);
        let outer = call_of(&e);
        let inner = call_of(&outer.args.args[0]);
        assert_eq!(p.call(outer).unwrap().to_string(), "1:1");
        assert_eq!(p.call(inner).unwrap().to_string(), "2:3");
        assert_eq!(p.call_arg(inner, 0).unwrap().to_string(), "2:9");
    }

    #[test]
    fn aggregation_parameter_after_grouping() {
        let q = "quantile by (a, \"b(\") (NaN, x)";
        let e = promql_parser::parser::parse(q).unwrap();
        let p = Positions::new(q, &e);
        let Expr::Aggregate(a) = &e else { panic!() };
        assert_eq!(p.aggregate_arg(a, 0).unwrap().to_string(), "1:24");
    }
}
