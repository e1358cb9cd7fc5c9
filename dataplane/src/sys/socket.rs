//! Socket options that std and socket2 do not offer.

use std::os::fd::AsRawFd;

/// Sets send and receive buffers to `bytes`, above the `rmem_max`/`wmem_max`
/// limits when privileged (`SO_*BUFFORCE`), else as large as allowed.
pub fn force_buffers(socket: &impl AsRawFd, bytes: usize) {
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    for (force, plain) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        for opt in [force, plain] {
            // SAFETY: the descriptor is open, and `value` is a c_int whose
            // size is passed along with its address.
            let rc = unsafe {
                libc::setsockopt(
                    socket.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    (&value as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc == 0 {
                break;
            }
        }
    }
}
