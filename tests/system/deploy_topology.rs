//! The multi-replica deployment files hold up: the Kubernetes manifests pass strict schema
//! validation (kubernetes-validate, installed by the test command; skipped where absent), the
//! compose file passes `docker-compose config` (likewise), and every aggregator config they
//! carry validates as the aggregator would read it, with a distinct client and authority id
//! per replica. The Mosquitto ACL in the Kubernetes ConfigMap is the shipped one.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crowdflow_aggregator::config::AggregatorConfig;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(deploy().join(rel)).expect("deploy file")
}

/// A trial CA made by the shipped script, so `ca_file` points at a real PEM.
fn trial_ca(dir: &Path) -> PathBuf {
    let out = Command::new("bash")
        .arg(deploy().join("mosquitto/make-ca.sh"))
        .arg(dir)
        .arg("mosquitto")
        .output()
        .expect("make-ca.sh runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.join("ca.pem")
}

/// Parses an aggregator config as the aggregator would, its CA moved to `ca`.
fn parse(text: &str, ca: &Path, what: &str) -> AggregatorConfig {
    let text = text
        .replace("/etc/crowdflow/tls/ca.pem", &ca.display().to_string())
        .replace("/etc/crowdflow/ca.pem", &ca.display().to_string());
    AggregatorConfig::parse(&text, Path::new(what), Some("secret".into()))
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// The block scalar under `key: |` in a YAML file, unindented.
fn block(yaml: &str, key: &str) -> String {
    let mut lines = yaml.lines().skip_while(|l| l.trim() != format!("{key}: |"));
    let header = lines.next().expect("key present");
    let indent = header.len() - header.trim_start().len() + 2;
    lines
        .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() >= indent)
        .map(|l| l.get(indent..).unwrap_or("").to_owned() + "\n")
        .collect()
}

fn tool(env: &str, name: &str) -> Option<PathBuf> {
    std::env::var_os(env).map(PathBuf::from).or_else(|| {
        Command::new(name)
            .arg("--version")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|_| PathBuf::from(name))
    })
}

#[test]
fn the_kubernetes_manifests_validate_and_carry_working_configs() {
    let manifests = deploy().join("kubernetes/crowdflow.yaml");
    match tool("CROWDFLOW_KUBERNETES_VALIDATE", "kubernetes-validate") {
        Some(validate) => {
            let out = Command::new(validate)
                .args(["--strict", "--quiet"])
                .arg(&manifests)
                .output()
                .expect("kubernetes-validate runs");
            assert!(
                out.status.success(),
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        None => eprintln!("kubernetes-validate is not installed here: schemas not checked"),
    }
    let yaml = std::fs::read_to_string(&manifests).expect("manifests");
    let dir = tempfile::tempdir().expect("tmp");
    let ca = trial_ca(dir.path());
    let template = block(&yaml, "aggregator.toml.in");
    let ids: BTreeSet<(String, String)> = ["aggregator-0", "aggregator-1"]
        .iter()
        .map(|pod| {
            let text = template.replace("@REPLICA@", pod).replace(
                "@POSTGRES_URL@",
                "postgres://crowdflow:pw@postgres:5432/crowdflow",
            );
            let c = parse(&text, &ca, pod);
            (c.broker.client_id, c.authority_id)
        })
        .collect();
    assert_eq!(ids.len(), 2, "distinct ids per pod: {ids:?}");
    let acl = |text: &str| -> Vec<String> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        acl(&block(&yaml, "crowdflow.acl")),
        acl(&read("mosquitto/crowdflow.acl")),
        "the ConfigMap's ACL is deploy/mosquitto/crowdflow.acl"
    );
}

#[test]
fn the_compose_file_validates_and_its_replicas_differ() {
    match tool("CROWDFLOW_DOCKER_COMPOSE", "docker-compose") {
        Some(compose) => {
            let out = Command::new(compose)
                .arg("-f")
                .arg(deploy().join("compose/docker-compose.yml"))
                .args(["config", "-q"])
                .env("POSTGRES_PASSWORD", "pw")
                .env("CROWDFLOW_BROKER_PASSWORD", "pw")
                .output()
                .expect("docker-compose runs");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        None => eprintln!("docker-compose is not installed here: compose file not checked"),
    }
    let dir = tempfile::tempdir().expect("tmp");
    let ca = trial_ca(dir.path());
    let ids: BTreeSet<(String, String)> =
        ["compose/aggregator-1.toml", "compose/aggregator-2.toml"]
            .iter()
            .map(|f| {
                let c = parse(&read(f), &ca, f);
                (c.broker.client_id, c.authority_id)
            })
            .collect();
    assert_eq!(ids.len(), 2, "distinct ids per replica: {ids:?}");
}
