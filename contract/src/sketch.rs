//! The cardinality sketch: Apache DataSketches HLL, HLL_4 on the wire.
//!
//! [`Sketch`] counts distinct [`DeviceHash`]es; [`SketchUnion`] merges many sketches of the
//! same precision (union is commutative, associative and idempotent, so replays and
//! at-least-once delivery never inflate counts). Every count is an [`Estimate`] that carries
//! its bounds. The byte format is the Apache DataSketches HLL serialization, readable by the
//! Java, C++ and Python libraries.

use std::borrow::Cow;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;

use datasketches::common::NumStdDev;
use datasketches::hash::value::raw_bytes;
use datasketches::hll::{HllSketch, HllType, HllUnion};
use serde::{Deserialize, Serialize};

use crate::identity::DeviceHash;

/// Smallest and largest `lg_k` the codec accepts.
pub const LG_K_RANGE: std::ops::RangeInclusive<u8> = 4..=21;

/// Errors of the sketch codec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SketchError {
    /// `lg_k` outside what the codec supports.
    #[error("lg_k must be between 4 and 21, got {0}")]
    Precision(u8),
    /// The bytes are not a DataSketches HLL sketch.
    #[error("sketch bytes do not decode: {0}")]
    Undecodable(String),
    /// The sketch decodes but has another precision than expected.
    #[error("sketch has lg_k {found}, expected {expected}")]
    WrongPrecision {
        /// The precision this deployment uses.
        expected: u8,
        /// The precision of the received sketch.
        found: u8,
    },
    /// The sketch decodes but is not in the HLL_4 layout the wire requires.
    #[error("sketch is not in the HLL_4 layout")]
    WrongLayout,
}

/// The sketch precision: `2^lg_k` registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct Precision(u8);

impl Precision {
    /// The default, `lg_k = 14`: 16384 registers, relative standard error 0.81 %,
    /// 8.2 KiB dense in HLL_4.
    pub const DEFAULT: Precision = Precision(14);

    /// Validates `lg_k` against [`LG_K_RANGE`].
    pub fn new(lg_k: u8) -> Result<Self, SketchError> {
        if LG_K_RANGE.contains(&lg_k) {
            Ok(Precision(lg_k))
        } else {
            Err(SketchError::Precision(lg_k))
        }
    }

    /// The `lg_k`.
    pub fn lg_k(self) -> u8 {
        self.0
    }

    /// The asymptotic relative standard error, `1.04 / sqrt(2^lg_k)`.
    pub fn relative_standard_error(self) -> f64 {
        1.04 / f64::from(1u32 << self.0).sqrt()
    }
}

impl Default for Precision {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl TryFrom<u8> for Precision {
    type Error = SketchError;
    fn try_from(lg_k: u8) -> Result<Self, Self::Error> {
        Precision::new(lg_k)
    }
}

impl From<Precision> for u8 {
    fn from(p: Precision) -> u8 {
        p.0
    }
}

/// How wide a confidence interval is, in standard deviations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Confidence {
    /// ~68 %.
    OneSigma,
    /// ~95 %: the default everywhere users see a number.
    #[default]
    TwoSigma,
    /// ~99.7 %.
    ThreeSigma,
}

impl Confidence {
    fn std_devs(self) -> NumStdDev {
        match self {
            Confidence::OneSigma => NumStdDev::One,
            Confidence::TwoSigma => NumStdDev::Two,
            Confidence::ThreeSigma => NumStdDev::Three,
        }
    }
}

/// A count with its confidence bounds: the only way a count is handed out.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// The point estimate.
    pub estimate: f64,
    /// Lower bound of the confidence interval.
    pub lower: f64,
    /// Upper bound of the confidence interval.
    pub upper: f64,
}

impl Estimate {
    /// An exact zero.
    pub const ZERO: Estimate = Estimate {
        estimate: 0.0,
        lower: 0.0,
        upper: 0.0,
    };

    /// Whether `value` lies within the bounds.
    pub fn contains(&self, value: f64) -> bool {
        self.lower <= value && value <= self.upper
    }

    /// Sum of estimates of disjoint sets (bounds add up, which is conservative).
    pub fn sum(self, other: Estimate) -> Estimate {
        Estimate {
            estimate: self.estimate + other.estimate,
            lower: self.lower + other.lower,
            upper: self.upper + other.upper,
        }
    }

