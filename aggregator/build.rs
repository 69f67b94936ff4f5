//! Embeds the built dashboard (`dashboard/dist`, made by `npm run build` there) into the
//! binary, so that the aggregator serves it with nothing fetched at run time. Without a build
//! the binary still compiles and serves a page that says how to build the dashboard.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let dashboard = manifest.join("../dashboard");
    let dist = dashboard.join("dist");
    let built = dist.join("index.html").is_file();
    // A missing path would rerun this script on every build: watch what exists.
    let watched = if built { &dist } else { &dashboard };
    println!("cargo:rerun-if-changed={}", watched.display());
    let mut files = Vec::new();
    if built {
        collect(&dist, &mut files);
    }
    files.sort();
    let mut code = String::from(
        "/// The dashboard's files, from `dashboard/dist`.\npub static ASSETS: &[Asset] = &[\n",
    );
    for file in files
        .iter()
        .filter(|f| f.extension().is_none_or(|e| e != "gz"))
    {
        let name = file
            .strip_prefix(&dist)
            .expect("collected under dist")
            .to_string_lossy()
            .replace('\\', "/");
        let gz = PathBuf::from(format!("{}.gz", file.display()));
        let gzip = if gz.is_file() {
            format!("Some(include_bytes!({:?}))", gz.display().to_string())
        } else {
            "None".to_owned()
        };
        let _ = writeln!(
            code,
            "    Asset {{ path: {name:?}, content_type: {:?}, body: include_bytes!({:?}), gzip: {gzip} }},",
            content_type(file),
            file.display().to_string(),
        );
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"));
    std::fs::write(out.join("dashboard_assets.rs"), code).expect("OUT_DIR is writable");
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "json" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}
