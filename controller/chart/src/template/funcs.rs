//! The functions a chart may call: Go's built-ins, and the Sprig and Helm
//! functions with the behaviour Helm gives them (`default` treats every empty
//! value as missing, `quote` drops nil, `toYaml` trims its last newline, ...).

use base64::Engine as _;
use serde_json::{Map, Value};

use super::exec::{Fail, State};
use super::print;

/// Go's truth: not false, 0, nil, or an empty string, list or map.
pub(super) fn truth(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
    }
}

pub(super) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float64",
        Value::Number(_) => "int64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "invalid",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float64",
        Value::Number(_) => "int64",
        Value::String(_) => "string",
        Value::Array(_) => "slice",
        Value::Object(_) => "map",
    }
}

/// Sprig's `strval`: a string as it is, anything else as `%v`.
fn strval(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "<nil>".into(),
        v => print::to_string(v),
    }
}

/// Sprig's `toInt64` (through `cast`): numbers truncated, numeric strings parsed,
/// anything else 0.
fn int(v: &Value) -> i64 {
    match v {
        Value::Number(n) => n
            .as_i64()
            .unwrap_or_else(|| n.as_f64().unwrap_or(0.0) as i64),
        Value::String(s) => s
            .trim()
            .parse::<i64>()
            .ok()
            .or_else(|| s.trim().parse::<f64>().ok().map(|f| f as i64))
            .unwrap_or(0),
        Value::Bool(b) => i64::from(*b),
        _ => 0,
    }
}

fn float(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap_or(0.0),
        Value::String(s) => s.trim().parse().unwrap_or(0.0),
        Value::Bool(b) => f64::from(u8::from(*b)),
        _ => 0.0,
    }
}

fn want(name: &str, args: &[Value], n: usize) -> Result<(), Fail> {
    if args.len() != n {
        return Err(format!(
            "wrong number of args for {name}: want {n} got {}",
            args.len()
        ));
    }
    Ok(())
}

fn string<'v>(v: &'v Value, what: &str) -> Result<&'v str, Fail> {
    v.as_str()
        .ok_or_else(|| format!("{what} must be a string, not {}", type_name(v)))
}

fn indent(n: i64, s: &str) -> String {
    let pad = " ".repeat(n.max(0) as usize);
    format!("{pad}{}", s.replace('\n', &format!("\n{pad}")))
}

/// Go's comparison of basic values: numbers by value, then strings and bools.
fn compare(a: &Value, b: &Value) -> Result<std::cmp::Ordering, Fail> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            x.partial_cmp(&y)
                .ok_or_else(|| "NaN cannot be compared".into())
        }
        (Value::String(x), Value::String(y)) => Ok(x.cmp(y)),
        _ => Err(format!(
            "incompatible types for comparison: {} and {}",
            type_name(a),
            type_name(b)
        )),
    }
}

fn equal(a: &Value, b: &Value) -> Result<bool, Fail> {
    match (a, b) {
        (Value::Number(_), Value::Number(_)) | (Value::String(_), Value::String(_)) => {
            Ok(compare(a, b)? == std::cmp::Ordering::Equal)
        }
        (Value::Bool(x), Value::Bool(y)) => Ok(x == y),
        (Value::Null, Value::Null) => Ok(true),
        (Value::Null, _) | (_, Value::Null) => Ok(false),
        _ => Err(format!(
            "incompatible types for comparison: {} and {}",
            type_name(a),
            type_name(b)
        )),
    }
}

