//! Foundations every stage of the pipeline may use: ordered multi-core processing with bounded
//! memory, and the parallel gzip built on it (OS image export, stemcell packing).
pub mod gzip;
pub mod pipeline;
