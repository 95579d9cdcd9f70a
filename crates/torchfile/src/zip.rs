//! A minimal zip container reader and writer (stored and deflated entries, zip64).
//!
//! Written by hand rather than with the `zip` crate so that every offset and size from the file
//! is checked against the real file length before use, duplicate names are refused (two tools
//! could otherwise see different contents), and the writer can align entry data to 64 bytes the
//! way PyTorch does (padding in the local header's extra field).
//!
//! Layout reminder: `[local header + data]*  [central directory]  [zip64 EOCD + locator]?  EOCD`.
//! Sizes and CRCs are taken from the central directory (PyTorch leaves them zero in local
//! headers and writes data descriptors).

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{self, Write};

use crate::error::{limit, malformed, truncated, unsupported, Fault};

const LOCAL_SIG: u32 = 0x0403_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const EOCD_SIG: u32 = 0x0605_4b50;
const ZIP64_EOCD_SIG: u32 = 0x0606_4b50;
const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
const LOCAL_HEADER_LEN: usize = 30;
const CENTRAL_HEADER_LEN: usize = 46;
const EOCD_LEN: usize = 22;
const ZIP64_EXTRA_ID: u16 = 0x0001;
/// PyTorch's alignment padding extra field ("FB").
const PADDING_EXTRA_ID: u16 = 0x4246;
/// Deflate cannot compress better than about 1032:1.
const MAX_DEFLATE_RATIO: u64 = 1032;

fn rd16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn rd32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn rd64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// One entry of the central directory.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub name: String,
    method: u16,
    flags: u16,
    crc: u32,
    compressed_size: u64,
    pub size: u64,
    header_offset: u64,
}

/// A parsed archive borrowing the file's bytes.
pub(crate) struct Archive<'a> {
    data: &'a [u8],
    entries: Vec<Entry>,
    by_name: HashMap<String, usize>,
}

impl<'a> Archive<'a> {
    pub(crate) fn parse(data: &'a [u8]) -> Result<Self, Fault> {
        let eocd = find_eocd(data)
            .ok_or_else(|| truncated("no zip end-of-central-directory record (the archive is cut short or damaged)"))?;
        let bad = || malformed("zip end-of-central-directory record is damaged");
        let mut count = rd16(data, eocd + 10).ok_or_else(bad)? as u64;
        let mut cd_size = rd32(data, eocd + 12).ok_or_else(bad)? as u64;
        let mut cd_offset = rd32(data, eocd + 16).ok_or_else(bad)? as u64;
        if count == 0xffff || cd_size == 0xffff_ffff || cd_offset == 0xffff_ffff {
            (count, cd_size, cd_offset) = read_zip64_eocd(data, eocd)?;
        }
        let cd_end = cd_offset.checked_add(cd_size).filter(|&e| e <= data.len() as u64).ok_or_else(|| {
            truncated(format!(
                "zip central directory at {cd_offset} (+{cd_size} bytes) lies beyond the end of the file ({} bytes)",
                data.len()
            ))
        })?;
        if count > cd_size / CENTRAL_HEADER_LEN as u64 {
            return Err(malformed(format!("zip directory claims {count} entries in {cd_size} bytes")));
        }
        let cd = &data[cd_offset as usize..cd_end as usize];
        let mut entries = Vec::with_capacity(count as usize);
        let mut by_name = HashMap::with_capacity(count as usize);
        let mut at = 0usize;
        for i in 0..count {
            let (entry, len) = parse_central_entry(cd, at)
                .ok_or_else(|| malformed(format!("zip central directory entry {i} is damaged")))?;
            at += len;
            if by_name.insert(entry.name.clone(), entries.len()).is_some() {
                return Err(malformed(format!("zip archive contains `{}` twice (ambiguous content)", entry.name)));
            }
            entries.push(entry);
        }
        Ok(Archive { data, entries, by_name })
    }

    pub(crate) fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub(crate) fn find(&self, name: &str) -> Option<&Entry> {
        self.by_name.get(name).and_then(|&i| self.entries.get(i))
    }

