"""All writes of the loyalty engine. Each module states the rules it enforces."""
