//! The Python client example (`examples/python/swarmnet_client.py`, grpcio) against a real
//! agent process: health service, server reflection (what grpcurl uses), idempotent creates,
//! the Watch stream resumed after a disconnect without losing a change, deletes twice.
//!
//! Needs the venv scripts/install-deps.sh makes (`target/pyenv` with grpcio, grpcio-tools,
//! grpcio-reflection, grpcio-health-checking; `$SWARMNET_PYTHON` overrides); otherwise it
//! prints "skipped: <reason>".

mod common;

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::AgentProc;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The venv's python, if it has the packages.
fn python() -> Result<PathBuf, String> {
    let py = match std::env::var_os("SWARMNET_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| root().join("target"));
            target.join("pyenv/bin/python")
        }
    };
    let ok = Command::new(&py)
        .args([
            "-c",
            "import grpc, grpc_tools, grpc_reflection, grpc_health",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        Ok(py)
    } else {
        Err(format!(
            "{} with grpcio, grpcio-tools, grpcio-reflection and grpcio-health-checking is \
             missing (scripts/install-deps.sh creates it)",
            py.display()
        ))
    }
}

#[tokio::test]
async fn the_python_client_example_runs_against_an_agent() {
    let py = match python() {
        Ok(p) => p,
        Err(why) => {
            println!("skipped: {why}");
            return;
        }
    };
    let a = AgentProc::start(Ipv4Addr::new(127, 0, 0, 1), &[]).await;
    let script = root().join("examples/python/swarmnet_client.py");
    let url = a.url();
    let proto = root().join("proto/proto/swarmnet.proto");
    let t0 = Instant::now();
    // Blocking: the agent runs in its own process, this runtime has nothing else to do.
    let out = tokio::task::spawn_blocking(move || {
        use std::io::Read as _;
        let mut child = Command::new(&py)
            .arg(&script)
            .arg("--api")
            .arg(&url)
            .arg("--proto")
            .arg(&proto)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("python starts");
        let mut so = child.stdout.take().unwrap();
        let mut se = child.stderr.take().unwrap();
        let o = std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = so.read_to_end(&mut b);
            b
        });
        let e = std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = se.read_to_end(&mut b);
            b
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the example did not finish within 120 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        (status, o.join().unwrap(), e.join().unwrap())
    })
    .await
    .unwrap();
    let (status, stdout, stderr) = out;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr),
    );
    assert!(
        status.success(),
        "the example failed ({status}) after {:?}:\n{stdout}\n{stderr}\nagent log:\n{}",
        t0.elapsed(),
        a.log_text()
    );
    for step in [
        "health",
        "reflection",
        "idempotent-create",
        "idempotent-service",
        "watch",
        "resume",
        "delete-twice",
    ] {
        assert!(
            stdout.contains(&format!("{{\"step\": \"{step}\"")),
            "step {step} missing:\n{stdout}"
        );
    }
    assert!(stdout.trim_end().ends_with("ok"), "{stdout}");
}
