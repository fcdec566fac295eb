//! Loading and validating `stages/`, OS definitions and `infrastructures/`, and resolving a
//! build plan from them. Nothing here touches the build machine.
pub mod os;
pub mod plan;
pub mod stage;
pub mod resolve;
pub mod agent_settings;
