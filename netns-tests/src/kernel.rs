//! The Linux kernel's own `vxlan` device on a test host: the interop peer
//! of the end-to-end tests and the baseline of the benchmarks.

use std::net::Ipv4Addr;

use anyhow::Result;

use crate::lab::{Host, Lab};

impl Lab {
    /// Creates the VXLAN device `dev` (VNI `vni`, UDP 4789, MTU 1450, no
    /// learning) on `host`, sending everything it cannot place to `remote`.
    pub fn add_kernel_vtep(
        &self,
        host: &Host,
        dev: &str,
        vni: u32,
        remote: Ipv4Addr,
    ) -> Result<()> {
        let (vni, local, remote) = (
            vni.to_string(),
            host.underlay.to_string(),
            remote.to_string(),
        );
        let ns = host.netns.as_str();
        self.run_ok(
            ns,
            &[
                "ip",
                "link",
                "add",
                dev,
                "type",
                "vxlan",
                "id",
                &vni,
                "dstport",
                "4789",
                "local",
                &local,
                "nolearning",
            ],
        )?;
        self.run_ok(ns, &["ip", "link", "set", dev, "mtu", "1450", "up"])?;
        self.run_ok(
            ns,
            &[
                "bridge",
                "fdb",
                "append",
                "00:00:00:00:00:00",
                "dev",
                dev,
                "dst",
                &remote,
            ],
        )?;
        Ok(())
    }
}