    /// The entry's uncompressed bytes, checksum verified. Stored entries are borrowed.
    pub(crate) fn read(&self, e: &Entry) -> Result<Cow<'a, [u8]>, Fault> {
        let data: &'a [u8] = self.data;
        let name = &e.name;
        let off = usize::try_from(e.header_offset)
            .ok()
            .filter(|&o| o.checked_add(LOCAL_HEADER_LEN).is_some_and(|end| end <= data.len()))
            .ok_or_else(|| truncated(format!("zip entry `{name}` starts beyond the end of the file")))?;
        if rd32(data, off) != Some(LOCAL_SIG) {
            return Err(malformed(format!("zip entry `{name}` has no local header")));
        }
        if e.flags & 1 != 0 {
            return Err(unsupported(format!("zip entry `{name}` is encrypted")));
        }
        let name_len = rd16(data, off + 26).unwrap_or(0) as u64;
        let extra_len = rd16(data, off + 28).unwrap_or(0) as u64;
        let start = off as u64 + LOCAL_HEADER_LEN as u64 + name_len + extra_len;
        let end = start + e.compressed_size; // no overflow: all terms < 2^64 / 4
        if end > data.len() as u64 {
            return Err(truncated(format!(
                "zip entry `{name}` needs {} bytes at offset {start}, the file has only {} bytes",
                e.compressed_size,
                data.len()
            )));
        }
        let raw = &data[start as usize..end as usize];
        let bytes: Cow<'a, [u8]> = match e.method {
            0 => {
                if e.compressed_size != e.size {
                    return Err(malformed(format!("stored zip entry `{name}` has two different sizes")));
                }
                Cow::Borrowed(raw)
            }
            8 => {
                if e.size > e.compressed_size.saturating_mul(MAX_DEFLATE_RATIO).saturating_add(1024) {
                    return Err(limit(format!(
                        "zip entry `{name}` claims to inflate {} bytes to {}, more than deflate can",
                        e.compressed_size, e.size
                    )));
                }
                let size = usize::try_from(e.size).map_err(|_| limit(format!("zip entry `{name}` is too large")))?;
                let out = miniz_oxide::inflate::decompress_to_vec_with_limit(raw, size)
                    .map_err(|_| malformed(format!("zip entry `{name}` does not inflate to its declared size")))?;
                if out.len() != size {
                    return Err(malformed(format!("zip entry `{name}` inflates to {} bytes, not {size}", out.len())));
                }
                Cow::Owned(out)
            }
            m => return Err(unsupported(format!("zip entry `{name}` uses compression method {m}"))),
        };
        if crc32fast::hash(&bytes) != e.crc {
            return Err(malformed(format!("checksum mismatch in zip entry `{name}` (the file is corrupt)")));
        }
        Ok(bytes)
    }
}

/// Finds the end-of-central-directory record, searching back over a possible comment.
fn find_eocd(data: &[u8]) -> Option<usize> {
    let last = data.len().checked_sub(EOCD_LEN)?;
    let first = last.saturating_sub(0xffff);
    (first..=last).rev().find(|&i| {
        rd32(data, i) == Some(EOCD_SIG) && rd16(data, i + 20).is_some_and(|c| i + EOCD_LEN + c as usize == data.len())
    })
}

fn read_zip64_eocd(data: &[u8], eocd: usize) -> Result<(u64, u64, u64), Fault> {
    let bad = || malformed("zip64 end-of-central-directory record is missing or damaged");
    let loc = eocd.checked_sub(20).ok_or_else(bad)?;
    if rd32(data, loc) != Some(ZIP64_LOCATOR_SIG) {
        return Err(bad());
    }
    let rec = usize::try_from(rd64(data, loc + 8).ok_or_else(bad)?).map_err(|_| bad())?;
    if rd32(data, rec) != Some(ZIP64_EOCD_SIG) {
        return Err(bad());
    }
    let count = rd64(data, rec + 32).ok_or_else(bad)?;
    let size = rd64(data, rec + 40).ok_or_else(bad)?;
    let offset = rd64(data, rec + 48).ok_or_else(bad)?;
    Ok((count, size, offset))
}

