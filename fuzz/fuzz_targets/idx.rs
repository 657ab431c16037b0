//! The IDX reader on arbitrary file contents (raw or gzip), as images and as labels.
//!
//! Besides "no panic", the oracle is the reader's memory bound: a counting allocator checks that
//! a parse never holds more than twice the data its header announces (plus 1 MiB for the
//! decoder), however much data follows. Reading past the announced size, or allocating from the
//! header before the data arrives, fails here.
#![no_main]

use eqprop::data::{MAX_IDX_BYTES, MAX_IMAGE_SIDE, parse_idx_images, parse_idx_labels};
use libfuzzer_sys::fuzz_target;
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// The system allocator, counting the bytes held now and their peak.
struct Counting;

static HELD: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let held = HELD.fetch_add(layout.size(), Relaxed) + layout.size();
        PEAK.fetch_max(held, Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HELD.fetch_sub(layout.size(), Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Old and new blocks may both be live during the copy.
        let held = HELD.fetch_add(new_size, Relaxed) + new_size;
        PEAK.fetch_max(held, Relaxed);
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        HELD.fetch_sub(layout.size(), Relaxed);
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The data bytes the IDX header of `data` (decompressed if gzip) announces with `ndims`
/// dimensions; 0 without a whole header.
fn announced(data: &[u8], ndims: usize) -> u64 {
    let mut header = vec![0u8; 4 * (1 + ndims)];
    let complete = if data.starts_with(&[0x1f, 0x8b]) {
        flate2::read::MultiGzDecoder::new(data)
            .read_exact(&mut header)
            .is_ok()
    } else {
        (&data[..]).read_exact(&mut header).is_ok()
    };
    if !complete {
        return 0;
    }
    header[4..]
        .chunks_exact(4)
        .map(|c| u64::from(u32::from_be_bytes(c.try_into().unwrap())))
        .try_fold(1u64, u64::checked_mul)
        .unwrap_or(u64::MAX)
}

/// Runs `parse` and checks that it never held more than twice `announced` bytes plus 1 MiB.
fn bounded<T>(announced: u64, parse: impl FnOnce() -> T) -> T {
    let before = HELD.load(Relaxed);
    PEAK.store(before, Relaxed);
    let result = parse();
    let used = PEAK.load(Relaxed) - before;
    let bound = 2 * announced.min(MAX_IDX_BYTES as u64) + (1 << 20);
    assert!(
        used as u64 <= bound,
        "{used} bytes held for {announced} announced"
    );
    result
}

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.idx");
    match bounded(announced(data, 3), || parse_idx_images(data, path)) {
        Ok((bytes, n, rows, cols)) => {
            assert_eq!(bytes.len(), n * rows * cols);
            assert!(bytes.len() <= MAX_IDX_BYTES);
            assert!((1..=MAX_IMAGE_SIDE).contains(&rows) && (1..=MAX_IMAGE_SIDE).contains(&cols));
        }
        Err(e) => assert!(e.to_string().contains("fuzz.idx"), "{e}"),
    }
    match bounded(announced(data, 1), || parse_idx_labels(data, path)) {
        Ok(labels) => assert!(labels.len() <= MAX_IDX_BYTES),
        Err(e) => assert!(e.to_string().contains("fuzz.idx"), "{e}"),
    }
});
