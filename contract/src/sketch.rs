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
    /// memory since its last encode).
    fn canonical(&self) -> Cow<'_, Sketch> {
        if self.canonical {
            return Cow::Borrowed(self);
        }
        match Sketch::decode(&self.encode(), self.precision()) {
            Ok(sketch) => Cow::Owned(sketch),
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
#[derive(Debug, Clone)]
pub struct SketchUnion {
    union: HllUnion,
    precision: Precision,
}

impl SketchUnion {
    /// An empty union.
    pub fn new(precision: Precision) -> SketchUnion {
        SketchUnion {
            union: HllUnion::new(precision.0).unwrap_or_else(|_| unreachable_precision()),
            precision,
        }
    }

    /// Adds a sketch. Sketches of a higher precision are downsampled; callers keep one
    /// precision per deployment, which the decoder enforces.
    pub fn add(&mut self, sketch: &Sketch) {
        self.union.update(&sketch.canonical().inner);
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.union.is_empty()
    }

    /// The distinct count of the union with 2-sigma bounds.
    pub fn estimate(&self) -> Estimate {
        self.estimate_at(Confidence::default())
    }

    /// The distinct count of the union at the given confidence.
    pub fn estimate_at(&self, confidence: Confidence) -> Estimate {
        self.to_sketch().estimate_at(confidence)
    }

    /// The union as a sketch. Its estimator is whatever the union's mode changes left it
    /// with, so it is canonicalized (see the module docs) before any estimate.
    pub fn to_sketch(&self) -> Sketch {
        Sketch {
            inner: self.union.to_sketch(HllType::Hll8),
            canonical: false,
        }
    }

    /// The precision of the union.
    pub fn precision(&self) -> Precision {
        self.precision
    }
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
