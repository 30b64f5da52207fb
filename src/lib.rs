//! imapshift: moves every mailbox of a domain from an old IMAP server to a new one, with no mail
//! lost and the shortest possible downtime.
//!
//! Layers, top down: [`cli`] (clap) parses and validates; [`runner`] runs users in parallel and
//! reconnects; [`engine`] executes what [`plan`] decides, journaling in [`state`] (sled) before
//! each side effect; [`store`] is the boundary to a mail server, implemented over IMAP in
//! [`imap`] (async-imap plus a raw command layer). See docs/architecture.md.

pub mod cli;
pub mod config;
pub mod cutover;
pub mod dns;
pub mod engine;
pub mod error;
pub mod failpoint;
pub mod filters;
pub mod fingerprint;
pub mod folder_map;
pub mod folders;
pub mod imap;
pub mod mutf7;
pub mod mx;
pub mod plan;
pub mod preflight;
pub mod progress;
pub mod ratelimit;
pub mod report_html;
pub mod runner;
pub mod secret;
pub mod state;
pub mod store;
pub mod timefmt;
pub mod types;
pub mod verify;
