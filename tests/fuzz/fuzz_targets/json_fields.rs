//! JSON request decoding for every route and frame: bodies, tunnel frames (send,
//! login, heartbeat) and query strings. Never a panic; a wrong type is 403.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::{parse_query, Code, Fields, LoginFrame, SendFrame};

const KEYS: [&str; 16] = [
    "account", "password", "name", "picture", "sex", "birthday", "sign", "mail", "id", "token", "to",
    "from", "note", "toFriend", "payload", "new_password",
];

fuzz_target!(|data: &[u8]| {
    if let Ok(fields) = Fields::parse(data) {
        for key in KEYS {
            match fields.string(key) {
                Ok(_) => {}
                Err(code) => assert_eq!(code, Code::ProtocolError),
            }
        }
        let _ = fields.is_heartbeat();
        let _ = SendFrame::reply_id(&fields);
        if let Ok(frame) = SendFrame::from_fields(&fields) {
            assert_eq!(frame.to_friend, frame.to_friend.trim());
        }
        let _ = LoginFrame::from_fields(&fields);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        for (k, v) in parse_query(text) {
            assert!(k.len() <= text.len() * 3 && v.len() <= text.len() * 3);
        }
    }
});
