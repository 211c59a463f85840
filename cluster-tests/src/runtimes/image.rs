//! A busybox-static image for every runtime: a root filesystem with the static busybox and
//! a symlink per applet (`sh`, `sleep`, `ping`, `nslookup`, `nc`, `ip`, ...), as a plain
//! tarball (`podman import`, `docker import`) and as an OCI image-layout archive
//! (`ctr images import`, which cannot take a plain tarball; the image name comes from the
//! `io.containerd.image.name` annotation).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::process::ok_within;

/// The image's name in every store.
pub const NAME: &str = "swarmnet/busybox:latest";

/// Built image files.
#[derive(Debug, Clone)]
pub struct Busybox {
    /// Plain root filesystem tarball.
    pub rootfs_tar: PathBuf,
    /// OCI image-layout archive named `docker.io/swarmnet/busybox:latest`.
    pub oci_tar: PathBuf,
}

fn sha256(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// Where the static busybox is (Debian's busybox-static installs `/bin/busybox`).
pub fn busybox_binary() -> Option<PathBuf> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// Build both files under `dir`.
pub fn build(dir: &Path) -> Result<Busybox> {
    let bb = busybox_binary().context("busybox (busybox-static) is not installed")?;
    let rootfs = dir.join("rootfs");
    for d in [
        "bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp", "root", "var/www",
    ] {
        std::fs::create_dir_all(rootfs.join(d))?;
    }
    std::fs::copy(&bb, rootfs.join("bin/busybox"))?;
    let list = ok_within(
        {
            let mut c = Command::new(&bb);
            c.arg("--list-full");
            c
        },
        Duration::from_secs(10),
    )?;
    for applet in list.lines().map(str::trim).filter(|a| !a.is_empty()) {
        if applet == "bin/busybox" {
            continue;
        }
        let link = rootfs.join(applet);
        if link.symlink_metadata().is_err() {
            std::os::unix::fs::symlink("/bin/busybox", &link)?;
        }
    }
    std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
    std::fs::write(rootfs.join("etc/group"), "root:x:0:\n")?;
    std::fs::write(rootfs.join("var/www/index.html"), "swarmnet\n")?;
    let rootfs_tar = dir.join("busybox-rootfs.tar");
    ok_within(
        {
            let mut c = Command::new("tar");
            c.arg("--numeric-owner")
                .arg("-C")
                .arg(&rootfs)
                .arg("-cf")
                .arg(&rootfs_tar)
                .arg(".");
            c
        },
        Duration::from_secs(60),
    )?;

    // OCI image layout around the same layer.
    let layer = std::fs::read(&rootfs_tar)?;
    let ldig = format!("sha256:{}", sha256(&layer));
    let config = json!({
        "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
        "config": {"Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["/bin/sh"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [ldig]},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "cluster-tests"}],
    })
    .to_string();
    let cdig = format!("sha256:{}", sha256(config.as_bytes()));
    let manifest = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdig, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ldig, "size": layer.len()}],
    })
    .to_string();
    let mdig = format!("sha256:{}", sha256(manifest.as_bytes()));
    let index = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": mdig, "size": manifest.len(),
        "platform": {"architecture": "amd64", "os": "linux"},
        "annotations": {"io.containerd.image.name": format!("docker.io/{NAME}"), "org.opencontainers.image.ref.name": "latest"}}]})
    .to_string();
    let oci = dir.join("oci");
    let blobs = oci.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;
    std::fs::write(oci.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)?;
    std::fs::write(oci.join("index.json"), &index)?;
    for (d, data) in [
        (&ldig, layer.as_slice()),
        (&cdig, config.as_bytes()),
        (&mdig, manifest.as_bytes()),
    ] {
        std::fs::write(blobs.join(d.trim_start_matches("sha256:")), data)?;
    }
    let oci_tar = dir.join("busybox-oci.tar");
    ok_within(
        {
            let mut c = Command::new("tar");
            c.arg("--numeric-owner")
                .arg("-C")
                .arg(&oci)
                .arg("-cf")
                .arg(&oci_tar)
                .arg(".");
            c
        },
        Duration::from_secs(60),
    )?;
    ensure!(oci_tar.is_file(), "no {}", oci_tar.display());
    Ok(Busybox {
        rootfs_tar,
        oci_tar,
    })
}
