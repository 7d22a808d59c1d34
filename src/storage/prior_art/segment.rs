//! "KBAK" segments ([layout](super)): [`decode`] verifies one (magic, version, compression, CRC-32
//! footer, record count and offsets) and transcodes its records into this operator's in-memory
//! [`Segment`], so the restore engine reads them as it reads its own; [`inspect`] is the
//! validation's check of a segment against its manifest entry.

use std::borrow::Cow;

use bytes::Bytes;

use crate::{
    kafka::headers,
    storage::backup::segment::{
        HeaderRef, Segment, SegmentBuilder, SegmentError, SegmentHeader, TimestampType,
    },
};

use super::SegmentMeta;

/// First 4 bytes of a segment.
pub const MAGIC: &[u8; 4] = b"KBAK";
/// Last 4 bytes of a segment.
pub const END_MAGIC: &[u8; 4] = b"BKAE";
/// The segment version read.
pub const VERSION: u8 = 1;
/// Size of the header.
pub const HEADER_LEN: usize = 32;
/// Size of the footer (CRC-32 and end magic).
pub const FOOTER_LEN: usize = 8;

/// The CRC-32 of the footer: IEEE (ISO-HDLC), as zlib and crc32fast compute it (16 bytes at a
/// time).
const CRC32: crc::Crc<u32, crc::Table<16>> = crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISO_HDLC);

/// The header of a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Compression (0 none, 1 zstd, 2 lz4).
    pub compression: u8,
    /// Records.
    pub record_count: u64,
    /// First offset.
    pub start_offset: i64,
    /// Last offset (inclusive).
    pub end_offset: i64,
}

fn i64_at(b: &[u8], at: usize) -> Option<i64> {
    Some(i64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// Checks the frame of a segment (size, magic, version, compression, footer, CRC-32) and returns
/// its header and stored body.
pub fn frame(bytes: &[u8]) -> Result<(Header, &[u8]), SegmentError> {
    if bytes.len() < HEADER_LEN + FOOTER_LEN {
        return Err(SegmentError::Truncated(format!(
            "{} bytes, header and footer alone have {}",
            bytes.len(),
            HEADER_LEN + FOOTER_LEN
        )));
    }
    if &bytes[0..4] != MAGIC {
        return Err(SegmentError::Format(format!(
            "magic {:?}, a kafka-backup 0.x segment starts with {:?}",
            String::from_utf8_lossy(&bytes[0..4]),
            String::from_utf8_lossy(MAGIC)
        )));
    }
    if bytes[4] != VERSION {
        return Err(SegmentError::Format(format!(
            "segment version {}, this build reads version {VERSION}",
            bytes[4]
        )));
    }
    let compression = bytes[5];
    if compression > 2 {
        return Err(SegmentError::Format(format!(
            "compression byte {compression} (0 none, 1 zstd, 2 lz4)"
        )));
    }
    let end = bytes.len() - FOOTER_LEN;
    if &bytes[end + 4..] != END_MAGIC {
        return Err(SegmentError::Truncated(format!(
            "{} bytes that do not end with the footer magic {:?}: the object is cut off or was changed",
            bytes.len(),
            String::from_utf8_lossy(END_MAGIC)
        )));
    }
    let stored = u32_at(bytes, end).unwrap_or_default();
    let computed = CRC32.checksum(&bytes[..end]);
    if stored != computed {
        return Err(SegmentError::Checksum(format!(
            "CRC-32 of header and body {computed:#010x}, footer says {stored:#010x}"
        )));
    }
    let header = Header {
        compression,
        record_count: u64::try_from(i64_at(bytes, 8).unwrap_or_default()).unwrap_or(u64::MAX),
        start_offset: i64_at(bytes, 16).unwrap_or_default(),
        end_offset: i64_at(bytes, 24).unwrap_or_default(),
    };
    Ok((header, &bytes[HEADER_LEN..end]))
}

/// The uncompressed body (the stored one itself when it is not compressed); `size_hint` is the
/// length the manifest lists (zstd's output buffer).
pub fn decompress<'a>(
    header: &Header,
    stored: &'a [u8],
    size_hint: u64,
) -> Result<Cow<'a, [u8]>, SegmentError> {
    match header.compression {
        0 => Ok(Cow::Borrowed(stored)),
        1 => {
            let mut out = Vec::with_capacity(usize::try_from(size_hint).unwrap_or(0).min(1 << 30));
            zstd::stream::copy_decode(stored, &mut out)
                .map_err(|e| SegmentError::Body(format!("zstd: {e}")))?;
            Ok(Cow::Owned(out))
        }
        _ => lz4_flex::block::decompress_size_prepended(stored)
            .map(Cow::Owned)
            .map_err(|e| SegmentError::Body(format!("lz4: {e}"))),
    }
}

/// A record of a segment body, borrowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// Timestamp (epoch ms).
    pub timestamp: i64,
    /// Source offset.
    pub offset: i64,
    /// Key (`None` = null).
    pub key: Option<&'a [u8]>,
    /// Value (`None` = null).
    pub value: Option<&'a [u8]>,
    /// Headers, in stored order (the tracking headers the backup added included).
    pub headers: Vec<HeaderRef<'a>>,
}

