//! `io.linkerd.proxy.identity.Identity`: the mesh's certificate authority
//! signs each proxy's certificate once its token proves who it is.

pub mod ca;
