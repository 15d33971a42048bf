//! Builds the tree of a template from its items: text, output actions, and the
//! control structures `if`, `range`, `with`, `define`, `template`.

use super::Error;
use super::lex::{Item, Tok};

#[derive(Debug)]
pub(super) enum Node {
    Text(String),
    Output(Pipeline),
    /// `if` and `with` chains (`else if`, `else with`): the first true branch runs.
    Cond {
        with: bool,
        branches: Vec<(Pipeline, Vec<Node>)>,
        otherwise: Vec<Node>,
    },
    Range {
        pipe: Pipeline,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
    Template {
        line: usize,
        name: String,
        pipe: Option<Pipeline>,
    },
    Break,
    Continue,
}

#[derive(Debug)]
pub(super) struct Pipeline {
    pub(super) line: usize,
    pub(super) decl: Vec<String>,
    /// `$x = ...` assigns an existing variable rather than declaring one.
    pub(super) assign: bool,
    pub(super) cmds: Vec<Vec<Arg>>,
}

#[derive(Debug)]
pub(super) enum Arg {
    Field(Vec<String>),
    Var(String, Vec<String>),
    Func(String),
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Nil,
    Sub(Box<Pipeline>, Vec<String>),
}

/// A parsed file: its main tree and the templates it defines.
pub(super) struct Parsed {
    pub(super) main: Vec<Node>,
    pub(super) defines: Vec<(String, Vec<Node>)>,
}

pub(super) fn parse(name: &str, items: Vec<Item>) -> Result<Parsed, Error> {
    let mut p = Parser {
        name,
        items: items.into_iter(),
        defines: Vec::new(),
    };
    let (main, end) = p.list()?;
    if let Some((kw, line, _)) = end {
        return Err(Error::at(name, line, &format!("unexpected {{{{{kw}}}}}")));
    }
    Ok(Parsed {
        main,
        defines: p.defines,
    })
}

struct Parser<'a> {
    name: &'a str,
    items: std::vec::IntoIter<Item>,
    defines: Vec<(String, Vec<Node>)>,
}

