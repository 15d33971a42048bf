//! YAML as Helm and `kubectl` write it (`sigs.k8s.io/yaml` over go-yaml v2):
//! sorted keys, two-space indents, sequences flush with their key, strings
//! plain unless YAML 1.1 would read them as something else, multi-line
//! strings as literal blocks, long plain lines folded after column 80.
//!
//! `toYaml` in the chart and the output of `linkerd inject` both go through
//! here, so they look the way Linkerd users know.

use serde_json::{Map, Value};

use super::template::go_float_g;

/// Where go-yaml folds a long plain or single-quoted line.
const WIDTH: usize = 80;

/// One YAML document for `v`, ending in a newline.
pub fn to_string(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(m) if !m.is_empty() => map(m, 0, false, &mut out),
        Value::Array(a) if !a.is_empty() => seq(a, 0, false, &mut out),
        scalar => {
            self::scalar(scalar, 0, &mut out);
            out.push('\n');
        }
    }
    out
}

fn pad(n: usize, out: &mut String) {
    out.extend(std::iter::repeat_n(' ', n));
}

/// A mapping whose keys start at column `indent`; `inline` when the cursor is
/// already there (after a sequence's `- `).
fn map(m: &Map<String, Value>, indent: usize, inline: bool, out: &mut String) {
    for (i, (k, v)) in m.iter().enumerate() {
        if i > 0 || !inline {
            pad(indent, out);
        }
        string(k, indent, true, out);
        out.push(':');
        match v {
            Value::Object(inner) if !inner.is_empty() => {
                out.push('\n');
                map(inner, indent + 2, false, out);
            }
            Value::Array(items) if !items.is_empty() => {
                out.push('\n');
                seq(items, indent, false, out);
            }
            scalar => {
                out.push(' ');
                self::scalar(scalar, indent + 2, out);
                out.push('\n');
            }
        }
    }
}

fn seq(items: &[Value], indent: usize, inline: bool, out: &mut String) {
    for (i, v) in items.iter().enumerate() {
        if i > 0 || !inline {
            pad(indent, out);
        }
        out.push_str("- ");
        match v {
            Value::Object(m) if !m.is_empty() => map(m, indent + 2, true, out),
            Value::Array(inner) if !inner.is_empty() => seq(inner, indent + 2, true, out),
            scalar => {
                self::scalar(scalar, indent + 2, out);
                out.push('\n');
            }
        }
    }
}

/// A scalar (or empty collection) at the cursor; a block scalar's lines go at
/// `indent`.
fn scalar(v: &Value, indent: usize, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => out.push_str(&i.to_string()),
            (_, Some(u), _) => out.push_str(&u.to_string()),
            // Through JSON, a whole float comes back as an integer.
            (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 1e21 => {
                out.push_str(&format!("{f:.0}"))
            }
            (_, _, Some(f)) if f.is_infinite() => {
                out.push_str(if f > 0.0 { ".inf" } else { "-.inf" })
            }
            (_, _, Some(f)) => out.push_str(&go_float_g(f)),
            _ => out.push_str("null"),
        },
        Value::String(s) => string(s, indent, false, out),
        Value::Array(_) => out.push_str("[]"),
        Value::Object(_) => out.push_str("{}"),
    }
}

#[derive(PartialEq)]
enum Style {
    Plain,
    Single,
    Double,
    Literal,
}

fn string(s: &str, indent: usize, key: bool, out: &mut String) {
    let a = analyze(s);
    let mut style = if s.contains('\n') && !key {
        Style::Literal
    } else if resolves_as_other(s) {
        Style::Double
    } else {
        Style::Plain
    };
    if style == Style::Plain && (!a.plain || (key && a.multiline)) {
        style = Style::Single;
    }
    if style == Style::Literal && (!a.block || key) {
        style = Style::Double;
    }
    // A line break in single quotes needs the block's indentation and a
    // doubled break, which `folded` does not write: such keys (the fuzzer
    // found one in a flow mapping) go in double quotes, escaped.
    if style == Style::Single && (!a.single || s.contains('\n')) {
        style = Style::Double;
    }
    match style {
        Style::Plain => folded(s, indent, !key, out),
        Style::Single => {
            out.push('\'');
            folded(&s.replace('\'', "''"), indent, !key, out);
            out.push('\'');
        }
        Style::Double => double(s, out),
        Style::Literal => literal(s, indent, out),
    }
}

/// Writes `s`, breaking at a space once the line is past the width, as go-yaml's
/// emitter does for plain and single-quoted scalars.
fn folded(s: &str, indent: usize, breaks: bool, out: &mut String) {
    let mut column = out.len() - out.rfind('\n').map_or(0, |i| i + 1);
    let chars: Vec<char> = s.chars().collect();
    let mut prev_space = false;
    for (i, &c) in chars.iter().enumerate() {
        if c == ' ' {
            let next_space = chars.get(i + 1).is_some_and(|n| *n == ' ');
            if breaks
                && !prev_space
                && column > WIDTH
                && i != 0
                && i + 1 != chars.len()
                && !next_space
            {
                out.push('\n');
                pad(indent, out);
                column = indent;
            } else {
                out.push(c);
                column += 1;
            }
            prev_space = true;
        } else {
            out.push(c);
            column += 1;
            prev_space = false;
        }
    }
}

