//! The control protocol's server side: `ringlab_net`'s own (connections, bounds, the 0600
//! socket and the JSON lines are exactly a ringlab node's).

pub(crate) use ringlab_net::control::server;
