//! Every endpoint and role through the router (no server), against a real SQLite store
//! holding known sketches.

use std::path::Path;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use crowdflow_contract::sketch::{Precision, Sketch, SketchUnion};
use jiff::SignedDuration;
use serde_json::Value;
use tower::ServiceExt;

use super::*;
use crate::config::hash_token;
use crate::store::{Accepted, Batch, SqliteStore};

const VIEWER: &str = "viewer-token";
const PLANNER: &str = "planner-token";
const ADMIN: &str = "admin-token";

mod calibration;
mod security;

fn config() -> Arc<AggregatorConfig> {
    config_with("")
}

/// The test config plus `extra` (whole sections, e.g. `[http]` limits).
fn config_with(extra: &str) -> Arc<AggregatorConfig> {
    parse_config(&config_text(extra))
}

fn parse_config(text: &str) -> Arc<AggregatorConfig> {
    Arc::new(AggregatorConfig::parse(text, Path::new("api.toml"), None).expect("config"))
}

/// The text of [`config_with`].
fn config_text(extra: &str) -> String {
    let mut text = String::from(
        r#"[broker]
mode = "embedded"
listen = "127.0.0.1:1883"
[storage]
kind = "sqlite"
path = "unused.db"
[privacy]
operator = "Gemeente Utrecht"
[[zones]]
id = "neude"
name = "Neude"
area_m2 = 100.0
capacity = 500
thresholds = [2.0, 3.5, 5.0]
calibration = { wifi_random = 0.5, ble = 0.5 }
[[zones]]
id = "plein"
name = "Plein"
area_m2 = 1000.0
[[sensors]]
id = "neude-1"
zone = "neude"
latitude = 52.09
longitude = 5.12
[[sensors]]
id = "plein-1"
zone = "plein"
"#,
    );
    for (name, role) in [(VIEWER, "viewer"), (PLANNER, "planner"), (ADMIN, "admin")] {
        text += &format!(
            "[[tokens]]\nname = \"{role}\"\nrole = \"{role}\"\nblake3 = \"{}\"\n",
            hash_token(name).to_hex()
        );
    }
    text += extra;
    text
}

fn sketch(devices: std::ops::Range<u64>) -> Sketch {
    let mut s = Sketch::new(Precision::DEFAULT);
    devices.for_each(|i| s.insert_bytes(&i.to_le_bytes()));
    s
}

fn message(
    sensor: &str,
    zone: &str,
    at: Timestamp,
    epoch: &str,
    devices: std::ops::Range<u64>,
) -> Accepted {
    Accepted {
        sensor: crowdflow_contract::wire::SensorId::new(sensor).expect("id"),
        zone: crate::zone::ZoneId::new(zone).expect("id"),
        kind: crowdflow_contract::identity::Kind::WifiRandom,
        window_start: at,
        window_s: 60,
        epoch: epoch.parse().expect("epoch"),
        salt_fp: if epoch == "2026-04-27" {
            "0000000000000001"
        } else {
            "0000000000000002"
        }
        .parse()
        .expect("fp"),
        frames: devices.end - devices.start,
        sketch: sketch(devices),
    }
}

fn ts(s: &str) -> Timestamp {
    s.parse().expect("ts")
}

/// History on 2026-04-27 (epoch 2026-04-27) and 2026-04-28 (epoch 2026-04-28):
/// neude 10:00-10:59 devices 0..2000 (minute i: 0..1000 shifted by 10 per minute),
/// plein 10:30-11:29 devices 1500..3000; plus live data in the current minutes.
async fn state() -> (AppState<SqliteStore>, tempfile::TempDir) {
    state_with(config()).await
}

/// [`state`] under another config.
async fn state_with(config: Arc<AggregatorConfig>) -> (AppState<SqliteStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tmp");
    let store = SqliteStore::open(&dir.path().join("api.db"), Precision::DEFAULT).expect("open");
    let mut accepted = Vec::new();
    for m in 0..60u64 {
        let at = ts("2026-04-27T10:00:00Z") + SignedDuration::from_mins(m as i64);
        accepted.push(message(
            "neude-1",
            "neude",
            at,
            "2026-04-27",
            m * 10..m * 10 + 1000 + m * 7,
        ));
        let at2 = ts("2026-04-27T10:30:00Z") + SignedDuration::from_mins(m as i64);
        accepted.push(message(
            "plein-1",
            "plein",
            at2,
            "2026-04-27",
            1500 + m * 20..1500 + m * 20 + 300,
        ));
    }
    // The same devices the next day, under the next epoch's salt.
    accepted.push(message(
        "neude-1",
        "neude",
        ts("2026-04-28T10:00:00Z"),
        "2026-04-28",
        0..1000,
    ));
    // Live: 700 devices in neude now (density 700 x 0.5 / 100 m2 = 3.5: crowded), 5 in plein.
    let now = Timestamp::now();
    let minute = Timestamp::from_second(now.as_second().div_euclid(60) * 60).expect("ts");
    let epoch = config.rotation.epoch_at(now).to_string();
    let mut live_neude = message(
        "neude-1",
        "neude",
        minute - SignedDuration::from_mins(1),
        "2026-04-27",
        100_000..100_700,
    );
    live_neude.epoch = epoch.parse().expect("epoch");
    let mut live_plein = message(
        "plein-1",
        "plein",
        minute - SignedDuration::from_mins(1),
        "2026-04-27",
        200_000..200_005,
    );
    live_plein.epoch = live_neude.epoch;
    accepted.push(live_neude);
    accepted.push(live_plein);
    store
        .merge_batch(Batch {
            accepted,
            rejects: Vec::new(),
        })
        .await
        .expect("ingest");
    let live = LiveBoard::default();
    let metrics = Metrics::default();
    let zones = crate::live::evaluate(&store, &config, &crate::people::Floors::default(), now)
        .await
        .expect("evaluate");
    live.update(&store, &config, &metrics, zones).await;
    (AppState::new(config, store, live, metrics), dir)
}

