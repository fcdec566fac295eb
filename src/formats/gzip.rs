//! Parallel gzip (pigz-style: one standard gzip member, deflate blocks compressed on all cores).
