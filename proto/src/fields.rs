//! Client → server decoding: JSON bodies and WebSocket text frames as [`Fields`],
//! the typed frames of the tunnel, and query strings.
//!
//! Rules (docs/protocol.md §1): a JSON `null` is the same as an absent field; type checks
//! apply only to the fields an operation asks for; unknown fields are ignored.

use serde_json::{Map, Value};

use crate::code::Code;

/// The members of one JSON object, read on demand.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fields {
    map: Map<String, Value>,
}

impl Fields {
    /// Parses a JSON body or text frame. Invalid JSON (including invalid UTF-8 and lone
    /// surrogate escapes) or any JSON value other than an object → 403.
    pub fn parse(bytes: &[u8]) -> Result<Fields, Code> {
        match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(map)) => Ok(Fields { map }),
            _ => Err(Code::ProtocolError),
        }
    }

    /// The string field `key` exactly as sent: `None` when absent or `null`;
    /// 403 when present with another JSON type.
    pub fn string(&self, key: &str) -> Result<Option<&str>, Code> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(Code::ProtocolError),
        }
    }

    /// The string field `key` trimmed (§1); absent or `null` → `""`; wrong type → 403.
    /// Not for passwords and payloads, which are used as sent.
    pub fn text(&self, key: &str) -> Result<&str, Code> {
        Ok(self.string(key)?.map_or("", str::trim))
    }

    /// The field `key` as a list of strings: `None` when absent or `null`; 403 when it
    /// is not an array, or an element is not a string.
    pub fn strings(&self, key: &str) -> Result<Option<Vec<&str>>, Code> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().ok_or(Code::ProtocolError))
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(Code::ProtocolError),
        }
    }

    /// Whether `key` is present and not `null` (whatever its type).
    pub fn has(&self, key: &str) -> bool {
        !matches!(self.map.get(key), None | Some(Value::Null))
    }

    /// Checks that each of `keys` is a string, `null` or absent (403 otherwise): the
    /// "type checks first" step of an operation that knows these fields.
    pub fn check_strings(&self, keys: &[&str]) -> Result<(), Code> {
        keys.iter().try_for_each(|k| self.string(k).map(drop))
    }

    /// The `type` member when it is a string (`"read"`, `"typing"`, …), trimmed like
    /// every input field (§1).
    pub fn frame_type(&self) -> Option<&str> {
        match self.map.get("type") {
            Some(Value::String(t)) => Some(t.trim()),
            _ => None,
        }
    }

    /// The field `key` as a non-negative integer: `None` when absent or `null`; 403
    /// for anything else that is not a JSON number with a whole value ≥ 0 (strings,
    /// fractions, negatives). See [`whole`] for the numbers it takes.
    pub fn non_negative(&self, key: &str) -> Result<Option<i64>, Code> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => whole(n).map(Some).ok_or(Code::ProtocolError),
            Some(_) => Err(Code::ProtocolError),
        }
    }

    /// The boolean field `key`: absent or `null` is false; 403 when present with
    /// another JSON type.
    pub fn flag(&self, key: &str) -> Result<bool, Code> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(Code::ProtocolError),
        }
    }

    /// Whether this is the JSON heartbeat `{"type":"heartbeat"}` (§4.3).
    pub fn is_heartbeat(&self) -> bool {
        self.frame_type() == Some("heartbeat")
    }
}

/// A JSON number whose value is a whole number ≥ 0, however it is written (`3`, `3.0`,
/// `3e0`, `-0`: JSON has one number type), as an `i64`. One above `i64::MAX` counts as
/// `i64::MAX`: it is still a non-negative integer (§10.3, §10.4), and every bound a
/// client gives (a read `seq`, `after`, `before`) means the same once past the newest
/// `seq`; a `limit` that large is still out of its range.
fn whole(n: &serde_json::Number) -> Option<i64> {
    if let Some(u) = n.as_u64() {
        return Some(i64::try_from(u).unwrap_or(i64::MAX));
    }
    let f = n.as_f64()?;
    // `as` saturates: a whole f64 beyond i64 becomes i64::MAX.
    (f.is_finite() && f >= 0.0 && f.fract() == 0.0).then_some(f as i64)
}