async fn call(
    state: &AppState<SqliteStore>,
    path: &str,
    token: Option<&str>,
) -> (StatusCode, String) {
    let mut request = Request::get(path);
    if let Some(t) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let response = router(state.clone())
        .oneshot(request.body(Body::empty()).expect("request"))
        .await
        .expect("response");
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 16 << 20)
        .await
        .expect("body");
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn json(state: &AppState<SqliteStore>, path: &str, token: Option<&str>) -> Value {
    let (status, body) = call(state, path, token).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    serde_json::from_str(&body).expect("json")
}

const DAY1: &str = "from=2026-04-27T00:00:00Z&to=2026-04-28T00:00:00Z";

#[tokio::test]
async fn every_endpoint_admits_its_role_and_refuses_the_others() {
    let (state, _dir) = state().await;
    let public = [
        "/api/v1/health",
        "/api/v1/privacy",
        "/api/v1/register",
        "/api/v1/open-data",
        "/api/v1/openapi.json",
        "/api/v1/session",
        "/metrics",
    ];
    for path in public {
        assert_eq!(call(&state, path, None).await.0, StatusCode::OK, "{path}");
    }
    let protected = [
        ("/api/v1/zones".to_owned(), Role::Viewer),
        ("/api/v1/zones/neude".to_owned(), Role::Viewer),
        ("/api/v1/alerts".to_owned(), Role::Viewer),
        ("/api/v1/plan".to_owned(), Role::Viewer),
        (format!("/api/v1/series?zones=neude&{DAY1}"), Role::Planner),
        (format!("/api/v1/distinct?zone=neude&{DAY1}"), Role::Planner),
        (
            "/api/v1/flows?zones=neude,plein&from1=2026-04-27T10:00:00Z&to1=2026-04-27T10:30:00Z&from2=2026-04-27T10:30:00Z&to2=2026-04-27T11:00:00Z".to_owned(),
            Role::Planner,
        ),
        (
            "/api/v1/dwell?zone=neude&from=2026-04-27T10:00:00Z&to=2026-04-27T10:10:00Z&lag_min=20".to_owned(),
            Role::Planner,
        ),
        ("/api/v1/sensors".to_owned(), Role::Admin),
        ("/api/v1/config".to_owned(), Role::Admin),
    ];
    for (path, need) in &protected {
        let (status, body) = call(&state, path, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} without a token");
        assert!(body.contains("token"), "{body}");
        assert_eq!(
            call(&state, path, Some("guess")).await.0,
            StatusCode::UNAUTHORIZED
        );
        for (token, role) in [
            (VIEWER, Role::Viewer),
            (PLANNER, Role::Planner),
            (ADMIN, Role::Admin),
        ] {
            let (status, body) = call(&state, path, Some(token)).await;
            let expected = if role >= *need {
                StatusCode::OK
            } else {
                StatusCode::FORBIDDEN
            };
            assert_eq!(status, expected, "{path} as {role:?}: {body}");
        }
    }
}

#[tokio::test]
async fn zones_carry_live_numbers_with_bounds_density_and_level() {
    let (state, _dir) = state().await;
    let zones = json(&state, "/api/v1/zones", Some(VIEWER)).await;
    let neude = &zones[0];
    assert_eq!(neude["id"], "neude");
    assert_eq!(neude["name"], "Neude");
    let random = &neude["devices"]["wifi_random"];
    assert_eq!(random["estimate"].as_f64().map(f64::round), Some(700.0));
    assert!(random["lower"].as_f64() <= Some(700.0) && random["upper"].as_f64() >= Some(700.0));
    assert_eq!(
        neude["people"]["estimate"].as_f64().map(f64::round),
        Some(350.0)
    );
    assert_eq!(
        neude["density"]["estimate"]
            .as_f64()
            .map(|d| (d * 100.0).round()),
        Some(350.0)
    );
    assert_eq!(neude["level"]["name"], "crowded");
    assert_eq!(neude["stale"], false);
    let plein = &zones[1];
    assert!(
        plein["people"].is_null(),
        "no calibration, no people: {plein}"
    );
    let one = json(&state, "/api/v1/zones/plein", Some(VIEWER)).await;
    assert_eq!(
        one["total_devices"]["estimate"].as_f64().map(f64::round),
        Some(5.0)
    );
    let alerts = json(
        &state,
        "/api/v1/alerts?since=2000-01-01T00:00:00Z",
        Some(VIEWER),
    )
    .await;
    let levels: Vec<_> = alerts
        .as_array()
        .expect("list")
        .iter()
        .filter(|a| a["kind"] == "level")
        .collect();
    assert_eq!(levels.len(), 1, "neude crossed 3.5/m2: {alerts}");
    assert_eq!(levels[0]["zone"], "neude");
    assert_eq!(levels[0]["threshold"], 3.5);
    let metrics = call(&state, "/metrics", None).await.1;
    assert!(
        metrics.contains("crowdflow_zone_devices{kind=\"wifi_random\",zone=\"neude\"} 700"),
        "{metrics}"
    );
}

#[tokio::test]
async fn distinct_over_a_range_equals_the_union_of_its_buckets() {
    let (state, _dir) = state().await;
    let d = json(
        &state,
        "/api/v1/distinct?zone=neude&from=2026-04-27T10:05:00Z&to=2026-04-27T11:00:00Z",
        Some(PLANNER),
    )
    .await;
    let mut union = SketchUnion::new(Precision::DEFAULT);
    for m in 5..60u64 {
        union.add(&sketch(m * 10..m * 10 + 1000 + m * 7));
    }
    let expected = union.estimate().estimate;
    assert_eq!(
        d["devices"]["wifi_random"]["estimate"].as_f64(),
        Some(expected)
    );
    assert_eq!(d["total"]["upper_bound"], false);
    let two_days = json(
        &state,
        "/api/v1/distinct?zone=neude&from=2026-04-27T00:00:00Z&to=2026-04-29T00:00:00Z",
        Some(PLANNER),
    )
    .await;
    assert_eq!(
        two_days["total"]["upper_bound"], true,
        "crosses a salt epoch: {two_days}"
    );
}

