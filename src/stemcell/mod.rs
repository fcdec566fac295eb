//! The stemcell tarball: manifest, image member, packing, light stemcells, inspect and verify.
pub mod manifest;
pub mod naming;
