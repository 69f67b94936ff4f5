//! The 15-minute forecast against "no change" (persistence) on the simulator's Koningsdag:
//! for every zone and every minute after the first 90, a forecast made from the 90 minutes
//! before (as the live board makes it) is compared with the true persons 15 minutes later.
//! Nothing but the past goes into a forecast, so every hour it is judged on is held back.

use std::collections::BTreeMap;

use crowdflow_aggregator::forecast::{self, HISTORY_MIN, HORIZON_MIN};
use crowdflow_demo::KONINGSDAG;
use crowdflow_simulator::{Scenario, Simulation};

#[test]
fn the_forecast_beats_persistence_by_a_fifth() {
    let scenario =
        Scenario::parse(KONINGSDAG, std::path::Path::new("koningsdag.toml")).expect("scenario");
    let start = scenario.start.as_second() / 60;
    let minutes = ((scenario.end.as_second() / 60) - start) as usize;
    let mut series: BTreeMap<String, Vec<f64>> = scenario
        .zones
        .iter()
        .map(|z| (z.id.clone(), vec![0.0; minutes]))
        .collect();
    for row in Simulation::new(scenario.clone()).truth() {
        let m = (row.minute.as_second() / 60 - start) as usize;
        if let Some(s) = series.get_mut(&row.zone).and_then(|s| s.get_mut(m)) {
            *s = f64::from(row.persons);
        }
    }
    let (mut ours_all, mut still_all) = (0.0, 0.0);
    let mut covered = 0usize;
    let mut judged = 0usize;
    for (zone, s) in &series {
        let (mut ours, mut still) = (0.0, 0.0);
        let mut n = 0usize;
        for t in HISTORY_MIN..minutes - HORIZON_MIN {
            let history = &s[t - HISTORY_MIN..t];
            let truth = s[t - 1 + HORIZON_MIN];
            let f = forecast::ahead(history, HORIZON_MIN).expect("90 minutes are enough");
            ours += (f.estimate - truth).abs();
            still += (history[HISTORY_MIN - 1] - truth).abs();
            if f.lower <= truth && truth <= f.upper {
                covered += 1;
            }
            n += 1;
        }
        eprintln!(
            "{zone:>18}: forecast MAE {:.1} persons, persistence {:.1} ({:+.0} %)",
            ours / n as f64,
            still / n as f64,
            (ours / still - 1.0) * 100.0
        );
        assert!(
            ours <= 0.8 * still,
            "{zone}: only {:.0} % better than persistence",
            (1.0 - ours / still) * 100.0
        );
        ours_all += ours;
        still_all += still;
        judged += n;
    }
    let gain = 1.0 - ours_all / still_all;
    eprintln!(
        "all zones: {judged} forecasts, MAE {:.0} % lower than persistence; the 95 % interval held the truth in {:.1} %",
        gain * 100.0,
        covered as f64 * 100.0 / judged as f64
    );
    assert!(
        gain >= 0.20,
        "only {:.0} % better than persistence",
        gain * 100.0
    );
}
