//! bpf(2) for cgroup2 device programs: load one, attach it to a cgroup, and
//! the few more calls the supervisor makes on a guest's behalf (detach, query,
//! a program's type; supervisor/bpfbroker.rs).
//!
//! The programs themselves (policy/devices.rs) are a dozen instructions; libbpf
//! or aya would bring a toolchain's worth of code for a handful of calls.

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
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_PROG_QUERY: libc::c_long = 16;
pub const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
pub const BPF_CGROUP_DEVICE: u32 = 6;
/// Other programs (systemd's DevicePolicy= on the unit above us) keep working:
/// the kernel runs all of them and allows only what every one allows.
pub const BPF_F_ALLOW_MULTI: u32 = 2;
pub const BPF_F_ALLOW_OVERRIDE: u32 = 1;
pub const BPF_F_REPLACE: u32 = 4;

/// union bpf_attr, zero-padded; 128 bytes covers the fields both commands use.
type Attr = [u8; 128];

fn bpf(cmd: libc::c_long, attr: &Attr) -> Result<i64, Errno> {
    // SAFETY: attr is a zero-padded union bpf_attr of the size we pass; the
    // pointers inside it (program, licence) are alive for the call.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_ptr(), attr.len()) };
    Errno::result(r)
}

/// For commands that write results back into the attribute union.
fn bpf_mut(cmd: libc::c_long, attr: &mut Attr) -> Result<i64, Errno> {
    // SAFETY: as bpf(); the kernel writes only within the size we pass, and
    // any output pointers inside attr point at buffers alive for the call.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) };
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
    load_device_program_named(prog, "")
}

/// Loads `prog` as a BPF_PROG_TYPE_CGROUP_DEVICE program named `name` (what
/// bpftool shows; up to 15 letters, digits, `_` and `.`, else left out).
pub fn load_device_program_named(prog: &[Insn], name: &str) -> Result<OwnedFd, Errno> {
    let license = c"MIT";
    let mut load = [0u8; 128];
    put_u32(&mut load, 0, BPF_PROG_TYPE_CGROUP_DEVICE);
    put_u32(&mut load, 4, prog.len() as u32);
    put_u64(&mut load, 8, prog.as_ptr() as u64);
    put_u64(&mut load, 16, license.as_ptr() as u64);
    if name.len() < 16
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
    {
        load[48..48 + name.len()].copy_from_slice(name.as_bytes());
    }
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

/// BPF_PROG_ATTACH of a device program with the caller's `flags`
/// (ALLOW_OVERRIDE, ALLOW_MULTI, REPLACE with `replace`).
pub fn attach_device_program_flags(
    cgroup: BorrowedFd<'_>,
    prog: BorrowedFd<'_>,
    flags: u32,
    replace: Option<BorrowedFd<'_>>,
) -> Result<(), Errno> {
    let mut attach = [0u8; 128];
    put_u32(&mut attach, 0, cgroup.as_raw_fd() as u32);
    put_u32(&mut attach, 4, prog.as_raw_fd() as u32);
    put_u32(&mut attach, 8, BPF_CGROUP_DEVICE);
    put_u32(&mut attach, 12, flags);
    if let Some(r) = replace {
        put_u32(&mut attach, 16, r.as_raw_fd() as u32);
    }
    bpf(BPF_PROG_ATTACH, &attach).map(drop)
}

/// BPF_PROG_DETACH of the device program `prog` from a cgroup.
pub fn detach_device_program(cgroup: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> Result<(), Errno> {
    let mut detach = [0u8; 128];
    put_u32(&mut detach, 0, cgroup.as_raw_fd() as u32);
    put_u32(&mut detach, 4, prog.as_raw_fd() as u32);
    put_u32(&mut detach, 8, BPF_CGROUP_DEVICE);
    bpf(BPF_PROG_DETACH, &detach).map(drop)
}

/// What BPF_PROG_QUERY says about the device programs attached to one cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub attach_flags: u32,
    /// How many programs are attached.
    pub total: u32,
    /// The ids of the first ones, as many as were asked for.
    pub ids: Vec<u32>,
    /// The attachment list's revision (Linux 6.6 and later; else 0).
    pub revision: u64,
}

/// BPF_PROG_QUERY for the device programs attached directly to `cgroup`
/// (not the effective ones), with room for `room` ids. Like the kernel, fails
/// with ENOSPC when more are attached — `total` and the ids that fit are in
/// the error's companion, so the caller can pass both on.
pub fn query_device_programs(cgroup: BorrowedFd<'_>, room: u32) -> (Query, Result<(), Errno>) {
    let mut ids = vec![0u32; room as usize];
    let mut query = [0u8; 128];
    put_u32(&mut query, 0, cgroup.as_raw_fd() as u32);
    put_u32(&mut query, 4, BPF_CGROUP_DEVICE);
    put_u64(&mut query, 16, ids.as_mut_ptr() as u64);
    put_u32(&mut query, 24, room);
    // The kernel writes at most `room` ids into `ids`, alive until we return.
    let res = bpf_mut(BPF_PROG_QUERY, &mut query).map(drop);
    let get = |off: usize| u32::from_ne_bytes(query[off..off + 4].try_into().expect("4 bytes"));
    let total = get(24);
    ids.truncate(total.min(room) as usize);
    (
        Query {
            attach_flags: get(12),
            total,
            ids,
            revision: u64::from_ne_bytes(query[56..64].try_into().expect("8 bytes")),
        },
        res,
    )
}

/// The type and id of the BPF program `prog` (BPF_OBJ_GET_INFO_BY_FD).
pub fn program_type_and_id(prog: BorrowedFd<'_>) -> Result<(u32, u32), Errno> {
    // struct bpf_prog_info starts with `__u32 type; __u32 id;`; asking for just
    // those 8 bytes is allowed (the kernel copies min(ours, its) bytes).
    let mut info = [0u8; 8];
    let mut attr = [0u8; 128];
    put_u32(&mut attr, 0, prog.as_raw_fd() as u32);
    put_u32(&mut attr, 4, info.len() as u32);
    put_u64(&mut attr, 8, info.as_mut_ptr() as u64);
    bpf_mut(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    let word = |o: usize| u32::from_ne_bytes(info[o..o + 4].try_into().expect("4 bytes"));
    Ok((word(0), word(4)))
}

/// BPF_PROG_GET_FD_BY_ID: a new fd for the program with id `id`.
pub fn program_by_id(id: u32) -> Result<OwnedFd, Errno> {
    const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
    let mut attr = [0u8; 128];
    put_u32(&mut attr, 0, id);
    let fd = bpf(BPF_PROG_GET_FD_BY_ID, &attr)?;
    // SAFETY: the kernel returned a new program fd that only we know.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}
