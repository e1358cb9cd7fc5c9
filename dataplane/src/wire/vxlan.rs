//! The VXLAN header (RFC 7348): 8 bytes in front of the inner Ethernet frame
//! in a UDP datagram to port [`PORT`].
//!
//! ```text
//! |R|R|R|R|I|R|R|R|            Reserved                           |
//! |                VXLAN Network Identifier (VNI) |   Reserved    |
//! ```
//!
//! Bytes enter as a [`Packet`] view over a UDP payload; [`Repr::parse`] accepts
//! exactly what the Linux kernel's `vxlan` driver accepts without extensions
//! (first word `0x08000000`, last byte zero), and [`Repr::emit`] writes that
//! same header, so shoal interoperates with a kernel VTEP in both directions.

use core::fmt;

use smoltcp::wire::{Error, Result};

/// Length of the VXLAN header.
pub const HEADER_LEN: usize = 8;

/// The IANA-assigned UDP destination port for VXLAN.
pub const PORT: u16 = 4789;

/// The I flag: the VNI field is valid. The only flag RFC 7348 defines.
pub const FLAG_I: u8 = 0x08;

/// The largest VNI: the field is 24 bits wide.
pub const VNI_MAX: u32 = 0x00ff_ffff;

mod field {
    pub type Field = core::ops::Range<usize>;
    pub type Rest = core::ops::RangeFrom<usize>;

    /// Flags, then three reserved bytes: one 32-bit word.
    pub const FLAGS_WORD: Field = 0..4;
    pub const FLAGS: usize = 0;
    pub const VNI: Field = 4..7;
    pub const RESERVED_LAST: usize = 7;
    pub const PAYLOAD: Rest = 8..;
}

/// A read/write view of a VXLAN header and the inner frame after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking its length; accessors may panic until
    /// [`Packet::check_len`] has succeeded.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer after checking that it holds a whole header, so that
    /// no accessor panics.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Fails when the buffer is shorter than [`HEADER_LEN`].
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error)
        } else {
            Ok(())
        }
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The flags byte; [`FLAG_I`] must be set for the VNI to mean anything.
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// The 24-bit VXLAN network identifier.
    #[inline]
    pub fn vni(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::VNI];
        u32::from_be_bytes([0, b[0], b[1], b[2]])
    }

    /// Whether the header is exactly what a kernel without extensions sends:
    /// only the I flag, and all reserved bits zero.
    #[inline]
    pub fn is_plain(&self) -> bool {
        let data = self.buffer.as_ref();
        data[field::FLAGS_WORD] == [FLAG_I, 0, 0, 0] && data[field::RESERVED_LAST] == 0
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The inner Ethernet frame.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the flags byte.
    #[inline]
    pub fn set_flags(&mut self, flags: u8) {
        self.buffer.as_mut()[field::FLAGS] = flags;
    }

    /// Sets the VNI; only its low 24 bits are written.
    #[inline]
    pub fn set_vni(&mut self, vni: u32) {
        let b = (vni & VNI_MAX).to_be_bytes();
        self.buffer.as_mut()[field::VNI].copy_from_slice(&b[1..]);
    }

    /// Zeroes the four reserved bytes.
    #[inline]
    pub fn clear_reserved(&mut self) {
        let data = self.buffer.as_mut();
        data[field::FLAGS_WORD.start + 1..field::FLAGS_WORD.end].fill(0);
        data[field::RESERVED_LAST] = 0;
    }

    /// The inner Ethernet frame, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The parsed form of a VXLAN header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// The 24-bit network identifier; never above [`VNI_MAX`] when parsed.
    pub vni: u32,
}

impl Repr {
    /// Parses a header, strictly: anything but the I flag and zero reserved
    /// bits is an error, as in the kernel's driver without extensions.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Result<Repr> {
        packet.check_len()?;
        if !packet.is_plain() {
            return Err(Error);
        }
        Ok(Repr { vni: packet.vni() })
    }

    /// The length of the header this emits.
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// The length of the buffer [`Repr::emit`] writes to (the header only).
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header: the I flag, zero reserved bits and the low 24 bits
    /// of `vni`. The payload is left alone.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(&self, packet: &mut Packet<&mut T>) {
        packet.set_flags(FLAG_I);
        packet.clear_reserved();
        packet.set_vni(self.vni);
    }
}

