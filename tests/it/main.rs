//! One integration-test binary: real HTTP on loopback both ways, sled on temp dirs, and the
//! real `hookflow` binary where a process boundary matters.

// The 120-line bound is for src/ (clippy.toml): a test here is one scenario told top to bottom,
// and cutting it into helpers would hide the steps a reader checks.
#![allow(clippy::too_many_lines)]

mod alerts;
mod backup;
mod bad_input;
mod build;
mod cli;
mod clicks;
mod client;
mod clock;
mod cluster;
mod contain;
mod contract;
mod corpus;
mod crash;
mod dashboard;
mod deploy;
mod docs;
mod drills;
mod e2e;
mod edge;
mod editor;
mod email;
mod examples;
mod helpers;
mod holes;
mod leases;
mod openapi;
mod ordering;
mod overview;
mod partition;
mod pg;
mod props;
mod protect;
mod release;
mod reload;
mod replay;
mod retries;
mod schedule;
mod schema;
mod secrets;
mod security;
mod segments;
mod senders;
mod sequences;
mod store_suite;
mod strict;
mod suppressions;
mod unsubscribe;
mod upgrade;
