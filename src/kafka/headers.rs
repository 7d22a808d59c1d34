//! The tracking headers a restore adds to each record when `includeOriginalOffsetHeader` asks for
//! them, and that the HeaderBased offset reset reads. Names and encodings are those of the prior
//! art (kafka-backup core), so topics restored by either tool can be searched by either.

/// Offset of the record in the source partition: 8-byte little-endian i64 (a decimal string is
/// also read, as older archives wrote it).
pub const ORIGINAL_OFFSET: &str = "x-original-offset";
/// Timestamp of the record in the source (epoch milliseconds): 8-byte little-endian i64.
pub const ORIGINAL_TIMESTAMP: &str = "x-original-timestamp";
/// Source partition: 4-byte little-endian i32.
pub const SOURCE_PARTITION: &str = "x-source-partition";
/// Id of the source cluster: UTF-8.
pub const SOURCE_CLUSTER: &str = "x-source-cluster";

/// Encodes an i64 header value (offset, timestamp).
pub fn encode_i64(value: i64) -> [u8; 8] {
    value.to_le_bytes()
}

/// Encodes an i32 header value (partition).
pub fn encode_i32(value: i32) -> [u8; 4] {
    value.to_le_bytes()
}

/// Decodes an i64 header value: 8 little-endian bytes, or a decimal string.
pub fn decode_i64(bytes: &[u8]) -> Option<i64> {
    match <[u8; 8]>::try_from(bytes) {
        Ok(raw) => Some(i64::from_le_bytes(raw)),
        Err(_) => std::str::from_utf8(bytes).ok()?.trim().parse().ok(),
    }
}

/// Decodes an i32 header value: 4 little-endian bytes, or a decimal string.
pub fn decode_i32(bytes: &[u8]) -> Option<i32> {
    match <[u8; 4]>::try_from(bytes) {
        Ok(raw) => Some(i32::from_le_bytes(raw)),
        Err(_) => std::str::from_utf8(bytes).ok()?.trim().parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_decimal_strings_are_read() {
        assert_eq!(
            decode_i64(&encode_i64(1_234_567_890_123)),
            Some(1_234_567_890_123)
        );
        assert_eq!(decode_i32(&encode_i32(7)), Some(7));
        assert_eq!(decode_i64(b"42"), Some(42));
        assert_eq!(decode_i32(b"3"), Some(3));
        assert_eq!(decode_i64(b"x"), None);
    }
}
