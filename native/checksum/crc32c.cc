// Placeholder until the checksum concern lands.
