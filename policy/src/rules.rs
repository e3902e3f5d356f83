//! Rules: which groups may reach which targets, as which logins, doing what,
//! for how long. The configuration file builds these (`[[rules]]`, and the
//! shorthand `groups` on a target); this module only describes and matches.

use std::fmt;
use std::time::Duration;

use crate::{Destination, Identity, Selector, Target};

/// What a session channel may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// An interactive shell.
    Shell,
    /// Any command (`ssh node CMD`); includes scp and rsync.
    Exec,
    /// The sftp subsystem (also what modern `scp` uses).
    Sftp,
    /// Legacy `scp -O` (`scp -t` / `scp -f` on the node), without other commands.
    Scp,
    /// `rsync --server`, without other commands.
    Rsync,
}

impl Kind {
    pub const ALL: [Kind; 5] = [Kind::Shell, Kind::Exec, Kind::Sftp, Kind::Scp, Kind::Rsync];

    pub fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "shell" => Kind::Shell,
            "exec" => Kind::Exec,
            "sftp" => Kind::Sftp,
            "scp" => Kind::Scp,
            "rsync" => Kind::Rsync,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Shell => "shell",
            Kind::Exec => "exec",
            Kind::Sftp => "sftp",
            Kind::Scp => "scp",
            Kind::Rsync => "rsync",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One grant of access.
#[derive(Debug, Clone)]
pub struct Rule {
    /// How explanations and `config check` name the rule, e.g.
    /// `rules[2] "ops-workers"` or `targets[0] "node-1"`.
    pub name: String,
    /// Directory groups (CN or DN) whose members the rule is for; `*`: any
    /// proven user.
    pub groups: Vec<String>,
    /// The targets it is about (any selector may match).
    pub targets: Vec<Selector>,
    /// Logins it allows; `*`: every login the target lists.
    pub logins: Vec<String>,
    /// What channels may do.
    pub allow: Vec<Kind>,
    /// `-L` / `-D` destinations (reached from the node), on targets that allow local forwarding.
    pub local_forward: Vec<Destination>,
    /// `-R` listen addresses on the node, on targets that allow remote forwarding.
    pub remote_forward: Vec<Destination>,
    /// Session length limit, if tighter than the server's.
    pub max_session: Option<Duration>,
    /// Idle limit, if tighter than the server's.
    pub idle_timeout: Option<Duration>,
    /// Record keystrokes (input) too, not only output.
    pub record_input: bool,
}

impl Rule {
    /// A rule that allows the default channel kinds and nothing else.
    pub fn new(name: impl Into<String>, groups: Vec<String>, targets: Vec<Selector>, logins: Vec<String>) -> Rule {
        Rule {
            name: name.into(),
            groups,
            targets,
            logins,
            allow: Kind::ALL.to_vec(),
            local_forward: vec![],
            remote_forward: vec![],
            max_session: None,
            idle_timeout: None,
            record_input: false,
        }
    }

    /// Whether the rule is for this user (by group).
    pub fn covers_identity(&self, who: &Identity<'_>) -> bool {
        self.groups.iter().any(|g| g == "*" || who.in_group(g))
    }

    /// Whether the rule selects this target.
    pub fn selects(&self, target: &Target<'_>) -> bool {
        self.targets.iter().any(|s| s.matches(target))
    }

    /// Whether the rule allows this login on this target.
    pub fn allows_login(&self, target: &Target<'_>, login: &str) -> bool {
        target.logins.iter().any(|l| l == login) && self.logins.iter().any(|l| l == "*" || l == login)
    }

    pub fn groups_text(&self) -> String {
        self.groups.join(", ")
    }
}
