//! [`SketchUnion`]: many sketches of one precision merged, sparse ones by the library, dense
//! ones register by register.

use super::registers::{CUR_MODE_HLL, hll8_image, max_into};
use super::*;

/// A running union of sketches of one precision.
///
/// Sparse inputs (the library's coupon lists and sets) are unioned by the library, which
/// decides when the union turns dense exactly as before. From the first dense input on, the
/// union is one byte per register, merged by `max` in place: the library would rebuild its
/// estimator after every merge (a pass over all registers with a division each) and copy
/// the first input; here the estimator is built once, when an estimate is asked for. The
/// estimates are the library's, from an HLL_8 image of the registers (see
/// `Sketch::canonical` for why they equal the wire round trip's).
#[derive(Clone)]
pub struct SketchUnion {
    pub(super) state: UnionState,
    precision: Precision,
    /// The default estimate, once computed (cleared by every add).
    estimate: OnceLock<Estimate>,
}

#[derive(Clone)]
pub(super) enum UnionState {
    /// Every input so far was sparse, or one was not readable as registers (another
    /// precision or layout): the library's union.
    Library(HllUnion),
    /// One register per byte, `2^lg_k` of them.
    Dense(Box<[u8]>),
    /// Exactly one input, a decoded or stored sketch of the union's precision, kept as it
    /// is: a union of one costs a copy instead of a pass over its registers and an image
    /// for the estimate (a day's distinct count reads one stored day per kind, #19).
    Single(Box<Sketch>),
}

impl fmt::Debug for SketchUnion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.state {
            UnionState::Library(_) => "library",
            UnionState::Dense(_) => "dense",
            UnionState::Single(_) => "single",
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
        if let UnionState::Library(union) = &self.state
            && union.is_empty()
            && sketch.canonical
            && sketch.inner.lg_config_k() == lg_k
        {
            self.state = UnionState::Single(Box::new(sketch.clone()));
            return;
        }
        self.add_many(sketch);
    }

    /// Adds a sketch to a union that will hold more than one.
    fn add_many(&mut self, sketch: &Sketch) {
        let lg_k = self.precision.0;
        match &mut self.state {
            UnionState::Single(_) => {
                let empty = UnionState::Library(
                    HllUnion::new(lg_k).unwrap_or_else(|_| unreachable_precision()),
                );
                if let UnionState::Single(first) = std::mem::replace(&mut self.state, empty) {
                    self.add_many(&first);
                }
                self.add_many(sketch);
            }
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
            UnionState::Single(_) => false,
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
            UnionState::Single(sketch) => (**sketch).clone(),
        }
    }

    /// The library's union of the same registers (for inputs the dense form cannot take).
    fn to_library(&self) -> HllUnion {
        match &self.state {
            UnionState::Library(union) => union.clone(),
            UnionState::Dense(_) | UnionState::Single(_) => {
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
pub(super) fn estimate_of(inner: &HllSketch, confidence: Confidence) -> Estimate {
    let n = confidence.std_devs();
    Estimate {
        estimate: inner.estimate(),
        lower: inner.lower_bound(n),
        upper: inner.upper_bound(n),
    }
}
