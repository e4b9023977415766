//! The fields of an API request, from its query string (GET, as the seed API) or its
//! JSON body (POST). Everything is trimmed (docs/protocol.md §1) except passwords and
//! payloads, which [`Input::raw`] returns as sent.

use proto::{Code, Fields};
use reactor::Request;

/// Request fields, whatever carried them.
pub enum Input {
    /// `?a=b&c=d`, percent-decoded.
    Query(Vec<(String, String)>),
    /// A JSON object body.
    Json(Fields),
}

impl Input {
    /// Reads the fields of `req`: a POST with a body is JSON (not an object → 403);
    /// otherwise the query string.
    pub fn of(req: &Request) -> Result<Input, Code> {
        if req.method == "POST" && !req.body.iter().all(u8::is_ascii_whitespace) {
            return Fields::parse(&req.body).map(Input::Json);
        }
        Ok(Input::Query(proto::parse_query(req.query().unwrap_or(""))))
    }

    /// A JSON-only input (register, erase and profile update take a body).
    pub fn json(req: &Request) -> Result<Input, Code> {
        Fields::parse(&req.body).map(Input::Json)
    }

    /// The field as sent; `None` when absent or null; 403 when not a string.
    pub fn raw(&self, key: &str) -> Result<Option<&str>, Code> {
        match self {
            Input::Query(pairs) => Ok(proto::query_value(pairs, key)),
            Input::Json(fields) => fields.string(key),
        }
    }

    /// A list-of-strings field (JSON only; a query string carries none): `None` when
    /// absent or null; 403 when not an array of strings.
    pub fn strings(&self, key: &str) -> Result<Option<Vec<&str>>, Code> {
        match self {
            Input::Query(_) => Ok(None),
            Input::Json(fields) => fields.strings(key),
        }
    }

    /// Type-checks every field an operation knows, before any other check (403).
    pub fn known(&self, keys: &[&str]) -> Result<(), Code> {
        keys.iter().try_for_each(|k| self.raw(k).map(drop))
    }

    /// A yes/no field: in a query string `true` is yes and `false`, empty or absent no;
    /// in JSON a boolean (`null` or absent: no). Anything else → 403.
    pub fn flag(&self, key: &str) -> Result<bool, Code> {
        match self {
            Input::Query(pairs) => match proto::query_value(pairs, key).map(str::trim) {
                Some("true") => Ok(true),
                None | Some("" | "false") => Ok(false),
                Some(_) => Err(Code::ProtocolError),
            },
            Input::Json(fields) => fields.flag(key),
        }
    }

    /// The field trimmed; absent → "".
    pub fn text(&self, key: &str) -> Result<&str, Code> {
        Ok(self.raw(key)?.map_or("", str::trim))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reactor::Listener;

    fn req(method: &str, target: &str, body: &str) -> Request {
        Request {
            method: method.into(),
            target: target.into(),
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
            peer: "127.0.0.1:1".parse().unwrap(),
            listener: Listener::Plain,
        }
    }

    #[test]
    fn query_fields_are_decoded_and_trimmed() {
        let i = Input::of(&req("GET", "/im/query?account=%20bob+x%20&x=1", "")).unwrap();
        assert_eq!(i.text("account").unwrap(), "bob x");
        assert_eq!(i.raw("account").unwrap(), Some(" bob x "));
        assert_eq!(i.text("missing").unwrap(), "");
    }

    #[test]
    fn json_body_types_are_checked() {
        let i =
            Input::of(&req("POST", "/im/query", r#"{"account":" a ","n":null,"x":1}"#)).unwrap();
        assert_eq!(i.text("account").unwrap(), "a");
        assert_eq!(i.raw("n").unwrap(), None);
        assert_eq!(i.raw("x"), Err(Code::ProtocolError));
        assert!(matches!(Input::of(&req("POST", "/", "[1]")), Err(Code::ProtocolError)));
        assert!(matches!(Input::of(&req("POST", "/", "{")), Err(Code::ProtocolError)));
    }

    #[test]
    fn flags_from_a_query_or_a_body() {
        let flag = |method, target, body| Input::of(&req(method, target, body))?.flag("f");
        assert_eq!(flag("GET", "/x?f=true", ""), Ok(true));
        assert_eq!(flag("GET", "/x?f=false", ""), Ok(false));
        assert_eq!(flag("GET", "/x?f=", ""), Ok(false));
        assert_eq!(flag("GET", "/x", ""), Ok(false));
        assert_eq!(flag("GET", "/x?f=1", ""), Err(Code::ProtocolError));
        assert_eq!(flag("POST", "/x", r#"{"f":true}"#), Ok(true));
        assert_eq!(flag("POST", "/x", r#"{"f":null}"#), Ok(false));
        assert_eq!(flag("POST", "/x", r#"{"f":"true"}"#), Err(Code::ProtocolError));
    }

    #[test]
    fn post_without_body_reads_the_query() {
        let i = Input::of(&req("POST", "/im/query?account=a", "")).unwrap();
        assert_eq!(i.text("account").unwrap(), "a");
    }
}