#[tokio::test]
async fn series_come_from_stored_numbers_in_json_and_csv() {
    let (state, _dir) = state().await;
    let s = json(
        &state,
        &format!("/api/v1/series?zones=neude,plein&step=hour&{DAY1}"),
        Some(PLANNER),
    )
    .await;
    let neude = &s["zones"][0]["points"];
    assert_eq!(neude.as_array().map(Vec::len), Some(1));
    assert_eq!(neude[0]["t"], "2026-04-27T10:00:00Z");
    let plein = &s["zones"][1]["points"];
    assert_eq!(
        plein.as_array().map(Vec::len),
        Some(2),
        "10:30-11:29 spans two hours"
    );
    let minutes = json(
        &state,
        &format!("/api/v1/series?zones=neude&step=minute&{DAY1}"),
        Some(PLANNER),
    )
    .await;
    assert_eq!(
        minutes["zones"][0]["points"].as_array().map(Vec::len),
        Some(60)
    );
    assert!(
        minutes["zones"][0]["points"]
            .as_array()
            .is_some_and(|p| p.iter().all(|p| p["partial"] == false)),
        "a past day's buckets are complete"
    );
    let (status, csv) = call(
        &state,
        &format!("/api/v1/series?zones=neude&step=minute&{DAY1}&format=csv"),
        Some(PLANNER),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let header: Vec<&str> = csv.lines().next().unwrap_or_default().split(',').collect();
    assert_eq!(
        header[..8],
        [
            "zone",
            "time",
            "wifi",
            "wifi_lower",
            "wifi_upper",
            "wifi_random",
            "wifi_random_lower",
            "wifi_random_upper"
        ],
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 61);
    // Every row's people (a guessed factor: +-50 %) lie inside their bounds, which are wide.
    let column = |name: &str| header.iter().position(|h| *h == name).expect(name);
    let (p, lo, hi) = (
        column("people"),
        column("people_lower"),
        column("people_upper"),
    );
    for row in csv.lines().skip(1) {
        let cells: Vec<f64> = row
            .split(',')
            .map(|c| c.parse().unwrap_or(f64::NAN))
            .collect();
        assert!(
            cells[lo] < cells[p]
                && cells[p] < cells[hi]
                && cells[hi] - cells[lo] >= cells[p] * 0.99,
            "{row}"
        );
    }
}

#[tokio::test]
async fn a_series_says_where_its_range_was_widened_or_nothing_is_stored() {
    let (state, _dir) = state().await;
    // Half an hour by the hour: the stored hour is counted whole, so the range is widened
    // to it and the people are those of the whole hour too.
    let whole = json(
        &state,
        &format!("/api/v1/series?zones=neude&step=hour&{DAY1}"),
        Some(PLANNER),
    )
    .await;
    let half = json(
        &state,
        "/api/v1/series?zones=neude&step=hour&from=2026-04-27T10:30:00Z&to=2026-04-27T10:45:00Z",
        Some(PLANNER),
    )
    .await;
    assert_eq!(
        (&half["from"], &half["to"]),
        (
            &Value::from("2026-04-27T10:00:00Z"),
            &Value::from("2026-04-27T11:00:00Z")
        ),
        "{half}"
    );
    assert!(
        half["notes"][0]
            .as_str()
            .is_some_and(|n| n.contains("widened to whole hours")),
        "{half}"
    );
    let point = |s: &Value| s["zones"][0]["points"][0].clone();
    assert_eq!(
        point(&half)["people"],
        point(&whole)["people"],
        "one basis: the whole hour"
    );
    assert_eq!(point(&half)["total"], point(&whole)["total"]);
    // One zone with nothing stored in the range (plein is heard from 10:30), then none.
    let one = json(
        &state,
        "/api/v1/series?zones=neude,plein&step=minute&from=2026-04-27T10:00:00Z&to=2026-04-27T10:30:00Z",
        Some(PLANNER),
    )
    .await;
    assert_eq!(one["notes"].as_array().map(Vec::len), Some(1), "{one}");
    assert!(
        one["notes"][0]
            .as_str()
            .is_some_and(|n| n.starts_with("nothing stored for plein")),
        "{one}"
    );
    let none = json(
        &state,
        "/api/v1/series?zones=neude,plein&step=minute&from=2026-04-27T20:00:00Z&to=2026-04-27T21:00:00Z&format=columns",
        Some(PLANNER),
    )
    .await;
    assert!(
        none["notes"][0]
            .as_str()
            .is_some_and(|n| n.contains("nothing known, not nobody")),
        "{none}"
    );
    assert_eq!(
        whole["notes"],
        Value::Array(Vec::new()),
        "a past day on whole hours: {whole}"
    );
}

#[tokio::test]
async fn series_in_columns_carry_the_points_numbers() {
    let (state, _dir) = state().await;
    let path = format!("/api/v1/series?zones=neude,plein&step=minute&{DAY1}");
    let points = json(&state, &path, Some(PLANNER)).await;
    let columns = json(&state, &format!("{path}&format=columns"), Some(PLANNER)).await;
    assert_eq!(columns["step_s"], 60);
    let tenth = |v: &Value| v.as_f64().map(|v| (v * 10.0).round() / 10.0);
    for z in 0..2 {
        let (p, c) = (&points["zones"][z], &columns["zones"][z]);
        assert_eq!(c["zone"], p["zone"]);
        let p = p["points"].as_array().cloned().unwrap_or_default();
        assert!(!p.is_empty());
        assert_eq!(c["t"].as_array().map(Vec::len), Some(p.len()));
        for (i, point) in p.iter().enumerate() {
            let t: Timestamp = point["t"].as_str().and_then(|t| t.parse().ok()).expect("t");
            let from: Timestamp = "2026-04-27T00:00:00Z".parse().expect("ts");
            assert_eq!(
                c["t"][i].as_i64(),
                Some((t.as_second() - from.as_second()) / 60)
            );
            for field in ["estimate", "lower", "upper"] {
                assert_eq!(c["total"][field][i].as_f64(), tenth(&point["total"][field]));
            }
        }
    }
    let (status, _) = call(&state, &format!("{path}&format=xml"), Some(PLANNER)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_bucket_of_two_salts_sums_them_as_an_upper_bound_in_both_layouts() {
    let (state, _dir) = state().await;
    let hour = format!("/api/v1/series?zones=neude&step=hour&{DAY1}");
    let before = json(&state, &hour, Some(PLANNER)).await;
    let one_salt = before["zones"][0]["points"][0]["total"]["estimate"]
        .as_f64()
        .expect("estimate");
    // 500 devices under another salt in the same hour (a restarted authority's new salt).
    state
        .store
        .merge_batch(crate::store::Batch {
            accepted: vec![message(
                "neude-1",
                "neude",
                ts("2026-04-27T10:05:00Z"),
                "2026-04-28",
                0..500,
            )],
            rejects: Vec::new(),
        })
        .await
        .expect("ingest");
    let points = json(&state, &hour, Some(PLANNER)).await;
    let total = &points["zones"][0]["points"][0]["total"];
    assert_eq!(total["upper_bound"], true);
    let sum = total["estimate"].as_f64().expect("estimate");
    assert!(
        (sum - one_salt - 500.0).abs() < 10.0,
        "{sum} = {one_salt} + 500"
    );
    let columns = json(&state, &format!("{hour}&format=columns"), Some(PLANNER)).await;
    assert_eq!(
        columns["zones"][0]["total"]["upper_bound"],
        serde_json::json!([0])
    );
    assert_eq!(
        columns["zones"][0]["total"]["estimate"][0].as_f64(),
        Some((sum * 10.0).round() / 10.0)
    );
}

#[tokio::test]
async fn the_bucket_still_filling_is_flagged_partial() {
    // The seeded live window ends on the current minute and is partial until the next one
    // ends: close to a minute's end, wait for the next so the test does not cross it.
    let second = Timestamp::now().as_second().rem_euclid(60);
    if second >= 50 {
        tokio::time::sleep(std::time::Duration::from_secs((61 - second) as u64)).await;
    }
    let (state, _dir) = state().await;
    let minute =
        Timestamp::from_second(Timestamp::now().as_second().div_euclid(60) * 60).expect("ts");
    let (from, to) = (
        minute - SignedDuration::from_hours(1),
        minute + SignedDuration::from_mins(1),
    );
    for step in ["minute", "hour"] {
        let s = json(
            &state,
            &format!("/api/v1/series?zones=neude&step={step}&from={from}&to={to}"),
            Some(PLANNER),
        )
        .await;
        let points = s["zones"][0]["points"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        // neude's factors are guesses: its people say so, as the live view's basis does.
        assert_eq!(s["zones"][0]["people_calibrated"], false, "{step}");
        let last = points.last().expect("the live window's bucket");
        // Its window ended at most a minute ago: another window may still land in it.
        assert_eq!(last["partial"], true, "{step}: {last}");
    }
    let (_, csv) = call(
        &state,
        &format!("/api/v1/series?zones=neude&step=minute&from={from}&to={to}&format=csv"),
        Some(PLANNER),
    )
    .await;
    assert!(
        csv.lines().next().is_some_and(|h| h.ends_with(
            ",people_upper,people_calibrated,upper_bound,partial,people_error_is_floor"
        )),
        "{csv}"
    );
    assert!(
        csv.lines().nth(1).is_some_and(|l| l.contains(",false,")),
        "{csv}"
    );
    // Partial, and a guess's error is no fit's floor.
    assert!(
        csv.lines()
            .last()
            .is_some_and(|l| l.ends_with(",true,false")),
        "{csv}"
    );
}

#[tokio::test]
async fn people_fitted_on_few_head_counts_say_their_error_is_a_floor_everywhere() {
    let text = config_text("");
    let few = "calibration = { wifi_random = { factor = 0.5, floor = 0.0, error = 0.1, observations = 12 } }";
    for (calibration, floor) in [(few, true), (&*few.replace("= 12", "= 19"), false)] {
        let config = parse_config(&text.replace(
            "calibration = { wifi_random = 0.5, ble = 0.5 }",
            calibration,
        ));
        let (state, _dir) = state_with(config).await;
        let range = "from=2026-04-27T00:00:00Z&to=2026-04-28T00:00:00Z";
        let zones = json(&state, "/api/v1/zones", Some(VIEWER)).await;
        assert_eq!(zones[0]["people_basis"]["error_is_floor"], floor, "{zones}");
        let s = json(
            &state,
            &format!("/api/v1/series?zones=neude&step=hour&{range}"),
            Some(PLANNER),
        )
        .await;
        assert_eq!(s["zones"][0]["people_calibrated"], true, "{s}");
        assert_eq!(s["zones"][0]["people_error_is_floor"], floor, "{s}");
        let (_, csv) = call(
            &state,
            &format!("/api/v1/series?zones=neude&step=hour&{range}&format=csv"),
            Some(PLANNER),
        )
        .await;
        let row = csv.lines().nth(1).expect("a stored hour");
        assert!(row.ends_with(&format!(",{floor}")), "{csv}");
        let od = json(&state, &format!("/api/v1/open-data?{range}"), None).await;
        let neude = od["rows"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r["zone"] == "neude"))
            .cloned()
            .unwrap_or_default();
        assert_eq!(neude["people_error_is_floor"], floor, "{od}");
        let (_, csv) = call(
            &state,
            &format!("/api/v1/open-data?{range}&format=csv"),
            None,
        )
        .await;
        assert!(
            csv.contains("people_calibrated,people_error_is_floor\n"),
            "{csv}"
        );
        assert!(
            csv.lines()
                .any(|l| l.starts_with("neude,") && l.ends_with(&format!(",true,{floor}"))),
            "{csv}"
        );
    }
}

#[tokio::test]
async fn flows_of_overlapping_zones_fall_within_their_bounds() {
    let (state, _dir) = state().await;
    let f = json(
        &state,
        "/api/v1/flows?zones=neude,plein&from1=2026-04-27T10:00:00Z&to1=2026-04-27T11:00:00Z&from2=2026-04-27T10:30:00Z&to2=2026-04-27T11:30:00Z",
        Some(PLANNER),
    )
    .await;
    // neude 10:00-10:59 holds devices 0..2003; plein 10:30-11:29 holds 1500..2980.
    let truth = 2003.0 - 1500.0;
    let cell = &f["matrix"][0][1];
    let (lower, upper) = (
        cell["lower"].as_f64().expect("lower"),
        cell["upper"].as_f64().expect("upper"),
    );
    assert!(lower <= truth && truth <= upper, "{truth} outside {cell}");
}

#[tokio::test]
async fn bad_parameters_get_4xx_naming_the_parameter() {
    let (state, _dir) = state().await;
    for (path, status, parameter) in [
        (
            "/api/v1/series?zones=nowhere&from=2026-04-27T00:00:00Z&to=2026-04-28T00:00:00Z",
            StatusCode::NOT_FOUND,
            "zones",
        ),
        (
            "/api/v1/series?zones=neude&from=2026-04-28T00:00:00Z&to=2026-04-27T00:00:00Z",
            StatusCode::BAD_REQUEST,
            "to",
        ),
        (
            "/api/v1/series?zones=neude&step=week&from=2026-04-27T00:00:00Z&to=2026-04-28T00:00:00Z",
            StatusCode::BAD_REQUEST,
            "step",
        ),
        (
            "/api/v1/series?zones=neude&step=minute&from=2026-01-01T00:00:00Z&to=2026-04-28T00:00:00Z",
            StatusCode::BAD_REQUEST,
            "to",
        ),
        (
            "/api/v1/series?zones=neude&from=yesterday&to=2026-04-28T00:00:00Z",
            StatusCode::BAD_REQUEST,
            "from",
        ),
        (
            "/api/v1/series?zones=neude&from=2026-04-27T00:00:00Z&to=2026-04-28T00:00:00Z&format=xml",
            StatusCode::BAD_REQUEST,
            "format",
        ),
        (
            "/api/v1/series?from=2026-04-27T00:00:00Z&to=2026-04-28T00:00:00Z",
            StatusCode::BAD_REQUEST,
            "zones",
        ),
        (
            "/api/v1/flows?zones=neude&from1=2026-04-27T10:00:00Z&to1=2026-04-27T11:00:00Z&from2=2026-04-27T10:00:00Z&to2=2026-04-27T11:00:00Z",
            StatusCode::BAD_REQUEST,
            "zones",
        ),
        (
            "/api/v1/flows?zones=neude,neude&from1=2026-04-27T10:00:00Z&to1=2026-04-27T11:00:00Z&from2=2026-04-27T10:00:00Z&to2=2026-04-27T11:00:00Z",
            StatusCode::BAD_REQUEST,
            "zones",
        ),
        (
            "/api/v1/dwell?zone=neude&from=2026-04-27T10:00:00Z&to=2026-04-27T10:10:00Z&lag_min=0",
            StatusCode::BAD_REQUEST,
            "lag_min",
        ),
        (
            "/api/v1/distinct?zone=neude&from=2026-04-27T10:00:30Z&to=2026-04-27T11:00:00Z",
            StatusCode::BAD_REQUEST,
            "from",
        ),
        (
            "/api/v1/distinct?zone=neude&from=2026-04-27T10:00:00Z&to=2026-04-27T11:00:30Z",
            StatusCode::BAD_REQUEST,
            "to",
        ),
        (
            "/api/v1/open-data?from=2026-04-27T10:00:30Z",
            StatusCode::BAD_REQUEST,
            "from",
        ),
        ("/api/v1/zones/nowhere", StatusCode::NOT_FOUND, "id"),
        ("/api/v1/alerts?limit=0", StatusCode::BAD_REQUEST, "limit"),
        // A misspelt parameter is refused, not answered as if it were absent.
        ("/api/v1/alerts?limt=5", StatusCode::BAD_REQUEST, "limt"),
        (
            "/api/v1/series?zones=neude&from=2026-04-27T00:00:00Z&to=2026-04-28T00:00:00Z&form=csv",
            StatusCode::BAD_REQUEST,
            "form",
        ),
        (
            "/api/v1/dwell?zone=neude&from=2026-04-27T10:00:00Z&to=2026-04-27T10:10:00Z&lag=5",
            StatusCode::BAD_REQUEST,
            "lag",
        ),
        ("/api/v1/open-data?hour=3", StatusCode::BAD_REQUEST, "hour"),
        (
            "/api/v1/series?zones=neude&zones=plein&from=2026-04-27T00:00:00Z&to=2026-04-28T00:00:00Z",
            StatusCode::BAD_REQUEST,
            "zones",
        ),
        // Past the last time the clock holds: the error says why, not only "not RFC 3339".
        (
            "/api/v1/alerts?since=9999-12-31T23:59:59Z",
            StatusCode::BAD_REQUEST,
            "since",
        ),
    ] {
        let (got, body) = call(&state, path, Some(ADMIN)).await;
        assert_eq!(got, status, "{path}: {body}");
        let v: Value = serde_json::from_str(&body).expect("json error");
        assert_eq!(v["parameter"], parameter, "{path}: {body}");
    }
    let (status, body) = call(&state, "/api/v1/nothing", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("openapi"), "{body}");
}

#[tokio::test]
async fn refusals_say_what_is_wrong_in_the_callers_terms() {
    let (state, _dir) = state().await;
    let day = "from=2026-04-27T00:00:00Z&to=2026-04-28T00:00:00Z";
    for (path, parameter, says) in [
        (
            "/api/v1/distinct?zone=neude&from=1764748800&to=2026-04-28T00:00:00Z".to_owned(),
            "from",
            "not Unix seconds",
        ),
        (
            "/api/v1/distinct?zone=neude&from=2026-04-27&to=2026-04-28T00:00:00Z".to_owned(),
            "from",
            "is a date",
        ),
        (
            "/api/v1/distinct?zone=neude&from=9999-01-01T00:00:00Z&to=9999-12-31T00:00:00Z"
                .to_owned(),
            "to",
            "outside the times this service handles",
        ),
        (
            format!("/api/v1/series?zones=neude,,plein&{day}"),
            "zones",
            "empty entry",
        ),
        (
            format!("/api/v1/series?zones=neude,&{day}"),
            "zones",
            "empty entry",
        ),
        (
            format!("/api/v1/series?zones=%20neude&{day}"),
            "zones",
            "spaces around",
        ),
        (
            "/api/v1/series?zones=neude&from=2100-01-01T00:00:00Z&to=2100-01-02T00:00:00Z"
                .to_owned(),
            "from",
            "has not begun",
        ),
    ] {
        let (got, body) = call(&state, &path, Some(ADMIN)).await;
        assert_eq!(got, StatusCode::BAD_REQUEST, "{path}: {body}");
        let v: Value = serde_json::from_str(&body).expect("json error");
        assert_eq!(v["parameter"], parameter, "{path}: {body}");
        let message = v.to_string();
        assert!(message.contains(says), "{path}: {body}");
        assert!(
            !message.contains("jiff") && !message.contains("overflow"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn open_data_is_rounded_and_suppressed_below_k() {
    let (state, _dir) = state().await;
    let od = json(
        &state,
        "/api/v1/open-data?from=2026-04-27T00:00:00Z&to=2026-04-28T00:00:00Z",
        None,
    )
    .await;
    assert_eq!(od["k"], 10);
    let rows = od["rows"].as_array().expect("rows");
    assert!(!rows.is_empty());
    for row in rows {
        if let Some(d) = row["devices"].as_u64() {
            assert_eq!(d % 10, 0, "rounded: {row}");
            assert!(d >= 10);
        }
    }
    let (_, csv) = call(
        &state,
        "/api/v1/open-data?from=2026-04-27T00:00:00Z&to=2026-04-28T00:00:00Z&format=csv",
        None,
    )
    .await;
    assert!(
        csv.starts_with("# crowdflow open data; licence: CC BY 4.0"),
        "{csv}"
    );
    assert!(csv.contains("zone,hour_start,devices,people"));
    assert_eq!(super::open_data::publishable(9.4, 10, 10), None);
    assert_eq!(super::open_data::publishable(14.9, 10, 10), Some(10));
    assert_eq!(super::open_data::publishable(15.0, 10, 10), Some(20));
}

#[tokio::test]
async fn the_privacy_statement_and_register_come_from_the_config() {
    let (state, _dir) = state().await;
    let p = json(&state, "/api/v1/privacy", None).await;
    assert_eq!(p["operator"], "Gemeente Utrecht");
    assert!(
        p["salt_policy"]
            .as_str()
            .is_some_and(|s| s.contains("04:00 Europe/Amsterdam"))
    );
    assert_eq!(p["sensors"], 2);
    let r = json(&state, "/api/v1/register", None).await;
    assert_eq!(r[0]["id"], "neude-1");
    assert_eq!(r[0]["latitude"], 52.09);
    assert_eq!(r[0]["senses"], serde_json::json!(["wifi", "ble"]));
    let c = json(&state, "/api/v1/config", Some(ADMIN)).await;
    let text = c.to_string();
    assert!(
        !text.contains(&hash_token(VIEWER).to_hex().to_string()),
        "no token hashes in the config view"
    );
}

#[tokio::test]
async fn the_openapi_document_lists_every_route() {
    let doc = serde_json::to_value(openapi()).expect("json");
    for path in [
        "/api/v1/zones",
        "/api/v1/zones/{id}",
        "/api/v1/series",
        "/api/v1/distinct",
        "/api/v1/flows",
        "/api/v1/dwell",
        "/api/v1/alerts",
        "/api/v1/stream",
        "/api/v1/open-data",
        "/api/v1/privacy",
        "/api/v1/register",
        "/api/v1/sensors",
        "/api/v1/config",
        "/api/v1/health",
        "/api/v1/plan",
        "/api/v1/session",
        "/api/v1/calibration",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    assert!(doc["components"]["schemas"]["ZoneLive"].is_object());
    assert!(
        doc["paths"]["/api/v1/calibration"]["post"]["requestBody"]["content"]["text/csv"]
            .is_object()
    );
    assert!(doc["components"]["schemas"]["Report"].is_object());
}

#[tokio::test]
async fn the_session_names_the_callers_role_without_refusing() {
    let (state, _dir) = state().await;
    let anonymous = json(&state, "/api/v1/session", None).await;
    assert_eq!(anonymous["role"], Value::Null);
    assert!(
        anonymous["reason"]
            .as_str()
            .is_some_and(|r| r.contains("token")),
        "{anonymous}"
    );
    assert_eq!(
        json(&state, "/api/v1/session", Some("guess")).await["reason"],
        "unknown token"
    );
    assert_eq!(
        json(&state, "/api/v1/session", Some(VIEWER)).await["role"],
        "viewer"
    );
}

#[tokio::test]
async fn the_plan_carries_outlines_thresholds_and_level_names() {
    let (state, _dir) = state().await;
    let plan = json(&state, "/api/v1/plan", Some(VIEWER)).await;
    assert_eq!(plan["title"], "crowdflow");
    assert_eq!(plan["tiles"], Value::Null);
    let neude = &plan["zones"][0];
    assert_eq!(neude["id"], "neude");
    assert_eq!(neude["thresholds"], serde_json::json!([2.0, 3.5, 5.0]));
    assert_eq!(
        neude["levels"],
        serde_json::json!(["free", "busy", "crowded", "critical"])
    );
    assert_eq!(neude["capacity"], 500);
}

/// `/` serves the built dashboard (compressed, with a strict content security policy) or,
/// in a binary built without it, a page that says how to build it.
#[tokio::test]
async fn the_start_page_is_the_dashboard_or_says_how_to_build_it() {
    let (state, _dir) = state().await;
    let request = Request::get("/")
        .header(header::ACCEPT_ENCODING, "gzip, deflate, br")
        .body(Body::empty())
        .expect("request");
    let response = router(state.clone())
        .oneshot(request)
        .await
        .expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    if dashboard::built() {
        assert_eq!(headers[header::CONTENT_ENCODING], "gzip");
        let csp = headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .expect("ascii");
        assert!(
            csp.contains("default-src 'self'") && csp.contains("connect-src 'self'"),
            "{csp}"
        );
        let (status, page) = call(&state, "/", None).await;
        assert_eq!(status, StatusCode::OK);
        let script = page
            .split("src=\"/assets/")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("the page loads its script from /assets/");
        let (status, _) = call(&state, &format!("/assets/{script}"), None).await;
        assert_eq!(status, StatusCode::OK, "{script}");
    } else {
        let (_, page) = call(&state, "/", None).await;
        assert!(page.contains("npm run build"), "{page}");
    }
    let (status, body) = call(&state, "/assets/nothing.js", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("assets/nothing.js"), "{body}");
}

#[tokio::test]
async fn dwell_refuses_windows_that_have_not_ended_and_says_when_there_is_nobody() {
    let (state, _dir) = state().await;
    let minute =
        |t: Timestamp| Timestamp::from_second(t.as_second().div_euclid(60) * 60).expect("ts");
    let now = minute(Timestamp::now());
    let ago = |m: i64| now - SignedDuration::from_mins(m);
    // The later window ends in the future: not a confident 0 %.
    let (status, body) = call(
        &state,
        &format!(
            "/api/v1/dwell?zone=neude&from={}&to={}&lag_min=15",
            ago(20),
            ago(10)
        ),
        Some(PLANNER),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("\"parameter\":\"lag_min\""), "{body}");
    // The first window has not ended.
    let (status, body) = call(
        &state,
        &format!(
            "/api/v1/dwell?zone=neude&from={}&to={}&lag_min=1",
            ago(5),
            now + SignedDuration::from_mins(5)
        ),
        Some(PLANNER),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("\"parameter\":\"to\""), "{body}");
    // Ended, but nothing stored then: no share, flagged, and a note that says so (not a
    // confident "nobody").
    let d = json(
        &state,
        &format!(
            "/api/v1/dwell?zone=neude&from={}&to={}&lag_min=5",
            ago(60),
            ago(50)
        ),
        Some(PLANNER),
    )
    .await;
    assert_eq!(
        (&d["share"], &d["unreliable"]),
        (&Value::Null, &Value::Bool(true)),
        "{d}"
    );
    assert!(
        d["note"]
            .as_str()
            .is_some_and(|n| n.contains("no stored data in the first window")
                && n.contains("nothing known, not nobody")),
        "{d}"
    );
}

#[tokio::test]
async fn flows_over_windows_without_data_say_so() {
    let (state, _dir) = state().await;
    let f = json(
        &state,
        "/api/v1/flows?zones=neude,plein&from1=2026-05-01T10:00:00Z&to1=2026-05-01T10:30:00Z&from2=2026-04-27T10:00:00Z&to2=2026-04-27T10:30:00Z",
        Some(PLANNER),
    )
    .await;
    let notes = f["notes"].as_array().expect("notes");
    assert_eq!(notes.len(), 2, "{f}");
    assert!(
        notes[0]
            .as_str()
            .is_some_and(|n| n.starts_with("window 1") && n.contains("no stored data")),
        "{f}"
    );
    assert!(
        notes[1]
            .as_str()
            .is_some_and(|n| n.starts_with("window 2 starts before window 1")),
        "{f}"
    );
    // Zeros of a window nothing was stored for are never a sure 0.
    assert!(
        f["matrix"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|row| row.as_array().into_iter().flatten())
            .all(|cell| cell["unreliable"] == true),
        "{f}"
    );
    // A window that has not begun is refused, naming its start.
    let later = Timestamp::now() + SignedDuration::from_hours(2);
    let later = Timestamp::from_second(later.as_second() / 60 * 60).expect("ts");
    let (status, body) = call(
        &state,
        &format!(
            "/api/v1/flows?zones=neude,plein&from1=2026-04-27T10:00:00Z&to1=2026-04-27T10:30:00Z&from2={later}&to2={}",
            later + SignedDuration::from_mins(30)
        ),
        Some(PLANNER),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body.contains("from2") && body.contains("has not begun"),
        "{body}"
    );
    // Distinct visitors of a range that has not begun alike (were 0 with a note).
    let (status, body) = call(
        &state,
        &format!(
            "/api/v1/distinct?zone=neude&from={later}&to={}",
            later + SignedDuration::from_mins(30)
        ),
        Some(PLANNER),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body.contains("\"parameter\":\"from\"") && body.contains("has not begun"),
        "{body}"
    );
    // Distinct visitors of a range without data say so too.
    let d = json(
        &state,
        "/api/v1/distinct?zone=neude&from=2026-05-01T10:00:00Z&to=2026-05-01T10:30:00Z",
        Some(PLANNER),
    )
    .await;
    assert!(
        d["notes"][0]
            .as_str()
            .is_some_and(|n| n.contains("no stored data")),
        "{d}"
    );
}

#[tokio::test]
async fn open_data_without_data_says_why() {
    let (state, _dir) = state().await;
    let d = json(
        &state,
        "/api/v1/open-data?from=2026-05-01T00:00:00Z&to=2026-05-02T00:00:00Z",
        None,
    )
    .await;
    assert_eq!(d["rows"].as_array().map(Vec::len), Some(0), "{d}");
    let notes: Vec<&str> = d["notes"]
        .as_array()
        .expect("notes")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        notes.iter().any(|n| n.starts_with("No stored data from")),
        "{notes:?}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("Only hours that have ended")),
        "{notes:?}"
    );
    // The hour under way: nothing of it has ended, said as such (no error).
    let hour = Timestamp::from_second(Timestamp::now().as_second() / 3600 * 3600).expect("ts");
    let now = json(
        &state,
        &format!(
            "/api/v1/open-data?from={hour}&to={}",
            hour + SignedDuration::from_hours(1)
        ),
        None,
    )
    .await;
    assert!(now["notes"].to_string().contains("has ended yet"), "{now}");
    // A mid-hour start is read from its hour, and said so.
    let mid = json(
        &state,
        "/api/v1/open-data?from=2026-05-01T09:30:00Z&to=2026-05-01T12:00:00Z",
        None,
    )
    .await;
    assert!(
        mid["notes"]
            .to_string()
            .contains("read as 2026-05-01T09:00:00Z to 2026-05-01T12:00:00Z"),
        "{mid}"
    );
    // Swapped: the error names `to`.
    let (status, body) = call(
        &state,
        "/api/v1/open-data?from=2026-05-02T00:00:00Z&to=2026-05-01T00:00:00Z",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body.contains("\"to\"") && body.contains("must be after `from`"),
        "{body}"
    );
}

#[test]
fn every_operation_has_a_summary() {
    let doc = serde_json::to_value(openapi()).expect("json");
    let paths = doc["paths"].as_object().expect("paths");
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("operations") {
            let summary = op["summary"].as_str().unwrap_or_default();
            assert!(!summary.is_empty(), "{method} {path} has no summary");
        }
    }
}

#[tokio::test]
async fn an_alert_is_acknowledged_once_by_role_for_every_screen() {
    let (state, _dir) = state().await;
    let at = ts("2026-04-27T10:00:00Z");
    let alert = crate::store::Alert {
        id: 0,
        acknowledged_at: None,
        acknowledged_by: None,
        at,
        zone: ZoneId::new("neude").expect("zone"),
        kind: crate::store::AlertKind::Level,
        level: Some(1),
        threshold: Some(2.0),
        value: Some(2.1),
        message: "Neude is busy".into(),
    };
    assert!(
        state
            .store
            .record_alert(alert)
            .await
            .expect("stored")
            .is_some()
    );
    let mut stream = state.live.subscribe();
    let post = |body: &'static str, token: Option<&'static str>| {
        let state = state.clone();
        async move {
            let mut request = Request::post("/api/v1/alerts/acknowledge")
                .header(header::CONTENT_TYPE, "application/json");
            if let Some(t) = token {
                request = request.header(header::AUTHORIZATION, format!("Bearer {t}"));
            }
            let response = router(state)
                .oneshot(request.body(Body::from(body)).expect("request"))
                .await
                .expect("response");
            let status = response.status();
            let body = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .expect("body");
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    let key = r#"{"at":"2026-04-27T10:00:00Z","zone":"neude","kind":"level","level":1}"#;
    assert_eq!(post(key, None).await.0, StatusCode::UNAUTHORIZED);
    let (status, body) = post(key, Some(VIEWER)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let acked: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(acked["acknowledged_by"], "viewer (viewer)", "{acked}");
    assert!(acked["acknowledged_at"].is_string());
    match stream.try_recv() {
        Ok(crate::live::LiveEvent::Alert(a)) => {
            assert_eq!(a.acknowledged_by.as_deref(), Some("viewer (viewer)"))
        }
        other => panic!("the stream carries the acknowledgement: {other:?}"),
    }
    let (status, body) = post(key, Some(ADMIN)).await;
    assert_eq!(status, StatusCode::CONFLICT, "acknowledged once: {body}");
    assert!(
        body.contains("already acknowledged at") && body.contains("by viewer (viewer)"),
        "{body}"
    );
    let (status, body) = post(
        r#"{"at":"2026-04-27T10:00:00Z","zone":"neude","kind":"level","level":3}"#,
        Some(VIEWER),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(
        body.contains("\"parameter\":\"level\"") && body.contains("has level 1"),
        "{body}"
    );
    // A refused body names the field at fault where there is one.
    for (sent, field) in [
        (r#"{"at":"yesterday","zone":"neude","kind":"level"}"#, "at"),
        (r#"{"at":"2026-04-27T10:00:00Z","kind":"level"}"#, "zone"),
        (
            r#"{"at":"2026-04-27T10:00:00Z","zone":"neude","kind":"boom"}"#,
            "kind",
        ),
        ("not json", "body"),
        (
            r#"{"at":"2026-04-27T10:00:00Z","zone":"neude","kind":"level"}"#,
            "level",
        ),
        (
            r#"{"at":"2026-04-27T10:00:00Z","zone":"neude","kind":"level","level":1,"extra":1}"#,
            "extra",
        ),
    ] {
        let (status, body) = post(sent, Some(VIEWER)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{sent}: {body}");
        assert!(
            body.contains(&format!("\"parameter\":\"{field}\"")),
            "{sent}: {body}"
        );
    }
    let (status, body) = post(
        r#"{"at":"2026-04-27T10:00:00Z","zone":"nowhere","kind":"level","level":1}"#,
        Some(VIEWER),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}
