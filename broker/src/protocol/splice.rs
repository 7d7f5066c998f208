//! A response buffer that does not copy record data.
//!
//! `kafka-protocol` encodes a Fetch response by copying every partition's
//! records into the output buffer. For large fetches that doubles the
//! memory a response needs and adds a copy per byte served. This buffer
//! recognises the record `Bytes` it was told about when the encoder hands
//! them to `put_slice` (same address, same length), and keeps a reference
//! to them as their own chunk instead of copying; the connection then writes
//! the chunks in order.
#![allow(unsafe_code)]

use std::ops::Range;

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::buf::ByteBufMut;

/// Slices shorter than this are copied: a separate chunk costs more.
const MIN_SPLICE: usize = 16 * 1024;

#[derive(Debug)]
pub struct ResponseBuf {
    head: BytesMut,
    chunks: Vec<Bytes>,
    /// Bytes already moved out of `head` into `chunks`.
    before_head: usize,
    splice: Vec<Bytes>,
}

impl ResponseBuf {
    pub fn new(capacity: usize, splice: Vec<Bytes>) -> Self {
        ResponseBuf {
            head: BytesMut::with_capacity(capacity),
            chunks: Vec::new(),
            before_head: 0,
            splice: splice
                .into_iter()
                .filter(|b| b.len() >= MIN_SPLICE)
                .collect(),
        }
    }

    fn take_splice(&mut self, src: &[u8]) -> Option<Bytes> {
        if src.len() < MIN_SPLICE {
            return None;
        }
        let i = self
            .splice
            .iter()
            .position(|b| b.as_ptr() == src.as_ptr() && b.len() == src.len())?;
        Some(self.splice.swap_remove(i))
    }

    /// The encoded frame as chunks, in order.
    pub fn finish(mut self) -> Vec<Bytes> {
        if !self.head.is_empty() {
            self.chunks.push(self.head.freeze());
        }
        self.chunks
    }

    pub fn len(&self) -> usize {
        self.before_head + self.head.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

// SAFETY: every method delegates to `head`, a `BytesMut`, whose `BufMut`
// implementation upholds the trait's contract; `put_slice` only appends to
// `head` or moves whole chunks out of it.
unsafe impl BufMut for ResponseBuf {
    fn remaining_mut(&self) -> usize {
        self.head.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller initialised `cnt` bytes of `chunk_mut()`,
        // which is `head`'s.
        unsafe { self.head.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.head.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        match self.take_splice(src) {
            Some(records) => {
                if !self.head.is_empty() {
                    let h = self.head.split().freeze();
                    self.before_head += h.len();
                    self.chunks.push(h);
                }
                self.before_head += records.len();
                self.chunks.push(records);
            }
            None => self.head.extend_from_slice(src),
        }
    }
}

impl ByteBufMut for ResponseBuf {
    fn offset(&self) -> usize {
        self.len()
    }

    fn seek(&mut self, offset: usize) {
        // Message encoders never seek back past a spliced chunk (only record
        // batch encoders use gaps, and responses carry records as bytes).
        let local = offset.saturating_sub(self.before_head);
        self.head.resize(local, 0);
    }

    fn range(&mut self, r: Range<usize>) -> &mut [u8] {
        let start = r.start.saturating_sub(self.before_head);
        let end = r.end.saturating_sub(self.before_head);
        &mut self.head[start..end]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_records_are_referenced_not_copied() {
        let records = Bytes::from(vec![7u8; 100_000]);
        let mut b = ResponseBuf::new(16, vec![records.clone()]);
        b.put_i32(5);
        b.put_slice(&records);
        b.put_slice(&[1, 2, 3]);
        let other = vec![9u8; 50_000];
        b.put_slice(&other); // not registered: copied
        assert_eq!(b.len(), 4 + 100_000 + 3 + 50_000);
        let chunks = b.finish();
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[1].as_ptr(), records.as_ptr());
        let joined: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        assert_eq!(&joined[..4], &5i32.to_be_bytes());
        assert_eq!(joined.len(), 150_007);
    }
}
