//! bastion: an SSH jump host.
//!
//! Engineers connect with stock OpenSSH (`ssh -J`, scp, sftp, rsync,
//! forwards); the bastion terminates their connection, proves who they are,
//! decides what they may reach (`policy` crate), logs in to the node with a
//! short-lived certificate and relays every channel through the recording
//! seam (`recorder` crate). See `docs/ARCHITECTURE.md` for the map.

pub mod admin;
pub mod alerts;
pub mod audit;
pub mod auth;
pub mod breakglass;
pub mod ca;
pub mod cli;
pub mod commands;
pub mod config;
pub mod demo;
pub mod directory;
pub mod factors;
pub mod kube;
pub mod proxy;
pub mod recording;
pub mod server;
pub mod sessions;
pub mod state;
