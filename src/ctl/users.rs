//! The guest's accounts, for `shell`: its /etc/passwd and /etc/group, parsed
//! here because nixrunctl is a static binary without NSS (and the host's NSS
//! would answer for the host anyway). The files are the guest's, so they are
//! read as untrusted text: malformed lines are skipped, never trusted.

/// One /etc/passwd entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
}

fn parse_passwd_line(line: &str) -> Option<Account> {
    // NIS compat lines (+name, -name) name no local account.
    if line.starts_with(['#', '+', '-']) {
        return None;
    }
    let f: Vec<&str> = line.split(':').collect();
    if f.len() != 7 || f[0].is_empty() {
        return None;
    }
    Some(Account {
        name: f[0].to_string(),
        uid: f[2].parse().ok()?,
        gid: f[3].parse().ok()?,
        home: f[5].to_string(),
        shell: f[6].to_string(),
    })
}

/// The account named `who` or, when `who` is a number no account is named,
/// the first with that uid (as getpwnam and then getpwuid would).
pub fn find_account(passwd: &str, who: &str) -> Option<Account> {
    let accounts: Vec<Account> = passwd.lines().filter_map(parse_passwd_line).collect();
    if let Some(a) = accounts.iter().find(|a| a.name == who) {
        return Some(a.clone());
    }
    let uid: u32 = who.parse().ok()?;
    accounts.into_iter().find(|a| a.uid == uid)
}

/// The account's groups: its primary group, then every group of /etc/group
/// that lists it as a member, each once.
pub fn groups_of(group: &str, account: &Account) -> Vec<u32> {
    let mut out = vec![account.gid];
    for line in group.lines().filter(|l| !l.starts_with(['#', '+', '-'])) {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() != 4 {
            continue;
        }
        let Ok(gid) = f[2].parse::<u32>() else {
            continue;
        };
        if f[3].split(',').any(|m| m.trim() == account.name) && !out.contains(&gid) {
            out.push(gid);
        }
    }
    out
}

/// The login shell to run: the account's, or /bin/sh when it names none.
pub fn login_shell(account: &Account) -> &str {
    if account.shell.is_empty() {
        "/bin/sh"
    } else {
        &account.shell
    }
}

/// argv[0] of a login shell: its name after a dash ("-bash"), which tells it
/// to read the login profile.
pub fn login_argv0(shell: &str) -> String {
    format!("-{}", shell.rsplit('/').next().unwrap_or(shell))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
# a comment
+nisuser::::::
broken:x:notanumber:1::/:/bin/sh
short:x:5
alice:x:1000:100:Alice,,,:/home/alice:/run/current-system/sw/bin/zsh
nobody:x:65534:65534:nobody:/nonexistent:
1001:x:1002:100::/home/numeric:/bin/sh
";
    const GROUP: &str = "\
root:x:0:
users:x:100:
wheel:x:1:alice,bob
audio:x:29:bob, alice
video:x:44:alicex
bad:x:nan:alice
users2:x:100:alice
";

    #[test]
    fn accounts() {
        let root = find_account(PASSWD, "root").unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert_eq!(
            (root.home.as_str(), root.shell.as_str()),
            ("/root", "/bin/bash")
        );
        let alice = find_account(PASSWD, "alice").unwrap();
        assert_eq!(alice.uid, 1000);
        assert_eq!(alice.home, "/home/alice");
        assert_eq!(find_account(PASSWD, "1000").unwrap().name, "alice");
        // A name wins over a uid.
        assert_eq!(find_account(PASSWD, "1001").unwrap().uid, 1002);
        for missing in ["bob", "broken", "short", "+nisuser", "nisuser", "", "99"] {
            assert_eq!(find_account(PASSWD, missing), None, "{missing}");
        }
        let nobody = find_account(PASSWD, "nobody").unwrap();
        assert_eq!(login_shell(&nobody), "/bin/sh");
        assert_eq!(login_shell(&alice), "/run/current-system/sw/bin/zsh");
        assert_eq!(login_argv0(login_shell(&alice)), "-zsh");
        assert_eq!(login_argv0("sh"), "-sh");
    }

    #[test]
    fn groups() {
        let alice = find_account(PASSWD, "alice").unwrap();
        // primary first; members matched exactly; a gid listed twice once.
        assert_eq!(groups_of(GROUP, &alice), vec![100, 1, 29]);
        let root = find_account(PASSWD, "root").unwrap();
        assert_eq!(groups_of(GROUP, &root), vec![0]);
    }
}
