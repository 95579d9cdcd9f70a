//! Composite runs that chain the pipelines and write their files: the demo and the experiments of
//! the paper. Above `report` (they write), below the command line (which only parses into their
//! configs and prints).
pub mod demo;
pub mod experiment;
pub mod zoo;
