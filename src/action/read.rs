//! Reading a destination's answer within limits: the body is taken as a stream and never held
//! beyond a cap, so a partner (or an attacker controlling a URL a flow calls) that answers with
//! gigabytes costs at most the cap in memory and the recorded prefix on disk.

use bytesize::ByteSize;

/// What was read of a body.
#[derive(Debug)]
pub struct Capped {
    /// At most the cap.
    pub bytes: Vec<u8>,
    /// Bytes that arrived, counting those past the cap (reading stops at the first chunk over).
    pub received: u64,
    /// The whole body arrived within the cap.
    pub complete: bool,
}

impl Default for Capped {
    fn default() -> Self {
        Capped::new()
    }
}

impl Capped {
    /// Nothing read yet.
    pub fn new() -> Capped {
        Capped {
            bytes: Vec::new(),
            received: 0,
            complete: true,
        }
    }

    /// Takes one chunk, keeping what fits under `cap`; `false` once the body went past the
    /// cap (the caller stops reading; the body is then incomplete).
    pub fn push(&mut self, chunk: &[u8], cap: usize) -> bool {
        self.received += chunk.len() as u64;
        let room = cap.saturating_sub(self.bytes.len());
        self.bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
        self.complete = self.received <= cap as u64;
        self.complete
    }

    /// Reads a response's body as a stream, stopping at the first chunk past `cap`.
    pub async fn read(response: &mut reqwest::Response, cap: usize) -> reqwest::Result<Capped> {
        let mut c = Capped::new();
        while let Some(chunk) = response.chunk().await? {
            if !c.push(&chunk, cap) {
                break;
            }
        }
        Ok(c)
    }

    /// The full size when it is known: what arrived if all did, else what the sender declared.
    pub fn size(&self, declared: Option<u64>) -> Option<u64> {
        if self.complete {
            Some(self.received)
        } else {
            declared
        }
    }

    /// The body as history keeps it: at most `keep` bytes (cut on a character boundary) and,
    /// when cut, a marker saying how much is missing.
    pub fn recorded(&self, keep: usize, declared: Option<u64>) -> (String, bool) {
        let text = String::from_utf8_lossy(&self.bytes);
        if self.complete && text.len() <= keep {
            return (text.into_owned(), false);
        }
        let mut cut = keep.min(text.len());
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let total = match self.size(declared) {
            Some(n) => format!("of {}", ByteSize(n)),
            None => format!("of more than {}", ByteSize(self.received)),
        };
        (
            format!("{}… [first {} {total} kept]", &text[..cut], ByteSize(cut as u64)),
            true,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(chunks: Vec<&'static [u8]>, cap: usize) -> Capped {
        let mut c = Capped::new();
        for chunk in chunks {
            if !c.push(chunk, cap) {
                break;
            }
        }
        c
    }

    #[test]
    fn reading_stops_past_the_cap() {
        let c = read(vec![b"abc", b"def"], 10);
        assert!(c.complete);
        assert_eq!((c.bytes.as_slice(), c.received), (&b"abcdef"[..], 6));
        assert_eq!(c.recorded(100, None), ("abcdef".to_string(), false));
        let c = read(vec![b"abcd", b"efgh", b"never read"], 6);
        assert!(!c.complete);
        assert_eq!((c.bytes.as_slice(), c.received), (&b"abcdef"[..], 8));
        assert_eq!(c.size(Some(400)), Some(400));
        let (text, cut) = c.recorded(3, Some(400_000_000));
        assert!(cut);
        assert_eq!(text, "abc… [first 3 B of 381.5 MiB kept]");
        let (text, _) = c.recorded(3, None);
        assert!(text.ends_with("of more than 8 B kept]"), "{text}");
    }

    #[test]
    fn a_recorded_prefix_ends_on_a_character() {
        let c = read(vec!["é".repeat(10).leak().as_bytes()], 100);
        let (text, cut) = c.recorded(5, None);
        assert!(cut);
        assert!(text.starts_with("éé…"), "{text}");
    }
}
