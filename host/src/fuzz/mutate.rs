//! The seeded mutation engine: byte- and text-level changes to a valid input, biased towards the
//! places parsers trust (the first and last bytes, where headers and footers live; numbers in
//! text), with values that break naive arithmetic (0, -1, 2³²-1, NaN, 1e308, huge lengths).
use rand::rngs::StdRng;
use rand::Rng;

/// Numbers written into text inputs (TSV fields, TOML values), in place of a number.
pub const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "2",
    "255",
    "65535",
    "65536",
    "2147483647",
    "2147483648",
    "-2147483649",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999999",
    "1e308",
    "1e309",
    "-1e308",
    "5e-324",
    "1e-320",
    "nan",
    "-nan",
    "NaN",
    "inf",
    "-inf",
    "+inf",
    "0.0",
    "-0.0",
    "0.5",
    "1.0000001",
    "0x7fffffff",
    "1_000",
];

/// Integers written in binary (little- or big-endian, 1 to 8 bytes).
const INTEGERS: &[u64] = &[
    0,
    1,
    2,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0x8000,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    0x7fff_ffff_ffff_ffff,
    0x8000_0000_0000_0000,
    u64::MAX,
    u64::MAX - 1,
    16,
    32,
    44,
    1000,
    1024,
    4096,
    44_100,
    768_000,
    768_001,
];

/// The first and last bytes of a file hold its header and footer: a third of byte positions are
/// drawn from each end.
const EDGE: usize = 64;

/// Mutates inputs from one random generator, so a run is a function of its seed.
pub struct Mutator {
    rng: StdRng,
    dict: &'static [&'static [u8]],
    text: bool,
    max_len: usize,
}

