//! A strict JSON scanner that checks text without building anything.
//!
//! [`Scanner::value`] accepts a JSON value only when `serde_json` surely reads it into a
//! `Value` nested in an event object: besides the grammar (which `serde_json` follows
//! strictly), it requires paired surrogate escapes, at most [`MAX_DEPTH`] levels of nesting,
//! and numbers that cannot overflow an `f64`. It may refuse a value `serde_json` would read
//! (a number it cannot vouch for, very deep nesting); a caller then reads the text with
//! `serde_json`, so refusing is always safe and accepting is a promise.

/// Deepest nesting accepted, counting the event object (`serde_json` reads 128 levels).
pub(super) const MAX_DEPTH: usize = 100;

/// Digits a number's integer part and positive exponent may add up to: below `f64::MAX`
/// (about 1.8e308) whatever the digits.
const MAX_MAGNITUDE: usize = 300;

/// What a scanned value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Null,
    Bool(bool),
    Number,
    /// A string; `escaped` when it holds escape sequences.
    String {
        escaped: bool,
    },
    Array,
    Object,
}

/// A scanned value: its kind and its text.
#[derive(Debug, Clone, Copy)]
pub(super) struct Span<'a> {
    pub kind: Kind,
    pub text: &'a str,
}

impl<'a> Span<'a> {
    /// The contents of a string without escape sequences: exactly the string it denotes.
    pub fn plain_str(&self) -> Option<&'a str> {
        match self.kind {
            Kind::String { escaped: false } => self.text.get(1..self.text.len() - 1),
            _ => None,
        }
    }
}

/// The bytes that end a run of plain string contents: `"`, `\\` and control characters.
static STRING_STOP: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = true;
        byte += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// A mask with the high bit of each byte of `word` (little-endian) that is a quote, a
/// backslash or a control character. Bits above the lowest may be spurious (a borrow carries
/// into the next byte), so only the lowest set bit is meaningful.
#[inline(always)]
fn stops_in(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let zero_in = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    let quote = zero_in(word ^ (ONES * u64::from(b'"')));
    let backslash = zero_in(word ^ (ONES * u64::from(b'\\')));
    let control = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    quote | backslash | control
}

/// The position after the whitespace at `pos`.
#[inline(always)]
fn skip_whitespace(bytes: &[u8], mut pos: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\t' | b'\r') = bytes.get(pos) {
        pos += 1;
    }
    pos
}

/// Scans the rest of a string from `pos`, after its opening quote: the position after the
/// closing quote, and whether the string holds escape sequences.
#[inline(always)]
fn string_end(bytes: &[u8], mut pos: usize) -> Option<(usize, bool)> {
    let mut escaped = false;
    loop {
        // The next quote, backslash or control character: eight bytes at a time, then one by
        // one near the end.
        let stop = loop {
            match bytes.get(pos..pos + 8) {
                Some(chunk) => {
                    let found = stops_in(u64::from_le_bytes(<[u8; 8]>::try_from(chunk).ok()?));
                    if found != 0 {
                        pos += (found.trailing_zeros() / 8) as usize;
                        break *bytes.get(pos)?;
                    }
                    pos += 8;
                }
                None => {
                    let byte = *bytes.get(pos)?;
                    if STRING_STOP[usize::from(byte)] {
                        break byte;
                    }
                    pos += 1;
                }
            }
        };
        pos += 1;
        match stop {
            b'"' => return Some((pos, escaped)),
            b'\\' => {
                escaped = true;
                pos = escape_end(bytes, pos)?;
            }
            // A control character.
            _ => return None,
        }
    }
}

/// Scans an escape sequence from `pos`, after its backslash; the position after it.
#[cold]
fn escape_end(bytes: &[u8], pos: usize) -> Option<usize> {
    match *bytes.get(pos)? {
        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(pos + 1),
        b'u' => match hex_unit(bytes, pos + 1)? {
            0xDC00..=0xDFFF => None,
            // A leading surrogate must be followed by a trailing one.
            0xD800..=0xDBFF => {
                if bytes.get(pos + 5..pos + 7) != Some(&b"\\u"[..]) {
                    return None;
                }
                matches!(hex_unit(bytes, pos + 7)?, 0xDC00..=0xDFFF).then_some(pos + 11)
            }
            _ => Some(pos + 5),
        },
        _ => None,
    }
}

/// The four hex digits at `pos`.
fn hex_unit(bytes: &[u8], pos: usize) -> Option<u16> {
    let digits = bytes.get(pos..pos + 4)?;
    if !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u16::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
}

/// The position after the digits at `pos`.
#[inline(always)]
fn digits_end(bytes: &[u8], mut pos: usize) -> usize {
    while let Some(b'0'..=b'9') = bytes.get(pos) {
        pos += 1;
    }
    pos
}

