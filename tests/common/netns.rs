//! A network lab of Linux namespaces: each node in its own namespace, wired by a veth pair to
//! one of two bridges in a hub namespace (br0: everyone; br1: the side cut off). Moving a
//! node's veth between bridges partitions and heals. Optionally the test process itself joins
//! br0 through a veth of its own, so in-process clients reach the nodes. Needs root (or
//! CAP_NET_ADMIN); [`Lab::build`] says why when it cannot. Everything is removed on drop.

use std::process::Command;

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

pub struct Lab {
    tag: String,
    n: usize,
    /// The first three octets of the lab's /24, e.g. "10.203.0".
    subnet: String,
    host: bool,
}

impl Lab {
    pub fn ns(&self, i: usize) -> String {
        format!("ss{}n{i}", self.tag)
    }
    fn hub(&self) -> String {
        format!("ss{}hub", self.tag)
    }
    fn veth(&self, i: usize) -> String {
        format!("ss{}h{i}", self.tag)
    }
    fn host_veth(&self) -> String {
        format!("ss{}c", self.tag)
    }
    /// Node `i`'s address.
    pub fn addr(&self, i: usize) -> String {
        format!("{}.{}", self.subnet, i + 1)
    }

    /// `n` namespaced nodes on `subnet` ("10.203.0"); with `host`, this process on br0 too.
    pub fn build(n: usize, subnet: &str, host: bool) -> Result<Lab, String> {
        let lab = Lab {
            tag: std::process::id().to_string(),
            n,
            subnet: subnet.to_string(),
            host: false,
        };
        remove_stale_labs();
        let hub = lab.hub();
        if !ip(&["netns", "add", &hub]) {
            return Err("cannot create a network namespace (needs root / CAP_NET_ADMIN)".into());
        }
        let ok = ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])
            && ip(&["-n", &hub, "link", "add", "br1", "type", "bridge"])
            && ip(&["-n", &hub, "link", "set", "br0", "up"])
            && ip(&["-n", &hub, "link", "set", "br1", "up"]);
        if !ok {
            return Err("cannot create bridges".into());
        }
        for i in 0..n {
            let (ns, vh, vn) = (lab.ns(i), lab.veth(i), format!("ss{}v{i}", lab.tag));
            let addr = format!("{}/24", lab.addr(i));
            let ok = ip(&["netns", "add", &ns])
                && ip(&["link", "add", &vh, "type", "veth", "peer", "name", &vn])
                && ip(&["link", "set", &vh, "netns", &hub])
                && ip(&["link", "set", &vn, "netns", &ns])
                && ip(&["-n", &hub, "link", "set", &vh, "master", "br0"])
                && ip(&["-n", &hub, "link", "set", &vh, "up"])
                && ip(&["-n", &ns, "addr", "add", &addr, "dev", &vn])
                && ip(&["-n", &ns, "link", "set", &vn, "up"])
                && ip(&["-n", &ns, "link", "set", "lo", "up"]);
            if !ok {
                return Err(format!("cannot wire namespace {ns}"));
            }
        }
        let mut lab = lab;
        if host {
            let (vc, vh) = (lab.host_veth(), format!("ss{}ch", lab.tag));
            let addr = format!("{}.254/24", lab.subnet);
            let ok = ip(&["link", "add", &vc, "type", "veth", "peer", "name", &vh])
                && ip(&["link", "set", &vh, "netns", &hub])
                && ip(&["-n", &hub, "link", "set", &vh, "master", "br0"])
                && ip(&["-n", &hub, "link", "set", &vh, "up"])
                && ip(&["addr", "add", &addr, "dev", &vc])
                && ip(&["link", "set", &vc, "up"]);
            lab.host = true;
            if !ok {
                return Err("cannot wire this process to the lab".into());
            }
        }
        Ok(lab)
    }

    /// Moves node `i` to bridge `br` (br0: everyone; br1: the cut-off side).
    pub fn attach(&self, i: usize, br: &str) {
        assert!(ip(&[
            "-n",
            &self.hub(),
            "link",
            "set",
            &self.veth(i),
            "master",
            br
        ]));
    }
}

/// The test process a lab object name (`ss<pid>...`) belongs to, if it is one of ours.
fn lab_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("ss")?;
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// Namespaces and host links left by a lab whose test process was killed (no drop ran).
/// A stale host link keeps its route to the lab's /24 and would capture the next lab's
/// traffic on the same subnet.
fn remove_stale_labs() {
    let dead = |name: &str| {
        lab_pid(name).is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
    };
    let list = |args: &[&str]| -> Vec<String> {
        Command::new("ip")
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split([' ', '@']).next().map(str::to_string))
            .collect()
    };
    for link in list(&["-br", "link"]).iter().filter(|l| dead(l)) {
        ip(&["link", "del", link]);
    }
    for ns in list(&["netns", "list"]).iter().filter(|n| dead(n)) {
        ip(&["netns", "del", ns]);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.host {
            ip(&["link", "del", &self.host_veth()]);
        }
        for i in 0..self.n {
            ip(&["netns", "del", &self.ns(i)]);
        }
        ip(&["netns", "del", &self.hub()]);
    }
}
