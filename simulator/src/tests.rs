use std::path::Path;

use super::*;

fn scenario() -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/simulator/two-squares.toml");
    Scenario::load(&path).expect("scenario")
}

fn run(s: Scenario) -> (Vec<Frame>, Simulation) {
    let end = s.end.as_microsecond();
    let mut sim = Simulation::new(s);
    let mut frames = Vec::new();
    while sim.now() < end {
        let step = sim.now() + 60_000_000;
        sim.advance(step, &mut frames);
    }
    (frames, sim)
}

#[test]
fn the_same_scenario_and_seed_give_the_same_frames_and_truth() {
    let (a, sa) = run(scenario());
    let (b, sb) = run(scenario());
    assert_eq!(a, b);
    assert_eq!(sa.truth(), sb.truth());
    let mut other = scenario();
    other.seed = 8;
    let (c, _) = run(other);
    assert_ne!(a, c, "another seed, another crowd");
}

#[test]
fn frames_come_in_time_order_within_the_scenario() {
    let s = scenario();
    let (start, end) = (s.start.as_microsecond(), s.end.as_microsecond());
    let (frames, _) = run(s);
    assert!(frames.len() > 1000);
    assert!(
        frames
            .windows(2)
            .all(|w| w[0].t_us <= w[1].t_us + BURST_SPACING_US)
    );
    assert!(
        frames
            .iter()
            .all(|f| f.t_us >= start && f.t_us < end + BURST_SPACING_US)
    );
    assert!(frames.iter().all(|f| f.rssi >= -88 && f.rssi <= 0));
}

#[test]
fn addresses_follow_their_device_models() {
    let (frames, sim) = run(scenario());
    for f in &frames {
        match f.medium {
            Medium::Wifi => assert_eq!(f.address[0] & 0x01, 0, "unicast"),
            Medium::Ble => assert_eq!(f.address[0] & 0xc0, 0x40, "resolvable private address"),
        }
    }
    let global = frames
        .iter()
        .filter(|f| f.medium == Medium::Wifi && f.address[0] & 0x02 == 0);
    let distinct_global: HashSet<_> = global.map(|f| f.address).collect();
    assert!(
        distinct_global
            .iter()
            .all(crowdflow_agent::frame::oui::is_hardware),
        "a global phone's address has its maker's assigned prefix"
    );
    let global_phones = sim
        .devices
        .iter()
        .filter(|d| d.model == Model::GlobalPhone)
        .count();
    assert!(
        distinct_global.len() <= global_phones,
        "a global phone keeps one address"
    );
    let ios = sim
        .devices
        .iter()
        .filter(|d| d.model == Model::IosLike)
        .count();
    let random: HashSet<_> = frames
        .iter()
        .filter(|f| f.medium == Medium::Wifi && f.address[0] & 0x02 != 0)
        .map(|f| f.address)
        .collect();
    assert!(
        random.len() > 3 * ios,
        "iOS-like phones change MAC every burst: {} addresses",
        random.len()
    );
}

#[test]
fn truth_counts_every_person_where_they_are() {
    let s = scenario();
    let sim = Simulation::new(s.clone());
    let truth = sim.truth();
    let (people, devices) = sim.size();
    assert!(people > 120 && people <= 140, "{people}");
    assert!(devices >= people * 8 / 10, "{devices}");
    // Before any move, north holds only arrivals to north.
    let early: u32 = truth
        .iter()
        .filter(|r| r.zone == "north" && r.minute < s.start + jiff::SignedDuration::from_mins(5))
        .map(|r| r.persons)
        .max()
        .unwrap_or(0);
    assert!(early > 0 && early <= 80);
    // After the move window, south holds people who arrived in the north.
    let south_late: u32 = truth
        .iter()
        .filter(|r| r.zone == "south" && r.minute >= s.start + jiff::SignedDuration::from_mins(22))
        .map(|r| r.persons)
        .max()
        .unwrap_or(0);
    assert!(south_late > 0, "movers arrive in the south");
    for r in &truth {
        assert!(r.devices >= r.persons / 2, "{r:?}");
    }
}

#[test]
fn scenario_mistakes_name_their_field() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/simulator/two-squares.toml"),
    )
    .expect("read");
    for (from, to, field) in [
        ("end = \"09:30\"", "end = \"08:30\"", "scenario.end"),
        (
            "zone = \"north\"\nx = 0.0",
            "zone = \"east\"\nx = 0.0",
            "sensors[0].zone",
        ),
        ("share = 0.5", "share = 1.5", "moves[0].share"),
        ("radius_m = 25.0", "radius_m = 0.0", "zones[0].radius_m"),
        (
            "radius_m = 25.0",
            "radius_m = 25.0\ngate_width_m = -4.0",
            "zones[0].gate_width_m",
        ),
        (
            "seed = 7",
            "seed = 7\n[population]\nno_device = 0.5",
            "population.no_device",
        ),
        (
            "stay_min = [10, 25]",
            "stay_min = [25, 10]",
            "arrivals[0].stay_min",
        ),
        (
            "date = \"2026-04-27\"",
            "date = \"27-04-2026\"",
            "scenario.date",
        ),
    ] {
        assert!(text.contains(from), "{from}");
        let err = Scenario::parse(&text.replacen(from, to, 1), Path::new("s.toml"))
            .expect_err(field)
            .to_string();
        assert!(err.contains(field), "{field}: {err}");
    }
}
