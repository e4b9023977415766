//! Server → client JSON: status replies, the typed replies of login, list, requests,
//! search and query, the receive frame, and every push of docs/protocol.md §6.3.
//!
//! Everything is written by hand into one `String` (see `json.rs`); the entry structs
//! also derive serde's traits so that clients and tests can read them back.

use serde::{Deserialize, Serialize};

use crate::code::Code;
use crate::json::{self, Obj};

/// A friend as listed at login, by `list` and in push 303. `name` is the alias the
/// listing user gave this friend; the other fields are the friend's own profile.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FriendEntry {
    /// The friend's user id.
    pub id: String,
    /// My alias for the friend.
    pub name: String,
    /// The friend's picture (base64 / data URL).
    pub picture: String,
    /// The friend's sex.
    pub sex: String,
    /// The friend's birthday.
    pub birthday: String,
    /// The friend's signature.
    pub sign: String,
    /// Whether the friend has a live session.
    pub online: bool,
    /// The conversation's newest `seq` (§10.5; only with history on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seq: Option<i64>,
    /// My read mark of the conversation (§10.5; only with history on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_seq: Option<i64>,
    /// Messages from the friend above my read mark (§10.5; only with history on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unread: Option<i64>,
}

/// The logged-in user's own profile, in the login reply.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// User id.
    pub id: String,
    /// Profile name.
    pub name: String,
    /// Picture (base64 / data URL).
    pub picture: String,
    /// Sex.
    pub sex: String,
    /// Birthday.
    pub birthday: String,
    /// Signature.
    pub sign: String,
    /// Secure mail: only ever in the user's own login reply, never to friends (ext).
    pub mail: String,
}

/// A pending friend request, in the login reply, `requests` and push 520.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestEntry {
    /// The requester's user id.
    pub id: String,
    /// The requester's profile name.
    pub name: String,
    /// The target's user id.
    pub to: String,
    /// The requester's note.
    pub note: String,
}

/// A search result (`found`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FoundEntry {
    /// User id.
    pub id: String,
    /// Profile name.
    pub name: String,
    /// Picture (base64 / data URL).
    pub picture: String,
    /// Sex.
    pub sex: String,
    /// Birthday.
    pub birthday: String,
    /// Signature.
    pub sign: String,
}

/// A type written as one JSON object, in serde's field order.
pub(crate) trait WriteJson {
    fn write_json(&self, out: &mut String);
    fn size_hint(&self) -> usize;
}

fn write_profile_like(out: &mut String, f: [&str; 6]) {
    let mut o = Obj::open(out);
    o.str("id", f[0]).str("name", f[1]).str("picture", f[2]);
    o.str("sex", f[3]).str("birthday", f[4]).str("sign", f[5]);
    o.close();
}

fn hint(fields: &[&str]) -> usize {
    fields.iter().map(|f| json::size_hint(f) + 12).sum::<usize>() + 2
}

impl WriteJson for FriendEntry {
    fn write_json(&self, out: &mut String) {
        let mut o = Obj::open(out);
        o.str("id", &self.id).str("name", &self.name).str("picture", &self.picture);
        o.str("sex", &self.sex).str("birthday", &self.birthday).str("sign", &self.sign);
        o.bool("online", self.online);
        let kept =
            [("last_seq", self.last_seq), ("read_seq", self.read_seq), ("unread", self.unread)];
        for (key, value) in kept {
            if let Some(v) = value {
                o.int(key, v);
            }
        }
        o.close();
    }
    fn size_hint(&self) -> usize {
        hint(&[&self.id, &self.name, &self.picture, &self.sex, &self.birthday, &self.sign])
            + 14
            + if self.last_seq.is_some() { 64 } else { 0 }
    }
}

impl WriteJson for Profile {
    fn write_json(&self, out: &mut String) {
        let mut o = Obj::open(out);
        o.str("id", &self.id).str("name", &self.name).str("picture", &self.picture);
        o.str("sex", &self.sex).str("birthday", &self.birthday).str("sign", &self.sign);
        o.str("mail", &self.mail);
        o.close();
    }
    fn size_hint(&self) -> usize {
        let f = [&*self.id, &self.name, &self.picture, &self.sex, &self.birthday, &self.sign];
        hint(&f) + json::size_hint(&self.mail) + 12
    }
}

impl WriteJson for FoundEntry {
    fn write_json(&self, out: &mut String) {
        let f = [&*self.id, &self.name, &self.picture, &self.sex, &self.birthday, &self.sign];
        write_profile_like(out, f);
    }
    fn size_hint(&self) -> usize {
        hint(&[&self.id, &self.name, &self.picture, &self.sex, &self.birthday, &self.sign])
    }
}

