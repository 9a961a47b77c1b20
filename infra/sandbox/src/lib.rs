//! Stand-ins for the systems around the bridge, as strict as the real ones: DingTalk OA
//! (`fake_dingtalk`), a company BPM speaking SPEC 9 (`fake_bpm`) and Dataphin (`fake_dataphin`).
//! The end-to-end tests start them on 127.0.0.1; `bridge sandbox` serves them for `make dev`.

pub mod fake_bpm;
pub mod fake_dataphin;
pub mod fake_dingtalk;
