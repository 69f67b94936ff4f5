//! Sketch comparison: DataSketches HLL_4 and HLL_8 (what crowdflow uses) against
//! hyperloglogplus 0.4.1 (the alternative we rejected), at lg_k = 14 on the same
//! blake3-keyed 6-byte addresses.
//!
//! `cargo bench -p crowdflow-contract --bench sketch` runs the criterion benchmarks, then
//! prints one table that puts all three side by side (times read back from criterion's
//! estimates of this run), followed by encoded sizes and accuracy.

use std::collections::hash_map::DefaultHasher;
use std::hash::BuildHasher;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput};
use crowdflow_contract::identity::{Medium, hash_device};
use crowdflow_contract::salt::Salt;
use crowdflow_contract::sketch::{Precision, Sketch};
use datasketches::hash::value::raw_bytes;
use datasketches::hll::{HllSketch, HllType, HllUnion};
use hyperloglogplus::{HyperLogLog, HyperLogLogPlus};
use serde::{Deserialize, Serialize};

const LG_K: u8 = 14;
const INSERTS: usize = 100_000;
const DENSE: usize = 1_000_000;

/// A deterministic, serializable hasher builder so hyperloglogplus sketches can be merged
/// and serialized.
#[derive(Clone, Default, Serialize, Deserialize)]
struct Sip;

impl BuildHasher for Sip {
    type Hasher = DefaultHasher;
    fn build_hasher(&self) -> DefaultHasher {
        DefaultHasher::new()
    }
}

type HllPlus = HyperLogLogPlus<[u8; 16], Sip>;

/// The keyed hashes a sensor would compute: blake3(salt, domain || address), 16 bytes.
fn keyed(n: usize, seed: u64) -> Vec<[u8; 16]> {
    let key = *blake3::hash(&seed.to_le_bytes()).as_bytes();
    (0..n as u64)
        .map(|i| {
            let mut input = *b"crowdflow/v1/wif\0\0\0\0\0\0";
            input[16..].copy_from_slice(&(i * 0x9E37_79B9 + seed).to_le_bytes()[..6]);
            let mut out = [0; 16];
            out.copy_from_slice(&blake3::keyed_hash(&key, &input).as_bytes()[..16]);
            out
        })
        .collect()
}

fn ds(keys: &[[u8; 16]], layout: HllType) -> HllSketch {
    let mut s = HllSketch::new(LG_K, layout).expect("lg_k 14 is valid");
    for k in keys {
        s.update(raw_bytes::from_slice(k));
    }
    s
}

fn plus(keys: &[[u8; 16]]) -> HllPlus {
    let mut s = HllPlus::new(LG_K, Sip).expect("precision 14 is valid");
    for k in keys {
        s.insert(k);
    }
    s
}