impl WriteJson for RequestEntry {
    fn write_json(&self, out: &mut String) {
        let mut o = Obj::open(out);
        o.str("id", &self.id).str("name", &self.name).str("to", &self.to).str("note", &self.note);
        o.close();
    }
    fn size_hint(&self) -> usize {
        hint(&[&self.id, &self.name, &self.to, &self.note])
    }
}

/// A reply under construction: `{"code":N,"message":"…","ok":B` first, then extra
/// fields in the order they are added. [`Reply::finish`] closes the object.
///
/// ```
/// use proto::{Code, Reply};
/// let r = Reply::new(Code::Success).str("id", "7").finish();
/// assert_eq!(r, r#"{"code":200,"message":"Success","ok":true,"id":"7"}"#);
/// ```
#[derive(Debug)]
#[must_use = "a reply does nothing until finished and sent"]
pub struct Reply {
    buf: String,
}

impl Reply {
    /// Starts a reply with `code`, its message and its `ok` flag.
    pub fn new(code: Code) -> Reply {
        Reply::with_capacity(code, 0)
    }

    /// As [`Reply::new`], with room for `extra` more bytes.
    pub fn with_capacity(code: Code, extra: usize) -> Reply {
        let mut buf = String::with_capacity(64 + extra);
        let mut o = Obj::open(&mut buf);
        o.int("code", i64::from(code.code())).str("message", code.message()).bool("ok", code.ok());
        Reply { buf }
    }

    /// Adds a string field.
    pub fn str(mut self, key: &str, value: &str) -> Reply {
        Obj::resume(&mut self.buf).str(key, value);
        self
    }

    /// Adds a boolean field.
    pub fn bool(mut self, key: &str, value: bool) -> Reply {
        Obj::resume(&mut self.buf).bool(key, value);
        self
    }

    /// Adds an integer field.
    pub fn int(mut self, key: &str, value: i64) -> Reply {
        Obj::resume(&mut self.buf).int(key, value);
        self
    }

    /// Adds an array whose items are already encoded and joined with commas (`joined`
    /// empty: `[]`): a cached page of frames goes in with one copy.
    pub fn raw_array(mut self, key: &str, joined: &str) -> Reply {
        let out = &mut self.buf;
        json::push_next_key(out, key);
        out.reserve(joined.len() + 2);
        out.push('[');
        out.push_str(joined);
        out.push(']');
        self
    }

    /// Adds an object field.
    pub(crate) fn object<T: WriteJson>(mut self, key: &str, value: &T) -> Reply {
        json::push_next_key(&mut self.buf, key);
        value.write_json(&mut self.buf);
        self
    }

    /// Adds an array of objects; an empty array is written `null` (the seed's rule for
    /// `friends`, `requests` and `found`).
    pub(crate) fn list_or_null<T: WriteJson>(mut self, key: &str, items: &[T]) -> Reply {
        let out = &mut self.buf;
        json::push_next_key(out, key);
        if items.is_empty() {
            out.push_str("null");
            return self;
        }
        out.reserve(items.iter().map(WriteJson::size_hint).sum::<usize>() + items.len() + 2);
        out.push('[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            item.write_json(out);
        }
        out.push(']');
        self
    }

    /// Closes the object and returns its JSON text.
    pub fn finish(mut self) -> String {
        self.buf.push('}');
        self.buf
    }
}

/// `{"code":N,"message":"…","ok":B}`.
pub fn status(code: Code) -> String {
    Reply::new(code).finish()
}

/// A status with the dialogue `id` (§6.1); no `id` field when `id` is `None`.
pub fn status_with_id(code: Code, id: Option<&str>) -> String {
    match id {
        Some(id) => Reply::with_capacity(code, json::size_hint(id) + 8).str("id", id).finish(),
        None => status(code),
    }
}

/// The login success frame (§4.1): `friends`, `profile`, `requests`, `token`;
/// `friends` and `requests` are `null` when empty.
pub fn login_reply(
    friends: &[FriendEntry],
    profile: &Profile,
    requests: &[RequestEntry],
    token: &str,
) -> String {
    let extra = friends.iter().map(WriteJson::size_hint).sum::<usize>()
        + requests.iter().map(WriteJson::size_hint).sum::<usize>()
        + profile.size_hint()
        + token.len()
        + 64;
    Reply::with_capacity(Code::Success, extra)
        .list_or_null("friends", friends)
        .object("profile", profile)
        .list_or_null("requests", requests)
        .str("token", token)
        .finish()
}

