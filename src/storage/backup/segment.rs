//! Segment files: the records of one partition over a run of offsets, in the binary layout the
//! [module docs](super) define. [`SegmentBuilder`] appends records as they are fetched,
//! [`seal`] compresses and frames them, [`Segment::decode`] verifies a stored segment and
//! [`Records`] walks its records without copying them.

use bytes::Bytes;

/// First 8 bytes of every segment.
pub const MAGIC: &[u8; 8] = b"KBOSEG01";
/// Version of the segment layout.
pub const VERSION: u16 = 1;
/// Size of the fixed segment header.
pub const HEADER_LEN: usize = 96;

/// Compression of a segment body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    /// Stored as is.
    None,
    /// Zstandard at this level.
    Zstd(i32),
    /// LZ4 block format.
    Lz4,
}

impl Codec {
    /// The codec byte in the header (0 none, 1 zstd, 2 lz4).
    pub fn id(self) -> u8 {
        match self {
            Codec::None => 0,
            Codec::Zstd(_) => 1,
            Codec::Lz4 => 2,
        }
    }

    /// The name written to the manifest.
    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Zstd(_) => "zstd",
            Codec::Lz4 => "lz4",
        }
    }
}

/// Kafka's timestamp type of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestampType {
    /// The record has no timestamp (pre-0.10 message format).
    NotAvailable,
    /// Set by the producer.
    CreateTime,
    /// Set by the broker when it appended the record.
    LogAppendTime,
}

impl TimestampType {
    fn bits(self) -> u8 {
        match self {
            TimestampType::NotAvailable => 0,
            TimestampType::CreateTime => 1,
            TimestampType::LogAppendTime => 2,
        }
    }

    fn from_bits(bits: u8) -> Option<Self> {
        match bits {
            0 => Some(TimestampType::NotAvailable),
            1 => Some(TimestampType::CreateTime),
            2 => Some(TimestampType::LogAppendTime),
            _ => None,
        }
    }
}

/// Why a segment cannot be read. The caller adds the segment's URI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SegmentError {
    /// Shorter than its header says.
    #[error("truncated: {0}")]
    Truncated(String),
    /// Not a segment or another version.
    #[error("not a segment of this format: {0}")]
    Format(String),
    /// A checksum does not match: the bytes were changed after they were written.
    #[error("checksum mismatch: {0}")]
    Checksum(String),
    /// The body does not decompress or its records do not add up.
    #[error("corrupt body: {0}")]
    Body(String),
}

/// The fixed header of a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Codec id (0 none, 1 zstd, 2 lz4).
    pub codec: u8,
    /// The partition.
    pub partition: i32,
    /// Records in the segment.
    pub records: u64,
    /// Offset of the first record.
    pub first_offset: i64,
    /// Offset of the last record.
    pub last_offset: i64,
    /// The partition position the segment starts at (the end position of the previous segment).
    pub position_start: i64,
    /// The partition position after the segment (last offset + 1, or beyond when the records
    /// were followed by offsets without records, such as transaction markers).
    pub position_end: i64,
    /// Smallest record timestamp.
    pub min_timestamp: i64,
    /// Largest record timestamp.
    pub max_timestamp: i64,
    /// Bytes of the uncompressed body.
    pub uncompressed_len: u64,
    /// Bytes of the stored body.
    pub stored_len: u64,
    /// CRC-32C of the stored body.
    pub body_crc: u32,
}

