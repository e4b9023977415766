//! The response codes of docs/protocol.md §2: number, message text and `ok` flag.

use std::fmt;

/// A protocol response code (docs/protocol.md §2).
///
/// The discriminant is the wire number. 518 is reserved and has no variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u16)]
pub enum Code {
    /// 200 Success.
    Success = 200,
    /// 202 Stored For Offline Friend (send, offline storage on).
    StoredForOfflineFriend = 202,
    /// 300 Friend Offline (push).
    FriendOffline = 300,
    /// 301 Refresh Friend's Profile (push).
    RefreshProfile = 301,
    /// 302 Friend Online (push).
    FriendOnline = 302,
    /// 303 Friend Added (push).
    FriendAdded = 303,
    /// 304 Friend Removed (push).
    FriendRemoved = 304,
    /// 305 Request Declined (push).
    RequestDeclined = 305,
    /// 306 Message Delivered (push to a sender: a message reached the friend, §10).
    MessageDelivered = 306,
    /// 307 Message Read (push: a read mark moved, §10).
    MessageRead = 307,
    /// 308 Friend Typing (push, §10).
    FriendTyping = 308,
    /// 403 Protocol Error: malformed JSON, wrong JSON type, wrong method.
    ProtocolError = 403,
    /// 404 Not Found: unknown path.
    NotFound = 404,
    /// 500 Internal Server Error: a real internal failure only.
    InternalError = 500,
    /// 501 Account Info Empty.
    AccountEmpty = 501,
    /// 502 Password Info Empty.
    PasswordEmpty = 502,
    /// 503 Secure Mail Info Empty.
    MailEmpty = 503,
    /// 504 Account Already Exists.
    AccountExists = 504,
    /// 505 Account & Password Wrong.
    AccountPasswordWrong = 505,
    /// 506 Dialogue ID Empty.
    DialogueIdEmpty = 506,
    /// 507 Dialogue Send To Friend Failed.
    SendToFriendFailed = 507,
    /// 508 Friend Is Offline.
    FriendIsOffline = 508,
    /// 509 Payload Must Be Text (a binary WebSocket frame).
    PayloadMustBeText = 509,
    /// 510 Friend ID Empty.
    FriendIdEmpty = 510,
    /// 511 Payload Empty.
    PayloadEmpty = 511,
    /// 512 Not Relation of Friend.
    NotRelationOfFriend = 512,
    /// 513 Login In Other Place (push to a replaced session).
    LoginInOtherPlace = 513,
    /// 514 Auth Info Empty: token empty.
    AuthInfoEmpty = 514,
    /// 515 Auth Illegal: id/token pair not a live session.
    AuthIllegal = 515,
    /// 516 Name Empty (search).
    NameEmpty = 516,
    /// 517 Account ID Empty: id empty.
    AccountIdEmpty = 517,
    /// 519 Friend Info Empty: target empty.
    FriendInfoEmpty = 519,
    /// 520 Apply For a Friend (push).
    ApplyForAFriend = 520,
    /// 521 Alias Empty (add).
    AliasEmpty = 521,
    /// 522 Already Be Friend.
    AlreadyBeFriend = 522,
    /// 523 Friend Not Exists: no such user.
    FriendNotExists = 523,
    /// 524 Too Many Requests: rate limit hit.
    TooManyRequests = 524,
    /// 525 Request Not Exists: no pending request from that user.
    RequestNotExists = 525,
    /// 526 Cannot Befriend Yourself.
    CannotBefriendYourself = 526,
    /// 527 Field Too Long (§9).
    FieldTooLong = 527,
    /// 528 Field Invalid, e.g. control characters in an account.
    FieldInvalid = 528,
    /// 529 Message ID Reused: a `cid` already used for another message (§10).
    MessageIdReused = 529,
}