/// How a list ended: `end` or `else`, its line, and the tokens after the keyword.
type End = Option<(&'static str, usize, Vec<Tok>)>;

impl Parser<'_> {
    fn err(&self, line: usize, msg: &str) -> Error {
        Error::at(self.name, line, msg)
    }

    fn list(&mut self) -> Result<(Vec<Node>, End), Error> {
        let mut nodes = Vec::new();
        while let Some(item) = self.items.next() {
            let (line, mut toks) = match item {
                Item::Text(t) => {
                    nodes.push(Node::Text(t));
                    continue;
                }
                Item::Action { line, toks } => (line, toks),
            };
            let keyword = match toks.first() {
                Some(Tok::Ident(k)) => k.clone(),
                _ => String::new(),
            };
            match keyword.as_str() {
                "end" | "else" => {
                    toks.remove(0);
                    let kw = if keyword == "end" { "end" } else { "else" };
                    if kw == "end" && !toks.is_empty() {
                        return Err(self.err(line, "unexpected tokens after end"));
                    }
                    return Ok((nodes, Some((kw, line, toks))));
                }
                "if" | "with" => {
                    toks.remove(0);
                    nodes.push(self.cond(keyword == "with", line, toks)?);
                }
                "range" => {
                    toks.remove(0);
                    let pipe = self.pipeline(line, toks, true)?;
                    let (body, end) = self.list()?;
                    let otherwise = match self.expect_end(line, "range", end)? {
                        Some(_) => self.else_body(line, "range")?,
                        None => Vec::new(),
                    };
                    nodes.push(Node::Range {
                        pipe,
                        body,
                        otherwise,
                    });
                }
                "define" => {
                    let name = match toks.get(1) {
                        Some(Tok::Str(n)) if toks.len() == 2 => n.clone(),
                        _ => return Err(self.err(line, "define takes one quoted name")),
                    };
                    let (body, end) = self.list()?;
                    if self.expect_end(line, "define", end)?.is_some() {
                        return Err(self.err(line, "define has no else"));
                    }
                    self.defines.push((name, body));
                }
                "template" => {
                    let name = match toks.get(1) {
                        Some(Tok::Str(n)) => n.clone(),
                        _ => return Err(self.err(line, "template takes a quoted name")),
                    };
                    let rest: Vec<Tok> = toks.drain(2..).collect();
                    let pipe = if rest.is_empty() {
                        None
                    } else {
                        Some(self.pipeline(line, rest, false)?)
                    };
                    nodes.push(Node::Template { line, name, pipe });
                }
                "break" | "continue" if toks.len() == 1 => nodes.push(if keyword == "break" {
                    Node::Break
                } else {
                    Node::Continue
                }),
                "block" => {
                    return Err(self.err(line, "block is not supported; use define and include"));
                }
                _ => nodes.push(Node::Output(self.pipeline(line, toks, false)?)),
            }
        }
        Ok((nodes, None))
    }

    /// Checks that a structure's body ended with `end` or `else`; returns the
    /// tokens after `else` when it was one.
    fn expect_end(&self, line: usize, what: &str, end: End) -> Result<Option<Vec<Tok>>, Error> {
        match end {
            Some(("end", _, _)) => Ok(None),
            Some((_, _, toks)) => Ok(Some(toks)),
            None => Err(self.err(line, &format!("unexpected EOF: {what} has no end"))),
        }
    }

    fn else_body(&mut self, line: usize, what: &str) -> Result<Vec<Node>, Error> {
        let (body, end) = self.list()?;
        match end {
            Some(("end", _, _)) => Ok(body),
            Some((_, l, _)) => Err(self.err(l, &format!("{what} has two else branches"))),
            None => Err(self.err(line, &format!("unexpected EOF: {what} has no end"))),
        }
    }

    fn cond(&mut self, with: bool, line: usize, toks: Vec<Tok>) -> Result<Node, Error> {
        let what = if with { "with" } else { "if" };
        let mut branches = Vec::new();
        let mut pipe = self.pipeline(line, toks, false)?;
        loop {
            let (body, end) = self.list()?;
            branches.push((pipe, body));
            let Some(mut rest) = self.expect_end(line, what, end)? else {
                return Ok(Node::Cond {
                    with,
                    branches,
                    otherwise: Vec::new(),
                });
            };
            match rest.first() {
                Some(Tok::Ident(k)) if k == what => {
                    rest.remove(0);
                    pipe = self.pipeline(line, rest, false)?;
                }
                None => {
                    let otherwise = self.else_body(line, what)?;
                    return Ok(Node::Cond {
                        with,
                        branches,
                        otherwise,
                    });
                }
                Some(_) => {
                    return Err(self.err(line, &format!("unexpected tokens after else in {what}")));
                }
            }
        }
    }

    fn pipeline(&self, line: usize, toks: Vec<Tok>, range: bool) -> Result<Pipeline, Error> {
        let mut decl = Vec::new();
        let mut assign = false;
        let mut rest = &toks[..];
        match rest {
            [
                Tok::Var(a, f),
                Tok::Comma,
                Tok::Var(b, g),
                Tok::Declare | Tok::Assign,
                ..,
            ] if range && f.is_empty() && g.is_empty() => {
                assign = rest[3] == Tok::Assign;
                decl = vec![a.clone(), b.clone()];
                rest = &rest[4..];
            }
            [Tok::Var(a, f), Tok::Declare | Tok::Assign, ..] if f.is_empty() => {
                assign = rest[1] == Tok::Assign;
                decl = vec![a.clone()];
                rest = &rest[2..];
            }
            _ => {}
        }
        let mut cmds = Vec::new();
        let mut pos = 0;
        loop {
            let (cmd, used) = self.command(line, &rest[pos..])?;
            if cmd.is_empty() {
                return Err(self.err(line, "missing value for command"));
            }
            cmds.push(cmd);
            pos += used;
            match rest.get(pos) {
                None => break,
                Some(Tok::Pipe) => pos += 1,
                Some(t) => return Err(self.err(line, &format!("unexpected {t:?} in pipeline"))),
            }
        }
        Ok(Pipeline {
            line,
            decl,
            assign,
            cmds,
        })
    }

    /// One command: arguments up to a `|`, a `)` or the end.
    fn command(&self, line: usize, toks: &[Tok]) -> Result<(Vec<Arg>, usize), Error> {
        let mut args = Vec::new();
        let mut i = 0;
        while let Some(t) = toks.get(i) {
            let arg = match t {
                Tok::Pipe | Tok::Close => break,
                Tok::Field(f) => Arg::Field(f.clone()),
                Tok::Var(v, f) => Arg::Var(v.clone(), f.clone()),
                Tok::Ident(id) => match id.as_str() {
                    "true" => Arg::Bool(true),
                    "false" => Arg::Bool(false),
                    "nil" => Arg::Nil,
                    _ => Arg::Func(id.clone()),
                },
                Tok::Str(s) => Arg::Str(s.clone()),
                Tok::Int(n) => Arg::Int(*n),
                Tok::Float(f) => Arg::Float(*f),
                Tok::Open => {
                    let close = matching_close(&toks[i..])
                        .ok_or_else(|| self.err(line, "unclosed left paren"))?;
                    let inner = toks[i + 1..i + close].to_vec();
                    let sub = self.pipeline(line, inner, false)?;
                    i += close;
                    let chain = match toks.get(i + 1) {
                        Some(Tok::Chain(c)) => {
                            i += 1;
                            c.clone()
                        }
                        _ => Vec::new(),
                    };
                    Arg::Sub(Box::new(sub), chain)
                }
                other => return Err(self.err(line, &format!("unexpected {other:?} in command"))),
            };
            args.push(arg);
            i += 1;
        }
        Ok((args, i))
    }
}

/// Index of the `)` that closes the `(` at `toks[0]`.
fn matching_close(toks: &[Tok]) -> Option<usize> {
    let mut depth = 0;
    for (i, t) in toks.iter().enumerate() {
        match t {
            Tok::Open => depth += 1,
            Tok::Close => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}