/// Parses the central directory entry at `cd[at..]`; returns it and its length.
fn parse_central_entry(cd: &[u8], at: usize) -> Option<(Entry, usize)> {
    if rd32(cd, at)? != CENTRAL_SIG {
        return None;
    }
    let flags = rd16(cd, at + 8)?;
    let method = rd16(cd, at + 10)?;
    let crc = rd32(cd, at + 16)?;
    let mut compressed_size = rd32(cd, at + 20)? as u64;
    let mut size = rd32(cd, at + 24)? as u64;
    let name_len = rd16(cd, at + 28)? as usize;
    let extra_len = rd16(cd, at + 30)? as usize;
    let comment_len = rd16(cd, at + 32)? as usize;
    let mut header_offset = rd32(cd, at + 42)? as u64;
    let name_at = at + CENTRAL_HEADER_LEN;
    let name = String::from_utf8_lossy(cd.get(name_at..name_at + name_len)?).into_owned();
    let extra = cd.get(name_at + name_len..name_at + name_len + extra_len)?;

    // The zip64 extra field holds, in order, the fields whose 32-bit value is saturated.
    let mut i = 0;
    while i + 4 <= extra.len() {
        let id = rd16(extra, i)?;
        let len = rd16(extra, i + 2)? as usize;
        let body = extra.get(i + 4..i + 4 + len)?;
        if id == ZIP64_EXTRA_ID {
            let mut p = 0;
            for field in [&mut size, &mut compressed_size, &mut header_offset] {
                if *field == 0xffff_ffff {
                    *field = rd64(body, p)?;
                    p += 8;
                }
            }
        }
        i += 4 + len;
    }
    // Keep all three below 2^62 so later additions cannot overflow.
    if [size, compressed_size, header_offset].iter().any(|&v| v >= 1 << 62) {
        return None;
    }
    let len = CENTRAL_HEADER_LEN + name_len + extra_len + comment_len;
    Some((Entry { name, method, flags, crc, compressed_size, size, header_offset }, len))
}

/// Writes a zip archive of stored (uncompressed) entries.
pub(crate) struct ZipWriter<W: Write> {
    out: W,
    pos: u64,
    central: Vec<u8>,
    count: u64,
    /// Entries/offsets at or above this use zip64 records (lowered in tests).
    zip64_threshold: u64,
}

impl<W: Write> ZipWriter<W> {
    pub(crate) fn new(out: W) -> Self {
        ZipWriter { out, pos: 0, central: Vec::new(), count: 0, zip64_threshold: 0xffff_ffff }
    }

    #[cfg(test)]
    pub(crate) fn with_zip64_threshold(mut self, t: u64) -> Self {
        self.zip64_threshold = t;
        self
    }

    fn emit(&mut self, b: &[u8]) -> io::Result<()> {
        self.out.write_all(b)?;
        self.pos += b.len() as u64;
        Ok(())
    }

