//! The journal's bytes: segment and record formats, and reading a segment back — including
//! past damage.
//!
//! A segment (format 2) starts with [`SEGMENT_MAGIC`]; each record is
//! `[RECORD_MAGIC][len: u32 LE][crc32(len ‖ payload): u32 LE][payload]`. The record magic holds
//! bytes that never occur in UTF-8 (run payloads are JSON), so a reader that meets a record it
//! cannot read searches forward for the next magic whose record checks out, and keeps
//! everything from there: damage costs the damaged bytes, not the rest of the journal. The
//! preallocated, never written rest of a segment is zeros.
//!
//! Segments written before format 2 (no segment magic; records `[len][crc32(payload)]`) are
//! still read; damage in them cannot be skipped over, so the rest of such a segment is
//! reported as damaged.

use std::ops::Range;

pub const SEGMENT_MAGIC: &[u8; 8] = b"HFJRNL2\n";
pub const RECORD_MAGIC: [u8; 4] = [0xFF, 0xFE, b'H', b'R'];
/// Record header of format 2: magic, length, checksum.
pub const HEADER: usize = 12;
const V1_HEADER: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Before record magics: read only, never appended to.
    V1,
    V2,
}

impl Format {
    pub fn of(segment: &[u8]) -> Format {
        if segment.starts_with(SEGMENT_MAGIC) {
            Format::V2
        } else {
            Format::V1
        }
    }

    /// Where the first record of a segment starts.
    pub fn first_offset(self) -> usize {
        match self {
            Format::V1 => 0,
            Format::V2 => SEGMENT_MAGIC.len(),
        }
    }
}

/// Appends one format-2 record for `payload` to `out`.
pub fn encode(payload: &[u8], out: &mut Vec<u8>) {
    let len = (payload.len() as u32).to_le_bytes();
    let mut crc = crc32fast::Hasher::new();
    crc.update(&len);
    crc.update(payload);
    out.extend_from_slice(&RECORD_MAGIC);
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(payload);
}

/// What a segment holds from some offset on.
#[derive(Debug, Default, PartialEq)]
pub struct Scanned {
    /// Each readable record: `(start, payload range)`.
    pub records: Vec<(usize, Range<usize>)>,
    /// Byte ranges that hold no readable record, in order.
    pub damaged: Vec<Range<usize>>,
    /// Where the written part ends: the next append goes here. Damage at the very end (no
    /// readable record after it, typically a write a crash cut short) ends before it.
    pub end: usize,
}

