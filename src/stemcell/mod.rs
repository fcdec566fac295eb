//! The stemcell tarball: manifest, image member, packing, light stemcells, inspect and verify.
//!
//! Map: `naming` (names) → `manifest` (stemcell.MF types and reader) → `image` (the
//! `image` member per disk format) → `tarball` (tar/gzip writing, atomic output) → `pack`
//! (heavy stemcells: `pack(&PackSpec, ImageSource, out_dir)`) and `light` (from a heavy one);
//! `reader` reads a tarball in one pass for `inspect` and `verify`; `sbom` makes the SBOMs.
pub mod diff;
pub mod filelist;
pub mod image;
pub mod inspect;
pub mod light;
pub mod manifest;
pub mod naming;
pub mod pack;
pub mod reader;
pub mod sbom;
pub mod spec;
pub mod tarball;
pub mod verify;
