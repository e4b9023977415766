//! The server's frames as the generator reads them while it counts: a message, a reply
//! to one of its own send frames, or a push. Read without building a JSON tree: the
//! generator reads two or three frames per routed message, and its CPU comes out of the
//! same cores as the server's.

/// What a frame is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame<'t> {
    /// A receive frame (docs/protocol.md §6.2): its payload, and with history on its
    /// conversation `seq` (§10.2). `copy` when it carries `to`: my own message, written to
    /// my other sessions (§11.1), not one from my peer.
    Receive { payload: &'t str, seq: Option<u64>, copy: bool },
    /// The reply to our send frame `d<n>` (§6.1): its code, and with history on the
    /// message's `seq` (200, 202).
    Reply { code: u16, n: u64, seq: Option<u64> },
    /// A push (300–308, 513, 520): a friend's presence, a delivery or read mark, typing.
    /// Never a reply, whatever its `id` looks like (306 and 308 carry a user id).
    Push(u16),
    /// Anything else (a heartbeat reply, a frame without a code).
    Other,
}

impl<'t> Frame<'t> {
    /// Reads `text`; `echoed` when it comes from an echo server, which returns our own
    /// send frames (no `from`).
    pub fn read(text: &'t str, echoed: bool) -> Frame<'t> {
        if let Some(payload) = top_string(text, "payload") {
            if echoed || find_key(text, "from").is_some() {
                return Frame::Receive {
                    payload,
                    seq: top_number(text, "seq"),
                    copy: find_key(text, "to").is_some(),
                };
            }
        }
        let Some(code) = top_number(text, "code").and_then(|c| u16::try_from(c).ok()) else {
            return Frame::Other;
        };
        if is_push(code) {
            return Frame::Push(code);
        }
        let n = top_string(text, "id").and_then(|id| id.strip_prefix('d')?.parse().ok());
        match n {
            Some(n) => Frame::Reply { code, n, seq: top_number(text, "seq") },
            None => Frame::Other,
        }
    }
}

/// Codes that only ever come as pushes (docs/protocol.md §2, §6.3, §10.3).
fn is_push(code: u16) -> bool {
    (300..=308).contains(&code) || code == 513 || code == 520
}

/// The string value of `"key"` in a compact JSON object as imd writes it, when it has
/// no escapes (the generator's own payloads and ids never do); else `None`.
pub fn top_string<'t>(text: &'t str, key: &str) -> Option<&'t str> {
    let at = find_key(text, key)?;
    let rest = text[at..].strip_prefix('"')?;
    let value = &rest[..rest.find('"')?];
    (!value.contains('\\')).then_some(value)
}

/// The unsigned number value of `"key"` in a compact JSON object.
pub fn top_number(text: &str, key: &str) -> Option<u64> {
    let rest = &text[find_key(text, key)?..];
    let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    rest[..digits].parse().ok()
}

/// Where the value of the first `"key":` in `text` starts.
fn find_key(text: &str, key: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(i) = text[from..].find(key).map(|i| i + from) {
        let end = i + key.len();
        if i > 0 && bytes[i - 1] == b'"' && bytes.get(end..end + 2) == Some(b"\":") {
            return Some(end + 2);
        }
        from = i + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_replies_receives_and_pushes_as_imd_writes_them() {
        let ack = proto::status_with_id(proto::Code::Success, Some("d17"));
        assert_eq!(Frame::read(&ack, false), Frame::Reply { code: 200, n: 17, seq: None });
        let receive = proto::receive_frame("d3", "u-1", "7:3:1000:xx", 5);
        assert_eq!(
            Frame::read(&receive, false),
            Frame::Receive { payload: "7:3:1000:xx", seq: None, copy: false }
        );
        assert_eq!(top_string(r#"{"payload":"a\"b"}"#, "payload"), None);
    }

    #[test]
    fn reads_the_seq_of_kept_messages_and_their_replies() {
        let kept = proto::kept_receive_frame("d3", "u-1", "7:3:1000:xx", 5, 42, Some("r.3"));
        assert_eq!(
            Frame::read(&kept, false),
            Frame::Receive { payload: "7:3:1000:xx", seq: Some(42), copy: false }
        );
        let stored = r#"{"code":202,"message":"Stored For Offline Friend","ok":true,"id":"d9","seq":7,"ts":1,"cid":"r.9"}"#;
        assert_eq!(Frame::read(stored, false), Frame::Reply { code: 202, n: 9, seq: Some(7) });
        let copy = r#"{"id":"d3","from":"me","payload":"1:3:5:x","ts":1,"seq":4,"to":"peer"}"#;
        assert!(matches!(Frame::read(copy, false), Frame::Receive { copy: true, .. }));
    }

    #[test]
    fn delivery_read_and_typing_pushes_are_pushes_even_with_an_id_like_ours() {
        // A user id may start with "d" followed by digits: still a push, never a reply.
        let delivered =
            r#"{"code":306,"message":"Message Delivered","ok":true,"id":"d1234","seq":9}"#;
        assert_eq!(Frame::read(delivered, false), Frame::Push(306));
        let read = r#"{"code":307,"message":"Message Read","ok":true,"by":"a","with":"b","seq":3}"#;
        assert_eq!(Frame::read(read, false), Frame::Push(307));
        let typing = r#"{"code":308,"message":"Friend Typing","ok":true,"id":"d77"}"#;
        assert_eq!(Frame::read(typing, false), Frame::Push(308));
        let online = proto::push_id(proto::Code::FriendOnline, "d5");
        assert_eq!(Frame::read(&online, false), Frame::Push(302));
        assert_eq!(Frame::read(&proto::heartbeat_reply(), false), Frame::Other);
    }
}
