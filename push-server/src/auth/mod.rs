//! Who a connection is: a JWT (`jwt`) or a shared express-session cookie (`session`),
//! each verified into an `identity::Identity`. The config and the socket handlers use
//! this module; it uses neither of them.

pub mod identity;
pub mod jwt;
pub mod session;
