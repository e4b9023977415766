//! Input rules of docs/protocol.md §1 and §9: trimming, emptiness, field limits (527) and
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

/// An account holding white space, control, format (Unicode Cf) or default-ignorable
/// characters → 528 (§3.1), as PRECIS IdentifierClass refuses them: such characters
/// are invisible, so two accounts that look the same could be told apart only by them
/// (or a bidi control could make one read as another). Call it on the trimmed
/// account, after the emptiness and length checks.
pub fn check_account(account: &str) -> Result<(), Code> {
    if account.chars().any(|c| c.is_whitespace() || c.is_control() || is_invisible(c)) {
        return Err(Code::FieldInvalid);
    }
    Ok(())
}

/// Format characters (General_Category Cf) and Default_Ignorable_Code_Point, from the
/// Unicode 15.1 character database, as inclusive ranges in code point order.
const INVISIBLE: [(u32, u32); 36] = [
    (0x00AD, 0x00AD),   // SOFT HYPHEN
    (0x034F, 0x034F),   // COMBINING GRAPHEME JOINER
    (0x0600, 0x0605),   // Arabic number signs
    (0x061C, 0x061C),   // ARABIC LETTER MARK
    (0x06DD, 0x06DD),   // ARABIC END OF AYAH
    (0x070F, 0x070F),   // SYRIAC ABBREVIATION MARK
    (0x0890, 0x0891),   // Arabic pound and piastre marks above
    (0x08E2, 0x08E2),   // ARABIC DISPUTED END OF AYAH
    (0x115F, 0x1160),   // HANGUL CHOSEONG and JUNGSEONG FILLER
    (0x17B4, 0x17B5),   // Khmer inherent vowels
    (0x180B, 0x180F),   // Mongolian free variation selectors, vowel separator
    (0x200B, 0x200F),   // ZWSP, ZWNJ, ZWJ, LRM, RLM
    (0x202A, 0x202E),   // LRE, RLE, PDF, LRO, RLO
    (0x2060, 0x206F),   // WJ, invisible operators, isolates, deprecated controls
    (0x3164, 0x3164),   // HANGUL FILLER
    (0xFE00, 0xFE0F),   // variation selectors
    (0xFEFF, 0xFEFF),   // BOM, ZERO WIDTH NO-BREAK SPACE
    (0xFFA0, 0xFFA0),   // HALFWIDTH HANGUL FILLER
    (0xFFF0, 0xFFFB),   // reserved ignorables, interlinear annotation
    (0x110BD, 0x110BD), // KAITHI NUMBER SIGN
    (0x110CD, 0x110CD), // KAITHI NUMBER SIGN ABOVE
    (0x13430, 0x1343F), // Egyptian hieroglyph format controls
    (0x1BCA0, 0x1BCA3), // shorthand format controls
    (0x1D173, 0x1D17A), // musical symbol format controls
    (0xE0000, 0xE0FFF), // tags, variation selectors supplement, reserved ignorables
    // Noncharacters and private use are no identifiers either.
    (0xE000, 0xF8FF),
    (0xFDD0, 0xFDEF),
    (0xFFFE, 0xFFFF),
    (0x1FFFE, 0x1FFFF),
    (0x2FFFE, 0x2FFFF),
    (0x3FFFE, 0x3FFFF),
    (0xEFFFE, 0xEFFFF),
    (0xF0000, 0xFFFFD),
    (0xFFFFE, 0xFFFFF),
    (0x100000, 0x10FFFD),
    (0x10FFFE, 0x10FFFF),
];

/// Whether `c` is a format or default-ignorable character (or not a character at all).
fn is_invisible(c: char) -> bool {
    let c = u32::from(c);
    INVISIBLE.iter().any(|&(lo, hi)| (lo..=hi).contains(&c))
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
    fn accounts_without_format_or_default_ignorable_characters() {
        let invisible = [
            '\u{AD}',    // SOFT HYPHEN
            '\u{34F}',   // COMBINING GRAPHEME JOINER
            '\u{600}',   // ARABIC NUMBER SIGN
            '\u{61C}',   // ARABIC LETTER MARK
            '\u{115F}',  // HANGUL CHOSEONG FILLER
            '\u{1160}',  // HANGUL JUNGSEONG FILLER
            '\u{17B4}',  // KHMER VOWEL INHERENT AQ
            '\u{180B}',  // MONGOLIAN FREE VARIATION SELECTOR ONE
            '\u{180E}',  // MONGOLIAN VOWEL SEPARATOR
            '\u{200B}',  // ZERO WIDTH SPACE
            '\u{200C}',  // ZERO WIDTH NON-JOINER
            '\u{200D}',  // ZERO WIDTH JOINER
            '\u{200E}',  // LEFT-TO-RIGHT MARK
            '\u{200F}',  // RIGHT-TO-LEFT MARK
            '\u{202A}',  // LEFT-TO-RIGHT EMBEDDING
            '\u{202C}',  // POP DIRECTIONAL FORMATTING
            '\u{202D}',  // LEFT-TO-RIGHT OVERRIDE
            '\u{202E}',  // RIGHT-TO-LEFT OVERRIDE
            '\u{2060}',  // WORD JOINER
            '\u{2066}',  // LEFT-TO-RIGHT ISOLATE
            '\u{2069}',  // POP DIRECTIONAL ISOLATE
            '\u{3164}',  // HANGUL FILLER
            '\u{FE00}',  // VARIATION SELECTOR-1
            '\u{FE0F}',  // VARIATION SELECTOR-16
            '\u{FEFF}',  // BYTE ORDER MARK
            '\u{FFA0}',  // HALFWIDTH HANGUL FILLER
            '\u{FFF9}',  // INTERLINEAR ANNOTATION ANCHOR
            '\u{110BD}', // KAITHI NUMBER SIGN
            '\u{1BCA0}', // SHORTHAND FORMAT LETTER OVERLAP
            '\u{1D173}', // MUSICAL SYMBOL BEGIN BEAM
            '\u{E0001}', // LANGUAGE TAG
            '\u{E0041}', // TAG LATIN CAPITAL LETTER A
            '\u{E007F}', // CANCEL TAG
            '\u{E0100}', // VARIATION SELECTOR-17
            '\u{E000}',  // private use
            '\u{FFFF}',  // noncharacter
        ];
        for c in invisible {
            for account in [format!("al{c}ice"), format!("{c}alice"), format!("alice{c}")] {
                assert_eq!(check_account(&account), Err(Code::FieldInvalid), "U+{:04X}", c as u32);
            }
        }
        // Visible neighbours of those ranges stay allowed.
        for ok in ["ali\u{AC}ce", "x\u{2010}y", "ハングル\u{3165}", "\u{FB01}x", "e\u{301}", "😀"]
        {
            assert_eq!(check_account(ok), Ok(()), "{ok:?}");
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
