// Placeholder until the device concern lands.
