//! A global allocator that keeps malformed requests from aborting the broker.
//!
//! `kafka-protocol` 0.18 pre-allocates arrays with `Vec::with_capacity(n)`
//! where `n` comes straight off the wire. A 20-byte request can ask for
//! hundreds of GiB; the system allocator refuses, and Rust aborts the whole
//! process on allocation failure. Upstream fixes are open but unreleased
//! (see docs/decisions/0003-oversized-array-allocations.md).
//!
//! Every allocation of 1 GiB or more goes to an anonymous `MAP_NORESERVE`
//! mapping instead: the kernel hands out address space without committing
//! memory, the decoder fails on the first missing element, and the mapping
//! is returned untouched. No legitimate allocation is that large: requests
//! are bounded by `socket.request.max.bytes`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations at or above this size are served by `mmap`.
const HUGE: usize = 1 << 30;
const PAGE: usize = 4096;

#[derive(Debug, Clone, Copy, Default)]
pub struct GuardedAlloc;

fn is_huge(layout: &Layout) -> bool {
    layout.size() >= HUGE && layout.align() <= PAGE
}

unsafe fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping has no preconditions.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        p.cast()
    }
}

// SAFETY: every path either delegates to `System` with the same layout or
// uses a page-aligned anonymous mapping of exactly `layout.size()` bytes
// that is unmapped with the same size.
unsafe impl GlobalAlloc for GuardedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            unsafe { map(layout.size()) }
        } else {
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            // Anonymous mappings are zero-filled.
            unsafe { map(layout.size()) }
        } else {
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_huge(&layout) {
            unsafe {
                libc::munmap(ptr.cast(), layout.size());
            }
        } else {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        if !is_huge(&layout) && !is_huge(&new_layout) {
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn absurd_capacity_does_not_abort() {
        // 2^31 elements of 200 bytes: ~400 GiB of address space, never touched.
        let v: Vec<[u8; 200]> = Vec::with_capacity(i32::MAX as usize);
        assert!(v.capacity() >= i32::MAX as usize);
    }

    #[test]
    fn huge_realloc_keeps_contents() {
        let mut v: Vec<u8> = vec![7; 1024];
        v.reserve_exact((1 << 30) + 1);
        assert!(v.iter().all(|b| *b == 7));
        v.shrink_to_fit();
        assert_eq!(v.len(), 1024);
    }
}
