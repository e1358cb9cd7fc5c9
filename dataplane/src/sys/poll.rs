//! Waiting for a descriptor to become readable, with a timeout so that
//! worker threads notice a stop request.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Waits until `fd` is readable or `timeout` passes. Returns whether it is
/// readable; an interrupted wait counts as not readable.
pub fn wait_readable(fd: &impl AsRawFd, timeout: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: `pfd` is a valid pollfd for the duration of the call and the
    // count passed is 1.
    let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted {
            Ok(false)
        } else {
            Err(e)
        };
    }
    if pfd.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0
        && pfd.revents & libc::POLLIN == 0
    {
        return Err(io::Error::new(
            io::ErrorKind::BrokenPipe,
            "descriptor reported an error or hang-up",
        ));
    }
    Ok(rc > 0)
}
