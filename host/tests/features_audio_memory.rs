//! What one clip may cost in memory, measured by a counting allocator: at most twice its
//! decoded-size limit `L = max_seconds · max(clip rate, plugin rate) · 4 bytes`, plus a fixed
//! 128 MiB for the decoder's packet buffers and the resampler's FFT plans (largest, ~120 MiB, for
//! coprime rates near the 768 kHz limit), whatever the header declares (an 8 KB file declaring
//! 0xFFFFFFFF Hz made encore allocate ~23 GB). One test in this binary, so no other test's
//! allocations mix into the peak.
use encore::features::audio;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            PEAK.fetch_max(LIVE.fetch_add(l.size(), Relaxed) + l.size(), Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() {
            PEAK.fetch_max(LIVE.fetch_add(l.size(), Relaxed) + l.size(), Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size(), Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            // Counted as the new block arriving before the old one leaves, as a move does.
            PEAK.fetch_max(LIVE.fetch_add(new, Relaxed) + new, Relaxed);
            LIVE.fetch_sub(l.size(), Relaxed);
        }
        q
    }
}

#[global_allocator]
static A: Counting = Counting;

/// Peak bytes allocated above the live count while `f` runs.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.load(Relaxed);
    PEAK.store(base, Relaxed);
    let r = f();
    (r, PEAK.load(Relaxed) - base)
}

fn wav(channels: u16, rate: u32, data_len: u32, data: &[u8]) -> Vec<u8> {
    let riff_len = if data_len == u32::MAX { u32::MAX } else { 36 + data_len };
    let align = 2 * channels;
    let mut v = b"RIFF".to_vec();
    v.extend_from_slice(&riff_len.to_le_bytes());
    v.extend_from_slice(b"WAVEfmt \x10\x00\x00\x00\x01\x00");
    v.extend_from_slice(&channels.to_le_bytes());
    v.extend_from_slice(&rate.to_le_bytes());
    v.extend_from_slice(&rate.wrapping_mul(u32::from(align)).to_le_bytes());
    v.extend_from_slice(&align.to_le_bytes());
    v.extend_from_slice(&16u16.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&data_len.to_le_bytes());
    v.extend_from_slice(data);
    v
}

fn noise(bytes: usize) -> Vec<u8> {
    let mut x = 0x2545_f491u32;
    (0..bytes)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8 / 4
        })
        .collect()
}

#[test]
fn no_clip_costs_more_than_twice_its_decoded_size_limit_plus_128_mib() {
    const FIXED: usize = 128 << 20;
    let dir = tempfile::tempdir().unwrap();
    // (name, file, max_seconds, plugin rate); the clip rate is in the header.
    let cases: Vec<(&str, Vec<u8>, f32, u32)> = vec![
        ("8 KB declaring 0xFFFFFFFF Hz", wav(1, u32::MAX, 8192, &noise(8192)), 2.0, 22_050),
        ("768 kHz, 8 channels, data length 4 GB", wav(8, 768_000, u32::MAX, &noise(1 << 20)), 2.0, 22_050),
        // Rates without a common factor make rubato's FFTs as large as they get.
        ("767999 Hz to 22050 Hz", wav(1, 767_999, 3 << 20, &noise(3 << 20)), 2.0, 22_050),
        ("767999 Hz to 768000 Hz", wav(1, 767_999, 3 << 20, &noise(3 << 20)), 2.0, 768_000),
        ("768000 Hz to 767999 Hz", wav(1, 768_000, 3 << 20, &noise(3 << 20)), 2.0, 767_999),
        ("1009 Hz to 768000 Hz", wav(1, 1_009, 20_000, &noise(20_000)), 2.0, 768_000),
        ("1000 Hz to 767999 Hz", wav(1, 1_000, 20_000, &noise(20_000)), 2.0, 767_999),
        ("10 s at 48 kHz, capped at 2 s", wav(2, 48_000, 1_920_000, &noise(1_920_000)), 2.0, 22_050),
        ("1 minute at 44.1 kHz, default cap", wav(2, 44_100, 10_584_000, &noise(10_584_000)), 600.0, 16_000),
    ];
    let mut over = Vec::new();
    for (what, bytes, max_seconds, to) in cases {
        let path = dir.path().join("clip.wav");
        std::fs::write(&path, &bytes).unwrap();
        let header_rate = u32::from_le_bytes(bytes[24..28].try_into().unwrap());
        let (out, peak) = peak_of(|| audio::load(&path, to, Some(max_seconds)));
        let rate = header_rate.clamp(*audio::CLIP_RATES.start(), *audio::CLIP_RATES.end()).max(to);
        let limit = (f64::from(max_seconds) * f64::from(rate) * 4.0) as usize;
        let decoded = (bytes.len().saturating_sub(44) / 2) as f64 / f64::from(u16::from_le_bytes([bytes[22], bytes[23]]));
        let seconds = match &out {
            Ok(x) => format!("{:.2} s out", x.len() as f64 / f64::from(to)),
            Err(e) => format!("refused: {e}"),
        };
        eprintln!(
            "{what}: file {} KiB, {decoded:.0} frames in it, peak {:.1} MiB, bound {:.1} MiB; {seconds}",
            bytes.len() >> 10,
            peak as f64 / 1048576.0,
            (2 * limit + FIXED) as f64 / 1048576.0
        );
        if peak > 2 * limit + FIXED {
            over.push(format!("{what}: peak {peak} bytes > 2 × {limit} + {FIXED}"));
        }
    }
    assert!(over.is_empty(), "{over:#?}");
}
