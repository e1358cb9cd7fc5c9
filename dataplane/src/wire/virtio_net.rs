//! The 10-byte `struct virtio_net_hdr` that a TAP device opened with
//! `IFF_VNET_HDR` puts in front of every frame (`linux/virtio_net.h`), and
//! expects in front of every frame written to it. It carries the offloads:
//! a checksum still to be computed (`F_NEEDS_CSUM` with `csum_start` and
//! `csum_offset`) and segmentation still to be done (`gso_type`, `gso_size`).
//! All multi-byte fields are little-endian (a little-endian host, or
//! `TUNSETVNETLE`).
//!
//! Frames read from the device enter as a [`Packet`]; [`Repr::parse`] checks
//! that the offload request makes sense for the frame behind it, so the
//! userspace engine can act on it without bounds surprises.

use core::fmt;

use smoltcp::wire::{Error, Result};

/// Length of the header (without the `num_buffers` field of the mergeable
/// receive-buffer variant, which TAP devices do not use by default).
pub const HEADER_LEN: usize = 10;

/// The checksum from `csum_start` to the end of the frame still has to be
/// computed and stored at `csum_start + csum_offset`.
pub const F_NEEDS_CSUM: u8 = 1;
/// The checksum was already verified.
pub const F_DATA_VALID: u8 = 2;

/// Not a GSO frame.
pub const GSO_NONE: u8 = 0;
/// TCP over IPv4, to be cut into segments of `gso_size`.
pub const GSO_TCPV4: u8 = 1;
/// UDP fragmentation offload (UFO).
pub const GSO_UDP: u8 = 3;
/// TCP over IPv6, to be cut into segments of `gso_size`.
pub const GSO_TCPV6: u8 = 4;
/// UDP segmentation offload (USO).
pub const GSO_UDP_L4: u8 = 5;
/// Bit set together with a GSO type: the TCP segments carry ECN CWR.
pub const GSO_ECN: u8 = 0x80;

const KNOWN_FLAGS: u8 = F_NEEDS_CSUM | F_DATA_VALID;

mod field {
    pub type Field = core::ops::Range<usize>;
    pub type Rest = core::ops::RangeFrom<usize>;

    pub const FLAGS: usize = 0;
    pub const GSO_TYPE: usize = 1;
    pub const HDR_LEN: Field = 2..4;
    pub const GSO_SIZE: Field = 4..6;
    pub const CSUM_START: Field = 6..8;
    pub const CSUM_OFFSET: Field = 8..10;
    pub const PAYLOAD: Rest = 10..;
}

