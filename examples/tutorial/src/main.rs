//! `eddy-tutorial`: an eddy node that hosts the `cart` kind and nothing else.
//!
//! It takes the same flags, config files and `EDDY_*` variables as
//! `eddy node`, e.g. `eddy-tutorial --config config/local-3/node-1.toml`.
#![forbid(unsafe_code)]

use eddy_tutorial::Cart;

fn main() -> std::process::ExitCode {
    eddy_node::Node::builder().kind::<Cart>().run()
}