fn bench_insert(c: &mut Criterion) {
    let keys = keyed(INSERTS, 1);
    let addresses: Vec<[u8; 6]> = (0..INSERTS as u64)
        .map(|i| {
            let b = (i * 0x9E37_79B9).to_le_bytes();
            [b[0], b[1], b[2], b[3], b[4], b[5]]
        })
        .collect();
    let mut g = c.benchmark_group("insert");
    g.throughput(Throughput::Elements(INSERTS as u64));
    for (name, layout) in [("hll4", HllType::Hll4), ("hll8", HllType::Hll8)] {
        g.bench_function(name, |b| {
            b.iter_batched_ref(
                || HllSketch::new(LG_K, layout).expect("valid"),
                |s| keys.iter().for_each(|k| s.update(raw_bytes::from_slice(k))),
                BatchSize::LargeInput,
            )
        });
    }
    g.bench_function("hllplus", |b| {
        b.iter_batched_ref(
            || HllPlus::new(LG_K, Sip).expect("valid"),
            |s| keys.iter().for_each(|k| s.insert(k)),
            BatchSize::LargeInput,
        )
    });
    let salt = Salt::generate().expect("entropy");
    g.bench_function("crowdflow_hash_and_insert", |b| {
        b.iter_batched_ref(
            || Sketch::new(Precision::DEFAULT),
            |s| {
                addresses
                    .iter()
                    .for_each(|a| s.insert(&hash_device(&salt, Medium::Wifi, a)))
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn bench_dense_ops(c: &mut Criterion) {
    let (ka, kb) = (keyed(DENSE, 2), keyed(DENSE, 3));
    let (a4, b4) = (ds(&ka, HllType::Hll4), ds(&kb, HllType::Hll4));
    let (a8, b8) = (ds(&ka, HllType::Hll8), ds(&kb, HllType::Hll8));
    let (ap, bp) = (plus(&ka), plus(&kb));

    let mut g = c.benchmark_group("merge");
    for (name, a, b) in [("hll4", &a4, &b4), ("hll8", &a8, &b8)] {
        g.bench_function(name, |bench| {
            bench.iter(|| {
                let mut u = HllUnion::new(LG_K).expect("valid");
                u.update(a);
                u.update(b);
                black_box(u.estimate())
            })
        });
    }
    g.bench_function("hllplus", |bench| {
        bench.iter_batched_ref(
            || ap.clone(),
            |a| a.merge(&bp).expect("same precision"),
            BatchSize::SmallInput,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("count");
    g.bench_function("hll4", |b| b.iter(|| black_box(a4.composite_estimate())));
    g.bench_function("hll8", |b| b.iter(|| black_box(a8.composite_estimate())));
    g.bench_function("hllplus", |b| {
        b.iter_batched_ref(
            || ap.clone(),
            |s| black_box(s.count()),
            BatchSize::SmallInput,
        )
    });
    g.finish();

    let (e4, e8) = (a4.serialize(), a8.serialize());
    let ep = serde_json::to_vec(&ap).expect("serializable");
    let mut g = c.benchmark_group("encode");
    g.bench_function("hll4", |b| b.iter(|| black_box(a4.serialize())));
    g.bench_function("hll8", |b| b.iter(|| black_box(a8.serialize())));
    g.bench_function("hllplus", |b| {
        b.iter(|| black_box(serde_json::to_vec(&ap).expect("serializable")))
    });
    g.finish();

    let mut g = c.benchmark_group("decode");
    g.bench_function("hll4", |b| {
        b.iter(|| black_box(HllSketch::deserialize(&e4)))
    });
    g.bench_function("hll8", |b| {
        b.iter(|| black_box(HllSketch::deserialize(&e8)))
    });
    g.bench_function("hllplus", |b| {
        b.iter(|| black_box(serde_json::from_slice::<HllPlus>(&ep).expect("own bytes")))
    });
    g.finish();
}

/// Mean time in ns of one criterion benchmark of this run.
fn mean_ns(dir: &Path, group: &str, name: &str) -> Option<f64> {
    let path = dir
        .join(group)
        .join(name)
        .join("new")
        .join("estimates.json");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    json["mean"]["point_estimate"].as_f64()
}

fn rmse(n: usize, seeds: u64, estimate: impl Fn(&[[u8; 16]]) -> f64) -> f64 {
    let sq: f64 = (0..seeds)
        .map(|seed| {
            let e = estimate(&keyed(n, 1000 + seed));
            ((e - n as f64) / n as f64).powi(2)
        })
        .sum();
    (sq / seeds as f64).sqrt() * 100.0
}

fn print_table(dir: &Path) {
    let impls = ["hll4", "hll8", "hllplus"];
    println!("\n## Sketch comparison at lg_k = {LG_K} (this machine, this run)\n");
    println!("| operation | DataSketches HLL_4 | DataSketches HLL_8 | hyperloglogplus 0.4.1 |");
    println!("|---|---|---|---|");
    let row = |label: &str, group: &str, per: f64, unit: &str, rate: bool| {
        let cells: Vec<String> = impls
            .iter()
            .map(|i| match mean_ns(dir, group, i) {
                Some(ns) if rate => format!("{:.1} {unit}", per / ns * 1e3),
                Some(ns) => format!("{:.2} {unit}", ns / per),
                None => "n/a".into(),
            })
            .collect();
        println!("| {label} | {} |", cells.join(" | "));
    };
    row("inserts (M/s)", "insert", INSERTS as f64, "M/s", true);
    row("dense merge of two 1M sketches", "merge", 1e3, "µs", false);
    row("count (dense)", "count", 1e3, "µs", false);
    row("encode (dense)", "encode", 1e3, "µs", false);
    row("decode (dense)", "decode", 1e3, "µs", false);
    if let Some(ns) = mean_ns(dir, "insert", "crowdflow_hash_and_insert") {
        println!(
            "\ncrowdflow path (blake3 keyed hash of a 6-byte address + insert): {:.1} M/s",
            INSERTS as f64 / ns * 1e3
        );
    }

    println!("\n| encoded bytes | HLL_4 | HLL_8 | hyperloglogplus (serde_json) |");
    println!("|---|---|---|---|");
    for n in [10usize, 1_000, 100_000, 1_000_000] {
        let keys = keyed(n, 7);
        let mut p = plus(&keys);
        p.count();
        println!(
            "| {n} distinct | {} | {} | {} |",
            Sketch::decode(&ds(&keys, HllType::Hll4).serialize(), Precision::DEFAULT)
                .map(|s| s.encode().len())
                .unwrap_or(0),
            ds(&keys, HllType::Hll8).serialize().len(),
            serde_json::to_vec(&p).map(|v| v.len()).unwrap_or(0),
        );
    }

    println!("\n| RMSE over 8 seeds | crowdflow estimate (HLL_4, composite) | hyperloglogplus |");
    println!("|---|---|---|");
    for n in [10_000usize, 100_000, 1_000_000] {
        let ours = rmse(n, 8, |k| {
            let bytes = ds(k, HllType::Hll4).serialize();
            Sketch::decode(&bytes, Precision::DEFAULT)
                .map(|s| s.estimate().estimate)
                .unwrap_or(f64::NAN)
        });
        let theirs = rmse(n, 8, |k| plus(k).count());
        println!("| {n} | {ours:.2} % | {theirs:.2} % |");
    }
    println!(
        "\nTheory at lg_k 14: RSE {:.2} % (composite estimator).",
        Precision::DEFAULT.relative_standard_error() * 100.0
    );
}

fn output_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("criterion")
}

fn main() {
    let dir = output_dir();
    let mut c = Criterion::default()
        .output_directory(&dir)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
        .configure_from_args();
    bench_insert(&mut c);
    bench_dense_ops(&mut c);
    c.final_summary();
    print_table(&dir);
}
