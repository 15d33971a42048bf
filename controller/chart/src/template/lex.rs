//! Splits a template into text and actions, and an action into tokens, with
//! Go's rules: `{{-` and `-}}` trim the whitespace beside them, `{{/* */}}` is a
//! comment.

use super::Error;

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Tok {
    /// `.a.b` (an empty chain is `.` itself).
    Field(Vec<String>),
    /// `$` or `$name`, with the fields that follow it.
    Var(String, Vec<String>),
    /// The fields after a closing parenthesis: `(...).a.b`.
    Chain(Vec<String>),
    Ident(String),
    Str(String),
    Int(i64),
    Float(f64),
    Pipe,
    Open,
    Close,
    Comma,
    Declare,
    Assign,
}

#[derive(Debug)]
pub(super) enum Item {
    Text(String),
    Action { line: usize, toks: Vec<Tok> },
}

pub(super) fn lex(name: &str, src: &str) -> Result<Vec<Item>, Error> {
    let mut items = Vec::new();
    let mut rest = src;
    let mut line = 1;
    let mut trim_next = false;
    while !rest.is_empty() {
        let Some(start) = rest.find("{{") else {
            push_text(&mut items, rest, trim_next, false);
            break;
        };
        let after = &rest[start + 2..];
        let trim_before =
            after.starts_with("- ") || after.starts_with("-\t") || after.starts_with("-\n");
        push_text(&mut items, &rest[..start], trim_next, trim_before);
        line += rest[..start].matches('\n').count();
        let body_start = if trim_before { 1 } else { 0 };
        let body = &after[body_start..];
        let trimmed = body.trim_start();
        if trimmed.starts_with("/*") {
            let Some(end) = trimmed.find("*/") else {
                return Err(Error::at(name, line, "unclosed comment"));
            };
            let close = trimmed[end + 2..].trim_start();
            let (trim_after, tail) = if let Some(t) = close.strip_prefix("-}}") {
                (true, t)
            } else if let Some(t) = close.strip_prefix("}}") {
                (false, t)
            } else {
                return Err(Error::at(name, line, "comment ends without \"}}\""));
            };
            line += rest[start..rest.len() - tail.len()].matches('\n').count();
            trim_next = trim_after;
            rest = tail;
            continue;
        }
        let (toks, used, trim_after) = action(name, line, body)?;
        let consumed = &body[..used];
        items.push(Item::Action { line, toks });
        line += consumed.matches('\n').count();
        trim_next = trim_after;
        rest = &body[used..];
    }
    Ok(items)
}

fn push_text(items: &mut Vec<Item>, text: &str, trim_start: bool, trim_end: bool) {
    let mut t = text;
    if trim_start {
        t = t.trim_start_matches(is_space);
    }
    if trim_end {
        t = t.trim_end_matches(is_space);
    }
    if !t.is_empty() {
        items.push(Item::Text(t.to_string()));
    }
}

/// Go's template whitespace: space, tab, carriage return, newline.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// Tokens of one action; returns them, the bytes used (through `}}`) and whether
/// the action trims the text after it.
fn action(name: &str, line: usize, body: &str) -> Result<(Vec<Tok>, usize, bool), Error> {
    let bytes = body.as_bytes();
    let mut toks = Vec::new();
    let mut i = 0;
    let err = |msg: String| Error::at(name, line, &msg);
    loop {
        while i < bytes.len() && is_space(bytes[i] as char) {
            // " -}}" closes with a trim; checked before the space is skipped.
            if body[i..].starts_with(" -}}")
                || body[i..].starts_with("\n-}}")
                || body[i..].starts_with("\t-}}")
            {
                return Ok((toks, i + 4, true));
            }
            i += 1;
        }
        if i >= bytes.len() {
            return Err(err("unclosed action".into()));
        }
        if body[i..].starts_with("}}") {
            return Ok((toks, i + 2, false));
        }
        let c = bytes[i] as char;
        match c {
            '|' => {
                toks.push(Tok::Pipe);
                i += 1;
            }
            '(' => {
                toks.push(Tok::Open);
                i += 1;
            }
            ')' => {
                toks.push(Tok::Close);
                i += 1;
                if i < bytes.len()
                    && bytes[i] == b'.'
                    && i + 1 < bytes.len()
                    && is_ident_start(bytes[i + 1])
                {
                    let (fields, used) = fields(&body[i..]);
                    toks.push(Tok::Chain(fields));
                    i += used;
                }
            }
            ',' => {
                toks.push(Tok::Comma);
                i += 1;
            }
            ':' if body[i..].starts_with(":=") => {
                toks.push(Tok::Declare);
                i += 2;
            }
            '=' => {
                toks.push(Tok::Assign);
                i += 1;
            }
            '"' => {
                let (s, used) =
                    quoted(&body[i..]).ok_or_else(|| err("unterminated quoted string".into()))?;
                toks.push(Tok::Str(s));
                i += used;
            }
            '`' => {
                let end = body[i + 1..]
                    .find('`')
                    .ok_or_else(|| err("unterminated raw string".into()))?;
                toks.push(Tok::Str(body[i + 1..i + 1 + end].to_string()));
                i += end + 2;
            }
            '.' => {
                if i + 1 < bytes.len() && is_ident_start(bytes[i + 1]) {
                    let (f, used) = fields(&body[i..]);
                    toks.push(Tok::Field(f));
                    i += used;
                } else {
                    toks.push(Tok::Field(Vec::new()));
                    i += 1;
                }
            }
            '$' => {
                let start = i + 1;
                let mut j = start;
                while j < bytes.len() && is_ident_char(bytes[j]) {
                    j += 1;
                }
                let var = body[i..j].to_string();
                let (f, used) = if j < bytes.len()
                    && bytes[j] == b'.'
                    && j + 1 < bytes.len()
                    && is_ident_start(bytes[j + 1])
                {
                    fields(&body[j..])
                } else {
                    (Vec::new(), 0)
                };
                toks.push(Tok::Var(var, f));
                i = j + used;
            }
            '-' | '+' | '0'..='9' => {
                let mut j = i + 1;
                while j < bytes.len()
                    && (bytes[j].is_ascii_alphanumeric()
                        || matches!(bytes[j], b'.' | b'_')
                        || ((bytes[j] == b'-' || bytes[j] == b'+')
                            && matches!(bytes[j - 1], b'e' | b'E')))
                {
                    j += 1;
                }
                let text = body[i..j].replace('_', "");
                let tok =
                    number(&text).ok_or_else(|| err(format!("bad number syntax: {text:?}")))?;
                toks.push(tok);
                i = j;
            }
            c if is_ident_start(c as u8) => {
                let mut j = i;
                while j < bytes.len() && is_ident_char(bytes[j]) {
                    j += 1;
                }
                toks.push(Tok::Ident(body[i..j].to_string()));
                i = j;
            }
            other => return Err(err(format!("unexpected {other:?} in action"))),
        }
    }
}

