//! Just enough PromQL reading for `tests/grafana.rs`: the queries of a Grafana dashboard,
//! the `herald_*` metrics each one selects with their label matchers, the labels of its
//! `by (...)` clauses, and the exported name behind a histogram series.

use serde_json::Value;

/// One query of the dashboard: where it is (panel title or variable) and its PromQL.
pub struct Query {
    pub place: String,
    pub expr: String,
}

/// Every target `expr` of every panel (rows' nested panels included) and every templating
/// variable's query.
pub fn queries(d: &Value) -> Vec<Query> {
    fn walk(panels: &Value, out: &mut Vec<Query>) {
        for p in panels.as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or("(untitled)");
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = t["expr"].as_str() {
                    let place = format!("panel {title:?} (target {})", t["refId"]);
                    out.push(Query {
                        place,
                        expr: expr.to_string(),
                    });
                }
            }
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&d["panels"], &mut out);
    for v in d["templating"]["list"].as_array().into_iter().flatten() {
        let expr = v["query"]["query"]
            .as_str()
            .or_else(|| v["query"].as_str())
            .or_else(|| v["definition"].as_str());
        if let Some(expr) = expr {
            out.push(Query {
                place: format!("variable ${}", v["name"].as_str().unwrap_or("?")),
                expr: expr.to_string(),
            });
        }
    }
    out
}

/// One metric a query reads: its name as written, and the label matchers of its selector
/// (label name, operator, value).
#[derive(Debug)]
pub struct Selector {
    pub name: String,
    pub matchers: Vec<(String, String, String)>,
}

pub fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Every `herald_[a-z0-9_]+` token of `expr` that starts a name, with its selector's matchers.
pub fn selectors(expr: &str) -> Vec<Selector> {
    let mut out = Vec::new();
    for (at, _) in expr.match_indices("herald_") {
        if expr[..at].chars().next_back().is_some_and(is_name_char) {
            continue; // inside a longer name (or a second match inside one of ours)
        }
        let tail = &expr[at..];
        let len = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        let matchers = match tail[len..].strip_prefix('{') {
            Some(body) => {
                let end = body.find('}').expect("a selector ends with }");
                parse_matchers(&body[..end])
            }
            None => Vec::new(),
        };
        out.push(Selector {
            name: tail[..len].to_string(),
            matchers,
        });
    }
    out
}

/// `a="x", b=~"y"` -> [(a, =, x), (b, =~, y)].
pub fn parse_matchers(body: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut rest = body.trim();
    while !rest.is_empty() {
        let name_len = rest.find(|c: char| !is_name_char(c)).unwrap_or(rest.len());
        let name = rest[..name_len].to_string();
        let r = rest[name_len..].trim_start();
        let op_len = r.find('"').expect("a quoted label value");
        let op = r[..op_len].trim().to_string();
        let r = &r[op_len + 1..];
        let close = r.find('"').expect("a closing quote");
        out.push((name, op, r[..close].to_string()));
        rest = r[close + 1..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    out
}

/// The labels of every `by (...)` clause of `expr`.
pub fn grouping_labels(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("by (") {
        let body = &rest[at + 4..];
        let end = body.find(')').expect("a by clause ends with )");
        out.extend(body[..end].split(',').map(|l| l.trim().to_string()));
        rest = &body[end..];
    }
    out
}

/// The series name a selector reads and the exported name it comes from: `_bucket`, `_sum`
/// and `_count` name series of a histogram.
pub fn base_name(name: &str) -> (&str, Option<&str>) {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            return (base, Some(suffix));
        }
    }
    (name, None)
}
