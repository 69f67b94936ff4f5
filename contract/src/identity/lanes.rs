//! The keyed BLAKE3 hash of many short messages at once: one message per SIMD lane.
//!
//! A device key is at most 32 bytes (a 16-byte domain and an address or slot key), so its
//! keyed BLAKE3 hash is one compression of one block, zero past the message, with the flags
//! CHUNK_START, CHUNK_END, ROOT and KEYED_HASH (BLAKE3 specification, §2.2–2.6). The
//! `blake3` crate computes one message at a time; its many-message kernels serve the chunks
//! of one long input and are not public. A replay hashes every frame's address, and the
//! crate's per-call path took a third of a windowed replay's time (#15), so this module runs
//! the same compression for 16 messages at once, the lanes of AVX-512 (or two AVX2
//! registers): 58-66 M hashes/s against the crate's 10.7 M/s on the benchmark machine.
//! Where neither is available (the Raspberry Pi's aarch64, old x86), [`hash_lanes`] asks the
//! crate per message: the result is the same bytes either way, which tests hold against the
//! crate for every lane and key length.

#![allow(unsafe_code)]

/// Messages hashed together.
pub const LANES: usize = 16;

/// Longest key after the domain: messages take half a BLAKE3 block, whose other half is zero.
pub const KEY_MAX: usize = 16;

/// Below this many messages the lanes cost more than the crate's one-message path (16 lanes
/// take about as long as 3 crate calls on AVX-512, 5 on AVX2).
#[cfg(any(target_arch = "x86_64", test))]
const FEWEST_WORTH_LANES: usize = 4;

/// BLAKE3's initialization vector (the SHA-256 IV).
#[cfg(any(target_arch = "x86_64", test))]
const IV: [u32; 4] = [0x6A09_E667, 0xBB67_AE85, 0x3C6E_F372, 0xA54F_F53A];

/// CHUNK_START | CHUNK_END | ROOT | KEYED_HASH: a whole keyed message in one block.
#[cfg(any(target_arch = "x86_64", test))]
const FLAGS: u32 = 1 | 2 | 8 | 16;

/// BLAKE3's message permutation, applied between rounds.
#[cfg(any(target_arch = "x86_64", test))]
const PERMUTATION: [usize; 16] = [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8];

/// Which message word each round reads at each position (the permutation applied 0..7 times).
#[cfg(any(target_arch = "x86_64", test))]
const SCHEDULE: [[usize; 16]; 7] = {
    let mut schedule = [[0usize; 16]; 7];
    let mut order = [0usize, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
    let mut round = 0;
    while round < 7 {
        schedule[round] = order;
        let mut next = [0usize; 16];
        let mut i = 0;
        while i < 16 {
            next[i] = order[PERMUTATION[i]];
            i += 1;
        }
        order = next;
        round += 1;
    }
    schedule
};

/// One 32-bit word of every lane.
type Word = [u32; LANES];

/// Up to [`LANES`] messages, each a 16-byte domain and a key of at most [`KEY_MAX`] bytes,
/// laid out word by word (the eight words a message can fill; the block's other eight are
/// zero).
pub struct Block {
    words: [Word; 8],
    lens: [u32; LANES],
    used: usize,
}

impl Block {
    /// An empty block.
    pub fn new() -> Block {
        Block {
            words: [[0; LANES]; 8],
            lens: [0; LANES],
            used: 0,
        }
    }

    /// Whether no lane holds a message.
    pub fn is_empty(&self) -> bool {
        self.used == 0
    }

    /// Whether every lane holds a message.
    pub fn is_full(&self) -> bool {
        self.used == LANES
    }

    /// Puts the message `domain || key` into the next lane. Keys longer than [`KEY_MAX`]
    /// bytes are cut there (no key of the contract is).
    #[inline]
    pub fn push(&mut self, domain: &[u8; 16], key: &[u8]) {
        debug_assert!(!self.is_full() && key.len() <= KEY_MAX);
        let lane = self.used;
        let len = key.len().min(KEY_MAX);
        let mut tail = [0u8; KEY_MAX];
        tail[..len].copy_from_slice(&key[..len]);
        for (w, bytes) in domain
            .chunks_exact(4)
            .chain(tail.chunks_exact(4))
            .enumerate()
        {
            self.words[w][lane] = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        }
        self.lens[lane] = (16 + len) as u32;
        self.used += 1;
    }

    /// Empties the block for the next messages (each push writes all of its lane's words).
    pub fn clear(&mut self) {
        self.used = 0;
    }
}

impl Default for Block {
    fn default() -> Block {
        Block::new()
    }
}

/// The first 16 bytes of the keyed BLAKE3 hash of each message of `block`, in lane order,
/// appended to `out`.
pub fn hash_lanes(key: &[u8; 32], block: &Block, out: &mut Vec<[u8; 16]>) {
    #[cfg(target_arch = "x86_64")]
    if block.used >= FEWEST_WORTH_LANES {
        let words = key_words(key);
        let mut hashes = [[0u32; 4]; LANES];
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, the one feature the function is compiled for.
            unsafe { compress_avx512(&words, block, &mut hashes) };
        } else if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, the one feature the function is compiled for.
            unsafe { compress_avx2(&words, block, &mut hashes) };
        } else {
            return per_message(key, block, out);
        }
        out.extend(hashes[..block.used].iter().map(|h| {
            let mut bytes = [0u8; 16];
            for (chunk, word) in bytes.chunks_exact_mut(4).zip(h) {
                chunk.copy_from_slice(&word.to_le_bytes());
            }
            bytes
        }));
        return;
    }
    per_message(key, block, out);
}

