//! The on-disk log: one directory per partition, Kafka-style.
//!
//! ```text
//! <data dir>/<topic>-<partition>/
//!     00000000000000000000.log        record batches as producers sent them
//!     00000000000000000000.index      sparse offset -> position
//!     00000000000000000000.timeindex  sparse timestamp -> offset
//!     leader-epoch-checkpoint         epoch -> start offset
//!     partition.metadata              topic id
//! ```

pub mod batch;
pub mod checkpoint;
pub mod cleaner;
pub mod index;
pub mod log;
pub mod producer_state;
pub mod records;
pub mod segment;

pub use self::log::{AppendInfo, FetchData, LogConfig, PartitionLog};

/// Total and usable bytes of the filesystem holding `path` (statvfs).
#[allow(unsafe_code)]
// The statvfs field types differ between platforms; the casts are needed
// where they are narrower than u64.
#[allow(clippy::unnecessary_cast)]
pub fn disk_space(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a valid NUL-terminated path and `st` points to memory
    // large enough for a statvfs, which the call fills on success.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it initialised `st`.
    let st = unsafe { st.assume_init() };
    let frsize = st.f_frsize as u64;
    Some((st.f_blocks as u64 * frsize, st.f_bavail as u64 * frsize))
}