fn bytes_at(rec: &[u8], at: usize) -> Option<(Option<&[u8]>, usize)> {
    let len = u32_at(rec, at)? as i32;
    if len == -1 {
        return Some((None, at + 4));
    }
    let len = usize::try_from(len).ok()?;
    Some((Some(rec.get(at + 4..at + 4 + len)?), at + 4 + len))
}

fn parse_record(b: &[u8]) -> Result<(Record<'_>, usize), SegmentError> {
    let bad = |what: String| SegmentError::Body(format!("record {what}"));
    let len = u32_at(b, 0).ok_or_else(|| bad("length cut off".into()))? as usize;
    let rec = b
        .get(4..4 + len)
        .ok_or_else(|| bad(format!("of {len} bytes is longer than the rest of the body")))?;
    let timestamp = i64_at(rec, 0).ok_or_else(|| bad("too short".into()))?;
    let offset = i64_at(rec, 8).ok_or_else(|| bad("too short".into()))?;
    let at = |what: &str| SegmentError::Body(format!("record at offset {offset}: {what}"));
    let (key, next) = bytes_at(rec, 16).ok_or_else(|| at("key out of bounds"))?;
    let (value, next) = bytes_at(rec, next).ok_or_else(|| at("value out of bounds"))?;
    let count = u16_at(rec, next).ok_or_else(|| at("header count cut off"))?;
    let mut pos = next + 2;
    let mut headers = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let name_len = usize::from(u16_at(rec, pos).ok_or_else(|| at("header cut off"))?);
        let name = rec
            .get(pos + 2..pos + 2 + name_len)
            .ok_or_else(|| at("header name out of bounds"))?;
        let name = std::str::from_utf8(name).map_err(|_| at("header name is not UTF-8"))?;
        let (value, after) =
            bytes_at(rec, pos + 2 + name_len).ok_or_else(|| at("header value out of bounds"))?;
        headers.push((name, value));
        pos = after;
    }
    if pos != rec.len() {
        return Err(at("trailing bytes after the headers"));
    }
    Ok((
        Record {
            timestamp,
            offset,
            key,
            value,
            headers,
        },
        4 + len,
    ))
}

/// The records of an uncompressed body, in stored order.
pub fn records(body: &[u8]) -> impl Iterator<Item = Result<Record<'_>, SegmentError>> {
    let mut rest = body;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        match parse_record(rest) {
            Ok((record, used)) => {
                rest = &rest[used..];
                Some(Ok(record))
            }
            Err(e) => {
                rest = &[];
                Some(Err(e))
            }
        }
    })
}

/// How many of a record's last headers are the tracking headers the backup appended:
/// `x-original-offset` and `x-original-timestamp` holding the record's own offset and timestamp
/// (8-byte little-endian or a decimal string), optionally followed by `x-source-cluster`.
/// Headers of those names that do not hold the record's own values are its own (a topic that was
/// itself restored carries the offsets of its origin). Pure.
pub fn tracking_headers(record: &Record<'_>) -> usize {
    let h = &record.headers;
    let holds = |i: usize, name: &str, want: i64| {
        h[i].0 == name && h[i].1.and_then(headers::decode_i64) == Some(want)
    };
    for count in [3, 2] {
        if h.len() < count {
            continue;
        }
        let base = h.len() - count;
        if holds(base, headers::ORIGINAL_OFFSET, record.offset)
            && holds(base + 1, headers::ORIGINAL_TIMESTAMP, record.timestamp)
            && (count == 2 || h[base + 2].0 == headers::SOURCE_CLUSTER)
        {
            return count;
        }
    }
    0
}

/// The source cluster a record's tracking headers name, if any.
pub fn tracked_source_cluster(record: &Record<'_>) -> Option<String> {
    match tracking_headers(record) {
        3 => record
            .headers
            .last()
            .and_then(|(_, v)| *v)
            .map(|v| String::from_utf8_lossy(v).into_owned()),
        _ => None,
    }
}

/// Walks the records of a body once, checking them against the header (increasing offsets, then
/// count, first and last offset) and handing each to `each`.
fn walk<'a>(header: &Header, body: &'a [u8], mut each: impl FnMut(&Record<'a>)) -> Result<(), SegmentError> {
    let (mut count, mut first, mut last) = (0u64, None, None::<i64>);
    for record in records(body) {
        let record = record?;
        if last.is_some_and(|l| record.offset <= l) {
            return Err(SegmentError::Body(format!(
                "record offsets are not increasing: {} after {}",
                record.offset,
                last.unwrap_or_default()
            )));
        }
        first.get_or_insert(record.offset);
        last = Some(record.offset);
        count += 1;
        each(&record);
    }
    if count != header.record_count
        || first.is_some_and(|f| f != header.start_offset)
        || last.is_some_and(|l| l != header.end_offset)
    {
        return Err(SegmentError::Body(format!(
            "{count} records at offsets {first:?}..={last:?}, the header says {} at {}..={}",
            header.record_count, header.start_offset, header.end_offset
        )));
    }
    Ok(())
}