impl SegmentHeader {
    /// The 96 header bytes, ending with their own CRC-32C.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..8].copy_from_slice(MAGIC);
        h[8..10].copy_from_slice(&VERSION.to_le_bytes());
        h[10] = self.codec;
        h[12..16].copy_from_slice(&self.partition.to_le_bytes());
        h[16..24].copy_from_slice(&self.records.to_le_bytes());
        h[24..32].copy_from_slice(&self.first_offset.to_le_bytes());
        h[32..40].copy_from_slice(&self.last_offset.to_le_bytes());
        h[40..48].copy_from_slice(&self.position_start.to_le_bytes());
        h[48..56].copy_from_slice(&self.position_end.to_le_bytes());
        h[56..64].copy_from_slice(&self.min_timestamp.to_le_bytes());
        h[64..72].copy_from_slice(&self.max_timestamp.to_le_bytes());
        h[72..80].copy_from_slice(&self.uncompressed_len.to_le_bytes());
        h[80..88].copy_from_slice(&self.stored_len.to_le_bytes());
        h[88..92].copy_from_slice(&self.body_crc.to_le_bytes());
        let crc = crc32c::crc32c(&h[0..92]);
        h[92..96].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// Parses and checks the header bytes (magic, version, header CRC).
    pub fn decode(bytes: &[u8]) -> Result<Self, SegmentError> {
        if bytes.len() < HEADER_LEN {
            return Err(SegmentError::Truncated(format!(
                "{} bytes, the header alone has {HEADER_LEN}",
                bytes.len()
            )));
        }
        if &bytes[0..8] != MAGIC {
            return Err(SegmentError::Format(format!(
                "magic {:?}, expected {:?}",
                String::from_utf8_lossy(&bytes[0..8]),
                String::from_utf8_lossy(MAGIC)
            )));
        }
        let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]);
        let u32_at = |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let u64_at = |i: usize| {
            let mut raw = [0u8; 8];
            raw.copy_from_slice(&bytes[i..i + 8]);
            u64::from_le_bytes(raw)
        };
        let version = u16_at(8);
        if version != VERSION {
            return Err(SegmentError::Format(format!(
                "version {version}, this build reads version {VERSION}"
            )));
        }
        let stored_crc = u32_at(92);
        let computed = crc32c::crc32c(&bytes[0..92]);
        if stored_crc != computed {
            return Err(SegmentError::Checksum(format!(
                "header CRC-32C {computed:#010x}, stored {stored_crc:#010x}"
            )));
        }
        let header = SegmentHeader {
            codec: bytes[10],
            partition: u32_at(12) as i32,
            records: u64_at(16),
            first_offset: u64_at(24) as i64,
            last_offset: u64_at(32) as i64,
            position_start: u64_at(40) as i64,
            position_end: u64_at(48) as i64,
            min_timestamp: u64_at(56) as i64,
            max_timestamp: u64_at(64) as i64,
            uncompressed_len: u64_at(72),
            stored_len: u64_at(80),
            body_crc: u32_at(88),
        };
        if header.codec > 2 {
            return Err(SegmentError::Format(format!("unknown codec {}", header.codec)));
        }
        Ok(header)
    }
}

/// One header of a record.
pub type HeaderRef<'a> = (&'a str, Option<&'a [u8]>);

/// The bytes of a record as backup and restore count them (`bytes` in their status): its key,
/// its value and its headers' names and values, the data a Kafka record carries; a null key,
/// value or header value counts 0. Framing (lengths, offsets, timestamps) is not counted, so the
/// figure is the same whether the records are read from Kafka, stored or written back.
pub fn record_bytes<'h>(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: impl Iterator<Item = HeaderRef<'h>>,
) -> u64 {
    let len = |b: Option<&[u8]>| b.map_or(0, <[u8]>::len) as u64;
    len(key)
        + len(value)
        + headers
            .map(|(name, value)| name.len() as u64 + len(value))
            .sum::<u64>()
}

/// Appends records of one partition to an uncompressed segment body.
#[derive(Debug)]
pub struct SegmentBuilder {
    /// The partition.
    pub partition: i32,
    /// Position the segment starts at.
    pub position_start: i64,
    /// The uncompressed body.
    pub body: Vec<u8>,
    /// Records appended.
    pub records: u64,
    /// First offset appended.
    pub first_offset: i64,
    /// Last offset appended.
    pub last_offset: i64,
    /// Smallest timestamp appended.
    pub min_timestamp: i64,
    /// Largest timestamp appended.
    pub max_timestamp: i64,
    /// When the first record was appended (for `segmentMaxIntervalMs`).
    pub opened: std::time::Instant,
}

impl SegmentBuilder {
    /// An empty segment starting at `position_start`, reusing `body`'s allocation.
    pub fn new(partition: i32, position_start: i64, mut body: Vec<u8>) -> Self {
        body.clear();
        SegmentBuilder {
            partition,
            position_start,
            body,
            records: 0,
            first_offset: -1,
            last_offset: -1,
            min_timestamp: i64::MAX,
            max_timestamp: i64::MIN,
            opened: std::time::Instant::now(),
        }
    }

