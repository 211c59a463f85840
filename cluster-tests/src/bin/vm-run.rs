//! Runs a program (usually a test binary) inside a kernel-VM guest and exits with its status:
//! `vm-run [--timeout SECS] [--mem MB] [--share DIR] PROGRAM [ARGS...]`.
//!
//! The guest loads the test modules, sets `SWARMNET_IN_VM=1` and passes `RUST_LOG`,
//! `RUST_TEST_THREADS` and `SWARMNET_TEST_LB` through. Usable as a cargo runner:
//! `CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER=target/debug/vm-run cargo test -p ipvs
//! --test kernel_ipvs`. Exit status: the program's; 124 on timeout; 125 after a guest
//! kernel panic or without the exit marker; 77 when qemu or the kernel cannot be obtained.

use std::path::PathBuf;
use std::time::Duration;

use cluster_tests::vm::{self, Guest, Outcome};

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut timeout = 600;
    let mut mem = 2048;
    let mut share = None;
    while args.first().is_some_and(|a| a.starts_with("--")) {
        let flag = args.remove(0);
        let value = if args.is_empty() {
            usage()
        } else {
            args.remove(0)
        };
        match flag.as_str() {
            "--timeout" => timeout = value.parse().unwrap_or_else(|_| usage()),
            "--mem" => mem = value.parse().unwrap_or_else(|_| usage()),
            "--share" => share = Some(PathBuf::from(value)),
            _ => usage(),
        }
    }
    if args.is_empty() {
        usage();
    }
    let program = PathBuf::from(args.remove(0));
    let pass: Vec<(String, String)> = ["RUST_LOG", "RUST_TEST_THREADS", "SWARMNET_TEST_LB"]
        .into_iter()
        .filter_map(|k| Some((k.to_string(), std::env::var(k).ok()?)))
        .collect();
    let env: Vec<(&str, &str)> = pass.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut g = Guest::test_binary("vm-run", &program, &argv, &env)
        .with_timeout(Duration::from_secs(timeout))
        .with_mem_mb(mem);
    if let Some(d) = &share {
        g = g.with_share(d);
    }
    let r = vm::run(&g);
    print!("{}", r.console);
    eprintln!("vm-run: {}", r.summary());
    std::process::exit(match r.outcome {
        Outcome::Exited(rc) => rc,
        Outcome::TimedOut => 124,
        Outcome::KernelPanic | Outcome::NoExitMarker(_) => 125,
        Outcome::Unavailable(_) => 77,
    });
}

fn usage() -> ! {
    eprintln!("usage: vm-run [--timeout SECS] [--mem MB] [--share DIR] PROGRAM [ARGS...]");
    std::process::exit(2)
}
