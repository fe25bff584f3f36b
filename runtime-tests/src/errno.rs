//! Errno names as tests compare them (`EROFS`, not "Read-only file system"):
//! symbolic names are stable across libc versions and locales, messages are not.

use nix::errno::Errno;

/// The symbolic name of an errno value, or `errno:N` for one nix does not know.
pub fn name(raw: i32) -> String {
    match Errno::from_raw(raw) {
        Errno::UnknownErrno => format!("errno:{raw}"),
        e => format!("{e:?}"),
    }
}

/// Like [`name`] for an `io::Error`; errors that carry no errno (e.g. invalid
/// data built by std itself) become `error:<kind>`.
pub fn io_name(err: &std::io::Error) -> String {
    match err.raw_os_error() {
        Some(raw) => name(raw),
        None => format!("error:{:?}", err.kind()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_symbolic() {
        assert_eq!(name(libc::EROFS), "EROFS");
        assert_eq!(name(libc::EACCES), "EACCES");
        assert_eq!(name(libc::EPERM), "EPERM");
        assert_eq!(name(libc::ENOENT), "ENOENT");
        assert_eq!(name(libc::ECONNREFUSED), "ECONNREFUSED");
    }

    #[test]
    fn unknown_values_keep_the_number() {
        assert_eq!(name(100_000), "errno:100000");
    }

    #[test]
    fn io_errors_without_errno_name_their_kind() {
        let e = std::io::Error::new(std::io::ErrorKind::InvalidInput, "x");
        assert_eq!(io_name(&e), "error:InvalidInput");
        let e = std::io::Error::from_raw_os_error(libc::EROFS);
        assert_eq!(io_name(&e), "EROFS");
    }
}
