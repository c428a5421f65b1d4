//! Binary wire protocol frames (owned by the runtime work; see eddy-node).
