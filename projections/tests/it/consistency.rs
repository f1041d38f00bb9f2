//! Read-your-writes under load, and a projection that meets an event it cannot apply.
