//! Integration tests: the sandbox served over loopback on port-0 listeners, driven with
//! reqwest. One test binary (modules below) keeps linking cheap.

mod cli;
mod common;
mod concurrency;
mod fault_admin;
mod faults;
mod idempotency_key;
mod inventory;
mod ledger;
mod lifecycle;
mod payment;
mod requests;
mod shipping;
