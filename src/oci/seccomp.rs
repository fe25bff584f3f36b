//! The runtime-spec's seccomp profile (`linux.seccomp`), compiled to one
//! classic-BPF program: a default action and per-call actions with argument
//! conditions, as libseccomp reads the same JSON.
//!
//! This is the engine's profile, not nixrun's own deny table (policy/seccomp.rs):
//! an OCI caller decides its container's system calls. seccompiler is not
//! used here because it has one match action per filter; a profile has one
//! per rule, and stacking filters would change which action wins.
//!
//! Only x86_64 numbers are matched: calls through another ABI (i386, x32)
//! meet the default action, whatever the profile's `architectures` list.

use crate::sys::seccomp::Insn;
use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator};
use std::str::FromStr;

const LD_W_ABS: u16 = 0x20;
const JEQ: u16 = 0x15;
const JGT: u16 = 0x25;
const JGE: u16 = 0x35;
const JSET: u16 = 0x45;
const AND_K: u16 = 0x54;
const RET_K: u16 = 0x06;

const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const X32_BIT: u32 = 0x4000_0000;

const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_KILL_THREAD: u32 = 0;
const RET_TRAP: u32 = 0x0003_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_TRACE: u32 = 0x7ff0_0000;
const RET_LOG: u32 = 0x7ffc_0000;
const RET_ALLOW: u32 = 0x7fff_0000;

/// Where a jump goes: n instructions ahead, or out of the rule (its
/// conditions failed).
#[derive(Clone, Copy)]
enum To {
    Ahead(u8),
    Fail,
}

struct Block {
    code: Vec<(u16, To, To, u32)>,
}

impl Block {
    fn ld(&mut self, off: u32) {
        self.code.push((LD_W_ABS, To::Ahead(0), To::Ahead(0), off));
    }
    fn op(&mut self, code: u16, k: u32) {
        self.code.push((code, To::Ahead(0), To::Ahead(0), k));
    }
    fn jmp(&mut self, code: u16, k: u32, jt: To, jf: To) {
        self.code.push((code, jt, jf, k));
    }

    fn finish(self) -> Result<Vec<Insn>, String> {
        let n = self.code.len();
        self.code
            .into_iter()
            .enumerate()
            .map(|(i, (code, jt, jf, k))| {
                let t = |to: To| match to {
                    To::Ahead(a) => Ok(a),
                    // Past the return that follows the block: the next rule.
                    To::Fail => {
                        u8::try_from(n - i).map_err(|_| "seccomp rule too long".to_string())
                    }
                };
                Ok(Insn {
                    code,
                    jt: t(jt)?,
                    jf: t(jf)?,
                    k,
                })
            })
            .collect()
    }
}

fn action(a: LinuxSeccompAction, errno: Option<u32>) -> Result<u32, String> {
    Ok(match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => RET_KILL_THREAD,
        LinuxSeccompAction::ScmpActKillProcess => RET_KILL_PROCESS,
        LinuxSeccompAction::ScmpActTrap => RET_TRAP,
        LinuxSeccompAction::ScmpActErrno => {
            RET_ERRNO | (errno.unwrap_or(libc::EPERM as u32) & 0xffff)
        }
        LinuxSeccompAction::ScmpActTrace => {
            RET_TRACE | (errno.unwrap_or(libc::EPERM as u32) & 0xffff)
        }
        LinuxSeccompAction::ScmpActLog => RET_LOG,
        LinuxSeccompAction::ScmpActAllow => RET_ALLOW,
        LinuxSeccompAction::ScmpActNotify => {
            return Err(
                "seccomp action SCMP_ACT_NOTIFY is not supported (no listener is passed on)".into(),
            )
        }
    })
}

fn ret(k: u32) -> Insn {
    Insn {
        code: RET_K,
        jt: 0,
        jf: 0,
        k,
    }
}

