"""The notebooks' face: executing the reproduction notebooks and the helpers they call (tables of the paper's
reproduction, the inside-CSW study). May import every room; nothing imports it but the CLI."""
