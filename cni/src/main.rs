//! `swarmnet-cni`: the CNI plugin binary (see the crate docs). `swarmnet-cni install` puts it
//! where runtimes look for plugins.

use std::io::Read as _;
use std::process::ExitCode;

use cni::CniError;
use cni::conf::Env;

const ABOUT: &str = "swarmnet-cni: CNI plugin (spec 1.0.0) attaching containers through the local swarmnet agent\n\
usage: run by a container runtime with CNI_COMMAND=ADD|DEL|CHECK|VERSION and the network configuration on stdin\n       \
swarmnet-cni install [--bin-dir DIR]... [--conf-dir DIR [--network NAME] [--agent-socket PATH]]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("install") {
        let exe = match std::env::current_exe() {
            Ok(e) => e,
            Err(e) => {
                eprintln!("swarmnet-cni install: cannot find this binary: {e}");
                return ExitCode::from(1);
            }
        };
        return match cni::install::parse(&args[1..]).and_then(|i| cni::install::run(&i, &exe)) {
            Ok(lines) => {
                for l in lines {
                    println!("{l}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("swarmnet-cni install: {e}");
                ExitCode::from(2)
            }
        };
    }
    let env = Env::from_process();
    if env.command.is_empty() || !args.is_empty() {
        eprintln!("{ABOUT}");
    }
    let mut stdin = Vec::new();
    if env.command != "VERSION" && !env.command.is_empty() {
        let _ = std::io::stdin().read_to_end(&mut stdin);
    }
    // Errors are written in the configuration's version when it has a readable one.
    let version = serde_json::from_slice::<serde_json::Value>(&stdin)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str().map(String::from))
        .filter(|v| cni::SUPPORTED_VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| "1.0.0".into());
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let err = CniError::new(cni::error::IO_FAILURE, format!("tokio runtime: {e}"));
            println!("{}", err.to_json(&version));
            return ExitCode::from(1);
        }
    };
    match rt.block_on(cni::plugin::run(&env, &stdin)) {
        Ok(Some(out)) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            println!("{}", e.to_json(&version));
            ExitCode::from(1)
        }
    }
}