pub(super) fn call(state: &mut State<'_>, name: &str, args: Vec<Value>) -> Result<Value, Fail> {
    let a = args.as_slice();
    Ok(match name {
        // Go's built-ins.
        "not" => {
            want(name, a, 1)?;
            Value::Bool(!truth(&a[0]))
        }
        "eq" => {
            if a.len() < 2 {
                return Err("missing argument for comparison".into());
            }
            let mut any = false;
            for b in &a[1..] {
                any |= equal(&a[0], b)?;
            }
            Value::Bool(any)
        }
        "ne" => {
            want(name, a, 2)?;
            Value::Bool(!equal(&a[0], &a[1])?)
        }
        "lt" | "le" | "gt" | "ge" => {
            want(name, a, 2)?;
            let o = compare(&a[0], &a[1])?;
            Value::Bool(match name {
                "lt" => o.is_lt(),
                "le" => o.is_le(),
                "gt" => o.is_gt(),
                _ => o.is_ge(),
            })
        }
        "len" => {
            want(name, a, 1)?;
            Value::from(match &a[0] {
                Value::String(s) => s.len(),
                Value::Array(v) => v.len(),
                Value::Object(m) => m.len(),
                other => return Err(format!("len of type {}", type_name(other))),
            } as i64)
        }
        "index" => {
            let Some((first, keys)) = a.split_first() else {
                return Err("index needs a value".into());
            };
            let mut cur = first.clone();
            for k in keys {
                cur = match (&cur, k) {
                    (Value::Object(m), Value::String(k)) => {
                        m.get(k).cloned().unwrap_or(Value::Null)
                    }
                    (Value::Array(v), Value::Number(n)) => {
                        let i = n.as_i64().unwrap_or(-1);
                        v.get(usize::try_from(i).map_err(|_| format!("index out of range: {i}"))?)
                            .cloned()
                            .ok_or_else(|| format!("index out of range: {i}"))?
                    }
                    (Value::Null, _) => return Err("index of untyped nil".into()),
                    (c, k) => {
                        return Err(format!(
                            "can't index item of type {} with {}",
                            type_name(c),
                            type_name(k)
                        ));
                    }
                };
            }
            cur
        }
        "print" => {
            // Sprint: a space between operands when neither is a string.
            let mut s = String::new();
            for (i, v) in a.iter().enumerate() {
                if i > 0 && !a[i - 1].is_string() && !v.is_string() {
                    s.push(' ');
                }
                s.push_str(&strval(v));
            }
            Value::String(s)
        }
        "println" => Value::String(format!(
            "{}\n",
            a.iter().map(strval).collect::<Vec<_>>().join(" ")
        )),
        "printf" => {
            let (fmt, rest) = a.split_first().ok_or("printf needs a format")?;
            Value::String(printf(string(fmt, "printf's format")?, rest))
        }

        // Helm's.
        "include" => {
            want(name, a, 2)?;
            let tpl = string(&a[0], "include's template name")?;
            let mut out = String::new();
            state
                .call(tpl, &a[1], &mut out)
                .map_err(|e| e.to_string())?;
            Value::String(out)
        }
        "required" => {
            want(name, a, 2)?;
            match &a[1] {
                Value::Null => return Err(strval(&a[0])),
                Value::String(s) if s.is_empty() => return Err(strval(&a[0])),
                v => v.clone(),
            }
        }
        "fail" => return Err(a.first().map(strval).unwrap_or_default()),
        "toYaml" => {
            want(name, a, 1)?;
            let y = crate::yaml::to_string(&a[0]);
            Value::String(y.strip_suffix('\n').unwrap_or(&y).to_string())
        }
        "toJson" => {
            want(name, a, 1)?;
            let mut s = String::new();
            print::json(&a[0], &mut s);
            Value::String(s)
        }

        // Sprig's.
        "default" => match a {
            [d] => d.clone(),
            [d, v] if !truth(v) => d.clone(),
            [_, v] => v.clone(),
            _ => {
                return Err(format!(
                    "wrong number of args for default: want 2 got {}",
                    a.len()
                ));
            }
        },
        "empty" => {
            want(name, a, 1)?;
            Value::Bool(!truth(&a[0]))
        }
        "coalesce" => a.iter().find(|v| truth(v)).cloned().unwrap_or(Value::Null),
        "ternary" => {
            want(name, a, 3)?;
            if truth(&a[2]) {
                a[0].clone()
            } else {
                a[1].clone()
            }
        }
        "quote" | "squote" => {
            let q = |s: String| {
                if name == "quote" {
                    print::go_quote(&s)
                } else {
                    format!("'{s}'")
                }
            };
            Value::String(
                a.iter()
                    .filter(|v| !v.is_null())
                    .map(|v| q(strval(v)))
                    .collect::<Vec<_>>()
                    .join(" "),
            )
        }
        "indent" | "nindent" => {
            want(name, a, 2)?;
            let s = indent(int(&a[0]), &strval(&a[1]));
            Value::String(if name == "nindent" {
                format!("\n{s}")
            } else {
                s
            })
        }
        "trim" => {
            want(name, a, 1)?;
            Value::String(strval(&a[0]).trim().to_string())
        }
        "trimSuffix" | "trimPrefix" => {
            want(name, a, 2)?;
            let (cut, s) = (strval(&a[0]), strval(&a[1]));
            let out = if name == "trimSuffix" {
                s.strip_suffix(cut.as_str())
            } else {
                s.strip_prefix(cut.as_str())
            };
            Value::String(out.unwrap_or(&s).to_string())
        }
        "upper" | "lower" => {
            want(name, a, 1)?;
            let s = strval(&a[0]);
            Value::String(if name == "upper" {
                s.to_uppercase()
            } else {
                s.to_lowercase()
            })
        }
        "replace" => {
            want(name, a, 3)?;
            Value::String(strval(&a[2]).replace(&strval(&a[0]), &strval(&a[1])))
        }
        "contains" | "hasPrefix" | "hasSuffix" => {
            want(name, a, 2)?;
            let (needle, s) = (strval(&a[0]), strval(&a[1]));
            Value::Bool(match name {
                "contains" => s.contains(&needle),
                "hasPrefix" => s.starts_with(&needle),
                _ => s.ends_with(&needle),
            })
        }
        "repeat" => {
            want(name, a, 2)?;
            Value::String(strval(&a[1]).repeat(int(&a[0]).clamp(0, 1 << 20) as usize))
        }
        "b64enc" => {
            want(name, a, 1)?;
            Value::String(base64::engine::general_purpose::STANDARD.encode(strval(&a[0])))
        }
        "b64dec" => {
            want(name, a, 1)?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(strval(&a[0]))
                .map_err(|e| e.to_string())?;
            Value::String(String::from_utf8_lossy(&bytes).into_owned())
        }
        "sha256sum" => {
            want(name, a, 1)?;
            let d = ring::digest::digest(&ring::digest::SHA256, strval(&a[0]).as_bytes());
            Value::String(d.as_ref().iter().map(|b| format!("{b:02x}")).collect())
        }
        "toString" => {
            want(name, a, 1)?;
            Value::String(strval(&a[0]))
        }
        "int" | "int64" => {
            want(name, a, 1)?;
            Value::from(int(&a[0]))
        }
        "float64" => {
            want(name, a, 1)?;
            serde_json::Number::from_f64(float(&a[0])).map_or(Value::Null, Value::Number)
        }
        "add" => Value::from(a.iter().map(int).sum::<i64>()),
        "add1" => {
            want(name, a, 1)?;
            Value::from(int(&a[0]) + 1)
        }
        "sub" | "mul" | "div" | "mod" => {
            want(name, a, 2)?;
            let (x, y) = (int(&a[0]), int(&a[1]));
            Value::from(match name {
                "sub" => x - y,
                "mul" => x * y,
                _ if y == 0 => return Err("integer divide by zero".into()),
                "div" => x / y,
                _ => x % y,
            })
        }
        "max" | "min" => {
            let nums = a.iter().map(int);
            Value::from(
                if name == "max" {
                    nums.max()
                } else {
                    nums.min()
                }
                .unwrap_or(0),
            )
        }
        "list" => Value::Array(args),
        "dict" => {
            let mut m = Map::new();
            for pair in a.chunks(2) {
                m.insert(
                    strval(&pair[0]),
                    pair.get(1).cloned().unwrap_or(Value::Null),
                );
            }
            Value::Object(m)
        }
        "hasKey" => {
            want(name, a, 2)?;
            Value::Bool(
                a[0].as_object()
                    .is_some_and(|m| m.contains_key(&strval(&a[1]))),
            )
        }
        "get" => {
            want(name, a, 2)?;
            Value::String(a[0].get(strval(&a[1])).map(strval).unwrap_or_default())
        }
        "keys" => {
            let mut keys: Vec<Value> = a
                .iter()
                .filter_map(Value::as_object)
                .flat_map(|m| m.keys().map(|k| Value::String(k.clone())))
                .collect();
            keys.dedup();
            Value::Array(keys)
        }
        "sortAlpha" => {
            want(name, a, 1)?;
            let mut items: Vec<String> = match &a[0] {
                Value::Array(v) => v.iter().map(strval).collect(),
                v => vec![strval(v)],
            };
            items.sort();
            Value::Array(items.into_iter().map(Value::String).collect())
        }
        "join" => {
            want(name, a, 2)?;
            let sep = strval(&a[0]);
            match &a[1] {
                Value::Array(v) => {
                    Value::String(v.iter().map(strval).collect::<Vec<_>>().join(&sep))
                }
                v => Value::String(strval(v)),
            }
        }
        "splitList" => {
            want(name, a, 2)?;
            let (sep, s) = (strval(&a[0]), strval(&a[1]));
            Value::Array(
                s.split(sep.as_str())
                    .map(|p| Value::String(p.to_string()))
                    .collect(),
            )
        }
        "first" | "last" => {
            want(name, a, 1)?;
            let v = a[0]
                .as_array()
                .ok_or_else(|| format!("{name} needs a list"))?;
            let item = if name == "first" { v.first() } else { v.last() };
            item.cloned().unwrap_or(Value::Null)
        }
        "append" => {
            want(name, a, 2)?;
            let mut v = a[0].as_array().cloned().ok_or("append needs a list")?;
            v.push(a[1].clone());
            Value::Array(v)
        }
        "kindIs" => {
            want(name, a, 2)?;
            Value::Bool(strval(&a[0]) == kind(&a[1]))
        }
        "kindOf" => {
            want(name, a, 1)?;
            Value::String(kind(&a[0]).into())
        }
        "deepCopy" => {
            want(name, a, 1)?;
            a[0].clone()
        }
        other => return Err(format!("function {other:?} not defined")),
    })
}

/// Go's `fmt.Sprintf` for the verbs charts use: `%s %v %d %q %t %f %%`.
fn printf(fmt: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut precision = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut p = String::new();
            while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                p.push(*d);
                chars.next();
            }
            precision = p.parse::<usize>().ok();
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.next() else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        match (verb, arg) {
            ('s' | 'v', v) => out.push_str(&strval(v)),
            ('q', v) => out.push_str(&print::go_quote(&strval(v))),
            ('d', Value::Number(n)) if n.as_i64().is_some() => out.push_str(&print::number(n)),
            ('t', Value::Bool(b)) => out.push_str(&b.to_string()),
            ('f', Value::Number(n)) => out.push_str(&format!(
                "{:.*}",
                precision.unwrap_or(6),
                n.as_f64().unwrap_or(0.0)
            )),
            (verb, v) => out.push_str(&format!("%!{verb}({}={})", type_name(v), strval(v))),
        }
    }
    let extra: Vec<String> = args
        .map(|v| format!("{}={}", type_name(v), strval(v)))
        .collect();
    if !extra.is_empty() {
        out.push_str(&format!("%!(EXTRA {})", extra.join(", ")));
    }
    out
}
