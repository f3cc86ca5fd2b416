//! One integration-test binary: real HTTP on loopback both ways, sled on temp dirs, and the
//! real `hookflow` binary where a process boundary matters.

mod backup;
mod build;
mod bad_input;
mod cli;
mod client;
mod cluster;
mod contain;
mod corpus;
mod crash;
mod dashboard;
mod deploy;
mod drills;
mod e2e;
mod edge;
mod email;
mod examples;
mod helpers;
mod holes;
mod leases;
mod ordering;
mod overview;
mod pg;
mod props;
mod protect;
mod reload;
mod replay;
mod retries;
mod schedule;
mod schema;
mod security;
mod segments;
mod sequences;
mod store_suite;
mod strict;
mod upgrade;
