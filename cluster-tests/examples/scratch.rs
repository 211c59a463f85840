use networkdb::sim::{Sim, SimConfig};
use std::time::Duration;
fn main() {
    let n = 100;
    let mut sim = Sim::new(SimConfig {
        nodes: n,
        seed: 42,
        join_spread: Duration::from_secs(2),
        ..SimConfig::default()
    });
    for t in [3u64, 6, 12, 20, 30] {
        sim.run_until(Duration::from_secs(t));
        let mut min = usize::MAX;
        let mut lacking = 0;
        for i in 0..n {
            let up = sim
                .core(i)
                .unwrap()
                .members()
                .iter()
                .filter(|m| m.up)
                .count();
            if up < n - 1 {
                lacking += 1;
            }
            min = min.min(up);
        }
        println!("t={t}s min known up {min}, nodes lacking some: {lacking}");
    }
}