    /// Appends one record. `tracking` headers are appended after `headers` and flagged, so a
    /// restore can tell them from the record's own headers.
    #[allow(clippy::too_many_arguments)]
    pub fn push<'h>(
        &mut self,
        offset: i64,
        timestamp: i64,
        timestamp_type: TimestampType,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: impl Iterator<Item = HeaderRef<'h>>,
        tracking: &[HeaderRef<'_>],
    ) {
        if self.records == 0 {
            self.first_offset = offset;
            self.opened = std::time::Instant::now();
        }
        self.records += 1;
        self.last_offset = offset;
        self.min_timestamp = self.min_timestamp.min(timestamp);
        self.max_timestamp = self.max_timestamp.max(timestamp);
        let body = &mut self.body;
        let start = body.len();
        body.reserve(40 + key.map_or(0, <[u8]>::len) + value.map_or(0, <[u8]>::len));
        // Length, patched below.
        body.extend_from_slice(&[0u8; 4]);
        body.extend_from_slice(&offset.to_le_bytes());
        body.extend_from_slice(&timestamp.to_le_bytes());
        body.push(timestamp_type.bits());
        body.push(tracking.len() as u8);
        put_bytes(body, key);
        put_bytes(body, value);
        let count_at = body.len();
        body.extend_from_slice(&[0u8; 4]);
        let mut count: u32 = 0;
        for (name, value) in headers {
            put_header(body, name, value);
            count += 1;
        }
        for (name, value) in tracking {
            put_header(body, name, *value);
            count += 1;
        }
        body[count_at..count_at + 4].copy_from_slice(&count.to_le_bytes());
        let len = (body.len() - start - 4) as u32;
        body[start..start + 4].copy_from_slice(&len.to_le_bytes());
    }

    /// Whether nothing was appended.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }
}

fn put_header(body: &mut Vec<u8>, name: &str, value: Option<&[u8]>) {
    body.extend_from_slice(&(name.len() as u32).to_le_bytes());
    body.extend_from_slice(name.as_bytes());
    put_bytes(body, value);
}

fn put_bytes(body: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => body.extend_from_slice(&(-1i32).to_le_bytes()),
        Some(b) => {
            body.extend_from_slice(&(b.len() as i32).to_le_bytes());
            body.extend_from_slice(b);
        }
    }
}

/// A sealed segment ready to store: header and stored body (separate, so the body of an
/// uncompressed segment is not copied).
#[derive(Debug)]
pub struct Sealed {
    /// The header.
    pub header: SegmentHeader,
    /// The encoded header bytes.
    pub header_bytes: Bytes,
    /// The stored body.
    pub body: Bytes,
}

/// Why sealing failed.
#[derive(Debug, thiserror::Error)]
#[error("compressing a segment of partition {partition} from offset {first_offset}: {message}")]
pub struct SealError {
    /// The partition.
    pub partition: i32,
    /// First offset of the segment.
    pub first_offset: i64,
    /// Why.
    pub message: String,
}

/// Compresses and frames a segment that ends at `position_end`. CPU-bound: run it on the
/// blocking pool.
pub fn seal(builder: SegmentBuilder, position_end: i64, codec: Codec) -> Result<Sealed, SealError> {
    seal_with(
        builder,
        position_end,
        codec,
        &mut Compressor::default(),
        &mut Vec::new(),
    )
    .map(|(sealed, _)| sealed)
}

/// A compression context kept between segments: creating a zstd context per segment costs an
/// allocation of its tables each time, which churns and fragments the heap.
#[derive(Default)]
pub struct Compressor {
    zstd: Option<(i32, zstd::bulk::Compressor<'static>)>,
}

impl Compressor {
    /// The zstd context for `level`, created on first use.
    fn zstd(&mut self, level: i32) -> std::io::Result<&mut zstd::bulk::Compressor<'static>> {
        if self.zstd.as_ref().is_none_or(|(l, _)| *l != level) {
            self.zstd = Some((level, zstd::bulk::Compressor::new(level)?));
        }
        match &mut self.zstd {
            Some((_, c)) => Ok(c),
            None => Err(std::io::Error::other("no zstd context")),
        }
    }
}