/// A send frame `{"id","toFriend","payload"}` (§6.1), type-checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendFrame<'a> {
    /// The client's dialogue id, trimmed; `None` when absent, `null` or empty.
    pub id: Option<&'a str>,
    /// The receiving friend's user id, trimmed (may be empty).
    pub to_friend: &'a str,
    /// The payload exactly as sent (may be empty or blank).
    pub payload: &'a str,
}

impl<'a> SendFrame<'a> {
    /// Reads a send frame; 403 when a field has the wrong type. Emptiness is the
    /// caller's to check, in the order of §6.1 (510, 511, 506).
    pub fn from_fields(f: &'a Fields) -> Result<SendFrame<'a>, Code> {
        let to_friend = f.text("toFriend")?;
        let payload = f.string("payload")?.unwrap_or("");
        let id = f.text("id")?;
        Ok(SendFrame { id: Some(id).filter(|s| !s.is_empty()), to_friend, payload })
    }

    /// The client's own message id (§10.2, read only when history is on), trimmed;
    /// `None` when absent, `null` or empty; 403 when not a string.
    pub fn cid(f: &'a Fields) -> Result<Option<&'a str>, Code> {
        Ok(Some(f.text("cid")?).filter(|s| !s.is_empty()))
    }

    /// The id that every reply to this frame carries (§6.1), even when another field
    /// has the wrong type: the `id` member if it is a non-empty string, trimmed.
    pub fn reply_id(f: &'a Fields) -> Option<&'a str> {
        f.string("id").ok().flatten().map(str::trim).filter(|s| !s.is_empty())
    }
}

/// The first-frame login `{"account","password"}` (§4.1 ext), or
/// `{"account","device_token"}` (§11.2 ext), with `"remember":true` optional.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoginFrame<'a> {
    /// The account, trimmed; `""` when absent.
    pub account: &'a str,
    /// The password exactly as sent; `""` when absent.
    pub password: &'a str,
    /// The device token of a remembered login, trimmed; `""` when absent.
    pub device_token: &'a str,
    /// Whether the client asks for a device token (`"remember":true`).
    pub remember: bool,
}

impl<'a> LoginFrame<'a> {
    /// Reads a login frame; 403 when a field has the wrong type (the daemon answers
    /// any failed login with 505 anyway).
    pub fn from_fields(f: &'a Fields) -> Result<LoginFrame<'a>, Code> {
        Ok(LoginFrame {
            account: f.text("account")?,
            password: f.string("password")?.unwrap_or(""),
            device_token: f.text("device_token")?,
            remember: f.flag("remember")?,
        })
    }
}

/// Splits a query string (without `?`) into decoded `(key, value)` pairs, in order.
///
/// `+` is a space and `%XX` a byte. Malformed input never fails and never panics:
/// a `%` not followed by two hex digits is kept literally, and bytes that do not
/// form UTF-8 become U+FFFD (lossy). Empty segments (`a=1&&b=2`) are skipped; a
/// segment without `=` has an empty value. The first occurrence of a key is the one
/// callers should use.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|seg| !seg.is_empty())
        .map(|seg| {
            let (k, v) = seg.split_once('=').unwrap_or((seg, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// The first value of `key` among decoded query `pairs`.
pub fn query_value<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn percent_decode(s: &str) -> String {
    if !s.bytes().any(|b| b == b'%' || b == b'+') {
        return s.to_string();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (bytes.get(i + 1).and_then(hex), bytes.get(i + 2).and_then(hex)) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

fn hex(b: &u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_lists_are_typed() {
        let f = Fields::parse(br#"{"a":["x","y"],"e":[],"n":null,"s":"x","m":["x",1]}"#).unwrap();
        assert_eq!(f.strings("a"), Ok(Some(vec!["x", "y"])));
        assert_eq!(f.strings("e"), Ok(Some(vec![])));
        assert_eq!(f.strings("n"), Ok(None));
        assert_eq!(f.strings("absent"), Ok(None));
        assert_eq!(f.strings("s"), Err(Code::ProtocolError));
        assert_eq!(f.strings("m"), Err(Code::ProtocolError));
    }

    #[test]
    fn only_objects_parse() {
        for bad in ["", "{", "[1]", "1", "\"s\"", "null", "{\"a\":1}x", "{\"a\":\"\\ud800\"}"] {
            assert_eq!(Fields::parse(bad.as_bytes()), Err(Code::ProtocolError), "{bad:?}");
        }
        assert_eq!(Fields::parse(b"{\"a\":\"\xff\"}"), Err(Code::ProtocolError));
        assert!(Fields::parse(b" {} ").is_ok());
    }

    #[test]
    fn null_is_absent_and_wrong_types_are_403() {
        let f =
            Fields::parse(br#"{"s":" x ","n":null,"i":1,"b":true,"a":[],"o":{},"e":""}"#).unwrap();
        assert_eq!(f.string("s"), Ok(Some(" x ")));
        assert_eq!(f.text("s"), Ok("x"));
        assert_eq!(f.string("n"), Ok(None));
        assert_eq!(f.string("missing"), Ok(None));
        assert_eq!(f.text("n"), Ok(""));
        assert_eq!(f.string("e"), Ok(Some("")));
        for k in ["i", "b", "a", "o"] {
            assert_eq!(f.string(k), Err(Code::ProtocolError), "{k}");
            assert_eq!(f.text(k), Err(Code::ProtocolError), "{k}");
        }
        assert!(f.has("s") && f.has("i") && !f.has("n") && !f.has("missing"));
        assert_eq!(f.check_strings(&["s", "n", "e", "missing"]), Ok(()));
        assert_eq!(f.check_strings(&["s", "i"]), Err(Code::ProtocolError));
    }

    #[test]
    fn send_frames() {
        let f =
            Fields::parse(br#"{"id":" 7 ","toFriend":" bob ","payload":" hi\n","x":1}"#).unwrap();
        let s = SendFrame::from_fields(&f).unwrap();
        assert_eq!(s, SendFrame { id: Some("7"), to_friend: "bob", payload: " hi\n" });
        let f = Fields::parse(br#"{"id":"9","toFriend":5,"payload":"p"}"#).unwrap();
        assert_eq!(SendFrame::from_fields(&f), Err(Code::ProtocolError));
        assert_eq!(SendFrame::reply_id(&f), Some("9"));
        let f = Fields::parse(br#"{"id":null,"toFriend":null}"#).unwrap();
        assert_eq!(
            SendFrame::from_fields(&f),
            Ok(SendFrame { id: None, to_friend: "", payload: "" })
        );
        let f = Fields::parse(br#"{"id":3}"#).unwrap();
        assert_eq!(SendFrame::reply_id(&f), None);
        assert_eq!(SendFrame::from_fields(&f), Err(Code::ProtocolError));
        let f = Fields::parse(br#"{"id":"  "}"#).unwrap();
        assert_eq!(SendFrame::reply_id(&f), None);
    }

    #[test]
    fn heartbeat_and_login_frames() {
        assert!(Fields::parse(br#"{"type":"heartbeat"}"#).unwrap().is_heartbeat());
        assert!(!Fields::parse(br#"{"type":"other"}"#).unwrap().is_heartbeat());
        assert!(!Fields::parse(br#"{"type":1}"#).unwrap().is_heartbeat());
        assert!(Fields::parse(b"{\"type\":\" heartbeat\\n\"}").unwrap().is_heartbeat());
        assert_eq!(Fields::parse(br#"{"type":"\tread "}"#).unwrap().frame_type(), Some("read"));
        let f = Fields::parse(br#"{"account":" al ","password":" pw "}"#).unwrap();
        assert_eq!(
            LoginFrame::from_fields(&f),
            Ok(LoginFrame { account: "al", password: " pw ", device_token: "", remember: false })
        );
        let f = Fields::parse(br#"{"account":[]}"#).unwrap();
        assert_eq!(LoginFrame::from_fields(&f), Err(Code::ProtocolError));
    }

    #[test]
    fn remembered_login_frames() {
        let f =
            Fields::parse(br#"{"account":"al","device_token":" ab ","remember":true}"#).unwrap();
        assert_eq!(
            LoginFrame::from_fields(&f),
            Ok(LoginFrame { account: "al", password: "", device_token: "ab", remember: true })
        );
        let f = Fields::parse(br#"{"account":"al","remember":null}"#).unwrap();
        assert!(!LoginFrame::from_fields(&f).unwrap().remember);
        for bad in [&br#"{"remember":"true"}"#[..], br#"{"remember":1}"#, br#"{"device_token":7}"#]
        {
            let f = Fields::parse(bad).unwrap();
            assert_eq!(LoginFrame::from_fields(&f), Err(Code::ProtocolError), "{bad:?}");
        }
    }

    #[test]
    fn query_strings_decode() {
        let q =
            parse_query("account=%20bob+x%20&password=a%26b%3Dc&&empty=&flag&%E4%B8%AD=%e6%96%87");
        assert_eq!(
            q,
            vec![
                ("account".into(), " bob x ".into()),
                ("password".into(), "a&b=c".into()),
                ("empty".into(), "".into()),
                ("flag".into(), "".into()),
                ("中".into(), "文".into()),
            ]
        );
        assert_eq!(query_value(&q, "password"), Some("a&b=c"));
        assert_eq!(query_value(&q, "nope"), None);
        assert_eq!(parse_query(""), vec![]);
        assert_eq!(parse_query("a=1=2"), vec![("a".into(), "1=2".into())]);
    }

    #[test]
    fn malformed_queries_do_not_panic() {
        let q = parse_query("a=%&b=%4&c=%zz&d=%ff%fe&e=%C3&f=%%41&g=é%");
        assert_eq!(
            q,
            vec![
                ("a".into(), "%".into()),
                ("b".into(), "%4".into()),
                ("c".into(), "%zz".into()),
                ("d".into(), "\u{fffd}\u{fffd}".into()),
                ("e".into(), "\u{fffd}".into()),
                ("f".into(), "%A".into()),
                ("g".into(), "é%".into()),
            ]
        );
    }

    #[test]
    fn read_frames_take_a_non_negative_integer_seq() {
        let f = Fields::parse(br#"{"type":"read","a":3,"b":-1,"c":1.5,"d":"3","e":null}"#).unwrap();
        assert_eq!(f.frame_type(), Some("read"));
        assert_eq!(f.non_negative("a"), Ok(Some(3)));
        for k in ["b", "c", "d"] {
            assert_eq!(f.non_negative(k), Err(Code::ProtocolError), "{k}");
        }
        assert_eq!(f.non_negative("e"), Ok(None));
        let f = Fields::parse(
            br#"{"max":9223372036854775807,"u64":18446744073709551615,"big":1e30,
                "f":2.0,"exp":2e1,"z":-0,"zf":-0.0,"neg":-1e30,"frac":1e-3}"#,
        )
        .unwrap();
        let max = Ok(Some(i64::MAX));
        assert_eq!(
            (f.non_negative("max"), f.non_negative("u64"), f.non_negative("big")),
            (max, max, max)
        );
        assert_eq!((f.non_negative("f"), f.non_negative("exp")), (Ok(Some(2)), Ok(Some(20))));
        assert_eq!((f.non_negative("z"), f.non_negative("zf")), (Ok(Some(0)), Ok(Some(0))));
        for k in ["neg", "frac"] {
            assert_eq!(f.non_negative(k), Err(Code::ProtocolError), "{k}");
        }
        let f = Fields::parse(br#"{"cid":" k ","x":1}"#).unwrap();
        assert_eq!(SendFrame::cid(&f), Ok(Some("k")));
        let f = Fields::parse(br#"{"cid":7}"#).unwrap();
        assert_eq!(SendFrame::cid(&f), Err(Code::ProtocolError));
    }
}
