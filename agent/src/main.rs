//! `swarmnet`: the agent daemon (`swarmnet agent`) and its command-line client.

use std::process::ExitCode;

use agent::cli::{Cli, Command};
use agent::config::AgentConfig;
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Agent(args) => {
            let cfg = match AgentConfig::from_args(&args) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("swarmnet agent: invalid configuration: {e}");
                    return ExitCode::from(2);
                }
            };
            tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(&cfg.log_level))
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .init();
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("swarmnet agent: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(agent::daemon::run(cfg)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("swarmnet agent: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Demo(args) => demo(&args),
        Command::Cluster(agent::cli::ClusterCmd::Keys(agent::cli::KeysCmd::Generate { bytes })) => {
            println!("{}", agent::commands::generate_key(bytes));
            ExitCode::SUCCESS
        }
        Command::Debug(agent::cli::DebugCmd::Whoami {
            name,
            tcp,
            udp,
            max_secs,
        }) => whoami(name, &tcp, &udp, max_secs),
        cmd => {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("swarmnet: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(agent::commands::run(&cli.client, cmd)) {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("swarmnet: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

#[cfg(feature = "demo")]
fn demo(args: &agent::cli::DemoArgs) -> ExitCode {
    lab::demo::main(&lab::demo::DemoArgs { keep: args.keep })
}

#[cfg(not(feature = "demo"))]
fn demo(_: &agent::cli::DemoArgs) -> ExitCode {
    eprintln!(
        "swarmnet demo: this build has no demo; build with `--features demo` (scripts/demo.sh does)"
    );
    ExitCode::from(2)
}

#[cfg(feature = "demo")]
fn whoami(name: Option<String>, tcp: &[u16], udp: &[u16], max_secs: u64) -> ExitCode {
    let name = name.unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "whoami".into())
    });
    match lab::whoami::serve(&name, tcp, udp, std::time::Duration::from_secs(max_secs)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("swarmnet debug whoami: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(not(feature = "demo"))]
fn whoami(_: Option<String>, _: &[u16], _: &[u16], _: u64) -> ExitCode {
    eprintln!(
        "swarmnet debug whoami: this build has no whoami; build with `--features demo` (scripts/demo.sh does)"
    );
    ExitCode::from(2)
}
