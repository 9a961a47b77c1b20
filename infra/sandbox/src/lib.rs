//! Stand-ins for the systems around the bridge, as strict as the real ones: DingTalk OA
//! (`fake_dingtalk`), a company BPM speaking SPEC 9 (`fake_bpm`) and Dataphin (`fake_dataphin`).
//! The end-to-end tests start them on 127.0.0.1; `bridge sandbox` (`server`) serves them on one
//! port with a page and a JSON API (SPEC 11) for people and scripts to act as those systems.
//! `gateway` stands in for API Gateway in front of `cargo lambda watch` (`make dev`).

pub mod bpm;
pub mod config;
pub mod fake_bpm;
pub mod fake_dataphin;
pub mod fake_dingtalk;
pub mod gateway;
pub mod scenarios;
pub mod server;
pub mod streams;
