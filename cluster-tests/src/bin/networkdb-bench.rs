//! networkdb benchmark: simulated dissemination at scale, real processes on loopback, and
//! HashiCorp serf measured in the same run for a ratio. Prints a table and writes JSON.
//!
//! Run with `scripts/bench-networkdb.sh` (builds in release mode first).

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use cluster_tests::ndb::{NdbCluster, NdbOptions};
use cluster_tests::serf::{SerfCluster, SerfOptions, percentile, serf_available};
use networkdb::sim::{Sim, SimConfig};
use networkdb::{CLUSTER, Config};
use serde_json::{Value, json};

#[derive(Parser, Debug)]
#[command(about = "networkdb benchmarks (simulation, real processes, serf reference)")]
struct Args {
    /// Where the JSON results go.
    #[arg(long, default_value = "bench-results/networkdb.json")]
    out: String,
    /// Sections to run (comma separated): sim, propagation, burst, failure, catchup, serf.
    #[arg(long, default_value = "sim,propagation,burst,failure,catchup,serf")]
    only: String,
    /// Simulated cluster sizes.
    #[arg(long, default_value = "100,1000", value_delimiter = ',')]
    sim_nodes: Vec<usize>,
    /// Real-process cluster sizes for propagation (and serf).
    #[arg(long, default_value = "10,20,30", value_delimiter = ',')]
    nodes: Vec<usize>,
    /// Writes (and serf events) per propagation measurement.
    #[arg(long, default_value_t = 100)]
    writes: usize,
    /// Entries for the catch-up and steady-state measurement.
    #[arg(long, default_value_t = 100_000)]
    catchup_entries: usize,
    /// Entries in the burst.
    #[arg(long, default_value_t = 1000)]
    burst: usize,
    /// Datagram loss (0..1) emulated during the false-positive run.
    #[arg(long, default_value_t = 0.05)]
    loss: f64,
    /// Seconds of the false-positive run.
    #[arg(long, default_value_t = 30)]
    loss_secs: u64,
    /// Skip the kills in the failure section (only the false-positive run).
    #[arg(long)]
    no_kills: bool,
    /// Nodes for the burst and failure-detection runs.
    #[arg(long, default_value_t = 20)]
    burst_nodes: usize,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() -> Result<()> {
    let args = Args::parse();
    let only: Vec<&str> = args.only.split(',').collect();
    let mut results = serde_json::Map::new();
    let mut table: Vec<(String, String)> = Vec::new();

    if only.contains(&"sim") {
        let r = sim_dissemination(&args.sim_nodes, &mut table)?;
        results.insert("sim_dissemination".into(), r);
    }
    let mut ours_p99: Vec<(usize, f64, f64)> = Vec::new();
    if only.contains(&"propagation") {
        let mut runs = Vec::new();
        for &n in &args.nodes {
            let (p50, p99, max) = real_propagation(n, args.writes)?;
            table.push((
                format!("networkdb: one write to last of {n} nodes (p50 / p99 / max)"),
                format!("{:.1} / {:.1} / {:.1} ms", ms(p50), ms(p99), ms(max)),
            ));
            runs.push(json!({"nodes": n, "writes": args.writes, "p50_ms": ms(p50), "p99_ms": ms(p99), "max_ms": ms(max)}));
            ours_p99.push((n, ms(p50), ms(p99)));
        }
        results.insert("propagation".into(), Value::Array(runs));
    }
    if only.contains(&"serf") {
        if serf_available() {
            let mut runs = Vec::new();
            for &n in &args.nodes {
                let (p50, p99) = serf_propagation(n, args.writes)?;
                table.push((
                    format!("serf: one user event to last of {n} nodes (p50 / p99)"),
                    format!("{:.1} / {:.1} ms", ms(p50), ms(p99)),
                ));
                let mut run = json!({"nodes": n, "events": args.writes, "p50_ms": ms(p50), "p99_ms": ms(p99)});
                if let Some((_, o50, o99)) = ours_p99.iter().find(|(m, _, _)| *m == n) {
                    let r50 = o50 / ms(p50);
                    let r99 = o99 / ms(p99);
                    run["ratio_networkdb_over_serf_p50"] = json!(r50);
                    run["ratio_networkdb_over_serf_p99"] = json!(r99);
                    table.push((
                        format!("ratio networkdb/serf at {n} nodes (p50 / p99)"),
                        format!("{r50:.2} / {r99:.2}"),
                    ));
                }
                runs.push(run);
            }
            results.insert("serf_propagation".into(), Value::Array(runs));
        } else {
            table.push((
                "serf reference".into(),
                "skipped: serf not installed".into(),
            ));
        }
    }
    if only.contains(&"burst") {
        results.insert(
            "burst".into(),
            burst(args.burst_nodes, args.burst, &mut table)?,
        );
    }
    if only.contains(&"failure") {
        results.insert("failure_detection".into(), failure(&args, &mut table)?);
    }
    if only.contains(&"catchup") {
        results.insert("catchup".into(), catchup(args.catchup_entries, &mut table)?);
    }

    cluster_tests::report::print_table(&table);
    cluster_tests::report::write_results(&args.out, results)?;
    Ok(())
}

/// Simulated dissemination: after the cluster forms, 20 writes from random nodes; time until
/// every node saw each, and messages/bytes per node during the dissemination window.
fn sim_dissemination(sizes: &[usize], table: &mut Vec<(String, String)>) -> Result<Value> {
    let mut out = Vec::new();
    for &n in sizes {
        for loss in [0.0, 0.05] {
            let started = Instant::now();
            let mut sim = Sim::new(SimConfig {
                nodes: n,
                seed: 42,
                core: Config::default(),
                loss,
                join_spread: Duration::from_secs(2),
                ..SimConfig::default()
            });
            // Let membership settle.
            sim.run_until(Duration::from_secs(if n > 200 { 25 } else { 12 }));
            let before = sim.total_stats();
            let t0 = sim.now();
            let writes = 20;
            let mut ids = Vec::new();
            for w in 0..writes {
                let writer = (w * 7919) % n;
                ids.push(sim.put(writer, CLUSTER, "bench", &format!("k{w}"), format!("v{w}"))?);
                sim.run_for(Duration::from_millis(100));
            }
            sim.run_for(Duration::from_secs(3));
            let after = sim.total_stats();
            let window = sim.now() - t0;
            let mut all = Vec::new();
            let mut p50s = Vec::new();
            let mut p99s = Vec::new();
            let mut incomplete = 0;
            for id in &ids {
                let d = sim.dissemination(id).context("tracked")?;
                match d.all {
                    Some(a) => all.push(a),
                    None => {
                        incomplete += 1;
                        eprintln!(
                            "  write {}: reached {} of {} targets",
                            id.key, d.reached, d.targets
                        );
                    }
                }
                if let Some(p) = d.p50 {
                    p50s.push(p);
                }
                if let Some(p) = d.p99 {
                    p99s.push(p);
                }
            }
            let msgs = (after.msgs_sent - before.msgs_sent) as f64 / n as f64;
            let bytes = (after.bytes_sent - before.bytes_sent) as f64 / n as f64;
            let per_s = window.as_secs_f64();
            let r = json!({
                "nodes": n, "loss": loss, "writes": writes,
                "time_to_all_p50_ms": ms(percentile(&all, 50.0)),
                "time_to_all_max_ms": ms(percentile(&all, 100.0)),
                "p50_of_nodes_ms": ms(percentile(&p50s, 50.0)),
                "p99_of_nodes_ms": ms(percentile(&p99s, 50.0)),
                "writes_not_reaching_all": incomplete,
                "msgs_per_node": msgs, "bytes_per_node": bytes,
                "msgs_per_node_per_s": msgs / per_s, "bytes_per_node_per_s": bytes / per_s,
                "window_s": per_s,
                "wall_s": started.elapsed().as_secs_f64(),
            });
            table.push((
                format!("sim N={n} loss={:.0}%: to 100% (median write / worst), p50/p99 nodes", loss * 100.0),
                format!(
                    "{:.0} / {:.0} ms, {:.0}/{:.0} ms; {incomplete} incomplete; {:.1} msgs {:.0} B /node/s",
                    ms(percentile(&all, 50.0)),
                    ms(percentile(&all, 100.0)),
                    ms(percentile(&p50s, 50.0)),
                    ms(percentile(&p99s, 50.0)),
                    msgs / per_s,
                    bytes / per_s
                ),
            ));
            eprintln!(
                "sim N={n} loss={loss}: done in {:.1}s",
                started.elapsed().as_secs_f64()
            );
            out.push(r);
        }
    }
    Ok(Value::Array(out))
}

/// One write at a time from rotating writers; time from the writer's own event to the last
/// node's event (same observation path on both ends, as for serf).
fn real_propagation(n: usize, writes: usize) -> Result<(Duration, Duration, Duration)> {
    eprintln!("propagation: starting {n} nodes");
    let mut c = NdbCluster::start(NdbOptions {
        subnet: 3,
        ..NdbOptions::new(n)
    })?;
    std::thread::sleep(Duration::from_secs(1));
    let mut samples = Vec::new();
    for w in 0..writes {
        let writer = w % n;
        let key = (
            String::new(),
            "bench".to_owned(),
            format!("k{w}"),
            format!("v{w}"),
        );
        c.nodes[writer].send(&format!("put - bench k{w} v{w}"))?;
        let last = c
            .wait_seen_all(&key, None, Duration::from_secs(10))?
            .context("a write did not reach every node in 10 s")?;
        let origin = c.nodes[writer].log().seen[&key];
        samples.push(last.saturating_duration_since(origin));
        std::thread::sleep(Duration::from_millis(30));
    }
    Ok((
        percentile(&samples, 50.0),
        percentile(&samples, 99.0),
        percentile(&samples, 100.0),
    ))
}

fn serf_propagation(n: usize, events: usize) -> Result<(Duration, Duration)> {
    eprintln!("serf: starting {n} nodes");
    let mut o = SerfOptions::new(n);
    o.subnet = 4;
    let c = SerfCluster::start_with(o)?;
    let s = c.measure_event_propagation(events, Duration::from_secs(10))?;
    Ok((percentile(&s, 50.0), percentile(&s, 99.0)))
}

fn burst(n: usize, count: usize, table: &mut Vec<(String, String)>) -> Result<Value> {
    eprintln!("burst: starting {n} nodes");
    let mut c = NdbCluster::start(NdbOptions {
        subnet: 5,
        ..NdbOptions::new(n)
    })?;
    std::thread::sleep(Duration::from_secs(2));
    let lines: Vec<String> = (0..count)
        .map(|i| format!("put - burst b{i} x{i}"))
        .collect();
    let t0 = Instant::now();
    c.nodes[0].send_many(&lines)?;
    let last_key = |i: usize| {
        (
            String::new(),
            "burst".to_owned(),
            format!("b{i}"),
            format!("x{i}"),
        )
    };
    let mut done = true;
    for node in &c.nodes {
        let ok = node.wait(Duration::from_secs(60), |l| {
            (0..count).all(|i| l.seen.contains_key(&last_key(i)))
        })?;
        done &= ok;
    }
    let mut latest = t0;
    for node in &c.nodes {
        let l = node.log();
        for i in 0..count {
            if let Some(t) = l.seen.get(&last_key(i)) {
                latest = latest.max(*t);
            }
        }
    }
    let took = latest - t0;
    // Idle afterwards: let retransmissions finish, then measure 10 s of traffic.
    std::thread::sleep(Duration::from_secs(3));
    let b0 = c.sum_stat("udp_bytes_out")? + c.sum_stat("tcp_bytes_out")?;
    let w0 = Instant::now();
    std::thread::sleep(Duration::from_secs(10));
    let b1 = c.sum_stat("udp_bytes_out")? + c.sum_stat("tcp_bytes_out")?;
    let idle = (b1 - b0) as f64 / w0.elapsed().as_secs_f64();
    table.push((
        format!("burst of {count} entries to all {n} nodes"),
        if done {
            format!("{:.0} ms", ms(took))
        } else {
            "INCOMPLETE after 60 s".into()
        },
    ));
    table.push((
        format!("cluster bytes/s idle after the burst ({n} nodes)"),
        format!("{:.0} B/s ({:.0} B/s per node)", idle, idle / n as f64),
    ));
    Ok(
        json!({"nodes": n, "entries": count, "complete": done, "all_nodes_have_all_ms": ms(took), "idle_cluster_bytes_per_s": idle, "idle_bytes_per_node_per_s": idle / n as f64}),
    )
}

fn failure(args: &Args, table: &mut Vec<(String, String)>) -> Result<Value> {
    let n = args.burst_nodes;
    let mut detections = Vec::new();
    if !args.no_kills {
        eprintln!("failure: starting {n} nodes");
        let mut c = NdbCluster::start(NdbOptions {
            subnet: 6,
            ..NdbOptions::new(n)
        })?;
        std::thread::sleep(Duration::from_secs(2));
        for victim in [n - 1, n / 2] {
            let vid = c.nodes[victim].id.clone();
            let t0 = Instant::now();
            c.nodes[victim].kill();
            let mut per_node = Vec::new();
            for (i, node) in c.nodes.iter().enumerate() {
                if i == victim || !node.is_running() {
                    continue;
                }
                let down = |l: &cluster_tests::ndb::NodeLog| {
                    l.members
                        .iter()
                        .filter(|(id, up, t)| *id == vid && !up && *t >= t0)
                        .map(|x| x.2)
                        .min()
                };
                let ok = node.wait(Duration::from_secs(30), |l| down(l).is_some())?;
                anyhow::ensure!(ok, "node {i} did not see {vid} down in 30 s");
                per_node.push(down(&node.log()).context("down event")? - t0);
            }
            per_node.sort();
            eprintln!(
                "  victim {vid}: first {:.0} ms, median {:.0} ms, last {:.0} ms",
                ms(per_node[0]),
                ms(per_node[per_node.len() / 2]),
                ms(per_node[per_node.len() - 1])
            );
            detections.push(per_node[per_node.len() - 1]);
        }
        table.push((
            format!("killed node seen failed by all {} others", n - 1),
            detections
                .iter()
                .map(|d| format!("{:.0} ms", ms(*d)))
                .collect::<Vec<_>>()
                .join(", "),
        ));
    }

    // False positives under loss: every node drops a share of incoming datagrams.
    let (loss, secs) = (args.loss, args.loss_secs);
    eprintln!(
        "failure: {n} nodes with {:.0}% datagram loss for {secs} s",
        loss * 100.0
    );
    let mut o = NdbOptions {
        subnet: 7,
        ..NdbOptions::new(n)
    };
    o.args = vec!["--drop-rate".into(), loss.to_string()];
    let c = NdbCluster::start(o)?;
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let false_downs: usize = c
        .nodes
        .iter()
        .map(|node| {
            let l = node.log();
            for (id, up, t) in &l.members {
                if !up && *t >= t0 {
                    eprintln!("  false down of {id} at +{:.0} ms", ms(*t - t0));
                }
            }
            l.members
                .iter()
                .filter(|(_, up, t)| !up && *t >= t0)
                .count()
        })
        .sum();
    table.push((
        format!(
            "false 'down' events at {:.0}% loss, {n} nodes, {secs} s",
            loss * 100.0
        ),
        format!("{false_downs}"),
    ));
    Ok(json!({
        "nodes": n,
        "detections_ms": detections.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
        "false_positive_run": {"loss": loss, "seconds": secs, "false_downs": false_downs},
    }))
}

fn catchup(entries: usize, table: &mut Vec<(String, String)>) -> Result<Value> {
    eprintln!("catchup: 3 nodes, writing {entries} entries");
    let mut o = NdbOptions {
        subnet: 8,
        ..NdbOptions::new(3)
    };
    o.entry_events = false;
    let mut c = NdbCluster::start(o.clone())?;
    let lines: Vec<String> = (0..entries)
        .map(|i| format!("put - bulk e{i:06} value-{i:06}"))
        .collect();
    for chunk in lines.chunks(10_000) {
        c.nodes[0].send_many(chunk)?;
    }
    let count = |node: &mut cluster_tests::ndb::NdbNode| -> Result<u64> {
        Ok(
            node.request("count - bulk", Duration::from_secs(30))?["count"]
                .as_u64()
                .unwrap_or(0),
        )
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut all = true;
        for node in c.nodes.iter_mut() {
            all &= count(node)? >= entries as u64;
        }
        if all {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the 3 nodes did not all reach {entries} entries in 120 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Steady state with the full table and no writes.
    std::thread::sleep(Duration::from_secs(5));
    let b0 = c.sum_stat("udp_bytes_out")? + c.sum_stat("tcp_bytes_out")?;
    let w0 = Instant::now();
    std::thread::sleep(Duration::from_secs(15));
    let b1 = c.sum_stat("udp_bytes_out")? + c.sum_stat("tcp_bytes_out")?;
    let steady = (b1 - b0) as f64 / w0.elapsed().as_secs_f64() / 3.0;
    // A new node joins and catches up.
    let t0 = Instant::now();
    let node = c.add_node(&o)?;
    let mut took = None;
    while t0.elapsed() < Duration::from_secs(60) {
        if count(node)? >= entries as u64 {
            took = Some(t0.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = took.context("the new node did not catch up in 60 s")?;
    table.push((
        format!("new node receives {entries} existing entries"),
        format!("{:.0} ms", ms(took)),
    ));
    table.push((
        format!("steady state with {entries} entries, no writes"),
        format!("{steady:.0} B/s per node"),
    ));
    Ok(json!({"entries": entries, "catchup_ms": ms(took), "steady_bytes_per_node_per_s": steady}))
}
