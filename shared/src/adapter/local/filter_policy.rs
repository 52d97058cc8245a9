//! SNS message-body filter policies, evaluated as SNS does.
//!
//! A policy is a JSON object. Each key names a field of the message; a nested object descends
//! into the message, an array lists the conditions of which any may match. All keys must match
//! (AND). Where the message holds an array on the path (`Records[]`), every element is looked at
//! and the key matches when any element does. Conditions: exact strings, numbers, booleans and
//! null; `{"prefix": s}`, `{"suffix": s}`, `{"equals-ignore-case": s}`, `{"anything-but": v|[v]}`,
//! `{"exists": bool}`, `{"numeric": [op, n, …]}`. A `"$or": [policy, …]` key matches when
//! any of its sub-policies does.

use serde_json::Value;

/// Why a policy is rejected when a subscription is declared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid filter policy: {0}")]
pub struct PolicyError(pub String);

#[derive(Debug, Clone, PartialEq)]
enum Cond {
    Exact(Value),
    Prefix(String),
    Suffix(String),
    IgnoreCase(String),
    AnythingBut(Vec<Value>),
    Exists(bool),
    Numeric(Vec<(String, f64)>),
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Leaf(Vec<Cond>),
    Branch(Vec<(String, Node)>),
    Or(Vec<Vec<(String, Node)>>),
}

/// A parsed message-body filter policy.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterPolicy {
    root: Vec<(String, Node)>,
}

impl FilterPolicy {
    /// Parse a policy.
    ///
    /// # Errors
    /// [`PolicyError`] for a shape SNS would reject.
    pub fn parse(policy: &Value) -> Result<Self, PolicyError> {
        let Value::Object(map) = policy else {
            return Err(PolicyError("a policy must be a JSON object".into()));
        };
        if map.is_empty() {
            return Err(PolicyError("a policy needs at least one key".into()));
        }
        Ok(Self {
            root: parse_branch(map)?,
        })
    }

    /// Whether `message` matches. A message that is not a JSON object never matches.
    pub fn matches(&self, message: &Value) -> bool {
        message.is_object() && branch_matches(&self.root, &[message])
    }
}

fn parse_branch(map: &serde_json::Map<String, Value>) -> Result<Vec<(String, Node)>, PolicyError> {
    map.iter()
        .map(|(k, v)| {
            let node = match v {
                Value::Array(alts) if k == "$or" => {
                    if alts.len() < 2 {
                        return Err(PolicyError("$or needs at least two policies".into()));
                    }
                    Node::Or(
                        alts.iter()
                            .map(|a| match a {
                                Value::Object(m) if !m.is_empty() => parse_branch(m),
                                _ => Err(PolicyError("$or takes policy objects".into())),
                            })
                            .collect::<Result<_, _>>()?,
                    )
                }
                Value::Object(inner) => Node::Branch(parse_branch(inner)?),
                Value::Array(conds) if !conds.is_empty() => {
                    Node::Leaf(conds.iter().map(parse_cond).collect::<Result<_, _>>()?)
                }
                _ => {
                    return Err(PolicyError(format!(
                        "key {k:?} needs a non-empty array or object"
                    )));
                }
            };
            Ok((k.clone(), node))
        })
        .collect()
}