/// 200 with `friends` (§5.6), `null` when empty.
pub fn list_reply(friends: &[FriendEntry]) -> String {
    Reply::new(Code::Success).list_or_null("friends", friends).finish()
}

/// 200 with `requests` (§5.7), `null` when empty.
pub fn requests_reply(requests: &[RequestEntry]) -> String {
    Reply::new(Code::Success).list_or_null("requests", requests).finish()
}

/// 200 with `found` (§5.1), `null` when nothing matched.
pub fn found_reply(found: &[FoundEntry]) -> String {
    Reply::new(Code::Success).list_or_null("found", found).finish()
}

/// 200 with `exists` (§3.2).
pub fn query_reply(exists: bool) -> String {
    Reply::new(Code::Success).bool("exists", exists).finish()
}

/// 200 with `"type":"heartbeat"` (§4.3).
pub fn heartbeat_reply() -> String {
    Reply::new(Code::Success).str("type", "heartbeat").finish()
}

/// The receive frame (§6.2): `{"id","from","payload","ts"}`, `ts` in unix ms.
pub fn receive_frame(id: &str, from: &str, payload: &str, ts_ms: i64) -> String {
    let mut out = String::with_capacity(
        json::size_hint(id) + json::size_hint(from) + json::size_hint(payload) + 64,
    );
    let mut o = Obj::open(&mut out);
    o.str("id", id).str("from", from).str("payload", payload).int("ts", ts_ms);
    o.close();
    out
}

/// The receive frame with history on (§10.2): §6.2's fields, then `seq`, and `cid`
/// when the sender gave one; `id` only when the message has one.
pub fn kept_receive_frame(
    id: &str,
    from: &str,
    payload: &str,
    ts_ms: i64,
    seq: i64,
    cid: Option<&str>,
) -> String {
    let mut out = String::with_capacity(
        json::size_hint(id) + json::size_hint(from) + json::size_hint(payload) + 96,
    );
    push_kept_receive_frame(&mut out, id, from, payload, ts_ms, seq, cid);
    out
}

/// [`kept_receive_frame`] written at the end of `out`: a page of them is encoded into
/// one buffer, with no allocation per frame.
pub fn push_kept_receive_frame(
    out: &mut String,
    id: &str,
    from: &str,
    payload: &str,
    ts_ms: i64,
    seq: i64,
    cid: Option<&str>,
) {
    let mut o = Obj::open(out);
    if !id.is_empty() {
        o.str("id", id);
    }
    o.str("from", from).str("payload", payload).int("ts", ts_ms).int("seq", seq);
    if let Some(cid) = cid {
        o.str("cid", cid);
    }
    o.close();
}

/// `obj`, a finished JSON object, with the string field `key` added at its end: the
/// login reply's `device_token` and a carbon copy's `to` (§11) on frames built
/// elsewhere.
pub fn with_str(mut obj: String, key: &str, value: &str) -> String {
    debug_assert!(obj.ends_with('}'), "with_str on {obj}");
    obj.pop();
    Reply { buf: obj }.str(key, value).finish()
}

/// A push that carries only the other user's `id`: 300, 302, 304 or 305 (§6.3).
pub fn push_id(code: Code, id: &str) -> String {
    debug_assert!(
        matches!(
            code,
            Code::FriendOffline | Code::FriendOnline | Code::FriendRemoved | Code::RequestDeclined
        ),
        "push_id with {code}"
    );
    status_with_id(code, Some(id))
}

/// Push 301: `id`, `name` (the receiver's alias for the changed friend), `picture`,
/// `sex`, `birthday`, `sign`.
pub fn profile_push(
    id: &str,
    alias: &str,
    picture: &str,
    sex: &str,
    birthday: &str,
    sign: &str,
) -> String {
    let fields = [id, alias, picture, sex, birthday, sign];
    Reply::with_capacity(Code::RefreshProfile, hint(&fields))
        .str("id", id)
        .str("name", alias)
        .str("picture", picture)
        .str("sex", sex)
        .str("birthday", birthday)
        .str("sign", sign)
        .finish()
}

/// Push 303: `friend`, an entry as in the login `friends` list.
pub fn friend_added_push(friend: &FriendEntry) -> String {
    Reply::with_capacity(Code::FriendAdded, friend.size_hint() + 12)
        .object("friend", friend)
        .finish()
}

/// Push 520: `request` `{id,name,to,note}`.
pub fn request_push(request: &RequestEntry) -> String {
    Reply::with_capacity(Code::ApplyForAFriend, request.size_hint() + 12)
        .object("request", request)
        .finish()
}

