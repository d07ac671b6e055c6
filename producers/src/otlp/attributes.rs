//! OTLP attributes (`KeyValue`s) read in place, each value rendered as a
//! label value the way OpenTelemetry's collector renders it (`AsString`):
//! strings as they are (borrowed from the request), other scalars as text,
//! bytes as base64, arrays and maps as JSON.
//!
//! Values follow protobuf's merge rules: a `value` given twice merges the
//! two `AnyValue`s, in which the last member of the oneof wins, and an
//! array (or map) given twice in a row is one array (map) of both.

use std::borrow::Cow;

use serde_json::Value as J;

use super::json::base64_encode;
use super::schema::{validate_all, ARRAY_VALUE, KEY_VALUE_LIST};
use super::translate::format_float;
use super::wire::{ErrorKind, Reader, Segments, WireError};

/// An attribute: its key and its value as a label value.
pub type Attr<'a> = (&'a str, Cow<'a, str>);

/// The value of an `AnyValue`, after merging.
#[derive(Debug, Clone, Default)]
enum Any<'a> {
    /// No member set, or only `string_value_strindex` (OTLP profiles).
    #[default]
    Unset,
    Str(&'a str),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(&'a [u8]),
    /// The `ArrayValue`s, merged.
    Array(Segments<'a>),
    /// The `KeyValueList`s, merged.
    Kvlist(Segments<'a>),
}

/// Checks an array or map value that another oneof member replaced (prost
/// decoded it all the same).
fn settle(replaced: &Any<'_>) -> Result<(), WireError> {
    match replaced {
        Any::Array(s) => validate_all(s.as_slice(), &ARRAY_VALUE),
        Any::Kvlist(s) => validate_all(s.as_slice(), &KEY_VALUE_LIST),
        _ => Ok(()),
    }
}

/// The merged value of the occurrences of an `AnyValue` field.
fn any_value<'a>(segments: &Segments<'a>) -> Result<Any<'a>, WireError> {
    let mut cur = Any::Unset;
    for seg in segments.as_slice() {
        let mut r = *seg;
        while let Some((f, v)) = r.read_field()? {
            let next = match f {
                1 => Any::Str(r.str_of(f, v)?),
                2 => Any::Bool(r.varint_of(f, v)? != 0),
                3 => Any::Int(r.varint_of(f, v)? as i64),
                4 => Any::Double(r.double_of(f, v)?),
                5 => {
                    let m = r.message(f, v, ARRAY_VALUE.name)?;
                    if let Any::Array(s) = &mut cur {
                        s.push(m);
                        continue;
                    }
                    Any::Array(Segments::one(m))
                }
                6 => {
                    let m = r.message(f, v, KEY_VALUE_LIST.name)?;
                    if let Any::Kvlist(s) = &mut cur {
                        s.push(m);
                        continue;
                    }
                    Any::Kvlist(Segments::one(m))
                }
                7 => Any::Bytes(r.bytes_of(f, v)?),
                8 => {
                    r.varint_of(f, v)?;
                    Any::Unset
                }
                _ => {
                    r.skip()?;
                    continue;
                }
            };
            settle(&cur)?;
            cur = next;
        }
    }
    Ok(cur)
}

/// A `KeyValue`: its key and the occurrences of its value.
fn key_value_parts<'a>(mut r: Reader<'a>) -> Result<(&'a str, Segments<'a>), WireError> {
    let mut key = "";
    let mut value = Segments::Absent;
    while let Some((f, v)) = r.read_field()? {
        match f {
            1 => key = r.str_of(f, v)?,
            2 => value.push(r.message(f, v, "AnyValue")?),
            3 => drop(r.varint_of(f, v)?),
            _ => r.skip()?,
        }
    }
    Ok((key, value))
}

