//! bpf(2) for the cgroup2 device program: load one, attach it to a cgroup.
//!
//! The program itself (policy/devices.rs) is a dozen instructions; libbpf or
//! aya would bring a toolchain's worth of code for two calls.

use nix::errno::Errno;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// struct bpf_insn
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    /// dst (low nibble), src (high nibble)
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    pub const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            regs: (src << 4) | dst,
            off,
            imm,
        }
    }

    pub fn dst(&self) -> usize {
        (self.regs & 0xf) as usize
    }

    pub fn src(&self) -> usize {
        (self.regs >> 4) as usize
    }
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
/// Other programs (systemd's DevicePolicy= on the unit above us) keep working:
/// the kernel runs all of them and allows only what every one allows.
const BPF_F_ALLOW_MULTI: u32 = 2;

/// union bpf_attr, zero-padded; 128 bytes covers the fields both commands use.
type Attr = [u8; 128];

fn bpf(cmd: libc::c_long, attr: &Attr) -> Result<i64, Errno> {
    // SAFETY: attr is a zero-padded union bpf_attr of the size we pass; the
    // pointers inside it (program, licence) are alive for the call.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_ptr(), attr.len()) };
    Errno::result(r)
}

fn put_u32(a: &mut Attr, off: usize, v: u32) {
    a[off..off + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put_u64(a: &mut Attr, off: usize, v: u64) {
    a[off..off + 8].copy_from_slice(&v.to_ne_bytes());
}

/// Loads `prog` as a BPF_PROG_TYPE_CGROUP_DEVICE program.
pub fn load_device_program(prog: &[Insn]) -> Result<OwnedFd, Errno> {
    let license = c"MIT";
    let mut load = [0u8; 128];
    put_u32(&mut load, 0, BPF_PROG_TYPE_CGROUP_DEVICE);
    put_u32(&mut load, 4, prog.len() as u32);
    put_u64(&mut load, 8, prog.as_ptr() as u64);
    put_u64(&mut load, 16, license.as_ptr() as u64);
    let fd = bpf(BPF_PROG_LOAD, &load)?;
    // SAFETY: the kernel returned a new program fd that only we know.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Attaches a device program to the cgroup whose directory `cgroup` is open
/// (BPF_F_ALLOW_MULTI). The attachment holds the program; the fd may go.
pub fn attach_device_program(cgroup: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> Result<(), Errno> {
    let mut attach = [0u8; 128];
    put_u32(&mut attach, 0, cgroup.as_raw_fd() as u32);
    put_u32(&mut attach, 4, prog.as_raw_fd() as u32);
    put_u32(&mut attach, 8, BPF_CGROUP_DEVICE);
    put_u32(&mut attach, 12, BPF_F_ALLOW_MULTI);
    bpf(BPF_PROG_ATTACH, &attach).map(drop)
}