fn parse_cond(v: &Value) -> Result<Cond, PolicyError> {
    let Value::Object(op) = v else {
        return Ok(Cond::Exact(v.clone()));
    };
    let (name, arg) = op
        .iter()
        .next()
        .filter(|_| op.len() == 1)
        .ok_or_else(|| PolicyError("an operator object needs exactly one key".into()))?;
    let string = |what: &str| {
        arg.as_str()
            .map(str::to_owned)
            .ok_or_else(|| PolicyError(format!("{what} needs a string")))
    };
    Ok(match name.as_str() {
        "prefix" => Cond::Prefix(string("prefix")?),
        "suffix" => Cond::Suffix(string("suffix")?),
        "equals-ignore-case" => Cond::IgnoreCase(string("equals-ignore-case")?),
        "exists" => Cond::Exists(
            arg.as_bool()
                .ok_or_else(|| PolicyError("exists needs a boolean".into()))?,
        ),
        "anything-but" => Cond::AnythingBut(match arg {
            Value::Array(vs) => vs.clone(),
            other => vec![other.clone()],
        }),
        "numeric" => {
            let parts = arg
                .as_array()
                .ok_or_else(|| PolicyError("numeric needs an array".into()))?;
            let mut ops = Vec::new();
            for pair in parts.chunks(2) {
                match pair {
                    [Value::String(o), n] if ["=", "<", "<=", ">", ">="].contains(&o.as_str()) => {
                        let n = n
                            .as_f64()
                            .ok_or_else(|| PolicyError("numeric needs numbers".into()))?;
                        ops.push((o.clone(), n));
                    }
                    _ => return Err(PolicyError("numeric needs [op, number, …]".into())),
                }
            }
            Cond::Numeric(ops)
        }
        other => return Err(PolicyError(format!("unsupported operator {other:?}"))),
    })
}

/// Step into `key` of every value, flattening arrays (SNS looks at every element).
fn children<'a>(values: &[&'a Value], key: &str) -> Vec<&'a Value> {
    let mut out = Vec::new();
    for v in values {
        match v {
            Value::Object(m) => {
                if let Some(c) = m.get(key) {
                    push_flat(c, &mut out);
                }
            }
            Value::Array(items) => {
                for item in items {
                    if let Value::Object(m) = item
                        && let Some(c) = m.get(key)
                    {
                        push_flat(c, &mut out);
                    }
                }
            }
            _ => {}
        }
    }
    out
}

fn push_flat<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(items) => {
            for i in items {
                push_flat(i, out);
            }
        }
        other => out.push(other),
    }
}

fn branch_matches(branch: &[(String, Node)], values: &[&Value]) -> bool {
    branch.iter().all(|(key, node)| {
        if let Node::Or(alts) = node {
            return alts.iter().any(|alt| branch_matches(alt, values));
        }
        let found = children(values, key);
        match node {
            Node::Or(_) => unreachable!("handled above"),
            Node::Branch(inner) => !found.is_empty() && branch_matches(inner, &found),
            Node::Leaf(conds) => conds.iter().any(|c| cond_matches(c, &found)),
        }
    })
}

fn cond_matches(cond: &Cond, found: &[&Value]) -> bool {
    match cond {
        Cond::Exists(want) => found.is_empty() != *want,
        Cond::AnythingBut(excluded) => {
            !found.is_empty()
                && found
                    .iter()
                    .all(|v| !excluded.iter().any(|e| values_equal(e, v)))
        }
        other => found.iter().any(|v| scalar_matches(other, v)),
    }
}