    /// Multiplies estimate and bounds by a non-negative factor (e.g. a calibration).
    pub fn scale(self, factor: f64) -> Estimate {
        Estimate {
            estimate: self.estimate * factor,
            lower: self.lower * factor,
            upper: self.upper * factor,
        }
    }
}

impl fmt::Display for Estimate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:.1} [{:.1}, {:.1}]",
            self.estimate, self.lower, self.upper
        )
    }
}

/// Preamble byte that holds the flags, and the out-of-order flag in it.
const FLAGS_BYTE: usize = 5;
const OUT_OF_ORDER_FLAG: u8 = 16;

/// Marks serialized sketch bytes as out-of-order, which selects the composite estimator.
fn mark_order_independent(bytes: &mut [u8]) {
    if let Some(flags) = bytes.get_mut(FLAGS_BYTE) {
        *flags |= OUT_OF_ORDER_FLAG;
    }
}

/// A distinct-count sketch of device hashes.
#[derive(Clone)]
pub struct Sketch {
    inner: HllSketch,
    /// Whether `inner` already uses the order-independent estimator.
    canonical: bool,
}

impl fmt::Debug for Sketch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Sketch(lg_k={}, estimate={:.1})",
            self.inner.lg_config_k(),
            self.inner.estimate()
        )
    }
}

impl Sketch {
    /// An empty sketch. Inserts go to the HLL_8 layout (fastest to update); [`Sketch::encode`]
    /// writes HLL_4.
    pub fn new(precision: Precision) -> Sketch {
        Sketch {
            inner: new_hll(precision, HllType::Hll8),
            canonical: false,
        }
    }

    /// Counts one device.
    #[inline]
    pub fn insert(&mut self, device: &DeviceHash) {
        self.inner.update(raw_bytes::from_slice(device.as_bytes()));
        self.canonical = false;
    }

    /// Counts a value that is already an opaque key (tests, simulators, benchmarks).
    /// Never pass a device address here: unsalted, it would make the sketch testable
    /// for membership by anyone; addresses go through [`crate::identity::hash_device`].
    #[inline]
    pub fn insert_bytes(&mut self, key: &[u8]) {
        self.inner.update(raw_bytes::from_slice(key));
        self.canonical = false;
    }

    /// The precision.
    pub fn precision(&self) -> Precision {
        Precision(self.inner.lg_config_k())
    }

    /// Whether nothing was inserted.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// The distinct count with 2-sigma bounds.
    pub fn estimate(&self) -> Estimate {
        self.estimate_at(Confidence::default())
    }

    /// The distinct count with bounds at the given confidence.
    pub fn estimate_at(&self, confidence: Confidence) -> Estimate {
        let n = confidence.std_devs();
        let sketch = self.canonical();
        Estimate {
            estimate: sketch.inner.estimate(),
            lower: sketch.inner.lower_bound(n),
            upper: sketch.inner.upper_bound(n),
        }
    }