/// [`seal`] with a reused compression context. A segment waiting for its upload holds its
/// compressed size, not the worst-case bound: zstd writes into a buffer sized for the usual
/// ratio (then shrunk to its size), LZ4 into `out` (left for the caller to reuse), from which
/// the body is copied into an allocation of its exact size. Also hands back the builder's buffer when the body
/// was compressed (so the caller can reuse that allocation).
pub fn seal_with(
    builder: SegmentBuilder,
    position_end: i64,
    codec: Codec,
    compressor: &mut Compressor,
    out: &mut Vec<u8>,
) -> Result<(Sealed, Option<Vec<u8>>), SealError> {
    let fail = |message: String| SealError {
        partition: builder.partition,
        first_offset: builder.first_offset,
        message,
    };
    let uncompressed_len = builder.body.len() as u64;
    out.clear();
    let (body, spare): (Bytes, Option<Vec<u8>>) = match codec {
        Codec::None => (Bytes::from(builder.body), None),
        Codec::Zstd(level) => {
            let input = &builder.body;
            let zstd = compressor.zstd(level).map_err(|e| fail(e.to_string()))?;
            // Record data usually compresses well: an output of a third of the input is
            // enough, and only its written part becomes resident. Data that does not fit is
            // compressed again into a buffer of the worst-case bound.
            let mut body = Vec::with_capacity(input.len() / 3 + 4096);
            if zstd.compress_to_buffer(input, &mut body).is_err() {
                body = Vec::with_capacity(zstd::zstd_safe::compress_bound(input.len()));
                zstd.compress_to_buffer(input, &mut body)
                    .map_err(|e| fail(e.to_string()))?;
            }
            // Shrinking in place gives the unused tail back, so the body holds its size.
            body.shrink_to_fit();
            (Bytes::from(body), Some(builder.body))
        }
        Codec::Lz4 => {
            out.resize(lz4_flex::block::get_maximum_output_size(builder.body.len()), 0);
            let n = lz4_flex::block::compress_into(&builder.body, out).map_err(|e| fail(e.to_string()))?;
            (Bytes::copy_from_slice(&out[..n]), Some(builder.body))
        }
    };
    let header = SegmentHeader {
        codec: codec.id(),
        partition: builder.partition,
        records: builder.records,
        first_offset: builder.first_offset,
        last_offset: builder.last_offset,
        position_start: builder.position_start,
        position_end: position_end.max(builder.last_offset + 1),
        min_timestamp: builder.min_timestamp,
        max_timestamp: builder.max_timestamp,
        uncompressed_len,
        stored_len: body.len() as u64,
        body_crc: crc32c::crc32c(&body),
    };
    Ok((
        Sealed {
            header_bytes: Bytes::copy_from_slice(&header.encode()),
            header,
            body,
        },
        spare,
    ))
}

/// A verified, decompressed segment.
#[derive(Debug, Clone)]
pub struct Segment {
    /// Its header.
    pub header: SegmentHeader,
    /// The uncompressed body.
    pub body: Bytes,
}

impl Segment {
    /// Checks the header, the body CRC and length, decompresses, and checks that the records add
    /// up to the header's count and offsets. CPU-bound.
    pub fn decode(bytes: Bytes) -> Result<Segment, SegmentError> {
        Segment::decode_reusing(bytes, Vec::new()).map(|(segment, _)| segment)
    }

