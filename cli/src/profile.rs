//! `linkerd profile`: a ServiceProfile for a service, to `kubectl apply`:
//! a commented template, or the routes of an OpenAPI (Swagger) description
//! or of a protobuf file's gRPC services, as Linkerd's `linkerd profile`
//! writes them.

use anyhow::{Context, bail};
use clap::{ArgGroup, Args};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("source").required(true).args(["template", "open_api", "proto", "tap"])))]
pub(crate) struct ProfileArgs {
    /// The service the profile is for.
    service: String,
    /// The service's namespace.
    #[arg(short, long, default_value = "default")]
    namespace: String,
    /// A commented template to fill in.
    #[arg(long)]
    template: bool,
    /// Routes from an OpenAPI 3 or Swagger 2 description (YAML or JSON):
    /// one per path and method; `x-linkerd-retryable` and
    /// `x-linkerd-timeout` on an operation set its retries and timeout.
    #[arg(long = "open-api", value_name = "FILE")]
    open_api: Option<PathBuf>,
    /// Routes from a protobuf file's gRPC services: one per method.
    #[arg(long, value_name = "FILE")]
    proto: Option<PathBuf>,
    /// Routes from live traffic: the requests this resource's pods receive
    /// (TYPE/NAME, in --namespace), tapped for --tap-duration: one per
    /// method and path seen.
    #[arg(long, value_name = "RESOURCE")]
    tap: Option<String>,
    /// How long to tap, with --tap.
    #[arg(long, default_value = "5s", value_parser = linkerd_duration::parse)]
    tap_duration: std::time::Duration,
    /// At most this many routes from --tap: the busiest.
    #[arg(long, default_value_t = 20)]
    tap_route_limit: usize,
    /// The cluster's DNS domain, in the profile's name.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
}

pub(crate) async fn run(args: ProfileArgs, api: &crate::api::Target) -> anyhow::Result<()> {
    if args.service.is_empty() || args.service.contains(['/', '.', ' ']) {
        bail!(
            "{:?} is not a service name (the Service's name, with -n for its namespace)",
            args.service
        );
    }
    let name = format!(
        "{}.{}.svc.{}",
        args.service, args.namespace, args.cluster_domain
    );
    if args.template {
        print!("{}", template(&name, &args.namespace));
        return Ok(());
    }
    let routes = match (&args.open_api, &args.proto, &args.tap) {
        (Some(file), _, _) => open_api_routes(file)?,
        (_, Some(file), _) => proto_routes(file)?,
        (_, _, Some(resource)) => {
            let seen = tap_requests(resource, &args.namespace, args.tap_duration, api).await?;
            tap_routes(seen, args.tap_route_limit)
        }
        _ => unreachable!("clap requires a source"),
    };
    let profile = json!({
        "apiVersion": "linkerd.io/v1alpha2",
        "kind": "ServiceProfile",
        "metadata": {"name": name, "namespace": args.namespace},
        "spec": {"routes": routes},
    });
    print!("{}", linkerd_chart::yaml::to_string(&profile));
    Ok(())
}

/// The requests `resource`'s pods received while tapped for `duration`:
/// how many of each (method, path).
async fn tap_requests(
    resource: &str,
    namespace: &str,
    duration: std::time::Duration,
    api: &crate::api::Target,
) -> anyhow::Result<std::collections::BTreeMap<(String, String), u64>> {
    use linkerd_proxy_api::tap::tap_event::{self, http::Event};
    if duration.is_zero() {
        bail!("--tap-duration must be above 0");
    }
    let selection = crate::tap::Selection::of(resource, namespace);
    let mut events = selection.open(api).await?;
    let mut seen = std::collections::BTreeMap::new();
    let until = tokio::time::sleep(duration);
    tokio::pin!(until);
    loop {
        let event = tokio::select! {
            _ = &mut until => break,
            e = events.next() => match e.map_err(|e| anyhow::anyhow!("tap ended: {e}"))? {
                Some(e) => e,
                None => break,
            },
        };
        if event.proxy_direction != tap_event::ProxyDirection::Inbound as i32 {
            continue;
        }
        let Some(tap_event::Event::Http(http)) = &event.event else {
            continue;
        };
        if let Some(Event::RequestInit(init)) = &http.event {
            let method = linkerd_format::tap::method_name(init);
            *seen.entry((method, init.path.clone())).or_insert(0) += 1;
        }
    }
    Ok(seen)
}

/// A route per (method, path) seen, the busiest `limit`, in name order: an
/// exact path (escaped), as Linkerd's `profile --tap`.
fn tap_routes(seen: std::collections::BTreeMap<(String, String), u64>, limit: usize) -> Vec<Value> {
    let mut busiest: Vec<_> = seen.into_iter().collect();
    busiest.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    busiest.truncate(limit);
    let mut routes: Vec<_> = busiest.into_iter().map(|(route, _)| route).collect();
    routes.sort();
    routes
        .into_iter()
        .map(|(method, path)| {
            json!({
                "name": format!("{method} {path}"),
                "condition": {"method": method, "pathRegex": regex::escape(&path)},
            })
        })
        .collect()
}

