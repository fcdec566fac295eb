//! The stemcell tarball: manifest, image member, packing, light stemcells, inspect and verify.
pub mod image;
pub mod manifest;
pub mod naming;
pub mod pack;
pub mod tarball;
pub mod reader;
pub mod light;
pub mod inspect;
pub mod verify;
