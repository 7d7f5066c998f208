//! Length-prefixed frames: a big-endian i32 size, then that many bytes.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Why a connection stopped producing frames.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {size} bytes exceeds socket.request.max.bytes ({limit})")]
    TooLarge { size: i64, limit: usize },
    #[error("frame size {0} is negative")]
    Negative(i32),
    #[error("connection closed in the middle of a frame ({read} of {expected} bytes)")]
    Truncated { read: usize, expected: usize },
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// Largest chunk allocated ahead of the bytes actually received, so that a
/// client claiming a large frame and sending nothing costs little memory.
const GROWTH_STEP: usize = 1 << 20;

/// Reads one frame. `Ok(None)` is a clean end of stream between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
) -> Result<Option<Bytes>, FrameError> {
    FrameReader::default().next(r, max).await
}

/// Reads frames one after another, keeping a partly read frame between
/// calls: [`FrameReader::next`] is cancel-safe (a `select!` may drop it and
/// call it again without losing bytes), as each read it makes is.
#[derive(Debug, Default)]
pub struct FrameReader {
    size: [u8; 4],
    got: usize,
    /// The frame's body once its size is known.
    body: Option<(usize, BytesMut)>,
}

impl FrameReader {
    /// The next frame. `Ok(None)` is a clean end of stream between frames.
    pub async fn next<R: AsyncRead + Unpin>(
        &mut self,
        r: &mut R,
        max: usize,
    ) -> Result<Option<Bytes>, FrameError> {
        while self.body.is_none() {
            let n = r.read(&mut self.size[self.got..]).await?;
            if n == 0 {
                return if self.got == 0 {
                    Ok(None)
                } else {
                    Err(FrameError::Truncated {
                        read: self.got,
                        expected: 4,
                    })
                };
            }
            self.got += n;
            if self.got < 4 {
                continue;
            }
            let size = i32::from_be_bytes(self.size);
            if size < 0 {
                return Err(FrameError::Negative(size));
            }
            let size = size as usize;
            if size > max {
                return Err(FrameError::TooLarge {
                    size: size as i64,
                    limit: max,
                });
            }
            self.body = Some((size, BytesMut::with_capacity(size.min(GROWTH_STEP))));
        }
        let Some((size, buf)) = self.body.as_mut() else {
            return Ok(None);
        };
        let size = *size;
        while buf.len() < size {
            if buf.capacity() == buf.len() {
                buf.reserve((size - buf.len()).min(GROWTH_STEP));
            }
            let want = size - buf.len();
            let n = (&mut *r).take(want as u64).read_buf(buf).await?;
            if n == 0 {
                return Err(FrameError::Truncated {
                    read: buf.len(),
                    expected: size,
                });
            }
        }
        let frame = self.body.take().map(|(_, b)| b.freeze());
        self.got = 0;
        Ok(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_frames_and_rejects_bad_sizes() {
        let mut data: &[u8] = &[0, 0, 0, 3, 1, 2, 3, 0, 0, 0, 1, 9];
        assert_eq!(
            read_frame(&mut data, 100).await.expect("ok").as_deref(),
            Some(&[1u8, 2, 3][..])
        );
        assert_eq!(
            read_frame(&mut data, 100).await.expect("ok").as_deref(),
            Some(&[9u8][..])
        );
        assert!(read_frame(&mut data, 100).await.expect("eof").is_none());

        let mut huge: &[u8] = &[0x7f, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame(&mut huge, 100).await,
            Err(FrameError::TooLarge { .. })
        ));
        let mut neg: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame(&mut neg, 100).await,
            Err(FrameError::Negative(-1))
        ));
        let mut short: &[u8] = &[0, 0, 0, 10, 1, 2];
        assert!(matches!(
            read_frame(&mut short, 100).await,
            Err(FrameError::Truncated { .. })
        ));
    }

    #[tokio::test]
    async fn a_frame_reader_dropped_mid_frame_loses_nothing() {
        use tokio::io::AsyncWriteExt;
        let (mut client, mut server) = tokio::io::duplex(64);
        let mut frames = FrameReader::default();
        // Two bytes of the size, then three of a five-byte body: each
        // call is cut short (as a select! does) and the next one resumes.
        for part in [&[0u8, 0][..], &[0, 5, b'h'][..], &[b'e', b'l'][..]] {
            client.write_all(part).await.expect("write");
            let cut = tokio::time::timeout(
                std::time::Duration::from_millis(20),
                frames.next(&mut server, 100),
            )
            .await;
            assert!(cut.is_err(), "no whole frame yet");
        }
        client.write_all(b"lo").await.expect("write");
        let frame = frames.next(&mut server, 100).await.expect("frame");
        assert_eq!(frame.as_deref(), Some(&b"hello"[..]));
        drop(client);
        assert!(frames.next(&mut server, 100).await.expect("eof").is_none());
    }
}