impl Mutator {
    /// A mutator drawing from `rng`; `dict` holds tokens of the format (keys, markers, magic
    /// bytes); `text` enables the line and number mutations; inputs never grow past `max_len`.
    pub fn new(rng: StdRng, dict: &'static [&'static [u8]], text: bool, max_len: usize) -> Self {
        Mutator { rng, dict, text, max_len }
    }

    /// The generator, for choices outside the mutations (which input to start from).
    pub fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }

    /// `base` changed 1 to 16 times (fewer more often); `other` is spliced in at times.
    pub fn mutate(&mut self, base: &[u8], other: &[u8]) -> Vec<u8> {
        let mut v = base.to_vec();
        let n = 1usize << self.rng.random_range(0..5u32);
        let n = self.rng.random_range(1..=n);
        for _ in 0..n {
            self.step(&mut v, other);
        }
        v.truncate(self.max_len);
        v
    }

    /// A position in `0..=len` (`0..len` with `inside`), a third of the time near either end.
    fn pos(&mut self, len: usize, inside: bool) -> usize {
        let n = if inside { len } else { len + 1 };
        if n == 0 {
            return 0;
        }
        match self.rng.random_range(0..6u32) {
            0 | 1 => self.rng.random_range(0..n.min(EDGE)),
            2 => n - 1 - self.rng.random_range(0..n.min(EDGE)),
            _ => self.rng.random_range(0..n),
        }
    }

    /// A length, mostly short, at times long.
    fn len(&mut self, max: usize) -> usize {
        if max == 0 {
            return 0;
        }
        let cap = match self.rng.random_range(0..8u32) {
            0 => max,
            1 | 2 => max.min(256),
            _ => max.min(8),
        };
        self.rng.random_range(1..=cap)
    }

    fn step(&mut self, v: &mut Vec<u8>, other: &[u8]) {
        let room = self.max_len.saturating_sub(v.len());
        match self.rng.random_range(0..15u32) {
            // Flip one bit.
            0 if !v.is_empty() => {
                let i = self.pos(v.len(), true);
                v[i] ^= 1 << self.rng.random_range(0..8u32);
            }
            // A random byte, at times a special one.
            1 if !v.is_empty() => {
                let i = self.pos(v.len(), true);
                const SPECIAL: &[u8] = b"\0\t\n\r \"'\\[]{}=,.:-+#\x7f\x80\xc3\xff";
                v[i] = if self.rng.random_bool(0.5) { SPECIAL[self.rng.random_range(0..SPECIAL.len())] } else { self.rng.random() };
            }
            // Insert random bytes.
            2 if room > 0 => {
                let i = self.pos(v.len(), false);
                let n = self.len(room.min(32));
                let bytes: Vec<u8> = (0..n).map(|_| self.rng.random()).collect();
                v.splice(i..i, bytes);
            }
            // Delete a range.
            3 if !v.is_empty() => {
                let i = self.pos(v.len(), true);
                let n = self.len(v.len() - i);
                v.drain(i..i + n);
            }
            // Copy a chunk of the input somewhere else in it.
            4 if !v.is_empty() && room > 0 => {
                let a = self.pos(v.len(), true);
                let n = self.len((v.len() - a).min(room));
                let chunk = v[a..a + n].to_vec();
                let b = self.pos(v.len(), false);
                v.splice(b..b, chunk);
            }
            // Overwrite with a chunk of the input from elsewhere.
            5 if v.len() > 1 => {
                let a = self.pos(v.len(), true);
                let b = self.pos(v.len(), true);
                let n = self.len((v.len() - a).min(v.len() - b));
                let chunk = v[a..a + n].to_vec();
                v[b..b + n].copy_from_slice(&chunk);
            }
            // Splice with another input: a prefix of this one and a suffix of the other, or a
            // chunk of the other inserted.
            6 if !other.is_empty() => {
                let a = self.pos(v.len(), false);
                let b = self.pos(other.len(), true);
                if self.rng.random_bool(0.5) {
                    let keep = self.max_len.saturating_sub(a).max(1);
                    v.truncate(a);
                    v.extend_from_slice(&other[b..other.len().min(b + keep)]);
                } else if room > 0 {
                    let n = self.len((other.len() - b).min(room));
                    v.splice(a..a, other[b..b + n].iter().copied());
                }
            }
            // An interesting integer in binary, over bytes already there.
            7 if !v.is_empty() => {
                let width = [1usize, 2, 4, 8][self.rng.random_range(0..4)];
                let mut x = INTEGERS[self.rng.random_range(0..INTEGERS.len())];
                if self.rng.random_bool(0.2) {
                    x = x.wrapping_neg();
                }
                let bytes = if self.rng.random_bool(0.8) { x.to_le_bytes() } else { (x << (64 - 8 * width as u32).min(63)).to_be_bytes() };
                let i = self.pos(v.len(), true);
                let n = width.min(v.len() - i);
                v[i..i + n].copy_from_slice(&bytes[..n]);
            }
            // Add or subtract a little at a byte or a 32-bit word.
            8 if !v.is_empty() => {
                let i = self.pos(v.len(), true);
                let d = self.rng.random_range(1..=35u32);
                if v.len() - i >= 4 && self.rng.random_bool(0.5) {
                    let w = u32::from_le_bytes([v[i], v[i + 1], v[i + 2], v[i + 3]]);
                    let w = if self.rng.random_bool(0.5) { w.wrapping_add(d) } else { w.wrapping_sub(d) };
                    v[i..i + 4].copy_from_slice(&w.to_le_bytes());
                } else {
                    v[i] = if self.rng.random_bool(0.5) { v[i].wrapping_add(d as u8) } else { v[i].wrapping_sub(d as u8) };
                }
            }
            // A token of the format, inserted or written over.
            9 | 10 if !self.dict.is_empty() => {
                let t = self.dict[self.rng.random_range(0..self.dict.len())];
                let i = self.pos(v.len(), false);
                if self.rng.random_bool(0.5) && v.len() >= i + t.len() {
                    v[i..i + t.len()].copy_from_slice(t);
                } else if room >= t.len() {
                    v.splice(i..i, t.iter().copied());
                }
            }
            // A number in text replaced by an interesting one.
            11 if self.text => self.number(v),
            // Lines: duplicated, deleted, swapped.
            12 if self.text => self.line(v),
            // Truncated.
            13 if !v.is_empty() => {
                let i = self.pos(v.len(), true);
                v.truncate(i);
            }
            // A chunk repeated many times (long lines, many rows, deep nesting).
            14 if !v.is_empty() && room > 0 => {
                let a = self.pos(v.len(), true);
                let n = self.len((v.len() - a).min(16));
                let times = 1 + (room / n).min(1 << self.rng.random_range(0..12u32));
                let chunk = v[a..a + n].repeat(times);
                v.splice(a..a, chunk);
            }
            _ => {
                // The mutation did not apply (empty input, no room): grow from nothing.
                if room > 0 {
                    v.push(self.rng.random());
                }
            }
        }
    }

    /// Replaces the run of number characters at or after a random position.
    fn number(&mut self, v: &mut Vec<u8>) {
        let is_num = |b: u8| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E' | b'_');
        let from = self.pos(v.len(), false);
        let Some(start) = v[from..].iter().position(|b| b.is_ascii_digit()).map(|p| from + p) else { return };
        let start = (0..start).rev().take_while(|&i| is_num(v[i])).last().unwrap_or(start);
        let end = start + v[start..].iter().take_while(|&&b| is_num(b)).count();
        let n = NUMBERS[self.rng.random_range(0..NUMBERS.len())];
        v.splice(start..end, n.bytes());
    }

    /// Duplicates, deletes or swaps whole lines.
    fn line(&mut self, v: &mut Vec<u8>) {
        let mut starts: Vec<usize> = vec![0];
        starts.extend(v.iter().enumerate().filter(|(_, &b)| b == b'\n').map(|(i, _)| i + 1).filter(|&i| i < v.len()));
        let span = |k: usize| starts[k]..starts.get(k + 1).copied().unwrap_or(v.len());
        let a = span(self.rng.random_range(0..starts.len()));
        let b = span(self.rng.random_range(0..starts.len()));
        match self.rng.random_range(0..3u32) {
            0 => {
                let line = v[a.clone()].to_vec();
                let at = b.start;
                let times = if self.rng.random_bool(0.1) { 1 + self.max_len / line.len().max(1) / 2 } else { 1 };
                let add = line.repeat(times.min(self.max_len.saturating_sub(v.len()) / line.len().max(1)));
                v.splice(at..at, add);
            }
            1 => {
                v.drain(a);
            }
            _ => {
                if a.end <= b.start {
                    let (la, lb) = (v[a.clone()].to_vec(), v[b.clone()].to_vec());
                    v.splice(b, la);
                    v.splice(a, lb);
                }
            }
        }
    }
}
