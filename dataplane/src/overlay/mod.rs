//! The VTEP core: forwarding by table, ARP answered locally, VXLAN encap and
//! decap, MTU. Sans-IO: frames in, decisions out.
