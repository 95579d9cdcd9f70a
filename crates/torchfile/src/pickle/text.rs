//! Decoding the text literals of pickle protocol 0 (INT, STRING, UNICODE).

pub(super) fn parse_int(s: &str) -> Option<i64> {
    s.trim().parse().ok()
}

/// Decodes `raw-unicode-escape` (UNICODE opcode): latin-1 bytes plus `\uXXXX`/`\UXXXXXXXX`.
pub(super) fn decode_raw_unicode_escape(raw: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b == b'\\' && matches!(raw.get(i + 1), Some(b'u' | b'U')) {
            let n = if raw[i + 1] == b'u' { 4 } else { 8 };
            let hex = std::str::from_utf8(raw.get(i + 2..i + 2 + n)?).ok()?;
            out.push(char::from_u32(u32::from_str_radix(hex, 16).ok()?)?);
            i += 2 + n;
        } else {
            out.push(b as char);
            i += 1;
        }
    }
    Some(out)
}

/// Decodes a Python string literal as written by the STRING opcode (`'...'` with escapes).
pub(super) fn decode_string_repr(raw: &[u8]) -> Option<Vec<u8>> {
    let q = *raw.first()?;
    if !(q == b'\'' || q == b'"') || raw.len() < 2 || raw[raw.len() - 1] != q {
        return None;
    }
    let body = &raw[1..raw.len() - 1];
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        i += 1;
        if b != b'\\' {
            out.push(b);
            continue;
        }
        let e = *body.get(i)?;
        i += 1;
        match e {
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'v' => out.push(11),
            b'\n' => {}
            b'x' => {
                let hex = std::str::from_utf8(body.get(i..i + 2)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b'0'..=b'7' => {
                let mut v = (e - b'0') as u32;
                for _ in 0..2 {
                    match body.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + (d - b'0') as u32;
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(v as u8);
            }
            other => {
                // Unknown escapes keep the backslash, as Python does.
                out.push(b'\\');
                out.push(other);
            }
        }
    }
    Some(out)
}
