//! Header layouts of the frames the programs parse, and bounds-checked
//! access to them. Every field is a byte array (alignment 1), so a header
//! may sit at any offset, and multi-byte fields stay in network order.

use aya_ebpf::programs::{TcContext, XdpContext};

pub const ETH_LEN: usize = 14;
pub const ETH_P_IPV4: [u8; 2] = [0x08, 0x00];
pub const ETH_P_ARP: [u8; 2] = [0x08, 0x06];
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_TCP: u8 = 6;
pub const IPV4_MIN_LEN: usize = 20;
pub const UDP_LEN: usize = 8;
pub const VXLAN_LEN: usize = 8;

#[repr(C)]
pub struct Eth {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    pub ether_type: [u8; 2],
}

/// An ARP packet for IPv4 over Ethernet.
#[repr(C)]
pub struct Arp {
    pub htype: [u8; 2],
    pub ptype: [u8; 2],
    pub hlen: u8,
    pub plen: u8,
    pub oper: [u8; 2],
    pub sha: [u8; 6],
    pub spa: [u8; 4],
    pub tha: [u8; 6],
    pub tpa: [u8; 4],
}

#[repr(C)]
pub struct Ipv4 {
    pub version_ihl: u8,
    pub tos: u8,
    pub total_len: [u8; 2],
    pub id: [u8; 2],
    pub frag: [u8; 2],
    pub ttl: u8,
    pub protocol: u8,
    pub check: [u8; 2],
    pub src: [u8; 4],
    pub dst: [u8; 4],
}

impl Ipv4 {
    /// Header length in bytes (IHL * 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.version_ihl & 0x0f) * 4
    }

    /// A fragment: more fragments follow, or an offset is set.
    pub fn is_fragment(&self) -> bool {
        (u16::from_be_bytes(self.frag) & 0x3fff) != 0
    }
}

#[repr(C)]
pub struct Udp {
    pub src: [u8; 2],
    pub dst: [u8; 2],
    pub len: [u8; 2],
    pub check: [u8; 2],
}

#[repr(C)]
pub struct Vxlan {
    pub flags: [u8; 4],
    pub vni: [u8; 4],
}

impl Vxlan {
    /// RFC 7348 with nothing else: the I flag alone and zero reserved bits,
    /// as the userspace parser demands.
    pub fn is_plain(&self) -> bool {
        self.flags == [0x08, 0, 0, 0] && self.vni[3] == 0
    }

    pub fn vni(&self) -> u32 {
        u32::from_be_bytes([0, self.vni[0], self.vni[1], self.vni[2]])
    }
}

impl Ipv4 {
    /// The IPv4 header checksum of the header as it stands (its own
    /// checksum field counted as zero).
    pub fn checksum(&self) -> [u8; 2] {
        // SAFETY: Ipv4 is 20 plain bytes.
        let bytes: &[u8; 20] = unsafe { &*(self as *const Ipv4 as *const [u8; 20]) };
        let mut copy = *bytes;
        copy[10] = 0;
        copy[11] = 0;
        checksum(&copy)
    }

    /// Don't-fragment is set.
    pub fn dont_frag(&self) -> bool {
        self.frag[0] & 0x40 != 0
    }
}

/// The Internet checksum (RFC 1071) of `bytes`, ready to store.
#[inline(always)]
pub fn checksum<const N: usize>(bytes: &[u8; N]) -> [u8; 2] {
    let mut sum: u32 = 0;
    let mut i = 0;
    while i + 1 < N {
        sum += u32::from(u16::from_be_bytes([bytes[i], bytes[i + 1]]));
        i += 2;
    }
    if N % 2 == 1 {
        sum += u32::from(bytes[N - 1]) << 8;
    }
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    (!(sum as u16)).to_be_bytes()
}

/// A program context whose packet bytes can be read directly between
/// `start` and `end`.
pub trait Frame {
    fn start(&self) -> usize;
    fn end(&self) -> usize;
}

impl Frame for XdpContext {
    #[inline(always)]
    fn start(&self) -> usize {
        self.data()
    }
    #[inline(always)]
    fn end(&self) -> usize {
        self.data_end()
    }
}

impl Frame for TcContext {
    #[inline(always)]
    fn start(&self) -> usize {
        self.data()
    }
    #[inline(always)]
    fn end(&self) -> usize {
        self.data_end()
    }
}

/// A pointer to a `T` at `offset` of the frame, if the whole `T` lies
/// within it. The comparison against `data_end` is what lets the verifier
/// accept the access.
#[inline(always)]
pub fn at<T>(ctx: &impl Frame, offset: usize) -> Option<*mut T> {
    let start = ctx.start();
    let end = ctx.end();
    if start + offset + core::mem::size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *mut T)
}