/// Verifies a stored segment of `partition` and transcodes it into a [`Segment`] of this
/// operator's layout (records as CreateTime, the tracking headers flagged), starting at
/// `position_start` and ending at `position_end` of the view ([`super::Manifest::view`]).
/// `spare` is used for the transcoded body; the buffer given back is the read one, emptied, for
/// the next read. CPU-bound.
pub fn decode(
    bytes: Bytes,
    spare: Vec<u8>,
    partition: i32,
    entry: &crate::storage::backup::SegmentEntry,
) -> Result<(Segment, Vec<u8>), SegmentError> {
    let (header, stored) = frame(&bytes)?;
    let body = decompress(&header, stored, entry.uncompressed_bytes)?;
    let mut builder = SegmentBuilder::new(partition, entry.position_start, spare);
    walk(&header, &body, |record| {
        let own = record.headers.len() - tracking_headers(record);
        builder.push(
            record.offset,
            record.timestamp,
            TimestampType::CreateTime,
            record.key,
            record.value,
            record.headers[..own].iter().copied(),
            &record.headers[own..],
        );
    })?;
    let segment = Segment {
        header: SegmentHeader {
            codec: header.compression,
            partition,
            records: builder.records,
            first_offset: header.start_offset,
            last_offset: header.end_offset,
            position_start: entry.position_start,
            position_end: entry.position_end.max(header.end_offset.saturating_add(1)),
            min_timestamp: builder.min_timestamp,
            max_timestamp: builder.max_timestamp,
            uncompressed_len: builder.body.len() as u64,
            stored_len: stored.len() as u64,
            body_crc: 0,
        },
        body: Bytes::from(builder.body),
    };
    drop(body);
    let mut read = bytes.try_into_mut().map(Vec::from).unwrap_or_default();
    read.clear();
    Ok((segment, read))
}

/// What a segment that checked out holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Inspected {
    /// Records.
    pub records: u64,
    /// Bytes of the uncompressed body.
    pub uncompressed_bytes: u64,
    /// Bytes stored.
    pub stored_bytes: u64,
    /// Records with a header whose value is empty (before 0.18 also every null value).
    pub empty_header_values: u64,
}

/// Checks a stored segment against its manifest entry: object size, frame (magic, version,
/// compression, CRC-32 footer), each header field against the manifest (record count, start and
/// end offset, compression against the file name), the body's size, and the records (count,
/// offsets inside the header's, increasing, first and last timestamp as listed). The error names
/// what differs. Pure (CPU-bound).
pub fn inspect(meta: &SegmentMeta, bytes: &[u8]) -> Result<Inspected, String> {
    let size = bytes.len() as u64;
    if size != meta.compressed_size {
        return Err(format!(
            "the object is {size} bytes, the manifest lists {} (compressed_size)",
            meta.compressed_size
        ));
    }
    let (header, stored) = frame(bytes).map_err(|e| e.to_string())?;
    let mut differences = Vec::new();
    let mut differ = |what: &str, stored: String, listed: String| {
        if stored != listed {
            differences.push(format!(
                "{what} {stored} in the segment header, {listed} in the manifest"
            ));
        }
    };
    differ(
        "record count",
        header.record_count.to_string(),
        meta.record_count.to_string(),
    );
    differ(
        "start offset",
        header.start_offset.to_string(),
        meta.start_offset.to_string(),
    );
    differ(
        "end offset",
        header.end_offset.to_string(),
        meta.end_offset.to_string(),
    );
    let named = if meta.key.ends_with(".zst") {
        1
    } else if meta.key.ends_with(".lz4") {
        2
    } else {
        0
    };
    if header.compression != named {
        differences.push(format!(
            "compression {} in the segment header, {named} by the file name's extension",
            header.compression
        ));
    }
    if !differences.is_empty() {
        return Err(differences.join("; "));
    }
    let body = decompress(&header, stored, meta.uncompressed_size).map_err(|e| e.to_string())?;
    if body.len() as u64 != meta.uncompressed_size {
        return Err(format!(
            "the body is {} bytes uncompressed, the manifest lists {} (uncompressed_size)",
            body.len(),
            meta.uncompressed_size
        ));
    }
    let (mut first_ts, mut last_ts, mut empty) = (None, None, 0u64);
    walk(&header, &body, |record| {
        first_ts.get_or_insert(record.timestamp);
        last_ts = Some(record.timestamp);
        if record
            .headers
            .iter()
            .any(|(_, v)| v.is_some_and(<[u8]>::is_empty))
        {
            empty += 1;
        }
    })
    .map_err(|e| e.to_string())?;
    if first_ts.is_some_and(|t| t != meta.start_timestamp) || last_ts.is_some_and(|t| t != meta.end_timestamp)
    {
        return Err(format!(
            "first and last record timestamps {first_ts:?} and {last_ts:?}, the manifest lists {} and {}",
            meta.start_timestamp, meta.end_timestamp
        ));
    }
    Ok(Inspected {
        records: header.record_count,
        uncompressed_bytes: body.len() as u64,
        stored_bytes: size,
        empty_header_values: empty,
    })
}