/// Scans a number at `pos` whose magnitude surely fits an `f64`; the position after it.
#[inline(always)]
fn number_end(bytes: &[u8], mut pos: usize) -> Option<usize> {
    if bytes.get(pos) == Some(&b'-') {
        pos += 1;
    }
    let start = pos;
    pos = digits_end(bytes, pos);
    let integer = pos - start;
    if integer == 0 || (integer > 1 && bytes[start] == b'0') {
        return None;
    }
    if bytes.get(pos) == Some(&b'.') {
        let fraction = pos + 1;
        pos = digits_end(bytes, fraction);
        if pos == fraction {
            return None;
        }
    }
    if let Some(b'e' | b'E') = bytes.get(pos) {
        number_exponent_end(bytes, pos + 1, integer)
    } else {
        (integer <= MAX_MAGNITUDE).then_some(pos)
    }
}

/// Scans a number's exponent from `pos`, after its `e`; `integer` is the number of digits
/// before the point.
#[cold]
fn number_exponent_end(bytes: &[u8], mut pos: usize, integer: usize) -> Option<usize> {
    let negative = bytes.get(pos) == Some(&b'-');
    if negative || bytes.get(pos) == Some(&b'+') {
        pos += 1;
    }
    let start = pos;
    pos = digits_end(bytes, pos);
    let digits = bytes.get(start..pos)?;
    if digits.is_empty() || digits.len() > 4 {
        return None;
    }
    let exponent: usize = std::str::from_utf8(digits).ok()?.parse().ok()?;
    let magnitude = if negative {
        integer
    } else {
        integer + exponent
    };
    (magnitude <= MAX_MAGNITUDE).then_some(pos)
}

/// Scans a literal (`null`, `true`, `false`) at `pos`; the position after it.
#[inline(always)]
fn literal_end(bytes: &[u8], pos: usize, word: &[u8]) -> Option<usize> {
    let end = pos + word.len();
    (bytes.get(pos..end)? == word).then_some(end)
}

/// Scans an object key from `pos`, up to its value: the position of the value, and the key's
/// start and end.
#[inline(always)]
fn key_end(bytes: &[u8], pos: usize) -> Option<(usize, usize, bool)> {
    if bytes.get(pos) != Some(&b'"') {
        return None;
    }
    let (end, escaped) = string_end(bytes, pos + 1)?;
    let colon = skip_whitespace(bytes, end);
    if bytes.get(colon) != Some(&b':') {
        return None;
    }
    Some((skip_whitespace(bytes, colon + 1), end, escaped))
}

/// Scans an array or object at `pos` nested in `depth` containers, without recursion; the
/// position after it.
fn container_end(bytes: &[u8], mut pos: usize, depth: usize) -> Option<usize> {
    // Per open container, whether it is an object.
    let mut open = [false; MAX_DEPTH];
    let mut level = 0;
    loop {
        // At the start of a value.
        match *bytes.get(pos)? {
            byte @ (b'[' | b'{') => {
                let object = byte == b'{';
                if depth + level >= MAX_DEPTH {
                    return None;
                }
                open[level] = object;
                level += 1;
                pos = skip_whitespace(bytes, pos + 1);
                if bytes.get(pos) == Some(if object { &b'}' } else { &b']' }) {
                    pos += 1;
                    level -= 1;
                } else {
                    if object {
                        pos = key_end(bytes, pos)?.0;
                    }
                    continue;
                }
            }
            b'"' => pos = string_end(bytes, pos + 1)?.0,
            b'-' | b'0'..=b'9' => pos = number_end(bytes, pos)?,
            b'n' => pos = literal_end(bytes, pos, b"null")?,
            b't' => pos = literal_end(bytes, pos, b"true")?,
            b'f' => pos = literal_end(bytes, pos, b"false")?,
            _ => return None,
        }
        // After a value: close containers or move to the next item.
        loop {
            if level == 0 {
                return Some(pos);
            }
            pos = skip_whitespace(bytes, pos);
            let object = open[level - 1];
            match *bytes.get(pos)? {
                b',' => {
                    pos = skip_whitespace(bytes, pos + 1);
                    if object {
                        pos = key_end(bytes, pos)?.0;
                    }
                    break;
                }
                b'}' if object => {}
                b']' if !object => {}
                _ => return None,
            }
            pos += 1;
            level -= 1;
        }
    }
}