/// A path template's regular expression: literal text escaped, each
/// `{parameter}` one path segment.
fn path_regex(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        out.push_str(&regex::escape(&rest[..open]));
        match rest[open..].find('}') {
            Some(close) => {
                out.push_str("[^/]*");
                rest = &rest[open + close + 1..];
            }
            None => {
                out.push_str(&regex::escape(&rest[open..]));
                rest = "";
            }
        }
    }
    out.push_str(&regex::escape(rest));
    out
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn open_api_routes(file: &Path) -> anyhow::Result<Vec<Value>> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("--open-api: cannot read {}", file.display()))?;
    let doc: Value = serde_saphyr::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "--open-api {}: not YAML or JSON: {}",
            file.display(),
            e.to_string()
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: ")
        )
    })?;
    let Some(paths) = doc["paths"].as_object() else {
        bail!(
            "--open-api {}: no `paths`: not an OpenAPI or Swagger description",
            file.display()
        );
    };
    // Swagger 2's basePath; OpenAPI 3's first server's path.
    let base = doc["basePath"]
        .as_str()
        .map(str::to_string)
        .or_else(|| {
            let url = doc["servers"][0]["url"].as_str()?;
            let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
            let path = match after_scheme.find('/') {
                Some(i) if url.contains("://") => &after_scheme[i..],
                Some(_) => after_scheme,
                None => "",
            };
            Some(path.to_string())
        })
        .unwrap_or_default();
    let base = base.trim_end_matches('/');
    let mut routes = Vec::new();
    for (path, item) in paths {
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            let full = format!("{base}{path}");
            let upper = method.to_ascii_uppercase();
            let mut route = json!({
                "name": format!("{upper} {full}"),
                "condition": {"method": upper, "pathRegex": path_regex(&full)},
            });
            if op["x-linkerd-retryable"].as_bool() == Some(true) {
                route["isRetryable"] = json!(true);
            }
            if let Some(timeout) = op["x-linkerd-timeout"].as_str() {
                if linkerd_discovery::profile::parse_duration(timeout).is_none() {
                    bail!(
                        "--open-api {}: {upper} {full}: x-linkerd-timeout {timeout:?} is not a duration (e.g. 100ms)",
                        file.display()
                    );
                }
                route["timeout"] = json!(timeout);
            }
            routes.push(route);
        }
    }
    if routes.is_empty() {
        bail!(
            "--open-api {}: its paths have no operations",
            file.display()
        );
    }
    Ok(routes)
}

fn proto_routes(file: &Path) -> anyhow::Result<Vec<Value>> {
    let dir = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = file
        .file_name()
        .with_context(|| format!("--proto {}: not a file", file.display()))?;
    let set = protox::compile([name], [dir]).map_err(|e| {
        anyhow::anyhow!(
            "--proto {}: {}",
            file.display(),
            e.to_string().lines().next().unwrap_or_default()
        )
    })?;
    let wanted = name.to_string_lossy();
    let Some(proto) = set.file.iter().find(|f| f.name() == wanted) else {
        bail!("--proto {}: the file did not compile", file.display());
    };
    let mut routes = Vec::new();
    for service in &proto.service {
        let qualified = match proto.package() {
            "" => service.name().to_string(),
            package => format!("{package}.{}", service.name()),
        };
        for method in &service.method {
            let path = format!("/{qualified}/{}", method.name());
            routes.push(json!({
                "name": format!("POST {path}"),
                "condition": {"method": "POST", "pathRegex": regex::escape(&path)},
            }));
        }
    }
    if routes.is_empty() {
        bail!("--proto {}: it defines no service methods", file.display());
    }
    Ok(routes)
}

fn template(name: &str, namespace: &str) -> String {
    format!(
        r#"# A ServiceProfile for {name}: its routes, for per-route metrics,
# retries and timeouts. Apply it with `kubectl apply -f`.
apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata:
  name: {name}
  namespace: {namespace}
spec:
  # Requests are matched against the routes in order; the first that matches
  # is the request's route.
  routes:
  - name: GET /books/{{id}}
    condition:
      # A regular expression the whole path must match, and a method.
      pathRegex: /books/[^/]*
      method: GET
      # Conditions combine: all (each must hold), any (one must), not.
      # all:
      # - method: POST
      # - pathRegex: /books
    # How responses count: those a class matches with isFailure are failures
    # (by default, 5xx statuses are).
    responseClasses:
    - condition:
        status:
          min: 500
          max: 599
      isFailure: true
    # Failed requests of a retryable route are tried again, within the budget.
    isRetryable: true
    # A request still unanswered after this gets a 504.
    timeout: 300ms
  # Retries may add this ratio of the original requests, and at least
  # minRetriesPerSecond, counted over ttl.
  retryBudget:
    retryRatio: 0.2
    minRetriesPerSecond: 10
    ttl: 10s
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tapped_requests_become_the_busiest_routes_by_name() {
        let seen = [
            (("GET", "/api/vote"), 50),
            (("GET", "/api/list"), 3),
            (("POST", "/api/v1/books.json"), 9),
        ]
        .into_iter()
        .map(|((m, p), n)| ((m.to_string(), p.to_string()), n))
        .collect();
        let routes = tap_routes(seen, 2);
        let names: Vec<&str> = routes.iter().map(|r| r["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["GET /api/vote", "POST /api/v1/books.json"]);
        assert_eq!(routes[1]["condition"]["pathRegex"], "/api/v1/books\\.json");
        assert_eq!(routes[1]["condition"]["method"], "POST");
    }

    #[test]
    fn path_templates_become_regular_expressions() {
        assert_eq!(path_regex("/books/{id}"), "/books/[^/]*");
        assert_eq!(
            path_regex("/v1.0/a+b/{x}/{y}.json"),
            r"/v1\.0/a\+b/[^/]*/[^/]*\.json"
        );
        assert_eq!(path_regex("/odd/{unclosed"), r"/odd/\{unclosed");
    }

    #[test]
    fn the_template_is_a_valid_profile() {
        let text = template("web-svc.emojivoto.svc.cluster.local", "emojivoto");
        let p: linkerd_discovery::profile::ServiceProfile = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(p.check(), Ok(()));
        assert_eq!(p.spec.routes[0].timeout.as_deref(), Some("300ms"));
    }
}
