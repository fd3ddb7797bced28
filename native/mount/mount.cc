// Placeholder until the mount concern lands.