impl fmt::Display for Repr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VXLAN vni={}", self.vni)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const VNI_4097: [u8; 8] = [0x08, 0, 0, 0, 0x00, 0x10, 0x01, 0x00];

    #[test]
    fn parses_known_header() {
        let packet = Packet::new_checked(&VNI_4097[..]).unwrap();
        assert_eq!(packet.flags(), FLAG_I);
        assert_eq!(packet.vni(), 4097);
        assert!(packet.payload().is_empty());
        assert_eq!(Repr::parse(&packet), Ok(Repr { vni: 4097 }));
    }

    #[test]
    fn emits_known_header() {
        let mut buf = [0xffu8; 8];
        let repr = Repr { vni: 4097 };
        repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, VNI_4097);
        assert_eq!(repr.buffer_len(), HEADER_LEN);
        assert_eq!(repr.header_len(), HEADER_LEN);
    }

    #[test]
    fn emit_keeps_payload_and_masks_vni() {
        let mut buf = [0xaau8; 12];
        Repr { vni: 0x0123_4567 }.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf[..8], [0x08, 0, 0, 0, 0x23, 0x45, 0x67, 0]);
        assert_eq!(buf[8..], [0xaa; 4]);
    }

    #[test]
    fn payload_is_after_header() {
        let mut buf = VNI_4097.to_vec();
        buf.extend_from_slice(&[1, 2, 3]);
        let packet = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(packet.payload(), &[1, 2, 3]);
        let mut packet = Packet::new_checked(&mut buf[..]).unwrap();
        packet.payload_mut()[0] = 9;
        packet.set_vni(7);
        assert_eq!(packet.vni(), 7);
        assert_eq!(buf[8], 9);
    }

    #[test]
    fn rejects_short_buffer() {
        assert_eq!(Packet::new_checked(&VNI_4097[..7]), Err(Error));
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&VNI_4097[..7])),
            Err(Error)
        );
    }

    #[test]
    fn rejects_what_the_kernel_rejects() {
        let cases: [(usize, u8); 6] = [
            (0, 0x00), // I flag missing
            (0, 0x0c), // an extension flag (e.g. GBP/GPE bits)
            (1, 0x01),
            (2, 0x80),
            (3, 0x01),
            (7, 0x01), // last reserved byte
        ];
        for (at, value) in cases {
            let mut buf = VNI_4097;
            buf[at] = value;
            let packet = Packet::new_checked(&buf[..]).unwrap();
            assert_eq!(Repr::parse(&packet), Err(Error), "byte {at} = {value:#04x}");
        }
    }

    #[test]
    fn agrees_with_the_kernel_layout_of_vni_zero_and_max() {
        for vni in [0, VNI_MAX] {
            let mut buf = [0u8; 8];
            Repr { vni }.emit(&mut Packet::new_unchecked(&mut buf[..]));
            assert_eq!(
                u32::from_be_bytes(buf[..4].try_into().unwrap()),
                0x0800_0000
            );
            assert_eq!(u32::from_be_bytes(buf[4..].try_into().unwrap()), vni << 8);
        }
    }

    proptest! {
        #[test]
        fn emit_then_parse_round_trips(vni in 0..=VNI_MAX, payload in proptest::collection::vec(any::<u8>(), 0..32)) {
            let repr = Repr { vni };
            let mut buf = vec![0u8; repr.buffer_len()];
            buf.extend_from_slice(&payload);
            repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
            let packet = Packet::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(Repr::parse(&packet), Ok(repr));
            prop_assert_eq!(packet.payload(), &payload[..]);
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..24)) {
            let packet = Packet::new_unchecked(&bytes[..]);
            if let Ok(repr) = Repr::parse(&packet) {
                prop_assert!(repr.vni <= VNI_MAX);
                let mut again = bytes.clone();
                repr.emit(&mut Packet::new_unchecked(&mut again[..]));
                prop_assert_eq!(again, bytes);
            }
        }
    }
}
