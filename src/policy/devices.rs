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
//!
//! The guest may add device programs of its own below its payload cgroup
//! (systemd's DevicePolicy=, a nested nixrun, crun): the supervisor loads them
//! for it (supervisor/bpfbroker.rs), and the kernel runs every program on the
//! way from a cgroup to the root, allowing only what all of them allow, so a
//! guest's program can only narrow the container's policy. What the
//! supervisor loads is checked first (`check_guest_program`): loaded with the
//! host root's privileges, a program could otherwise call helpers that read
//! kernel memory and leak it through its verdict.

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

// --- programs the guest asks the supervisor to load ---------------------------

/// The longest guest program loaded (nixrun's own has a few dozen
/// instructions, systemd's and crun's grow by about five per rule).
pub const GUEST_PROGRAM_MAX: usize = 4096;

/// What a register holds on the way to an instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Val {
    /// Not written on some way here.
    Unset,
    /// The context pointer (r1 at entry).
    Ctx,
    /// A number computed from constants and context fields.
    Scalar,
    /// Different things on different ways here.
    Mixed,
}

fn join(a: Val, b: Val) -> Val {
    if a == b {
        a
    } else {
        Val::Mixed
    }
}

/// Whether a guest's device program is one the supervisor may load on its
/// behalf: one that computes its verdict from the access type, major and minor
/// and nothing else. Allowed are loads of context fields through the context
/// pointer, arithmetic and jumps on numbers, 64-bit constants and exit. Refused
/// is everything that could reach other memory or the kernel: helper and
/// function calls, map references, stores and the stack (r10), legacy packet
/// loads, and any arithmetic or comparison on the context pointer (its bits
/// are a kernel address). The check follows every path (with loops), so a
/// register is judged by what it may hold wherever it is used. The kernel's
/// verifier then checks the rest (offsets into the context, termination).
/// The error says which instruction and why, for one line on the host.
pub fn check_guest_program(p: &[Insn]) -> Result<(), String> {
    if p.is_empty() || p.len() > GUEST_PROGRAM_MAX {
        return Err(format!(
            "{} instructions (1 to {GUEST_PROGRAM_MAX} are loaded)",
            p.len()
        ));
    }
    let mut entry = [Val::Unset; 11];
    entry[1] = Val::Ctx;
    let mut seen: Vec<Option<[Val; 11]>> = vec![None; p.len()];
    let mut work = vec![(0usize, entry)];
    while let Some((pc, regs_in)) = work.pop() {
        let regs = match seen[pc] {
            Some(old) => {
                let mut merged = old;
                for r in 0..11 {
                    merged[r] = join(old[r], regs_in[r]);
                }
                if merged == old {
                    continue;
                }
                merged
            }
            None => regs_in,
        };
        seen[pc] = Some(regs);
        for (next, out) in step(p, pc, regs)? {
            if next >= p.len() {
                return Err(format!("insn {pc}: jumps out of the program"));
            }
            work.push((next, out));
        }
    }
    Ok(())
}