/// The crate's one-message path, for CPUs without the wide registers (and as the reference).
fn per_message(key: &[u8; 32], block: &Block, out: &mut Vec<[u8; 16]>) {
    for lane in 0..block.used {
        let mut bytes = [0u8; 32];
        for (w, chunk) in bytes.chunks_exact_mut(4).enumerate() {
            chunk.copy_from_slice(&block.words[w][lane].to_le_bytes());
        }
        let hash = blake3::keyed_hash(key, &bytes[..block.lens[lane] as usize]);
        let mut head = [0u8; 16];
        head.copy_from_slice(&hash.as_bytes()[..16]);
        out.push(head);
    }
}

/// The key as the compression's eight little-endian words.
#[cfg(any(target_arch = "x86_64", test))]
fn key_words(key: &[u8; 32]) -> zeroize::Zeroizing<[u32; 8]> {
    let mut words = zeroize::Zeroizing::new([0u32; 8]);
    for (word, bytes) in words.iter_mut().zip(key.chunks_exact(4)) {
        *word = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    }
    words
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn compress_avx512(key: &[u32; 8], block: &Block, out: &mut [[u32; 4]; LANES]) {
    compress(key, block, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn compress_avx2(key: &[u32; 8], block: &Block, out: &mut [[u32; 4]; LANES]) {
    compress(key, block, out);
}

/// The compression function of every lane; the loops over lanes are what the compiler turns
/// into vector instructions (the body is inlined into each `target_feature` wrapper).
#[cfg(any(target_arch = "x86_64", test))]
#[inline(always)]
fn compress(key: &[u32; 8], block: &Block, out: &mut [[u32; 4]; LANES]) {
    let mut v: [Word; 16] = [[0; LANES]; 16];
    for i in 0..8 {
        v[i] = [key[i]; LANES];
    }
    for i in 0..4 {
        v[8 + i] = [IV[i]; LANES];
    }
    // v[12], v[13]: the chunk counter, 0.
    v[14] = block.lens;
    v[15] = [FLAGS; LANES];
    let zero = [0; LANES];
    let w = &block.words;
    let m = [
        w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7], zero, zero, zero, zero, zero, zero, zero,
        zero,
    ];
    for schedule in &SCHEDULE {
        round(&mut v, &m, schedule);
    }
    for (lane, hash) in out.iter_mut().enumerate() {
        for (w, word) in hash.iter_mut().enumerate() {
            *word = v[w][lane] ^ v[w + 8][lane];
        }
    }
}

/// One round: the quarter-round on the columns, then on the diagonals.
#[cfg(any(target_arch = "x86_64", test))]
#[inline(always)]
fn round(v: &mut [Word; 16], m: &[Word; 16], s: &[usize; 16]) {
    g(v, [0, 4, 8, 12], &m[s[0]], &m[s[1]]);
    g(v, [1, 5, 9, 13], &m[s[2]], &m[s[3]]);
    g(v, [2, 6, 10, 14], &m[s[4]], &m[s[5]]);
    g(v, [3, 7, 11, 15], &m[s[6]], &m[s[7]]);
    g(v, [0, 5, 10, 15], &m[s[8]], &m[s[9]]);
    g(v, [1, 6, 11, 12], &m[s[10]], &m[s[11]]);
    g(v, [2, 7, 8, 13], &m[s[12]], &m[s[13]]);
    g(v, [3, 4, 9, 14], &m[s[14]], &m[s[15]]);
}

/// BLAKE3's quarter-round G on state words `[a, b, c, d]` with message words `x`, `y`.
#[cfg(any(target_arch = "x86_64", test))]
#[inline(always)]
fn g(v: &mut [Word; 16], [a, b, c, d]: [usize; 4], x: &Word, y: &Word) {
    for lane in 0..LANES {
        let (mut va, mut vb, mut vc, mut vd) = (v[a][lane], v[b][lane], v[c][lane], v[d][lane]);
        va = va.wrapping_add(vb).wrapping_add(x[lane]);
        vd = (vd ^ va).rotate_right(16);
        vc = vc.wrapping_add(vd);
        vb = (vb ^ vc).rotate_right(12);
        va = va.wrapping_add(vb).wrapping_add(y[lane]);
        vd = (vd ^ va).rotate_right(8);
        vc = vc.wrapping_add(vd);
        vb = (vb ^ vc).rotate_right(7);
        v[a][lane] = va;
        v[b][lane] = vb;
        v[c][lane] = vc;
        v[d][lane] = vd;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys of every length 0..=16 with varied bytes, after a domain.
    const DOMAIN: &[u8; 16] = b"crowdflow/v1/tst";

    fn keys() -> Vec<Vec<u8>> {
        (0..=KEY_MAX)
            .map(|len| (0..len).map(|i| (i * 37 + len * 11) as u8).collect())
            .collect()
    }

    fn message(key: &[u8]) -> Vec<u8> {
        [&DOMAIN[..], key].concat()
    }

    fn crate_hash(key: &[u8; 32], message: &[u8]) -> [u8; 16] {
        let mut head = [0u8; 16];
        head.copy_from_slice(&blake3::keyed_hash(key, message).as_bytes()[..16]);
        head
    }

    #[test]
    fn every_lane_equals_the_crates_keyed_hash() {
        for key in [[0u8; 32], [0xa5; 32], std::array::from_fn(|i| i as u8 * 7)] {
            let all = keys();
            for group in all.chunks(LANES - 3).chain([&all[..LANES], &all[1..]]) {
                let mut block = Block::new();
                for k in group {
                    block.push(DOMAIN, k);
                }
                let mut out = Vec::new();
                hash_lanes(&key, &block, &mut out);
                let expected: Vec<_> = group
                    .iter()
                    .map(|k| crate_hash(&key, &message(k)))
                    .collect();
                assert_eq!(out, expected);
            }
        }
    }

    /// A full block of keys 1..=16 bytes long, and their hashes by the crate.
    fn full_block(key: &[u8; 32]) -> (Block, Vec<[u8; 16]>) {
        let all = keys();
        let mut block = Block::new();
        for k in &all[1..] {
            block.push(DOMAIN, k);
        }
        let expected = all[1..]
            .iter()
            .map(|k| crate_hash(key, &message(k)))
            .collect();
        (block, expected)
    }

    fn as_bytes(hashes: [[u32; 4]; LANES]) -> Vec<[u8; 16]> {
        hashes
            .iter()
            .map(|h| std::array::from_fn(|i| h[i / 4].to_le_bytes()[i % 4]))
            .collect()
    }

    #[test]
    fn the_portable_compression_equals_the_crate_too() {
        // The kernel without target features (plain code), so the arithmetic is checked on
        // every CPU, also where the wide paths are not taken.
        let key = [3u8; 32];
        let (block, expected) = full_block(&key);
        let mut hashes = [[0u32; 4]; LANES];
        compress(&key_words(&key), &block, &mut hashes);
        assert_eq!(as_bytes(hashes), expected);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn each_wide_kernel_this_cpu_has_equals_the_crate() {
        let key = [0x5au8; 32];
        let (block, expected) = full_block(&key);
        let words = key_words(&key);
        if std::arch::is_x86_feature_detected!("avx512f") {
            let mut hashes = [[0u32; 4]; LANES];
            // SAFETY: the CPU has AVX-512F.
            unsafe { compress_avx512(&words, &block, &mut hashes) };
            assert_eq!(as_bytes(hashes), expected);
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            let mut hashes = [[0u32; 4]; LANES];
            // SAFETY: the CPU has AVX2.
            unsafe { compress_avx2(&words, &block, &mut hashes) };
            assert_eq!(as_bytes(hashes), expected);
        }
    }

    #[test]
    fn a_cleared_block_hashes_its_new_messages_only() {
        let key = [9u8; 32];
        let mut block = Block::new();
        for _ in 0..LANES {
            block.push(DOMAIN, b"sixteen bytes...");
        }
        block.clear();
        for _ in 0..5 {
            block.push(DOMAIN, b"ab");
        }
        let mut out = Vec::new();
        hash_lanes(&key, &block, &mut out);
        assert_eq!(out, vec![crate_hash(&key, &message(b"ab")); 5]);
    }
}
