//! The HLL registers of serialized sketches, read and written directly: the union's dense
//! path merges registers without a decode and estimates from an HLL_8 image.

use super::*;

/// DataSketches HLL serialization constants (the format is documented by Apache
/// DataSketches and read by its Java, C++ and Python libraries).
pub(super) const HLL_PREAMBLE: usize = 40;
pub(super) const CUR_MODE_LIST: u8 = 0;
pub(super) const CUR_MODE_SET: u8 = 1;
pub(super) const CUR_MODE_HLL: u8 = 2;
pub(super) const TGT_HLL4: u8 = 0;
pub(super) const TGT_HLL8: u8 = 2;
pub(super) const EMPTY_FLAG: u8 = 4;
/// A coupon is a 26-bit address (the register is its low `lg_k` bits) under a 6-bit value.
pub(super) const COUPON_ADDRESS_BITS: u32 = 26;
/// An HLL_4 nibble that means "the value is in the exception table".
pub(super) const AUX_TOKEN: u8 = 15;

/// The largest register value: a coupon holds it in 6 bits.
pub(super) const MAX_REGISTER: u8 = 63;

pub(super) fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// Raises `registers` to the values held by `bytes`, a serialization this library version
/// wrote at `lg_k` (list, set, HLL_4 or HLL_8). False, with `registers` possibly partly
/// raised, for anything else (HLL_6, another precision, a short image): the caller then
/// leaves it to the library.
pub(super) fn max_into(bytes: &[u8], lg_k: u8, registers: &mut [u8]) -> bool {
    let k = 1usize << lg_k;
    if bytes.len() < 8 || bytes[3] != lg_k || registers.len() != k {
        return false;
    }
    let coupons = |registers: &mut [u8], from: usize, count: usize| -> bool {
        max_coupons_into(bytes, from, count, registers)
    };
    if bytes[5] & EMPTY_FLAG != 0 {
        return true;
    }
    match (bytes[7] & 3, (bytes[7] >> 2) & 3) {
        (CUR_MODE_LIST, _) => coupons(registers, 8, usize::from(bytes[6])),
        (CUR_MODE_SET, _) => match u32_at(bytes, 8) {
            Some(count) => coupons(registers, 12, count as usize),
            None => false,
        },
        (CUR_MODE_HLL, TGT_HLL8) => match bytes.get(HLL_PREAMBLE..HLL_PREAMBLE + k) {
            Some(values) => {
                registers
                    .iter_mut()
                    .zip(values)
                    .for_each(|(r, v)| *r = (*r).max(*v));
                true
            }
            None => false,
        },
        (CUR_MODE_HLL, TGT_HLL4) => {
            let cur_min = bytes[6];
            let Some(aux_count) = u32_at(bytes, 36) else {
                return false;
            };
            let Some(nibbles) = bytes.get(HLL_PREAMBLE..HLL_PREAMBLE + k / 2) else {
                return false;
            };
            for (pair, byte) in registers.chunks_exact_mut(2).zip(nibbles) {
                for (r, raw) in pair.iter_mut().zip([byte & 15, byte >> 4]) {
                    // An exception's value is at least cur_min + 15: the table below sets it.
                    let value = if raw < AUX_TOKEN {
                        cur_min + raw
                    } else {
                        cur_min
                    };
                    *r = (*r).max(value);
                }
            }
            coupons(registers, HLL_PREAMBLE + k / 2, aux_count as usize)
        }
        _ => false,
    }
}

/// Raises `registers` to the `count` coupons stored from byte `from` on.
pub(super) fn max_coupons_into(
    bytes: &[u8],
    from: usize,
    count: usize,
    registers: &mut [u8],
) -> bool {
    let mask = registers.len().wrapping_sub(1) as u32;
    for i in 0..count {
        let Some(c) = u32_at(bytes, from + 4 * i) else {
            return false;
        };
        let slot = (c & mask) as usize;
        let value = (c >> COUPON_ADDRESS_BITS) as u8;
        registers[slot] = registers[slot].max(value);
    }
    true
}

