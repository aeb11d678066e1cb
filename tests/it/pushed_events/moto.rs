//! On moto: filled in below.
