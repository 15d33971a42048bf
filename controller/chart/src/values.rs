//! Chart values the way Helm reads them: YAML files whose numbers are all
//! floats, coalesced over the chart's defaults (a `null` removes a key), and
//! `--set` expressions in Helm's `strvals` syntax.

use serde_json::{Map, Value};

#[derive(Debug, thiserror::Error)]
pub enum ValuesError {
    #[error("{what} is not valid YAML: {reason}")]
    Yaml { what: String, reason: String },
    #[error("{what} must be a map of values, not {found}")]
    NotAMap { what: String, found: &'static str },
    #[error("--set {expr:?}: {reason}")]
    Set { expr: String, reason: String },
}

/// Reads a values file. Numbers become floats, as Helm's YAML-through-JSON
/// reading makes them (so the chart prints `4143`, and `1e+06` for a million).
pub fn from_yaml(what: &str, text: &str) -> Result<Value, ValuesError> {
    if text.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    let v: Value = serde_saphyr::from_str(text).map_err(|e| ValuesError::Yaml {
        what: what.to_string(),
        reason: e.to_string().lines().next().unwrap_or_default().to_string(),
    })?;
    match v {
        Value::Object(_) => Ok(floats(v)),
        Value::Null => Ok(Value::Object(Map::new())),
        other => Err(ValuesError::NotAMap {
            what: what.to_string(),
            found: kind(&other),
        }),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

fn floats(v: Value) -> Value {
    match v {
        Value::Number(n) => n
            .as_f64()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, Value::Number),
        Value::Array(a) => Value::Array(a.into_iter().map(floats).collect()),
        Value::Object(m) => Value::Object(m.into_iter().map(|(k, v)| (k, floats(v))).collect()),
        other => other,
    }
}

/// Helm's coalescing of `over` onto `base`: maps merge key by key, anything else
/// replaces, and `null` deletes the key.
pub fn coalesce(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                if v.is_null() {
                    b.remove(&k);
                    continue;
                }
                match b.get_mut(&k) {
                    Some(existing) if existing.is_object() && v.is_object() => {
                        coalesce(existing, v)
                    }
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

/// Applies one `--set` expression (`a.b=c,list={x,y},l[1].k=v`) to `values`.
/// Values are typed as Helm types them: `true`/`false`, `null`, integers not
/// starting with 0 (and `0`), everything else a string. With `string` (as
/// `--set-string`), everything is a string.
pub fn set(values: &mut Value, expr: &str, string: bool) -> Result<(), ValuesError> {
    let err = |reason: &str| ValuesError::Set {
        expr: expr.to_string(),
        reason: reason.to_string(),
    };
    for (key, raw) in split_assignments(expr).map_err(|r| err(&r))? {
        let path = parse_key(&key).map_err(|r| err(&r))?;
        let value = if raw.starts_with('{') && raw.ends_with('}') && !string {
            let inner = &raw[1..raw.len() - 1];
            Value::Array(if inner.is_empty() {
                Vec::new()
            } else {
                split_unescaped(inner, ',')
                    .iter()
                    .map(|s| typed(s, false))
                    .collect()
            })
        } else {
            typed(&raw, string)
        };
        insert(values, &path, value).map_err(|r| err(&r))?;
    }
    Ok(())
}

/// Applies `key=path` of `--set-file`: the file's content as a string.
pub fn set_file(values: &mut Value, key: &str, content: String) -> Result<(), ValuesError> {
    let path = parse_key(key).map_err(|reason| ValuesError::Set {
        expr: key.to_string(),
        reason,
    })?;
    insert(values, &path, Value::String(content)).map_err(|reason| ValuesError::Set {
        expr: key.to_string(),
        reason,
    })
}

#[derive(Debug, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// `a=1,b={x,y},c=d\,e` into its assignments, keeping `{...}` lists whole.
fn split_assignments(expr: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    let mut parts = Vec::new();
    let mut chars = expr.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                cur.push('\\');
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '{' => {
                depth += 1;
                cur.push(c);
            }
            '}' => {
                depth -= 1;
                cur.push(c);
            }
            ',' if depth == 0 => parts.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    parts.push(cur);
    for part in parts {
        let Some(eq) = find_unescaped(&part, '=') else {
            return Err(format!("key {part:?} has no value"));
        };
        let key = part[..eq].to_string();
        if key.is_empty() {
            return Err("a key is empty".into());
        }
        let value = part[eq + 1..].to_string();
        let value = if value.starts_with('{') {
            value
        } else {
            unescape(&value)
        };
        out.push((key, value));
    }
    Ok(out)
}

fn find_unescaped(s: &str, target: char) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == target {
            return Some(i);
        }
    }
    None
}

fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    out.last_mut().expect("never empty").push(n);
                }
            }
            c if c == sep => out.push(String::new()),
            c => out.last_mut().expect("never empty").push(c),
        }
    }
    out
}

fn unescape(s: &str) -> String {
    split_unescaped(s, '\u{0}').concat()
}