/// The HLL_8 serialization of `registers` (`2^lg_k` values) with the order-independent
/// estimator. Its register sums are computed from a histogram of the values: each term
/// `count x 2^-value` and every partial sum is exact in a double (at most 2^21 registers,
/// values below 64), so they equal the library's register-by-register sums bit for bit,
/// without a division per register.
pub(super) fn hll8_image(lg_k: u8, registers: impl Iterator<Item = u8>) -> Vec<u8> {
    let k = 1usize << lg_k;
    let mut image = Vec::with_capacity(HLL_PREAMBLE + k);
    image.extend_from_slice(&[
        10, // preamble ints
        1,  // serial version
        7,  // family: HLL
        lg_k,
        0,                 // lg_arr, unused in HLL mode
        OUT_OF_ORDER_FLAG, // composite estimator
        0,                 // cur_min, always 0 in HLL_8
        CUR_MODE_HLL | (TGT_HLL8 << 2),
    ]);
    image.resize(HLL_PREAMBLE, 0);
    image.extend(registers);
    let histogram = histogram(&image[HLL_PREAMBLE..]);
    let (mut kxq0, mut kxq1) = (0.0f64, 0.0f64);
    for (v, n) in histogram.iter().enumerate().filter(|(_, n)| **n > 0) {
        // 2^-v, built from its exponent bits (exact; v < 256 < 1023).
        let term = f64::from(*n) * f64::from_bits((1023 - v as u64) << 52);
        if v < 32 {
            kxq0 += term;
        } else {
            kxq1 += term;
        }
    }
    // hip_accum (8..16) stays 0: unused by the composite estimator.
    image[16..24].copy_from_slice(&kxq0.to_le_bytes());
    image[24..32].copy_from_slice(&kxq1.to_le_bytes());
    image[32..36].copy_from_slice(&histogram[0].to_le_bytes());
    // aux count (36..40) is 0 in HLL_8.
    image
}

/// How many registers hold each value. Counted in eight lanes merged at the end: most
/// registers of a sketch share a few values, and a single table's increments of one entry
/// wait on each other (a store-to-load chain per register; the histogram was a third of a
/// dense message's validation, #19).
fn histogram(registers: &[u8]) -> [u32; 256] {
    let mut lanes = [[0u32; 256]; 8];
    let mut octets = registers.chunks_exact(8);
    for octet in &mut octets {
        for (lane, v) in lanes.iter_mut().zip(octet) {
            lane[usize::from(*v)] += 1;
        }
    }
    for v in octets.remainder() {
        lanes[0][usize::from(*v)] += 1;
    }
    let [mut histogram, rest @ ..] = lanes;
    for (i, n) in histogram.iter_mut().enumerate() {
        *n += rest.iter().map(|lane| lane[i]).sum::<u32>();
    }
    histogram
}

