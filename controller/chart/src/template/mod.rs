//! Go's `text/template`, as Helm runs it, for the chart that `linkerd install`,
//! `linkerd inject` and the proxy injector render.
//!
//! Written here rather than taken from a crate: the Rust engines available lack
//! what a Helm chart needs to render byte-for-byte as `helm template` does:
//! `include` (a function that runs a named template), methods with arguments
//! (`.Files.Get`), Helm's reading of every number in a values file as a float
//! (`1e+06`), and its removal of `<no value>`. Only what charts use is here;
//! anything else is an error naming it, never a silent difference.

mod exec;
mod funcs;
mod lex;
mod parse;
mod print;

pub(crate) use print::go_float_g;

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

/// The key under which the data passed to a render holds Helm's `.Files`.
pub(crate) const FILES: &str = "\u{0}files";

/// A failure to parse or render, with the template and line it happened at.
#[derive(Debug, thiserror::Error)]
#[error("{name}:{line}: {message}")]
pub struct Error {
    name: String,
    line: usize,
    message: String,
}

impl Error {
    fn at(name: &str, line: usize, message: &str) -> Self {
        // A nested template's error already names where it happened.
        Error {
            name: name.to_string(),
            line,
            message: message.to_string(),
        }
    }

    fn line(&self) -> usize {
        self.line
    }

    pub(crate) fn message(&self) -> &str {
        &self.message
    }
}

/// A set of templates that can call each other: every file's main tree under the
/// file's name, and every `define` under its own name (a later one wins).
#[derive(Default)]
pub(crate) struct Templates {
    trees: HashMap<String, Vec<parse::Node>>,
    /// What `.Files.Get` reads: the chart's files by path.
    files: BTreeMap<String, String>,
}

impl Templates {
    pub(crate) fn add(&mut self, name: &str, src: &str) -> Result<(), Error> {
        let items = lex::lex(name, src)?;
        let parsed = parse::parse(name, items)?;
        self.trees.insert(name.to_string(), parsed.main);
        for (define, body) in parsed.defines {
            self.trees.insert(define, body);
        }
        Ok(())
    }

    pub(crate) fn add_file(&mut self, path: &str, content: &str) {
        self.files.insert(path.to_string(), content.to_string());
    }

