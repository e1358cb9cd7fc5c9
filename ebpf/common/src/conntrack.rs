//! The per-flow state machine of connection tracking and its idle
//! timeouts, one definition for both engines (the data plane's tracker
//! re-exports it from `lb::conntrack`).
//!
//! TCP flags (and the direction a packet went) enter [`FlowState::next`]; a
//! new state leaves, whose [`FlowState::timeout_ms`] says how long the flow may
//! stay idle. The timeouts are Linux conntrack's defaults or longer, never
//! shorter: an established TCP flow idles for five days before it is
//! forgotten, which is the bug (Swarm's IPVS dropping idle TCP after 900 s,
//! moby/moby#31208) this exists to avoid.

use crate::flow::{Protocol, TcpFlags};

/// The direction of a packet relative to the flow's first packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client to service, as the flow's first packet went.
    Original,
    /// Backend to client.
    Reply,
}

const SECOND: u64 = 1000;

/// What the tracker knows of a flow. Deliberately coarser than Linux's
/// (no sequence-number windows): it only decides how long to remember.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowState {
    /// A SYN went out; no answer seen yet.
    TcpSynSent,
    /// The backend answered the SYN.
    TcpSynRecv,
    /// Handshake done, or a flow picked up mid-stream (as Linux does with
    /// `nf_conntrack_tcp_loose`, so a restarted node keeps existing flows).
    TcpEstablished,
    /// One side sent a FIN.
    TcpFinWait(Direction),
    /// Both sides sent a FIN.
    TcpTimeWait,
    /// A RST was seen: the flow is over, keep it briefly for stray packets.
    TcpClose,
    /// Packets went one way only.
    UdpUnreplied,
    /// Packets went both ways.
    UdpStream,
}

impl FlowState {
    /// The state of a flow whose first (original-direction) packet carried
    /// `flags` (ignored for UDP).
    pub fn initial(proto: Protocol, flags: TcpFlags) -> FlowState {
        match proto {
            Protocol::Udp => FlowState::UdpUnreplied,
            Protocol::Tcp => FlowState::TcpSynSent.next(flags, Direction::Original),
        }
    }

    /// The state after a packet with `flags` went in direction `dir`.
    pub fn next(self, flags: TcpFlags, dir: Direction) -> FlowState {
        use Direction::*;
        use FlowState::*;
        match self {
            UdpUnreplied if dir == Reply => UdpStream,
            UdpUnreplied | UdpStream => self,
            _ if flags.contains(TcpFlags::RST) => TcpClose,
            // A new SYN on a finished tuple starts a new connection.
            TcpTimeWait | TcpClose if flags.contains(TcpFlags::SYN) && dir == Original => {
                TcpSynSent
            }
            TcpSynSent if flags.contains(TcpFlags::SYN) => {
                if dir == Reply && flags.contains(TcpFlags::ACK) {
                    TcpSynRecv
                } else {
                    TcpSynSent
                }
            }
            TcpSynSent | TcpSynRecv | TcpEstablished if flags.contains(TcpFlags::FIN) => {
                TcpFinWait(dir)
            }
            TcpFinWait(first) if flags.contains(TcpFlags::FIN) && first != dir => TcpTimeWait,
            // The handshake's last ACK; without seeing replies (direct server
            // return) the client's ACK after its SYN is all there is.
            TcpSynSent | TcpSynRecv if dir == Original && !flags.contains(TcpFlags::SYN) => {
                TcpEstablished
            }
            _ => self,
        }
    }

    /// The state as one byte, for the eBPF conntrack maps.
    pub const fn to_u8(self) -> u8 {
        match self {
            FlowState::TcpSynSent => 1,
            FlowState::TcpSynRecv => 2,
            FlowState::TcpEstablished => 3,
            FlowState::TcpFinWait(Direction::Original) => 4,
            FlowState::TcpFinWait(Direction::Reply) => 5,
            FlowState::TcpTimeWait => 6,
            FlowState::TcpClose => 7,
            FlowState::UdpUnreplied => 8,
            FlowState::UdpStream => 9,
        }
    }

    /// The state [`FlowState::to_u8`] gave `byte`; `None` for any other.
    pub const fn from_u8(byte: u8) -> Option<FlowState> {
        Some(match byte {
            1 => FlowState::TcpSynSent,
            2 => FlowState::TcpSynRecv,
            3 => FlowState::TcpEstablished,
            4 => FlowState::TcpFinWait(Direction::Original),
            5 => FlowState::TcpFinWait(Direction::Reply),
            6 => FlowState::TcpTimeWait,
            7 => FlowState::TcpClose,
            8 => FlowState::UdpUnreplied,
            9 => FlowState::UdpStream,
            _ => return None,
        })
    }

