//! `vm-exec serve --port P`: the guest's end of [`cluster_tests::vm::LiveNetwork`]. It runs
//! inside a kernel-VM guest, listens on `0.0.0.0:P` of the guests' network, and runs shell
//! commands for the host test.
//!
//! Protocol, one request per TCP connection, one JSON line each way:
//! * `{"sh": "<script>", "timeout_ms": N}`: runs `/bin/sh -c <script>` (stdin `/dev/null`,
//!   its own process group) and answers `{"code": C, "timed_out": false, "stdout": "...",
//!   "stderr": "...", "ms": T}`; `code` is `null` when it died by a signal. After
//!   `timeout_ms` the whole process group is killed and `timed_out` is `true`. Output is read
//!   until the shell exits and at most 2 s longer (a background process left holding the
//!   pipes does not block the answer).
//! * `{"exit": C}`: answers `{"exiting": C}` and exits with status `C` (the guest's script
//!   then ends and the guest powers off).
//!
//! Requests run concurrently (a thread each). std only, plus serde_json and nix.
//!
//! `vm-exec call IP [--port P] [--timeout SECS]` is the other end, for scripts on the host
//! (run in the guests' network namespace): it sends its stdin as one `sh` request to the
//! guest at `IP` (port [`EXEC_PORT`] by default, 600 s by default), writes the command's
//! stdout and stderr to its own, and exits with the command's status (124 when it timed
//! out, 125 when the guest cannot be reached or answers nonsense, 137 when the command died
//! by a signal). `vagrant/demo.sh` reaches kernel-VM guests through it in
//! `cluster-tests/tests/vagrant.rs`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::{Value, json};

/// How long output is still read after the shell exited.
const DRAIN: Duration = Duration::from_secs(2);
/// Largest request line accepted.
const MAX_REQUEST: u64 = 1 << 20;

/// The `vm-exec serve` port `call` uses unless told (the harness's `vm::EXEC_PORT`).
const EXEC_PORT: u16 = 7700;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "call") {
        std::process::exit(call(&args[1..]));
    }
    let port = match args.as_slice() {
        [serve, flag, p] if serve == "serve" && flag == "--port" => p.parse::<u16>().ok(),
        _ => None,
    };
    let Some(port) = port else {
        eprintln!("usage: vm-exec serve --port PORT | vm-exec call IP [--port P] [--timeout SECS]");
        std::process::exit(2);
    };
    let listener = match TcpListener::bind(("0.0.0.0", port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("vm-exec: cannot listen on port {port}: {e}");
            std::process::exit(1);
        }
    };
    println!("vm-exec: serving on port {port}");
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                std::thread::spawn(move || {
                    if let Err(e) = handle(stream) {
                        eprintln!("vm-exec: {e}");
                    }
                });
            }
            Err(e) => eprintln!("vm-exec: accept: {e}"),
        }
    }
}

fn handle(stream: TcpStream) -> std::io::Result<()> {
    let mut line = String::new();
    BufReader::new((&stream).take(MAX_REQUEST)).read_line(&mut line)?;
    let reply = match serde_json::from_str::<Value>(&line) {
        Err(e) => json!({"error": format!("bad request: {e}")}),
        Ok(req) => {
            if let Some(code) = req.get("exit").and_then(Value::as_i64) {
                send(&stream, &json!({ "exiting": code }))?;
                std::process::exit(i32::try_from(code).unwrap_or(1));
            }
            match req.get("sh").and_then(Value::as_str) {
                None => json!({"error": "bad request: neither \"sh\" nor \"exit\""}),
                Some(sh) => {
                    let timeout = Duration::from_millis(
                        req.get("timeout_ms")
                            .and_then(Value::as_u64)
                            .unwrap_or(60_000),
                    );
                    run(sh, timeout)
                }
            }
        }
    };
    send(&stream, &reply)
}

fn send(mut stream: &TcpStream, v: &Value) -> std::io::Result<()> {
    let mut text = v.to_string();
    text.push('\n');
    stream.write_all(text.as_bytes())?;
    stream.flush()
}

fn run(sh: &str, timeout: Duration) -> Value {
    let t0 = Instant::now();
    let mut child = match Command::new("/bin/sh")
        .arg("-c")
        .arg(sh)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return json!({"error": format!("cannot run /bin/sh: {e}")}),
    };
    let reader = |r: Option<Box<dyn Read + Send>>| {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            let _ = tx.send(buf);
        });
        rx
    };
    let out = reader(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let err = reader(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let pgid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(0));
    let deadline = t0 + timeout;
    let (status, timed_out) = loop {
        match child.try_wait() {
            Ok(Some(s)) => break (Some(s), false),
            Ok(None) if Instant::now() >= deadline => {
                let _ = killpg(pgid, Signal::SIGKILL);
                break (child.wait().ok(), true);
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(_) => break (None, false),
        }
    };
    let text = |rx: mpsc::Receiver<Vec<u8>>| {
        rx.recv_timeout(DRAIN)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    json!({
        "code": status.and_then(|s| s.code()),
        "timed_out": timed_out,
        "stdout": text(out),
        "stderr": text(err),
        "ms": t0.elapsed().as_millis() as u64,
    })
}

/// `vm-exec call`: see the module docs. Returns the exit status.
fn call(args: &[String]) -> i32 {
    let usage = || {
        eprintln!("usage: vm-exec call IP [--port P] [--timeout SECS] < script");
        2
    };
    let Some(ip) = args
        .first()
        .and_then(|a| a.parse::<std::net::IpAddr>().ok())
    else {
        return usage();
    };
    let (mut port, mut timeout_s) = (EXEC_PORT, 600u64);
    let mut rest = args[1..].iter();
    while let Some(flag) = rest.next() {
        let value = rest.next();
        match (flag.as_str(), value) {
            ("--port", Some(v)) if v.parse::<u16>().is_ok() => port = v.parse().unwrap_or(port),
            ("--timeout", Some(v)) if v.parse::<u64>().is_ok() => {
                timeout_s = v.parse().unwrap_or(timeout_s)
            }
            _ => return usage(),
        }
    }
    let mut script = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut script) {
        eprintln!("vm-exec call: reading the script from stdin: {e}");
        return 2;
    }
    let reply = (|| -> std::io::Result<Value> {
        let addr = std::net::SocketAddr::new(ip, port);
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(timeout_s + 30)))?;
        send(
            &stream,
            &json!({"sh": script, "timeout_ms": timeout_s.saturating_mul(1000)}),
        )?;
        let mut line = String::new();
        BufReader::new(&stream).read_line(&mut line)?;
        serde_json::from_str(&line).map_err(std::io::Error::other)
    })();
    let v = match reply {
        Ok(v) => v,
        Err(e) => {
            eprintln!("vm-exec call: guest {ip} port {port}: {e}");
            return 125;
        }
    };
    if let Some(e) = v.get("error").and_then(Value::as_str) {
        eprintln!("vm-exec call: guest {ip}: {e}");
        return 125;
    }
    let text = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let _ = std::io::stdout().write_all(text("stdout").as_bytes());
    let _ = std::io::stderr().write_all(text("stderr").as_bytes());
    if v.get("timed_out").and_then(Value::as_bool) == Some(true) {
        eprintln!("vm-exec call: guest {ip}: timed out after {timeout_s} s");
        return 124;
    }
    v.get("code")
        .and_then(Value::as_i64)
        .and_then(|c| i32::try_from(c).ok())
        .unwrap_or(137)
}