/// The program for a profile. Errors name what cannot be expressed.
pub fn compile(s: &LinuxSeccomp) -> Result<Vec<Insn>, String> {
    if s.listener_path().is_some() {
        return Err("linux.seccomp.listenerPath is not supported".into());
    }
    let default = action(s.default_action(), s.default_errno_ret())?;
    let mut prog = vec![
        Insn {
            code: LD_W_ABS,
            jt: 0,
            jf: 0,
            k: OFF_ARCH,
        },
        Insn {
            code: JEQ,
            jt: 1,
            jf: 0,
            k: AUDIT_ARCH_X86_64,
        },
        ret(default),
        Insn {
            code: LD_W_ABS,
            jt: 0,
            jf: 0,
            k: OFF_NR,
        },
        Insn {
            code: JSET,
            jt: 0,
            jf: 1,
            k: X32_BIT,
        },
        ret(default),
    ];
    for rule in s.syscalls().iter().flatten() {
        let act = action(rule.action(), rule.errno_ret())?;
        if act == default && rule.args().as_ref().map_or(true, |a| a.is_empty()) {
            continue;
        }
        for name in rule.names() {
            // Calls this architecture does not have are left out, as libseccomp does.
            let Ok(nr) = syscalls::Sysno::from_str(name) else {
                continue;
            };
            let mut b = Block { code: vec![] };
            b.ld(OFF_NR);
            b.jmp(JEQ, nr.id() as u32, To::Ahead(0), To::Fail);
            for a in rule.args().iter().flatten() {
                if a.index() > 5 {
                    return Err(format!(
                        "seccomp: {name}: argument index {} out of range",
                        a.index()
                    ));
                }
                let lo = 16 + 8 * a.index() as u32;
                let hi = lo + 4;
                let v = a.value();
                let (vhi, vlo) = ((v >> 32) as u32, v as u32);
                match a.op() {
                    LinuxSeccompOperator::ScmpCmpEq => {
                        b.ld(hi);
                        b.jmp(JEQ, vhi, To::Ahead(0), To::Fail);
                        b.ld(lo);
                        b.jmp(JEQ, vlo, To::Ahead(0), To::Fail);
                    }
                    LinuxSeccompOperator::ScmpCmpNe => {
                        b.ld(hi);
                        b.jmp(JEQ, vhi, To::Ahead(0), To::Ahead(2));
                        b.ld(lo);
                        b.jmp(JEQ, vlo, To::Fail, To::Ahead(0));
                    }
                    LinuxSeccompOperator::ScmpCmpMaskedEq => {
                        let d = a.value_two().unwrap_or(0);
                        let (dhi, dlo) = ((d >> 32) as u32, d as u32);
                        b.ld(hi);
                        b.op(AND_K, vhi);
                        b.jmp(JEQ, dhi, To::Ahead(0), To::Fail);
                        b.ld(lo);
                        b.op(AND_K, vlo);
                        b.jmp(JEQ, dlo, To::Ahead(0), To::Fail);
                    }
                    op @ (LinuxSeccompOperator::ScmpCmpGt | LinuxSeccompOperator::ScmpCmpGe) => {
                        let last = if op == LinuxSeccompOperator::ScmpCmpGt {
                            JGT
                        } else {
                            JGE
                        };
                        b.ld(hi);
                        b.jmp(JGT, vhi, To::Ahead(3), To::Ahead(0));
                        b.jmp(JEQ, vhi, To::Ahead(0), To::Fail);
                        b.ld(lo);
                        b.jmp(last, vlo, To::Ahead(0), To::Fail);
                    }
                    op @ (LinuxSeccompOperator::ScmpCmpLt | LinuxSeccompOperator::ScmpCmpLe) => {
                        // a < v fails where a >= v; a <= v fails where a > v.
                        let last = if op == LinuxSeccompOperator::ScmpCmpLt {
                            JGE
                        } else {
                            JGT
                        };
                        b.ld(hi);
                        b.jmp(JGE, vhi, To::Ahead(0), To::Ahead(3));
                        b.jmp(JEQ, vhi, To::Ahead(0), To::Fail);
                        b.ld(lo);
                        b.jmp(last, vlo, To::Fail, To::Ahead(0));
                    }
                }
            }
            let mut insns = b.finish()?;
            insns.push(ret(act));
            prog.extend(insns);
        }
    }
    prog.push(ret(default));
    if prog.len() > 4096 {
        return Err(format!(
            "seccomp profile too large: {} instructions",
            prog.len()
        ));
    }
    Ok(prog)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A classic-BPF interpreter for the instructions compile() emits.
    fn run(prog: &[Insn], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_le_bytes());
        data[4..8].copy_from_slice(&arch.to_le_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
        }
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let i = prog[pc];
            pc += 1;
            match i.code {
                LD_W_ABS => {
                    let k = i.k as usize;
                    acc = u32::from_le_bytes(data[k..k + 4].try_into().unwrap());
                }
                AND_K => acc &= i.k,
                RET_K => return i.k,
                JEQ | JGT | JGE | JSET => {
                    let c = match i.code {
                        JEQ => acc == i.k,
                        JGT => acc > i.k,
                        JGE => acc >= i.k,
                        _ => acc & i.k != 0,
                    };
                    pc += if c { i.jt } else { i.jf } as usize;
                }
                c => panic!("unknown instruction {c:#x}"),
            }
        }
    }

    fn profile(json: &str) -> Vec<Insn> {
        compile(&serde_json::from_str(json).unwrap()).unwrap()
    }

    const X: u32 = AUDIT_ARCH_X86_64;

    #[test]
    fn default_and_per_call_actions() {
        let p = profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
                {"names":["getcwd","nosuchcall"],"action":"SCMP_ACT_ERRNO"},
                {"names":["chmod"],"action":"SCMP_ACT_ERRNO","errnoRet":38}]}"#,
        );
        let getcwd = syscalls::Sysno::getcwd.id() as u32;
        let chmod = syscalls::Sysno::chmod.id() as u32;
        let read = syscalls::Sysno::read.id() as u32;
        assert_eq!(run(&p, X, getcwd, [0; 6]), RET_ERRNO | libc::EPERM as u32);
        assert_eq!(run(&p, X, chmod, [0; 6]), RET_ERRNO | 38);
        assert_eq!(run(&p, X, read, [0; 6]), RET_ALLOW);
        // Another ABI meets the default action.
        assert_eq!(run(&p, 0x4000_0003, getcwd, [0; 6]), RET_ALLOW);
        assert_eq!(run(&p, X, getcwd | X32_BIT, [0; 6]), RET_ALLOW);
    }

    #[test]
    fn argument_conditions() {
        let p = profile(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
                {"names":["personality"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":8,"op":"SCMP_CMP_EQ"}]},
                {"names":["clone"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":2114060288,"valueTwo":0,"op":"SCMP_CMP_MASKED_EQ"}]},
                {"names":["kill"],"action":"SCMP_ACT_ALLOW","args":[{"index":1,"value":4294967296,"op":"SCMP_CMP_GT"}]},
                {"names":["tkill"],"action":"SCMP_ACT_ALLOW","args":[{"index":1,"value":10,"op":"SCMP_CMP_LE"}]},
                {"names":["write"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":2,"op":"SCMP_CMP_NE"}]}]}"#,
        );
        let n = |s: syscalls::Sysno| s.id() as u32;
        let eperm = RET_ERRNO | libc::EPERM as u32;
        let pers = n(syscalls::Sysno::personality);
        assert_eq!(run(&p, X, pers, [8, 0, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(run(&p, X, pers, [9, 0, 0, 0, 0, 0]), eperm);
        assert_eq!(run(&p, X, pers, [8 | 1 << 32, 0, 0, 0, 0, 0]), eperm);
        let clone = n(syscalls::Sysno::clone);
        assert_eq!(
            run(&p, X, clone, [libc::SIGCHLD as u64, 0, 0, 0, 0, 0]),
            RET_ALLOW
        );
        assert_eq!(
            run(&p, X, clone, [libc::CLONE_NEWNS as u64, 0, 0, 0, 0, 0]),
            eperm
        );
        let kill = n(syscalls::Sysno::kill);
        assert_eq!(run(&p, X, kill, [0, 1 << 32, 0, 0, 0, 0]), eperm);
        assert_eq!(run(&p, X, kill, [0, (1 << 32) + 1, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(run(&p, X, kill, [0, 2 << 32, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(run(&p, X, kill, [0, 5, 0, 0, 0, 0]), eperm);
        let tkill = n(syscalls::Sysno::tkill);
        assert_eq!(run(&p, X, tkill, [0, 10, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(run(&p, X, tkill, [0, 11, 0, 0, 0, 0]), eperm);
        assert_eq!(run(&p, X, tkill, [0, 1 << 32, 0, 0, 0, 0]), eperm);
        let write = n(syscalls::Sysno::write);
        assert_eq!(run(&p, X, write, [1, 0, 0, 0, 0, 0]), RET_ALLOW);
        assert_eq!(run(&p, X, write, [2, 0, 0, 0, 0, 0]), eperm);
        assert_eq!(run(&p, X, write, [2 | 1 << 32, 0, 0, 0, 0, 0]), RET_ALLOW);
    }

    #[test]
    fn notify_is_refused() {
        let s = serde_json::from_str(r#"{"defaultAction":"SCMP_ACT_NOTIFY"}"#).unwrap();
        assert!(compile(&s).is_err());
    }
}
