//! The row types read from and written to the store.

/// A new account for [`Store::create_user`](crate::Store::create_user). The caller
/// trims and validates every field and hashes the password; the store never sees
/// a plaintext password.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewUser {
    /// 32 lowercase hex characters (UUID v4, simple form).
    pub id: String,
    /// The account as typed; unique ASCII case-insensitively.
    pub account: String,
    /// The password hash (argon2id PHC string).
    pub password_hash: String,
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
    /// Secure mail.
    pub mail: String,
}

/// A user as stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserRow {
    /// User id.
    pub id: String,
    /// The account as typed at registration.
    pub account: String,
    /// The password hash.
    pub password_hash: String,
    /// Profile name.
    pub name: String,
    /// Picture.
    pub picture: String,
    /// Sex.
    pub sex: String,
    /// Birthday.
    pub birthday: String,
    /// Signature.
    pub sign: String,
    /// Secure mail.
    pub mail: String,
    /// Registration time, unix milliseconds.
    pub created_ms: i64,
}

/// A user as the daemon's search directory lists them, read at start by
/// [`Store::directory`](crate::Store::directory).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirectoryRow {
    /// User id.
    pub id: String,
    /// The account as typed at registration.
    pub account: String,
    /// Profile name.
    pub name: String,
    /// Picture; `None` when larger than the limit asked for (read it when needed).
    pub picture: Option<String>,
    /// Sex.
    pub sex: String,
    /// Birthday.
    pub birthday: String,
    /// Signature.
    pub sign: String,
}

/// A profile change for [`Store::update_profile`](crate::Store::update_profile):
/// `None` leaves a field unchanged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProfileUpdate {
    /// New profile name.
    pub name: Option<String>,
    /// New picture.
    pub picture: Option<String>,
    /// New sex.
    pub sex: Option<String>,
    /// New birthday.
    pub birthday: Option<String>,
    /// New signature.
    pub sign: Option<String>,
    /// New mail.
    pub mail: Option<String>,
    /// New password hash; setting one also revokes every remembered login.
    pub password_hash: Option<String>,
}

/// One of my friends: `alias` is the name I gave them, the rest is their profile.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FriendRow {
    /// The friend's user id.
    pub id: String,
    /// My alias for the friend.
    pub alias: String,
    /// The friend's own profile name.
    pub name: String,
    /// The friend's picture.
    pub picture: String,
    /// The friend's sex.
    pub sex: String,
    /// The friend's birthday.
    pub birthday: String,
    /// The friend's signature.
    pub sign: String,
}

/// A pending friend request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestRow {
    /// The requester's id.
    pub from_id: String,
    /// The requester's current profile name.
    pub from_name: String,
    /// The target's id.
    pub to_id: String,
    /// The requester's note.
    pub note: String,
}

/// What [`Store::request_friend`](crate::Store::request_friend) did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requested {
    /// The request is pending (new, or its note replaced).
    Stored {
        /// The requester, as stored when the request was made.
        requester: UserRow,
    },
    /// The target had already asked the requester: they are friends now, and no
    /// request is left between them.
    Befriended {
        /// The requester.
        requester: UserRow,
        /// The target (boxed: most requests are only stored).
        target: Box<UserRow>,
    },
}

/// A message to keep for an offline user, for
/// [`Store::store_messages`](crate::Store::store_messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewMessage<'a> {
    /// The receiver.
    pub to_id: &'a str,
    /// The sender.
    pub from_id: &'a str,
    /// The sender's dialogue id.
    pub dialogue_id: &'a str,
    /// The payload, as sent.
    pub payload: &'a str,
    /// When the server accepted it, unix milliseconds.
    pub ts_ms: i64,
}

/// A stored message waiting for its receiver.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoredMessage {
    /// Store order: increasing, never reused.
    pub seq: i64,
    /// The sender.
    pub from_id: String,
    /// The sender's dialogue id.
    pub dialogue_id: String,
    /// The payload, as sent.
    pub payload: String,
    /// When the server accepted it, unix milliseconds.
    pub ts_ms: i64,
}
