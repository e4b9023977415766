//! Input rules of PROTOCOL.md §1 and §9: trimming, emptiness, field limits (527) and
//! account validity (528).

use crate::code::Code;

/// Field limits of §9. Text fields count characters (not bytes); `picture` and
/// `payload` count bytes of UTF-8. All are configurable; the defaults are §9's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Account, characters (default 64).
    pub account: usize,
    /// Password, characters (default 1024).
    pub password: usize,
    /// Profile name, characters (default 64).
    pub name: usize,
    /// Sex, characters (default 16).
    pub sex: usize,
    /// Birthday, characters (default 32).
    pub birthday: usize,
    /// Signature, characters (default 256).
    pub sign: usize,
    /// Mail, characters (default 254).
    pub mail: usize,
    /// Friend-request note, characters (default 256).
    pub note: usize,
    /// Alias given to a friend, characters (default 64).
    pub alias: usize,
    /// Search name, characters (default 64).
    pub search: usize,
    /// Picture, bytes (default 256 KiB).
    pub picture: usize,
    /// Dialogue payload, bytes (default 64 KiB).
    pub payload: usize,
    /// Dialogue `id`, characters (default 64).
    pub dialogue_id: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            account: 64,
            password: 1024,
            name: 64,
            sex: 16,
            birthday: 32,
            sign: 256,
            mail: 254,
            note: 256,
            alias: 64,
            search: 64,
            picture: 256 * 1024,
            payload: 64 * 1024,
            dialogue_id: 64,
        }
    }
}

/// A limited input field, to check with [`Limits::check`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// `account`.
    Account,
    /// `password` / `new_password`.
    Password,
    /// Profile `name`.
    Name,
    /// `sex`.
    Sex,
    /// `birthday`.
    Birthday,
    /// `sign`.
    Sign,
    /// `mail`.
    Mail,
    /// Friend-request `note`.
    Note,
    /// Alias (`name` of add).
    Alias,
    /// Search `name`.
    Search,
    /// `picture` (bytes).
    Picture,
    /// Dialogue `payload` (bytes).
    Payload,
    /// Dialogue `id`.
    DialogueId,
}

impl Limits {
    /// The limit of `field`, and whether it counts bytes (else characters).
    pub fn of(&self, field: Field) -> (usize, bool) {
        match field {
            Field::Account => (self.account, false),
            Field::Password => (self.password, false),
            Field::Name => (self.name, false),
            Field::Sex => (self.sex, false),
            Field::Birthday => (self.birthday, false),
            Field::Sign => (self.sign, false),
            Field::Mail => (self.mail, false),
            Field::Note => (self.note, false),
            Field::Alias => (self.alias, false),
            Field::Search => (self.search, false),
            Field::Picture => (self.picture, true),
            Field::Payload => (self.payload, true),
            Field::DialogueId => (self.dialogue_id, false),
        }
    }

    /// `value` over the limit of `field` → 527.
    pub fn check(&self, field: Field, value: &str) -> Result<(), Code> {
        match self.of(field) {
            (max, true) => check_bytes(value, max),
            (max, false) => check_chars(value, max),
        }
    }
}

/// More than `max` characters → 527.
pub fn check_chars(value: &str, max: usize) -> Result<(), Code> {
    // Cheap first: no more bytes than `max` means no more characters either.
    if value.len() > max && value.chars().count() > max {
        return Err(Code::FieldTooLong);
    }
    Ok(())
}

/// More than `max` bytes → 527.
pub fn check_bytes(value: &str, max: usize) -> Result<(), Code> {
    if value.len() > max {
        return Err(Code::FieldTooLong);
    }
    Ok(())
}

/// An account holding white space or control characters → 528 (§3.1). Call it on
/// the trimmed account, after the emptiness and length checks.
pub fn check_account(account: &str) -> Result<(), Code> {
    if account.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Code::FieldInvalid);
    }
    Ok(())
}

/// An input field as used (§1): leading and trailing white space removed. Not for
/// passwords and payloads, which are used exactly as sent.
pub fn trimmed(value: &str) -> &str {
    value.trim()
}

/// Whether a password or payload is "empty" (§1): nothing but white space.
pub fn is_blank(value: &str) -> bool {
    value.chars().all(char::is_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_section_9() {
        let l = Limits::default();
        assert_eq!(
            [l.account, l.password, l.name, l.sex, l.birthday, l.sign, l.mail, l.note, l.alias],
            [64, 1024, 64, 16, 32, 256, 254, 256, 64]
        );
        assert_eq!([l.search, l.picture, l.payload, l.dialogue_id], [64, 262_144, 65_536, 64]);
    }

    #[test]
    fn characters_not_bytes() {
        let l = Limits::default();
        let wide = "中".repeat(64); // 192 bytes, 64 characters
        assert_eq!(l.check(Field::Account, &wide), Ok(()));
        assert_eq!(l.check(Field::Account, &format!("{wide}x")), Err(Code::FieldTooLong));
        assert_eq!(l.check(Field::Sex, &"x".repeat(16)), Ok(()));
        assert_eq!(l.check(Field::Sex, &"x".repeat(17)), Err(Code::FieldTooLong));
        // Bytes for payload and picture.
        let small = Limits { payload: 3, ..Limits::default() };
        assert_eq!(small.check(Field::Payload, "abc"), Ok(()));
        assert_eq!(small.check(Field::Payload, "é!"), Ok(()));
        assert_eq!(small.check(Field::Payload, "éé"), Err(Code::FieldTooLong));
        assert_eq!(small.of(Field::Picture), (262_144, true));
    }

    #[test]
    fn accounts_without_space_or_controls() {
        assert_eq!(check_account("alice_01@x.y"), Ok(()));
        assert_eq!(check_account("用户"), Ok(()));
        for bad in ["a b", "a\tb", "a\u{0}b", "a\u{7f}", "a\u{a0}b", "a\u{3000}b", "a\u{85}"] {
            assert_eq!(check_account(bad), Err(Code::FieldInvalid), "{bad:?}");
        }
    }

    #[test]
    fn trim_and_blank() {
        assert_eq!(trimmed("  a b \n"), "a b");
        assert!(is_blank(""));
        assert!(is_blank(" \t\n\u{3000}"));
        assert!(!is_blank("  x "));
    }
}
