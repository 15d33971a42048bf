//! The UI's files, built into the binary: plain HTML, CSS and JavaScript
//! with no build step, so the repository's own setup is all it needs.

use crate::server::{Body, full, text};
use http::{HeaderValue, Response, StatusCode, header};

const FILES: &[(&str, &str, &str)] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("../assets/index.html"),
    ),
    (
        "/app.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/app.js"),
    ),
    (
        "/chart.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/chart.js"),
    ),
    (
        "/graph.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/graph.js"),
    ),
    (
        "/style.css",
        "text/css; charset=utf-8",
        include_str!("../assets/style.css"),
    ),
    (
        "/favicon.svg",
        "image/svg+xml",
        include_str!("../assets/favicon.svg"),
    ),
];

pub(crate) fn serve(path: &str) -> Response<Body> {
    let path = if path == "/index.html" { "/" } else { path };
    let Some((_, content_type, body)) = FILES.iter().find(|(p, _, _)| *p == path) else {
        return text(StatusCode::NOT_FOUND, "not found\n");
    };
    let mut rsp = Response::new(full(*body));
    let headers = rsp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Only the dashboard's own files run; nothing is inlined.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
        ),
    );
    rsp
}

#[cfg(test)]
mod tests {
    use super::FILES;

    /// The whole UI, charts and graph included, is the few files the
    /// binary holds (the browser test checks that a page asks nothing of
    /// any other origin), and it stays small.
    #[test]
    fn the_ui_stays_under_300_kib() {
        let total: usize = FILES.iter().map(|(_, _, body)| body.len()).sum();
        assert!(total < 300 * 1024, "{total} bytes");
    }
}
