//! bastion: an SSH jump host.
//!
//! Engineers connect with stock OpenSSH (`ssh -J`, scp, sftp, rsync,
//! forwards); the bastion terminates their connection, proves who they are,
//! decides what they may reach (`policy` crate), logs in to the node with a
//! short-lived certificate and relays every channel through the recording
//! seam (`recorder` crate). See `docs/ARCHITECTURE.md` for the map.
//!
//! Modules are layered, and a module names only those below it
//! (`scripts/check-layers` enforces it): time, config, factors, ca, audit,
//! directory, state, alerts, recording → context (the shared [`context::Bastion`])
//! → access (decisions at the edges) → auth, proxy, kube, commands → server,
//! web (the browser console, beside the SSH servers) → sessions, admin, run → demo → cli.

pub mod access;
pub mod admin;
pub mod alerts;
pub mod audit;
pub mod auth;
pub mod ca;
pub mod cli;
pub mod commands;
pub mod config;
pub mod console;
pub mod context;
pub mod demo;
pub mod directory;
pub mod factors;
pub mod kube;
pub mod proxy;
pub mod recording;
pub mod run;
pub mod running;
pub mod server;
pub mod sessions;
pub mod state;
pub mod time;
pub mod web;