    /// Adds a stored entry whose data starts at a multiple of `align` bytes.
    pub(crate) fn add(&mut self, name: &str, data: &[u8], align: u64) -> io::Result<()> {
        let crc = crc32fast::hash(data);
        let size = data.len() as u64;
        let offset = self.pos;
        let big_size = size >= self.zip64_threshold;
        let big_any = big_size || offset >= self.zip64_threshold;

        // Local header extra: zip64 sizes if needed, then alignment padding.
        let mut extra = Vec::new();
        if big_size {
            extra.extend_from_slice(&ZIP64_EXTRA_ID.to_le_bytes());
            extra.extend_from_slice(&16u16.to_le_bytes());
            extra.extend_from_slice(&size.to_le_bytes());
            extra.extend_from_slice(&size.to_le_bytes());
        }
        let unpadded = offset + (LOCAL_HEADER_LEN + name.len() + extra.len() + 4) as u64;
        let pad = (align.max(1) - unpadded % align.max(1)) % align.max(1);
        extra.extend_from_slice(&PADDING_EXTRA_ID.to_le_bytes());
        extra.extend_from_slice(&(pad as u16).to_le_bytes());
        extra.extend(std::iter::repeat(b'Z').take(pad as usize));

        let size32 = if big_size { 0xffff_ffff } else { size as u32 };
        let version: u16 = if big_any { 45 } else { 20 };
        let mut h = Vec::with_capacity(LOCAL_HEADER_LEN + name.len() + extra.len());
        h.extend_from_slice(&LOCAL_SIG.to_le_bytes());
        h.extend_from_slice(&version.to_le_bytes());
        h.extend_from_slice(&0x0800u16.to_le_bytes()); // flags: UTF-8 names
        h.extend_from_slice(&0u16.to_le_bytes()); // method: stored
        h.extend_from_slice(&0u16.to_le_bytes()); // time
        h.extend_from_slice(&0x21u16.to_le_bytes()); // date: 1980-01-01
        h.extend_from_slice(&crc.to_le_bytes());
        h.extend_from_slice(&size32.to_le_bytes());
        h.extend_from_slice(&size32.to_le_bytes());
        h.extend_from_slice(&(name.len() as u16).to_le_bytes());
        h.extend_from_slice(&(extra.len() as u16).to_le_bytes());
        h.extend_from_slice(name.as_bytes());
        h.extend_from_slice(&extra);
        self.emit(&h)?;
        self.emit(data)?;

        // Central directory record: zip64 entries carry all three 64-bit fields.
        let mut cextra = Vec::new();
        if big_any {
            cextra.extend_from_slice(&ZIP64_EXTRA_ID.to_le_bytes());
            cextra.extend_from_slice(&24u16.to_le_bytes());
            cextra.extend_from_slice(&size.to_le_bytes());
            cextra.extend_from_slice(&size.to_le_bytes());
            cextra.extend_from_slice(&offset.to_le_bytes());
        }
        let (csize, coffset) = if big_any { (0xffff_ffff, 0xffff_ffff) } else { (size as u32, offset as u32) };
        let c = &mut self.central;
        c.extend_from_slice(&CENTRAL_SIG.to_le_bytes());
        c.extend_from_slice(&version.to_le_bytes()); // made by
        c.extend_from_slice(&version.to_le_bytes()); // needed
        c.extend_from_slice(&0x0800u16.to_le_bytes());
        c.extend_from_slice(&0u16.to_le_bytes());
        c.extend_from_slice(&0u16.to_le_bytes());
        c.extend_from_slice(&0x21u16.to_le_bytes());
        c.extend_from_slice(&crc.to_le_bytes());
        c.extend_from_slice(&csize.to_le_bytes());
        c.extend_from_slice(&csize.to_le_bytes());
        c.extend_from_slice(&(name.len() as u16).to_le_bytes());
        c.extend_from_slice(&(cextra.len() as u16).to_le_bytes());
        c.extend_from_slice(&0u16.to_le_bytes()); // comment
        c.extend_from_slice(&0u16.to_le_bytes()); // disk
        c.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
        c.extend_from_slice(&0u32.to_le_bytes()); // external attributes
        c.extend_from_slice(&coffset.to_le_bytes());
        c.extend_from_slice(name.as_bytes());
        c.extend_from_slice(&cextra);
        self.count += 1;
        Ok(())
    }

    /// Writes the central directory and end records; returns the underlying writer.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        let cd_offset = self.pos;
        let cd_size = self.central.len() as u64;
        let central = std::mem::take(&mut self.central);
        self.emit(&central)?;
        let zip64 = self.count >= 0xffff || cd_offset >= self.zip64_threshold || cd_size >= self.zip64_threshold;
        if zip64 {
            let rec_offset = self.pos;
            let mut r = Vec::with_capacity(76);
            r.extend_from_slice(&ZIP64_EOCD_SIG.to_le_bytes());
            r.extend_from_slice(&44u64.to_le_bytes()); // size of the rest of this record
            r.extend_from_slice(&45u16.to_le_bytes());
            r.extend_from_slice(&45u16.to_le_bytes());
            r.extend_from_slice(&0u32.to_le_bytes());
            r.extend_from_slice(&0u32.to_le_bytes());
            r.extend_from_slice(&self.count.to_le_bytes());
            r.extend_from_slice(&self.count.to_le_bytes());
            r.extend_from_slice(&cd_size.to_le_bytes());
            r.extend_from_slice(&cd_offset.to_le_bytes());
            r.extend_from_slice(&ZIP64_LOCATOR_SIG.to_le_bytes());
            r.extend_from_slice(&0u32.to_le_bytes());
            r.extend_from_slice(&rec_offset.to_le_bytes());
            r.extend_from_slice(&1u32.to_le_bytes());
            self.emit(&r)?;
        }
        let (count16, size32, offset32) = if zip64 {
            (0xffffu16, 0xffff_ffffu32, 0xffff_ffffu32)
        } else {
            (self.count as u16, cd_size as u32, cd_offset as u32)
        };
        let mut e = Vec::with_capacity(EOCD_LEN);
        e.extend_from_slice(&EOCD_SIG.to_le_bytes());
        e.extend_from_slice(&0u16.to_le_bytes());
        e.extend_from_slice(&0u16.to_le_bytes());
        e.extend_from_slice(&count16.to_le_bytes());
        e.extend_from_slice(&count16.to_le_bytes());
        e.extend_from_slice(&size32.to_le_bytes());
        e.extend_from_slice(&offset32.to_le_bytes());
        e.extend_from_slice(&0u16.to_le_bytes());
        self.emit(&e)?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(threshold: u64) -> Vec<u8> {
        let mut z = ZipWriter::new(Vec::new()).with_zip64_threshold(threshold);
        z.add("a/data.pkl", b"hello", 64).unwrap();
        z.add("a/data/0", &[7u8; 100], 64).unwrap();
        z.add("a/empty", b"", 64).unwrap();
        z.finish().unwrap()
    }

