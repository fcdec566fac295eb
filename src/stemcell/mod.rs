//! The stemcell tarball: manifest, image member, packing, light stemcells, inspect and verify.
pub mod image;
pub mod inspect;
pub mod light;
pub mod manifest;
pub mod naming;
pub mod pack;
pub mod reader;
pub mod sbom;
pub mod tarball;
pub mod verify;
