//! The userspace engine's underlay: a UDP socket on the VXLAN port that
//! receives with GRO, and a small pool of sending sockets (one source port
//! each, chosen by inner flow hash, so the underlay can spread flows) that
//! send with GSO.

use std::io::{self, IoSliceMut};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};

use quinn_udp::{RecvMeta, Transmit, UdpSockRef, UdpSocketState};

use crate::sys;

/// Receiving sockets on the VXLAN port (SO_REUSEPORT spreads senders over
/// them), each with a worker thread.
pub const RX_SOCKETS: usize = 2;
/// Sending sockets in the pool: distinct outer source ports.
const TX_SOCKETS: usize = 4;
/// The largest UDP payload one GSO send may carry.
const MAX_GSO_BYTES: usize = 65_000;
/// Socket buffers large enough to absorb a burst of super-frames.
const SOCKET_BUFFER: usize = 8 << 20;

struct Socket {
    socket: UdpSocket,
    state: UdpSocketState,
}

impl Socket {
    fn bind(addr: SocketAddrV4, reuse_port: bool) -> io::Result<Socket> {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
        socket.set_reuse_port(reuse_port)?;
        socket.bind(&addr.into())?;
        let socket = UdpSocket::from(socket);
        let state = UdpSocketState::new(UdpSockRef::from(&socket))?;
        sys::socket::force_buffers(&socket, SOCKET_BUFFER);
        Ok(Socket { socket, state })
    }
}

/// The node's VXLAN sockets.
pub struct Underlay {
    rx: Vec<Socket>,
    tx: Vec<Socket>,
    port: u16,
}

impl Underlay {
    /// Binds the VXLAN port on `addr` and the sending pool.
    pub fn bind(addr: Ipv4Addr, port: u16) -> io::Result<Underlay> {
        Underlay::bind_for(addr, port).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("binding the VXLAN port {addr}:{port}: {e} (is another VTEP, such as a kernel vxlan device, using it?)"),
            )
        })
    }

    /// Binds the WireGuard port of the encrypted networks on `addr` and its
    /// sending pool.
    pub fn bind_tunnel(addr: Ipv4Addr, port: u16) -> io::Result<Underlay> {
        Underlay::bind_for(addr, port).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("binding the WireGuard port {addr}:{port} of encrypted networks: {e} (pick another with --tunnel-port)"),
            )
        })
    }

    fn bind_for(addr: Ipv4Addr, port: u16) -> io::Result<Underlay> {
        let rx = (0..RX_SOCKETS)
            .map(|_| Socket::bind(SocketAddrV4::new(addr, port), true))
            .collect::<io::Result<Vec<_>>>()?;
        let tx = (0..TX_SOCKETS)
            .map(|_| {
                let s = Socket::bind(SocketAddrV4::new(addr, 0), false)?;
                // Sends block when the socket buffer is full: backpressure
                // reaches the task's TCP instead of a silent drop.
                s.socket.set_nonblocking(false)?;
                Ok(s)
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Underlay { rx, tx, port })
    }

    /// The index of the sending socket for a flow hash.
    pub fn socket_of(&self, flow: u32) -> usize {
        flow as usize % self.tx.len()
    }

    /// Sends `contents` to `node`: one datagram, or several of `stride`
    /// bytes each (the last may be shorter) through GSO.
    pub fn send(
        &self,
        node: Ipv4Addr,
        flow: u32,
        contents: &[u8],
        stride: usize,
    ) -> io::Result<()> {
        let sock = &self.tx[self.socket_of(flow)];
        let destination = SocketAddr::V4(SocketAddrV4::new(node, self.port));
        let per_send =
            (MAX_GSO_BYTES / stride.max(1)).clamp(1, sock.state.max_gso_segments().max(1));
        for chunk in contents.chunks(stride * per_send) {
            let transmit = Transmit {
                destination,
                ecn: None,
                contents: chunk,
                segment_size: (chunk.len() > stride).then_some(stride),
                src_ip: None,
            };
            sock.state
                .try_send(UdpSockRef::from(&sock.socket), &transmit)?;
        }
        Ok(())
    }

    /// Receives a batch into `bufs`; GRO may merge several datagrams of one
    /// sender into a buffer (`meta.stride` apart).
    pub fn recv(
        &self,
        socket: usize,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> io::Result<usize> {
        let rx = &self.rx[socket];
        rx.state.recv(UdpSockRef::from(&rx.socket), bufs, meta)
    }

    /// Receiving socket `socket`, for waiting on it.
    pub fn rx_socket(&self, socket: usize) -> &UdpSocket {
        &self.rx[socket].socket
    }
}
