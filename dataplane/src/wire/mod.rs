//! Zero-copy packet views. Standard protocols come from `smoltcp::wire`;
//! the files here add what it lacks, in the same `Packet`/`Repr` style.
