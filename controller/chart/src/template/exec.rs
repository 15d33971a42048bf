//! Runs a parsed template over data, with Go's semantics: truth is "not empty",
//! a pipeline's value is the last argument of its next command, `$` is the
//! data a template was called with, and a missing map key is no value.

use serde_json::Value;

use super::parse::{Arg, Node, Pipeline};
use super::{Error, Templates, funcs, print};

/// Nested `include`s and `template`s beyond this are a loop.
const MAX_DEPTH: usize = 100;

pub(super) enum Flow {
    Normal,
    Break,
    Continue,
}

pub(super) struct State<'a> {
    pub(super) set: &'a Templates,
    name: String,
    vars: Vec<(String, Value)>,
    depth: usize,
}

/// What an evaluation fails with before it knows its line.
pub(super) type Fail = String;

impl<'a> State<'a> {
    pub(super) fn new(set: &'a Templates) -> Self {
        State {
            set,
            name: String::new(),
            vars: Vec::new(),
            depth: 0,
        }
    }

    /// Runs the template `name` with `dot`, as `template` and `include` do: a
    /// fresh set of variables where `$` is `dot`.
    pub(super) fn call(&mut self, name: &str, dot: &Value, out: &mut String) -> Result<(), Error> {
        let nodes = self
            .set
            .trees
            .get(name)
            .ok_or_else(|| Error::at(&self.name, 0, &format!("no template {name:?}")))?;
        if self.depth >= MAX_DEPTH {
            return Err(Error::at(
                name,
                0,
                "templates call each other too deeply (a loop?)",
            ));
        }
        let saved_vars = std::mem::replace(&mut self.vars, vec![("$".to_string(), dot.clone())]);
        let saved_name = std::mem::replace(&mut self.name, name.to_string());
        self.depth += 1;
        let result = self.walk(nodes, dot, out);
        self.depth -= 1;
        self.vars = saved_vars;
        self.name = saved_name;
        result.map(|_| ())
    }

    fn walk(&mut self, nodes: &[Node], dot: &Value, out: &mut String) -> Result<Flow, Error> {
        for node in nodes {
            match node {
                Node::Text(t) => out.push_str(t),
                Node::Output(pipe) => {
                    let v = self.pipeline(pipe, dot)?;
                    if pipe.decl.is_empty() {
                        print::value(&v, out);
                    }
                }
                Node::Cond {
                    with,
                    branches,
                    otherwise,
                } => {
                    let mark = self.vars.len();
                    let mut taken = None;
                    for (pipe, body) in branches {
                        let v = self.pipeline(pipe, dot)?;
                        if funcs::truth(&v) {
                            taken = Some((v, body));
                            break;
                        }
                    }
                    let flow = match taken {
                        Some((v, body)) if *with => self.walk(body, &v, out)?,
                        Some((_, body)) => self.walk(body, dot, out)?,
                        None => self.walk(otherwise, dot, out)?,
                    };
                    self.vars.truncate(mark);
                    if !matches!(flow, Flow::Normal) {
                        return Ok(flow);
                    }
                }
                Node::Range {
                    pipe,
                    body,
                    otherwise,
                } => {
                    let mark = self.vars.len();
                    self.range(pipe, body, otherwise, dot, out)?;
                    self.vars.truncate(mark);
                }
                Node::Template { line, name, pipe } => {
                    let data = match pipe {
                        Some(p) => self.pipeline(p, dot)?,
                        None => Value::Null,
                    };
                    self.call(name, &data, out).map_err(|e| {
                        if e.line() == 0 && !self.set.trees.contains_key(name) {
                            Error::at(&self.name, *line, &format!("no such template {name:?}"))
                        } else {
                            e
                        }
                    })?;
                }
                Node::Break => return Ok(Flow::Break),
                Node::Continue => return Ok(Flow::Continue),
            }
        }
        Ok(Flow::Normal)
    }