/// A read/write view of a virtio-net header and the frame after it.
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

    /// `F_NEEDS_CSUM` and/or `F_DATA_VALID`.
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// One of the `GSO_*` types, possibly with [`GSO_ECN`] set.
    #[inline]
    pub fn gso_type(&self) -> u8 {
        self.buffer.as_ref()[field::GSO_TYPE]
    }

    /// Length of the headers to copy in front of every segment (a hint).
    #[inline]
    pub fn hdr_len(&self) -> u16 {
        self.read_u16(field::HDR_LEN)
    }

    /// Payload bytes per segment.
    #[inline]
    pub fn gso_size(&self) -> u16 {
        self.read_u16(field::GSO_SIZE)
    }

    /// Where checksumming starts, from the start of the frame.
    #[inline]
    pub fn csum_start(&self) -> u16 {
        self.read_u16(field::CSUM_START)
    }

    /// Where the checksum goes, from `csum_start`.
    #[inline]
    pub fn csum_offset(&self) -> u16 {
        self.read_u16(field::CSUM_OFFSET)
    }

    fn read_u16(&self, at: field::Field) -> u16 {
        let b = &self.buffer.as_ref()[at];
        u16::from_le_bytes([b[0], b[1]])
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The Ethernet frame after the header.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the flags byte.
    #[inline]
    pub fn set_flags(&mut self, value: u8) {
        self.buffer.as_mut()[field::FLAGS] = value;
    }

    /// Sets the GSO type byte.
    #[inline]
    pub fn set_gso_type(&mut self, value: u8) {
        self.buffer.as_mut()[field::GSO_TYPE] = value;
    }

    /// Sets the header-length hint.
    #[inline]
    pub fn set_hdr_len(&mut self, value: u16) {
        self.write_u16(field::HDR_LEN, value);
    }

    /// Sets the segment size.
    #[inline]
    pub fn set_gso_size(&mut self, value: u16) {
        self.write_u16(field::GSO_SIZE, value);
    }

    /// Sets where checksumming starts.
    #[inline]
    pub fn set_csum_start(&mut self, value: u16) {
        self.write_u16(field::CSUM_START, value);
    }

    /// Sets where the checksum goes, from `csum_start`.
    #[inline]
    pub fn set_csum_offset(&mut self, value: u16) {
        self.write_u16(field::CSUM_OFFSET, value);
    }

    /// The frame after the header, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }

    fn write_u16(&mut self, at: field::Field, value: u16) {
        self.buffer.as_mut()[at].copy_from_slice(&value.to_le_bytes());
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The parsed form of a virtio-net header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Repr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl Repr {
    /// No offload: what to write in front of a complete, checksummed frame.
    pub const NONE: Repr = Repr {
        flags: 0,
        gso_type: GSO_NONE,
        hdr_len: 0,
        gso_size: 0,
        csum_start: 0,
        csum_offset: 0,
    };

    /// Parses a header and checks it against the frame behind it: only known
    /// flags and GSO types, a non-zero `gso_size` for a GSO frame, and with
    /// `F_NEEDS_CSUM` a two-byte checksum slot that lies inside the frame.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Result<Repr> {
        packet.check_len()?;
        let repr = Repr {
            flags: packet.flags(),
            gso_type: packet.gso_type(),
            hdr_len: packet.hdr_len(),
            gso_size: packet.gso_size(),
            csum_start: packet.csum_start(),
            csum_offset: packet.csum_offset(),
        };
        if repr.flags & !KNOWN_FLAGS != 0 {
            return Err(Error);
        }
        match repr.gso_kind() {
            GSO_NONE if repr.gso_type & GSO_ECN != 0 => return Err(Error),
            GSO_NONE => {}
            GSO_TCPV4 | GSO_UDP | GSO_TCPV6 | GSO_UDP_L4 if repr.gso_size != 0 => {}
            _ => return Err(Error),
        }
        if repr.needs_csum() {
            let slot_end = usize::from(repr.csum_start) + usize::from(repr.csum_offset) + 2;
            if slot_end > packet.payload().len() {
                return Err(Error);
            }
        }
        Ok(repr)
    }

    /// The GSO type without the [`GSO_ECN`] bit.
    pub const fn gso_kind(&self) -> u8 {
        self.gso_type & !GSO_ECN
    }

    /// Whether the checksum from `csum_start` on still has to be computed.
    pub const fn needs_csum(&self) -> bool {
        self.flags & F_NEEDS_CSUM != 0
    }

    /// The length of the header this emits.
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// The length of the buffer [`Repr::emit`] writes to (the header only).
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header; the frame after it is left alone.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(&self, packet: &mut Packet<&mut T>) {
        packet.set_flags(self.flags);
        packet.set_gso_type(self.gso_type);
        packet.set_hdr_len(self.hdr_len);
        packet.set_gso_size(self.gso_size);
        packet.set_csum_start(self.csum_start);
        packet.set_csum_offset(self.csum_offset);
    }
}

impl fmt::Display for Repr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "virtio-net flags={:#x} gso_type={:#x} hdr_len={} gso_size={} csum_start={} csum_offset={}",
            self.flags,
            self.gso_type,
            self.hdr_len,
            self.gso_size,
            self.csum_start,
            self.csum_offset
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A TCP/IPv4 GSO frame as a TAP device hands it over: 14 + 20 + 20
    /// header bytes, 1448-byte segments, the TCP checksum at 34 + 16.
    const TSO: [u8; 10] = [0x01, 0x01, 54, 0, 0xa8, 0x05, 34, 0, 16, 0];

    #[test]
    fn parses_known_header() {
        let mut buf = TSO.to_vec();
        buf.resize(HEADER_LEN + 54 + 1448, 0);
        let packet = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(packet.hdr_len(), 54);
        assert_eq!(packet.payload().len(), 54 + 1448);
        let repr = Repr::parse(&packet).unwrap();
        assert_eq!(
            repr,
            Repr {
                flags: F_NEEDS_CSUM,
                gso_type: GSO_TCPV4,
                hdr_len: 54,
                gso_size: 1448,
                csum_start: 34,
                csum_offset: 16,
            }
        );
        assert!(repr.needs_csum());
    }

    #[test]
    fn emits_known_header() {
        let mut buf = [0xffu8; 12];
        let repr = Repr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            hdr_len: 54,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf[..10], TSO);
        assert_eq!(buf[10..], [0xff, 0xff]);
    }

    #[test]
    fn none_is_all_zero() {
        let mut buf = [0xffu8; HEADER_LEN];
        Repr::NONE.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, [0; HEADER_LEN]);
        assert_eq!(
            Repr::parse(&Packet::new_checked(&buf[..]).unwrap()),
            Ok(Repr::NONE)
        );
        assert_eq!(Repr::default(), Repr::NONE);
    }

    #[test]
    fn rejects_short_buffer() {
        assert_eq!(Packet::new_checked(&[0u8; 9][..]), Err(Error));
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&[0u8; 9][..])),
            Err(Error)
        );
    }

    #[test]
    fn rejects_nonsense_offloads() {
        let frame_len = 64;
        let cases: [(&str, Repr); 6] = [
            (
                "unknown flag",
                Repr {
                    flags: 4,
                    ..Repr::NONE
                },
            ),
            (
                "unknown gso type",
                Repr {
                    gso_type: 2,
                    gso_size: 100,
                    ..Repr::NONE
                },
            ),
            (
                "ecn without gso",
                Repr {
                    gso_type: GSO_ECN,
                    ..Repr::NONE
                },
            ),
            (
                "gso without size",
                Repr {
                    gso_type: GSO_TCPV6,
                    ..Repr::NONE
                },
            ),
            (
                "checksum slot past the frame",
                Repr {
                    flags: F_NEEDS_CSUM,
                    csum_start: 60,
                    csum_offset: 3,
                    ..Repr::NONE
                },
            ),
            (
                "checksum start past the frame",
                Repr {
                    flags: F_NEEDS_CSUM,
                    csum_start: u16::MAX,
                    csum_offset: u16::MAX,
                    ..Repr::NONE
                },
            ),
        ];
        for (what, repr) in cases {
            let mut buf = vec![0u8; HEADER_LEN + frame_len];
            repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
            assert_eq!(
                Repr::parse(&Packet::new_unchecked(&buf[..])),
                Err(Error),
                "{what}"
            );
        }
    }

    #[test]
    fn accepts_ecn_with_gso_and_a_slot_ending_at_the_frame_end() {
        let repr = Repr {
            flags: F_NEEDS_CSUM | F_DATA_VALID,
            gso_type: GSO_TCPV4 | GSO_ECN,
            gso_size: 1,
            csum_start: 60,
            csum_offset: 2,
            ..Repr::NONE
        };
        let mut buf = [0u8; HEADER_LEN + 64];
        repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(Repr::parse(&Packet::new_unchecked(&buf[..])), Ok(repr));
        assert_eq!(repr.gso_kind(), GSO_TCPV4);
    }

    fn valid_repr() -> impl Strategy<Value = (Repr, usize)> {
        (
            0..=KNOWN_FLAGS,
            prop_oneof![
                Just(GSO_NONE),
                Just(GSO_TCPV4),
                Just(GSO_UDP),
                Just(GSO_TCPV6),
                Just(GSO_UDP_L4)
            ],
            any::<bool>(),
            any::<u16>(),
            1..=u16::MAX,
            0..200u16,
            0..200u16,
            0..64usize,
        )
            .prop_map(|(flags, kind, ecn, hdr_len, size, start, offset, slack)| {
                let gso = kind != GSO_NONE;
                let repr = Repr {
                    flags,
                    gso_type: if gso && ecn { kind | GSO_ECN } else { kind },
                    hdr_len,
                    gso_size: if gso { size } else { 0 },
                    csum_start: start,
                    csum_offset: offset,
                };
                let frame_len = usize::from(start) + usize::from(offset) + 2 + slack;
                (repr, frame_len)
            })
    }

    proptest! {
        #[test]
        fn emit_then_parse_round_trips((repr, frame_len) in valid_repr()) {
            let mut buf = vec![0u8; repr.buffer_len() + frame_len];
            repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
            let packet = Packet::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(Repr::parse(&packet), Ok(repr));
            prop_assert_eq!(packet.payload().len(), frame_len);
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let packet = Packet::new_unchecked(&bytes[..]);
            if let Ok(repr) = Repr::parse(&packet) {
                let mut again = bytes.clone();
                repr.emit(&mut Packet::new_unchecked(&mut again[..]));
                prop_assert_eq!(again, bytes);
            }
        }
    }
}