/// One instruction: the states it passes on, with their instruction indices.
fn step(p: &[Insn], pc: usize, mut regs: [Val; 11]) -> Result<Vec<(usize, [Val; 11])>, String> {
    let i = p[pc];
    let (code, dst, src) = (i.code, i.dst(), i.src());
    let fail = |why: &str| Err(format!("insn {pc} (opcode {code:#04x}): {why}"));
    if dst == 10 || src == 10 {
        return fail("uses the stack (r10)");
    }
    if dst > 10 || src > 10 {
        return fail("names a register that does not exist");
    }
    let scalar = |regs: &[Val; 11], r: usize| regs[r] == Val::Scalar;
    const LD: u8 = 0x00;
    const LDX: u8 = 0x01;
    const ALU: u8 = 0x04;
    const JMP: u8 = 0x05;
    const JMP32: u8 = 0x06;
    const ALU64: u8 = 0x07;
    const X: u8 = 0x08;
    match code & 0x07 {
        LD => {
            // BPF_LD | BPF_DW | BPF_IMM with src 0: a plain 64-bit constant
            // (other src values are map, BTF and function references).
            if code != 0x18 || src != 0 {
                return fail("a load other than a 64-bit constant (map reference or packet load)");
            }
            let Some(second) = p.get(pc + 1) else {
                return fail("a 64-bit constant cut off at the end");
            };
            if second.code != 0 || second.regs != 0 || second.off != 0 {
                return fail("a malformed 64-bit constant");
            }
            regs[dst] = Val::Scalar;
            Ok(vec![(pc + 2, regs)])
        }
        LDX => {
            // BPF_MEM and BPF_MEMSX loads, any size, from the context only.
            let mode = code & 0xe0;
            if mode != 0x60 && mode != 0x80 {
                return fail("a load that is not a plain memory load");
            }
            if regs[src] != Val::Ctx {
                return fail("loads through something other than the context pointer");
            }
            regs[dst] = Val::Scalar;
            Ok(vec![(pc + 1, regs)])
        }
        ALU | ALU64 => {
            let op = code & 0xf0;
            let by_reg = code & X != 0;
            const MOV: u8 = 0xb0;
            const NEG: u8 = 0x80;
            const END: u8 = 0xd0;
            if by_reg && !scalar(&regs, src) {
                return fail("computes with the context pointer or an unset register");
            }
            if op != MOV && !scalar(&regs, dst) {
                return fail("computes with the context pointer or an unset register");
            }
            if op > END || (op == NEG && by_reg) {
                return fail("an unknown arithmetic operation");
            }
            regs[dst] = Val::Scalar;
            Ok(vec![(pc + 1, regs)])
        }
        JMP | JMP32 => {
            let op = code & 0xf0;
            const JA: u8 = 0x00;
            const CALL: u8 = 0x80;
            const EXIT: u8 = 0x90;
            let target = |off: i16| -> Result<usize, String> {
                let t = pc as i64 + 1 + i64::from(off);
                usize::try_from(t).map_err(|_| format!("insn {pc}: jumps before the program"))
            };
            match op {
                CALL => fail("calls a helper or function"),
                EXIT if code == 0x95 => {
                    if !scalar(&regs, 0) {
                        return fail("exits with r0 not a number");
                    }
                    Ok(vec![])
                }
                EXIT => fail("an unknown jump"),
                JA if code == 0x05 => Ok(vec![(target(i.off)?, regs)]),
                JA => fail("a long jump"),
                _ if op <= 0xd0 => {
                    if !scalar(&regs, dst) || (code & X != 0 && !scalar(&regs, src)) {
                        return fail("compares the context pointer or an unset register");
                    }
                    Ok(vec![(pc + 1, regs), (target(i.off)?, regs)])
                }
                _ => fail("an unknown jump"),
            }
        }
        _ => fail("a store (ST/STX)"),
    }
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

    fn i(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn::new(code, dst, src, off, imm)
    }

    #[test]
    fn guest_programs_that_only_look_at_the_device_are_loaded() {
        // nixrun's own (what a nested nixrun sends).
        check_guest_program(&program(DEFAULT)).unwrap();
        // systemd's and crun's shape: r1 reused as a scratch register once the
        // context fields are loaded; register-to-register compare.
        let crun_like = [
            i(LDX_W, 2, 1, 0, 0),
            i(AND_K, 2, 0, 0, 0xffff),
            i(LDX_W, 3, 1, 0, 0),
            i(0x74, 3, 0, 0, 16), // rsh32 r3, 16
            i(LDX_W, 4, 1, 4, 0),
            i(LDX_W, 5, 1, 8, 0),
            i(JNE_K, 2, 0, 6, 2),
            i(0xbc, 1, 3, 0, 0), // mov32 r1, r3
            i(AND_K, 1, 0, 0, 3),
            i(0x5d, 1, 3, 3, 0), // jne r1, r3
            i(JNE_K, 4, 0, 2, 1),
            i(MOV64_K, 0, 0, 0, 1),
            i(EXIT, 0, 0, 0, 0),
            i(MOV64_K, 0, 0, 0, 0),
            i(EXIT, 0, 0, 0, 0),
        ];
        check_guest_program(&crun_like).unwrap();
        // systemd's trivial probe program; a 64-bit constant.
        check_guest_program(&[i(MOV64_K, 0, 0, 0, 1), i(EXIT, 0, 0, 0, 0)]).unwrap();
        check_guest_program(&[i(0x18, 0, 0, 0, 1), i(0, 0, 0, 0, 0), i(EXIT, 0, 0, 0, 0)]).unwrap();
    }

    #[test]
    fn guest_programs_that_reach_further_are_refused() {
        let refused = |p: &[Insn], why: &str| {
            let e = check_guest_program(p).unwrap_err();
            assert!(e.contains(why), "{e}");
        };
        let exit = i(EXIT, 0, 0, 0, 0);
        let r0 = i(MOV64_K, 0, 0, 0, 1);
        // bpf_probe_read_kernel (helper 113): reads any kernel address.
        refused(&[i(0x85, 0, 0, 0, 113), r0, exit], "calls");
        // A map reference.
        refused(&[i(0x18, 1, 1, 0, 3), i(0, 0, 0, 0, 0), r0, exit], "map");
        // The stack, written or read.
        refused(&[i(0x7b, 10, 1, -8, 0), r0, exit], "stack");
        refused(&[i(0x79, 0, 10, -8, 0), exit], "stack");
        // The context pointer's bits as a number, or in a comparison.
        refused(&[i(0xbf, 0, 1, 0, 0), exit], "computes");
        refused(&[i(0x77, 1, 0, 0, 3), r0, exit], "computes");
        refused(&[i(0x15, 1, 0, 0, 0), r0, exit], "compares");
        refused(&[i(EXIT, 0, 0, 0, 0)], "r0");
        // A load through a register that is the context on only one path.
        let mixed = [
            i(LDX_W, 2, 1, 0, 0),
            i(JNE_K, 2, 0, 1, 2),
            i(MOV64_K, 1, 0, 0, 7),
            i(LDX_W, 3, 1, 4, 0),
            r0,
            exit,
        ];
        refused(&mixed, "other than the context");
        // Stores, packet loads, jumps out.
        refused(&[i(0x62, 1, 0, 0, 0), r0, exit], "store");
        refused(&[i(0x20, 0, 0, 0, 0), exit], "load other");
        refused(&[r0, i(0x05, 0, 0, 5, 0), exit], "out of the program");
        refused(&[r0, i(0x05, 0, 0, -3, 0), exit], "before the program");
        refused(&[], "instructions");
        refused(&vec![r0; GUEST_PROGRAM_MAX + 1], "instructions");
        // A loop is followed to its fixed point, not refused for being one.
        let looping = [
            i(MOV64_K, 2, 0, 0, 0),
            i(0x07, 2, 0, 0, 1),   // add r2, 1
            i(0xa5, 2, 0, -2, 10), // jlt r2, 10, back
            r0,
            exit,
        ];
        check_guest_program(&looping).unwrap();
    }

    #[test]
    fn v1_syntax() {
        assert_eq!(v1_line(&DEFAULT[2]), "c 1:3 rwm");
        assert_eq!(v1_line(&DEFAULT[1]), "b 0:0 rwm");
        assert_eq!(v1_line(DEFAULT.last().unwrap()), "c 136:* rwm");
    }
}
