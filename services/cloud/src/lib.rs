//! The cloud gateway.