/// Reads a `KeyValue` (`r` from its first field): the key and the value
/// as a label value.
pub fn key_value(mut r: Reader<'_>) -> Result<Attr<'_>, WireError> {
    if let Some(kv) = string_attribute(&r) {
        return kv;
    }
    // Nearly always one value holding one scalar: read without merging.
    let start = r;
    let mut key = "";
    let mut value = None;
    while let Some((f, v)) = r.read_field()? {
        match f {
            1 => key = r.str_of(f, v)?,
            2 => {
                let m = r.message(f, v, "AnyValue")?;
                if value.replace(m).is_some() {
                    return key_value_merged(start);
                }
            }
            3 => drop(r.varint_of(f, v)?),
            _ => r.skip()?,
        }
    }
    let Some(mut r) = value else {
        return Ok((key, Cow::Borrowed("")));
    };
    let mut cur = Any::Unset;
    while let Some((f, v)) = r.read_field()? {
        cur = match f {
            1 => Any::Str(r.str_of(f, v)?),
            2 => Any::Bool(r.varint_of(f, v)? != 0),
            3 => Any::Int(r.varint_of(f, v)? as i64),
            4 => Any::Double(r.double_of(f, v)?),
            5 | 6 => return key_value_merged(start),
            7 => Any::Bytes(r.bytes_of(f, v)?),
            8 => {
                r.varint_of(f, v)?;
                Any::Unset
            }
            _ => {
                r.skip()?;
                continue;
            }
        };
    }
    Ok((key, label_value(cur)?))
}

/// The usual encoding of a string attribute, read at once: the key
/// (field 1), then the value (field 2) holding just a `string_value`
/// (field 1), every length under 128. `None` for any other encoding.
fn string_attribute<'a>(r: &Reader<'a>) -> Option<Result<Attr<'a>, WireError>> {
    let [0x0a, key_len, rest @ ..] = r.as_bytes() else {
        return None;
    };
    let key_len = usize::from(*key_len);
    let [0x12, any_len, 0x0a, value_len, value @ ..] = rest.get(key_len..)? else {
        return None;
    };
    let (any_len, value_len) = (usize::from(*any_len), usize::from(*value_len));
    if key_len >= 0x80 || value_len >= 0x80 || any_len != value_len + 2 || value.len() != value_len
    {
        return None;
    }
    if !r.can_nest() {
        return None;
    }
    // Key and value apart by four ASCII bytes: one check covers both, and
    // the ASCII bytes are character boundaries.
    let both = match std::str::from_utf8(rest) {
        Ok(s) => s,
        Err(_) => return Some(Err(r.error(ErrorKind::InvalidUtf8 { field: 1 }))),
    };
    let key = both.get(..key_len)?;
    let value = both.get(key_len + 4..)?;
    Some(Ok((key, Cow::Borrowed(value))))
}

/// [`key_value`] with protobuf's merging of values.
fn key_value_merged(r: Reader<'_>) -> Result<Attr<'_>, WireError> {
    let (key, value) = key_value_parts(r)?;
    Ok((key, label_value(any_value(&value)?)?))
}

fn label_value(v: Any<'_>) -> Result<Cow<'_, str>, WireError> {
    Ok(match v {
        Any::Unset => Cow::Borrowed(""),
        Any::Str(s) => Cow::Borrowed(s),
        Any::Bool(b) => Cow::Borrowed(if b { "true" } else { "false" }),
        Any::Int(i) => Cow::Owned(i.to_string()),
        Any::Double(d) => Cow::Owned(format_float(d)),
        Any::Bytes(b) => Cow::Owned(base64_encode(b)),
        other @ (Any::Array(_) | Any::Kvlist(_)) => Cow::Owned(json(&other)?.to_string()),
    })
}

/// An array or map value as JSON (the nested values likewise).
fn json(v: &Any<'_>) -> Result<J, WireError> {
    Ok(match v {
        Any::Unset => J::Null,
        Any::Str(s) => J::String((*s).to_owned()),
        Any::Bool(b) => J::Bool(*b),
        Any::Int(i) => J::from(*i),
        Any::Double(d) => {
            serde_json::Number::from_f64(*d).map_or_else(|| J::String(format_float(*d)), J::Number)
        }
        Any::Bytes(b) => J::String(base64_encode(b)),
        Any::Array(segments) => {
            let mut values = Vec::new();
            for seg in segments.as_slice() {
                let mut r = *seg;
                while let Some((f, v)) = r.read_field()? {
                    if f == 1 {
                        let element = Segments::one(r.message(f, v, "AnyValue")?);
                        values.push(json(&any_value(&element)?)?);
                    } else {
                        r.skip()?;
                    }
                }
            }
            J::Array(values)
        }
        Any::Kvlist(segments) => {
            let mut map = serde_json::Map::new();
            for seg in segments.as_slice() {
                let mut r = *seg;
                while let Some((f, v)) = r.read_field()? {
                    if f == 1 {
                        let (key, value) = key_value_parts(r.message(f, v, "KeyValue")?)?;
                        map.insert(key.to_owned(), json(&any_value(&value)?)?);
                    } else {
                        r.skip()?;
                    }
                }
            }
            J::Object(map)
        }
    })
}
