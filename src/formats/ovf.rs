//! OVF 1.0 descriptor for vSphere (formats.md §4, official-builder.md §5.6).
