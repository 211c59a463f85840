//! What every benchmark binary ends with: the table of results on stdout, and the JSON
//! results (with the machine's description) in a file.

use std::path::Path;

use serde_json::{Value, json};

/// Print `rows` (measurement, result) as a two-column table under a header.
pub fn print_table(rows: &[(String, String)]) {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(10);
    println!("\n{:width$}  result", "measurement");
    println!("{}", "-".repeat(width + 40));
    for (k, v) in rows {
        println!("{k:width$}  {v}");
    }
}

/// Cores and kernel release of this machine.
pub fn machine() -> Value {
    json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
    })
}

/// Add `machine` to `results` and write them, pretty, to `out` (creating its directory).
pub fn write_results(out: &str, mut results: serde_json::Map<String, Value>) -> anyhow::Result<()> {
    results.insert("machine".into(), machine());
    if let Some(dir) = Path::new(out).parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(out, serde_json::to_string_pretty(&Value::Object(results))?)?;
    println!("\nJSON written to {out}");
    Ok(())
}
