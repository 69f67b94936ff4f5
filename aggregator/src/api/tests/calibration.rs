//! `POST /api/v1/calibration`: the admin's preview of `calibrate` on the stored minutes.

use super::*;

async fn post(
    state: &AppState<SqliteStore>,
    body: Vec<u8>,
    token: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = Request::post("/api/v1/calibration").header(header::CONTENT_TYPE, "text/csv");
    if let Some(t) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let response = router(state.clone())
        .oneshot(request.body(Body::from(body)).expect("request"))
        .await
        .expect("response");
    let status = response.status();
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/json",
        "{status}"
    );
    let body = axum::body::to_bytes(response.into_body(), 16 << 20)
        .await
        .expect("body");
    (status, serde_json::from_slice(&body).expect("json"))
}

/// Neude's stored minutes 10:00-10:59 hold 1000 + 7 m `wifi_random` devices (minute m);
/// twelve counts of five minutes at people = 0.4 x (devices - 900).
fn counts() -> String {
    let mut csv = String::from("zone,start,end,people\n");
    for k in 0..12i64 {
        let start = ts("2026-04-27T10:00:00Z") + SignedDuration::from_mins(5 * k);
        let devices = 1000.0 + 7.0 * (5.0 * k as f64 + 2.0);
        csv += &format!(
            "neude,{start},{},{:.1}\n",
            start + SignedDuration::from_mins(5),
            0.4 * (devices - 900.0)
        );
    }
    csv
}

#[tokio::test]
async fn the_preview_is_for_admins_only() {
    let (state, _dir) = state().await;
    let body = counts().into_bytes();
    assert_eq!(
        post(&state, body.clone(), None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post(&state, body.clone(), Some(VIEWER)).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post(&state, body.clone(), Some(PLANNER)).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(post(&state, body, Some(ADMIN)).await.0, StatusCode::OK);
}

#[tokio::test]
async fn the_preview_fits_the_stored_minutes_and_gives_the_toml() {
    let (state, _dir) = state().await;
    let (status, report) = post(&state, counts().into_bytes(), Some(ADMIN)).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["fitted"], 1);
    let neude = &report["zones"][0];
    assert_eq!(neude["zone"], "neude");
    assert_eq!(neude["validation"]["method"], "leave_one_block_out");
    assert_eq!(neude["picked"], "wifi_random");
    let kinds = neude["kinds"].as_array().expect("kinds");
    let random = kinds
        .iter()
        .find(|k| k["kind"] == "wifi_random")
        .expect("wifi_random");
    let factor = random["fit"]["factor"].as_f64().expect("factor");
    let floor = random["fit"]["floor"].as_f64().expect("floor");
    assert!((factor - 0.4).abs() < 0.03, "{random}");
    assert!((floor - 900.0).abs() < 40.0, "{random}");
    assert_eq!(random["fit"]["observations"], 12);
    assert!(
        kinds
            .iter()
            .find(|k| k["kind"] == "ble")
            .is_some_and(|k| k["refused"] == "no stored minutes of this kind"),
        "{neude}"
    );
    let toml = report["toml"].as_str().expect("toml");
    assert!(
        toml.contains("[zones.calibration]\nwifi_random = { factor = "),
        "{toml}"
    );
    assert_eq!(neude["toml"].as_str(), Some(toml));
    // Only fitted numbers: nothing per device, no salt.
    assert!(!report.to_string().contains("0000000000000001"));
}

#[tokio::test]
async fn a_bad_file_is_a_400_naming_line_and_field() {
    let (state, _dir) = state().await;
    let mut csv = counts();
    csv += "neude,2026-04-27T11:00:00Z,2026-04-27T10:00:00Z,3\nplaza,2026-04-27T10:00:00Z,2026-04-27T10:05:00Z,3\n";
    let (status, refusal) = post(&state, csv.into_bytes(), Some(ADMIN)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(refusal["parameter"], "body");
    assert_eq!(refusal["rows"][0]["line"], 14);
    assert_eq!(refusal["rows"][0]["field"], "end");
    assert_eq!(refusal["rows"][1]["line"], 15);
    assert_eq!(refusal["rows"][1]["field"], "zone");
    assert!(
        refusal["error"]
            .as_str()
            .is_some_and(|e| e.contains("line 15, zone: no zone \"plaza\"")),
        "{refusal}"
    );
    for garbage in [
        Vec::new(),
        vec![0xff, 0x00, 0x13],
        b"zone,start,end,people\n\"".to_vec(),
    ] {
        let (status, body) = post(&state, garbage, Some(ADMIN)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }
}

#[tokio::test]
async fn a_body_above_a_mebibyte_is_refused_as_json() {
    let (state, _dir) = state().await;
    let mut big = counts().into_bytes();
    big.resize(super::admin::MAX_COUNTS_BYTES + 1, b'\n');
    let (status, body) = post(&state, big, Some(ADMIN)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("1 MiB")),
        "{body}"
    );
}
