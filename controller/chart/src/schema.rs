//! Checks values against the chart's `values.schema.json`, as Helm does before
//! it renders, so a wrong value is one line naming it rather than a broken
//! manifest. The JSON Schema keywords the chart uses: `type`, `properties`,
//! `additionalProperties`, `required`, `items`, `enum`, `minimum`, `maximum`,
//! `minLength`.

use serde_json::Value;

pub(super) fn check(schema: &Value, value: &Value) -> Result<(), String> {
    walk(schema, value, "")
}

fn name(path: &str) -> &str {
    if path.is_empty() { "(root)" } else { path }
}

fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.as_f64().is_some_and(|f| f.fract() == 0.0) => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn fits(ty: &str, v: &Value) -> bool {
    let actual = type_of(v);
    actual == ty || (ty == "number" && actual == "integer")
}

fn walk(schema: &Value, v: &Value, path: &str) -> Result<(), String> {
    let Some(s) = schema.as_object() else {
        return Ok(());
    };
    if let Some(ty) = s.get("type") {
        let types: Vec<&str> = match ty {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !types.is_empty() && !types.iter().any(|t| fits(t, v)) {
            return Err(format!(
                "{}: expected {}, got {} {}",
                name(path),
                types.join(" or "),
                type_of(v),
                serde_json::to_string(v).unwrap_or_default()
            ));
        }
    }
    if let Some(allowed) = s.get("enum").and_then(Value::as_array)
        && !allowed
            .iter()
            .any(|a| a == v || (a.as_f64().is_some() && a.as_f64() == v.as_f64()))
    {
        let list: Vec<String> = allowed
            .iter()
            .map(|a| serde_json::to_string(a).unwrap_or_default())
            .collect();
        return Err(format!(
            "{}: {} is not one of {}",
            name(path),
            serde_json::to_string(v).unwrap_or_default(),
            list.join(", ")
        ));
    }
    if let Some(n) = v.as_f64() {
        if let Some(min) = s.get("minimum").and_then(Value::as_f64)
            && n < min
        {
            return Err(format!(
                "{}: {n} is less than the minimum {min}",
                name(path)
            ));
        }
        if let Some(max) = s.get("maximum").and_then(Value::as_f64)
            && n > max
        {
            return Err(format!(
                "{}: {n} is more than the maximum {max}",
                name(path)
            ));
        }
    }
    if let (Some(text), Some(min)) = (v.as_str(), s.get("minLength").and_then(Value::as_u64))
        && (text.chars().count() as u64) < min
    {
        return Err(format!(
            "{}: must be at least {min} characters long",
            name(path)
        ));
    }
    if let Some(map) = v.as_object() {
        for req in s
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(k) = req.as_str()
                && !map.contains_key(k)
            {
                return Err(format!("{}: {k} is required", name(path)));
            }
        }
        let props = s.get("properties").and_then(Value::as_object);
        for (k, item) in map {
            let child = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            match props.and_then(|p| p.get(k)) {
                Some(sub) => walk(sub, item, &child)?,
                None => match s.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        return Err(format!("{}: unknown value {k:?}", name(path)));
                    }
                    Some(sub @ Value::Object(_)) => walk(sub, item, &child)?,
                    _ => {}
                },
            }
        }
    }
    if let (Some(items), Some(list)) = (s.get("items"), v.as_array()) {
        for (i, item) in list.iter().enumerate() {
            walk(items, item, &format!("{path}[{i}]"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_the_value_that_does_not_fit() {
        let schema = json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["proxy"],
            "properties": {
                "proxy": {"type": "object", "properties": {
                    "uid": {"type": "integer", "minimum": 1},
                    "logLevel": {"type": "string", "minLength": 1},
                    "ports": {"type": "array", "items": {"type": "integer"}},
                    "mode": {"enum": ["a", "b"]},
                }},
            },
        });
        assert!(check(&schema, &json!({"proxy": {"uid": 2102.0, "ports": [1.0]}})).is_ok());
        for (v, want) in [
            (
                json!({"proxy": {"uid": "x"}}),
                "proxy.uid: expected integer, got string \"x\"",
            ),
            (
                json!({"proxy": {"uid": 0.5}}),
                "proxy.uid: expected integer, got number 0.5",
            ),
            (
                json!({"proxy": {"uid": 0}}),
                "proxy.uid: 0 is less than the minimum 1",
            ),
            (
                json!({"proxy": {"logLevel": ""}}),
                "proxy.logLevel: must be at least 1 characters long",
            ),
            (
                json!({"proxy": {"ports": [1, "a"]}}),
                "proxy.ports[1]: expected integer, got string \"a\"",
            ),
            (
                json!({"proxy": {"mode": "c"}}),
                "proxy.mode: \"c\" is not one of \"a\", \"b\"",
            ),
            (
                json!({"proxy": {}, "other": 1}),
                "(root): unknown value \"other\"",
            ),
            (json!({}), "(root): proxy is required"),
        ] {
            assert_eq!(check(&schema, &v).unwrap_err(), want);
        }
    }
}
