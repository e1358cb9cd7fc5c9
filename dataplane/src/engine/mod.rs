//! Engines install [`crate::tables::Tables`] on a node.
