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
        if self.inner.target_type() == HllType::Hll8 {
            let hll8 = self.inner.serialize();
            if let Some(mut bytes) = registers::hll4_image(&hll8, self.inner.lg_config_k()) {
                mark_order_independent(&mut bytes);
                return bytes;
            }
        }
        self.encode_by_library()
    }

    /// [`Sketch::encode`] through the library's conversion (sparse sketches, HLL_4 ones, and
    /// dense ones whose lowest register is above 0).
    fn encode_by_library(&self) -> Vec<u8> {
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
        if let Some(sketch) = rebuilt_from_registers(&bytes, expected.0) {
            return Ok(sketch);
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

/// A dense (HLL mode) HLL_4 image the library read, rebuilt from its registers alone: they
/// are read directly and written as the HLL_8 image a union would give, with the estimator
/// fields computed from them (what the union path of [`Sketch::decode`] does through the
/// library, in half the time: 35 us instead of 76 for a dense message, #19). `None` for sparse
/// images and for register values no hash gives (the union path then decides).
fn rebuilt_from_registers(bytes: &[u8], lg_k: u8) -> Option<Sketch> {
    use registers::{CUR_MODE_HLL, MAX_REGISTER, hll8_image, max_into};
    let cur_min = *bytes.get(6)?;
    if bytes.get(7).map(|m| m & 3) != Some(CUR_MODE_HLL) || cur_min > MAX_REGISTER {
        return None;
    }
    let mut registers = vec![0u8; 1 << lg_k];
    // The highest register by a fold, not `any`: a loop without early exit is vectorized.
    let highest = |r: &[u8]| r.iter().fold(0u8, |m, v| m.max(*v));
    if !max_into(bytes, lg_k, &mut registers) || highest(&registers) > MAX_REGISTER {
        return None;
    }
    let inner = deserialize(&hll8_image(lg_k, registers.into_iter())).ok()?;
    inner.estimate().is_finite().then_some(Sketch {
        inner,
        canonical: true,
    })
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

mod registers;
mod union;

pub use union::SketchUnion;

#[cfg(test)]
mod tests;
