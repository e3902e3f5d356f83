//! The browser console.

pub mod assets;