fn literal(s: &str, indent: usize, out: &mut String) {
    out.push('|');
    if s.starts_with(' ') || s.starts_with('\n') {
        out.push('2');
    }
    if !s.ends_with('\n') {
        out.push('-');
    } else if s.ends_with("\n\n") {
        out.push('+');
    }
    let body = s.strip_suffix('\n').unwrap_or(s);
    for line in body.split('\n') {
        out.push('\n');
        if !line.is_empty() {
            pad(indent, out);
            out.push_str(line);
        }
    }
}

fn double(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\x0b' => out.push_str("\\v"),
            '\x0c' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            '\x1b' => out.push_str("\\e"),
            '\u{85}' => out.push_str("\\N"),
            '\u{a0}' => out.push_str("\\_"),
            '\u{2028}' => out.push_str("\\L"),
            '\u{2029}' => out.push_str("\\P"),
            c if !printable(c) => {
                let n = c as u32;
                if n <= 0xff {
                    out.push_str(&format!("\\x{n:02X}"));
                } else if n <= 0xffff {
                    out.push_str(&format!("\\u{n:04X}"));
                } else {
                    out.push_str(&format!("\\U{n:08X}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn printable(c: char) -> bool {
    matches!(c as u32, 0x0A | 0x20..=0x7E | 0x85 | 0xA0..=0xD7FF | 0xE000..=0xFFFD | 0x10000..=0x10FFFF)
        && c != '\u{FEFF}'
}

/// What libyaml's scalar analysis allows in block context.
struct Allowed {
    plain: bool,
    single: bool,
    block: bool,
    multiline: bool,
}

fn analyze(s: &str) -> Allowed {
    if s.is_empty() {
        return Allowed {
            plain: false,
            single: true,
            block: false,
            multiline: false,
        };
    }
    let chars: Vec<char> = s.chars().collect();
    let blank = |c: Option<&char>| c.is_none_or(|c| matches!(c, ' ' | '\t' | '\n' | '\r'));
    let mut block_indicators = s.starts_with("---") || s.starts_with("...");
    let (mut leading_space, mut leading_break, mut trailing_space, mut trailing_break) =
        (false, false, false, false);
    let (mut break_space, mut space_break, mut special) = (false, false, false);
    let (mut prev_space, mut prev_break, mut line_breaks) = (false, false, false);
    let mut preceded_by_ws = true;
    for (i, &c) in chars.iter().enumerate() {
        let followed_by_ws = blank(chars.get(i + 1));
        let last = i + 1 == chars.len();
        if i == 0 {
            match c {
                '#' | ',' | '[' | ']' | '{' | '}' | '&' | '*' | '!' | '|' | '>' | '\'' | '"'
                | '%' | '@' | '`' => block_indicators = true,
                '?' | ':' | '-' if followed_by_ws => block_indicators = true,
                _ => {}
            }
        } else {
            match c {
                ':' if followed_by_ws => block_indicators = true,
                '#' if preceded_by_ws => block_indicators = true,
                _ => {}
            }
        }
        if !printable(c) {
            special = true;
        }
        if c == '\n' {
            line_breaks = true;
        }
        if c == ' ' {
            if i == 0 {
                leading_space = true;
            }
            if last {
                trailing_space = true;
            }
            if prev_break {
                break_space = true;
            }
            prev_space = true;
            prev_break = false;
        } else if c == '\n' {
            if i == 0 {
                leading_break = true;
            }
            if last {
                trailing_break = true;
            }
            if prev_space {
                space_break = true;
            }
            prev_break = true;
            prev_space = false;
        } else {
            prev_space = false;
            prev_break = false;
        }
        preceded_by_ws = blank(Some(&c));
    }
    let mut a = Allowed {
        plain: true,
        single: true,
        block: true,
        multiline: line_breaks,
    };
    if leading_space || leading_break || trailing_space || trailing_break {
        a.plain = false;
    }
    if trailing_space {
        a.block = false;
    }
    if break_space {
        a.plain = false;
        a.single = false;
    }
    if space_break || special {
        a.plain = false;
        a.single = false;
        a.block = false;
    }
    if line_breaks || block_indicators {
        a.plain = false;
    }
    a
}

/// Whether go-yaml v2 would read `s`, unquoted, as something other than a string:
/// null, a YAML 1.1 bool (`yes`, `on`, ...), a number, a timestamp.
fn resolves_as_other(s: &str) -> bool {
    const WORDS: &[&str] = &[
        "", "~", "null", "Null", "NULL", "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO",
        "true", "True", "TRUE", "false", "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF",
        ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF", ".nan",
        ".NaN", ".NAN", "<<",
    ];
    if WORDS.contains(&s) {
        return true;
    }
    let Some(first) = s.chars().next() else {
        return true;
    };
    if !matches!(first, '+' | '-' | '.' | '0'..='9') {
        return false;
    }
    let plain = s.replace('_', "");
    let unsigned = plain.trim_start_matches(['+', '-']);
    let int =
        |digits: &str, radix| !digits.is_empty() && u64::from_str_radix(digits, radix).is_ok();
    if int(unsigned, 10)
        || unsigned.strip_prefix("0x").is_some_and(|h| int(h, 16))
        || unsigned.strip_prefix("0o").is_some_and(|o| int(o, 8))
        || unsigned.strip_prefix("0b").is_some_and(|b| int(b, 2))
        || plain.parse::<f64>().is_ok()
    {
        return true;
    }
    // Base-60 floats (`1:20`) and dates (`2001-12-14...`).
    let bytes = s.as_bytes();
    let date = bytes.len() >= 8
        && bytes[..4].iter().all(u8::is_ascii_digit)
        && bytes[4] == b'-'
        && s[5..].split(['-', 'T', 't', ' ']).next().is_some_and(|m| {
            !m.is_empty() && m.len() <= 2 && m.bytes().all(|b| b.is_ascii_digit())
        });
    let base60 = unsigned.contains(':')
        && unsigned.split(':').enumerate().all(|(i, p)| {
            !p.is_empty()
                && if i == 0 {
                    p.bytes().all(|b| b.is_ascii_digit())
                } else {
                    p.split('.')
                        .next()
                        .is_some_and(|d| d.len() <= 2 && d.bytes().all(|b| b.is_ascii_digit()))
                }
        });
    date || base60
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn layout_is_go_yamls() {
        let v = json!({
            "b": {"c": [1, {"d": "e", "f": [true, null]}, [2, 3]], "empty": {}, "none": []},
            "a": 0.5,
            "n": 4143.0,
            "port": 4143.0,
        });
        assert_eq!(
            to_string(&v),
            "a: 0.5\nb:\n  c:\n  - 1\n  - d: e\n    f:\n    - true\n    - null\n  - - 2\n    - 3\n  empty: {}\n  none: []\n\"n\": 4143\nport: 4143\n"
        );
    }

    #[test]
    fn strings_are_quoted_only_when_yaml_would_misread_them() {
        for (s, want) in [
            ("plain text", "plain text"),
            ("100m", "100m"),
            ("linkerd.io/inject", "linkerd.io/inject"),
            ("", "\"\""),
            ("true", "\"true\""),
            ("yes", "\"yes\""),
            ("On", "\"On\""),
            ("4143", "\"4143\""),
            ("1e3", "\"1e3\""),
            ("0x1F", "\"0x1F\""),
            ("1_000", "\"1_000\""),
            ("2001-12-14", "\"2001-12-14\""),
            ("1:20", "\"1:20\""),
            ("*", "'*'"),
            ("- x", "'- x'"),
            ("-x", "-x"),
            ("a: b", "'a: b'"),
            ("a #b", "'a #b'"),
            ("a#b", "a#b"),
            (" lead", "' lead'"),
            ("it's", "it's"),
            ("'q'", "'''q'''"),
            ("tab\there", "\"tab\\there\""),
            ("10.0.0.0/8,100.64.0.0/10", "10.0.0.0/8,100.64.0.0/10"),
            ("25,587,3306", "25,587,3306"),
            ("{x}", "'{x}'"),
        ] {
            assert_eq!(to_string(&json!(s)), format!("{want}\n"), "{s:?}");
        }
    }

    #[test]
    fn multi_line_strings_are_literal_blocks() {
        let v = json!({"k": "a\nb\n", "l": "a\n\nb", "m": ["x\ny"]});
        assert_eq!(
            to_string(&v),
            "k: |\n  a\n  b\nl: |-\n  a\n\n  b\nm:\n- |-\n  x\n  y\n"
        );
        // Trailing spaces on a line rule a block out.
        assert_eq!(to_string(&json!({"k": "a \nb"})), "k: \"a \\nb\"\n");
    }

    /// Found by fuzz/fuzz_targets/inject_yaml.rs: a key with a line break
    /// (a multi-line plain key in a flow mapping reads as one) was written
    /// single-quoted with raw breaks, which no YAML parser reads back.
    #[test]
    fn keys_with_line_breaks_are_double_quoted() {
        let v = json!({"metadata": {"annotations": {"a b\n\nc/d": "x"}}});
        let out = to_string(&v);
        assert_eq!(out, "metadata:\n  annotations:\n    \"a b\\n\\nc/d\": x\n");
        let back: serde_json::Value = serde_saphyr::from_str(&out).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn long_plain_lines_fold_after_column_80() {
        let words = ["word"; 30].join(" ");
        let out = to_string(&json!({ "key": words }));
        let first = out.lines().next().unwrap();
        assert!(first.len() > 80 && first.len() <= 85, "{first}");
        assert!(out.lines().nth(1).unwrap().starts_with("  word"), "{out}");
    }
}
