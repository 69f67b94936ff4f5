//! The monitoring and service files in deploy/ hold up: every metric the Grafana dashboard
//! queries exists under that name in the aggregator's /metrics; the Prometheus config scrapes
//! it; the systemd units pass `systemd-analyze verify` (where systemd is installed).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use crowdflow_aggregator::live::{LiveBoard, ZoneLive};
use crowdflow_aggregator::metrics::Metrics;
use crowdflow_aggregator::query::Count;
use crowdflow_tests::workspace_binary;

fn deploy(rel: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy")
            .join(rel),
    )
    .expect("deploy file")
}

/// Metric names the aggregator exposes once every series has a sample.
fn exposed() -> BTreeSet<String> {
    let m = Metrics::default();
    let zone = ZoneLive {
        id: "neude".into(),
        name: "Neude".into(),
        area_m2: 100.0,
        capacity: None,
        window_min: 5,
        devices: [("ble".to_owned(), Count::ZERO)].into_iter().collect(),
        total_devices: Count::ZERO,
        people: Some(Count::ZERO),
        people_basis: None,
        density: Some(Count::ZERO),
        level: Some(crowdflow_aggregator::live::level(&[2.0], 0.0)),
        capacity_used: None,
        trend: None,
        flow: None,
        forecast: None,
        gate: None,
        stale: false,
        last_data: None,
        updated_at: jiff::Timestamp::now(),
    };
    m.observe_zone(&zone.gauges());
    m.rejects.with_label_values(&["bad_json"]).inc();
    m.sensor_last_window.with_label_values(&["s1"]).set(1);
    m.purged.with_label_values(&["sketches"]).inc();
    let _ = LiveBoard::default();
    m.render()
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_metric_on_the_dashboard_exists() {
    let exposed = exposed();
    let dashboard: serde_json::Value =
        serde_json::from_str(&deploy("grafana/crowdflow-dashboard.json")).expect("dashboard JSON");
    let mut queried = BTreeSet::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("crowdflow_") {
                    let base = word.strip_suffix("_bucket").unwrap_or(word);
                    queried.insert(base.to_owned());
                }
            }
        }
    }
    assert!(queried.len() >= 10, "{queried:?}");
    let missing: Vec<_> = queried.difference(&exposed).collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics the aggregator does not expose: {missing:?} (exposed: {exposed:?})"
    );
}

#[test]
fn prometheus_scrapes_the_aggregator_and_the_agents() {
    let config = deploy("prometheus/prometheus.yml");
    for needle in [
        "job_name: crowdflow-aggregator",
        "job_name: crowdflow-agent",
        "metrics_path: /metrics",
    ] {
        assert!(config.contains(needle), "{needle}");
    }
    assert!(!config.contains('\t'), "YAML takes no tabs");
}

#[test]
fn the_systemd_units_verify() {
    let Ok(out) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze is not installed here: unit files not verified");
        return;
    };
    assert!(out.status.success());
    let dir = tempfile::tempdir().expect("tmp");
    let helper =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/agent/crowdflow-monitor-mode");
    for (unit, installed, here, name) in [
        (
            "aggregator/crowdflow-aggregator.service",
            "/usr/bin/crowdflow-aggregator",
            workspace_binary("crowdflow-aggregator"),
            "crowdflow-aggregator.service",
        ),
        (
            "agent/crowdflow-agent.service",
            "/usr/bin/crowdflow-agent",
            workspace_binary("crowdflow-agent"),
            "crowdflow-agent.service",
        ),
        (
            "agent/crowdflow-monitor-mode@.service",
            "/usr/sbin/crowdflow-monitor-mode",
            helper.clone(),
            "crowdflow-monitor-mode@wlan1.service",
        ),
    ] {
        // The installed path does not exist here: point it at the built binary or script.
        let text = deploy(unit).replace(installed, &here.display().to_string());
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write unit");
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .output()
            .expect("verify");
        let messages = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        let problems: Vec<&str> = messages
            .lines()
            .filter(|l| l.contains(path.file_name().and_then(|n| n.to_str()).unwrap_or("?")))
            .collect();
        assert!(
            out.status.success() && problems.is_empty(),
            "{unit}: {messages}"
        );
    }
}