fn parse_key(key: &str) -> Result<Vec<Seg>, String> {
    let mut segs = Vec::new();
    for part in split_unescaped_keep(key, '.') {
        let (name, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part.as_str(), ""),
        };
        if name.is_empty() && segs.is_empty() && rest.is_empty() {
            return Err(format!("key {key:?} has an empty part"));
        }
        if !name.is_empty() {
            segs.push(Seg::Key(unescape(name)));
        } else if rest.is_empty() {
            return Err(format!("key {key:?} has an empty part"));
        }
        while !rest.is_empty() {
            let close = rest
                .find(']')
                .ok_or_else(|| format!("key {key:?} has an unclosed ["))?;
            let index: usize = rest[1..close]
                .parse()
                .map_err(|_| format!("key {key:?} has a bad list index {:?}", &rest[1..close]))?;
            if index > 65536 {
                return Err(format!("key {key:?}: list index {index} is too large"));
            }
            segs.push(Seg::Index(index));
            rest = &rest[close + 1..];
            if !rest.is_empty() && !rest.starts_with('[') {
                return Err(format!("key {key:?} has text after ]"));
            }
        }
    }
    Ok(segs)
}

/// Splits on unescaped `sep`, keeping escapes for a later unescape.
fn split_unescaped_keep(s: &str, sep: char) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        let last = out.last_mut().expect("never empty");
        match c {
            '\\' => {
                last.push('\\');
                if let Some(n) = chars.next() {
                    last.push(n);
                }
            }
            c if c == sep => out.push(String::new()),
            c => last.push(c),
        }
    }
    out
}

fn typed(raw: &str, string: bool) -> Value {
    if string {
        return Value::String(raw.to_string());
    }
    if raw.eq_ignore_ascii_case("true") {
        return Value::Bool(true);
    }
    if raw.eq_ignore_ascii_case("false") {
        return Value::Bool(false);
    }
    if raw.eq_ignore_ascii_case("null") {
        return Value::Null;
    }
    if raw == "0" {
        return Value::from(0i64);
    }
    if !raw.starts_with('0')
        && let Ok(n) = raw.parse::<i64>()
    {
        return Value::from(n);
    }
    Value::String(raw.to_string())
}

fn insert(values: &mut Value, path: &[Seg], value: Value) -> Result<(), String> {
    let Some((first, rest)) = path.split_first() else {
        *values = value;
        return Ok(());
    };
    match first {
        Seg::Key(k) => {
            if !values.is_object() {
                *values = Value::Object(Map::new());
            }
            let map = values.as_object_mut().expect("made a map above");
            if rest.is_empty() {
                // A null stays, to delete the key when coalesced onto the chart's.
                map.insert(k.clone(), value);
                return Ok(());
            }
            let slot = map.entry(k.clone()).or_insert(Value::Null);
            insert(slot, rest, value)
        }
        Seg::Index(i) => {
            if !values.is_array() {
                *values = Value::Array(Vec::new());
            }
            let list = values.as_array_mut().expect("made a list above");
            if list.len() <= *i {
                list.resize(i + 1, Value::Null);
            }
            insert(&mut list[*i], rest, value)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn set_types_values_as_helm_does() {
        let mut v = json!({"a": {"keep": 1.0}});
        set(
            &mut v,
            "a.b=true,a.c=10,a.d=010,a.e=0.5,a.f=null,g=0,h=x\\,y",
            false,
        )
        .unwrap();
        set(&mut v, "l={x,2},m[1].k=v,a.keep=null", false).unwrap();
        assert_eq!(v["a"]["keep"], Value::Null);
        v["a"].as_object_mut().unwrap().remove("keep");
        set(&mut v, "s=10", true).unwrap();
        assert_eq!(
            v,
            json!({
                "a": {"b": true, "c": 10, "d": "010", "e": "0.5", "f": null},
                "g": 0, "h": "x,y", "l": ["x", 2], "m": [null, {"k": "v"}], "s": "10"
            })
        );
    }

    #[test]
    fn set_refuses_what_it_cannot_read() {
        for (expr, want) in [
            ("a", "--set \"a\": key \"a\" has no value"),
            ("=1", "--set \"=1\": a key is empty"),
            (
                "a[x]=1",
                "--set \"a[x]=1\": key \"a[x]\" has a bad list index \"x\"",
            ),
            ("a[1=1", "--set \"a[1=1\": key \"a[1\" has an unclosed ["),
        ] {
            let e = set(&mut json!({}), expr, false).unwrap_err();
            assert_eq!(e.to_string(), want);
        }
    }

    #[test]
    fn files_read_numbers_as_floats_and_coalesce() {
        let mut base = from_yaml("values.yaml", "a: {b: 1, c: [1, 2]}\nd: x\n").unwrap();
        assert!(base["a"]["b"].is_f64());
        let over = from_yaml("mine.yaml", "a: {b: 2}\nd: null\n").unwrap();
        coalesce(&mut base, over);
        assert_eq!(base, json!({"a": {"b": 2.0, "c": [1.0, 2.0]}}));
        let e = from_yaml("bad.yaml", "- a\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "bad.yaml must be a map of values, not a list"
        );
        assert!(
            from_yaml("bad.yaml", "a: [")
                .unwrap_err()
                .to_string()
                .starts_with("bad.yaml is not valid YAML: ")
        );
    }
}
