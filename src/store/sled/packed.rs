//! Runs' inputs and finished records compressed in sled (layout 4).
//!
//! A run's input — the request, body and all, and its vars — is written once at admission and
//! read at every claim; a finished run's record is written once (again only by a replay). Kept
//! as plain JSON they made most of a run's bytes in sled (1.4 KB of 2.4 KB for the benchmark's
//! order), and sled 0.34 copies whole leaf nodes on every change, so those bytes were copied
//! again and again by the one writer thread that bounds delivery. Compressed once with zstd at
//! level 1, the benchmark's input takes 623 bytes instead of 1,242, and a finished run 2.5 KB
//! on disk instead of 4.4 (BENCHMARKS.md, "Compressed inputs and finished records"). sled's own
//! `--store-compression` compresses every page at every write instead, at under half the
//! delivery rate. Unfinished runs' records, rewritten at every claim and save, stay plain.
//!
//! A packed value is a zstd frame, whose magic number (`28 B5 2F FD`) no JSON text starts
//! with, so values written before layout 4 (plain JSON) are told apart and read as they are:
//! nothing is rewritten on upgrade. Values smaller than [`MIN_PACKED`], or that would not
//! shrink, stay plain.

use std::borrow::Cow;
use std::cell::RefCell;

use crate::store::{Result, StoreError};

/// Values shorter than this stay plain JSON: a zstd frame's header and the work are not worth
/// it for a few hundred bytes.
pub(super) const MIN_PACKED: usize = 256;

/// zstd's fastest regular level: inputs are compressed on the writer thread, at admission.
const LEVEL: i32 = 1;

/// The first bytes of every zstd frame.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

thread_local! {
    /// One compression context per thread (in practice the store's writer), reused: making one
    /// per value would cost more than compressing it.
    static COMPRESSOR: RefCell<zstd::block::Compressor> = RefCell::new(zstd::block::Compressor::new());
    static DECOMPRESSOR: RefCell<zstd::block::Decompressor> = RefCell::new(zstd::block::Decompressor::new());
}

/// `json` as it is stored: compressed when that makes it smaller, else as it is.
pub(super) fn pack(json: Vec<u8>) -> Vec<u8> {
    if json.len() < MIN_PACKED {
        return json;
    }
    let packed = COMPRESSOR.with(|c| c.borrow_mut().compress(&json, LEVEL));
    match packed {
        Ok(p) if p.len() < json.len() => p,
        _ => json,
    }
}

/// Whether a stored value is packed (else it is plain JSON).
pub(super) fn is_packed(stored: &[u8]) -> bool {
    stored.starts_with(&ZSTD_MAGIC)
}

/// The JSON of a stored value, packed or plain. A damaged frame is [`StoreError::Corrupt`] for
/// this value alone; the size a frame claims is reserved fallibly, so a damaged header cannot
/// abort the process.
pub(super) fn unpack<'a>(key: &str, stored: &'a [u8]) -> Result<Cow<'a, [u8]>> {
    if !is_packed(stored) {
        return Ok(Cow::Borrowed(stored));
    }
    let corrupt = |why: &str| StoreError::Corrupt(format!("{key}: {why}"));
    let size = zstd::zstd_safe::get_frame_content_size(stored);
    if size > u64::from(u32::MAX) {
        return Err(corrupt("a compressed value with no readable size"));
    }
    let mut out = Vec::new();
    out.try_reserve_exact(size as usize)
        .map_err(|_| corrupt("a compressed value larger than memory allows"))?;
    DECOMPRESSOR
        .with(|d| d.borrow_mut().decompress_to_buffer(stored, &mut out))
        .map_err(|e| corrupt(&format!("a damaged compressed value ({e})")))?;
    if out.len() as u64 != size {
        return Err(corrupt("a compressed value shorter than its header says"));
    }
    Ok(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(body_len: usize) -> Vec<u8> {
        let body: String = (0..body_len).map(|i| (b'a' + (i % 26) as u8) as char).collect();
        serde_json::to_vec(&serde_json::json!({
            "request": {"method": "POST", "headers": {"content-type": "application/json"}, "body": {"note": body}},
            "vars": {"email": "ada@example.com"},
        }))
        .unwrap()
    }

    #[test]
    fn inputs_round_trip_and_only_those_worth_it_are_packed() {
        let small = input(10);
        assert!(small.len() < MIN_PACKED);
        assert_eq!(pack(small.clone()), small, "small inputs stay plain");
        let big = input(2000);
        let packed = pack(big.clone());
        assert!(is_packed(&packed));
        assert!(packed.len() * 4 < big.len(), "{} of {}", packed.len(), big.len());
        assert_eq!(unpack("input:x", &packed).unwrap().as_ref(), &big[..]);
        // Plain JSON (everything stored before layout 4) reads as it is, without a copy.
        assert!(matches!(unpack("input:x", &big).unwrap(), Cow::Borrowed(_)));
    }

    #[test]
    fn random_bytes_that_do_not_shrink_stay_plain() {
        let mut noise = Vec::new();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..4096 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            noise.push(x as u8);
        }
        noise[0] = b'{';
        assert_eq!(pack(noise.clone()), noise);
    }

    #[test]
    fn a_damaged_packed_value_is_an_error_for_that_value_alone() {
        let big = input(2000);
        let packed = pack(big.clone());
        // Cut short.
        let e = unpack("input:r1", &packed[..packed.len() / 2]).unwrap_err();
        assert!(e.to_string().contains("input:r1"), "{e}");
        // A byte of the data flipped: zstd's frame has no checksum by default, so either an
        // error or different bytes — never a panic, and the next value still reads.
        let mut flipped = packed.clone();
        let at = flipped.len() - 3;
        flipped[at] ^= 0xFF;
        if let Ok(v) = unpack("input:r1", &flipped) {
            assert_ne!(v.as_ref(), &big[..]);
        }
        // A header that claims 4 GiB and holds nothing.
        let mut huge = ZSTD_MAGIC.to_vec();
        huge.extend_from_slice(&[0xE0, 0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x00]);
        assert!(unpack("input:r2", &huge).is_err());
        assert_eq!(unpack("input:r3", &packed).unwrap().as_ref(), &big[..]);
    }
}
