//! Gratuitous ARP on a host's uplink: when a public address starts being
//! routed through this host (an appliance started here, moved here, or
//! recovered here from a dead host), its neighbours are told at once that
//! the address is now reached at this host's MAC (proxy ARP answers for it
//! here). Without it they keep sending to the old host until their ARP
//! entry goes stale and is probed again: up to a minute of silence.
//!
//! The frames are the ones a host sends for its own new address (RFC 5227
//! §3, an ARP request whose sender and target are both the address); Linux
//! neighbours update an entry they hold for it and create none.

use std::net::Ipv4Addr;

/// EtherType of ARP.
const ETH_P_ARP: u16 = 0x0806;

/// Sends `count` gratuitous ARP requests for `address` out of `link` (in
/// the calling thread's network namespace), with the link's own MAC as the
/// sender's.
pub(super) fn gratuitous_arp(link: &str, address: Ipv4Addr, count: usize) -> Result<(), String> {
    let socket = PacketSocket::open()?;
    let (index, mac) = socket.link(link)?;
    let frame = frame(mac, address);
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
    let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    to.sll_family = libc::AF_PACKET as u16;
    to.sll_protocol = ETH_P_ARP.to_be();
    to.sll_ifindex = index;
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    for _ in 0..count {
        // SAFETY: `frame` and `to` outlive the call, and the lengths passed
        // are theirs.
        let sent = unsafe {
            libc::sendto(
                socket.0,
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&to as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if sent < 0 {
            return Err(format!(
                "cannot send on {link}: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

/// A raw packet socket for ARP, closed on drop.
struct PacketSocket(libc::c_int);

impl PacketSocket {
    fn open() -> Result<PacketSocket, String> {
        // SAFETY: a plain socket(2) call; the descriptor is owned below.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW,
                i32::from(ETH_P_ARP.to_be()),
            )
        };
        if fd < 0 {
            return Err(format!(
                "cannot open a packet socket: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(PacketSocket(fd))
    }

    /// A link's index and MAC (SIOCGIFINDEX, SIOCGIFHWADDR: answered in
    /// the socket's network namespace, unlike sysfs).
    fn link(&self, link: &str) -> Result<(i32, [u8; 6]), String> {
        // SAFETY: ifreq is plain data; all-zero is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        if link.is_empty() || link.len() >= req.ifr_name.len() || link.contains('\0') {
            return Err(format!("`{link}` is not a link name"));
        }
        for (to, from) in req.ifr_name.iter_mut().zip(link.bytes()) {
            *to = from as libc::c_char;
        }
        let ask = |request: libc::c_ulong, req: &mut libc::ifreq| {
            // SAFETY: `req` is a valid ifreq with a NUL-terminated name, as
            // both requests expect.
            if unsafe { libc::ioctl(self.0, request as _, req as *mut libc::ifreq) } < 0 {
                Err(format!(
                    "no link `{link}`: {}",
                    std::io::Error::last_os_error()
                ))
            } else {
                Ok(())
            }
        };
        ask(libc::SIOCGIFINDEX, &mut req)?;
        // SAFETY: SIOCGIFINDEX filled the union's index.
        let index = unsafe { req.ifr_ifru.ifru_ifindex };
        ask(libc::SIOCGIFHWADDR, &mut req)?;
        // SAFETY: SIOCGIFHWADDR filled the union's hardware address.
        let hw = unsafe { req.ifr_ifru.ifru_hwaddr };
        if hw.sa_family != libc::ARPHRD_ETHER {
            return Err(format!("`{link}` is not an Ethernet link"));
        }
        let mut mac = [0u8; 6];
        for (to, from) in mac.iter_mut().zip(hw.sa_data.iter()) {
            *to = *from as u8;
        }
        Ok((index, mac))
    }
}

impl Drop for PacketSocket {
    fn drop(&mut self) {
        // SAFETY: the descriptor this value owns, closed once.
        unsafe { libc::close(self.0) };
    }
}

/// The Ethernet frame: broadcast, ARP request "who has ADDRESS, tell
/// ADDRESS at MAC", padded to Ethernet's 60-byte minimum.
fn frame(mac: [u8; 6], address: Ipv4Addr) -> Vec<u8> {
    let ip = address.octets();
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ETH_P_ARP.to_be_bytes());
    f.extend_from_slice(&[0, 1]); // hardware: Ethernet
    f.extend_from_slice(&[0x08, 0x00]); // protocol: IPv4
    f.extend_from_slice(&[6, 4]);
    f.extend_from_slice(&[0, 1]); // a request
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&ip);
    f.resize(60, 0);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_frame_asks_for_the_address_in_the_name_of_the_address() {
        let mac = [0x52, 0x54, 0x00, 0xab, 0xcd, 0xef];
        let f = frame(mac, Ipv4Addr::new(198, 18, 0, 101));
        assert_eq!(f.len(), 60);
        assert_eq!(&f[0..6], &[0xff; 6]);
        assert_eq!(&f[6..12], &mac);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(&f[20..22], &[0, 1], "an ARP request");
        assert_eq!(&f[22..28], &mac, "the sender's MAC");
        assert_eq!(&f[28..32], &[198, 18, 0, 101], "the sender's address");
        assert_eq!(&f[38..42], &[198, 18, 0, 101], "the target's address");
    }

    /// Two namespaces joined by a veth pair (removed on drop).
    struct Pair {
        a: String,
        b: String,
    }

    impl Drop for Pair {
        fn drop(&mut self) {
            for ns in [&self.a, &self.b] {
                let _ = std::process::Command::new("ip")
                    .args(["netns", "del", ns])
                    .status();
            }
        }
    }

    fn ip(args: &[&str]) -> String {
        let out = std::process::Command::new("ip")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The neighbour that held the address at another MAC (the dead host's)
    /// holds it at this link's MAC right after the announcement.
    #[test]
    fn a_neighbour_learns_where_the_address_is_now() {
        let id = std::process::id();
        let pair = Pair {
            a: format!("cvlgarp-a-{id}"),
            b: format!("cvlgarp-b-{id}"),
        };
        ip(&["netns", "add", &pair.a]);
        ip(&["netns", "add", &pair.b]);
        ip(&[
            "-n", &pair.a, "link", "add", "up0", "type", "veth", "peer", "name", "up1", "netns",
            &pair.b,
        ]);
        ip(&["-n", &pair.a, "link", "set", "up0", "up"]);
        ip(&["-n", &pair.b, "link", "set", "up1", "up"]);
        ip(&["-n", &pair.b, "addr", "add", "198.18.77.2/24", "dev", "up1"]);
        let old = "02:00:00:00:00:99";
        ip(&[
            "-n",
            &pair.b,
            "neigh",
            "replace",
            "198.18.77.5",
            "lladdr",
            old,
            "dev",
            "up1",
            "nud",
            "stale",
        ]);
        let here = ip(&["-n", &pair.a, "-o", "link", "show", "up0"]);
        let mac = here
            .split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .unwrap()
            .to_string();
        let netns = std::fs::File::open(format!("/run/netns/{}", pair.a)).unwrap();
        std::thread::spawn(move || {
            nix::sched::setns(&netns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            gratuitous_arp("up0", Ipv4Addr::new(198, 18, 77, 5), 2)
        })
        .join()
        .unwrap()
        .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let entry = ip(&["-n", &pair.b, "neigh", "show", "198.18.77.5", "dev", "up1"]);
            if entry.contains(&mac) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the neighbour still has {entry:?}, not {mac}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let unknown = std::thread::spawn(|| gratuitous_arp("nosuchlink0", Ipv4Addr::LOCALHOST, 1))
            .join()
            .unwrap();
        assert!(unknown.unwrap_err().contains("no link `nosuchlink0`"));
    }
}
