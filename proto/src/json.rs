//! Hand-written JSON output: string escaping and a tiny object writer. Replies are on
//! the hot path of message routing, so they are written straight into one `String`
//! without building a `serde_json::Value`.

/// Appends `s` as a JSON string literal (with quotes), escaped exactly as serde_json
/// does: `"` `\` and control characters below U+0020; everything else verbatim.
pub(crate) fn push_str(out: &mut String, s: &str) {
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        // Every byte matched above is ASCII, so `start..i` lies on char boundaries.
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// The length `s` takes once escaped, at least: used to size buffers.
pub(crate) fn size_hint(s: &str) -> usize {
    s.len() + 2
}

/// Writes `,"key":` after earlier members of an object.
pub(crate) fn push_next_key(out: &mut String, key: &str) {
    out.push(',');
    push_str(out, key);
    out.push(':');
}

/// Writes the members of one JSON object; the caller writes the braces.
pub(crate) struct Obj<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> Obj<'a> {
    /// Starts an object: writes `{`.
    pub(crate) fn open(out: &'a mut String) -> Obj<'a> {
        out.push('{');
        Obj { out, first: true }
    }

    /// Continues an object whose `{` and first members are already written.
    pub(crate) fn resume(out: &'a mut String) -> Obj<'a> {
        Obj { out, first: false }
    }

    /// Writes `"key":` (with a comma before it when needed) and returns the buffer.
    pub(crate) fn key(&mut self, key: &str) -> &mut String {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        push_str(self.out, key);
        self.out.push(':');
        self.out
    }

    pub(crate) fn str(&mut self, key: &str, value: &str) -> &mut Self {
        push_str(self.key(key), value);
        self
    }

    pub(crate) fn bool(&mut self, key: &str, value: bool) -> &mut Self {
        self.key(key).push_str(if value { "true" } else { "false" });
        self
    }

    pub(crate) fn int(&mut self, key: &str, value: i64) -> &mut Self {
        let out = self.key(key);
        // Writing to a String cannot fail.
        let _ = std::fmt::Write::write_fmt(out, format_args!("{value}"));
        self
    }

    /// Writes `}`.
    pub(crate) fn close(self) {
        self.out.push('}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_matches_serde_json() {
        let cases = [
            "",
            "plain",
            "quote \" backslash \\ slash /",
            "line\nfeed\r\ttab",
            "\u{0}\u{1}\u{8}\u{c}\u{1f}\u{7f}",
            "unicode: é 中文 🎉 \u{2028}\u{2029}",
            "</script><!--",
            "\"\"\\\\\n\n",
        ];
        for s in cases {
            let mut out = String::new();
            push_str(&mut out, s);
            assert_eq!(out, serde_json::to_string(s).unwrap(), "{s:?}");
            assert_eq!(serde_json::from_str::<String>(&out).unwrap(), s);
        }
    }

    #[test]
    fn objects_get_commas_between_members() {
        let mut out = String::new();
        let mut o = Obj::open(&mut out);
        o.str("a", "x").bool("b", true).int("c", -5);
        o.close();
        assert_eq!(out, r#"{"a":"x","b":true,"c":-5}"#);
        let mut out = String::new();
        Obj::open(&mut out).close();
        assert_eq!(out, "{}");
    }
}
