//! Rendering JSON exactly as Rasa writes it.
//!
//! Rasa stores events with Python's `json.dumps` defaults: `", "` and `": "` separators,
//! every non-ASCII character escaped as `\uXXXX` (astral characters as a surrogate pair),
//! and floats in Python's `repr` form (`1700000000.0`, `1e-07`, `1e+16`). The SQL `data`
//! column and Redis values hold this text, and tools compare it byte for byte, so the
//! [`PythonFormatter`] here reproduces it for any [`serde::Serialize`] value.

use std::io;

use serde::Serialize;
use serde_json::ser::{CharEscape, Formatter};

/// A [`serde_json`] formatter that writes what Python's `json.dumps` writes by default.
#[derive(Debug, Clone, Copy, Default)]
pub struct PythonFormatter;

/// Renders `value` as Python's `json.dumps(value)` would.
///
/// Key order is the value's own order (serde_json's `preserve_order` keeps the order in which
/// keys were read or inserted). Non-finite floats, which Rasa never stores, are written as
/// `null` by serde_json.
pub fn to_python_json<T: Serialize + ?Sized>(value: &T) -> Result<String, serde_json::Error> {
    let mut out = Vec::with_capacity(128);
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
    if value == 0.0 {
        return if value.is_sign_negative() {
            "-0.0"
        } else {
            "0.0"
        }
        .to_owned();
    }
    let mut buffer = ryu::Buffer::new();
    let shortest = buffer.format_finite(value);
    let (negative, digits, decimal_point) = decompose(shortest);
    let mut out = String::with_capacity(digits.len() + 8);
    if negative {
        out.push('-');
    }
    if decimal_point > -4 && decimal_point <= 16 {
        if decimal_point <= 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n(
                '0',
                decimal_point.unsigned_abs() as usize,
            ));
            out.push_str(&digits);
        } else {
            let point = decimal_point as usize;
            if point >= digits.len() {
                out.push_str(&digits);
                out.extend(std::iter::repeat_n('0', point - digits.len()));
                out.push_str(".0");
            } else {
                out.push_str(&digits[..point]);
                out.push('.');
                out.push_str(&digits[point..]);
            }
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let exponent = decimal_point - 1;
        out.push('e');
        out.push(if exponent < 0 { '-' } else { '+' });
        let magnitude = exponent.unsigned_abs();
        if magnitude < 10 {
            out.push('0');
        }
        out.push_str(&magnitude.to_string());
    }
    out
}

/// Splits ryu's output into (negative, significant digits, decimal point position), where the
/// value is `0.DIGITS × 10^position`.
fn decompose(text: &str) -> (bool, String, i32) {
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (text, 0),
    };
    let (integer, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut digits: String = integer.chars().chain(fraction.chars()).collect();
    let mut position = integer.len() as i32 + exponent;
    let leading = digits.len() - digits.trim_start_matches('0').len();
    digits.drain(..leading);
    position -= leading as i32;
    let trimmed = digits.trim_end_matches('0').len();
    digits.truncate(trimmed);
    if digits.is_empty() {
        digits.push('0');
        position = 1;
    }
    (negative, digits, position)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn write_u_escape<W: ?Sized + io::Write>(writer: &mut W, unit: u16) -> io::Result<()> {
    let bytes = [
        b'\\',
        b'u',
        HEX[(unit >> 12) as usize & 0xf],
        HEX[(unit >> 8) as usize & 0xf],
        HEX[(unit >> 4) as usize & 0xf],
        HEX[unit as usize & 0xf],
    ];
    writer.write_all(&bytes)
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
        writer.write_all(python_float_repr(value).as_bytes())
    }

    fn write_f32<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: f32) -> io::Result<()> {
        writer.write_all(python_float_repr(f64::from(value)).as_bytes())
    }

    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
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
