use super::union::UnionState;
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

    /// Dense wire sketches are rebuilt from their registers, not through the library's
    /// union: both give the same sketch (dense: the same bytes), also for flipped bits
    /// that the library still reads.
    #[test]
    fn decoding_by_registers_equals_the_library_union(a in arb_sketch(), flip in 0usize..10_000, bit in 0u8..8) {
        let through_union = |bytes: &[u8]| {
            let mut bytes = bytes.to_vec();
            mark_order_independent(&mut bytes);
            let received = deserialize(&bytes).ok()?;
            let mut union = HllUnion::new(received.lg_config_k()).ok()?;
            union.update(&received);
            let mut image = union.to_sketch(HllType::Hll8).serialize();
            mark_order_independent(&mut image);
            let inner = deserialize(&image).ok()?;
            Some(Sketch { inner, canonical: true })
        };
        let mut bytes = a.encode();
        for tampered in [false, true] {
            if tampered {
                let i = flip % bytes.len();
                bytes[i] ^= 1 << bit;
            }
            let Ok(ours) = Sketch::decode(&bytes, Precision::DEFAULT) else {
                continue;
            };
            let reference = through_union(&bytes).expect("the library reads what decode accepts");
            prop_assert_eq!(ours.estimate(), reference.estimate());
            // Sparse images keep their coupons in hash-set order, which depends on the
            // path; dense ones are registers, which must agree byte for byte.
            if bytes[7] & 3 == registers::CUR_MODE_HLL {
                prop_assert_eq!(ours.encode(), reference.encode());
                prop_assert_eq!(ours.encode_for_merging(), reference.encode_for_merging());
            }
        }
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
            _ => Sketch::from_stored(&fed.encode_for_merging(), Precision::DEFAULT).expect("own"),
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
    let stored = Sketch::from_stored(&s.encode_for_merging(), Precision::DEFAULT).expect("stored");
    assert_eq!(stored.estimate(), s.estimate());
    let mut u = SketchUnion::new(Precision::DEFAULT);
    u.add(&stored);
    assert_eq!(u.estimate(), s.estimate());
    assert!(
        Sketch::decode(&s.encode_for_merging(), Precision::DEFAULT).is_err(),
        "not a wire form"
    );
}

/// A dense sketch of the given registers, as a dense union holds one.
fn of_registers(registers: &[u8]) -> Sketch {
    let lg_k = registers.len().trailing_zeros() as u8;
    let image = registers::hll8_image(lg_k, registers.iter().copied());
    Sketch {
        inner: deserialize(&image).expect("image"),
        canonical: true,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn hll4_image_equals_the_library_conversion(
        fed in arb_held_sketch(),
        // Registers with many exceptions (values 15 and up), so the table grows.
        high in proptest::collection::vec((0usize..16_384, 15u8..64), 0..1_500),
        low in proptest::collection::vec((0usize..16_384, 0u8..15), 0..16_384),
        zero in 0usize..16_384,
    ) {
        prop_assert_eq!(fed.encode(), fed.encode_by_library());
        let mut registers = vec![0u8; 1 << Precision::DEFAULT.0];
        low.iter().chain(&high).for_each(|(slot, v)| registers[*slot] = *v);
        registers[zero] = 0;
        let dense = of_registers(&registers);
        prop_assert_eq!(dense.encode(), dense.encode_by_library());
        let back = Sketch::decode(&dense.encode(), Precision::DEFAULT).expect("decodes");
        prop_assert_eq!(back.estimate(), dense.estimate());
    }
}

#[test]
fn a_dense_sketch_without_empty_registers_is_encoded_by_the_library() {
    let full = of_registers(&vec![3u8; 1 << Precision::DEFAULT.0]);
    assert!(registers::hll4_image(&full.inner.serialize(), Precision::DEFAULT.0).is_none());
    let back = Sketch::decode(&full.encode(), Precision::DEFAULT).expect("decodes");
    assert_eq!(back.estimate(), full.estimate());
}