impl Code {
    /// Every code, in numeric order.
    pub const ALL: [Code; 42] = [
        Code::Success,
        Code::StoredForOfflineFriend,
        Code::FriendOffline,
        Code::RefreshProfile,
        Code::FriendOnline,
        Code::FriendAdded,
        Code::FriendRemoved,
        Code::RequestDeclined,
        Code::MessageDelivered,
        Code::MessageRead,
        Code::FriendTyping,
        Code::ProtocolError,
        Code::NotFound,
        Code::InternalError,
        Code::AccountEmpty,
        Code::PasswordEmpty,
        Code::MailEmpty,
        Code::AccountExists,
        Code::AccountPasswordWrong,
        Code::DialogueIdEmpty,
        Code::SendToFriendFailed,
        Code::FriendIsOffline,
        Code::PayloadMustBeText,
        Code::FriendIdEmpty,
        Code::PayloadEmpty,
        Code::NotRelationOfFriend,
        Code::LoginInOtherPlace,
        Code::AuthInfoEmpty,
        Code::AuthIllegal,
        Code::NameEmpty,
        Code::AccountIdEmpty,
        Code::FriendInfoEmpty,
        Code::ApplyForAFriend,
        Code::AliasEmpty,
        Code::AlreadyBeFriend,
        Code::FriendNotExists,
        Code::TooManyRequests,
        Code::RequestNotExists,
        Code::CannotBefriendYourself,
        Code::FieldTooLong,
        Code::FieldInvalid,
        Code::MessageIdReused,
    ];

    /// The wire number, e.g. 505.
    pub fn code(self) -> u16 {
        self as u16
    }

