//! The agent through its socket, in this process: values set, got, kept
//! in the vault across agents, locked, forgotten after the lifetime; the
//! client's refusals.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use cvl_secrets::agent::{Agent, Config};
use cvl_secrets::client::Client;
use cvl_secrets::protocol::{Request, Secret};
use cvl_secrets::vault::Cost;
use cvl_secrets::Error;

fn start(dir: &Path, lifetime: Duration) -> std::thread::JoinHandle<()> {
    let agent = Agent::bind(Config {
        socket: dir.join("run/agent.sock"),
        vault: dir.join("vault"),
        lifetime,
        cost: Cost {
            m_kib: 64,
            t: 1,
            p: 1,
        },
        memory_locked: false,
    })
    .unwrap();
    std::thread::spawn(move || agent.serve().unwrap())
}

fn s(v: &str) -> Secret {
    Secret::new(v.to_string())
}

fn client(dir: &Path) -> Client {
    Client::connect(&dir.join("run/agent.sock")).unwrap()
}

#[test]
fn values_are_kept_encrypted_across_agents_and_forgotten_when_locked() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let agent = start(dir, Duration::from_secs(600));
    let mut c = client(dir);
    assert!(c.status().unwrap().locked);
    assert!(matches!(c.get(&["D/a".into()]), Err(Error::Locked(_))));
    let unlock = |c: &mut Client, pw: &str, create| {
        c.call(&Request::Unlock {
            passphrase: s(pw),
            create,
        })
    };
    assert!(matches!(
        unlock(&mut c, "pw", false),
        Err(Error::NoVault(_))
    ));
    unlock(&mut c, "pw", true).unwrap();
    c.call(&Request::Set {
        key: "D/rootpw".into(),
        value: s("Canary-9"),
    })
    .unwrap();
    assert!(matches!(
        c.call(&Request::Set {
            key: "no-slash".into(),
            value: s("x")
        }),
        Err(Error::Io(_))
    ));
    let got = c.get(&["D/rootpw".into(), "D/other".into()]).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got["D/rootpw"].as_str(), "Canary-9");
    let vault = std::fs::read(dir.join("vault")).unwrap();
    assert!(!vault.windows(8).any(|w| w == b"Canary-9"));
    c.call(&Request::Lock).unwrap();
    assert!(matches!(c.get(&["D/rootpw".into()]), Err(Error::Locked(_))));
    assert!(matches!(
        unlock(&mut c, "nope", false),
        Err(Error::WrongPassphrase(_))
    ));
    assert_eq!(
        std::fs::read(dir.join("vault")).unwrap(),
        vault,
        "rewritten"
    );
    c.call(&Request::Stop).unwrap();
    agent.join().unwrap();
    assert!(!dir.join("run/agent.sock").exists());
    assert!(matches!(
        Client::connect(&dir.join("run/agent.sock")),
        Err(Error::NotRunning(_))
    ));

    // A new agent reads the same vault; passwd re-encrypts it.
    let agent = start(dir, Duration::from_secs(600));
    let mut c = client(dir);
    unlock(&mut c, "pw", false).unwrap();
    c.call(&Request::Passwd {
        old: s("pw"),
        new: s("pw2"),
    })
    .unwrap();
    c.call(&Request::Lock).unwrap();
    assert!(matches!(
        unlock(&mut c, "pw", false),
        Err(Error::WrongPassphrase(_))
    ));
    unlock(&mut c, "pw2", false).unwrap();
    assert_eq!(
        c.get(&["D/rootpw".into()]).unwrap()["D/rootpw"].as_str(),
        "Canary-9"
    );
    c.call(&Request::Remove {
        key: "D/rootpw".into(),
    })
    .unwrap();
    assert!(c.get(&["D/rootpw".into()]).unwrap().is_empty());
    c.call(&Request::Stop).unwrap();
    agent.join().unwrap();
}

#[test]
fn values_are_forgotten_after_the_lifetime() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = start(tmp.path(), Duration::from_millis(300));
    let mut c = client(tmp.path());
    c.call(&Request::Unlock {
        passphrase: s("pw"),
        create: true,
    })
    .unwrap();
    assert!(!c.status().unwrap().locked);
    std::thread::sleep(Duration::from_millis(900));
    assert!(c.status().unwrap().locked);
    c.call(&Request::Stop).unwrap();
    agent.join().unwrap();
}

#[test]
fn sockets_and_folders_of_others_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = start(tmp.path(), Duration::from_secs(60));
    let sock = tmp.path().join("run/agent.sock");
    // SAFETY: chown on a path we own; 65534 is nobody.
    let c_path = std::ffi::CString::new(sock.to_str().unwrap()).unwrap();
    let me = unsafe { libc::geteuid() };
    assert_eq!(unsafe { libc::lchown(c_path.as_ptr(), 65534, 65534) }, 0);
    assert!(matches!(Client::connect(&sock), Err(Error::Foreign(_))));
    assert_eq!(unsafe { libc::lchown(c_path.as_ptr(), me, me) }, 0);
    client(tmp.path()).call(&Request::Stop).unwrap();
    agent.join().unwrap();

    // A folder others may enter is not where an agent listens.
    let open = tmp.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
    let refused = Agent::bind(Config {
        socket: open.join("agent.sock"),
        vault: tmp.path().join("vault"),
        lifetime: Duration::from_secs(1),
        cost: Cost::default(),
        memory_locked: false,
    });
    assert!(matches!(refused, Err(Error::Foreign(_))));
}