impl Scanned {
    /// Whether the last damaged range is the segment's tail (nothing readable after it).
    pub fn torn_tail(&self) -> bool {
        self.damaged.last().is_some_and(|d| d.start == self.end)
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// The payload range of a valid format-2 record at `off`.
fn record_v2(b: &[u8], off: usize) -> Option<Range<usize>> {
    if off + HEADER > b.len() || b[off..off + 4] != RECORD_MAGIC {
        return None;
    }
    let len = u32_at(b, off + 4) as usize;
    let body = off + HEADER;
    if len == 0 || body + len > b.len() {
        return None;
    }
    let mut crc = crc32fast::Hasher::new();
    crc.update(&b[off + 4..off + 8]);
    crc.update(&b[body..body + len]);
    (crc.finalize() == u32_at(b, off + 8)).then_some(body..body + len)
}

fn record_v1(b: &[u8], off: usize) -> Option<Range<usize>> {
    if off + V1_HEADER > b.len() {
        return None;
    }
    let len = u32_at(b, off) as usize;
    let body = off + V1_HEADER;
    if len == 0 || body + len > b.len() || crc32fast::hash(&b[body..body + len]) != u32_at(b, off + 4) {
        return None;
    }
    Some(body..body + len)
}

/// One past the last non-zero byte at or after `from`, or `from` when the rest is zeros.
fn written_end(b: &[u8], from: usize) -> usize {
    b[from..]
        .iter()
        .rposition(|x| *x != 0)
        .map_or(from, |i| from + i + 1)
}

/// Reads `segment` from `from` on.
pub fn scan(segment: &[u8], format: Format, from: usize) -> Scanned {
    let mut out = Scanned::default();
    let mut off = from.max(format.first_offset()).min(segment.len());
    // Past this, only the preallocated, never written rest of the segment.
    let written = written_end(segment, off);
    while off < written {
        let found = match format {
            Format::V2 => record_v2(segment, off),
            Format::V1 => record_v1(segment, off),
        };
        if let Some(payload) = found {
            off = payload.end;
            out.records.push((payload.start - header(format), payload));
            continue;
        }
        let resync = match format {
            Format::V1 => None,
            Format::V2 => (off + 1..segment.len().saturating_sub(HEADER - 1))
                .filter(|&p| segment[p] == RECORD_MAGIC[0] && segment[p..p + 4] == RECORD_MAGIC)
                .find(|&p| record_v2(segment, p).is_some()),
        };
        match resync {
            Some(next) => {
                out.damaged.push(off..next);
                off = next;
            }
            None => {
                out.damaged.push(off..written);
                break;
            }
        }
    }
    out.end = off;
    out
}

fn header(format: Format) -> usize {
    match format {
        Format::V1 => V1_HEADER,
        Format::V2 => HEADER,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(payloads: &[&[u8]], spare: usize) -> (Vec<u8>, Vec<usize>) {
        let mut b = SEGMENT_MAGIC.to_vec();
        let mut starts = Vec::new();
        for p in payloads {
            starts.push(b.len());
            encode(p, &mut b);
        }
        b.resize(b.len() + spare, 0);
        (b, starts)
    }

    fn payloads<'a>(b: &'a [u8], s: &Scanned) -> Vec<&'a [u8]> {
        s.records.iter().map(|(_, r)| &b[r.clone()]).collect()
    }

    #[test]
    fn records_read_back_and_the_spare_rest_is_not_damage() {
        let (b, starts) = segment(&[b"{\"a\":1}", b"{\"b\":2}"], 100);
        let s = scan(&b, Format::of(&b), 0);
        assert_eq!(payloads(&b, &s), [b"{\"a\":1}".as_slice(), b"{\"b\":2}"]);
        assert!(s.damaged.is_empty());
        assert_eq!(s.records[1].0, starts[1]);
        assert_eq!(s.end, b.len() - 100);
        // From an offset (a cursor), only what follows.
        let from_second = scan(&b, Format::V2, starts[1]);
        assert_eq!(from_second.records.len(), 1);
    }

    #[test]
    fn damage_in_the_middle_costs_only_the_damaged_record() {
        let recs: Vec<Vec<u8>> = (0..50).map(|i| format!("{{\"run\":{i}}}").into_bytes()).collect();
        let refs: Vec<&[u8]> = recs.iter().map(Vec::as_slice).collect();
        let (clean, starts) = segment(&refs, 64);
        // A flipped byte anywhere in record 20 — magic, length, checksum or payload.
        for at in starts[20]..starts[21] {
            let mut b = clean.clone();
            b[at] ^= 0x5A;
            let s = scan(&b, Format::V2, 0);
            assert_eq!(s.records.len(), 49, "flip at {at}");
            assert_eq!(s.damaged, vec![starts[20]..starts[21]], "flip at {at}");
            assert!(!s.torn_tail());
            assert_eq!(payloads(&b, &s)[20], b"{\"run\":21}");
            assert_eq!(s.end, clean.len() - 64);
        }
        // A length that points past the end of the segment.
        let mut b = clean.clone();
        b[starts[3] + 4..starts[3] + 8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(scan(&b, Format::V2, 0).records.len(), 49);
    }

    #[test]
    fn a_torn_tail_is_told_apart() {
        let (mut b, starts) = segment(&[b"one", b"two"], 0);
        let full = b.len();
        b.extend_from_slice(&RECORD_MAGIC);
        b.extend_from_slice(&[9, 0, 0, 0, 1, 2]);
        b.resize(b.len() + 50, 0);
        let s = scan(&b, Format::V2, 0);
        assert_eq!(s.records.len(), 2);
        assert!(s.torn_tail());
        assert_eq!(s.damaged, vec![full..full + 10]);
        assert_eq!(s.end, full);
        assert_eq!(s.records[1].0, starts[1]);
    }

    #[test]
    fn payload_bytes_that_look_like_a_magic_do_not_fool_the_reader() {
        let mut tricky = b"{\"x\":\"".to_vec();
        tricky.extend_from_slice(&RECORD_MAGIC);
        tricky.extend_from_slice(b"\"}");
        let (mut b, starts) = segment(&[b"first", &tricky, b"third"], 0);
        b[starts[0] + 13] ^= 1; // damage the first record's payload
        let s = scan(&b, Format::V2, 0);
        assert_eq!(payloads(&b, &s), [tricky.as_slice(), b"third"]);
    }

    #[test]
    fn format_1_segments_still_read() {
        let mut b = Vec::new();
        for p in [b"one".as_slice(), b"two"] {
            b.extend_from_slice(&(p.len() as u32).to_le_bytes());
            b.extend_from_slice(&crc32fast::hash(p).to_le_bytes());
            b.extend_from_slice(p);
        }
        b.extend_from_slice(&[0; 16]);
        assert_eq!(Format::of(&b), Format::V1);
        let s = scan(&b, Format::V1, 0);
        assert_eq!(payloads(&b, &s), [b"one".as_slice(), b"two"]);
        b[9] ^= 1;
        let s = scan(&b, Format::V1, 0);
        assert!(s.records.is_empty());
        assert_eq!(s.damaged, vec![0..22]);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn cases() -> u32 {
            std::env::var("PROPTEST_CASES")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(64)
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

            /// Any bytes at all, read as either format: no panic, every record found lies
            /// inside the segment and checks out, and the end is within the segment.
            #[test]
            fn any_bytes_read_without_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048), from in 0usize..64) {
                for format in [Format::V1, Format::V2] {
                    let s = scan(&bytes, format, from);
                    prop_assert!(s.end <= bytes.len().max(format.first_offset()));
                    for (start, r) in &s.records {
                        prop_assert!(*start < r.start && r.end <= bytes.len());
                        if format == Format::V2 {
                            prop_assert_eq!(record_v2(&bytes, *start), Some(r.clone()));
                        }
                    }
                }
            }

            /// Records with any JSON-like payloads, one stretch of them overwritten with any
            /// bytes: every record the damage did not touch is read back, in order, and
            /// nothing that was not written is.
            #[test]
            fn damage_costs_only_the_records_it_touches(
                payloads in prop::collection::vec("[ -~]{1,60}", 1..40),
                at in any::<prop::sample::Index>(),
                junk in prop::collection::vec(any::<u8>(), 1..80),
            ) {
                let refs: Vec<&[u8]> = payloads.iter().map(|p| p.as_bytes()).collect();
                let (mut b, starts) = segment(&refs, 16);
                let written = b.len() - 16;
                let from = SEGMENT_MAGIC.len() + at.index(written - SEGMENT_MAGIC.len());
                let to = (from + junk.len()).min(written);
                b[from..to].copy_from_slice(&junk[..to - from]);
                let s = scan(&b, Format::V2, 0);
                let got = payloads_of(&b, &s);
                let ends: Vec<usize> = starts.iter().skip(1).copied().chain([written]).collect();
                let untouched: Vec<&[u8]> = refs
                    .iter()
                    .zip(starts.iter().zip(&ends))
                    .filter(|(_, (s, e))| **e <= from || **s >= to)
                    .map(|(p, _)| *p)
                    .collect();
                // Every untouched record is read back, in order (a touched one may still
                // check out when the junk left its bytes as they were).
                let mut it = got.iter();
                for want in &untouched {
                    prop_assert!(it.any(|g| g == want), "lost {:?}", String::from_utf8_lossy(want));
                }
                for g in &got {
                    prop_assert!(refs.contains(g), "read back what was never written");
                }
            }
        }

        fn payloads_of<'a>(b: &'a [u8], s: &Scanned) -> Vec<&'a [u8]> {
            s.records.iter().map(|(_, r)| &b[r.clone()]).collect()
        }
    }
}