/// Push 513 (bare): the session was replaced by a newer login.
pub fn replaced_push() -> String {
    status(Code::LoginInOtherPlace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn friend(id: &str, online: bool) -> FriendEntry {
        FriendEntry {
            id: id.into(),
            name: "al\"ias".into(),
            picture: "data:image/png;base64,AAAA".into(),
            sex: "f".into(),
            birthday: "2000-01-01".into(),
            sign: "line\nbreak 🎉".into(),
            online,
            ..FriendEntry::default()
        }
    }

    fn request(id: &str) -> RequestEntry {
        RequestEntry {
            id: id.into(),
            name: "Bob".into(),
            to: "me".into(),
            note: "hi\t\u{1}".into(),
        }
    }

    #[test]
    fn with_str_adds_a_field_at_the_end() {
        let frame = kept_receive_frame("1", "me", "hi \"x\"", 5, 7, Some("c"));
        let copy: Value = serde_json::from_str(&with_str(frame.clone(), "to", "f\"r")).unwrap();
        let mut want: Value = serde_json::from_str(&frame).unwrap();
        want["to"] = json!("f\"r");
        assert_eq!(copy, want);
        let r = with_str(status(Code::Success), "device_token", "ab");
        assert_eq!(r, r#"{"code":200,"message":"Success","ok":true,"device_token":"ab"}"#);
    }

    #[test]
    fn status_is_exact() {
        assert_eq!(status(Code::Success), r#"{"code":200,"message":"Success","ok":true}"#);
        assert_eq!(
            status(Code::AccountPasswordWrong),
            r#"{"code":505,"message":"Account & Password Wrong","ok":false}"#
        );
        assert_eq!(
            status(Code::RefreshProfile),
            r#"{"code":301,"message":"Refresh Friend's Profile","ok":true}"#
        );
        assert_eq!(replaced_push(), r#"{"code":513,"message":"Login In Other Place","ok":false}"#);
        for code in Code::ALL {
            let v: Value = serde_json::from_str(&status(code)).unwrap();
            assert_eq!(v, json!({"code": code.code(), "message": code.message(), "ok": code.ok()}));
        }
    }

    #[test]
    fn id_is_present_only_when_given() {
        assert_eq!(
            status_with_id(Code::Success, Some("42")),
            r#"{"code":200,"message":"Success","ok":true,"id":"42"}"#
        );
        assert_eq!(
            status_with_id(Code::FriendIsOffline, Some("a\"b")),
            r#"{"code":508,"message":"Friend Is Offline","ok":false,"id":"a\"b"}"#
        );
        assert_eq!(status_with_id(Code::PayloadEmpty, None), status(Code::PayloadEmpty));
    }

    #[test]
    fn login_reply_has_nulls_for_empty_lists() {
        let p = Profile { id: "u".into(), name: "N".into(), ..Profile::default() };
        let r = login_reply(&[], &p, &[], "tok");
        assert_eq!(
            r,
            concat!(
                r#"{"code":200,"message":"Success","ok":true,"friends":null,"#,
                r#""profile":{"id":"u","name":"N","picture":"","sex":"","birthday":"","sign":"","mail":""},"#,
                r#""requests":null,"token":"tok"}"#
            )
        );
    }

    #[test]
    fn login_reply_lists_match_serde() {
        let p = Profile { id: "u".into(), name: "Ünï".into(), ..Profile::default() };
        let friends = [friend("a", true), friend("b", false)];
        let requests = [request("c")];
        let r = login_reply(&friends, &p, &requests, "t");
        let v: Value = serde_json::from_str(&r).unwrap();
        let want = json!({
            "code": 200, "message": "Success", "ok": true,
            "friends": friends, "profile": p, "requests": requests, "token": "t",
        });
        assert_eq!(v, want);
        // Field order: code, message, ok, then the extras in the order of §4.1.
        let keys: Vec<usize> = ["\"code\"", "\"message\"", "\"ok\"", "\"friends\"", "\"profile\""]
            .iter()
            .map(|k| r.find(k).unwrap())
            .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        assert!(r.find("\"requests\"").unwrap() < r.find("\"token\"").unwrap());
        // Entries are byte-identical to serde's output.
        assert!(r.contains(&serde_json::to_string(&friends[0]).unwrap()));
        assert!(r.contains(&serde_json::to_string(&requests[0]).unwrap()));
    }

    #[test]
    fn list_requests_found_and_query() {
        assert_eq!(list_reply(&[]), r#"{"code":200,"message":"Success","ok":true,"friends":null}"#);
        assert_eq!(
            requests_reply(&[]),
            r#"{"code":200,"message":"Success","ok":true,"requests":null}"#
        );
        assert_eq!(found_reply(&[]), r#"{"code":200,"message":"Success","ok":true,"found":null}"#);
        let f = FoundEntry { id: "x".into(), name: "X".into(), ..FoundEntry::default() };
        let v: Value = serde_json::from_str(&found_reply(std::slice::from_ref(&f))).unwrap();
        assert_eq!(v["found"], json!([f]));
        let v: Value = serde_json::from_str(&list_reply(&[friend("a", true)])).unwrap();
        assert_eq!(v["friends"][0]["online"], json!(true));
        let v: Value = serde_json::from_str(&requests_reply(&[request("r")])).unwrap();
        assert_eq!(v["requests"][0]["to"], json!("me"));
        assert_eq!(
            query_reply(false),
            r#"{"code":200,"message":"Success","ok":true,"exists":false}"#
        );
        assert_eq!(
            heartbeat_reply(),
            r#"{"code":200,"message":"Success","ok":true,"type":"heartbeat"}"#
        );
    }

    #[test]
    fn receive_frame_escapes_payloads() {
        let payload = "say \"hi\"\nback\\slash\t中文 😀 \u{0}";
        let r = receive_frame("d1", "from", payload, 1_700_000_000_123);
        let v: Value = serde_json::from_str(&r).unwrap();
        assert_eq!(
            v,
            json!({"id": "d1", "from": "from", "payload": payload, "ts": 1_700_000_000_123_i64})
        );
        assert!(r.starts_with(r#"{"id":"d1","from":"from","payload":"say \"hi\"\nback\\slash"#));
        assert!(r.ends_with(r#","ts":1700000000123}"#));
    }

    #[test]
    fn pushes() {
        assert_eq!(
            push_id(Code::FriendOnline, "u1"),
            r#"{"code":302,"message":"Friend Online","ok":true,"id":"u1"}"#
        );
        for code in [Code::FriendOffline, Code::FriendRemoved, Code::RequestDeclined] {
            let v: Value = serde_json::from_str(&push_id(code, "u")).unwrap();
            assert_eq!(v["id"], json!("u"));
            assert_eq!(v["code"], json!(code.code()));
        }
        let v: Value =
            serde_json::from_str(&profile_push("u", "alias", "pic", "m", "b", "s")).unwrap();
        assert_eq!(
            v,
            json!({"code":301,"message":"Refresh Friend's Profile","ok":true,
                   "id":"u","name":"alias","picture":"pic","sex":"m","birthday":"b","sign":"s"})
        );
        let f = friend("a", false);
        let v: Value = serde_json::from_str(&friend_added_push(&f)).unwrap();
        assert_eq!(v, json!({"code":303,"message":"Friend Added","ok":true,"friend":f}));
        let r = request("q");
        let v: Value = serde_json::from_str(&request_push(&r)).unwrap();
        assert_eq!(v, json!({"code":520,"message":"Apply For a Friend","ok":true,"request":r}));
        // A push is a plain object, never JSON inside a string.
        assert!(v["request"].is_object());
    }

    #[test]
    fn builder_adds_fields_in_order() {
        let r = Reply::new(Code::TooManyRequests).str("id", "1").int("n", 3).bool("b", false);
        assert_eq!(
            r.finish(),
            r#"{"code":524,"message":"Too Many Requests","ok":false,"id":"1","n":3,"b":false}"#
        );
    }

    #[test]
    fn kept_receive_frame_and_friend_marks_are_exact() {
        assert_eq!(
            kept_receive_frame("d", "u", "hi", 5, 7, Some("c")),
            r#"{"id":"d","from":"u","payload":"hi","ts":5,"seq":7,"cid":"c"}"#
        );
        assert_eq!(
            kept_receive_frame("", "u", "hi", 5, 7, None),
            r#"{"from":"u","payload":"hi","ts":5,"seq":7}"#
        );
        let mut f = friend("x", true);
        let plain = list_reply(std::slice::from_ref(&f));
        assert!(!plain.contains("last_seq"), "no history fields unless set: {plain}");
        (f.last_seq, f.read_seq, f.unread) = (Some(9), Some(4), Some(3));
        let kept = list_reply(&[f]);
        assert!(
            kept.ends_with(r#""online":true,"last_seq":9,"read_seq":4,"unread":3}]}"#),
            "{kept}"
        );
    }
}