    /// This sketch with the order-independent estimator (a copy only if it was fed in
    /// memory since it was decoded or read).
    ///
    /// The composite estimate and its bounds are functions of the registers alone (the
    /// register sums the estimator keeps are sums of powers of two that a double holds
    /// exactly, whatever the order), so flagging the HLL_8 image out-of-order gives the
    /// estimate the wire round trip (HLL_4 encode, decode, rebuild) gives, at the cost of two
    /// copies instead of a re-encoding; `fast_estimates_equal_the_wire_round_trip` checks it.
    fn canonical(&self) -> Cow<'_, Sketch> {
        if self.canonical {
            return Cow::Borrowed(self);
        }
        let mut bytes = if self.inner.target_type() == HllType::Hll8 {
            self.inner.serialize()
        } else {
            let mut union =
                HllUnion::new(self.inner.lg_config_k()).unwrap_or_else(|_| unreachable_precision());
            union.update(&self.inner);
            union.to_sketch(HllType::Hll8).serialize()
        };
        mark_order_independent(&mut bytes);
        match deserialize(&bytes) {
            Ok(inner) => Cow::Owned(Sketch {
                inner,
                canonical: true,
            }),
            Err(_) => Cow::Borrowed(self),
        }
    }

    /// Unions `other` into this sketch.
    pub fn merge(&mut self, other: &Sketch) {
        let mut union = SketchUnion::new(self.precision());
        union.add(self);
        union.add(other);
        *self = union.to_sketch();
    }

    /// The wire bytes: DataSketches HLL serialization in the HLL_4 layout.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = if self.inner.target_type() == HllType::Hll4 {
            self.inner.serialize()
        } else {
            let mut union =
                HllUnion::new(self.inner.lg_config_k()).unwrap_or_else(|_| unreachable_precision());
            union.update(&self.inner);
            union.to_sketch(HllType::Hll4).serialize()
        };
        mark_order_independent(&mut bytes);
        bytes
    }

    /// Storage bytes for sketches that are merged over and over (hour and day buckets):
    /// HLL_8, which a union merges about 5x faster than HLL_4 (benches/sketch.rs) at twice
    /// the dense size. Read back with [`Sketch::from_stored`]; never sent on the wire.
    pub fn encode_for_merging(&self) -> Vec<u8> {
        let mut bytes = if self.inner.target_type() == HllType::Hll8 {
            self.inner.serialize()
        } else {
            let mut union =
                HllUnion::new(self.inner.lg_config_k()).unwrap_or_else(|_| unreachable_precision());
            union.update(&self.inner);
            union.to_sketch(HllType::Hll8).serialize()
        };
        mark_order_independent(&mut bytes);
        bytes
    }

    /// Decodes wire bytes, requiring the HLL_4 layout and the deployment's precision.
    ///
    /// Total: any byte string gives a sketch or an error, never a panic (the third-party
    /// decoder is additionally fenced with `catch_unwind`, so ingest survives a bug in it).
    /// Nothing derived is trusted: the library's decoder believes the serialized estimator
    /// fields (zeroed `kxq` sums decode to an infinite count), so the registers are copied
    /// through a union, which recomputes them. And a sketch is only accepted if its
    /// re-encoding decodes again: the fuzzer found SET-mode inputs that decode but
    /// re-encode into bytes that do not, which would poison storage.
    pub fn decode(bytes: &[u8], expected: Precision) -> Result<Sketch, SketchError> {
        let mut bytes = bytes.to_vec();
        mark_order_independent(&mut bytes);
        let received = deserialize(&bytes)?;
        if received.lg_config_k() != expected.0 {
            return Err(SketchError::WrongPrecision {
                expected: expected.0,
                found: received.lg_config_k(),
            });
        }
        if received.target_type() != HllType::Hll4 {
            return Err(SketchError::WrongLayout);
        }
        let mut union = HllUnion::new(expected.0).unwrap_or_else(|_| unreachable_precision());
        union.update(&received);
        let rebuilt = union.to_sketch(HllType::Hll8);
        let mut check = rebuilt.serialize();
        mark_order_independent(&mut check);
        if deserialize(&check).is_err() || !rebuilt.estimate().is_finite() {
            return Err(SketchError::Undecodable(
                "inconsistent sketch (does not survive re-encoding)".into(),
            ));
        }
        Ok(Sketch {
            inner: rebuilt,
            canonical: true,
        })
    }

    /// Reads bytes this crate's [`Sketch::encode`] wrote into trusted storage, without the
    /// register rebuild and re-encoding check of [`Sketch::decode`] (those defend against
    /// hostile input; storage only ever holds sketches that passed them). Still total: bad
    /// bytes give an error, never a panic.
    pub fn from_stored(bytes: &[u8], expected: Precision) -> Result<Sketch, SketchError> {
        let mut bytes = bytes.to_vec();
        mark_order_independent(&mut bytes);
        let inner = deserialize(&bytes)?;
        if inner.lg_config_k() != expected.0 {
            return Err(SketchError::WrongPrecision {
                expected: expected.0,
                found: inner.lg_config_k(),
            });
        }
        Ok(Sketch {
            inner,
            canonical: true,
        })
    }

    /// Approximate heap size in bytes.
    pub fn memory_size(&self) -> usize {
        self.inner.estimated_size()
    }
}

