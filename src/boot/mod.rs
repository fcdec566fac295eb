//! `stemcell boot`: boots a finished stemcell under QEMU the way its cloud would and proves
//! that the BOSH agent inside comes up. It is a consumer of stemcells: it reads them (through
//! `stemcell::reader`) and nothing earlier in the chain calls it.
//!
//! The pieces, in the order a boot uses them:
//! - [`target`]: what the stemcell is (infrastructure, firmware, disk bus) and which settings
//!   source its `agent.json` names that this tool can serve;
//! - [`disk`]: the stemcell's disk as a raw file, its `agent.json`, the throwaway overlay;
//! - [`credentials`]: the throwaway CA, mbus certificate, passwords and SSH key;
//! - [`settings`]: the settings JSON the agent receives;
//! - [`media`]: the config drive and the vSphere `env` CD-ROM;
//! - [`metadata`]: the HTTP metadata services (CloudStack, AWS IMDSv2, Google);
//! - [`machine`]: the QEMU command line and the running VM;
//! - [`mbus`]: the HTTPS client that pings the agent;
//! - [`session`]: ties them together.

pub mod credentials;
pub mod disk;
pub mod machine;
pub mod mbus;
pub mod media;
pub mod metadata;
pub mod session;
pub mod settings;
pub mod target;
pub mod tools;

pub use session::{boot, BootOptions, BootOutcome};