fn values_equal(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn scalar_matches(cond: &Cond, v: &Value) -> bool {
    match cond {
        Cond::Exact(e) => values_equal(e, v),
        Cond::Prefix(p) => v.as_str().is_some_and(|s| s.starts_with(p.as_str())),
        Cond::Suffix(p) => v.as_str().is_some_and(|s| s.ends_with(p.as_str())),
        Cond::IgnoreCase(p) => v.as_str().is_some_and(|s| s.eq_ignore_ascii_case(p)),
        Cond::Numeric(ops) => v.as_f64().is_some_and(|n| {
            ops.iter().all(|(op, x)| match op.as_str() {
                "=" => n == *x,
                "<" => n < *x,
                "<=" => n <= *x,
                ">" => n > *x,
                _ => n >= *x,
            })
        }),
        Cond::Exists(_) | Cond::AnythingBut(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(v: Value) -> FilterPolicy {
        FilterPolicy::parse(&v).unwrap()
    }

    fn s3(bucket: &str, key: &str) -> Value {
        json!({"Records": [{"eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": bucket}, "object": {"key": key, "size": 10}}}]})
    }

    #[test]
    fn nested_keys_match_inside_arrays() {
        let policy = p(json!({"Records": {"s3": {"bucket": {"name": ["uploads"]}},
            "eventName": [{"prefix": "ObjectCreated:"}]}}));
        assert!(policy.matches(&s3("uploads", "uploads/a/b")));
        assert!(!policy.matches(&s3("media", "media/a/b/manifest.json")));
    }

    #[test]
    fn suffix_and_prefix_and_or_within_a_key() {
        let policy = p(json!({"Records": {"s3": {"object": {"key": [
            {"suffix": "/manifest.json"}, {"suffix": "/failure.json"}]}}}}));
        assert!(policy.matches(&s3("media", "media/b/f/manifest.json")));
        assert!(policy.matches(&s3("media", "media/b/f/failure.json")));
        assert!(!policy.matches(&s3("media", "media/b/f/320w.webp")));
    }

    #[test]
    fn any_element_of_an_array_matches() {
        let policy = p(json!({"tags": ["b"]}));
        assert!(policy.matches(&json!({"tags": ["a", "b"]})));
        assert!(!policy.matches(&json!({"tags": ["a"]})));
        let records = json!({"Records": [{"x": 1}, {"x": 2}]});
        assert!(p(json!({"Records": {"x": [2]}})).matches(&records));
    }

    #[test]
    fn every_key_must_match() {
        let policy = p(json!({"event_name": ["IMAGE_REQUESTED"], "v": [{"numeric": [">=", 2]}]}));
        assert!(policy.matches(&json!({"event_name": "IMAGE_REQUESTED", "v": 3})));
        assert!(!policy.matches(&json!({"event_name": "IMAGE_REQUESTED", "v": 1})));
        assert!(!policy.matches(&json!({"event_name": "IMAGE_REQUESTED"})));
        assert!(!policy.matches(&json!({"Records": []})));
    }

    #[test]
    fn or_matches_any_alternative() {
        let policy = p(json!({"$or": [{"a": ["x"]}, {"b": {"c": [1]}}]}));
        assert!(policy.matches(&json!({"a": "x"})));
        assert!(policy.matches(&json!({"b": {"c": 1}})));
        assert!(!policy.matches(&json!({"a": "y", "b": {"c": 2}})));
        assert!(FilterPolicy::parse(&json!({"$or": [{"a": ["x"]}]})).is_err());
    }

    #[test]
    fn operators() {
        assert!(p(json!({"a": [{"exists": false}]})).matches(&json!({"b": 1})));
        assert!(!p(json!({"a": [{"exists": true}]})).matches(&json!({"b": 1})));
        assert!(p(json!({"a": [{"anything-but": ["x"]}]})).matches(&json!({"a": "y"})));
        assert!(!p(json!({"a": [{"anything-but": "x"}]})).matches(&json!({"a": "x"})));
        assert!(p(json!({"a": [{"equals-ignore-case": "AbC"}]})).matches(&json!({"a": "abc"})));
        assert!(p(json!({"a": [1]})).matches(&json!({"a": 1.0})));
        assert!(p(json!({"a": [true]})).matches(&json!({"a": true})));
    }

    #[test]
    fn non_objects_never_match_and_bad_policies_are_rejected() {
        assert!(!p(json!({"a": ["x"]})).matches(&json!("x")));
        assert!(FilterPolicy::parse(&json!([])).is_err());
        assert!(FilterPolicy::parse(&json!({})).is_err());
        assert!(FilterPolicy::parse(&json!({"a": []})).is_err());
        assert!(FilterPolicy::parse(&json!({"a": "x"})).is_err());
        assert!(FilterPolicy::parse(&json!({"a": [{"regex": "x"}]})).is_err());
        assert!(FilterPolicy::parse(&json!({"a": [{"numeric": ["~", 1]}]})).is_err());
    }
}