    /// The exact message text of §2, e.g. "Account & Password Wrong".
    pub fn message(self) -> &'static str {
        match self {
            Code::Success => "Success",
            Code::StoredForOfflineFriend => "Stored For Offline Friend",
            Code::FriendOffline => "Friend Offline",
            Code::RefreshProfile => "Refresh Friend's Profile",
            Code::FriendOnline => "Friend Online",
            Code::FriendAdded => "Friend Added",
            Code::FriendRemoved => "Friend Removed",
            Code::RequestDeclined => "Request Declined",
            Code::MessageDelivered => "Message Delivered",
            Code::MessageRead => "Message Read",
            Code::FriendTyping => "Friend Typing",
            Code::ProtocolError => "Protocol Error",
            Code::NotFound => "Not Found",
            Code::InternalError => "Internal Server Error",
            Code::AccountEmpty => "Account Info Empty",
            Code::PasswordEmpty => "Password Info Empty",
            Code::MailEmpty => "Secure Mail Info Empty",
            Code::AccountExists => "Account Already Exists",
            Code::AccountPasswordWrong => "Account & Password Wrong",
            Code::DialogueIdEmpty => "Dialogue ID Empty",
            Code::SendToFriendFailed => "Dialogue Send To Friend Failed",
            Code::FriendIsOffline => "Friend Is Offline",
            Code::PayloadMustBeText => "Payload Must Be Text",
            Code::FriendIdEmpty => "Friend ID Empty",
            Code::PayloadEmpty => "Payload Empty",
            Code::NotRelationOfFriend => "Not Relation of Friend",
            Code::LoginInOtherPlace => "Login In Other Place",
            Code::AuthInfoEmpty => "Auth Info Empty",
            Code::AuthIllegal => "Auth Illegal",
            Code::NameEmpty => "Name Empty",
            Code::AccountIdEmpty => "Account ID Empty",
            Code::FriendInfoEmpty => "Friend Info Empty",
            Code::ApplyForAFriend => "Apply For a Friend",
            Code::AliasEmpty => "Alias Empty",
            Code::AlreadyBeFriend => "Already Be Friend",
            Code::FriendNotExists => "Friend Not Exists",
            Code::TooManyRequests => "Too Many Requests",
            Code::RequestNotExists => "Request Not Exists",
            Code::CannotBefriendYourself => "Cannot Befriend Yourself",
            Code::FieldTooLong => "Field Too Long",
            Code::FieldInvalid => "Field Invalid",
            Code::MessageIdReused => "Message ID Reused",
        }
    }

    /// The `ok` flag: true for 200, 202, 300–308 and 520.
    pub fn ok(self) -> bool {
        matches!(
            self,
            Code::Success
                | Code::StoredForOfflineFriend
                | Code::FriendOffline
                | Code::RefreshProfile
                | Code::FriendOnline
                | Code::FriendAdded
                | Code::FriendRemoved
                | Code::RequestDeclined
                | Code::MessageDelivered
                | Code::MessageRead
                | Code::FriendTyping
                | Code::ApplyForAFriend
        )
    }

    /// The code with wire number `n`; `None` for numbers outside §2 (including 518).
    pub fn from_u16(n: u16) -> Option<Code> {
        Code::ALL.iter().copied().find(|c| c.code() == n)
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code(), self.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A literal copy of the table of docs/protocol.md §2.
    const TABLE: &str = "\
| 200 | Success | true | everywhere |
| 202 | Stored For Offline Friend | true | send, when offline storage is on **(ext)** |
| 300 | Friend Offline | true | push **(original v2)** |
| 301 | Refresh Friend's Profile | true | push **(original v2)** |
| 302 | Friend Online | true | push **(ext)** |
| 303 | Friend Added | true | push **(ext)** |
| 304 | Friend Removed | true | push **(ext)** |
| 305 | Request Declined | true | push **(ext)** |
| 306 | Message Delivered | true | push to a sender: a message reached the friend **(ext, §10)** |
| 307 | Message Read | true | push: a read mark moved **(ext, §10)** |
| 308 | Friend Typing | true | push **(ext, §10)** |
| 403 | Protocol Error | false | malformed JSON, wrong JSON type, wrong method |
| 404 | Not Found | false | unknown path **(ext)** |
| 500 | Internal Server Error | false | a real internal failure only |
| 501 | Account Info Empty | false | register, query |
| 502 | Password Info Empty | false | register, erase, password change |
| 503 | Secure Mail Info Empty | false | register |
| 504 | Account Already Exists | false | register |
| 505 | Account & Password Wrong | false | login, erase, password change |
| 506 | Dialogue ID Empty | false | send |
| 507 | Dialogue Send To Friend Failed | false | send (carries `id`) |
| 508 | Friend Is Offline | false | send (carries `id`) |
| 509 | Payload Must Be Text | false | a binary WebSocket frame **(original)** |
| 510 | Friend ID Empty | false | send |
| 511 | Payload Empty | false | send |
| 512 | Not Relation of Friend | false | send, remove |
| 513 | Login In Other Place | false | push to a replaced session **(original)** |
| 514 | Auth Info Empty | false | authenticated routes: token empty |
| 515 | Auth Illegal | false | authenticated routes: id/token pair not a live session |
| 516 | Name Empty | false | search |
| 517 | Account ID Empty | false | authenticated routes: id empty |
| 519 | Friend Info Empty | false | request, add, remove, decline: target empty |
| 520 | Apply For a Friend | true | push **(original)** |
| 521 | Alias Empty | false | add |
| 522 | Already Be Friend | false | request, add |
| 523 | Friend Not Exists | false | request, add: no such user |
| 524 | Too Many Requests | false | rate limit hit **(ext)** |
| 525 | Request Not Exists | false | add, decline: no pending request from that user **(fix)** |
| 526 | Cannot Befriend Yourself | false | request, add **(fix)** |
| 527 | Field Too Long | false | any field over its limit (§9) **(ext)** |
| 528 | Field Invalid | false | e.g. control characters in an account **(ext)** |
| 529 | Message ID Reused | false | send: a `cid` already used for another message **(ext, §10)** |
";

    #[test]
    fn the_table_of_section_2_is_exact() {
        let mut rows = 0;
        for line in TABLE.lines() {
            let cols: Vec<&str> = line.split('|').map(str::trim).collect();
            let n: u16 = cols[1].parse().unwrap();
            let code = Code::from_u16(n).unwrap_or_else(|| panic!("no variant for {n}"));
            assert_eq!(code.code(), n);
            assert_eq!(code.message(), cols[2], "message of {n}");
            assert_eq!(code.ok().to_string(), cols[3], "ok of {n}");
            rows += 1;
        }
        assert_eq!(rows, Code::ALL.len(), "every variant is in the table");
        assert!(Code::ALL.windows(2).all(|w| w[0] < w[1]), "ALL is sorted and distinct");
    }

    #[test]
    fn reserved_and_unknown_numbers_have_no_code() {
        assert_eq!(Code::from_u16(518), None);
        assert_eq!(Code::from_u16(0), None);
        assert_eq!(Code::from_u16(201), None);
        assert_eq!(Code::AccountPasswordWrong.to_string(), "505 Account & Password Wrong");
    }
}