/// A running union of sketches of one precision.
///
/// Sparse inputs (the library's coupon lists and sets) are unioned by the library, which
/// decides when the union turns dense exactly as before. From the first dense input on, the
/// union is one byte per register, merged by `max` in place: the library would rebuild its
/// estimator after every merge (a pass over all registers with a division each) and copy
/// the first input; here the estimator is built once, when an estimate is asked for. The
/// estimates are the library's, from an HLL_8 image of the registers (see
/// [`Sketch::canonical`] for why they equal the wire round trip's).
#[derive(Clone)]
pub struct SketchUnion {
    state: UnionState,
    precision: Precision,
    /// The default estimate, once computed (cleared by every add).
    estimate: OnceLock<Estimate>,
}

#[derive(Clone)]
enum UnionState {
    /// Every input so far was sparse, or one was not readable as registers (another
    /// precision or layout): the library's union.
    Library(HllUnion),
    /// One register per byte, `2^lg_k` of them.
    Dense(Box<[u8]>),
}

impl fmt::Debug for SketchUnion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.state {
            UnionState::Library(_) => "library",
            UnionState::Dense(_) => "dense",
        };
        write!(f, "SketchUnion(lg_k={}, {mode})", self.precision.0)
    }
}

impl SketchUnion {
    /// An empty union.
    pub fn new(precision: Precision) -> SketchUnion {
        SketchUnion {
            state: UnionState::Library(
                HllUnion::new(precision.0).unwrap_or_else(|_| unreachable_precision()),
            ),
            precision,
            estimate: OnceLock::new(),
        }
    }

    /// Adds a sketch. Sketches of a higher precision are downsampled; callers keep one
    /// precision per deployment, which the decoder enforces.
    pub fn add(&mut self, sketch: &Sketch) {
        if sketch.is_empty() {
            return;
        }
        self.estimate = OnceLock::new();
        let lg_k = self.precision.0;
        match &mut self.state {
            UnionState::Dense(registers) => {
                if sketch.inner.lg_config_k() != lg_k
                    || !max_into(&sketch.inner.serialize(), lg_k, registers)
                {
                    let mut union = self.to_library();
                    union.update(&sketch.canonical().inner);
                    self.state = UnionState::Library(union);
                }
            }
            UnionState::Library(union) => {
                let bytes = sketch.inner.serialize();
                let dense_input = sketch.inner.lg_config_k() == lg_k
                    && union.lg_config_k() == lg_k
                    && bytes.get(7).map(|m| m & 3) == Some(CUR_MODE_HLL);
                if !dense_input {
                    union.update(&sketch.canonical().inner);
                    return;
                }
                let mut registers = vec![0u8; 1 << lg_k].into_boxed_slice();
                let gadget = union.to_sketch(HllType::Hll8).serialize();
                if max_into(&gadget, lg_k, &mut registers) && max_into(&bytes, lg_k, &mut registers)
                {
                    self.state = UnionState::Dense(registers);
                } else {
                    union.update(&sketch.canonical().inner);
                }
            }
        }
    }

    /// Adds every sketch of another union (of the same precision).
    pub fn add_union(&mut self, other: &SketchUnion) {
        match (&mut self.state, &other.state) {
            (UnionState::Dense(mine), UnionState::Dense(theirs)) if mine.len() == theirs.len() => {
                self.estimate = OnceLock::new();
                mine.iter_mut()
                    .zip(theirs.iter())
                    .for_each(|(a, b)| *a = (*a).max(*b));
            }
            _ => self.add(&other.to_sketch()),
        }
    }

    /// The distinct count of this union and `other` together with 2-sigma bounds, without
    /// changing either (one pass over both register arrays when both are dense).
    pub fn union_estimate(&self, other: &SketchUnion) -> Estimate {
        if let (UnionState::Dense(a), UnionState::Dense(b)) = (&self.state, &other.state)
            && a.len() == b.len()
        {
            let image = hll8_image(
                self.precision.0,
                a.iter().zip(b.iter()).map(|(x, y)| *x.max(y)),
            );
            if let Ok(inner) = deserialize(&image) {
                return estimate_of(&inner, Confidence::default());
            }
        }
        let mut both = self.clone();
        both.add_union(other);
        both.estimate()
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        match &self.state {
            UnionState::Library(union) => union.is_empty(),
            UnionState::Dense(registers) => registers.iter().all(|r| *r == 0),
        }
    }