/// The compact HLL_4 serialization of an HLL_8 image (`hll8`, as the library or
/// [`hll8_image`] wrote it), byte for byte what the library's conversion writes
/// (`to_sketch(Hll4)` on a union holding it), without its register-by-register updates:
/// encoding a dense minute bucket that way cost a third of a commit at 100 zones (#19).
///
/// `None` when the lowest register is above 0: the library then raises its 4-bit offset
/// while converting and rebuilds its exception table in an order of its own, so the caller
/// leaves that case (a minute of more than about 30,000 devices at precision 12) to it.
/// `hll4_image_equals_the_library_conversion` checks the bytes.
pub(super) fn hll4_image(hll8: &[u8], lg_k: u8) -> Option<Vec<u8>> {
    let k = 1usize << lg_k;
    let registers = hll8.get(HLL_PREAMBLE..HLL_PREAMBLE + k)?;
    if hll8[3] != lg_k || hll8[7] != CUR_MODE_HLL | (TGT_HLL8 << 2) {
        return None;
    }
    let mut exceptions = AuxTable::new(lg_k);
    let mut nibbles = Vec::with_capacity(k / 2);
    let (mut at_zero, mut highest) = (0u32, 0u8);
    for (i, pair) in registers.chunks_exact(2).enumerate() {
        let mut byte = 0u8;
        for (half, value) in pair.iter().copied().enumerate() {
            at_zero += u32::from(value == 0);
            highest = highest.max(value);
            let nibble = if value < AUX_TOKEN {
                value
            } else {
                exceptions.insert((2 * i + half) as u32, value);
                AUX_TOKEN
            };
            byte |= nibble << (4 * half);
        }
        nibbles.push(byte);
    }
    if at_zero == 0 || highest > MAX_REGISTER {
        return None;
    }
    let coupons = exceptions.coupons();
    let mut image = Vec::with_capacity(HLL_PREAMBLE + k / 2 + 4 * coupons.len());
    image.extend_from_slice(&[
        10,     // preamble ints
        1,      // serial version
        7,      // family: HLL
        lg_k,   // lg_k
        0,      // lg_arr, unused for a compact exception table
        8 | 16, // compact, composite estimator
        0,      // cur_min
        CUR_MODE_HLL | (TGT_HLL4 << 2),
    ]);
    // HIP accumulator and register sums: the estimator state the conversion carries over.
    image.extend_from_slice(hll8.get(8..32)?);
    image.extend_from_slice(&at_zero.to_le_bytes());
    image.extend_from_slice(&(coupons.len() as u32).to_le_bytes());
    image.extend_from_slice(&nibbles);
    coupons
        .iter()
        .for_each(|c| image.extend_from_slice(&c.to_le_bytes()));
    Some(image)
}

/// The library's HLL_4 exception table (DataSketches' `AuxHashMap`): open addressing with
/// an odd stride from the slot's high bits, grown at 3/4 load, serialized in table order,
/// so its entries come out in the order the library writes them.
struct AuxTable {
    lg_size: u8,
    entries: Vec<u32>,
    count: u32,
}

impl AuxTable {
    fn new(lg_k: u8) -> AuxTable {
        // DataSketches' LG_AUX_ARR_INTS by lg_k.
        const LG_AUX_ARR_INTS: [u8; 27] = [
            0, 2, 2, 2, 2, 2, 2, 3, 3, 3, 4, 4, 5, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17,
            18,
        ];
        let lg_size = LG_AUX_ARR_INTS[usize::from(lg_k).min(26)];
        AuxTable {
            lg_size,
            entries: vec![0; 1 << lg_size],
            count: 0,
        }
    }

    fn insert(&mut self, slot: u32, value: u8) {
        let coupon = (u32::from(value) << COUPON_ADDRESS_BITS) | slot;
        let at = Self::free_place(&self.entries, self.lg_size, slot);
        self.entries[at] = coupon;
        self.count += 1;
        if 4 * self.count > 3 * (1 << self.lg_size) {
            self.grow();
        }
    }

    /// The first empty place on `slot`'s probe sequence (the library's `find`; a slot is
    /// inserted once, so it is never found already there).
    fn free_place(entries: &[u32], lg_size: u8, slot: u32) -> usize {
        let mask = (1u32 << lg_size) - 1;
        let mut probe = slot & mask;
        while entries[probe as usize] != 0 {
            probe = (probe + ((slot >> lg_size) | 1)) & mask;
        }
        probe as usize
    }

    fn grow(&mut self) {
        let lg_size = self.lg_size + 1;
        let mut entries = vec![0u32; 1 << lg_size];
        let address = (1u32 << COUPON_ADDRESS_BITS) - 1;
        for coupon in self.entries.iter().filter(|c| **c != 0) {
            let at = Self::free_place(&entries, lg_size, coupon & address);
            entries[at] = *coupon;
        }
        self.lg_size = lg_size;
        self.entries = entries;
    }

    fn coupons(&self) -> Vec<u32> {
        self.entries.iter().copied().filter(|c| *c != 0).collect()
    }
}
