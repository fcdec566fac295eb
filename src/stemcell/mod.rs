//! The stemcell tarball: manifest, image member, packing, light stemcells, inspect and verify.
