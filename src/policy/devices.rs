//! The device policy: which device nodes the guest may create and open.
//!
//! The guest keeps CAP_MKNOD (systemd's PrivateDevices= creates nodes), so the
//! only thing between a guest and `mknod /dev/sda` is this list, enforced by the
//! kernel's device cgroup on the container's payload cgroup: as devices.allow
//! rules where the v1 devices controller is mounted, else as a BPF program on
//! cgroup2. The guest cannot detach a program (bpf() is denied) nor mount the v1
//! hierarchy to rewrite its rules (refused by the mount guard).
//!
//! This module is the policy as data: the rules, their devices.allow lines and
//! the BPF program; cgroup.rs enforces it. The program is hand-assembled: a
//! dozen instructions that no well-kept crate produces without pulling in a BPF
//! toolchain.

use crate::plan::{Bind, SourceKind};
use crate::sys::bpf::Insn;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Char,
    Block,
}

/// One allowed device (read, write and mknod); `minor: None` means any minor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub kind: Kind,
    pub major: u32,
    pub minor: Option<u32>,
}

const fn chr(major: u32, minor: u32) -> Rule {
    Rule {
        kind: Kind::Char,
        major,
        minor: Some(minor),
    }
}

/// The nodes nixrun creates in the guest's /dev, its console and ptys, and the
/// 0:0 "inaccessible" nodes of the container interface (/run/host/inaccessible;
/// systemd makes them too): device 0:0 has no driver, opening it gives ENXIO.
pub const DEFAULT: &[Rule] = &[
    chr(0, 0),
    Rule {
        kind: Kind::Block,
        major: 0,
        minor: Some(0),
    },
    chr(1, 3),    // null
    chr(1, 5),    // zero
    chr(1, 7),    // full
    chr(1, 8),    // random
    chr(1, 9),    // urandom
    chr(5, 0),    // tty
    chr(5, 1),    // console
    chr(5, 2),    // ptmx
    chr(10, 200), // net/tun
    Rule {
        kind: Kind::Char,
        major: 136, // the container's own pty slaves (devpts)
        minor: None,
    },
];

/// The rule in devices.allow syntax ("c 1:3 rwm").
pub fn v1_line(r: &Rule) -> String {
    let kind = match r.kind {
        Kind::Char => 'c',
        Kind::Block => 'b',
    };
    match r.minor {
        Some(m) => format!("{kind} {}:{m} rwm", r.major),
        None => format!("{kind} {}:* rwm", r.major),
    }
}

// --- the cgroup2 device program ----------------------------------------------

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn::new(code, dst, src, off, imm)
}

const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const AND_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const MOV64_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

// bpf_cgroup_dev_ctx.access_type: device type in the low 16 bits.
const DEVCG_DEV_BLOCK: i32 = 1;
const DEVCG_DEV_CHAR: i32 = 2;

/// r1 = struct bpf_cgroup_dev_ctx { u32 access_type, major, minor }. Returns 1
/// (allow) when a rule matches type, major and (if given) minor; else 0.
pub fn program(rules: &[Rule]) -> Vec<Insn> {
    let mut p = vec![
        insn(LDX_W, 2, 1, 0, 0),      // r2 = access_type
        insn(AND_K, 2, 0, 0, 0xffff), // r2 = device type
        insn(LDX_W, 3, 1, 4, 0),      // r3 = major
        insn(LDX_W, 4, 1, 8, 0),      // r4 = minor
    ];
    for r in rules {
        let kind = match r.kind {
            Kind::Char => DEVCG_DEV_CHAR,
            Kind::Block => DEVCG_DEV_BLOCK,
        };
        // Each test jumps past the rest of this rule: the remaining tests plus
        // "r0 = 1; exit".
        let tests = if r.minor.is_some() { 3 } else { 2 };
        let mut left = tests;
        let mut skip = |p: &mut Vec<Insn>, reg, imm| {
            left -= 1;
            p.push(insn(JNE_K, reg, 0, left + 2, imm));
        };
        skip(&mut p, 2, kind);
        skip(&mut p, 3, r.major as i32);
        if let Some(m) = r.minor {
            skip(&mut p, 4, m as i32);
        }
        p.push(insn(MOV64_K, 0, 0, 0, 1));
        p.push(insn(EXIT, 0, 0, 0, 0));
    }
    p.push(insn(MOV64_K, 0, 0, 0, 0));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

/// The container's rules: the defaults, and device nodes bound in on purpose
/// (as nspawn adds them to the unit's DeviceAllow=).
pub fn rules(binds: &[Bind]) -> Vec<Rule> {
    let mut out = DEFAULT.to_vec();
    for b in binds {
        if let SourceKind::Device { block, rdev } = b.kind {
            out.push(Rule {
                kind: if block { Kind::Block } else { Kind::Char },
                major: libc::major(rdev),
                minor: Some(libc::minor(rdev)),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny interpreter for the instructions `program` emits, to check the
    /// jump arithmetic without loading anything into a kernel.
    fn run(p: &[Insn], ty: i32, major: u32, minor: u32) -> i64 {
        let ctx = [ty as u32 | (2 << 16), major, minor];
        let mut r = [0i64; 11];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let (dst, src) = (i.dst(), i.src());
            pc += 1;
            match i.code {
                LDX_W => {
                    assert_eq!(src, 1);
                    r[dst] = ctx[(i.off / 4) as usize] as i64;
                }
                AND_K => r[dst] &= i.imm as i64,
                MOV64_K => r[dst] = i.imm as i64,
                JNE_K => {
                    if r[dst] != i.imm as i64 {
                        pc += i.off as usize;
                    }
                }
                EXIT => return r[0],
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    #[test]
    fn the_program_allows_exactly_the_rules() {
        let p = program(DEFAULT);
        let c = DEVCG_DEV_CHAR;
        let b = DEVCG_DEV_BLOCK;
        assert_eq!(run(&p, c, 1, 3), 1, "null");
        assert_eq!(run(&p, c, 1, 9), 1, "urandom");
        assert_eq!(run(&p, c, 136, 7), 1, "a pty");
        assert_eq!(run(&p, c, 10, 200), 1, "tun");
        assert_eq!(run(&p, c, 1, 1), 0, "/dev/mem");
        assert_eq!(run(&p, c, 1, 2), 0, "/dev/kmem");
        assert_eq!(run(&p, c, 10, 229), 0, "fuse");
        assert_eq!(run(&p, b, 8, 0), 0, "a disk");
        assert_eq!(run(&p, b, 1, 3), 0, "a block device with null's numbers");
        assert_eq!(run(&p, b, 254, 0), 0, "virtio disk");
    }

    #[test]
    fn v1_syntax() {
        assert_eq!(v1_line(&DEFAULT[2]), "c 1:3 rwm");
        assert_eq!(v1_line(&DEFAULT[1]), "b 0:0 rwm");
        assert_eq!(v1_line(DEFAULT.last().unwrap()), "c 136:* rwm");
    }
}
