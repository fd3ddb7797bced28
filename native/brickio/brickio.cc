// Placeholder until the brickio concern lands.