    fn check(bytes: &[u8]) {
        let ar = Archive::parse(bytes).unwrap();
        assert_eq!(ar.entries().len(), 3);
        assert_eq!(&*ar.read(ar.find("a/data.pkl").unwrap()).unwrap(), b"hello");
        let d = ar.read(ar.find("a/data/0").unwrap()).unwrap();
        assert_eq!(&*d, &[7u8; 100][..]);
        // Data is 64-byte aligned.
        let off = d.as_ptr() as usize - bytes.as_ptr() as usize;
        assert_eq!(off % 64, 0);
        assert!(ar.read(ar.find("a/empty").unwrap()).unwrap().is_empty());
    }

    #[test]
    fn round_trip_plain_and_zip64() {
        check(&build(0xffff_ffff));
        check(&build(1)); // every entry, offset and the directory in zip64 form
    }

    #[test]
    fn truncation_and_corruption_are_errors() {
        let z = build(0xffff_ffff);
        for cut in [0, 10, z.len() / 2, z.len() - 1] {
            assert!(Archive::parse(&z[..cut]).is_err(), "cut at {cut}");
        }
        // Flip one data byte: checksum mismatch.
        let mut bad = z.clone();
        let ar = Archive::parse(&z).unwrap();
        let d = ar.read(ar.find("a/data/0").unwrap()).unwrap();
        let off = d.as_ptr() as usize - z.as_ptr() as usize;
        bad[off] ^= 1;
        let ar = Archive::parse(&bad).unwrap();
        let e = ar.read(ar.find("a/data/0").unwrap()).unwrap_err();
        assert!(matches!(&e, Fault::Malformed(m) if m.contains("checksum")), "{e:?}");
    }

    #[test]
    fn deflated_entries_are_read() {
        let payload: Vec<u8> = (0..5000u32).map(|i| (i % 7) as u8).collect();
        let deflated = miniz_oxide::deflate::compress_to_vec(&payload, 6);
        let mut z = ZipWriter::new(Vec::new());
        z.add("x", &deflated, 1).unwrap();
        let mut bytes = z.finish().unwrap();
        // Patch method to 8 and sizes/crc in the central directory.
        let c = (0..bytes.len()).rev().find(|&i| rd32(&bytes, i) == Some(CENTRAL_SIG)).unwrap();
        bytes[c + 10..c + 12].copy_from_slice(&8u16.to_le_bytes());
        bytes[c + 16..c + 20].copy_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        bytes[c + 24..c + 28].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        let ar = Archive::parse(&bytes).unwrap();
        assert_eq!(&*ar.read(ar.find("x").unwrap()).unwrap(), &payload[..]);
        // A claimed size far beyond deflate's ratio is refused before inflating.
        bytes[c + 24..c + 28].copy_from_slice(&u32::MAX.to_le_bytes());
        let ar = Archive::parse(&bytes).unwrap();
        assert!(matches!(ar.read(ar.find("x").unwrap()), Err(Fault::Limit(_))));
    }

    #[test]
    fn duplicate_names_are_refused() {
        let mut z = ZipWriter::new(Vec::new());
        z.add("x", b"1", 1).unwrap();
        z.add("x", b"2", 1).unwrap();
        let bytes = z.finish().unwrap();
        assert!(matches!(Archive::parse(&bytes), Err(Fault::Malformed(_))));
    }
}
