//! Host tools the agent runs (the kernel is otherwise reached over netlink): finding them,
//! and `nft` in a network namespace. Blocking: callers run it on blocking threads.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where tools are looked for after `$PATH` (a service's `$PATH` often lacks the sbin dirs).
const TOOL_DIRS: [&str; 6] = [
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// Why a tool could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum SysError {
    #[error("`{tool}`: not installed (scripts/install-deps.sh installs it)")]
    Missing { tool: String },
    #[error("{command}: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{command}: {stderr}")]
    Failed { command: String, stderr: String },
}

/// `tool` as an executable path: a path is taken as it is, a bare name is looked up in
/// `$PATH`, then in the usual sbin and bin directories.
pub fn find_tool(tool: impl AsRef<Path>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let tool = tool.as_ref();
    if tool.components().count() > 1 {
        return Some(tool.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(TOOL_DIRS.iter().map(PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| {
            std::fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// [`find_tool`], or [`SysError::Missing`].
pub fn tool(tool: &str) -> Result<PathBuf, SysError> {
    find_tool(tool).ok_or_else(|| SysError::Missing { tool: tool.into() })
}

/// What `nft` printed.
#[derive(Debug)]
pub struct NftOutput {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl NftOutput {
    /// The error of a listing that failed only because the table is absent.
    pub fn table_absent(&self) -> bool {
        !self.ok && self.stderr.contains("No such file or directory")
    }
}

/// Runs `nft ARGS` with `input` on its stdin, in the network namespace at `netns` (entered
/// with `nsenter --net`), or in the calling thread's namespace when `None`.
pub fn nft(
    netns: Option<&Path>,
    args: &[&str],
    input: Option<&str>,
) -> Result<NftOutput, SysError> {
    let nft = tool("nft")?;
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new(tool("nsenter")?);
            c.arg(format!("--net={}", ns.display())).arg("--").arg(&nft);
            c
        }
        None => Command::new(&nft),
    };
    let shown = match netns {
        Some(ns) => format!("nft {} in {}", args.join(" "), ns.display()),
        None => format!("nft {}", args.join(" ")),
    };
    cmd.args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let spawn = |source| SysError::Spawn {
        command: shown.clone(),
        source,
    };
    let mut child = cmd.spawn().map_err(spawn)?;
    if let (Some(text), Some(mut pipe)) = (input, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).map_err(spawn)?;
    }
    let out = child.wait_with_output().map_err(spawn)?;
    Ok(NftOutput {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}

/// Applies `script` with one `nft -f -` (one transaction: all or nothing).
pub fn nft_apply(netns: Option<&Path>, script: &str) -> Result<(), SysError> {
    let out = nft(netns, &["-f", "-"], Some(script))?;
    if out.ok {
        Ok(())
    } else {
        Err(SysError::Failed {
            command: match netns {
                Some(ns) => format!("nft -f in {}", ns.display()),
                None => "nft -f".into(),
            },
            stderr: out.stderr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_is_taken_as_it_is_and_a_missing_tool_says_how_to_get_it() {
        assert_eq!(find_tool("/opt/x/nft"), Some(PathBuf::from("/opt/x/nft")));
        assert!(find_tool("sh").is_some(), "sh is on every machine");
        let e = tool("no-such-tool-here").unwrap_err();
        assert_eq!(
            e.to_string(),
            "`no-such-tool-here`: not installed (scripts/install-deps.sh installs it)"
        );
    }
}
