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
    let mut size = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r.read(&mut size[got..]).await?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(FrameError::Truncated {
                    read: got,
                    expected: 4,
                })
            };
        }
        got += n;
    }
    let size = i32::from_be_bytes(size);
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
    let mut buf = BytesMut::with_capacity(size.min(GROWTH_STEP));
    while buf.len() < size {
        if buf.capacity() == buf.len() {
            buf.reserve((size - buf.len()).min(GROWTH_STEP));
        }
        let want = size - buf.len();
        let n = (&mut *r).take(want as u64).read_buf(&mut buf).await?;
        if n == 0 {
            return Err(FrameError::Truncated {
                read: buf.len(),
                expected: size,
            });
        }
    }
    Ok(Some(buf.freeze()))
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
}
