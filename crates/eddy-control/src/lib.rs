//! eddy-control: the sans-io cluster controller (crate doc completed with the controller).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod command;
pub mod member;
pub mod planner;
pub mod state;
