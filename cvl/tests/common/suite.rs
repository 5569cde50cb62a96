//! The paper's six-appliance suite published into local repositories, and
//! `cvl` run on it with its own utility home: shared by the tests of
//! `cvl plan` and of sensitive values.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cvl_planner::plan::Plan;
use cvl_planner::record;
use cvl_state::Store;

pub const SECRETS: [(&str, &str); 4] = [
    ("CVL_SECRET_ACMESUITE_ROOTPW", "canary-root-Zq81"),
    ("CVL_SECRET_ACMESUITE_ROOTDNPASS", "canary-dn-Zq82"),
    ("CVL_SECRET_ACMESUITE_PROXYPW", "canary-proxy-Zq83"),
    ("CVL_SECRET_ACMESUITE_SMTPPW", "canary-smtp-Zq84"),
];

pub struct Suite {
    _tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub rootpw: String,
    /// Whether `cvl` gets the secrets from the environment.
    pub env_secrets: bool,
    /// More environment for `cvl`.
    pub env: Vec<(String, String)>,
}

impl Suite {
    pub fn new() -> Suite {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().canonicalize().unwrap();
        let ex = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/groupware/suite");
        let suite = Suite {
            _tmp: tmp,
            dir,
            rootpw: SECRETS[0].1.to_string(),
            env_secrets: true,
            env: Vec::new(),
        };
        for name in [
            "Firewall",
            "DHCP",
            "DNS",
            "LDAP",
            "Mail",
            "Plone",
            "GroupwareSuite",
        ] {
            suite.publish(name, &ex.join(format!("{name}.cvl")));
        }
        std::fs::copy(ex.join("AcmeSuite.cvl"), suite.dir.join("AcmeSuite.cvl")).unwrap();
        suite
    }

    pub fn mirror(&self) -> String {
        format!(
            "http://virtualappliance.org/=file://{}/repos/",
            self.dir.display()
        )
    }

    pub fn publish(&self, name: &str, file: &Path) {
        let repo = format!("repos/{name}");
        if !self.dir.join(&repo).exists() {
            super::ok_in(&self.dir, "home", &["repo", "create", &repo]);
        }
        let staged = super::stage(&self.dir, name, file, 4);
        super::ok_in(
            &self.dir,
            "home",
            &[
                "publish",
                "--mirror",
                &self.mirror(),
                &repo,
                staged.to_str().unwrap(),
            ],
        );
    }

    pub fn cvl(&self, args: &[&str]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cvl"));
        command
            .args(args)
            .current_dir(&self.dir)
            .env_remove("CVL_MIRRORS")
            .env("CVL_HOME", self.dir.join("home"));
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        for (k, v) in SECRETS.into_iter().filter(|_| self.env_secrets) {
            command.env(
                k,
                if k.ends_with("_ROOTPW") {
                    self.rootpw.as_str()
                } else {
                    v
                },
            );
        }
        command.output().unwrap()
    }

    /// `cvl plan --format json --out plan.json`: the plan, checked to be
    /// the same in stdout and the saved file.
    pub fn plan(&self, extra: &[&str]) -> Plan {
        let mirror = self.mirror();
        let mut args = vec![
            "plan",
            "--mirror",
            &mirror,
            "AcmeSuite.cvl",
            "--format",
            "json",
            "--out",
            "plan.json",
            // The state is recorded as applied with no QEMU behind it.
            "--no-refresh",
        ];
        args.extend_from_slice(extra);
        let out = self.cvl(&args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let printed: Plan = serde_json::from_slice(&out.stdout).unwrap();
        let saved: Plan =
            serde_json::from_slice(&std::fs::read(self.dir.join("plan.json")).unwrap()).unwrap();
        assert_eq!(printed, saved);
        printed
    }

    /// Records every action as done, as the executor will.
    pub fn record_applied(&self, plan: &Plan) {
        let mut store = Store::open(&self.dir.join("home/state.db")).unwrap();
        let state = store.load().unwrap();
        plan.check_fresh(&cvl_planner::plan::Basis {
            lineage: state.lineage.clone(),
            serial: state.serial,
            inputs_digest: plan.basis.inputs_digest.clone(),
        })
        .expect("the plan is fresh");
        for action in &plan.actions {
            store.commit(&record::intent(plan, action)).unwrap();
            store.commit(&record::applied(plan, action)).unwrap();
        }
        let now = store.load().unwrap();
        store
            .commit(&record::finished(
                plan,
                now.deployments.get(&plan.deployment),
            ))
            .unwrap();
    }

    pub fn update_lock(&self) {
        super::ok_in(
            &self.dir,
            "home",
            &["update-lock", "--mirror", &self.mirror(), "AcmeSuite.cvl"],
        );
    }
}

pub fn actions(plan: &Plan) -> Vec<(&'static str, &str)> {
    plan.actions
        .iter()
        .map(|a| (a.action.as_str(), a.component.0.as_str()))
        .collect()
}

pub fn assert_no_secret(bytes: &[u8], what: &str) {
    for (_, secret) in SECRETS {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{what} holds a secret in plaintext"
        );
    }
}