    /// The distinct count of the union with 2-sigma bounds.
    pub fn estimate(&self) -> Estimate {
        *self
            .estimate
            .get_or_init(|| self.estimate_at(Confidence::default()))
    }

    /// The distinct count of the union at the given confidence.
    pub fn estimate_at(&self, confidence: Confidence) -> Estimate {
        self.to_sketch().estimate_at(confidence)
    }

    /// The union as a sketch. A library union's estimator is whatever the union's mode
    /// changes left it with, so it is canonicalized (see the module docs) before any
    /// estimate; a dense union's is built from its registers.
    pub fn to_sketch(&self) -> Sketch {
        match &self.state {
            UnionState::Library(union) => Sketch {
                inner: union.to_sketch(HllType::Hll8),
                canonical: false,
            },
            UnionState::Dense(registers) => {
                match deserialize(&hll8_image(self.precision.0, registers.iter().copied())) {
                    Ok(inner) => Sketch {
                        inner,
                        canonical: true,
                    },
                    Err(_) => unreachable!("an HLL_8 image of valid registers decodes"),
                }
            }
        }
    }

    /// The library's union of the same registers (for inputs the dense form cannot take).
    fn to_library(&self) -> HllUnion {
        match &self.state {
            UnionState::Library(union) => union.clone(),
            UnionState::Dense(_) => {
                let mut union =
                    HllUnion::new(self.precision.0).unwrap_or_else(|_| unreachable_precision());
                union.update(&self.to_sketch().inner);
                union
            }
        }
    }

    /// The precision of the union.
    pub fn precision(&self) -> Precision {
        self.precision
    }
}

/// An estimate with bounds at `confidence`, from a sketch whose estimator is already the
/// order-independent one.
fn estimate_of(inner: &HllSketch, confidence: Confidence) -> Estimate {
    let n = confidence.std_devs();
    Estimate {
        estimate: inner.estimate(),
        lower: inner.lower_bound(n),
        upper: inner.upper_bound(n),
    }
}

