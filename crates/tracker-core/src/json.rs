//! Rendering JSON exactly as Rasa writes it.
//!
//! Rasa stores events with Python's `json.dumps` defaults: `", "` and `": "` separators,
//! every non-ASCII character escaped as `\uXXXX` (astral characters as a surrogate pair),
//! and floats in Python's `repr` form (`1700000000.0`, `1e-07`, `1e+16`). The SQL `data`
//! column and Redis values hold this text, and tools compare it byte for byte, so the
//! [`PythonFormatter`] here reproduces it for any [`serde::Serialize`] value. Events take a
//! direct writer of the same text ([`crate::Event::to_rasa_json`]), which skips `serde`'s
//! indirection on the path every append takes.

use std::io;

use serde::{Serialize, Serializer};
use serde_json::ser::{CharEscape, Formatter};
use serde_json::{Map, Number, Value};

/// A JSON object with keys in insertion order.
pub type JsonMap = Map<String, Value>;

/// One value of an event's Rasa object, borrowed from the event.
#[derive(Clone, Copy)]
pub(crate) enum Item<'a> {
    Str(&'a str),
    OptStr(Option<&'a str>),
    Float(f64),
    Bool(bool),
    Number(Option<&'a Number>),
    Value(&'a Value),
    Map(&'a JsonMap),
    List(&'a [Value]),
}

impl Serialize for Item<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match *self {
            Item::Str(text) => serializer.serialize_str(text),
            Item::OptStr(text) => text.serialize(serializer),
            // Non-finite timestamps (rejected before any store) are written as `null`.
            Item::Float(value) => serializer.serialize_f64(value),
            Item::Bool(flag) => serializer.serialize_bool(flag),
            Item::Number(number) => number.serialize(serializer),
            Item::Value(value) => value.serialize(serializer),
            Item::Map(map) => map.serialize(serializer),
            Item::List(list) => list.serialize(serializer),
        }
    }
}

/// A [`serde_json`] formatter that writes what Python's `json.dumps` writes by default.
#[derive(Debug, Clone, Copy, Default)]
pub struct PythonFormatter;

/// Renders `value` as Python's `json.dumps(value)` would.
///
/// Key order is the value's own order (serde_json's `preserve_order` keeps the order in which
/// keys were read or inserted). Non-finite floats, which Rasa never stores, are written as
/// `null` by serde_json.
pub fn to_python_json<T: Serialize + ?Sized>(value: &T) -> Result<String, serde_json::Error> {
    let mut out = Vec::with_capacity(256);
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    value.serialize(&mut serializer)?;
    // The formatter writes ASCII only, so this cannot fail; map it anyway rather than unwrap.
    String::from_utf8(out).map_err(|e| serde_json::Error::io(io::Error::other(e)))
}

/// Formats `value` like Python's `repr(float)`: the shortest text that reads back as the same
/// `f64`, in fixed notation when the decimal exponent is in `-4 < exp <= 16`, otherwise in
/// exponent notation with a sign and at least two exponent digits.
pub fn python_float_repr(value: f64) -> String {
    if value.is_nan() {
        return "NaN".to_owned();
    }
    if value.is_infinite() {
        return if value > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
    }
    let mut text = FloatText::default();
    text.format(value);
    text.as_str().to_owned()
}

/// Python's `repr` of a finite float, formatted on the stack.
#[derive(Default)]
struct FloatText {
    bytes: [u8; 32],
    len: usize,
}

impl FloatText {
    fn push(&mut self, byte: u8) {
        // The longest text is 24 bytes (`-1.2345678901234567e-308`).
        if let Some(slot) = self.bytes.get_mut(self.len) {
            *slot = byte;
            self.len += 1;
        }
    }

    fn extend(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.push(byte);
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    fn as_str(&self) -> &str {
        // Only ASCII digits, signs, `.` and `e` are pushed.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    /// Formats a finite `value`.
    fn format(&mut self, value: f64) {
        let mut buffer = ryu::Buffer::new();
        let shortest = buffer.format_finite(value);
        // ryu writes what Python writes for `1e-4 <= |value| < 1e16`: the same shortest
        // digits in fixed notation, with `.0` after an integer. Only the exponent notation
        // and numbers below 1e-4 (which ryu writes as `0.0000ddd`) differ.
        let fixed = !shortest.contains('e')
            && !shortest.trim_start_matches('-').starts_with("0.0000")
            && value != 0.0;
        if fixed {
            self.extend(shortest.as_bytes());
        } else {
            self.format_from_digits(value, shortest);
        }
    }

    /// Formats a finite `value` from `shortest`, ryu's text of it.
    fn format_from_digits(&mut self, value: f64, shortest: &str) {
        if value == 0.0 {
            self.extend(if value.is_sign_negative() {
                b"-0.0"
            } else {
                b"0.0"
            });
            return;
        }
        let (negative, digits, decimal_point) = decompose(shortest);
        let digits = digits.as_bytes();
        if negative {
            self.push(b'-');
        }
        if decimal_point > -4 && decimal_point <= 16 {
            if decimal_point <= 0 {
                self.extend(b"0.");
                for _ in 0..decimal_point.unsigned_abs() {
                    self.push(b'0');
                }
                self.extend(digits);
            } else {
                let point = decimal_point.unsigned_abs() as usize;
                if point >= digits.len() {
                    self.extend(digits);
                    for _ in digits.len()..point {
                        self.push(b'0');
                    }
                    self.extend(b".0");
                } else {
                    self.extend(&digits[..point]);
                    self.push(b'.');
                    self.extend(&digits[point..]);
                }
            }
        } else {
            self.extend(&digits[..1]);
            if digits.len() > 1 {
                self.push(b'.');
                self.extend(&digits[1..]);
            }
            let exponent = decimal_point - 1;
            self.push(b'e');
            self.push(if exponent < 0 { b'-' } else { b'+' });
            let magnitude = exponent.unsigned_abs();
            if magnitude < 10 {
                self.push(b'0');
            }
            if magnitude >= 100 {
                self.push(b'0' + (magnitude / 100) as u8);
            }
            if magnitude >= 10 {
                self.push(b'0' + (magnitude / 10 % 10) as u8);
            }
            self.push(b'0' + (magnitude % 10) as u8);
        }
    }
}

/// Significant decimal digits, at most 17 (what ryu writes for an `f64`).
#[derive(Default)]
struct Digits {
    bytes: [u8; 24],
    len: usize,
}

impl Digits {
    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Splits ryu's output into (negative, significant digits, decimal point position), where the
/// value is `0.DIGITS × 10^position`.
fn decompose(text: &str) -> (bool, Digits, i32) {
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (text, 0),
    };
    let (integer, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut digits = Digits::default();
    let mut position = integer.len() as i32 + exponent;
    let mut leading = true;
    for &byte in integer.as_bytes().iter().chain(fraction.as_bytes()) {
        if leading && byte == b'0' {
            position -= 1;
            continue;
        }
        leading = false;
        if let Some(slot) = digits.bytes.get_mut(digits.len) {
            *slot = byte;
            digits.len += 1;
        }
    }
    while digits.len > 0 && digits.bytes[digits.len - 1] == b'0' {
        digits.len -= 1;
    }
    if digits.len == 0 {
        digits.bytes[0] = b'0';
        digits.len = 1;
        position = 1;
    }
    (negative, digits, position)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// `\\uXXXX` for a UTF-16 code unit, in lowercase hex as Python writes it.
fn u_escape(unit: u16) -> [u8; 6] {
    [
        b'\\',
        b'u',
        HEX[(unit >> 12) as usize & 0xf],
        HEX[(unit >> 8) as usize & 0xf],
        HEX[(unit >> 4) as usize & 0xf],
        HEX[unit as usize & 0xf],
    ]
}

fn write_u_escape<W: ?Sized + io::Write>(writer: &mut W, unit: u16) -> io::Result<()> {
    writer.write_all(&u_escape(unit))
}

/// The bytes Python writes as they are inside a string: printable ASCII but `"` and `\\`.
static PLAIN: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = b' ';
    while byte <= b'~' {
        table[byte as usize] = byte != b'"' && byte != b'\\';
        byte += 1;
    }
    table
};

/// Appends `text` as a JSON string as Python's `json.dumps` writes it: `\\"`, `\\\\`,
/// `\\n`, `\\r`, `\\t`, `\\b`, `\\f`, and `\\uXXXX` for other control characters, DEL
/// and everything beyond ASCII (astral characters as a surrogate pair).
pub(crate) fn write_str(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut start = 0;
    let mut index = 0;
    while let Some(run) = bytes
        .get(index..)
        .and_then(|rest| rest.iter().position(|&b| !PLAIN[usize::from(b)]))
    {
        index += run;
        let byte = bytes[index];
        out.extend_from_slice(&bytes[start..index]);
        let escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x7f => {
                out.extend_from_slice(&u_escape(u16::from(byte)));
                index += 1;
                start = index;
                continue;
            }
            _ => {
                let ch = text[index..]
                    .chars()
                    .next()
                    .unwrap_or(char::REPLACEMENT_CHARACTER);
                let mut units = [0u16; 2];
                for unit in ch.encode_utf16(&mut units) {
                    out.extend_from_slice(&u_escape(*unit));
                }
                index += ch.len_utf8();
                start = index;
                continue;
            }
        };
        out.extend_from_slice(escape);
        index += 1;
        start = index;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Appends a float as Python writes it; `null` for a non-finite one (as `serde_json` writes
/// it; Rasa never stores one).
pub(crate) fn write_f64(out: &mut Vec<u8>, value: f64) {
    if value.is_finite() {
        let mut text = FloatText::default();
        text.format(value);
        out.extend_from_slice(text.as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

/// Appends an integer in decimal.
fn write_integer(out: &mut Vec<u8>, negative: bool, mut magnitude: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (magnitude % 10) as u8;
        magnitude /= 10;
        if magnitude == 0 {
            break;
        }
    }
    if negative {
        out.push(b'-');
    }
    out.extend_from_slice(&digits[start..]);
}

/// Appends a number: an integer as it is, a float as Python writes it.
pub(crate) fn write_number(out: &mut Vec<u8>, number: &Number) {
    if let Some(value) = number.as_u64() {
        write_integer(out, false, value);
    } else if let Some(value) = number.as_i64() {
        write_integer(out, value < 0, value.unsigned_abs());
    } else if let Some(value) = number.as_f64() {
        write_f64(out, value);
    }
}

/// Appends `value` as Python's `json.dumps(value)` writes it (what [`to_python_json`] gives,
/// without `serde`).
pub(crate) fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(number) => write_number(out, number),
        Value::String(text) => write_str(out, text),
        Value::Array(list) => write_list(out, list),
        Value::Object(map) => write_map(out, map),
    }
}

/// Appends a list.
pub(crate) fn write_list(out: &mut Vec<u8>, list: &[Value]) {
    out.push(b'[');
    for (index, item) in list.iter().enumerate() {
        if index > 0 {
            out.extend_from_slice(b", ");
        }
        write_value(out, item);
    }
    out.push(b']');
}

/// Appends an object, keys in their order.
pub(crate) fn write_map(out: &mut Vec<u8>, map: &JsonMap) {
    out.push(b'{');
    for (index, (key, value)) in map.iter().enumerate() {
        if index > 0 {
            out.extend_from_slice(b", ");
        }
        write_str(out, key);
        out.extend_from_slice(b": ");
        write_value(out, value);
    }
    out.push(b'}');
}

/// Appends one value of an event's Rasa object.
pub(crate) fn write_item(out: &mut Vec<u8>, item: Item<'_>) {
    match item {
        Item::Str(text) | Item::OptStr(Some(text)) => write_str(out, text),
        Item::OptStr(None) | Item::Number(None) => out.extend_from_slice(b"null"),
        Item::Float(value) => write_f64(out, value),
        Item::Bool(true) => out.extend_from_slice(b"true"),
        Item::Bool(false) => out.extend_from_slice(b"false"),
        Item::Number(Some(number)) => write_number(out, number),
        Item::Value(value) => write_value(out, value),
        Item::Map(map) => write_map(out, map),
        Item::List(list) => write_list(out, list),
    }
}

/// The text written by the functions above, which write ASCII only.
pub(crate) fn into_string(out: Vec<u8>) -> String {
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Python's item separator, `", "`, before every item but the first.
fn write_separator<W: ?Sized + io::Write>(writer: &mut W, first: bool) -> io::Result<()> {
    if first {
        Ok(())
    } else {
        writer.write_all(b", ")
    }
}

impl Formatter for PythonFormatter {
    fn write_f64<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: f64) -> io::Result<()> {
        if !value.is_finite() {
            return writer.write_all(python_float_repr(value).as_bytes());
        }
        let mut text = FloatText::default();
        text.format(value);
        writer.write_all(text.as_bytes())
    }

    fn write_f32<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: f32) -> io::Result<()> {
        self.write_f64(writer, f64::from(value))
    }

    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        // serde_json escapes quotes, backslashes and control characters itself; what is left
        // to escape here is DEL and everything beyond ASCII.
        if fragment.is_ascii() && !fragment.as_bytes().contains(&0x7f) {
            return writer.write_all(fragment.as_bytes());
        }
        let mut start = 0;
        for (index, ch) in fragment.char_indices() {
            if (' '..='~').contains(&ch) {
                continue;
            }
            writer.write_all(&fragment.as_bytes()[start..index])?;
            let mut units = [0u16; 2];
            for unit in ch.encode_utf16(&mut units) {
                write_u_escape(writer, *unit)?;
            }
            start = index + ch.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }

    fn write_char_escape<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        escape: CharEscape,
    ) -> io::Result<()> {
        let text: &[u8] = match escape {
            CharEscape::Quote => b"\\\"",
            CharEscape::ReverseSolidus => b"\\\\",
            CharEscape::Solidus => b"/",
            CharEscape::Backspace => b"\\b",
            CharEscape::FormFeed => b"\\f",
            CharEscape::LineFeed => b"\\n",
            CharEscape::CarriageReturn => b"\\r",
            CharEscape::Tab => b"\\t",
            CharEscape::AsciiControl(byte) => return write_u_escape(writer, u16::from(byte)),
        };
        writer.write_all(text)
    }

    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        write_separator(writer, first)
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        write_separator(writer, first)
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b": ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ryus_fixed_notation_is_taken_only_where_it_is_pythons() {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut values = vec![
            1e-4,
            9.999e-5,
            1e-5,
            1e15,
            9.999_999_999_999_998e15,
            1e16,
            0.5,
        ];
        for _ in 0..50_000 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            values.push(f64::from_bits(state));
            values.push(
                (state >> 11) as f64 / (1u64 << 53) as f64 * 10f64.powi((state % 44) as i32 - 22),
            );
        }
        for value in values.into_iter().filter(|v| v.is_finite()) {
            let mut fast = FloatText::default();
            fast.format(value);
            let mut exact = FloatText::default();
            exact.format_from_digits(value, ryu::Buffer::new().format_finite(value));
            assert_eq!(fast.as_str(), exact.as_str(), "{value:e}");
            assert_eq!(fast.as_str().parse::<f64>().ok(), Some(value), "{value:e}");
        }
    }

    #[test]
    fn floats_follow_python_repr() {
        let cases: &[(f64, &str)] = &[
            (1700000123.456789, "1700000123.456789"),
            (1700000000.0, "1700000000.0"),
            (3.0, "3.0"),
            (1e-7, "1e-07"),
            (1.5e-7, "1.5e-07"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (1e15, "1000000000000000.0"),
            (1234567890123456.0, "1234567890123456.0"),
            (1e22, "1e+22"),
            (1e100, "1e+100"),
            (-2.5, "-2.5"),
            (0.1, "0.1"),
            (0.9876543210123, "0.9876543210123"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (123.0, "123.0"),
        ];
        for (value, expected) in cases {
            assert_eq!(python_float_repr(*value), *expected, "{value:e}");
        }
    }

    /// A pseudo-random JSON value with the strings and numbers that need care.
    fn random_value(state: &mut u64, depth: usize) -> Value {
        let mut next = || {
            *state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            *state >> 16
        };
        let palette = [
            "a", " ", "\"", "\\", "\n", "\r", "\t", "\u{8}", "\u{c}", "\u{1}", "\u{1f}", "\u{7f}",
            "/", "é", "\u{2028}", "🍕", "\u{ffff}", "~", "Zz",
        ];
        match next() % if depth > 3 { 6 } else { 8 } {
            0 => Value::Null,
            1 => Value::Bool(next() % 2 == 0),
            2 => Value::from(next()),
            3 => Value::from(-(next() as i64) - 1),
            4 => {
                let value = f64::from_bits(next() << 16 | next() & 0xffff);
                if value.is_finite() {
                    json!(value)
                } else {
                    json!(0.5)
                }
            }
            5 => {
                let length = next() % 12;
                Value::String(
                    (0..length)
                        .map(|_| palette[(next() % palette.len() as u64) as usize])
                        .collect(),
                )
            }
            6 => Value::Array(
                (0..next() % 4)
                    .map(|_| random_value(state, depth + 1))
                    .collect(),
            ),
            _ => {
                let mut map = JsonMap::new();
                for _ in 0..next() % 4 {
                    let Value::String(key) = random_value(state, 5) else {
                        continue;
                    };
                    map.insert(key, random_value(state, depth + 1));
                }
                Value::Object(map)
            }
        }
    }

    #[test]
    fn the_direct_writer_writes_what_the_formatter_writes() {
        let mut state = 7;
        for _ in 0..20_000 {
            let value = random_value(&mut state, 0);
            let mut out = Vec::new();
            write_value(&mut out, &value);
            assert_eq!(into_string(out), to_python_json(&value).unwrap(), "{value}");
        }
    }

    #[test]
    fn separators_and_escapes() {
        let value =
            json!({"a": [1, 2.0, null, true], "ü": "tab\t\"q\" \\ \u{1} \u{7f} \u{2028} 🍕"});
        assert_eq!(
            to_python_json(&value).unwrap(),
            r#"{"a": [1, 2.0, null, true], "\u00fc": "tab\t\"q\" \\ \u0001 \u007f \u2028 \ud83c\udf55"}"#
        );
        assert_eq!(to_python_json(&json!({})).unwrap(), "{}");
        assert_eq!(to_python_json(&json!([])).unwrap(), "[]");
        assert_eq!(to_python_json(&json!("a/b")).unwrap(), "\"a/b\"");
    }
}