    /// [`Segment::decode`], decompressing into `spare` instead of a new allocation; also gives
    /// back the buffer the segment does not keep (`spare` when it is stored uncompressed, the
    /// read buffer otherwise), emptied, for the next read.
    pub fn decode_reusing(bytes: Bytes, spare: Vec<u8>) -> Result<(Segment, Vec<u8>), SegmentError> {
        let header = SegmentHeader::decode(&bytes)?;
        let expected = HEADER_LEN as u64 + header.stored_len;
        if (bytes.len() as u64) < expected {
            return Err(SegmentError::Truncated(format!(
                "{} bytes, the header announces {expected}",
                bytes.len()
            )));
        }
        if (bytes.len() as u64) > expected {
            return Err(SegmentError::Format(format!(
                "{} bytes, the header announces {expected}",
                bytes.len()
            )));
        }
        let stored = bytes.slice(HEADER_LEN..);
        let crc = crc32c::crc32c(&stored);
        if crc != header.body_crc {
            return Err(SegmentError::Checksum(format!(
                "body CRC-32C {crc:#010x}, header says {:#010x}",
                header.body_crc
            )));
        }
        let size = usize::try_from(header.uncompressed_len)
            .map_err(|_| SegmentError::Format(format!("uncompressed length {}", header.uncompressed_len)))?;
        let (body, mut out) = match header.codec {
            0 => (stored, spare),
            codec => {
                let mut out = spare;
                out.clear();
                if codec == 1 {
                    out.reserve(size);
                    zstd::bulk::Decompressor::new()
                        .and_then(|mut d| d.decompress_to_buffer(&stored, &mut out))
                        .map_err(|e| SegmentError::Body(format!("zstd: {e}")))?;
                } else {
                    out.resize(size, 0);
                    let n = lz4_flex::block::decompress_into(&stored, &mut out)
                        .map_err(|e| SegmentError::Body(format!("lz4: {e}")))?;
                    out.truncate(n);
                }
                drop(stored);
                let read = bytes.try_into_mut().map(Vec::from).unwrap_or_default();
                (Bytes::from(out), read)
            }
        };
        out.clear();
        if body.len() != size {
            return Err(SegmentError::Body(format!(
                "{} bytes after decompression, header says {size}",
                body.len()
            )));
        }
        let segment = Segment { header, body };
        let (mut count, mut first, mut last) = (0u64, None, None);
        for record in segment.records() {
            let record = record?;
            first.get_or_insert(record.offset);
            last = Some(record.offset);
            count += 1;
        }
        if count != header.records
            || first.unwrap_or(header.first_offset) != header.first_offset
            || last.unwrap_or(header.last_offset) != header.last_offset
        {
            return Err(SegmentError::Body(format!(
                "{count} records at offsets {first:?}..={last:?}, header says {} at {}..={}",
                header.records, header.first_offset, header.last_offset
            )));
        }
        Ok((segment, out))
    }

    /// The allocation behind the body, emptied, for the next read; `None` while it is shared.
    pub fn into_buffer(self) -> Option<Vec<u8>> {
        let mut body = self.body.try_into_mut().ok()?;
        body.clear();
        Some(body.into())
    }

    /// The records, in offset order.
    pub fn records(&self) -> Records<'_> {
        Records { rest: &self.body }
    }
}

/// A record in a segment body, borrowed.
#[derive(Clone, Copy, Debug)]
pub struct RecordRef<'a> {
    /// Source offset.
    pub offset: i64,
    /// Timestamp (epoch milliseconds).
    pub timestamp: i64,
    /// Its type.
    pub timestamp_type: TimestampType,
    /// The key (`None` = null).
    pub key: Option<&'a [u8]>,
    /// The value (`None` = null, a tombstone).
    pub value: Option<&'a [u8]>,
    header_count: u32,
    tracking: u8,
    headers: &'a [u8],
}

impl<'a> RecordRef<'a> {
    /// The record's own headers, in order, duplicates and null values included (without the
    /// tracking headers the backup may have added).
    pub fn headers(&self) -> impl Iterator<Item = HeaderRef<'a>> + Clone + use<'a> {
        let own = self.header_count.saturating_sub(u32::from(self.tracking)) as usize;
        HeaderIter {
            rest: self.headers,
            left: self.header_count,
        }
        .take(own)
    }

    /// Number of the record's own headers.
    pub fn header_count(&self) -> usize {
        self.header_count.saturating_sub(u32::from(self.tracking)) as usize
    }

    /// The record's [`record_bytes`]: tracking headers the backup added are not the record's and
    /// not counted.
    pub fn data_len(&self) -> u64 {
        if self.tracking == 0 {
            // Each header is stored as two 4-byte lengths plus its name and value.
            let headers = self.headers.len() - 8 * self.header_count as usize;
            (self.key.map_or(0, <[u8]>::len) + self.value.map_or(0, <[u8]>::len) + headers) as u64
        } else {
            record_bytes(self.key, self.value, self.headers())
        }
    }
}

#[derive(Clone)]
struct HeaderIter<'a> {
    rest: &'a [u8],
    left: u32,
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = HeaderRef<'a>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // Validated by `Records`: lengths are in range and names are UTF-8.
        let name_len = read_u32(self.rest, 0)? as usize;
        let name = std::str::from_utf8(self.rest.get(4..4 + name_len)?).ok()?;
        let (value, used) = read_bytes(self.rest, 4 + name_len)?;
        self.rest = &self.rest[used..];
        Some((name, value))
    }
}

fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    let raw = b.get(at..at + 4)?;
    Some(u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]))
}

fn read_i64(b: &[u8], at: usize) -> Option<i64> {
    let raw = b.get(at..at + 8)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(raw);
    Some(i64::from_le_bytes(a))
}