/// DataSketches HLL serialization constants (the format is documented by Apache
/// DataSketches and read by its Java, C++ and Python libraries).
const HLL_PREAMBLE: usize = 40;
const CUR_MODE_LIST: u8 = 0;
const CUR_MODE_SET: u8 = 1;
const CUR_MODE_HLL: u8 = 2;
const TGT_HLL4: u8 = 0;
const TGT_HLL8: u8 = 2;
const EMPTY_FLAG: u8 = 4;
/// A coupon is a 26-bit address (the register is its low `lg_k` bits) under a 6-bit value.
const COUPON_ADDRESS_BITS: u32 = 26;
/// An HLL_4 nibble that means "the value is in the exception table".
const AUX_TOKEN: u8 = 15;

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// Raises `registers` to the values held by `bytes`, a serialization this library version
/// wrote at `lg_k` (list, set, HLL_4 or HLL_8). False, with `registers` possibly partly
/// raised, for anything else (HLL_6, another precision, a short image): the caller then
/// leaves it to the library.
fn max_into(bytes: &[u8], lg_k: u8, registers: &mut [u8]) -> bool {
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
fn max_coupons_into(bytes: &[u8], from: usize, count: usize, registers: &mut [u8]) -> bool {
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
fn hll8_image(lg_k: u8, registers: impl Iterator<Item = u8>) -> Vec<u8> {
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
    let mut histogram = [0u32; 256];
    for v in &image[HLL_PREAMBLE..] {
        histogram[usize::from(*v)] += 1;
    }
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

/// The library decoder, with panics turned into errors.
fn deserialize(bytes: &[u8]) -> Result<HllSketch, SketchError> {
    catch_unwind(AssertUnwindSafe(|| HllSketch::deserialize(bytes)))
        .map_err(|_| SketchError::Undecodable("decoder panicked".into()))?
        .map_err(|e| SketchError::Undecodable(e.message().to_owned()))
}

fn new_hll(precision: Precision, layout: HllType) -> HllSketch {
    HllSketch::new(precision.0, layout).unwrap_or_else(|_| unreachable_precision())
}

/// `Precision` only holds values the library accepts.
fn unreachable_precision() -> ! {
    unreachable!("Precision is validated against LG_K_RANGE")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Medium, hash_device};
    use crate::salt::Salt;
    use proptest::prelude::*;

    fn sketch_of(range: std::ops::Range<u64>) -> Sketch {
        let mut s = Sketch::new(Precision::DEFAULT);
        for i in range {
            s.insert_bytes(&i.to_le_bytes());
        }
        s
    }

    #[test]
    fn small_counts_are_exact() {
        for n in [0u64, 1, 2, 10, 99] {
            let e = sketch_of(0..n).estimate();
            assert_eq!(e.estimate.round() as u64, n);
            assert!(e.contains(n as f64), "{e}");
        }
    }

    #[test]
    fn device_hashes_are_counted_once_per_device() {
        let salt = Salt::generate().expect("entropy");
        let mut s = Sketch::new(Precision::DEFAULT);
        for round in 0..3 {
            for i in 0..50u8 {
                let _ = round;
                s.insert(&hash_device(&salt, Medium::Wifi, &[2, 0, 0, 0, 0, i]));
            }
        }
        assert_eq!(s.estimate().estimate.round(), 50.0);
    }

    #[test]
    fn encode_writes_hll4_and_decode_checks_precision_and_layout() {
        let s = sketch_of(0..100_000);
        let bytes = s.encode();
        let back = Sketch::decode(&bytes, Precision::DEFAULT).expect("decodes");
        assert_eq!(
            back.estimate(),
            Sketch::decode(&bytes, Precision::DEFAULT)
                .expect("decodes")
                .estimate()
        );
        assert!((back.estimate().estimate - s.estimate().estimate).abs() < 1e-9);
        assert_eq!(
            Sketch::decode(&bytes, Precision::new(12).expect("valid")).map(|_| ()),
            Err(SketchError::WrongPrecision {
                expected: 12,
                found: 14
            })
        );
        let mut hll8 = new_hll(Precision::DEFAULT, HllType::Hll8);
        hll8.update(1u64);
        assert_eq!(
            Sketch::decode(&hll8.serialize(), Precision::DEFAULT).map(|_| ()),
            Err(SketchError::WrongLayout)
        );
    }

    #[test]
    fn dense_hll4_is_about_eight_kilobytes() {
        let len = sketch_of(0..1_000_000).encode().len();
        assert!((8192..9000).contains(&len), "{len}");
    }

    #[test]
    fn tampered_estimator_fields_do_not_change_the_count() {
        // HLL_4 preamble: hip_accum at 8..16, kxq0 at 16..24, kxq1 at 24..32.
        let honest = sketch_of(0..100_000);
        let expected = Sketch::decode(&honest.encode(), Precision::DEFAULT)
            .expect("own")
            .estimate();
        for forged in [0.0f64, 1.0, 1e9, f64::NAN] {
            let mut bytes = honest.encode();
            for field in [8..16, 16..24, 24..32] {
                bytes[field].copy_from_slice(&forged.to_le_bytes());
            }
            let got = Sketch::decode(&bytes, Precision::DEFAULT)
                .expect("registers are intact")
                .estimate();
            assert_eq!(got, expected, "forged {forged}");
            assert!(got.contains(100_000.0), "{got}");
        }
    }

    #[test]
    fn stored_sketches_read_back_with_the_same_estimate() {
        for n in [0u64, 10, 1_000, 100_000] {
            let bytes = Sketch::decode(&sketch_of(0..n).encode(), Precision::DEFAULT)
                .expect("own")
                .encode();
            let a = Sketch::decode(&bytes, Precision::DEFAULT).expect("decode");
            let b = Sketch::from_stored(&bytes, Precision::DEFAULT).expect("stored");
            assert_eq!(a.estimate(), b.estimate(), "n={n}");
        }
        assert!(Sketch::from_stored(b"junk", Precision::DEFAULT).is_err());
    }

    #[test]
    fn garbage_bytes_are_rejected_without_panic() {
        for bytes in [
            &b""[..],
            b"\x00",
            b"garbage that is not a sketch at all",
            &[0xff; 64],
        ] {
            assert!(Sketch::decode(bytes, Precision::DEFAULT).is_err());
        }
    }

    #[test]
    fn precision_outside_the_codec_range_is_refused() {
        assert_eq!(Precision::new(3), Err(SketchError::Precision(3)));
        assert_eq!(Precision::new(22), Err(SketchError::Precision(22)));
        assert!((Precision::DEFAULT.relative_standard_error() - 0.008125).abs() < 1e-6);
    }

    #[test]
    fn accuracy_over_seeds_stays_within_one_and_a_half_rse() {
        // Table-driven: RMSE over 16 independent seeds at each cardinality.
        let rse = Precision::DEFAULT.relative_standard_error();
        for n in [1_000u64, 10_000, 100_000] {
            let mut sq = 0.0;
            let seeds = 16;
            for seed in 0..seeds {
                let base = seed << 40;
                let est = sketch_of(base..base + n).estimate().estimate;
                sq += ((est - n as f64) / n as f64).powi(2);
            }
            let rmse = (sq / seeds as f64).sqrt();
            assert!(rmse <= rse * 1.5, "n={n}: rmse {rmse:.5} > 1.5 x {rse:.5}");
        }
    }

    fn arb_sketch() -> impl Strategy<Value = Sketch> {
        // Small sets stay in list/set mode, large ones go dense: cover both.
        (0u64..1 << 30, prop_oneof![0u64..200, 1_000u64..20_000])
            .prop_map(|(start, len)| sketch_of(start..start + len))
    }

    fn union_of(sketches: &[&Sketch]) -> f64 {
        let mut u = SketchUnion::new(Precision::DEFAULT);
        for s in sketches {
            u.add(s);
        }
        u.estimate().estimate
    }

    /// Equal register states give equal estimates up to float rounding (~1e-8); a single
    /// differing register moves the estimate by far more than the 1e-6 tolerance.
    fn same(x: f64, y: f64) -> bool {
        (x - y).abs() <= 1e-6 * x.abs().max(1.0)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn merge_is_commutative(a in arb_sketch(), b in arb_sketch()) {
            prop_assert_eq!(union_of(&[&a, &b]), union_of(&[&b, &a]));
        }

        #[test]
        fn merge_is_associative(a in arb_sketch(), b in arb_sketch(), c in arb_sketch()) {
            let mut ab = a.clone();
            ab.merge(&b);
            let mut bc = b.clone();
            bc.merge(&c);
            let (left, right) = (union_of(&[&ab, &c]), union_of(&[&a, &bc]));
            prop_assert!(same(left, right), "{} vs {}", left, right);
        }

        #[test]
        fn merge_is_idempotent(a in arb_sketch()) {
            let mut aa = a.clone();
            aa.merge(&a);
            aa.merge(&a);
            let (single, twice) = (union_of(&[&a]), union_of(&[&aa]));
            prop_assert!(same(single, twice), "{} vs {}", single, twice);
            prop_assert_eq!(a.estimate(), aa.estimate());
            prop_assert_eq!(union_of(&[&a, &a, &a]), single);
            prop_assert_eq!(a.estimate().estimate, single);
        }

        #[test]
        fn encode_decode_round_trips(a in arb_sketch()) {
            let back = Sketch::decode(&a.encode(), Precision::DEFAULT).expect("own bytes decode");
            let (x, y) = (union_of(&[&a]), union_of(&[&back]));
            prop_assert!(same(x, y), "{} vs {}", x, y);
            let again = Sketch::decode(&back.encode(), Precision::DEFAULT).expect("decodes");
            prop_assert!(same(y, union_of(&[&again])));
        }

        #[test]
        fn truncated_or_flipped_bytes_never_panic(a in arb_sketch(), cut in 0usize..10_000, flip in 0usize..10_000, bit in 0u8..8) {
            let mut bytes = a.encode();
            if !bytes.is_empty() {
                let i = flip % bytes.len();
                bytes[i] ^= 1 << bit;
            }
            bytes.truncate(cut.min(bytes.len()));
            let _ = Sketch::decode(&bytes, Precision::DEFAULT);
        }
    }

    /// The estimate the first versions computed: every estimate through the wire encoding
    /// (HLL_4 encode, decode with its rebuild), every union input too, in the library's union.
    fn wire_estimate(inner: HllSketch) -> Estimate {
        let sketch = Sketch {
            inner,
            canonical: false,
        };
        Sketch::decode(&sketch.encode(), sketch.precision())
            .expect("own bytes decode")
            .estimate()
    }

    fn wire_union_estimate(inputs: &[&Sketch]) -> Estimate {
        let mut union = HllUnion::new(Precision::DEFAULT.0).expect("lg_k");
        for s in inputs {
            let canonical = if s.canonical {
                (*s).clone()
            } else {
                Sketch::decode(&s.encode(), s.precision()).expect("own bytes decode")
            };
            union.update(&canonical.inner);
        }
        wire_estimate(union.to_sketch(HllType::Hll8))
    }

    /// A sketch as the aggregator holds one: fed in memory, decoded from the wire, or read
    /// back from storage in either stored form.
    fn arb_held_sketch() -> impl Strategy<Value = Sketch> {
        let sizes = prop_oneof![0u64..200, 200u64..1_600, 1_500u64..20_000, Just(100_000u64)];
        (0u64..1 << 30, sizes, 0u8..4).prop_map(|(start, len, form)| {
            let fed = sketch_of(start..start + len);
            match form {
                0 => fed,
                1 => Sketch::decode(&fed.encode(), Precision::DEFAULT).expect("own"),
                2 => Sketch::from_stored(&fed.encode(), Precision::DEFAULT).expect("own"),
                _ => {
                    Sketch::from_stored(&fed.encode_for_merging(), Precision::DEFAULT).expect("own")
                }
            }
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn fast_estimates_equal_the_wire_round_trip(
            inputs in proptest::collection::vec(arb_held_sketch(), 1..6),
            split in 0usize..6,
        ) {
            let refs: Vec<&Sketch> = inputs.iter().collect();
            let expected = wire_union_estimate(&refs);
            let mut union = SketchUnion::new(Precision::DEFAULT);
            inputs.iter().for_each(|s| union.add(s));
            prop_assert_eq!(union.estimate(), expected);
            prop_assert_eq!(union.to_sketch().estimate(), expected);
            prop_assert_eq!(
                Sketch::decode(&union.to_sketch().encode(), Precision::DEFAULT).expect("own").estimate(),
                expected
            );
            for s in &inputs {
                prop_assert_eq!(s.estimate(), wire_union_estimate(&[s]));
            }
            // Two halves unioned pairwise, both ways the queries use.
            let split = split.min(inputs.len());
            let (mut left, mut right) = (SketchUnion::new(Precision::DEFAULT), SketchUnion::new(Precision::DEFAULT));
            inputs[..split].iter().for_each(|s| left.add(s));
            inputs[split..].iter().for_each(|s| right.add(s));
            prop_assert_eq!(left.union_estimate(&right), expected);
            prop_assert_eq!(right.union_estimate(&left), expected);
            left.add_union(&right);
            prop_assert_eq!(left.estimate(), expected);
        }
    }

    #[test]
    fn a_dense_union_leaves_to_the_library_what_it_cannot_read() {
        let mut union = SketchUnion::new(Precision::DEFAULT);
        union.add(&sketch_of(0..50_000));
        let mut coarse = Sketch::new(Precision::new(12).expect("valid"));
        (40_000u64..60_000).for_each(|i| coarse.insert_bytes(&i.to_le_bytes()));
        union.add(&coarse);
        let e = union.estimate();
        assert!(e.contains(60_000.0), "{e}");
        assert!(matches!(union.state, UnionState::Library(_)));
    }

    #[test]
    fn merge_form_reads_back_with_the_same_estimate() {
        let mut s = Sketch::new(Precision::DEFAULT);
        (0u64..50_000).for_each(|i| s.insert_bytes(&i.to_le_bytes()));
        let stored =
            Sketch::from_stored(&s.encode_for_merging(), Precision::DEFAULT).expect("stored");
        assert_eq!(stored.estimate(), s.estimate());
        let mut u = SketchUnion::new(Precision::DEFAULT);
        u.add(&stored);
        assert_eq!(u.estimate(), s.estimate());
        assert!(
            Sketch::decode(&s.encode_for_merging(), Precision::DEFAULT).is_err(),
            "not a wire form"
        );
    }
}
