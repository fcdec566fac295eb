//! Loading and validating `stages/`, OS definitions and `infrastructures/`, and resolving a
//! build plan from them. Nothing here touches the build machine.
//!
//! Flow: [`load`] (YAML with file:line:column errors) → [`validate`] (the whole set, before any
//! work) → [`resolve`] (mirror, [`vars`], `when` filtering, rendering, [`keys`]) → [`plan::Plan`].
pub mod agent_settings;
pub mod arch;
pub mod infrastructure;
pub mod keys;
pub mod load;
pub mod mirror;
pub mod os;
pub mod plan;
pub mod resolve;
pub mod stage;
pub mod template;
pub mod validate;
pub mod vars;