    fn range(
        &mut self,
        pipe: &Pipeline,
        body: &[Node],
        otherwise: &[Node],
        dot: &Value,
        out: &mut String,
    ) -> Result<(), Error> {
        // The declared variables get each element, not the whole value.
        let value = self.eval(pipe, dot)?;
        let items: Vec<(Value, Value)> = match value {
            Value::Array(a) => a
                .into_iter()
                .enumerate()
                .map(|(i, v)| (Value::from(i as i64), v))
                .collect(),
            // Go ranges over a map in key order.
            Value::Object(m) => m.into_iter().map(|(k, v)| (Value::String(k), v)).collect(),
            Value::Number(n) if n.as_i64().is_some() => (0..n.as_i64().unwrap_or(0))
                .map(|i| (Value::from(i), Value::from(i)))
                .collect(),
            Value::Null => Vec::new(),
            other => {
                return Err(Error::at(
                    &self.name,
                    pipe.line,
                    &format!("range can't iterate over {}", print::to_string(&other)),
                ));
            }
        };
        if items.is_empty() {
            self.walk(otherwise, dot, out)?;
            return Ok(());
        }
        let mark = self.vars.len();
        for (key, item) in items {
            match pipe.decl.as_slice() {
                [v] => self.vars.push((v.clone(), item.clone())),
                [k, v] => {
                    self.vars.push((k.clone(), key));
                    self.vars.push((v.clone(), item.clone()));
                }
                _ => {}
            }
            let flow = self.walk(body, &item, out)?;
            self.vars.truncate(mark);
            if matches!(flow, Flow::Break) {
                break;
            }
        }
        Ok(())
    }

    /// A pipeline's value, declaring or assigning its variables.
    fn pipeline(&mut self, pipe: &Pipeline, dot: &Value) -> Result<Value, Error> {
        let v = self.eval(pipe, dot)?;
        if let Some(name) = pipe.decl.first() {
            if pipe.assign {
                match self.vars.iter_mut().rev().find(|(n, _)| n == name) {
                    Some(slot) => slot.1 = v.clone(),
                    None => {
                        return Err(Error::at(
                            &self.name,
                            pipe.line,
                            &format!("undefined variable: {name}"),
                        ));
                    }
                }
            } else {
                self.vars.push((name.clone(), v.clone()));
            }
        }
        Ok(v)
    }

    /// A pipeline's value without touching its variables.
    fn eval(&mut self, pipe: &Pipeline, dot: &Value) -> Result<Value, Error> {
        let mut last: Option<Value> = None;
        for cmd in &pipe.cmds {
            let v = self
                .command(cmd, dot, last.take())
                .map_err(|e| Error::at(&self.name, pipe.line, &e))?;
            last = Some(v);
        }
        Ok(last.unwrap_or(Value::Null))
    }

    fn command(&mut self, cmd: &[Arg], dot: &Value, fin: Option<Value>) -> Result<Value, Fail> {
        match &cmd[0] {
            Arg::Func(name) if name == "and" || name == "or" => {
                let want = name == "or";
                let mut last = Value::Null;
                let n = cmd.len() - 1 + usize::from(fin.is_some());
                if n == 0 {
                    return Err(format!(
                        "wrong number of args for {name}: want at least 1 got 0"
                    ));
                }
                for arg in &cmd[1..] {
                    last = self.arg(arg, dot)?;
                    if funcs::truth(&last) == want {
                        return Ok(last);
                    }
                }
                Ok(fin.unwrap_or(last))
            }
            Arg::Func(name)
                if (name == "set" || name == "unset")
                    && matches!(cmd.get(1), Some(Arg::Var(..))) =>
            {
                self.mutate(name, cmd, dot, fin)
                    .map_err(|e| format!("error calling {name}: {e}"))
            }
            Arg::Func(name) => {
                let mut args = Vec::with_capacity(cmd.len());
                for arg in &cmd[1..] {
                    args.push(self.arg(arg, dot)?);
                }
                args.extend(fin);
                funcs::call(self, name, args).map_err(|e| format!("error calling {name}: {e}"))
            }
            Arg::Field(chain) | Arg::Var(_, chain) if cmd.len() > 1 || fin.is_some() => {
                // Only a method takes arguments; Helm's `.Files.Get` is the one here.
                let (receiver, method) = match (&cmd[0], chain.split_last()) {
                    (_, None) => return Err("can't give argument to non-function".into()),
                    (Arg::Field(_), Some((m, path))) => (self.fields(dot, path)?, m),
                    (Arg::Var(v, _), Some((m, path))) => (self.fields(&self.var(v)?, path)?, m),
                    _ => unreachable!("matched above"),
                };
                let mut args = Vec::with_capacity(cmd.len());
                for arg in &cmd[1..] {
                    args.push(self.arg(arg, dot)?);
                }
                args.extend(fin);
                self.method(&receiver, method, args)
            }
            arg if cmd.len() > 1 || fin.is_some() => {
                Err(format!("can't give argument to non-function {arg:?}"))
            }
            arg => self.arg(arg, dot),
        }
    }