/// A position in a JSON text.
pub(super) struct Scanner<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Scanner<'a> {
    pub fn new(text: &'a str) -> Self {
        Self { text, pos: 0 }
    }

    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    /// Whether only whitespace is left.
    pub fn at_end(&mut self) -> bool {
        self.pos = skip_whitespace(self.bytes(), self.pos);
        self.pos == self.text.len()
    }

    /// Scans one value nested in `depth` containers.
    pub fn value(&mut self, depth: usize) -> Option<Span<'a>> {
        let bytes = self.bytes();
        let start = self.pos;
        let (end, kind) = match *bytes.get(start)? {
            b'"' => {
                let (end, escaped) = string_end(bytes, start + 1)?;
                (end, Kind::String { escaped })
            }
            b'-' | b'0'..=b'9' => (number_end(bytes, start)?, Kind::Number),
            b'n' => (literal_end(bytes, start, b"null")?, Kind::Null),
            b't' => (literal_end(bytes, start, b"true")?, Kind::Bool(true)),
            b'f' => (literal_end(bytes, start, b"false")?, Kind::Bool(false)),
            b'[' => (container_end(bytes, start, depth)?, Kind::Array),
            b'{' => (container_end(bytes, start, depth)?, Kind::Object),
            _ => return None,
        };
        self.pos = end;
        Some(Span {
            kind,
            text: self.text.get(start..end)?,
        })
    }

    /// Opens an object: the event itself.
    pub fn begin_object(&mut self) -> Option<()> {
        let pos = skip_whitespace(self.bytes(), self.pos);
        (self.bytes().get(pos) == Some(&b'{')).then(|| self.pos = pos + 1)
    }

    /// The next key of the object opened by [`Scanner::begin_object`], up to its value, or
    /// `None` after the closing brace. `first` tells whether a key was read yet.
    pub fn next_key(&mut self, first: &mut bool) -> Option<Option<Span<'a>>> {
        let bytes = self.bytes();
        let mut pos = skip_whitespace(bytes, self.pos);
        if bytes.get(pos) == Some(&b'}') {
            self.pos = pos + 1;
            return Some(None);
        }
        if !std::mem::take(first) {
            if bytes.get(pos) != Some(&b',') {
                return None;
            }
            pos = skip_whitespace(bytes, pos + 1);
        }
        let (value, end, escaped) = key_end(bytes, pos)?;
        self.pos = value;
        Some(Some(Span {
            kind: Kind::String { escaped },
            text: self.text.get(pos..end)?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn scans(text: &str) -> bool {
        let mut scanner = Scanner::new(text);
        scanner.pos = skip_whitespace(text.as_bytes(), 0);
        scanner.value(1).is_some() && scanner.at_end()
    }

    #[test]
    fn accepts_json_serde_reads() {
        for text in [
            r#"{"a": [1, -2.5, 3e-7, 1E+20, 0, -0, 0.0, true, false, null], "b": {}}"#,
            r#" [ "\u00fc\ud83c\udf55\n\t\"\\\/\b\f\r", {"k" : "v"} ] "#,
            "\"caf\u{e9} 🍕 \u{7f}\"",
            "1e-999",
            "123456789012345678901234567890",
        ] {
            assert!(scans(text), "{text}");
            assert!(serde_json::from_str::<Value>(text).is_ok(), "{text}");
        }
    }

    #[test]
    fn refuses_what_serde_refuses_and_what_it_cannot_vouch_for() {
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        for text in [
            "",
            "{",
            "[1,]",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "{1: 2}",
            "01",
            "1.",
            ".5",
            "-",
            "1e",
            "+1",
            "nul",
            "True",
            "\"\\x\"",
            "\"\\ud800\"",
            "\"\\udc00\"",
            "\"\\ud800\\u0041\"",
            "\"a\u{1}b\"",
            "\"open",
            "[1] 2",
            "NaN",
            "1e400",
            "1e+0400",
            &deep,
        ] {
            assert!(!scans(text), "{text:?}");
        }
        assert!(serde_json::from_str::<Value>("1e400").is_err());
    }

    #[test]
    fn strings_are_checked_wherever_the_stop_falls() {
        for inner in [
            "\n",
            "\\\"",
            "\\u00e9",
            "\\ud83c\\udf55",
            "\\ud83c",
            "\\q",
            "\u{fc}",
            "\u{1F355}",
            "\u{7f}",
            "\"",
            "\\",
        ] {
            for before in 0..20 {
                for after in 0..12 {
                    let text = format!("\"{}{inner}{}\"", "a".repeat(before), "b".repeat(after));
                    let read = serde_json::from_str::<Value>(&text);
                    assert_eq!(scans(&text), read.is_ok(), "{text:?}");
                    let mut scanner = Scanner::new(&text);
                    let span = scanner.value(1);
                    if let (Some(span), Ok(Value::String(string))) = (span, read) {
                        assert_eq!(span.text, text);
                        assert_eq!(span.plain_str().is_some(), !text.contains('\\'));
                        if let Some(plain) = span.plain_str() {
                            assert_eq!(plain, string);
                        }
                    }
                }
            }
        }
    }
}