    /// Whether a new SYN on this tuple opens a new connection (Linux
    /// reopens a TIME_WAIT entry on a new SYN).
    pub const fn is_closing(self) -> bool {
        matches!(
            self,
            FlowState::TcpFinWait(_) | FlowState::TcpTimeWait | FlowState::TcpClose
        )
    }

    /// How long the flow may stay idle in this state: Linux conntrack's
    /// defaults, rounded up to 120 s for the FIN states it splits further.
    pub fn timeout_ms(self) -> u64 {
        match self {
            FlowState::TcpSynSent => 120 * SECOND,
            FlowState::TcpSynRecv => 60 * SECOND,
            FlowState::TcpEstablished => 432_000 * SECOND,
            FlowState::TcpFinWait(_) => 120 * SECOND,
            FlowState::TcpTimeWait => 120 * SECOND,
            FlowState::TcpClose => 10 * SECOND,
            FlowState::UdpUnreplied => 30 * SECOND,
            FlowState::UdpStream => 120 * SECOND,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Direction::*;
    use super::FlowState::*;
    use super::*;

    const SYN: TcpFlags = TcpFlags::SYN;
    const ACK: TcpFlags = TcpFlags::ACK;

    #[test]
    fn full_tcp_lifecycle() {
        let s = FlowState::initial(Protocol::Tcp, SYN);
        assert_eq!(s, TcpSynSent);
        let s = s.next(SYN | ACK, Reply);
        assert_eq!(s, TcpSynRecv);
        let s = s.next(ACK, Original);
        assert_eq!(s, TcpEstablished);
        assert_eq!(s.next(ACK, Reply), TcpEstablished);
        let s = s.next(TcpFlags::FIN | ACK, Reply);
        assert_eq!(s, TcpFinWait(Reply));
        assert_eq!(s.next(ACK, Original), TcpFinWait(Reply));
        assert_eq!(s.next(TcpFlags::FIN | ACK, Reply), TcpFinWait(Reply));
        let s = s.next(TcpFlags::FIN | ACK, Original);
        assert_eq!(s, TcpTimeWait);
        assert_eq!(s.next(SYN, Original), TcpSynSent);
    }

    #[test]
    fn rst_closes_from_any_tcp_state() {
        for s in [
            TcpSynSent,
            TcpSynRecv,
            TcpEstablished,
            TcpFinWait(Original),
            TcpTimeWait,
        ] {
            assert_eq!(s.next(TcpFlags::RST, Reply), TcpClose);
        }
        assert_eq!(TcpClose.next(ACK, Original), TcpClose);
    }

    #[test]
    fn mid_stream_pickup_and_direct_server_return() {
        assert_eq!(FlowState::initial(Protocol::Tcp, ACK), TcpEstablished);
        assert_eq!(TcpSynSent.next(ACK, Original), TcpEstablished);
        assert_eq!(FlowState::initial(Protocol::Tcp, TcpFlags::RST), TcpClose);
    }

    #[test]
    fn udp_becomes_a_stream_once_answered() {
        let s = FlowState::initial(Protocol::Udp, TcpFlags::NONE);
        assert_eq!(s, UdpUnreplied);
        assert_eq!(s.next(TcpFlags::RST, Original), UdpUnreplied);
        assert_eq!(s.next(TcpFlags::NONE, Reply), UdpStream);
        assert_eq!(UdpStream.next(TcpFlags::NONE, Original), UdpStream);
    }

    #[test]
    fn every_state_survives_its_byte() {
        let all = [
            TcpSynSent,
            TcpSynRecv,
            TcpEstablished,
            TcpFinWait(Original),
            TcpFinWait(Reply),
            TcpTimeWait,
            TcpClose,
            UdpUnreplied,
            UdpStream,
        ];
        for s in all {
            assert_eq!(FlowState::from_u8(s.to_u8()), Some(s));
        }
        assert_eq!(FlowState::from_u8(0), None);
        assert_eq!(FlowState::from_u8(10), None);
    }

    #[test]
    fn timeouts_are_never_shorter_than_linux_defaults() {
        // nf_conntrack_{tcp,udp}_timeout_* defaults, seconds.
        let linux = [
            (TcpSynSent, 120),
            (TcpSynRecv, 60),
            (TcpEstablished, 432_000),
            (TcpFinWait(Original), 120),
            (TcpTimeWait, 120),
            (TcpClose, 10),
            (UdpUnreplied, 30),
            (UdpStream, 120),
        ];
        for (s, secs) in linux {
            assert!(s.timeout_ms() >= secs * SECOND, "{s:?}");
        }
    }
}
