//! Cross-language check: Apache DataSketches for Python reads the bytes we write and gets
//! the same estimates and bounds.
//!
//! Needs a Python with `datasketches` (PyPI). `scripts/test.sh` installs it into
//! `target/pyenv`; elsewhere point `CROWDFLOW_PYTHON` at an interpreter that has it.

use std::path::{Path, PathBuf};
use std::process::Command;

use crowdflow_contract::sketch::{Estimate, Precision, Sketch};
use serde_json::Value;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("CROWDFLOW_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = workspace().join("target/pyenv/bin/python");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

/// Runs the reader over `files`; one parsed JSON object per file.
fn read_with_python(files: &[PathBuf]) -> Vec<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/read_sketches.py");
    let out = Command::new(python())
        .arg(script)
        .args(files)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python().display()));
    assert!(
        out.status.success(),
        "Python datasketches failed (install it with `bash scripts/test.sh` or \
         `pip install datasketches==5.2.0`, or set CROWDFLOW_PYTHON):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("reader prints JSON lines"))
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(1.0)
}

fn assert_same(ours: Estimate, theirs: &Value, what: &str) {
    for (o, field) in [
        (ours.estimate, "estimate"),
        (ours.lower, "lower"),
        (ours.upper, "upper"),
    ] {
        let t = theirs[field].as_f64().expect("number");
        assert!(close(o, t), "{what} {field}: rust {o}, python {t}");
    }
}

#[test]
fn python_datasketches_reads_our_sketches_with_the_same_estimates() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sizes = [0u64, 1, 10, 1_000, 1_600, 20_000, 1_000_000];
    let mut files = Vec::new();
    let mut ours = Vec::new();
    for n in sizes {
        let mut s = Sketch::new(Precision::DEFAULT);
        for i in 0..n {
            s.insert_bytes(&(i * 7919).to_le_bytes());
        }
        let path = dir.path().join(format!("ours_{n}.bin"));
        std::fs::write(&path, s.encode()).expect("write");
        files.push(path);
        ours.push(s.estimate());
    }
    let theirs = read_with_python(&files);
    assert_eq!(theirs.len(), sizes.len());
    for ((n, e), t) in sizes.iter().zip(ours).zip(&theirs) {
        assert_eq!(t["lg_k"], 14);
        assert_eq!(t["hll4"], true, "n={n}");
        assert_same(e, t, &format!("n={n}"));
    }
}

#[test]
fn python_datasketches_reads_the_sketch_inside_our_envelopes() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(fixtures.join("envelopes.json")).expect("manifest"))
            .expect("json");
    let names: Vec<String> = manifest
        .as_object()
        .expect("object")
        .keys()
        .cloned()
        .collect();
    let files: Vec<PathBuf> = names.iter().map(|n| fixtures.join(n)).collect();
    let theirs = read_with_python(&files);
    for (name, t) in names.iter().zip(&theirs) {
        let recorded: Estimate = serde_json::from_value(manifest[name].clone()).expect("estimate");
        assert_same(recorded, t, name);
    }
}
