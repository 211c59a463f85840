//! The `swarmnet-cni` binary under test, and running it as a runtime would.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

use crate::harness::fresh_binary;

/// `swarmnet-cni`: `$SWARMNET_CNI_BIN`, else `target/<profile>/swarmnet-cni`, built first
/// when missing or older than its sources (`cargo test -p cluster-tests` alone does not
/// build it).
pub fn swarmnet_cni() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("SWARMNET_CNI_BIN") {
            return PathBuf::from(p);
        }
        fresh_binary("cni", "swarmnet-cni", &["cni/src", "proto", "Cargo.lock"])
    })
    .clone()
}

/// One plugin call: its exit code and stdout (JSON when there is any).
#[derive(Debug, Clone)]
pub struct Call {
    pub code: i32,
    pub out: Option<Value>,
    pub stderr: String,
}

impl Call {
    /// The error code of a failed call (`None` when it succeeded).
    pub fn error_code(&self) -> Option<u64> {
        (self.code != 0).then(|| {
            self.out
                .as_ref()
                .and_then(|v| v.get("code"))
                .and_then(Value::as_u64)
                .unwrap_or(0)
        })
    }

    pub fn msg(&self) -> String {
        self.out
            .as_ref()
            .and_then(|v| v.get("msg"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }
}

/// The `CNI_*` variables of one call.
#[derive(Debug, Clone, Default)]
pub struct CniEnv {
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    pub args: String,
}

/// Runs `swarmnet-cni` with `CNI_COMMAND=command`, `env` and `stdin` (a clean environment,
/// as a runtime's cleanup process has), within 90 s.
pub fn call(command: &str, env: &CniEnv, stdin: &str) -> Call {
    let mut c = Command::new(swarmnet_cni());
    c.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", &env.container_id)
        .env("CNI_NETNS", &env.netns)
        .env("CNI_IFNAME", &env.ifname)
        .env("CNI_ARGS", &env.args)
        .env("CNI_PATH", "/opt/cni/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("swarmnet-cni starts");
    let mut input = child.stdin.take().expect("stdin");
    let _ = input.write_all(stdin.as_bytes());
    drop(input);
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let o = child.wait_with_output().expect("swarmnet-cni output");
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    Call {
        code: o.status.code().unwrap_or(-1),
        out: serde_json::from_str(text.trim()).ok(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}