    /// Renders the template `name` (a file or a `define`) with `data` as dot.
    pub(crate) fn render(&self, name: &str, data: &Value) -> Result<String, Error> {
        let mut out = String::new();
        exec::State::new(self).call(name, data, &mut out)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(src: &str, data: Value) -> Result<String, Error> {
        let mut t = Templates::default();
        t.add("t", src)?;
        t.render("t", &data)
    }

    fn ok(src: &str, data: Value) -> String {
        render(src, data).unwrap_or_else(|e| panic!("{src}: {e}"))
    }

    #[test]
    fn fields_variables_and_pipelines() {
        let data =
            json!({"Values": {"a": {"b": "x"}, "n": 4143.0, "big": 1000000.0, "list": [1, 2]}});
        assert_eq!(
            ok(
                "{{ .Values.a.b }}-{{ .Values.n }}-{{ .Values.big }}",
                data.clone()
            ),
            "x-4143-1e+06"
        );
        assert_eq!(
            ok(
                "{{ $v := .Values.a }}{{ $v.b | upper | quote }}",
                data.clone()
            ),
            "\"X\""
        );
        assert_eq!(ok("[{{ .Values.missing }}]", data.clone()), "[]");
        assert_eq!(
            ok(
                "{{ (index .Values.list 1) }}{{ (dict \"k\" 3).k }}",
                data.clone()
            ),
            "23"
        );
        assert_eq!(
            ok("{{ .Values.list }} {{ .Values.a }}", data.clone()),
            "[1 2] map[b:x]"
        );
        let e = render("a\n{{ .Values.missing.field }}", data).unwrap_err();
        assert_eq!(
            e.to_string(),
            "t:2: nil pointer evaluating interface {}.field"
        );
    }

    #[test]
    fn control_structures() {
        let data = json!({"m": {"b": 2, "a": 1}, "l": ["x", "y"], "e": [], "t": true});
        assert_eq!(
            ok(
                "{{ range $k, $v := .m }}{{ $k }}={{ $v }};{{ end }}",
                data.clone()
            ),
            "a=1;b=2;"
        );
        assert_eq!(
            ok(
                "{{ range $i, $v := .l }}{{ $i }}{{ . }}{{ end }}",
                data.clone()
            ),
            "0x1y"
        );
        assert_eq!(
            ok("{{ range .e }}x{{ else }}none{{ end }}", data.clone()),
            "none"
        );
        assert_eq!(
            ok(
                "{{ if .no }}a{{ else if .t }}b{{ else }}c{{ end }}",
                data.clone()
            ),
            "b"
        );
        assert_eq!(
            ok(
                "{{ with .m }}{{ .a }}{{ else }}z{{ end }}{{ with .no }}y{{ end }}",
                data.clone()
            ),
            "1"
        );
        assert_eq!(
            ok(
                "{{ range .l }}{{ if eq . \"y\" }}{{ break }}{{ end }}{{ . }}{{ end }}",
                data.clone()
            ),
            "x"
        );
        assert_eq!(
            ok(
                "{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}",
                data.clone()
            ),
            "2"
        );
        assert_eq!(
            ok("{{ and 1 0 }} {{ or 0 \"\" 3 }} {{ not .t }}", data),
            "0 3 false"
        );
    }

    #[test]
    fn include_template_and_files() {
        let mut t = Templates::default();
        t.add(
            "_h.tpl",
            "{{- define \"l\" -}}\na: {{ .x }}\nb: {{ $.x }}\n{{- end }}",
        )
        .unwrap();
        t.add("m", "top:{{ include \"l\" (dict \"x\" 1) | nindent 2 }}\n{{ template \"l\" .v }}\n{{ .Files.Get \"f\" }}")
            .unwrap();
        t.add_file("f", "content");
        let data = json!({"v": {"x": "y"}, FILES: {}, "Files": {FILES: true}});
        assert_eq!(
            t.render("m", &data).unwrap(),
            "top:\n  a: 1\n  b: 1\na: y\nb: y\ncontent"
        );
        let mut loops = Templates::default();
        loops
            .add(
                "m",
                "{{ define \"a\" }}{{ include \"a\" . }}{{ end }}{{ include \"a\" . }}",
            )
            .unwrap();
        assert!(
            loops
                .render("m", &json!({}))
                .unwrap_err()
                .to_string()
                .contains("too deeply")
        );
    }

    #[test]
    fn helm_functions() {
        let data = json!({"s": "", "n": 0, "m": {"b": [1], "a": "x"}});
        assert_eq!(
            ok(
                "{{ .s | default \"d\" }} {{ .n | default 5 }} {{ default 1 2 }}",
                data.clone()
            ),
            "d 5 2"
        );
        assert_eq!(
            ok(
                "{{ quote .missing }}|{{ quote 1 \"a\" }}|{{ squote \"x\" }}",
                data.clone()
            ),
            "|\"1\" \"a\"|'x'"
        );
        assert_eq!(ok("{{ toYaml .m }}", data.clone()), "a: x\nb:\n- 1");
        assert_eq!(
            ok("{{ toJson .m }}", data.clone()),
            "{\"a\":\"x\",\"b\":[1]}"
        );
        assert_eq!(ok("{{ \"a\\nb\" | indent 2 }}", data.clone()), "  a\n  b");
        assert_eq!(
            ok("{{ printf \"%s:%d %q\" \"a\" 4 \"b\" }}", data.clone()),
            "a:4 \"b\""
        );
        assert_eq!(
            ok(
                "{{ b64enc \"hi\" }} {{ add 1 2 3 }} {{ ternary \"y\" \"n\" true }}",
                data.clone()
            ),
            "aGk= 6 y"
        );
        let e = render("{{ required \"set x\" .x }}", data.clone()).unwrap_err();
        assert_eq!(e.to_string(), "t:1: error calling required: set x");
        let e = render("{{ nosuch 1 }}", data).unwrap_err();
        assert!(
            e.to_string().contains("function \"nosuch\" not defined"),
            "{e}"
        );
    }

    #[test]
    fn parse_errors_name_the_place() {
        for (src, want) in [
            ("{{ if .a }}x", "t:1: unexpected EOF: if has no end"),
            ("a\n{{ end }}", "t:2: unexpected {{end}}"),
            ("{{ .a | }}", "t:1: missing value for command"),
            ("{{ (1 }}", "t:1: unclosed left paren"),
        ] {
            assert_eq!(
                render(src, json!({})).unwrap_err().to_string(),
                want,
                "{src}"
            );
        }
    }
}
