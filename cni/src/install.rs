//! `swarmnet-cni install`: one step that puts the plugin where runtimes look for CNI
//! plugins (`/opt/cni/bin` for containerd and Kubernetes, `/usr/lib/cni` for Debian's
//! podman and containerd builds) and, when asked, an example configuration.
//!
//! ```text
//! swarmnet-cni install [--bin-dir DIR]... [--conf-dir DIR [--network NAME] [--agent-socket PATH]]
//! ```
//!
//! The binary is copied atomically (temporary file, then rename): a runtime calling the
//! plugin meanwhile runs the old or the new one. An existing configuration file is never
//! overwritten.

use std::path::{Path, PathBuf};

/// Where runtimes look for plugins, by default.
pub const DEFAULT_BIN_DIRS: [&str; 2] = ["/opt/cni/bin", "/usr/lib/cni"];

/// The example configuration list for swarmnet network `network`.
pub fn example_conflist(network: &str, agent_socket: &str) -> String {
    format!(
        r#"{{
  "cniVersion": "1.0.0",
  "name": "{network}",
  "plugins": [
    {{
      "type": "swarmnet-cni",
      "network": "{network}",
      "agentSocket": "{agent_socket}",
      "capabilities": {{ "aliases": true, "ips": true, "mac": true }}
    }}
  ]
}}
"#
    )
}

/// Parsed arguments of `install`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Install {
    pub bin_dirs: Vec<PathBuf>,
    pub conf_dir: Option<PathBuf>,
    pub network: String,
    pub agent_socket: String,
}

/// Parse `install`'s arguments.
pub fn parse(args: &[String]) -> Result<Install, String> {
    let mut out = Install {
        network: "app".into(),
        agent_socket: crate::DEFAULT_AGENT_SOCKET.into(),
        ..Install::default()
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |flag: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match a.as_str() {
            "--bin-dir" => out.bin_dirs.push(value("--bin-dir")?.into()),
            "--conf-dir" => out.conf_dir = Some(value("--conf-dir")?.into()),
            "--network" => out.network = value("--network")?,
            "--agent-socket" => out.agent_socket = value("--agent-socket")?,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if out.bin_dirs.is_empty() {
        out.bin_dirs = DEFAULT_BIN_DIRS.iter().map(PathBuf::from).collect();
    }
    if !crate::conf::valid_name(&out.network) {
        return Err(format!(
            "--network {:?} is not a valid network name",
            out.network
        ));
    }
    Ok(out)
}

fn copy_atomic(from: &Path, dir: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    let dest = dir.join("swarmnet-cni");
    let tmp = dir.join(".swarmnet-cni.tmp");
    std::fs::copy(from, &tmp)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
    std::fs::rename(&tmp, &dest)?;
    Ok(dest)
}

/// Do it; returns one line per file written or kept.
pub fn run(i: &Install, exe: &Path) -> Result<Vec<String>, String> {
    let mut done = Vec::new();
    for dir in &i.bin_dirs {
        let dest = copy_atomic(exe, dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        done.push(format!("installed {}", dest.display()));
    }
    if let Some(conf) = &i.conf_dir {
        std::fs::create_dir_all(conf).map_err(|e| format!("{}: {e}", conf.display()))?;
        let file = conf.join(format!("10-swarmnet-{}.conflist", i.network));
        if file.exists() {
            done.push(format!("kept the existing {}", file.display()));
        } else {
            std::fs::write(&file, example_conflist(&i.network, &i.agent_socket))
                .map_err(|e| format!("{}: {e}", file.display()))?;
            done.push(format!("wrote {}", file.display()));
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_copies_the_binary_to_every_directory_and_keeps_an_existing_conflist() {
        let t = tempfile::tempdir().unwrap();
        let exe = t.path().join("the-binary");
        std::fs::write(&exe, b"#!/bin/sh\n").unwrap();
        let args: Vec<String> = [
            "--bin-dir",
            t.path().join("opt").to_str().unwrap(),
            "--bin-dir",
            t.path().join("lib").to_str().unwrap(),
            "--conf-dir",
            t.path().join("net.d").to_str().unwrap(),
            "--network",
            "blue",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let i = parse(&args).unwrap();
        let done = run(&i, &exe).unwrap();
        assert_eq!(done.len(), 3, "{done:?}");
        for d in ["opt", "lib"] {
            let p = t.path().join(d).join("swarmnet-cni");
            assert_eq!(std::fs::read(&p).unwrap(), b"#!/bin/sh\n");
        }
        let conf = t.path().join("net.d/10-swarmnet-blue.conflist");
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&conf).unwrap()).unwrap();
        assert_eq!(v["plugins"][0]["type"], "swarmnet-cni");
        assert_eq!(v["plugins"][0]["network"], "blue");
        std::fs::write(&conf, "mine").unwrap();
        let again = run(&i, &exe).unwrap();
        assert!(again[2].starts_with("kept"), "{again:?}");
        assert_eq!(std::fs::read_to_string(&conf).unwrap(), "mine");
        assert_eq!(parse(&[]).unwrap().bin_dirs.len(), 2);
        assert!(parse(&["--network".into(), "a b".into()]).is_err());
    }

    #[test]
    fn the_example_conflist_parses_as_our_configuration() {
        let v: serde_json::Value =
            serde_json::from_str(&example_conflist("app", "/run/swarmnet/api.sock")).unwrap();
        let mut plugin = v["plugins"][0].clone();
        plugin["cniVersion"] = v["cniVersion"].clone();
        plugin["name"] = v["name"].clone();
        let c = crate::conf::parse(plugin.to_string().as_bytes()).unwrap();
        assert_eq!(c.network, "app");
    }
}

#[cfg(test)]
mod example_file {
    #[test]
    fn the_shipped_example_is_what_install_writes() {
        let shipped = include_str!("../../examples/cni/10-swarmnet-app.conflist");
        assert_eq!(
            shipped,
            super::example_conflist("app", crate::DEFAULT_AGENT_SOCKET)
        );
    }
}