fn number(text: &str) -> Option<Tok> {
    let (neg, digits) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let radix = |p: &str, r| i64::from_str_radix(p, r).ok();
    let int = if let Some(h) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        radix(h, 16)
    } else if let Some(o) = digits.strip_prefix("0o") {
        radix(o, 8)
    } else if let Some(b) = digits.strip_prefix("0b") {
        radix(b, 2)
    } else if digits.len() > 1
        && digits.starts_with('0')
        && digits.bytes().all(|b| b.is_ascii_digit())
    {
        radix(&digits[1..], 8)
    } else {
        digits.parse::<i64>().ok()
    };
    if let Some(n) = int {
        return Some(Tok::Int(if neg { -n } else { n }));
    }
    let f = digits.parse::<f64>().ok()?;
    Some(Tok::Float(if neg { -f } else { f }))
}

fn quoted(s: &str) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, i + 1)),
            '\\' => {
                let (_, e) = chars.next()?;
                out.push(match e {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    '\\' => '\\',
                    '"' => '"',
                    '\'' => '\'',
                    '0' => '\0',
                    _ => return None,
                });
            }
            '\n' => return None,
            c => out.push(c),
        }
    }
    None
}

fn fields(s: &str) -> (Vec<String>, usize) {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 1 < bytes.len() && bytes[i] == b'.' && is_ident_start(bytes[i + 1]) {
        let mut j = i + 1;
        while j < bytes.len() && is_ident_char(bytes[j]) {
            j += 1;
        }
        out.push(s[i + 1..j].to_string());
        i = j;
    }
    (out, i)
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_ident_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(src: &str) -> Vec<Tok> {
        match lex("t", src).unwrap().remove(0) {
            Item::Action { toks, .. } => toks,
            Item::Text(t) => panic!("text {t:?}"),
        }
    }

    #[test]
    fn trims_and_comments() {
        let items = lex("t", "a  {{- 1 -}}  b {{/* c */}} d\n{{- /* e */ -}}\n f").unwrap();
        let texts: Vec<_> = items
            .iter()
            .filter_map(|i| match i {
                Item::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(texts, ["a", "b ", " d", "f"]);
    }

    #[test]
    fn tokens() {
        assert_eq!(
            toks(r#"{{ $x := .Values.a | default "d\n" | nindent 4 }}"#),
            vec![
                Tok::Var("$x".into(), vec![]),
                Tok::Declare,
                Tok::Field(vec!["Values".into(), "a".into()]),
                Tok::Pipe,
                Tok::Ident("default".into()),
                Tok::Str("d\n".into()),
                Tok::Pipe,
                Tok::Ident("nindent".into()),
                Tok::Int(4),
            ]
        );
        assert_eq!(
            toks("{{ (index $.Values 1).b -2 0.5 `r` }}"),
            vec![
                Tok::Open,
                Tok::Ident("index".into()),
                Tok::Var("$".into(), vec!["Values".into()]),
                Tok::Int(1),
                Tok::Close,
                Tok::Chain(vec!["b".into()]),
                Tok::Int(-2),
                Tok::Float(0.5),
                Tok::Str("r".into()),
            ]
        );
    }

    #[test]
    fn errors_name_the_line() {
        let e = lex("t", "a\nb {{ \"x }}").unwrap_err();
        assert_eq!(e.to_string(), "t:2: unterminated quoted string");
        assert!(lex("t", "{{ .a ").is_err());
    }
}