    /// Sprig's `set` and `unset` change a map in place. Go's maps are shared, so
    /// `$_ := set $v.a "k" 1` changes what `$v` holds: here the map is reached
    /// through the variable and changed there.
    fn mutate(
        &mut self,
        name: &str,
        cmd: &[Arg],
        dot: &Value,
        fin: Option<Value>,
    ) -> Result<Value, Fail> {
        let Arg::Var(var, chain) = &cmd[1] else {
            unreachable!("checked by the caller")
        };
        let mut args = Vec::new();
        for arg in &cmd[2..] {
            args.push(self.arg(arg, dot)?);
        }
        args.extend(fin);
        let want = if name == "set" { 2 } else { 1 };
        if args.len() != want {
            return Err(format!(
                "wrong number of args for {name}: want {} got {}",
                want + 1,
                args.len() + 1
            ));
        }
        let key = args[0]
            .as_str()
            .ok_or("the key must be a string")?
            .to_string();
        let slot = self
            .vars
            .iter_mut()
            .rev()
            .find(|(n, _)| n == var)
            .map(|(_, v)| v)
            .ok_or_else(|| format!("undefined variable: {var}"))?;
        let mut target = slot;
        for f in chain {
            target = target
                .get_mut(f.as_str())
                .ok_or_else(|| format!("nil pointer evaluating interface {{}}.{f}"))?;
        }
        let map = target
            .as_object_mut()
            .ok_or("the first argument must be a map")?;
        if name == "set" {
            map.insert(key, args.pop().unwrap_or(Value::Null));
        } else {
            map.remove(&key);
        }
        Ok(Value::Object(map.clone()))
    }

    fn method(&self, receiver: &Value, method: &str, args: Vec<Value>) -> Result<Value, Fail> {
        if receiver.get(super::FILES).is_none() {
            return Err(format!("{method} is not a method but has arguments"));
        }
        match (method, args.as_slice()) {
            ("Get", [Value::String(path)]) => Ok(Value::String(
                self.set.files.get(path).cloned().unwrap_or_default(),
            )),
            ("Get", _) => Err("Files.Get takes one path".into()),
            (m, _) => Err(format!("Files.{m} is not supported")),
        }
    }

    fn arg(&mut self, arg: &Arg, dot: &Value) -> Result<Value, Fail> {
        Ok(match arg {
            Arg::Field(chain) => self.fields(dot, chain)?,
            Arg::Var(v, chain) => {
                let base = self.var(v)?;
                self.fields(&base, chain)?
            }
            Arg::Func(name) => funcs::call(self, name, Vec::new())
                .map_err(|e| format!("error calling {name}: {e}"))?,
            Arg::Str(s) => Value::String(s.clone()),
            Arg::Int(n) => Value::from(*n),
            Arg::Float(f) => Value::from(*f),
            Arg::Bool(b) => Value::Bool(*b),
            Arg::Nil => Value::Null,
            Arg::Sub(pipe, chain) => {
                let v = self.eval(pipe, dot).map_err(|e| e.message().to_string())?;
                self.fields(&v, chain)?
            }
        })
    }

    fn var(&self, name: &str) -> Result<Value, Fail> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| format!("undefined variable: {name}"))
    }

    /// Follows `.a.b` from `base`. A missing key is no value; a field of no value
    /// is an error, as in Go.
    fn fields(&self, base: &Value, chain: &[String]) -> Result<Value, Fail> {
        let mut cur = base;
        for (i, f) in chain.iter().enumerate() {
            cur = match cur {
                Value::Object(m) => match m.get(f) {
                    Some(v) => v,
                    None => {
                        return if i + 1 == chain.len() {
                            Ok(Value::Null)
                        } else {
                            Err(format!(
                                "nil pointer evaluating interface {{}}.{}",
                                chain[i + 1]
                            ))
                        };
                    }
                },
                Value::Null => return Err(format!("nil pointer evaluating interface {{}}.{f}")),
                other => {
                    return Err(format!(
                        "can't evaluate field {f} in type {}",
                        funcs::type_name(other)
                    ));
                }
            };
        }
        Ok(cur.clone())
    }
}