/// Reads an i32-length-prefixed byte string at `at`: the bytes (`None` for length -1) and the
/// position after them.
fn read_bytes(b: &[u8], at: usize) -> Option<(Option<&[u8]>, usize)> {
    let len = read_u32(b, at)? as i32;
    if len == -1 {
        return Some((None, at + 4));
    }
    let len = usize::try_from(len).ok()?;
    Some((Some(b.get(at + 4..at + 4 + len)?), at + 4 + len))
}

/// Iterator over the records of a segment body.
pub struct Records<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<RecordRef<'a>, SegmentError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let result = parse_record(self.rest);
        match result {
            Ok((record, used)) => {
                self.rest = &self.rest[used..];
                Some(Ok(record))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

fn parse_record(b: &[u8]) -> Result<(RecordRef<'_>, usize), SegmentError> {
    let bad = |what: &str| SegmentError::Body(format!("record {what}"));
    let len = read_u32(b, 0).ok_or_else(|| bad("length cut off"))? as usize;
    let rec = b.get(4..4 + len).ok_or_else(|| bad("longer than the body"))?;
    let offset = read_i64(rec, 0).ok_or_else(|| bad("too short"))?;
    let timestamp = read_i64(rec, 8).ok_or_else(|| bad("too short"))?;
    let flags = *rec.get(16).ok_or_else(|| bad("too short"))?;
    let timestamp_type = TimestampType::from_bits(flags & 0x3)
        .ok_or_else(|| bad(&format!("at offset {offset}: bad timestamp type")))?;
    let tracking = *rec.get(17).ok_or_else(|| bad("too short"))?;
    let at_offset = |what: &str| SegmentError::Body(format!("record at offset {offset}: {what}"));
    let (key, next) = read_bytes(rec, 18).ok_or_else(|| at_offset("key out of bounds"))?;
    let (value, next) = read_bytes(rec, next).ok_or_else(|| at_offset("value out of bounds"))?;
    let header_count = read_u32(rec, next).ok_or_else(|| at_offset("header count cut off"))?;
    let headers = &rec[next + 4..];
    // Validate the headers once, so iterating them later cannot fail.
    let mut at = 0;
    for _ in 0..header_count {
        let name_len = read_u32(headers, at).ok_or_else(|| at_offset("header cut off"))? as usize;
        let name = headers
            .get(at + 4..at + 4 + name_len)
            .ok_or_else(|| at_offset("header name out of bounds"))?;
        std::str::from_utf8(name).map_err(|_| at_offset("header name is not UTF-8"))?;
        let (_, after) =
            read_bytes(headers, at + 4 + name_len).ok_or_else(|| at_offset("header value out of bounds"))?;
        at = after;
    }
    if at != headers.len() {
        return Err(at_offset("trailing bytes after the headers"));
    }
    if u32::from(tracking) > header_count {
        return Err(at_offset("more tracking headers than headers"));
    }
    Ok((
        RecordRef {
            offset,
            timestamp,
            timestamp_type,
            key,
            value,
            header_count,
            tracking,
            headers,
        },
        4 + len,
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sample(codec: Codec) -> Bytes {
        let mut b = SegmentBuilder::new(3, 10, Vec::new());
        let h1: Vec<HeaderRef> = vec![("a", Some(b"1")), ("a", None), ("b", Some(b""))];
        b.push(
            10,
            1000,
            TimestampType::CreateTime,
            Some(b"k"),
            Some(b"v"),
            h1.into_iter(),
            &[],
        );
        b.push(
            12,
            999,
            TimestampType::LogAppendTime,
            None,
            None,
            std::iter::empty(),
            &[("x-original-offset", Some(&12i64.to_le_bytes()))],
        );
        let sealed = seal(b, 14, codec).unwrap();
        let mut all = sealed.header_bytes.to_vec();
        all.extend_from_slice(&sealed.body);
        Bytes::from(all)
    }

    #[test]
    fn records_round_trip_with_every_codec() {
        for codec in [Codec::None, Codec::Zstd(3), Codec::Lz4] {
            let seg = Segment::decode(sample(codec)).unwrap();
            assert_eq!(seg.header.records, 2);
            assert_eq!((seg.header.first_offset, seg.header.last_offset), (10, 12));
            assert_eq!((seg.header.position_start, seg.header.position_end), (10, 14));
            assert_eq!((seg.header.min_timestamp, seg.header.max_timestamp), (999, 1000));
            let records: Vec<_> = seg.records().map(Result::unwrap).collect();
            assert_eq!(records[0].key, Some(&b"k"[..]));
            let h: Vec<_> = records[0].headers().collect();
            assert_eq!(
                h,
                vec![("a", Some(&b"1"[..])), ("a", None), ("b", Some(&b""[..]))]
            );
            assert_eq!(records[1].key, None);
            assert_eq!(records[1].value, None);
            assert_eq!(records[1].timestamp_type, TimestampType::LogAppendTime);
            assert_eq!(
                records[1].headers().count(),
                0,
                "tracking headers are not the record's own"
            );
            // k, v and three headers of 1 + 1, 1 and 1 bytes.
            assert_eq!(records[0].data_len(), 2 + 2 + 1 + 1);
            assert_eq!(
                records[0].data_len(),
                record_bytes(records[0].key, records[0].value, records[0].headers())
            );
            assert_eq!(records[1].data_len(), 0, "nor counted as its data");
        }
    }

    #[test]
    fn incompressible_bodies_are_sealed_with_every_codec() {
        // Pseudo-random bytes: zstd output exceeds the third of the input it tries first.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let value: Vec<u8> = (0..200_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let mut compressor = Compressor::default();
        let mut out = Vec::new();
        for codec in [Codec::Zstd(3), Codec::Lz4, Codec::Zstd(3)] {
            let mut b = SegmentBuilder::new(0, 0, Vec::new());
            b.push(
                0,
                1,
                TimestampType::CreateTime,
                None,
                Some(&value),
                std::iter::empty(),
                &[],
            );
            let (sealed, _) = seal_with(b, 1, codec, &mut compressor, &mut out).unwrap();
            let mut all = sealed.header_bytes.to_vec();
            all.extend_from_slice(&sealed.body);
            let seg = Segment::decode(Bytes::from(all)).unwrap();
            let records: Vec<_> = seg.records().map(Result::unwrap).collect();
            assert_eq!(records[0].value, Some(&value[..]));
        }
    }

    #[test]
    fn a_decoded_segment_gives_its_buffer_back_once_unshared() {
        let bytes = sample(Codec::None);
        let segment = Segment::decode(bytes).unwrap();
        let shared = segment.clone();
        assert!(segment.into_buffer().is_none(), "a clone still reads it");
        let buffer = shared.into_buffer().unwrap();
        assert!(buffer.is_empty() && buffer.capacity() > 0);
    }

    #[test]
    fn compressed_segments_decode_into_the_spare_buffer_and_give_the_read_one_back() {
        for codec in [Codec::Zstd(3), Codec::Lz4] {
            let read = sample(codec);
            let read_len = read.len();
            let spare = Vec::with_capacity(4096);
            let spare_at = spare.as_ptr();
            let (segment, unused) = Segment::decode_reusing(read, spare).unwrap();
            assert_eq!(
                segment.body.as_ptr(),
                spare_at,
                "{codec:?}: decompressed into the spare"
            );
            assert!(unused.is_empty() && unused.capacity() >= read_len, "{codec:?}");
            assert_eq!(segment.records().count(), 2);
        }
        let spare = Vec::with_capacity(4096);
        let (segment, unused) = Segment::decode_reusing(sample(Codec::None), spare).unwrap();
        assert_eq!(segment.records().count(), 2);
        assert!(
            unused.is_empty() && unused.capacity() == 4096,
            "stored bodies leave the spare unused"
        );
    }

    #[test]
    fn corruption_is_detected() {
        let good = sample(Codec::Zstd(3));
        let mut flipped = good.to_vec();
        let last = flipped.len() - 1;
        flipped[last] ^= 0xff;
        let e = Segment::decode(Bytes::from(flipped)).unwrap_err();
        assert!(matches!(e, SegmentError::Checksum(_)), "{e}");
        let e = Segment::decode(good.slice(..good.len() - 3)).unwrap_err();
        assert!(matches!(e, SegmentError::Truncated(_)), "{e}");
        let mut header = good.to_vec();
        header[20] ^= 1;
        let e = Segment::decode(Bytes::from(header)).unwrap_err();
        assert!(e.to_string().contains("header CRC"), "{e}");
        let e = Segment::decode(Bytes::from_static(b"hello world")).unwrap_err();
        assert!(matches!(e, SegmentError::Truncated(_)), "{e}");
    }
}
