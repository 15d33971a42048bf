//! Methods between `http` and the proxy API, which numbers the common ones.

use super::{HttpMethod, http_method};
use http::Method;

/// A method the API carries that is not a valid HTTP method.
#[derive(Debug, PartialEq, Eq)]
pub struct InvalidMethod(pub String);

impl std::fmt::Display for InvalidMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} is not an HTTP method", self.0)
    }
}

impl std::error::Error for InvalidMethod {}

const REGISTERED: [(http_method::Registered, Method); 9] = [
    (http_method::Registered::Get, Method::GET),
    (http_method::Registered::Post, Method::POST),
    (http_method::Registered::Put, Method::PUT),
    (http_method::Registered::Delete, Method::DELETE),
    (http_method::Registered::Patch, Method::PATCH),
    (http_method::Registered::Options, Method::OPTIONS),
    (http_method::Registered::Connect, Method::CONNECT),
    (http_method::Registered::Head, Method::HEAD),
    (http_method::Registered::Trace, Method::TRACE),
];

impl From<&Method> for HttpMethod {
    fn from(m: &Method) -> Self {
        let t = match REGISTERED.iter().find(|(_, known)| known == m) {
            Some((r, _)) => http_method::Type::Registered(*r as i32),
            None => http_method::Type::Unregistered(m.as_str().to_string()),
        };
        Self { r#type: Some(t) }
    }
}

impl TryFrom<&HttpMethod> for Method {
    type Error = InvalidMethod;

    fn try_from(m: &HttpMethod) -> Result<Self, InvalidMethod> {
        match &m.r#type {
            Some(http_method::Type::Registered(n)) => REGISTERED
                .iter()
                .find(|(r, _)| *r as i32 == *n)
                .map(|(_, m)| m.clone())
                .ok_or_else(|| InvalidMethod(format!("registered method {n}"))),
            Some(http_method::Type::Unregistered(s)) => {
                Method::from_bytes(s.as_bytes()).map_err(|_| InvalidMethod(s.clone()))
            }
            None => Err(InvalidMethod(String::new())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for m in [
            Method::GET,
            Method::TRACE,
            Method::from_bytes(b"PURGE").unwrap(),
        ] {
            assert_eq!(Method::try_from(&HttpMethod::from(&m)), Ok(m));
        }
        assert!(Method::try_from(&HttpMethod { r#type: None }).is_err());
        let bad = HttpMethod {
            r#type: Some(http_method::Type::Unregistered("G E T".into())),
        };
        assert!(Method::try_from(&bad).is_err());
    }
}
