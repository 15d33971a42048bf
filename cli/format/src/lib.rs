//! How the mesh's numbers and events read to people: stat rows, route
//! rows and tap events in Linkerd's shapes. `linkerd stat`, `routes`, `tap`,
//! `top` and the web dashboard all format through here, so each shows what
//! the others show.

pub mod routes;
pub mod stat;
pub mod tap;
